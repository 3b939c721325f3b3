"""Exhaustive enumeration (ALGORITHMS.md §4.9): ground truth for small instances."""

import itertools
import math

import numpy as np

from oracle.errors import BadInput
from solvers.base import Solver
from solvers.session import SearchSession


class Exact(Solver):
    """Evaluate all C(N, k) subsets through the session, `batch_size` per request, and return the
    best, certified optimal when the enumeration completed. Every subset is a real request: on a
    replayed table this certifies the table's optimum. Refused above `max_subsets`."""

    name = "exact"

    def __init__(self, max_subsets: int = 2_000_000, batch_size: int = 10_000):
        self.max_subsets = max_subsets
        self.batch_size = batch_size

    def _search(self, session: SearchSession, rng: np.random.Generator, prior: np.ndarray | None) -> bool:
        batch_size = self.batch_size
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise BadInput(f"exact batch_size must be a positive integer, not {self.batch_size!r}")
        n_blocks, k = session.n_blocks, session.k
        total = math.comb(n_blocks, k)
        if total > self.max_subsets:
            raise BadInput(
                f"exact enumeration of {session.problem.name} for k={k} needs C({n_blocks},{k}) = {total:,} "
                f"subsets, more than max_subsets={self.max_subsets:,}"
            )
        combinations = itertools.combinations(range(n_blocks), k)
        while batch := list(itertools.islice(combinations, self.batch_size)):
            session.evaluate(batch)
        return True
