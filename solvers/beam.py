"""Beam search over removal sets (ALGORITHMS.md §4.3, reconstructed): greedy deletion that
keeps the `width` best partial subsets at every depth instead of one."""

import numpy as np

from oracle.errors import BadInput
from oracle.evaluation import rank_key
from oracle.subset import Subset
from solvers.base import Solver
from solvers.greedy import allowed_blocks, barrier_widths, complete, step_fits
from solvers.session import SearchSession


class Beam(Solver):
    """Depth d extends every beam by each allowed block, dedupes the candidates as sets, evaluates
    them in one batch and keeps the `width` lowest; ties keep generation order (better beam
    first, then lower block). Width 1 is greedy. Cost ≤ N + Σ_{d=2..k} width·(N − d + 1).

    `barriers` as in greedy, relative to each beam's alive blocks. When a budget cannot pay for
    the next depth, every beam is completed along its parent's ranking instead."""

    name = "beam"

    def __init__(self, width: int = 5, barriers: tuple[int, int] | bool = False):
        self.width = width
        self.barriers = barriers

    def _search(self, session: SearchSession, rng: np.random.Generator, prior: np.ndarray | None) -> None:
        if isinstance(self.width, bool) or not isinstance(self.width, (int, np.integer)) or self.width < 1:
            raise BadInput(f"beam width must be a positive integer, not {self.width!r}")
        widths = barrier_widths(self.barriers, session)
        beams: list[Subset] = [()]
        parents: dict[Subset, Subset] = {}
        for depth in range(1, session.k + 1):
            # Each candidate remembers the first (best) beam that generated it.
            generated: dict[Subset, Subset] = {}
            for beam in beams:
                for block in allowed_blocks(beam, session.n_blocks, widths):
                    generated.setdefault(tuple(sorted((*beam, block))), beam)
            candidates = list(generated)
            final = depth == session.k
            if depth > 1 and not step_fits(session, candidates, final):
                completions = [complete(session, parents[beam], beam, widths) for beam in beams]
                session.evaluate([*completions, *candidates] if final else completions)
                return
            losses = session.evaluate(candidates)
            order = sorted(range(len(candidates)), key=lambda c: rank_key(losses[c]))
            beams = [candidates[c] for c in order[: self.width]]
            parents = {beam: generated[beam] for beam in beams}
