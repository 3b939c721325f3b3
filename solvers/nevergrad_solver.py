"""Any optimiser of Nevergrad's registry as an exactly-k solver, through random keys
(ALGORITHMS.md §8.2); registered as the family `ng-<Name>` (`ng-NGOpt`, `ng-CMA`, …).

Nevergrad has no exactly-k parametrisation (`Choice(repetitions=k)` repeats blocks), so the
optimiser searches keys x ∈ R^N (`ng.p.Array(shape=(N,))`) and the subset is the k blocks with
the smallest keys, equal keys going to the lower index: every proposal is feasible by
construction and nothing is repaired. Distinct keys often decode to one subset; the session
answers a repeat from its memo for free and the optimiser is told that loss like any other, so
it sees the landscape as it is, piecewise constant in x."""

import contextlib
import math
import warnings

import nevergrad as ng
import numpy as np

from oracle.errors import BadInput, SolverUnavailable
from oracle.integers import is_integer
from oracle.subset import Subset
from solvers.base import Solver
from solvers.criteria import CRITERIA, block_scores, ranked_blocks
from solvers.session import SearchSession

# Keys are rounded before they are ranked, so that last-bit differences in an optimiser's
# arithmetic (BLAS, thread count) turn near-ties into exact ties, which the block index settles.
KEY_DECIMALS = 9


class NevergradSolver(Solver):
    """Ask one proposal, evaluate its subset, tell the loss; repeat.

    Budget: Nevergrad's budget counts asks, depthbench's counts unique subsets. The search asks
    until the session's budget (or `evaluations` k-subsets when `solve` gets none, as for
    `random`) is spent, every k-subset has been seen, or `asks_per_evaluation` asks per planned
    evaluation have been made, whichever comes first: an optimiser that has converged keeps
    proposing subsets it has seen, and the cap stops it. The optimiser is given that cap as its
    budget, the most asks it will be asked for (Nevergrad's one-shot designs and portfolios
    refuse to be asked past their budget).

    Prior: the per-block scores given to `solve`, else those of `criterion` (None: no prior).
    The optimiser's initial point (the centre of its search in Nevergrad's standardised space)
    is then the z-scored ranks of the scores, and that point is suggested as the first ask, so
    the prior's top-k is the first subset evaluated. Ranks, not the scores themselves: block
    scores are heavy-tailed (block 0 of SmolLM2 has cosine 1.0, most others ~0.04), and z-scored
    scores would crowd all but the outliers into a sliver of the optimiser's unit step. Without
    a prior the initial point is a seeded standard-normal draw, so no block is favoured by its
    index. An optimiser that cannot learn from a suggested point still centres on it.

    Seed: Nevergrad's random state is seeded from `seed` (num_workers=1, one ask at a time), so
    a seed fixes the whole run.

    Options:
        optimizer: a name in `nevergrad.optimizers.registry`. The default, DiscreteOnePlusOne
            (resample a few keys, keep the better), came out best of the family on synthetic
            gaps and on the replayed SmolLM2 tables. NGOpt picks by dimension and asks: at
            N = 30 it runs CMA from 1,800 asks (budget ≥ 120 here) and below that a continuous
            (1+1) whose step size collapses on this piecewise-constant landscape.
        criterion: the prior's criterion when `solve` is given none (see `solvers.criteria`;
            the default `removal_loss` costs N evaluations of the budget), or None for no prior.
            Without a prior the search wanders far from anything a replayed table holds, and
            on the gap benchmark's instances it finds fewer optima (DiscreteOnePlusOne 19/20
            instead of 20/20, CMA 16/20 instead of 20/20).
        evaluations: unique k-subsets to evaluate when `solve` gets no budget (the prior's
            singles come on top).
        asks_per_evaluation: asks allowed per planned evaluation.
    """

    name = "ng-DiscreteOnePlusOne"

    def __init__(self, optimizer: str = "DiscreteOnePlusOne", criterion: str | None = "removal_loss",
                 evaluations: int = 200, asks_per_evaluation: int = 20):
        if optimizer not in ng.optimizers.registry:
            raise BadInput(f"unknown Nevergrad optimiser {optimizer!r}; see nevergrad.optimizers.registry")
        if criterion is not None and criterion not in CRITERIA:
            raise BadInput(f"unknown criterion {criterion!r}; known: {', '.join(CRITERIA)} or None")
        for option, value in (("evaluations", evaluations), ("asks_per_evaluation", asks_per_evaluation)):
            if not is_integer(value) or value < 1:
                raise BadInput(f"{option} must be a positive integer, not {value!r}")
        self.optimizer = optimizer
        self.criterion = criterion
        self.evaluations = evaluations
        self.asks_per_evaluation = asks_per_evaluation
        self.name = f"ng-{optimizer}"

    def _search(self, session: SearchSession, rng: np.random.Generator, prior: np.ndarray | None) -> None:
        if prior is None and self.criterion is not None:
            prior = block_scores(session, self.criterion)
        planned = self.evaluations if session.remaining is None else session.remaining
        planned = min(planned, math.comb(session.n_blocks, session.k))
        if planned < 1:
            return
        centre = rank_keys(prior) if prior is not None else rng.standard_normal(session.n_blocks)
        asks = self.asks_per_evaluation * planned
        parametrization = ng.p.Array(init=centre)
        parametrization.random_state = np.random.RandomState(int(rng.integers(2**32)))
        with inside_nevergrad(self.name):
            optimizer = ng.optimizers.registry[self.optimizer](parametrization=parametrization, budget=asks,
                                                               num_workers=1)
        if prior is not None:
            optimizer.suggest(centre)
        target = session.evaluations + planned
        total = math.comb(session.n_blocks, session.k)
        seen: set[Subset] = set()
        worst = None
        for _ in range(asks):
            if session.evaluations >= target or len(seen) == total:
                return
            with inside_nevergrad(self.name):
                candidate = optimizer.ask()
            subset = decode(np.asarray(candidate.value), session.k)
            seen.add(subset)
            loss = session.loss(subset)
            if math.isfinite(loss):
                worst = loss if worst is None else max(worst, loss)
            else:
                # Nevergrad clips NaN/inf to 5e20, which wrecks the scale a model-based optimiser
                # fits; one nat above the worst finite loss ranks it last all the same.
                loss = (0.0 if worst is None else worst) + 1.0
            try:
                with inside_nevergrad(self.name):
                    optimizer.tell(candidate, loss)
            except ng.errors.TellNotAskedNotSupportedError:
                pass  # only the suggested prior point is told unasked; this optimiser ignores it


