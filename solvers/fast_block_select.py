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
    scores decide — block score −MI(h_i, h_{i+1}), a pool's value Σ over its runs of
    −MI(h_start, h_end+1), Gaussian MI of the unpruned model's hidden states from the live
    oracle — and the oracle evaluates only the final pool);
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
        if self.mode == "mi":
            information = self._segment_information(session)
            scores = -np.diagonal(information, offset=1)
            judged: dict[Subset, float] = {}

            def judge(subsets: list[Subset]) -> list[float]:
                values = [_segments_value(subset, information) for subset in subsets]
                judged.update(zip(subsets, values))
                return values

            def visited(subset: Subset) -> bool:
                return subset in judged
        else:
            scores = removal_loss(session) if prior is None else np.where(np.isfinite(prior), prior, np.inf)
            judge = session.evaluate

            def visited(subset: Subset) -> bool:
                return session.known(subset) is not None

        ranked = np.lexsort((np.arange(session.n_blocks), scores))
        pool = self._improve(tuple(sorted(int(i) for i in ranked[: session.k])), scores, judge, visited)
        if self.mode == "mi":
            session.loss(pool)  # the one oracle evaluation of MI mode: the result's own loss

    def _improve(self, pool: Subset, scores: np.ndarray, judge, visited) -> Subset:
        """Swap runs until no proposal improves the judged value (L in black-box mode, the sum
        of segment scores in MI mode) or `max_iter` iterations have run."""
        current = rank_key(judge([pool])[0])
        for _ in range(self.max_iter):
            proposals = self._proposals(pool, scores, visited)
            if not proposals:
                break
            values = judge([subset for _, _, subset in proposals])
            improving = sorted(
                (rank_key(value), subset, removed, added)
                for (removed, added, subset), value in zip(proposals, values)
                if rank_key(value) < current
            )
            if not improving:
                break
            current, accepted, _, _ = improving[0]
            if self.combine_swaps:
                merged = _merge_disjoint(pool, improving)
                if merged is not None and rank_key(judge([merged])[0]) < current:
                    current, accepted = rank_key(judge([merged])[0]), merged
            pool = accepted
        return pool

    def _check_config(self, session: SearchSession) -> None:
        if self.mode not in MODES:
            raise BadInput(f"fbs: mode={self.mode!r} is not one of {', '.join(MODES)}")
        if self.top_k < 1 or self.max_iter < 0:
            raise BadInput(f"fbs: top_k must be ≥ 1 and max_iter ≥ 0, got {self.top_k} and {self.max_iter}")

    @staticmethod
    def _segment_information(session: SearchSession) -> np.ndarray:
        """M[a, b] = MI between the unpruned model's hidden states before block a and before
        block b (after block b − 1), from the problem's oracle."""
        oracle = session.problem.oracle
        if not callable(getattr(oracle, "segment_information", None)):
            raise BadInput(
                f"fbs: mode='mi' needs hidden states from a live model, and the oracle of "
                f"{session.problem.name} ({type(oracle).__name__}) has none; use mode='black-box'"
            )
        information = np.asarray(oracle.segment_information(), dtype=float)
        if information.shape != (session.n_blocks + 1, session.n_blocks + 1):
            raise BadInput(f"fbs: segment information has shape {information.shape}, "
                           f"expected {(session.n_blocks + 1,) * 2}")
        return information

    def _proposals(self, pool: Subset, scores: np.ndarray, visited) -> list[tuple[Subset, Subset, Subset]]:
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
                if visited(subset):
                    continue
                taken += 1
                proposals.setdefault(subset, (removed, added, subset))
        return list(proposals.values())


def _segments_value(pool: Subset, information: np.ndarray) -> float:
    """MI mode's value of a pool: Σ over its maximal runs [a..b] of −MI(h_a, h_{b+1}); runs whose
    ends share much information change little when removed."""
    return float(sum(-information[run[0], run[-1] + 1] for run in _maximal_runs(pool)))


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
