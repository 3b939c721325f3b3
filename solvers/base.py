"""The solver contract: configuration in `__init__`, work in `solve`, a `Result` out."""

import inspect
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from oracle.errors import BadInput
from oracle.integers import is_integer
from oracle.subset import Subset
from solvers.session import BudgetExhausted, SearchSession, TraceEntry


class BudgetTooShort(BadInput):
    """The budget ended before the solver had evaluated a single k-subset."""


def check_seed(seed) -> None:
    """Refuse a seed numpy cannot take: seeds are non-negative integers of any size."""
    if not is_integer(seed) or seed < 0:
        raise BadInput(f"seed must be a non-negative integer, got {seed!r}")


@dataclass(frozen=True)
class Result:
    solver: str
    config: dict[str, Any]
    problem: str
    k: int
    seed: int
    budget: int | None
    subset: Subset
    loss: float
    delta: float
    n_requests: int
    n_evaluations: int
    wall_s: float
    trace: list[TraceEntry] = field(repr=False)
    certified: bool = False  # true when the subset is proven optimal (exhaustive enumeration of measured losses)
    n_surrogate: int = 0  # of the n_evaluations, how many a surrogate answered
    predicted: bool = False  # the returned loss is a surrogate's answer, not a measurement


class Solver:
    """Base class. Subclasses declare their hyperparameters as keyword arguments of
    `__init__`, store them unchanged under the same names, and implement `_search`."""

    name = "solver"

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments, verbatim: what a results row needs to rebuild this solver."""
        parameters = inspect.signature(type(self).__init__).parameters
        return {p: getattr(self, p) for p in parameters if p != "self"}

    def solve(self, problem, k: int, budget: int | None = None, seed: int = 0,
              prior: np.ndarray | None = None) -> Result:
        """Search for the k blocks whose removal gives the lowest loss. `budget` caps the unique
        subsets evaluated; `prior` gives per-block scores (lower = more removable) to guided
        solvers; `seed` fixes every random choice."""
        session = SearchSession(problem, k, budget)
        check_seed(seed)
        if prior is not None:
            try:
                prior = np.asarray(prior, dtype=float)
            except (TypeError, ValueError):
                raise BadInput(f"prior must be {problem.n_blocks} numbers, got {prior!r}") from None
            if prior.shape != (problem.n_blocks,):
                raise BadInput(f"prior has shape {prior.shape}, expected ({problem.n_blocks},)")
        started = time.perf_counter()
        certified = False
        try:
            certified = bool(self._search(session, np.random.default_rng(seed), prior))
        except BudgetExhausted:
            pass
        best = session.best()
        if best is None:
            raise BudgetTooShort(f"{self.name}: budget {budget} ended before any {k}-subset was evaluated")
        subset, loss = best
        return Result(
            solver=self.name, config=self.get_config(), problem=problem.name, k=k, seed=seed,
            budget=budget, subset=subset, loss=loss, delta=loss - problem.base_loss(),
            n_requests=session.requests, n_evaluations=session.evaluations,
            wall_s=time.perf_counter() - started, trace=list(session.trace),
            # A proof over predicted losses proves nothing about the model.
            certified=certified and session.surrogate == 0, n_surrogate=session.surrogate,
            predicted=subset in session.predicted,
        )

    def _search(self, session: SearchSession, rng: np.random.Generator, prior: np.ndarray | None) -> bool | None:
        """Run the search through `session`; return True only if the best k-subset found is
        proven optimal."""
        raise NotImplementedError
