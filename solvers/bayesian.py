"""Prior-guided Bayesian optimisation over k-subsets (ALGORITHMS.md §4.5, reconstructed).

A Gaussian process over the 0/1 masks of evaluated k-subsets, with a set kernel that depends
only on the symmetric difference of two subsets and a mean that is linear in the summed prior
scores of the removed blocks, proposes each next subset by maximising expected improvement over
a candidate pool that only ever holds k-subsets (swap neighbours of the best subsets found and
prior-weighted random subsets). torch is used here only through botorch and gpytorch, for the
GP; it is imported at module top because this module is imported only when "bo" is requested.
"""

import itertools
import math
import warnings

import numpy as np
import torch
from botorch.exceptions.errors import ModelFittingError
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.utils.probability.utils import log_erfcx, log_phi, ndtr, phi
from botorch.utils.safe_math import log1mexp
from gpytorch.constraints import Positive
from gpytorch.kernels import Kernel, ScaleKernel
from gpytorch.means import ConstantMean, Mean
from gpytorch.mlls import ExactMarginalLogLikelihood
from gpytorch.priors import GammaPrior

from oracle.errors import BadInput
from oracle.evaluation import rank_key
from solvers.base import Solver
from solvers.session import SearchSession

KERNELS = ("hamming", "jaccard")
ACQUISITIONS = ("ei", "lcb")
# Candidates per posterior call: the joint posterior of a chunk has a dense chunk × chunk
# covariance, so chunks stay small; the marginals do not depend on the chunking.
SCORING_CHUNK = 256
# Floor of the posterior variance (standardised units) before taking σ.
MIN_VARIANCE = 1e-12


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
    learned Gaussian noise; mean a + b·Σ_{i∈S} ŝ_i/√k with ŝ the z-scored prior scores and a, b
    learned jointly with the kernel by marginal likelihood (`prior_mean=False`: constant mean).
    Hyperparameters are refitted every `refit_every` steps and reused in between.

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
                 refit_every: int = 1):
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
        # torch draws (fit restarts) come from a seed taken from `rng`; fork_rng keeps the
        # caller's global torch state untouched. One thread: the GP's matrices have at most a
        # few hundred rows, where extra threads cost more than they save (hundreds of times
        # more on a busy machine) and could change float reductions from one machine to another.
        torch_seed = int(rng.integers(2**63 - 1))
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(torch_seed)
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
        self.hyperparameters: dict | None = None
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
        fresh = [np.packbits(mask).tobytes() not in self.seen for mask in masks]
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
            values = self.acquisition_values(model, float(train_y.min()), candidates)
            values[chosen] = -math.inf
            pick = int(torch.argmax(values))
            chosen.append(pick)
            if len(chosen) == count or len(chosen) == len(pool):
                break
            with torch.no_grad():
                believed = model.posterior(candidates[pick : pick + 1]).mean.reshape(1)
            train_x = torch.cat([train_x, candidates[pick : pick + 1]])
            train_y = torch.cat([train_y, believed])
            model = self.model(train_x, train_y, refit=False)
        return pool[chosen]

    def model(self, train_x: torch.Tensor, train_y: torch.Tensor, refit: bool) -> SingleTaskGP:
        """The GP on (train_x, train_y), starting from the last hyperparameters; fitted by
        marginal likelihood when `refit` (a failed fit keeps the starting values)."""
        kernel = ScaleKernel(SubsetKernel(self.k, self.solver.kernel), outputscale_prior=GammaPrior(2.0, 0.15))
        mean = PriorScoreMean(self.mean_weights) if self.solver.prior_mean else ConstantMean()
        model = SingleTaskGP(train_x, train_y.unsqueeze(-1), covar_module=kernel, mean_module=mean,
                             outcome_transform=None)
        if self.hyperparameters is not None:
            model.load_state_dict(self.hyperparameters)
        if refit:
            start = {name: value.clone() for name, value in model.state_dict().items()}
            try:
                # botorch retries a fit that warns and raises once every retry has failed;
                # its warnings would otherwise repeat at every step.
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
            except ModelFittingError:
                model.load_state_dict(start)
            self.hyperparameters = {name: value.clone() for name, value in model.state_dict().items()}
        model.eval()
        return model

    def acquisition_values(self, model: SingleTaskGP, best: float, candidates: torch.Tensor) -> torch.Tensor:
        """The acquisition of every candidate, from the posterior marginals. The posterior is
        taken jointly over chunks of candidates rather than as a batch of single points: botorch's
        batch mode copies the training data once per candidate, about ten times slower here."""
        with torch.no_grad():
            posteriors = [model.posterior(chunk) for chunk in candidates.split(SCORING_CHUNK)]
            mean = torch.cat([posterior.mean for posterior in posteriors]).squeeze(-1)
            variance = torch.cat([posterior.variance for posterior in posteriors]).squeeze(-1)
        sigma = variance.clamp_min(MIN_VARIANCE).sqrt()
        if self.solver.acquisition == "ei":
            return log_expected_improvement(mean, sigma, best)
        return -mean + math.sqrt(self.solver.lcb_beta) * sigma


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


