"""Replaying a smaller calibration set from a table built with a larger one.

When the calibration samples of a problem are the first n samples of a larger problem's (same
data, seed and recipe, fewer windows or items), its loss is the mean of the first n per-sample
losses stored for the larger one: no evaluation is needed."""

from collections.abc import Sequence

import numpy as np

from oracle.errors import BadInput
from oracle.evaluation import Evaluation, Oracle, OracleCounters
from oracle.subset import Subset


class SamplePrefixOracle:
    def __init__(self, inner: Oracle, n_samples: int, fingerprint: str):
        self.inner = inner
        self.n_samples = n_samples
        self.fingerprint = fingerprint
        self.n_blocks = inner.n_blocks
        self.table = getattr(inner, "table", None)

    @property
    def counters(self) -> OracleCounters:
        return self.inner.counters

    def evaluate(self, subsets: Sequence[Subset]) -> list[Evaluation]:
        answers = []
        for evaluation in self.inner.evaluate(subsets):
            if evaluation.per_sample is None or len(evaluation.per_sample) < self.n_samples:
                raise BadInput(f"subset {list(evaluation.subset)} has no per-sample losses to take "
                               f"the first {self.n_samples} of")
            per_sample = np.asarray(evaluation.per_sample[: self.n_samples])
            loss = float(np.mean(per_sample.astype(np.float64)))
            answers.append(Evaluation(evaluation.subset, loss, per_sample, evaluation.cost_s, evaluation.source))
        return answers
