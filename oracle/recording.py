"""An observer around any oracle: it records every batch requested, so benchmarks and tests can
see what a solver asked for without the solver knowing."""

from collections.abc import Sequence

from oracle.evaluation import Evaluation, Oracle
from oracle.subset import Subset


class RecordingOracle:
    def __init__(self, inner: Oracle):
        self.inner = inner
        self.n_blocks = inner.n_blocks
        self.fingerprint = inner.fingerprint
        self.counters = inner.counters
        self.requests: list[list[Subset]] = []

    def evaluate(self, subsets: Sequence[Subset]) -> list[Evaluation]:
        self.requests.append(list(subsets))
        return self.inner.evaluate(subsets)

    @property
    def batches(self) -> list[int]:
        """Sizes of the batches, leaving out a batch that is only the empty subset (the base
        loss `solve` reads for Δ, not part of the search)."""
        return [len(batch) for batch in self.requests if batch != [()]]

    @property
    def distinct(self) -> set[Subset]:
        """Every distinct subset requested."""
        return {subset for batch in self.requests for subset in batch}