@contextlib.contextmanager
def inside_nevergrad(solver: str):
    """Around each call into Nevergrad (never around the oracle's work). Its warnings are
    silenced: they advise on the optimiser's own settings (scipy's, on the options a recast
    optimiser passes it), not on the user's run. Some registry entries wrap other libraries (ax,
    nlopt, pymoo, …) imported on first use, and a recast optimiser's thread hands its ImportError
    back as the cause of a RuntimeError: either way the solver is unavailable, not broken."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            yield
        except (ImportError, RuntimeError) as error:
            missing = error if isinstance(error, ImportError) else error.__cause__
            if not isinstance(missing, ImportError):
                raise
            reason = f"needs {missing.name}, which is not installed" if missing.name else f"is unavailable: {missing}"
            raise SolverUnavailable(f"solver {solver!r} {reason}") from None


def decode(keys: np.ndarray, k: int) -> Subset:
    """The k blocks with the smallest keys; equal keys (after rounding) go to the lower index."""
    order = np.lexsort((np.arange(keys.size), np.round(keys, KEY_DECIMALS)))
    return tuple(sorted(int(block) for block in order[:k]))


def rank_keys(prior: np.ndarray) -> np.ndarray:
    """Z-scored ranks of the prior scores: rank 0 is the most removable block, NaN/inf scores
    rank last and ties go to the lower index, so `decode` of these keys is the prior's top-k."""
    ranks = np.empty(prior.size)
    ranks[ranked_blocks(prior)] = np.arange(prior.size)
    return (ranks - ranks.mean()) / ranks.std()
