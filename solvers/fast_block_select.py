"""Fast-Block-Select (MI-PRUN, Zhang et al., arXiv 2601.07212), black-box mode (ALGORITHMS.md §4.7).

The pruned pool P starts as the one-shot top-k; each iteration proposes replacing every maximal
contiguous run R ⊆ P by a same-length contiguous run R' of kept blocks (coarse-ranked by summed
single-block scores, top-K per run), plus single-member swaps so the run-length profile of the
first P can change; all proposals of an iteration go to the oracle in one batch and the best
improvement is taken. It stops at a fixed point (no proposal improves) or after `max_iter`.
"""

import numpy as np

from oracle.errors import BadInput
from oracle.evaluation import rank_key
from oracle.subset import Subset
from solvers.base import Solver
from solvers.criteria import removal_loss
from solvers.session import SearchSession

MODES = ("black-box", "mi")


class FastBlockSelect(Solver):
    """Iterated same-length run swaps of the pruned pool, judged by the oracle.

    Options: `mode` ("black-box": L decides every swap; "mi": the paper's mutual-information
    segment scores, which need hidden states from a live model and are not available yet);
    `top_k` candidate runs kept per run of P after the coarse ranking; `single_swaps` (also
    propose swapping each member of a run of length ≥ 2 for one of the top-K kept blocks);
    `max_iter`; `combine_swaps` (True: the improving proposals that touch disjoint blocks are
    merged greedily, largest gain first, and the merged P is evaluated and accepted if it beats
    the best single proposal; False: accept only the best single proposal).

    Scores are the `prior` when given, else L({i}) (N evaluations). Every k-subset already
    evaluated is visited: the current P is the best of them, so none can improve on it, and
    they are skipped before the top-K cut so they never take a candidate's place (this also
    rules out oscillation). Deterministic: `rng` is not used.
    """

    name = "fbs"

    def __init__(self, mode: str = "black-box", top_k: int = 5, single_swaps: bool = True,
                 max_iter: int = 20, combine_swaps: bool = True):
        self.mode = mode
        self.top_k = top_k
        self.single_swaps = single_swaps
        self.max_iter = max_iter
        self.combine_swaps = combine_swaps

    def _search(self, session: SearchSession, rng: np.random.Generator, prior: np.ndarray | None) -> None:
        self._check_config(session)
        n_blocks, k = session.n_blocks, session.k
        scores = removal_loss(session) if prior is None else np.where(np.isfinite(prior), prior, np.inf)

        ranked = np.lexsort((np.arange(n_blocks), scores))
        pool: Subset = tuple(sorted(int(i) for i in ranked[:k]))
        current = rank_key(session.loss(pool))
        for _ in range(self.max_iter):
            proposals = self._proposals(pool, scores, session)
            if not proposals:
                return
            losses = session.evaluate([subset for _, _, subset in proposals])
            improving = sorted(
                (rank_key(loss), subset, removed, added)
                for (removed, added, subset), loss in zip(proposals, losses)
                if rank_key(loss) < current
            )
            if not improving:
                return
            current, accepted, _, _ = improving[0]
            if self.combine_swaps:
                merged = _merge_disjoint(pool, improving)
                if merged is not None and rank_key(session.loss(merged)) < current:
                    current, accepted = rank_key(session.loss(merged)), merged
            pool = accepted

    def _check_config(self, session: SearchSession) -> None:
        if self.mode not in MODES:
            raise BadInput(f"fbs: mode={self.mode!r} is not one of {', '.join(MODES)}")
        if self.top_k < 1 or self.max_iter < 0:
            raise BadInput(f"fbs: top_k must be ≥ 1 and max_iter ≥ 0, got {self.top_k} and {self.max_iter}")
        if self.mode == "mi":
            oracle = session.problem.oracle
            if not callable(getattr(oracle, "hidden_states", None)):
                raise BadInput(
                    f"fbs: mode='mi' needs hidden states from a live model, and the oracle of "
                    f"{session.problem.name} ({type(oracle).__name__}) has none; use mode='black-box'"
                )
            raise BadInput("fbs: mode='mi' (mutual-information segment scores) is not implemented; "
                           "use mode='black-box'")

    def _proposals(self, pool: Subset, scores: np.ndarray,
                   session: SearchSession) -> list[tuple[Subset, Subset, Subset]]:
        """(removed, added, new pool) for every proposal of one iteration, new pools distinct
        and not yet evaluated (visited): per maximal run R of the pool, the top-K same-length
        runs of kept blocks by summed score; per member of a longer run, the top-K kept blocks
        by score."""
        n_blocks = scores.size
        members = set(pool)
        runs = _maximal_runs(pool)
        replacements: list[tuple[Subset, list[Subset]]] = []
        for run in runs:
            length = len(run)
            outside = [tuple(range(start, start + length)) for start in range(n_blocks - length + 1)
                       if members.isdisjoint(range(start, start + length))]
            replacements.append((run, outside))
        if self.single_swaps:
            singles = [(block,) for block in range(n_blocks) if block not in members]
            replacements += [((block,), singles) for run in runs if len(run) > 1 for block in run]

        proposals: dict[Subset, tuple[Subset, Subset, Subset]] = {}
        for removed, candidates in replacements:
            candidates = sorted(candidates, key=lambda run: (float(scores[list(run)].sum()), run))
            taken = 0
            for added in candidates:
                if taken == self.top_k:
                    break
                subset = tuple(sorted(members.difference(removed).union(added)))
                if session.known(subset) is not None:
                    continue
                taken += 1
                proposals.setdefault(subset, (removed, added, subset))
        return list(proposals.values())


def _maximal_runs(pool: Subset) -> list[Subset]:
    """The maximal runs of consecutive blocks of a sorted subset."""
    runs: list[list[int]] = []
    for block in pool:
        if runs and block == runs[-1][-1] + 1:
            runs[-1].append(block)
        else:
            runs.append([block])
    return [tuple(run) for run in runs]


def _merge_disjoint(pool: Subset, improving: list[tuple[float, Subset, Subset, Subset]]) -> Subset | None:
    """Apply, best first, every improving swap whose removed and added blocks are disjoint
    from those of the swaps already taken; the merged pool, or None if fewer than two merge."""
    removed_all: set[int] = set()
    added_all: set[int] = set()
    taken = 0
    for _, _, removed, added in improving:
        if removed_all.isdisjoint(removed) and added_all.isdisjoint(added):
            removed_all.update(removed)
            added_all.update(added)
            taken += 1
    if taken < 2:
        return None
    return tuple(sorted(set(pool).difference(removed_all).union(added_all)))
