"""One-shot top-k (ALGORITHMS.md §4.1): score every block once, remove the k lowest-scoring."""

import numpy as np

from solvers.base import Solver
from solvers.criteria import block_scores, check_iterative, ranked_blocks, removal_order, run_distances
from solvers.session import SearchSession


class OneShot(Solver):
    """Remove the k blocks with the smallest scores, ties by index, ignoring interactions.

    `criterion` is one of `solvers.criteria.CRITERIA`; the default `removal_loss` costs N
    evaluations. A `prior` given to `solve` replaces the criterion (no extra evaluations). The
    chosen subset is then evaluated once so the result carries its loss. With `angular`, when the
    oracle offers run distances, the contiguous run [ℓ, ℓ+k) of minimal distance is removed
    instead (Gromov et al.; ties by lowest ℓ). `iterative=True` (cosine or angular) removes one
    block at a time and measures the criterion again on the pruned model, as iterated Block
    Influence does; its order comes from the oracle and costs no evaluation."""

    name = "oneshot"

    def __init__(self, criterion: str = "removal_loss", iterative: bool = False):
        if iterative:
            check_iterative(criterion)
        self.criterion = criterion
        self.iterative = iterative

    def _search(self, session: SearchSession, rng: np.random.Generator, prior: np.ndarray | None) -> None:
        if prior is None and self.iterative:
            session.evaluate([removal_order(session, self.criterion)[: session.k]])
            return
        if prior is None and self.criterion == "angular":
            distances = run_distances(session, session.k)
            if distances is not None:
                start = ranked_blocks(distances)[0]
                session.evaluate([range(start, start + session.k)])
                return
        scores = block_scores(session, self.criterion) if prior is None else prior
        session.evaluate([ranked_blocks(scores)[: session.k]])
