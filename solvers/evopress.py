"""EvoPress for whole-block removal (Sieberling et al., ICML 2025; ALGORITHMS.md §4.8).

A (1+λ) evolutionary algorithm on k-subsets with level-switch mutation: one flip removes a
kept block and restores a removed one, so every offspring has exactly k blocks. The original
selects in two stages on fresh random token minibatches (a noisy, multi-fidelity fitness); a
black-box L(S) has one fidelity, so here every offspring is evaluated on the full objective, one
batch per generation, and the best of parent and offspring survives."""

from collections.abc import Callable

import numpy as np

from oracle.errors import BadInput
from oracle.evaluation import rank_key
from oracle.subset import Subset
from solvers.base import Solver
from solvers.session import SearchSession


class EvoPress(Solver):
    """(1+λ) level-switch EA, single-fidelity.

    Options:
        offspring: λ, offspring per generation.
        initial: random k-subsets drawn first; the best becomes the parent.
        generations: generations to run; None → round(k(N − k)/1.5), the original's schedule
            (N=32, k=8 → 128). A budget usually stops the search earlier.
        max_mutations: flips per offspring = min(U{1..max_mutations}, U{1..max_mutations}),
            applied one after another to the offspring as it stands.
        retries: draws allowed per offspring before giving up on finding one that differs from
            the parent and from this generation's other offspring.
    """

    name = "evopress"

    def __init__(self, offspring: int = 32, initial: int = 64, generations: int | None = None,
                 max_mutations: int = 3, retries: int = 100):
        if offspring < 1 or initial < 1 or max_mutations < 1 or retries < 1:
            raise BadInput("offspring, initial, max_mutations and retries must be at least 1")
        if generations is not None and generations < 0:
            raise BadInput(f"generations must be ≥ 0 or None, got {generations}")
        self.offspring = offspring
        self.initial = initial
        self.generations = generations
        self.max_mutations = max_mutations
        self.retries = retries

    def _search(self, session: SearchSession, rng: np.random.Generator, prior: np.ndarray | None) -> None:
        n_blocks, k = session.n_blocks, session.k
        generations = self.generations
        if generations is None:
            generations = round(k * (n_blocks - k) / 1.5)

        candidates = self._distinct(lambda: _uniform(rng, n_blocks, k), self.initial, set())
        losses = session.evaluate(candidates)
        best = min(range(len(candidates)), key=lambda i: rank_key(losses[i]))
        parent, parent_loss = candidates[best], losses[best]

        for _ in range(generations):
            children = self._distinct(lambda: self._mutate(parent, rng, n_blocks), self.offspring, {parent})
            if not children:
                return
            child_losses = session.evaluate(children)
            best = min(range(len(children)), key=lambda i: rank_key(child_losses[i]))
            # Ties go to the offspring, so the search can drift across plateaus.
            if rank_key(child_losses[best]) <= rank_key(parent_loss):
                parent, parent_loss = children[best], child_losses[best]

    def _distinct(self, draw: Callable[[], Subset], count: int, excluded: set[Subset]) -> list[Subset]:
        """Up to `count` distinct draws not in `excluded`, each found within `retries` attempts;
        fewer only when the space of such subsets is (nearly) used up."""
        excluded = set(excluded)
        drawn: list[Subset] = []
        for _ in range(count):
            for _ in range(self.retries):
                subset = draw()
                if subset not in excluded:
                    excluded.add(subset)
                    drawn.append(subset)
                    break
            else:
                break
        return drawn

    def _mutate(self, parent: Subset, rng: np.random.Generator, n_blocks: int) -> Subset:
        """Level-switch flips, each swapping a uniformly chosen kept block into the removed set
        and a uniformly chosen removed block out of it; later flips may undo earlier ones."""
        removed = np.zeros(n_blocks, dtype=bool)
        removed[list(parent)] = True
        flips = min(rng.integers(1, self.max_mutations + 1), rng.integers(1, self.max_mutations + 1))
        for _ in range(flips):
            drop = rng.choice(np.flatnonzero(~removed))
            restore = rng.choice(np.flatnonzero(removed))
            removed[drop] = True
            removed[restore] = False
        return tuple(int(i) for i in np.flatnonzero(removed))


def _uniform(rng: np.random.Generator, n_blocks: int, k: int) -> Subset:
    return tuple(sorted(int(i) for i in rng.choice(n_blocks, size=k, replace=False)))
