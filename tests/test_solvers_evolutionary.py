"""The genetic algorithm ("ga") and EvoPress ("evopress") on synthetic problems with known optima."""

import numpy as np
import pytest

import problems
import solvers
from oracle.errors import BadInput
from tests.solver_problems import recorded

QUADRATIC = "synthetic/quadratic-N16-seed0"
HIGHER_ORDER = "synthetic/higher-order-N20-seed3"
EVOLUTIONARY = ("ga", "evopress")


def optimum(name: str, k: int):
    return problems.get(name).oracle.function.exact_optimum(k)


@pytest.mark.parametrize("solver", EVOLUTIONARY)
def test_same_seed_gives_the_same_search(solver):
    problem = problems.get(HIGHER_ORDER)
    first = solvers.get(solver).solve(problem, 5, seed=7)
    second = solvers.get(solver).solve(problem, 5, seed=7)
    assert first.subset == second.subset and first.loss == second.loss
    assert [e.subset for e in first.trace] == [e.subset for e in second.trace]


@pytest.mark.parametrize("solver", EVOLUTIONARY)
def test_different_seeds_search_differently(solver):
    problem = problems.get(HIGHER_ORDER)
    first, second = (solvers.get(solver).solve(problem, 5, seed=seed) for seed in (0, 1))
    assert [e.subset for e in first.trace] != [e.subset for e in second.trace]


@pytest.mark.parametrize("mutation_mode", ["per_gene", "per_individual"])
def test_ga_evaluates_only_k_subsets_besides_the_prior_singles(mutation_mode):
    problem = problems.get(HIGHER_ORDER)
    result = solvers.get("ga", mutation_mode=mutation_mode).solve(problem, 4, seed=1)
    sizes = [len(entry.subset) for entry in result.trace]
    assert sizes[: problem.n_blocks] == [1] * problem.n_blocks
    singles = sorted(entry.subset for entry in result.trace[: problem.n_blocks])
    assert singles == [(i,) for i in range(problem.n_blocks)]
    assert set(sizes[problem.n_blocks:]) == {4}


def test_ga_given_a_prior_evaluates_only_k_subsets():
    problem = problems.get(HIGHER_ORDER)
    prior = np.arange(problem.n_blocks, dtype=float)
    result = solvers.get("ga").solve(problem, 4, seed=1, prior=prior)
    assert {len(entry.subset) for entry in result.trace} == {4}
    assert result.trace[0].subset == (0, 1, 2, 3)


def test_evopress_evaluates_only_k_subsets():
    result = solvers.get("evopress").solve(problems.get(HIGHER_ORDER), 5, seed=2)
    assert {len(entry.subset) for entry in result.trace} == {5}


@pytest.mark.parametrize("name", [QUADRATIC, HIGHER_ORDER])
def test_ga_with_the_optimum_as_a_strong_prior_finds_it(name):
    problem = problems.get(name)
    best_subset, best_loss = optimum(name, 4)
    prior = np.ones(problem.n_blocks)
    prior[list(best_subset)] = 0.0
    for seed in range(3):
        result = solvers.get("ga").solve(problem, 4, seed=seed, prior=prior)
        assert result.subset == best_subset
        assert result.loss == pytest.approx(best_loss)


def test_evopress_finds_the_exact_optimum_of_a_quadratic_problem_for_most_seeds():
    best_subset, _ = optimum(QUADRATIC, 4)
    problem = problems.get(QUADRATIC)
    found = sum(solvers.get("evopress").solve(problem, 4, budget=1000, seed=seed).subset == best_subset
                for seed in range(8))
    assert found >= 6


@pytest.mark.parametrize("solver", EVOLUTIONARY)
@pytest.mark.parametrize("budget", [25, 45, 100])
def test_budget_is_respected(solver, budget):
    result = solvers.get(solver).solve(problems.get(HIGHER_ORDER), 4, budget=budget, seed=3)
    assert result.n_evaluations <= budget
    assert len(result.subset) == 4


def test_ga_without_a_prior_needs_a_budget_beyond_the_singles():
    with pytest.raises(BadInput, match="budget 20"):
        solvers.get("ga").solve(problems.get(HIGHER_ORDER), 4, budget=20, seed=0)


def test_ga_evaluates_each_generation_in_one_batch_and_never_repeats_a_subset():
    problem = recorded(HIGHER_ORDER)
    result = solvers.get("ga", generations=6).solve(problem, 4, seed=0)
    # N singles, the initial population, then 16 − 3 elites' worth of new children per generation.
    assert problem.oracle.batches == [problem.n_blocks, 16] + [13] * 6
    assert result.n_requests == result.n_evaluations


def test_ga_keeps_three_elites_of_sixteen():
    problem = recorded(HIGHER_ORDER)
    solvers.get("ga", population=16, elitism=0.2, generations=1).solve(problem, 4, seed=0)
    assert problem.oracle.batches[-1] == 13


def test_evopress_evaluates_each_generation_in_one_batch():
    problem = recorded(HIGHER_ORDER)
    solvers.get("evopress", offspring=8, initial=10, generations=5).solve(problem, 4, seed=0)
    assert problem.oracle.batches[0] == 10
    assert len(problem.oracle.batches) == 6
    assert all(1 <= size <= 8 for size in problem.oracle.batches[1:])


def test_evopress_default_generations_follow_k_times_n_minus_k_over_one_and_a_half():
    problem = recorded(QUADRATIC)
    solvers.get("evopress", offspring=2, initial=4).solve(problem, 4, seed=0)
    assert len(problem.oracle.batches) - 1 == round(4 * 12 / 1.5)


def test_evopress_parent_never_gets_worse():
    problem = problems.get(HIGHER_ORDER)
    result = solvers.get("evopress", generations=20).solve(problem, 5, seed=4)
    initial_best = min(entry.loss for entry in result.trace[:64])
    assert result.loss <= initial_best


@pytest.mark.parametrize("solver, config", [
    ("ga", {}),
    ("ga", {"population": 8, "mutation_mode": "per_individual", "temperature": 0.5}),
    ("evopress", {}),
    ("evopress", {"offspring": 16, "generations": 3}),
])
def test_config_is_recorded_verbatim(solver, config):
    instance = solvers.get(solver, **config)
    result = instance.solve(problems.get(QUADRATIC), 4, seed=0)
    assert result.config == instance.get_config()
    for key, value in config.items():
        assert result.config[key] == value


@pytest.mark.parametrize("solver, config", [
    ("ga", {"mutation_mode": "per_block"}),
    ("ga", {"criterion": "hessian"}),
    ("ga", {"elitism": 1.0}),
    ("ga", {"temperature": 0.0}),
    ("evopress", {"offspring": 0}),
    ("evopress", {"generations": -1}),
])
def test_bad_options_are_refused(solver, config):
    with pytest.raises(BadInput):
        solvers.get(solver, **config)


@pytest.mark.parametrize("solver", EVOLUTIONARY)
def test_tiny_search_spaces_end_without_repeating_forever(solver):
    problem = problems.get("synthetic/quadratic-N5-seed0")
    result = solvers.get(solver).solve(problem, 2, seed=0)
    assert result.subset == optimum("synthetic/quadratic-N5-seed0", 2)[0]
