"""The search session: the only door between a solver and its problem.

It memoises requests by subset (a solver never pays twice for one subset), enforces the
evaluation budget, ranks NaN/inf losses worst and records the trace (anytime curve), so no
solver can forget to record or count wrongly (the COCO observer idea)."""

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from oracle.errors import BadInput
from oracle.evaluation import rank_key
from oracle.integers import is_integer
from oracle.subset import Subset


class BudgetExhausted(Exception):
    """Raised inside a search when its evaluation budget is spent; the solver's `solve` catches
    it and returns the best subset found so far."""


@dataclass(frozen=True)
class TraceEntry:
    subset: Subset
    loss: float
    evaluations: int  # unique subsets evaluated so far in this solve, this one included
    time_s: float  # seconds since the solve started


class SearchSession:
    def __init__(self, problem, k: int, budget: int | None = None):
        if not is_integer(k) or not 1 <= k < problem.n_blocks:
            raise BadInput(f"k={k!r} is out of range 1..{problem.n_blocks - 1} for {problem.name}")
        if budget is not None and (not is_integer(budget) or budget < 1):
            raise BadInput(f"budget must be an integer of at least 1 evaluation, got {budget!r}")
        self.problem = problem
        self.n_blocks = problem.n_blocks
        self.k = k
        self.budget = budget
        self.requests = 0
        self.predicted: set[Subset] = set()  # the subsets whose loss is a surrogate's answer
        self.trace: list[TraceEntry] = []
        self._losses: dict[Subset, float] = {}
        self._started = time.perf_counter()

    @property
    def evaluations(self) -> int:
        return len(self._losses)

    @property
    def surrogate(self) -> int:
        """How many of the evaluations a surrogate answered, not the model."""
        return len(self.predicted)

    @property
    def remaining(self) -> int | None:
        return None if self.budget is None else self.budget - self.evaluations

    def evaluate(self, subsets: Sequence[Iterable[int]]) -> list[float]:
        """Losses of a batch of subsets (any size, not only k), in request order. New subsets
        go to the problem as one batch; when they exceed the budget, the ones that fit are
        evaluated and BudgetExhausted is raised."""
        canonical = [self.problem.subset(s) for s in subsets]
        self.requests += len(canonical)
        new = list(dict.fromkeys(s for s in canonical if s not in self._losses))
        allowed = new if self.remaining is None else new[: max(self.remaining, 0)]
        if allowed:
            for evaluation in self.problem.evaluate(allowed):
                self._losses[evaluation.subset] = evaluation.loss
                if evaluation.source == "surrogate":
                    self.predicted.add(evaluation.subset)
                self.trace.append(TraceEntry(evaluation.subset, evaluation.loss, self.evaluations,
                                             time.perf_counter() - self._started))
        if len(allowed) < len(new):
            raise BudgetExhausted
        return [self._losses[s] for s in canonical]

    def loss(self, subset: Iterable[int]) -> float:
        return self.evaluate([subset])[0]

    def known(self, subset: Iterable[int]) -> float | None:
        """The loss of a subset already evaluated in this session, else None (free)."""
        return self._losses.get(self.problem.subset(subset))

    def best(self, size: int | None = None) -> tuple[Subset, float] | None:
        """Lowest-loss subset of `size` (default k) evaluated so far; NaN/inf rank worst."""
        size = self.k if size is None else size
        candidates = [(rank_key(loss), s) for s, loss in self._losses.items() if len(s) == size]
        if not candidates:
            return None
        _, subset = min(candidates)
        return subset, self._losses[subset]

    def elapsed(self) -> float:
        return time.perf_counter() - self._started
