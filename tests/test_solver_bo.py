"""Bayesian optimisation ("bo"): feasibility, determinism, budget, quality against the exact
optimum and random search, and a positive semi-definite set kernel."""

import math

import numpy as np
import pytest
import torch
from botorch.acquisition.analytic import LogExpectedImprovement
from botorch.models import SingleTaskGP

import problems
import solvers
from oracle.errors import BadInput
from solvers.bayesian import SubsetKernel, log_expected_improvement
from tests.solver_problems import trace_of


def random_masks(rng: np.random.Generator, n_blocks: int, k: int, count: int) -> torch.Tensor:
    masks = np.zeros((count, n_blocks))
    for row in masks:
        row[rng.choice(n_blocks, size=k, replace=False)] = 1.0
    return torch.as_tensor(masks, dtype=torch.float64)


def test_same_seed_gives_same_trace_and_another_seed_another():
    problem = problems.get("synthetic/higher-order-N12-seed1")
    first = solvers.get("bo", trials=20).solve(problem, 3, seed=4)
    again = solvers.get("bo", trials=20).solve(problems.get("synthetic/higher-order-N12-seed1"), 3, seed=4)
    other = solvers.get("bo", trials=20).solve(problem, 3, seed=5)
    assert trace_of(again) == trace_of(first)
    assert trace_of(other) != trace_of(first)


def test_without_prior_evaluates_the_singles_then_only_k_subsets():
    problem = problems.get("synthetic/quadratic-N12-seed2")
    result = solvers.get("bo", trials=30).solve(problem, 4, seed=0)
    subsets = [entry.subset for entry in result.trace]
    assert subsets[:12] == [(i,) for i in range(12)]
    assert all(len(subset) == 4 for subset in subsets[12:])
    assert len(set(subsets)) == len(subsets) == result.n_evaluations == 12 + 30


def test_with_a_prior_evaluates_only_k_subsets_starting_with_the_prior_top_k():
    problem = problems.get("synthetic/quadratic-N12-seed2")
    prior = np.array([5.0, 0.3, 0.1, 2.0, 0.2, 9.0, 0.4, 3.0, 1.0, 7.0, 6.0, 8.0])
    result = solvers.get("bo", trials=30).solve(problem, 4, seed=0, prior=prior)
    assert result.trace[0].subset == (1, 2, 4, 6)
    assert all(len(entry.subset) == 4 for entry in result.trace)
    assert result.n_evaluations == 30


def test_budget_caps_the_evaluations():
    problem = problems.get("synthetic/quadratic-N12-seed2")
    result = solvers.get("bo", trials=40).solve(problem, 4, budget=25, seed=0)
    assert result.n_evaluations == 25
    assert len(result.subset) == 4


def test_reaches_the_exact_optimum_and_beats_random_search_on_a_quadratic_problem():
    problem = problems.get("synthetic/quadratic-N14-seed1")
    _, optimum = problem.oracle.function.exact_optimum(4)
    for seed in (0, 1):
        result = solvers.get("bo", trials=60).solve(problem, 4, seed=seed)
        random_losses = [solvers.get("random").solve(problem, 4, budget=result.n_evaluations, seed=s).loss
                         for s in range(5)]
        assert result.loss - optimum <= 1e-3
        assert result.loss < np.mean(random_losses)


def test_a_space_smaller_than_the_trials_is_exhausted_and_certified():
    problem = problems.get("synthetic/higher-order-N6-seed0")
    result = solvers.get("bo", trials=30, initial=4).solve(problem, 2, seed=0)
    assert result.n_evaluations == 6 + math.comb(6, 2)
    assert result.certified
    assert result.loss == problem.oracle.function.exact_optimum(2)[1]


