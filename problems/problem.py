"""The problem contract: a named black-box L(S) over subsets of removed blocks."""

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from oracle.evaluation import Evaluation, Oracle
from oracle.subset import Subset, canonical_subset

# Options of `problems.get` that say how a problem's oracle runs, not what it computes: they
# never enter a fingerprint, and a problem that has no use for one ignores it.
EXECUTION_OPTIONS = frozenset({"oracle", "table", "device", "on_miss", "batch_tokens", "executor", "workers",
                               "address"})


@dataclass
class Problem:
    """A named problem: `spec` is the plain data it was built from (stored in its tables);
    `oracle` answers L(S). The number of removed blocks k is not part of the problem."""

    name: str
    n_blocks: int
    oracle: Oracle
    description: str
    spec: dict[str, Any] = field(default_factory=dict)
    releases: list[Callable[[], None]] = field(default_factory=list)  # called by close()
    _base_loss: float | None = field(default=None, init=False, repr=False)

    def subset(self, blocks: Iterable[int], k: int | None = None) -> Subset:
        """Validate and canonicalise a subset for this problem."""
        return canonical_subset(blocks, self.n_blocks, k)

    def evaluate(self, subsets: Sequence[Iterable[int]]) -> list[Evaluation]:
        """Evaluate a batch of subsets through the problem's oracle."""
        return self.oracle.evaluate([self.subset(s) for s in subsets])

    def loss(self, blocks: Iterable[int]) -> float:
        """L(S)."""
        return self.evaluate([blocks])[0].loss

    def base_loss(self) -> float:
        """L(∅), evaluated once."""
        if self._base_loss is None:
            self._base_loss = self.loss(())
        return self._base_loss

    def delta(self, blocks: Iterable[int]) -> float:
        """Δ(S) = L(S) − L(∅)."""
        return self.loss(blocks) - self.base_loss()

    def close(self) -> None:
        """Release the problem's table (flushes it and frees the writer lock), if it has one,
        and what its oracle holds elsewhere (`releases`: Ray actors, say)."""
        for release in self.releases:
            release()
        table = getattr(self.oracle, "table", None)
        if table is not None:
            table.close()

    def __enter__(self) -> "Problem":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
