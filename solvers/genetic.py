"""Prior-guided genetic algorithm over k-subsets (ALGORITHMS.md §4.4, reconstructed).

Individuals are sorted k-subsets and every operator keeps exactly k blocks, so no individual is
ever repaired. A prior ranks the blocks by a one-shot criterion (removal loss by default);
π_i ∝ exp(−rank_i/τ) biases sampling, crossover fill and mutation towards blocks that are cheap
to remove on their own.

The loop is written here rather than on nevergrad's ask/tell: nevergrad has no fixed-cardinality
subset parametrization (`Choice(repetitions=k)` draws repeated blocks, a constrained `Array` is
made feasible by rejection and a repair sub-optimisation), and its one optimiser that calls a
parameter's own mutate/recombine (`EvolutionStrategy`) fixes truncation selection, round-robin
parents, mutation before recombination, random initial sampling and one-at-a-time asks, none of
which is this algorithm."""

import math
from collections.abc import Callable

import numpy as np

from oracle.errors import BadInput
from oracle.evaluation import rank_key
from oracle.subset import Subset
from solvers.base import Solver
from solvers.criteria import CRITERIA, block_scores
from solvers.session import SearchSession

MUTATION_MODES = ("per_gene", "per_individual")


class GeneticAlgorithm(Solver):
    """Generational GA with elitism, tournament selection, intersection crossover and swap
    mutation on k-subsets, seeded from a per-block prior.

    Options:
        criterion: the per-block scores used as prior when `solve` is given none (see
            `solvers.criteria`; the default removal loss costs N evaluations).
        population: individuals per generation.
        elitism: fraction of the population copied unchanged into the next generation; the
            number of elites is round-half-up(elitism · population) (0.2 · 16 → 3).
        mutation: swap probability, per member ("per_gene") or per child ("per_individual",
            one swap).
        mutation_mode: "per_gene" or "per_individual".
        generations: generations after the initial population.
        tournament: individuals drawn (without replacement) per parent selection.
        temperature: τ of π_i ∝ exp(−rank_i/τ) in units of k ranks (τ = temperature · k), so
            the prior's pull does not depend on N.
        initial_max_swaps: the initial population holds the prior top-k and variants of it
            with m = 1, 2, …, initial_max_swaps members swapped for π-drawn outsiders.
        initial_uniform: uniformly random k-subsets in the initial population.
        retries: draws allowed per child before giving up on finding one that is new (not in
            the population and never evaluated); a generation that finds none ends the search.
    """

    name = "ga"

    def __init__(self, criterion: str = "removal_loss", population: int = 16, elitism: float = 0.2,
                 mutation: float = 0.15, mutation_mode: str = "per_gene", generations: int = 10,
                 tournament: int = 2, temperature: float = 1.0, initial_max_swaps: int = 3,
                 initial_uniform: int = 3, retries: int = 100):
        if criterion not in CRITERIA:
            raise BadInput(f"unknown criterion {criterion!r}; known: {', '.join(CRITERIA)}")
        if mutation_mode not in MUTATION_MODES:
            raise BadInput(f"mutation_mode={mutation_mode!r} is not one of {', '.join(MUTATION_MODES)}")
        if population < 2:
            raise BadInput(f"population must be at least 2, got {population}")
        if not 0.0 <= elitism < 1.0:
            raise BadInput(f"elitism must be in [0, 1), got {elitism}")
        if not 0.0 <= mutation <= 1.0:
            raise BadInput(f"mutation must be a probability, got {mutation}")
        if not 1 <= tournament <= population:
            raise BadInput(f"tournament must be in 1..population={population}, got {tournament}")
        if not temperature > 0.0:
            raise BadInput(f"temperature must be positive, got {temperature}")
        if initial_max_swaps < 1 or retries < 1:
            raise BadInput(f"initial_max_swaps and retries must be ≥ 1, got {initial_max_swaps}, {retries}")
        if initial_uniform < 0 or generations < 0:
            raise BadInput(f"initial_uniform and generations must be ≥ 0, got {initial_uniform}, {generations}")
        self.criterion = criterion
        self.population = population
        self.elitism = elitism
        self.mutation = mutation
        self.mutation_mode = mutation_mode
        self.generations = generations
        self.tournament = tournament
        self.temperature = temperature
        self.initial_max_swaps = initial_max_swaps
        self.initial_uniform = initial_uniform
        self.retries = retries

    def _search(self, session: SearchSession, rng: np.random.Generator, prior: np.ndarray | None) -> None:
        if prior is None:
            prior = block_scores(session, self.criterion)
        operators = SubsetOperators(session.n_blocks, session.k, prior, self.temperature * session.k, rng)
        seen: set[Subset] = set()

        population = self._initial_population(operators, seen)
        losses = session.evaluate(population)
        n_elites = min(math.floor(self.elitism * self.population + 0.5), self.population - 1, len(population))
        for _ in range(self.generations):
            order = sorted(range(len(population)), key=lambda i: rank_key(losses[i]))
            population = [population[i] for i in order]
            losses = [losses[i] for i in order]
            children = self._offspring(population, losses, self.population - n_elites, operators, seen)
            if not children:
                return
            population = population[:n_elites] + children
            losses = losses[:n_elites] + session.evaluate(children)

    def _initial_population(self, operators: "SubsetOperators", seen: set[Subset]) -> list[Subset]:
        """Prior top-k first (so the prior's own answer is evaluated even on a tiny budget),
        then m-swap variants of it cycling m = 1..initial_max_swaps, then uniform draws."""
        top = operators.prior_top()
        population = [top]
        seen.add(top)
        n_uniform = min(self.initial_uniform, self.population - 1)
        for index in range(self.population - 1 - n_uniform):
            swaps = 1 + index % self.initial_max_swaps
            self._add_new(population, seen, lambda: operators.swap_random_members(top, swaps))
        for _ in range(n_uniform):
            self._add_new(population, seen, operators.uniform)
        return population

    def _offspring(self, population: list[Subset], losses: list[float], count: int,
                   operators: "SubsetOperators", seen: set[Subset]) -> list[Subset]:
        """Up to `count` new children: tournament parents, crossover, then mutation."""
        keys = [rank_key(loss) for loss in losses]
        rng = operators.rng

        def parent() -> Subset:
            drawn = rng.choice(len(population), size=min(self.tournament, len(population)), replace=False)
            return population[min(drawn, key=lambda i: (keys[i], i))]

        def child() -> Subset:
            offspring = operators.crossover(parent(), parent())
            if self.mutation_mode == "per_gene":
                return operators.mutate_per_gene(offspring, self.mutation)
            if rng.random() < self.mutation:
                return operators.swap_random_members(offspring, 1)
            return offspring

        children: list[Subset] = []
        for _ in range(count):
            if not self._add_new(children, seen, child):
                break
        return children

    def _add_new(self, individuals: list[Subset], seen: set[Subset], draw: Callable[[], Subset]) -> bool:
        """Append the first of up to `retries` draws that is not in `seen`; False if none was."""
        for _ in range(self.retries):
            subset = draw()
            if subset not in seen:
                seen.add(subset)
                individuals.append(subset)
                return True
        return False