@pytest.mark.parametrize("options", [
    {"kernel": "jaccard"},
    {"acquisition": "lcb"},
    {"batch_size": 3, "refit_every": 2},
    {"prior_mean": False, "prior_in_initial": False},
])
def test_every_option_keeps_k_blocks_and_the_trial_count(options):
    problem = problems.get("synthetic/higher-order-N12-seed3")
    result = solvers.get("bo", trials=20, **options).solve(problem, 3, seed=0)
    assert all(len(entry.subset) == 3 for entry in result.trace[12:])
    assert result.n_evaluations == 12 + 20
    assert result.config == {**solvers.get("bo").get_config(), "trials": 20, **options}


@pytest.mark.parametrize("options", [{"kernel": "rbf"}, {"acquisition": "pi"}, {"batch_size": 0},
                                     {"trials": 2.5}, {"temperature": 0.0}])
def test_bad_options_are_refused(options):
    with pytest.raises(BadInput):
        solvers.get("bo", **options)


@pytest.mark.parametrize("distance", ["hamming", "jaccard"])
@pytest.mark.parametrize("decay", [0.1, 3.0, 40.0])
def test_set_kernels_are_positive_semidefinite(distance, decay):
    kernel = SubsetKernel(5, distance).to(torch.float64)
    kernel.decay = decay
    masks = random_masks(np.random.default_rng(0), 16, 5, 80)
    with torch.no_grad():
        matrix = kernel(masks).to_dense()
        diagonal = kernel(masks, diag=True)
    assert torch.linalg.eigvalsh(matrix).min() >= -1e-8
    assert torch.allclose(diagonal, torch.ones(80, dtype=torch.float64))
    assert torch.allclose(matrix.diagonal(), diagonal)


def test_set_kernels_depend_on_the_symmetric_difference_as_specified():
    first, second = torch.zeros(1, 10, dtype=torch.float64), torch.zeros(1, 10, dtype=torch.float64)
    first[0, [0, 1, 2, 3]] = 1.0
    second[0, [2, 3, 4, 5]] = 1.0  # |S△S'| = 4, |S∪S'| = 6
    for distance, expected in (("hamming", math.exp(-2.0 * 4 / 8)), ("jaccard", math.exp(-2.0 * 4 / 6))):
        kernel = SubsetKernel(4, distance).to(torch.float64)
        kernel.decay = 2.0
        with torch.no_grad():
            assert float(kernel(first, second).to_dense()) == pytest.approx(expected, rel=1e-12)


def test_leaves_torch_threads_and_random_state_as_they_were():
    threads = torch.get_num_threads()
    state = torch.get_rng_state()
    solvers.get("bo", trials=15).solve(problems.get("synthetic/quadratic-N12-seed0"), 3, seed=0)
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.get_rng_state(), state)


def test_log_expected_improvement_matches_botorch_far_into_the_tail():
    torch.manual_seed(0)
    train_x = torch.rand(20, 3, dtype=torch.float64)
    model = SingleTaskGP(train_x, torch.sin(6 * train_x).sum(-1, keepdim=True))
    model.eval()
    candidates = torch.rand(300, 3, dtype=torch.float64) * 3 - 1
    with torch.no_grad():
        posterior = model.posterior(candidates)
        mean, sigma = posterior.mean.squeeze(-1), posterior.variance.squeeze(-1).sqrt()
        for best in (-10.0, -3.0, 0.0, 3.0):  # u = (best − μ)/σ from about −60 to +18
            reference = LogExpectedImprovement(model, best_f=best, maximize=False)(candidates.unsqueeze(1))
            ours = log_expected_improvement(mean, sigma, best)
            assert torch.allclose(ours, reference, rtol=1e-6, atol=1e-9)


def test_prior_singles_count_as_observations_when_k_is_one():
    problem = problems.get("synthetic/quadratic-N12-seed0")
    result = solvers.get("bo", trials=5).solve(problem, 1, seed=0)
    assert result.n_evaluations == 12
    assert result.certified and result.loss == problem.oracle.function.exact_optimum(1)[1]
