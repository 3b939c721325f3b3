"""Bayesian optimisation ("bo"): feasibility, determinism, budget, quality against the exact
optimum and random search, and a positive semi-definite set kernel."""

import math

import numpy as np
import pytest
import torch
from botorch.acquisition.analytic import LogExpectedImprovement
from botorch.models import SingleTaskGP
from gpytorch.kernels import Kernel, ScaleKernel
from gpytorch.means import ZeroMean

import problems
import solvers
from oracle.errors import BadInput
from solvers.bayesian import (
    DECAY_GRID,
    NOISE_RATIO_GRID,
    Hyperparameters,
    SubsetGP,
    SubsetKernel,
    _rounded,
    log_expected_improvement,
    select_hyperparameters,
)
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
    kernel = SubsetKernel(5, distance)
    masks = random_masks(np.random.default_rng(0), 16, 5, 80)
    matrix = kernel(masks, masks, decay)
    assert torch.linalg.eigvalsh(matrix).min() >= -1e-8
    assert torch.allclose(matrix.diagonal(), torch.ones(80, dtype=torch.float64))


def test_set_kernels_depend_on_the_symmetric_difference_as_specified():
    first, second = torch.zeros(1, 10, dtype=torch.float64), torch.zeros(1, 10, dtype=torch.float64)
    first[0, [0, 1, 2, 3]] = 1.0
    second[0, [2, 3, 4, 5]] = 1.0  # |S△S'| = 4, |S∪S'| = 6
    for distance, expected in (("hamming", math.exp(-2.0 * 4 / 8)), ("jaccard", math.exp(-2.0 * 4 / 6))):
        assert float(SubsetKernel(4, distance)(first, second, 2.0)) == pytest.approx(expected, rel=1e-12)


class GpytorchSubsetKernel(Kernel):
    """The same kernel inside gpytorch, so that botorch's SingleTaskGP can serve as reference."""

    def __init__(self, kernel: SubsetKernel, decay: float):
        super().__init__()
        self.kernel, self.decay = kernel, decay

    def forward(self, x1, x2, diag=False, **params):
        matrix = self.kernel(x1, x2, self.decay)
        return matrix.diagonal(dim1=-2, dim2=-1) if diag else matrix


def observations(seed: int, count: int):
    rng = np.random.default_rng(seed)
    train_x = random_masks(rng, 14, 4, count)
    weights = torch.as_tensor(rng.normal(size=14))
    train_y = train_x @ weights + 0.3 * torch.as_tensor(rng.normal(size=count))
    return train_x, (train_y - train_y.mean()) / train_y.std(), weights


@pytest.mark.parametrize("distance", ["hamming", "jaccard"])
def test_posterior_marginals_equal_botorchs_single_task_gp(distance):
    train_x, train_y, weights = observations(1, 40)
    kernel = SubsetKernel(4, distance)
    chosen = Hyperparameters(decay=3.0, noise_ratio=0.01, outputscale=1.7, coefficients=(0.2, 0.5))
    features = lambda x: torch.cat([torch.ones(len(x), 1, dtype=torch.float64), (x @ weights).unsqueeze(-1)], -1)
    ours = SubsetGP(kernel, chosen, train_x, train_y, features)
    # botorch's GP on the targets less the prior mean, with that mean added back.
    offset = lambda x: features(x) @ torch.tensor(chosen.coefficients, dtype=torch.float64)
    covariance = ScaleKernel(GpytorchSubsetKernel(kernel, chosen.decay))
    covariance.outputscale = chosen.outputscale
    noise = torch.full((40, 1), chosen.outputscale * chosen.noise_ratio, dtype=torch.float64)
    reference = SingleTaskGP(train_x, (train_y - offset(train_x)).unsqueeze(-1), train_Yvar=noise,
                             covar_module=covariance, mean_module=ZeroMean(), outcome_transform=None)
    reference.eval()
    candidates = random_masks(np.random.default_rng(2), 14, 4, 300)
    mean, variance = ours.marginals(candidates)
    with torch.no_grad():
        posterior = reference.posterior(candidates)
    assert torch.allclose(mean, posterior.mean.squeeze(-1) + offset(candidates), rtol=1e-9, atol=1e-10)
    # gpytorch's predictive variance goes through its own caches: 2e-9 apart here.
    assert torch.allclose(variance, posterior.variance.squeeze(-1), rtol=1e-7, atol=1e-8)