class SubsetOperators:
    """Sampling, crossover and mutation on sorted k-subsets of range(n_blocks), all keeping
    exactly k members, with outsiders drawn by the prior weights π."""

    def __init__(self, n_blocks: int, k: int, prior: np.ndarray, temperature: float,
                 rng: np.random.Generator):
        self.n_blocks = n_blocks
        self.k = k
        self.rng = rng
        # Rank 0 is the most removable block; NaN/inf scores rank last, ties go to the lower index.
        keys = [(rank_key(float(score)), block) for block, score in enumerate(prior)]
        self.by_rank = np.array(sorted(range(n_blocks), key=lambda block: keys[block]))
        ranks = np.empty(n_blocks)
        ranks[self.by_rank] = np.arange(n_blocks)
        self.weights = np.exp(-ranks / temperature)

    def prior_top(self) -> Subset:
        return _canonical(self.by_rank[: self.k])

    def uniform(self) -> Subset:
        return _canonical(self.rng.choice(self.n_blocks, size=self.k, replace=False))

    def crossover(self, first: Subset, second: Subset) -> Subset:
        """The parents' common blocks, filled to k by π-weighted draws from the blocks only
        one parent has (there are always enough: two k-subsets differ in 2·(k − |common|))."""
        common = sorted(set(first) & set(second))
        differing = np.array(sorted(set(first) ^ set(second)), dtype=int)
        fill = self._draw(differing, self.k - len(common))
        return _canonical(np.concatenate([common, fill]))

    def mutate_per_gene(self, subset: Subset, rate: float) -> Subset:
        """Swap each member independently with probability `rate` for a π-drawn outsider."""
        members = np.array(subset)
        leaving = members[self.rng.random(self.k) < rate]
        return self._swap(subset, leaving)

    def swap_random_members(self, subset: Subset, count: int) -> Subset:
        """Swap `count` uniformly chosen members for π-drawn outsiders."""
        count = min(count, self.k, self.n_blocks - self.k)
        leaving = self.rng.choice(np.array(subset), size=count, replace=False)
        return self._swap(subset, leaving)

    def _swap(self, subset: Subset, leaving: np.ndarray) -> Subset:
        leaving = leaving[: self.n_blocks - self.k]
        if leaving.size == 0:
            return subset
        outsiders = np.setdiff1d(np.arange(self.n_blocks), subset)
        staying = np.setdiff1d(subset, leaving)
        return _canonical(np.concatenate([staying, self._draw(outsiders, leaving.size)]))

    def _draw(self, candidates: np.ndarray, count: int) -> np.ndarray:
        """`count` distinct candidates, drawn one after another with probability ∝ π."""
        if count == 0:
            return np.array([], dtype=int)
        weights = self.weights[candidates]
        return self.rng.choice(candidates, size=count, replace=False, p=weights / weights.sum())


def _canonical(blocks) -> Subset:
    return tuple(sorted(int(block) for block in blocks))
