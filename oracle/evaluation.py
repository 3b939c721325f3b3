"""What every oracle returns and counts, whatever backs it (live model, table or surrogate)."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from oracle.subset import Subset

Source = Literal["live", "table", "surrogate"]


@dataclass(frozen=True)
class Evaluation:
    """One L(S): the mean loss over the calibration set, the per-sample losses it averages
    (None where the oracle has none), the seconds it cost to compute, and where it came from."""

    subset: Subset
    loss: float
    per_sample: np.ndarray | None
    cost_s: float
    source: Source


@dataclass
class OracleCounters:
    """Requests served, of which table hits, unique new evaluations and their cost in seconds."""

    requests: int = 0
    hits: int = 0
    evaluations: int = 0
    surrogate: int = 0
    cost_s: float = 0.0

    def reset(self) -> None:
        self.requests = self.hits = self.evaluations = self.surrogate = 0
        self.cost_s = 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "requests": self.requests,
            "hits": self.hits,
            "evaluations": self.evaluations,
            "surrogate": self.surrogate,
            "cost_s": self.cost_s,
        }


class Oracle(Protocol):
    """Black-box L(S) over subsets of removed blocks; batch first."""

    n_blocks: int
    fingerprint: str
    counters: OracleCounters

    def evaluate(self, subsets: Sequence[Subset]) -> list[Evaluation]: ...


def rank_key(loss: float) -> float:
    """Sort key that ranks NaN and inf losses worst."""
    return loss if np.isfinite(loss) else float("inf")
