"""Greedy iterative deletion (SLEB; ALGORITHMS.md §4.2): remove one block at a time, each time
the one whose removal, on top of those already removed, gives the lowest loss.

The helpers below (barriers, allowed blocks, completion under a short budget) are shared with
beam search, of which greedy is the width-1 case."""

from collections.abc import Sequence

import numpy as np

from oracle.errors import BadInput
from oracle.evaluation import rank_key
from oracle.subset import Subset
from solvers.base import Solver
from solvers.session import SearchSession, TraceEntry


class Greedy(Solver):
    """SLEB greedy: k steps, each evaluating every allowed S ∪ {j} in one batch and keeping the
    best (ties by lower index). Cost without barriers kN − k(k−1)/2 evaluations.

    `barriers`: False (default), True (= SLEB's (1, 1)) or (first, last): that many of the
    currently first and last *alive* blocks are never candidates. When a budget cannot pay for
    the next step, the current S is completed along the last step's ranking (one evaluation),
    so a short budget still yields a k-subset; `removal_order` reads the order back."""

    name = "greedy"

    def __init__(self, barriers: tuple[int, int] | bool = False):
        self.barriers = barriers

    def _search(self, session: SearchSession, rng: np.random.Generator, prior: np.ndarray | None) -> None:
        widths = barrier_widths(self.barriers, session)
        removed: list[int] = []
        for step in range(session.k):
            blocks = allowed_blocks(removed, session.n_blocks, widths)
            candidates = [tuple(sorted([*removed, block])) for block in blocks]
            final = step == session.k - 1
            if step > 0 and not step_fits(session, candidates, final):
                completion = complete(session, tuple(sorted(removed[:-1])), tuple(sorted(removed)), widths)
                session.evaluate([completion, *candidates] if final else [completion])
                return
            losses = session.evaluate(candidates)
            best = min(range(len(blocks)), key=lambda c: (rank_key(losses[c]), blocks[c]))
            removed.append(blocks[best])


def removal_order(trace: Sequence[TraceEntry]) -> list[int]:
    """The blocks in the order a greedy run removed them, read back from its trace: the
    lowest-loss subset of each size (ties by index) is the one that step kept. Blocks added
    together by a budget completion follow in index order."""
    best: dict[int, tuple[float, Subset]] = {}
    for entry in trace:
        key = (rank_key(entry.loss), entry.subset)
        if len(entry.subset) not in best or key < best[len(entry.subset)]:
            best[len(entry.subset)] = key
    order: list[int] = []
    for size in sorted(best):
        subset = set(best[size][1])
        if not set(order) <= subset:
            break
        order.extend(sorted(subset - set(order)))
    return order


def barrier_widths(barriers: tuple[int, int] | bool, session: SearchSession) -> tuple[int, int]:
    """(first, last) from the `barriers` option, checked against the problem and k."""
    if barriers is True or barriers is False:
        widths = (1, 1) if barriers else (0, 0)
    elif (
        isinstance(barriers, (tuple, list))
        and len(barriers) == 2
        and all(isinstance(w, (int, np.integer)) and not isinstance(w, bool) and w >= 0 for w in barriers)
    ):
        widths = (int(barriers[0]), int(barriers[1]))
    else:
        raise BadInput(f"barriers must be True, False or (first, last) non-negative integers, not {barriers!r}")
    if session.k > session.n_blocks - sum(widths):
        raise BadInput(
            f"k={session.k} blocks cannot be removed from {session.n_blocks} with barriers {widths}: "
            f"at most {session.n_blocks - sum(widths)}"
        )
    return widths


def allowed_blocks(removed: Sequence[int], n_blocks: int, widths: tuple[int, int]) -> list[int]:
    """Candidates to remove next: the alive blocks without the first and last `widths` of them."""
    gone = set(removed)
    alive = [block for block in range(n_blocks) if block not in gone]
    first, last = widths
    return alive[first : len(alive) - last]


def step_fits(session: SearchSession, candidates: Sequence[Subset], final: bool) -> bool:
    """Whether the budget pays for this step's new candidates and, before the final step, still
    leaves one evaluation for a completion."""
    if session.remaining is None:
        return True
    new = sum(session.known(candidate) is None for candidate in candidates)
    return session.remaining >= new + (0 if final else 1)


def complete(session: SearchSession, parent: Subset, chosen: Subset, widths: tuple[int, int]) -> Subset:
    """`chosen` (`parent` plus one block) filled up to k blocks with the blocks that ranked next
    when `chosen` was picked, i.e. by the already evaluated L(parent ∪ {j}), ties by index."""

    def rank(block: int) -> tuple[float, int]:
        loss = session.known((*parent, block))
        return (float("inf") if loss is None else rank_key(loss)), block

    ranked = sorted(allowed_blocks(parent, session.n_blocks, widths), key=rank)
    fill = [block for block in ranked if block not in chosen][: session.k - len(chosen)]
    return tuple(sorted((*chosen, *fill)))