class SubsetKernel(Kernel):
    """exp(−λ·d(S, S')) on 0/1 masks, with d the symmetric difference over 2k ("hamming") or
    over the union ("jaccard", the Jaccard distance).

    Both are positive semi-definite for every λ > 0: the first is a Gaussian kernel on the masks
    (|S△S'| = ‖x − x'‖²); the second is exp(−λ)·exp(λ·T) with T the Tanimoto similarity, a
    positive definite kernel, and the exponential of one is positive definite. Wrap it in a
    ScaleKernel for σ²."""

    def __init__(self, k: int, distance: str = "hamming", **kwargs):
        if distance not in KERNELS:
            raise BadInput(f"distance={distance!r} is not one of {', '.join(KERNELS)}")
        super().__init__(**kwargs)
        self.k = k
        self.distance = distance
        self.register_parameter("raw_decay", torch.nn.Parameter(torch.zeros(*self.batch_shape, 1, 1)))
        self.register_constraint("raw_decay", Positive())
        # Decay rates of a few units (prior mean 6): random unrelated subsets (d ≈ 1 − k/N) are
        # then nearly uncorrelated while one swap (hamming d = 1/k) keeps a clear correlation.
        self.register_prior("decay_prior", GammaPrior(3.0, 0.5), lambda module: module.decay,
                            lambda module, value: module._set_decay(value))

    @property
    def decay(self) -> torch.Tensor:
        return self.raw_decay_constraint.transform(self.raw_decay)

    def _set_decay(self, value: torch.Tensor) -> None:
        value = torch.as_tensor(value).to(self.raw_decay)
        self.initialize(raw_decay=self.raw_decay_constraint.inverse_transform(value))

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, diag: bool = False, **params) -> torch.Tensor:
        if diag:
            overlap = (x1 * x2).sum(-1)
            size1, size2 = x1.sum(-1), x2.sum(-1)
            decay = self.decay[..., 0]
        else:
            overlap = x1 @ x2.transpose(-1, -2)
            size1, size2 = x1.sum(-1).unsqueeze(-1), x2.sum(-1).unsqueeze(-2)
            decay = self.decay
        symmetric = size1 + size2 - 2 * overlap
        if self.distance == "hamming":
            distance = symmetric / (2 * self.k)
        else:
            distance = symmetric / (size1 + size2 - overlap).clamp_min(1)
        return torch.exp(-decay * distance)


class PriorScoreMean(Mean):
    """m(S) = a + b·Σ_{i∈S} w_i with fixed block weights w (the scaled prior scores) and
    learned a, b."""

    def __init__(self, block_weights: torch.Tensor):
        super().__init__()
        self.register_buffer("block_weights", block_weights)
        self.register_parameter("constant", torch.nn.Parameter(torch.zeros(())))
        self.register_parameter("slope", torch.nn.Parameter(torch.zeros(())))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.constant + self.slope * (x @ self.block_weights)


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


def _distinct(masks: np.ndarray) -> np.ndarray:
    """Rows of `masks` without repeats, in order of first appearance."""
    if len(masks) == 0:
        return masks
    _, first = np.unique(np.packbits(masks, axis=1), axis=0, return_index=True)
    return masks[np.sort(first)]


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
