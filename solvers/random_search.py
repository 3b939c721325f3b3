"""Uniform random search: the baseline every other solver's quality is normalised against."""

import itertools
import math

import numpy as np

from oracle.errors import BadInput
from oracle.subset import Subset
from solvers.base import Solver
from solvers.session import SearchSession


class RandomSearch(Solver):
    """Evaluate distinct k-subsets drawn uniformly at random, `batch_size` per request, and keep
    the best. It spends the whole budget, or `evaluations` when `solve` gets no budget, capped at
    C(N, k). The subsets drawn depend on the seed only, not on `batch_size`."""

    name = "random"

    def __init__(self, evaluations: int = 200, batch_size: int = 50):
        self.evaluations = evaluations
        self.batch_size = batch_size

    def _search(self, session: SearchSession, rng: np.random.Generator, prior: np.ndarray | None) -> None:
        for option in ("evaluations", "batch_size"):
            value = getattr(self, option)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise BadInput(f"random search {option} must be a positive integer, not {value!r}")
        planned = self.evaluations if session.budget is None else session.budget
        subsets = distinct_random_subsets(rng, session.n_blocks, session.k, planned)
        for start in range(0, len(subsets), self.batch_size):
            session.evaluate(subsets[start : start + self.batch_size])


def distinct_random_subsets(rng: np.random.Generator, n_blocks: int, k: int, count: int) -> list[Subset]:
    """min(count, C(N, k)) distinct k-subsets, uniformly at random without replacement."""
    total = math.comb(n_blocks, k)
    count = min(count, total)
    if 2 * count >= total:
        # Most of the space is wanted: a random order of all of it is cheaper than rejection.
        everything = list(itertools.combinations(range(n_blocks), k))
        return [everything[i] for i in rng.permutation(total)[:count]]
    seen: set[Subset] = set()
    subsets: list[Subset] = []
    while len(subsets) < count:
        subset = tuple(sorted(int(block) for block in rng.choice(n_blocks, size=k, replace=False)))
        if subset not in seen:
            seen.add(subset)
            subsets.append(subset)
    return subsets
