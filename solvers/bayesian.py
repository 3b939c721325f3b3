"""Prior-guided Bayesian optimisation over k-subsets (ALGORITHMS.md §4.5, reconstructed).

A Gaussian process over the 0/1 masks of evaluated k-subsets, with a set kernel that depends
only on the symmetric difference of two subsets and a mean that is linear in the summed prior
scores of the removed blocks, proposes each next subset by maximising expected improvement over
a candidate pool that only ever holds k-subsets (swap neighbours of the best subsets found and
prior-weighted random subsets). The GP's linear algebra is torch's, the expected improvement
uses botorch's numerically safe normal functions, and the posterior equals that of botorch's
SingleTaskGP at the same hyperparameters (a test compares them). torch is imported at module
top because this module is imported only when "bo" is requested.
"""

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch
from botorch.utils.probability.utils import log_erfcx, log_phi, ndtr, phi
from botorch.utils.safe_math import log1mexp

from oracle.errors import BadInput
from oracle.evaluation import rank_key
from solvers.base import Solver
from solvers.session import SearchSession

KERNELS = ("hamming", "jaccard")
ACQUISITIONS = ("ei", "lcb")
# Floor of the posterior variance (standardised units) before taking σ.
MIN_VARIANCE = 1e-12
# The hyperparameter grid of `select_hyperparameters`: kernel decay rates λ from 1/4 to 64 and
# noise-to-signal ratios ν/σ² from 1e-4 to 1, log-spaced.
DECAY_GRID = tuple(2.0 ** (half / 2) for half in range(-4, 13))
NOISE_RATIO_GRID = tuple(10.0 ** (half / 2) for half in range(-8, 1))
# Gamma(shape, rate) priors of the decay (mean 6: random unrelated subsets nearly uncorrelated,
# one swap still clearly correlated) and of the output scale σ².
DECAY_PRIOR = (3.0, 0.5)
OUTPUTSCALE_PRIOR = (2.0, 0.15)
# Every choice bo makes from numbers it computed (the grid point, the acquisition's argmax)
# compares them rounded to this many decimals, ties going to the first in a fixed order. The
# last-bit differences that BLAS builds, instruction sets and thread counts cause (about 1e-12
# here) can then change a choice only when a value lies that close to a rounding boundary and
# decides the comparison, a chance of the order of 1e-12/1e-6 per value compared.
DECIMALS = 6


