"""CBO: the quadratic MILP against brute force, and the black-box solver's model, cost and
budget behaviour on synthetic problems."""

import itertools
import math

import numpy as np
import pytest

import problems
import solvers
from oracle.errors import BadInput
from oracle.subset import Subset
from solvers.cbo import model_pairs, solve_quadratic
from solvers.session import SearchSession
from tests.solver_problems import recorded


def random_quadratic(n_blocks: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    upper = np.triu(rng.normal(size=(n_blocks, n_blocks)), 1)
    return rng.normal(size=n_blocks), upper + upper.T


def brute_force(h: np.ndarray, J: np.ndarray, k: int) -> list[tuple[float, Subset]]:
    energies = []
    for subset in itertools.combinations(range(h.size), k):
        index = list(subset)
        energies.append((float(h[index].sum() + np.triu(J[np.ix_(index, index)], 1).sum()), subset))
    return sorted(energies)


# --- solve_quadratic ----------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_solve_quadratic_finds_the_brute_force_optimum_and_the_next_lowest_states(seed):
    h, J = random_quadratic(12, seed)
    states = solve_quadratic(h, J, 4, 10)
    expected = brute_force(h, J, 4)[:10]
    assert states[0][1] == pytest.approx(expected[0][0], abs=1e-9)
    assert [energy for _, energy in states] == pytest.approx([energy for energy, _ in expected], abs=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_solve_quadratic_states_are_distinct_k_subsets_in_non_decreasing_energy(seed):
    h, J = random_quadratic(12, seed)
    states = solve_quadratic(h, J, 4, 10)
    subsets = [subset for subset, _ in states]
    energies = [energy for _, energy in states]
    assert len(set(subsets)) == len(subsets) == 10
    assert all(len(subset) == 4 and list(subset) == sorted(subset) for subset in subsets)
    assert energies == sorted(energies)


def test_solve_quadratic_returns_every_subset_when_fewer_exist_than_asked():
    h, J = random_quadratic(5, 0)
    states = solve_quadratic(h, J, 4, 10)
    assert sorted(subset for subset, _ in states) == list(itertools.combinations(range(5), 4))


def test_solve_quadratic_keeps_non_finite_terms_out_as_a_finite_penalty():
    h, J = random_quadratic(10, 1)
    h[2] = -math.inf  # would be the best block if taken at face value
    J[5, 7] = J[7, 5] = math.nan
    states = solve_quadratic(h, J, 3, 5)
    assert all(math.isfinite(energy) for _, energy in states)
    assert all(2 not in subset and not {5, 7} <= set(subset) for subset, _ in states)


def test_solve_quadratic_with_no_time_left_returns_no_states():
    h, J = random_quadratic(10, 2)
    assert solve_quadratic(h, J, 3, 5, time_limit_s=0.0) == []


# --- the solver ---------------------------------------------------------------------------


@pytest.mark.parametrize("name, k", [
    ("synthetic/quadratic-N14-seed0", 4),
    ("synthetic/quadratic-N16-seed1", 5),
    ("synthetic/quadratic-N20-seed3", 5),
])
def test_finds_the_exact_optimum_of_a_quadratic_problem_at_the_pair_cost(name, k):
    problem = problems.get(name)
    n_blocks = problem.n_blocks
    result = solvers.get("cbo").solve(problem, k)
    assert (result.subset, result.loss) == problem.oracle.function.exact_optimum(k)
    model_cost = 1 + n_blocks + n_blocks * (n_blocks - 1) // 2
    assert model_cost < result.n_evaluations <= model_cost + 10


def test_pairs_model_is_the_exact_expansion_of_a_quadratic_loss():
    problem = problems.get("synthetic/quadratic-N14-seed2")
    function = problem.oracle.function
    h, J = solvers.get("cbo").energy_model(SearchSession(problem, 4), np.random.default_rng(0))
    assert h == pytest.approx(function.h, abs=1e-9)
    assert J == pytest.approx(function.J, abs=1e-9)


def test_model_is_requested_in_two_batches_and_the_states_in_one():
    problem = recorded("synthetic/quadratic-N14-seed0")
    solvers.get("cbo", excited_states=7).solve(problem, 4)
    batches = problem.oracle.batches[:3]
    assert batches == [1 + 14, 14 * 13 // 2, 7] and len(problem.oracle.batches) <= 4  # + base_loss()


def test_band_estimates_only_near_pairs_and_zeroes_the_others():
    problem = problems.get("synthetic/quadratic-N14-seed2")
    session = SearchSession(problem, 4)
    h, J = solvers.get("cbo", band=2).energy_model(session, np.random.default_rng(0))
    pairs = [entry.subset for entry in session.trace if len(entry.subset) == 2]
    assert pairs == model_pairs(14, 2) and all(j - i <= 2 for i, j in pairs)
    distance = np.abs(np.subtract.outer(np.arange(14), np.arange(14)))
    assert np.all(J[distance > 2] == 0)
    assert J[distance <= 2] == pytest.approx(problem.oracle.function.J[distance <= 2], abs=1e-9)
    assert session.evaluations == 1 + 14 + len(pairs)


def test_linear_term_false_drops_h_and_keeps_J():
    problem = problems.get("synthetic/quadratic-N14-seed2")
    rng = np.random.default_rng(0)
    h, J = solvers.get("cbo", linear_term=False).energy_model(SearchSession(problem, 4), rng)
    assert np.all(h == 0)
    assert J == pytest.approx(problem.oracle.function.J, abs=1e-9)


def test_ridge_model_costs_singles_samples_and_states():
    problem = problems.get("synthetic/higher-order-N14-seed1")
    result = solvers.get("cbo", model="ridge", ridge_samples=40).solve(problem, 4)
    assert 1 + 14 + 40 < result.n_evaluations <= 1 + 14 + 40 + 10


def test_ridge_model_fits_a_quadratic_loss_closely():
    problem = problems.get("synthetic/quadratic-N12-seed3")
    function = problem.oracle.function
    session = SearchSession(problem, 3)
    h, J = solvers.get("cbo", model="ridge", ridge_samples=200, ridge_alpha=1e-6).energy_model(
        session, np.random.default_rng(0)
    )
    masks = function.masks([entry.subset for entry in session.trace])
    fitted = masks @ h + 0.5 * np.einsum("mi,mi->m", masks @ J, masks)
    assert fitted + function.constant == pytest.approx([entry.loss for entry in session.trace], abs=1e-3)


@pytest.mark.parametrize("budget", [1 + 16, 1 + 16 + 1, 60, 1 + 16 + 120])
def test_a_budget_below_the_pair_cost_still_returns_a_k_subset(budget):
    problem = problems.get("synthetic/quadratic-N16-seed0")
    result = solvers.get("cbo").solve(problem, 4, budget=budget)
    assert len(result.subset) == 4 and result.n_evaluations <= budget


def test_a_budget_of_one_plus_n_buys_the_one_shot_top_k():
    problem = problems.get("synthetic/quadratic-N16-seed0")
    result = solvers.get("cbo").solve(problem, 4, budget=17)
    singles = [problem.loss((i,)) for i in range(16)]
    assert result.subset == tuple(sorted(np.argsort(singles, kind="stable")[:4].tolist()))


def test_a_budget_below_one_plus_n_sees_no_k_subset():
    with pytest.raises(BadInput, match="before any 4-subset"):
        solvers.get("cbo").solve(problems.get("synthetic/quadratic-N16-seed0"), 4, budget=16)


def test_with_no_time_for_the_milp_the_one_shot_top_k_is_evaluated():
    problem = problems.get("synthetic/quadratic-N14-seed0")
    result = solvers.get("cbo", time_limit_s=0.0).solve(problem, 4)
    assert result.n_evaluations == 1 + 14 + 14 * 13 // 2 + 1


@pytest.mark.parametrize("config", [
    {"model": "cubic"}, {"excited_states": 0}, {"band": 0}, {"ridge_alpha": 0.0}, {"time_limit_s": -1.0},
])
def test_bad_options_are_refused(config):
    with pytest.raises(BadInput):
        solvers.get("cbo", **config).solve(problems.get("synthetic/quadratic-N12-seed0"), 3)
