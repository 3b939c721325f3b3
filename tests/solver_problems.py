"""Small problems with known structure for the solver tests: an additive one (no interactions)
and a wrapper that makes a synthetic problem's loss NaN for every subset containing block 0."""

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

import problems
from oracle.evaluation import Evaluation, OracleCounters
from oracle.recording import RecordingOracle
from oracle.subset import Subset
from problems.problem import Problem


class AdditiveOracle:
    """L(S) = c + Σ_{i∈S} h_i: the optimum of every size is the k smallest singles."""

    def __init__(self, h: np.ndarray, constant: float = 3.0):
        self.h = np.asarray(h, dtype=float)
        self.constant = constant
        self.n_blocks = self.h.size
        self.fingerprint = "additive-test"
        self.counters = OracleCounters()

    def evaluate(self, subsets: Sequence[Subset]) -> list[Evaluation]:
        self.counters.requests += len(subsets)
        self.counters.evaluations += len(subsets)
        return [
            Evaluation(tuple(s), self.constant + float(self.h[list(s)].sum()), None, 0.0, "live") for s in subsets
        ]


class NanForBlockZero:
    """Wraps an oracle; every subset that removes block 0 gets a NaN loss."""

    def __init__(self, inner):
        self.inner = inner
        self.n_blocks = inner.n_blocks
        self.fingerprint = inner.fingerprint + "-nan0"
        self.counters = inner.counters

    def evaluate(self, subsets: Sequence[Subset]) -> list[Evaluation]:
        return [
            replace(evaluation, loss=math.nan) if 0 in evaluation.subset else evaluation
            for evaluation in self.inner.evaluate(subsets)
        ]


def additive_problem(n_blocks: int, seed: int) -> Problem:
    h = np.random.default_rng(seed).permutation(np.linspace(0.1, 2.0, n_blocks))
    oracle = AdditiveOracle(h)
    return Problem(name=f"test/additive-N{n_blocks}", n_blocks=n_blocks, oracle=oracle, description="additive")


def nan_problem(name: str) -> Problem:
    base = problems.get(name)
    return Problem(
        name=f"{name}-nan0", n_blocks=base.n_blocks, oracle=NanForBlockZero(base.oracle), description="NaN with block 0"
    )


def recorded(name: str) -> Problem:
    """A named problem whose oracle records its batches."""
    base = problems.get(name)
    return Problem(name=name, n_blocks=base.n_blocks, oracle=RecordingOracle(base.oracle), description="recorded")


def trace_of(result) -> list[tuple]:
    """What determinism tests compare: every traced subset, its loss and the evaluation count."""
    return [(entry.subset, entry.loss, entry.evaluations) for entry in result.trace]