class BayesianOptimisation(Solver):
    """GP-based BO on fixed-cardinality subsets, guided by per-block prior scores.

    `trials` k-subsets are evaluated in all (the N prior singles, when the prior is computed
    here, come on top): `initial` uniform random k-subsets, one of them replaced by the prior
    top-k when `prior_in_initial`, then one subset per step (or `batch_size` per step, chosen
    greedily with Kriging-believer fantasies: each pick is added to the GP at its posterior mean
    before the next is chosen, hyperparameters unchanged).

    Surrogate: targets are the losses standardised over the evaluated k-subsets (non-finite
    losses clipped to the worst finite one); kernel σ²·exp(−λ·d(S, S')) with
    d = |S△S'|/(2k) ("hamming") or d = |S△S'|/|S∪S'| ("jaccard"), both positive semi-definite;
    Gaussian noise ν; mean a + b·Σ_{i∈S} ŝ_i/√k with ŝ the z-scored prior scores
    (`prior_mean=False`: constant mean a). Hyperparameters are the maximum a posteriori on a
    fixed grid of (λ, ν/σ²), with a, b and σ² profiled out in closed form (see
    `select_hyperparameters`): a discrete choice, so it comes out the same on every machine,
    where a gradient fit's optimum moves with the BLAS (relative differences of 1e-5 to 1e-1
    measured after a few warm-started refits). λ and ν/σ² are chosen again every `refit_every`
    steps; a, b and σ² at every step.

    Acquisition ("ei": log expected improvement; "lcb": −μ + √`lcb_beta`·σ, maximised) over a
    pool of: all 1-swap neighbours of the `local_points` best subsets, up to `two_swaps` 2-swap
    neighbours of each (all of them when there are fewer, else a uniform sample), and
    `random_pool` random k-subsets drawn with block weights π_i ∝ exp(−rank_i/τ) (τ =
    `temperature`, default k; every k-subset when there are no more than `random_pool`);
    subsets already evaluated are skipped.
    """

    name = "bo"

    def __init__(self, trials: int = 200, initial: int = 10, prior_in_initial: bool = True,
                 kernel: str = "hamming", acquisition: str = "ei", lcb_beta: float = 4.0,
                 prior_mean: bool = True, local_points: int = 5, two_swaps: int = 500,
                 random_pool: int = 2000, temperature: float | None = None, batch_size: int = 1,
                 refit_every: int = 10):
        if kernel not in KERNELS:
            raise BadInput(f"kernel={kernel!r} is not one of {', '.join(KERNELS)}")
        if acquisition not in ACQUISITIONS:
            raise BadInput(f"acquisition={acquisition!r} is not one of {', '.join(ACQUISITIONS)}")
        for option, value, low in (("trials", trials, 1), ("initial", initial, 1),
                                   ("local_points", local_points, 0), ("two_swaps", two_swaps, 0),
                                   ("random_pool", random_pool, 0), ("batch_size", batch_size, 1),
                                   ("refit_every", refit_every, 1)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise BadInput(f"{option} must be an integer ≥ {low}, not {value!r}")
        if not lcb_beta > 0:
            raise BadInput(f"lcb_beta must be positive, not {lcb_beta!r}")
        if temperature is not None and not temperature > 0:
            raise BadInput(f"temperature must be positive (or None for k), not {temperature!r}")
        self.trials = trials
        self.initial = initial
        self.prior_in_initial = prior_in_initial
        self.kernel = kernel
        self.acquisition = acquisition
        self.lcb_beta = lcb_beta
        self.prior_mean = prior_mean
        self.local_points = local_points
        self.two_swaps = two_swaps
        self.random_pool = random_pool
        self.temperature = temperature
        self.batch_size = batch_size
        self.refit_every = refit_every

    def _search(self, session: SearchSession, rng: np.random.Generator, prior: np.ndarray | None) -> bool:
        if prior is None:
            prior = np.array(session.evaluate([(i,) for i in range(session.n_blocks)]))
        # One thread: the GP's matrices have at most a few hundred rows, where extra threads
        # cost more than they save (hundreds of times more on a busy machine).
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return _Search(self, session, rng, prior).run()
        finally:
            torch.set_num_threads(threads)


class _Search:
    """The state of one BO run: observations, prior weights, the GP and its hyperparameters."""

    def __init__(self, solver: BayesianOptimisation, session: SearchSession,
                 rng: np.random.Generator, prior: np.ndarray):
        self.solver = solver
        self.session = session
        self.rng = rng
        self.n_blocks = session.n_blocks
        self.k = session.k
        scores = _finite(np.asarray(prior, dtype=float))
        self.prior_top = np.argsort(scores, kind="stable")[: self.k]
        ranks = np.empty(self.n_blocks)
        ranks[np.argsort(scores, kind="stable")] = np.arange(self.n_blocks)
        temperature = solver.temperature if solver.temperature is not None else self.k
        self.log_weights = -ranks / temperature
        spread = scores.std()
        standard = (scores - scores.mean()) / spread if spread > 0 else np.zeros_like(scores)
        self.mean_weights = torch.as_tensor(standard / math.sqrt(self.k), dtype=torch.float64)
        self.masks: list[np.ndarray] = []
        self.losses: list[float] = []
        self.seen: set[bytes] = set()
        self.grid_point: tuple[float, float] | None = None  # (λ, ν/σ²) of the last refit
        self.space_size = math.comb(self.n_blocks, self.k)
        # k-subsets the session already holds (the prior singles when k = 1) are free observations.
        for entry in session.trace:
            if len(entry.subset) == self.k:
                mask = np.zeros(self.n_blocks, dtype=bool)
                mask[list(entry.subset)] = True
                self.record(mask, entry.loss)

    def run(self) -> bool:
        trials = self.solver.trials
        self.observe(self.initial_design(max(0, min(self.solver.initial, trials - len(self.losses)))))
        step = 0
        while len(self.losses) < trials:
            pool = self.candidate_pool()
            if len(pool) == 0:
                break
            refit = step % self.solver.refit_every == 0
            batch = self.propose(pool, min(self.solver.batch_size, trials - len(self.losses)), refit)
            self.observe(batch)
            step += 1
        return len(self.losses) == self.space_size

    # --- evaluations --------------------------------------------------------------------------

    def initial_design(self, count: int) -> np.ndarray:
        """`count` distinct unevaluated k-subsets: the prior top-k first (when
        `prior_in_initial`), then uniform random ones."""
        top = np.zeros((1, self.n_blocks), dtype=bool)
        top[0, self.prior_top] = True
        drawn = self.random_subsets(np.zeros(self.n_blocks), count + 8)
        masks = _distinct(np.concatenate([top, drawn]) if self.solver.prior_in_initial else drawn)
        return self.unseen(masks)[:count]

    def observe(self, masks: np.ndarray) -> None:
        losses = self.session.evaluate([tuple(int(i) for i in np.flatnonzero(mask)) for mask in masks])
        for mask, loss in zip(masks, losses):
            self.record(mask, loss)

    def record(self, mask: np.ndarray, loss: float) -> None:
        self.masks.append(mask)
        self.losses.append(loss)
        self.seen.add(np.packbits(mask).tobytes())

    def unseen(self, masks: np.ndarray) -> np.ndarray:
        fresh = [key not in self.seen for key in _keys(masks)]
        return masks[np.array(fresh, dtype=bool)]

    # --- candidate pool -----------------------------------------------------------------------

    def candidate_pool(self) -> np.ndarray:
        """Unevaluated k-subsets to score: swap neighbours of the best ones, then random ones."""
        order = sorted(range(len(self.losses)), key=lambda i: (rank_key(self.losses[i]), i))
        parts = []
        for index in order[: self.solver.local_points]:
            parts.append(self.one_swaps(self.masks[index]))
            parts.append(self.two_swaps(self.masks[index]))
        if self.space_size <= self.solver.random_pool:
            parts.append(_all_subsets(self.n_blocks, self.k))
        else:
            parts.append(self.random_subsets(self.log_weights, self.solver.random_pool))
        return self.unseen(_distinct(np.concatenate(parts)))

    def one_swaps(self, mask: np.ndarray) -> np.ndarray:
        inside, outside = np.flatnonzero(mask), np.flatnonzero(~mask)
        out_index, in_index = np.meshgrid(inside, outside, indexing="ij")
        return _swapped(mask, out_index.reshape(-1, 1), in_index.reshape(-1, 1))

    def two_swaps(self, mask: np.ndarray) -> np.ndarray:
        inside, outside = np.flatnonzero(mask), np.flatnonzero(~mask)
        count = math.comb(inside.size, 2) * math.comb(outside.size, 2)
        if count == 0 or self.solver.two_swaps == 0:
            return np.zeros((0, self.n_blocks), dtype=bool)
        if count <= self.solver.two_swaps:
            pairs_out = np.array(list(itertools.combinations(inside, 2)))
            pairs_in = np.array(list(itertools.combinations(outside, 2)))
            rows, columns = np.meshgrid(np.arange(len(pairs_out)), np.arange(len(pairs_in)), indexing="ij")
            return _swapped(mask, pairs_out[rows.ravel()], pairs_in[columns.ravel()])
        draws = self.solver.two_swaps
        pairs_out = inside[np.argsort(self.rng.random((draws, inside.size)), axis=1)[:, :2]]
        pairs_in = outside[np.argsort(self.rng.random((draws, outside.size)), axis=1)[:, :2]]
        return _swapped(mask, pairs_out, pairs_in)

    def random_subsets(self, log_weights: np.ndarray, count: int) -> np.ndarray:
        """`count` k-subsets, each drawn without replacement with block weights exp(log_weights)
        (Gumbel top-k: the k largest perturbed log-weights)."""
        keys = log_weights - np.log(-np.log(self.rng.random((count, self.n_blocks))))
        chosen = np.argpartition(-keys, self.k - 1, axis=1)[:, : self.k]
        masks = np.zeros((count, self.n_blocks), dtype=bool)
        np.put_along_axis(masks, chosen, True, axis=1)
        return masks

    # --- surrogate and acquisition ------------------------------------------------------------

    def propose(self, pool: np.ndarray, count: int, refit: bool) -> np.ndarray:
        """The `count` pool subsets chosen by the acquisition, greedily with Kriging believer."""
        train_x = torch.as_tensor(np.array(self.masks), dtype=torch.float64)
        train_y = torch.as_tensor(_standardised(np.array(self.losses)), dtype=torch.float64)
        model = self.model(train_x, train_y, refit)
        candidates = torch.as_tensor(pool, dtype=torch.float64)
        chosen: list[int] = []
        for _ in range(count):
            values = _rounded(self.acquisition_values(model, float(train_y.min()), candidates))
            values[chosen] = -math.inf
            pick = int(np.argmax(values))  # the first of equal values: pool order breaks ties
            chosen.append(pick)
            if len(chosen) == count or len(chosen) == len(pool):
                break
            believed, _ = model.marginals(candidates[pick : pick + 1])
            train_x = torch.cat([train_x, candidates[pick : pick + 1]])
            train_y = torch.cat([train_y, believed])
            model = self.model(train_x, train_y, refit=False)
        return pool[chosen]

    def model(self, train_x: torch.Tensor, train_y: torch.Tensor, refit: bool) -> "SubsetGP":
        """The GP on (train_x, train_y): (λ, ν/σ²) chosen on the grid when `refit` (or never
        chosen yet), else the last ones; a, b and σ² profiled for these data."""
        kernel = SubsetKernel(self.k, self.solver.kernel)
        features = self.mean_features(train_x)
        grid = None if refit or self.grid_point is None else ([self.grid_point[0]], [self.grid_point[1]])
        chosen = select_hyperparameters(kernel.distances(train_x, train_x), train_y, features, *(grid or ()))
        self.grid_point = chosen.decay, chosen.noise_ratio
        return SubsetGP(kernel, chosen, train_x, train_y, self.mean_features)

    def mean_features(self, masks: torch.Tensor) -> torch.Tensor:
        """The columns of the GP mean's regression: 1, and Σ_{i∈S} w_i with `prior_mean`."""
        ones = torch.ones(masks.shape[0], 1, dtype=torch.float64)
        if not self.solver.prior_mean:
            return ones
        return torch.cat([ones, (masks @ self.mean_weights).unsqueeze(-1)], dim=-1)

    def acquisition_values(self, model: "SubsetGP", best: float, candidates: torch.Tensor) -> torch.Tensor:
        """The acquisition of every candidate, from the posterior marginals."""
        mean, variance = model.marginals(candidates)
        sigma = variance.clamp_min(MIN_VARIANCE).sqrt()
        if self.solver.acquisition == "ei":
            return log_expected_improvement(mean, sigma, best)
        return -mean + math.sqrt(self.solver.lcb_beta) * sigma


class SubsetGP:
    """The GP posterior of f at fixed hyperparameters: prior mean Xβ, covariance σ²·exp(−λ·d),
    Gaussian noise ν on the observations.

    It is the posterior botorch's SingleTaskGP gives with these hyperparameters and a fixed
    noise (a test compares them), computed here with one Cholesky factor and one triangular
    solve for all candidates: botorch's posterior costs about 4 ms a call in overhead, 50 ms
    per step on a pool of 2,400 candidates, ten times this."""

    def __init__(self, kernel: "SubsetKernel", hyperparameters: "Hyperparameters", train_x: torch.Tensor,
                 train_y: torch.Tensor, mean_features):
        self.kernel = kernel
        self.hyperparameters = hyperparameters
        self.train_x = train_x
        self.mean_features = mean_features
        self.coefficients = torch.tensor(hyperparameters.coefficients, dtype=torch.float64)
        scale = hyperparameters.outputscale
        covariance = scale * kernel(train_x, train_x, hyperparameters.decay)
        noise = scale * hyperparameters.noise_ratio
        self.factor = torch.linalg.cholesky(covariance + noise * torch.eye(len(train_x), dtype=torch.float64))
        residual = train_y - mean_features(train_x) @ self.coefficients
        self.weights = torch.cholesky_solve(residual.unsqueeze(-1), self.factor).squeeze(-1)

    def marginals(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and variance of f at the rows of x."""
        scale = self.hyperparameters.outputscale
        cross = scale * self.kernel(x, self.train_x, self.hyperparameters.decay)
        mean = self.mean_features(x) @ self.coefficients + cross @ self.weights
        whitened = torch.linalg.solve_triangular(self.factor, cross.T, upper=False)
        return mean, scale - (whitened * whitened).sum(0)


@dataclass(frozen=True)
class Hyperparameters:
    decay: float  # λ
    noise_ratio: float  # ν/σ²
    outputscale: float  # σ²
    coefficients: tuple[float, ...]  # of the mean's regression: a, then b with a prior mean


def select_hyperparameters(distances: torch.Tensor, targets: torch.Tensor, features: torch.Tensor,
                           decays=DECAY_GRID, noise_ratios=NOISE_RATIO_GRID) -> Hyperparameters:
    """The maximum a posteriori (λ, ν/σ²) over the grid `decays` × `noise_ratios`, for the GP
    y ~ N(Xβ, σ²·(exp(−λ·D) + (ν/σ²)·I)) with D the kernel's `distances` and X the mean's
    `features`.

    At each grid point β and σ² are profiled out in closed form: with A = exp(−λ·D) + (ν/σ²)·I,
    β = (XᵀA⁻¹X)⁻¹XᵀA⁻¹y (generalised least squares) and σ² = (y − Xβ)ᵀA⁻¹(y − Xβ)/n maximise
    the likelihood. The score is that likelihood's log plus the log Gamma prior densities of λ
    and σ²; scores are compared rounded to DECIMALS, the first grid point (λ, then ν/σ²,
    ascending) winning ties. All grid points are one batched Cholesky factorisation."""
    n = targets.numel()
    decay = torch.tensor(decays, dtype=torch.float64)[:, None, None, None]
    ratio = torch.tensor(noise_ratios, dtype=torch.float64)[None, :, None, None]
    factor = torch.linalg.cholesky(torch.exp(-decay * distances) + ratio * torch.eye(n, dtype=torch.float64))
    shape = factor.shape[:2]
    whitened_x = torch.cholesky_solve(features.expand(*shape, *features.shape), factor)
    whitened_y = torch.cholesky_solve(targets.reshape(-1, 1).expand(*shape, n, 1), factor)
    gram = features.T @ whitened_x
    projection = features.T @ whitened_y
    # A ridge of 1e-9 keeps the normal equations solvable when a feature is constant.
    coefficients = torch.linalg.solve(gram + 1e-9 * torch.eye(gram.shape[-1], dtype=torch.float64), projection)
    quadratic = (targets.reshape(-1, 1) * whitened_y).sum((-2, -1)) - (projection * coefficients).sum((-2, -1))
    outputscale = (quadratic / n).clamp_min(MIN_VARIANCE)
    log_determinant = 2 * torch.log(torch.diagonal(factor, dim1=-2, dim2=-1)).sum(-1)
    score = (-0.5 * n * (torch.log(2 * math.pi * outputscale) + 1) - 0.5 * log_determinant
             + _log_gamma_density(decay[..., 0, 0], *DECAY_PRIOR)
             + _log_gamma_density(outputscale, *OUTPUTSCALE_PRIOR))
    rounded = _rounded(score.reshape(-1))
    best = int(np.argmax(rounded))  # the first of equal scores
    i, j = divmod(best, len(noise_ratios))
    return Hyperparameters(decay=float(decays[i]), noise_ratio=float(noise_ratios[j]),
                           outputscale=float(outputscale[i, j]),
                           coefficients=tuple(float(c) for c in coefficients[i, j, :, 0]))


def _log_gamma_density(x: torch.Tensor, shape: float, rate: float) -> torch.Tensor:
    return torch.distributions.Gamma(shape, rate).log_prob(x)


def _rounded(values: torch.Tensor) -> np.ndarray:
    """`values` rounded to DECIMALS, NaN as −inf: the form every bo comparison is made in."""
    rounded = np.round(values.detach().numpy().astype(np.float64), DECIMALS)
    return np.where(np.isnan(rounded), -math.inf, rounded)


def log_expected_improvement(mean: torch.Tensor, sigma: torch.Tensor, best: float) -> torch.Tensor:
    """log E[max(best − f, 0)] for f ~ N(mean, sigma²): expected improvement for minimisation,
    in log space so that candidates far from improving stay ranked instead of all rounding to 0.

    EI = σ·h(u) with u = (best − mean)/σ and h(u) = φ(u) + u·Φ(u). Below u = −1, h is computed as
    φ(u)·(1 − |u|·Φ(u)/φ(u)) with the Mills ratio Φ(u)/φ(u) = √(π/2)·erfcx(|u|/√2), which
    neither underflows nor cancels catastrophically."""
    u = (best - mean) / sigma
    near = torch.log(phi(u) + u * ndtr(u))
    tail_u = u.clamp_max(-1.0)
    log_ratio = torch.log(-tail_u) + 0.5 * math.log(math.pi / 2) + log_erfcx(-tail_u / math.sqrt(2))
    # log_ratio < 0 mathematically; rounding could reach 0 only for |u| beyond any real pool.
    far = log_phi(tail_u) + log1mexp(log_ratio.clamp_max(-torch.finfo(u.dtype).tiny))
    return torch.where(u >= -1.0, near, far) + sigma.log()


class SubsetKernel:
    """exp(−λ·d(S, S')) on 0/1 masks, with d the symmetric difference over 2k ("hamming") or
    over the union ("jaccard", the Jaccard distance).

    Both are positive semi-definite for every λ > 0: the first is a Gaussian kernel on the masks
    (|S△S'| = ‖x − x'‖²); the second is exp(−λ)·exp(λ·T) with T the Tanimoto similarity, a
    positive definite kernel, and the exponential of one is positive definite."""

    def __init__(self, k: int, distance: str = "hamming"):
        if distance not in KERNELS:
            raise BadInput(f"distance={distance!r} is not one of {', '.join(KERNELS)}")
        self.k = k
        self.distance = distance

    def distances(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """d(S, S') between every row of x1 and every row of x2."""
        overlap = x1 @ x2.transpose(-1, -2)
        size1, size2 = x1.sum(-1).unsqueeze(-1), x2.sum(-1).unsqueeze(-2)
        symmetric = size1 + size2 - 2 * overlap
        if self.distance == "hamming":
            return symmetric / (2 * self.k)
        return symmetric / (size1 + size2 - overlap).clamp_min(1)

    def __call__(self, x1: torch.Tensor, x2: torch.Tensor, decay: float) -> torch.Tensor:
        return torch.exp(-decay * self.distances(x1, x2))


# --- array helpers ----------------------------------------------------------------------------


def _finite(values: np.ndarray) -> np.ndarray:
    """Non-finite values (NaN/inf rank worst) replaced by the worst finite one."""
    finite = np.isfinite(values)
    worst = values[finite].max() if finite.any() else 0.0
    return np.where(finite, values, worst)


def _standardised(losses: np.ndarray) -> np.ndarray:
    values = _finite(losses)
    spread = values.std()
    return (values - values.mean()) / (spread if spread > 0 else 1.0)


def _keys(masks: np.ndarray) -> list[bytes]:
    """The packed bits of each row of `masks`, as hashable keys."""
    return [row.tobytes() for row in np.packbits(masks, axis=1)]


def _distinct(masks: np.ndarray) -> np.ndarray:
    """Rows of `masks` without repeats, in order of first appearance."""
    first: dict[bytes, int] = {}
    for row, key in enumerate(_keys(masks)):
        first.setdefault(key, row)
    return masks[list(first.values())]


def _swapped(mask: np.ndarray, removed: np.ndarray, added: np.ndarray) -> np.ndarray:
    """Copies of `mask`, row r with blocks removed[r] taken out and added[r] put in."""
    masks = np.repeat(mask[None, :], len(removed), axis=0)
    rows = np.arange(len(removed))[:, None]
    masks[rows, removed] = False
    masks[rows, added] = True
    return masks


def _all_subsets(n_blocks: int, k: int) -> np.ndarray:
    chosen = np.array(list(itertools.combinations(range(n_blocks), k)), dtype=np.intp).reshape(-1, k)
    masks = np.zeros((len(chosen), n_blocks), dtype=bool)
    np.put_along_axis(masks, chosen, True, axis=1)
    return masks