def test_hyperparameters_are_the_grid_maximum_of_the_profiled_posterior_density():
    train_x, train_y, weights = observations(3, 60)
    kernel = SubsetKernel(4)
    features = torch.cat([torch.ones(60, 1, dtype=torch.float64), (train_x @ weights).unsqueeze(-1)], -1)
    chosen = select_hyperparameters(kernel.distances(train_x, train_x), train_y, features)

    def log_likelihood(decay, ratio, scale, coefficients):
        covariance = scale * (kernel(train_x, train_x, decay) + ratio * torch.eye(60, dtype=torch.float64))
        mean = features @ torch.tensor(coefficients, dtype=torch.float64)
        return float(torch.distributions.MultivariateNormal(mean, covariance).log_prob(train_y))

    def score(decay, ratio, scale, coefficients):
        priors = (torch.distributions.Gamma(3.0, 0.5).log_prob(torch.tensor(decay, dtype=torch.float64))
                  + torch.distributions.Gamma(2.0, 0.15).log_prob(torch.tensor(scale, dtype=torch.float64)))
        return log_likelihood(decay, ratio, scale, coefficients) + float(priors)

    # Profiled β and σ² maximise the likelihood at the chosen grid point ...
    point = (chosen.decay, chosen.noise_ratio)
    best = log_likelihood(*point, chosen.outputscale, chosen.coefficients)
    for nudge in (0.99, 1.01):
        assert log_likelihood(*point, chosen.outputscale * nudge, chosen.coefficients) < best
        assert log_likelihood(*point, chosen.outputscale, (chosen.coefficients[0] + nudge - 1, chosen.coefficients[1])) < best
        assert log_likelihood(*point, chosen.outputscale, (chosen.coefficients[0], chosen.coefficients[1] * nudge)) < best
    # ... and no other grid point scores higher with its own profiled β and σ².
    top = score(*point, chosen.outputscale, chosen.coefficients)
    for decay in DECAY_GRID:
        for ratio in NOISE_RATIO_GRID:
            other = select_hyperparameters(kernel.distances(train_x, train_x), train_y, features, [decay], [ratio])
            assert score(decay, ratio, other.outputscale, other.coefficients) <= top + 1e-6


def test_last_bit_noise_in_the_targets_does_not_move_the_choices():
    train_x, train_y, weights = observations(4, 80)
    kernel = SubsetKernel(4)
    features = torch.cat([torch.ones(80, 1, dtype=torch.float64), (train_x @ weights).unsqueeze(-1)], -1)
    noisy_y = train_y * (1 + 1e-13 * torch.as_tensor(np.random.default_rng(5).normal(size=80)))
    chosen = [select_hyperparameters(kernel.distances(train_x, train_x), y, features) for y in (train_y, noisy_y)]
    assert (chosen[0].decay, chosen[0].noise_ratio) == (chosen[1].decay, chosen[1].noise_ratio)
    candidates = random_masks(np.random.default_rng(6), 14, 4, 500)
    picks = []
    for y, hyperparameters in zip((train_y, noisy_y), chosen):
        mean, variance = SubsetGP(kernel, hyperparameters, train_x, y, lambda x: torch.cat(
            [torch.ones(len(x), 1, dtype=torch.float64), (x @ weights).unsqueeze(-1)], -1)).marginals(candidates)
        picks.append(int(np.argmax(_rounded(log_expected_improvement(mean, variance.sqrt(), float(y.min()))))))
    assert picks[0] == picks[1]


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
