"""CBO: constrained binary optimisation of a second-order model of L (ALGORITHMS.md §4.6).

Black-box adaptation of Jansen et al. (arXiv 2602.00161): estimate the pseudo-Boolean expansion
E(S) = Σ_{i∈S} h_i + Σ_{i<j∈S} J_ij of L(S) − L(∅) from oracle values, solve min E s.t. |S| = k
exactly as a MILP (pyomo + HiGHS), enumerate the T lowest-energy k-subsets with no-good cuts
and let the oracle pick among them (the "excited states" step: E is only a surrogate of L).

Estimation (`model`):
- "pairs": h_i = L({i}) − L0 and J_ij = L({i,j}) − L({i}) − L({j}) + L0, exact finite
  differences; costs 1 + N + (number of pairs) evaluations, in two batches.
- "ridge": h and J fitted by ridge regression on every subset evaluated so far (∅ and the
  singles) plus `ridge_samples` k-subsets: the one-shot top-k by h and uniform random ones.

With a budget too small for all pairs plus one excited state, "pairs" falls back to "ridge" on
the evaluations that fit; the one-shot top-k by h is the first k-subset the ridge batch
evaluates. A budget of exactly 1 + N buys the N singles and that top-k (no model), so a
k-subset is seen whenever the budget is at least 1 + N.
"""

import itertools
import logging
import math
import time

import numpy as np
import pyomo.environ as pyo
from pyomo.contrib.appsi.base import TerminationCondition
from pyomo.contrib.appsi.solvers import Highs

from oracle.errors import BadInput
from oracle.subset import Subset
from solvers.base import Solver
from solvers.session import SearchSession

logger = logging.getLogger(__name__)

MODELS = ("pairs", "ridge")
# h and J are rounded to multiples of QUANTUM before the MILP, so every energy is an exact sum
# (float64 holds it exactly for |E| < 2^20), the same in any summation order on any machine.
QUANTUM = 2.0 ** -32


class ConstrainedBinaryOptimisation(Solver):
    """Fit a quadratic model of L, solve it under |S| = k, re-rank its T best states by L.

    Options: `model` ("pairs" | "ridge", see the module docstring); `excited_states` T, the
    number of lowest-energy k-subsets evaluated with the oracle (one batch); `linear_term`
    (False sets h = 0 in the model, the paper's choice of dropping the first-order term; for an
    ablation); `band` (None, or w: only pairs with |i − j| ≤ w are estimated, the other J_ij are
    0); `ridge_samples`, `ridge_alpha` (random k-subsets and L2 penalty of the ridge fit);
    `time_limit_s` (HiGHS wall-clock limit for the T solves together; see `solve_quadratic`:
    when hit, best incumbents stand in for proven optima, and if not even the ground state got
    an incumbent the one-shot top-k by h is evaluated instead; None, the default, for none: with
    a limit the states depend on the machine's speed and load, so a replay would not be a
    function of the table). `prior` is ignored: the
    singles L({i}) are needed for h anyway.
    """

    name = "cbo"

    def __init__(self, model: str = "pairs", excited_states: int = 10, linear_term: bool = True,
                 band: int | None = None, ridge_samples: int = 200, ridge_alpha: float = 1e-2,
                 time_limit_s: float | None = None):
        self.model = model
        self.excited_states = excited_states
        self.linear_term = linear_term
        self.band = band
        self.ridge_samples = ridge_samples
        self.ridge_alpha = ridge_alpha
        self.time_limit_s = time_limit_s

    def _search(self, session: SearchSession, rng: np.random.Generator, prior: np.ndarray | None) -> None:
        self._check_config()
        n_blocks, k = session.n_blocks, session.k
        if session.remaining is not None and session.remaining < n_blocks + 2:
            # Not even L(∅), the singles and one k-subset fit: one-shot top-k is all there is.
            singles = session.evaluate([(i,) for i in range(n_blocks)])
            session.evaluate([_top_k(np.asarray(singles), k)])
            return
        h, J = self.energy_model(session, rng)
        states = solve_quadratic(h, J, k, self.excited_states, self.time_limit_s)
        if states:
            session.evaluate([subset for subset, _ in states])
        else:
            singles = np.array([session.known((i,)) for i in range(n_blocks)])
            session.evaluate([_top_k(singles, k)])

    def energy_model(self, session: SearchSession, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """h (N,) and symmetric J (N, N) of E(S) ≈ L(S) − L(∅), estimated through `session` as
        the options say (at least 1 + N evaluations must be left)."""
        pairs = model_pairs(session.n_blocks, self.band)
        base, *singles = session.evaluate([()] + [(i,) for i in range(session.n_blocks)])
        h_singles = np.asarray(singles) - base
        remaining = session.remaining
        if self.model == "pairs" and (remaining is None or remaining > len(pairs)):
            h, J = h_singles, self._pair_terms(session, pairs, base, h_singles)
        else:
            h, J = self._ridge_terms(session, rng, pairs, base, h_singles)
        return (h if self.linear_term else np.zeros_like(h)), J

    def _check_config(self) -> None:
        if self.model not in MODELS:
            raise BadInput(f"cbo: model={self.model!r} is not one of {', '.join(MODELS)}")
        if self.excited_states < 1:
            raise BadInput(f"cbo: excited_states must be ≥ 1, got {self.excited_states}")
        if self.band is not None and self.band < 1:
            raise BadInput(f"cbo: band must be None or ≥ 1, got {self.band}")
        if self.time_limit_s is not None and self.time_limit_s < 0:
            raise BadInput(f"cbo: time_limit_s must be None or ≥ 0, got {self.time_limit_s}")
        if self.ridge_samples < 1 or self.ridge_alpha <= 0:
            raise BadInput(f"cbo: ridge_samples must be ≥ 1 and ridge_alpha > 0, got "
                           f"{self.ridge_samples} and {self.ridge_alpha}")

    @staticmethod
    def _pair_terms(session: SearchSession, pairs: list[tuple[int, int]], base: float,
                    h: np.ndarray) -> np.ndarray:
        """J_ij = L({i,j}) − L({i}) − L({j}) + L0 for the model's pairs, in one batch."""
        losses = session.evaluate(pairs)
        J = np.zeros((h.size, h.size))
        for (i, j), loss in zip(pairs, losses):
            J[i, j] = J[j, i] = loss - base - h[i] - h[j]
        return J

    def _ridge_terms(self, session: SearchSession, rng: np.random.Generator,
                     pairs: list[tuple[int, int]], base: float,
                     h_singles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """h and J by ridge regression on all evaluations, after one batch of k-subsets: the
        one-shot top-k by h (so a k-subset is seen first) and distinct uniform random ones."""
        n_blocks, k = session.n_blocks, session.k
        samples = self.ridge_samples
        if session.remaining is not None:
            samples = min(samples, max(session.remaining - self.excited_states, 1))
        top = _top_k(h_singles, k)
        batch = [top] + _random_subsets(session, rng, samples - 1, exclude={top})
        session.evaluate(batch)

        rows = [(entry.subset, entry.loss - base) for entry in session.trace]
        rows = [(subset, target) for subset, target in rows if np.isfinite(target)]
        features = np.zeros((len(rows), n_blocks + len(pairs)))
        pair_column = {pair: n_blocks + c for c, pair in enumerate(pairs)}
        for r, (subset, _) in enumerate(rows):
            features[r, list(subset)] = 1.0
            for pair in itertools.combinations(subset, 2):
                if pair in pair_column:
                    features[r, pair_column[pair]] = 1.0
        weights = _ridge(features, np.array([target for _, target in rows]), self.ridge_alpha)

        # A block whose removal alone gives NaN/inf keeps that value, so the penalty of
        # solve_quadratic keeps it out of the solution.
        h = np.where(np.isfinite(h_singles), weights[:n_blocks], h_singles)
        J = np.zeros((n_blocks, n_blocks))
        for (i, j), value in zip(pairs, weights[n_blocks:]):
            J[i, j] = J[j, i] = value
        return h, J


def model_pairs(n_blocks: int, band: int | None) -> list[tuple[int, int]]:
    """The pairs (i, j), i < j, whose J_ij the model estimates: all, or those with j − i ≤ band."""
    return [(i, j) for i, j in itertools.combinations(range(n_blocks), 2)
            if band is None or j - i <= band]


def solve_quadratic(h: np.ndarray, J: np.ndarray, k: int, count: int,
                    time_limit_s: float | None = None) -> list[tuple[Subset, float]]:
    """The `count` lowest-energy k-subsets of E(S) = Σ_{i∈S} h_i + Σ_{i<j∈S} J_ij, in
    non-decreasing energy order, equal energies by subset (fewer if C(N, k) < count), as
    (subset, energy) pairs, h and J rounded to multiples of QUANTUM. HiGHS proves each state
    optimal to 1e-9, so only states whose energies differ by less than that could come out in
    another order, or (at the last state wanted) another one be chosen, with another build of
    HiGHS.

    Only the upper triangle of J (i < j) is read. NaN/inf coefficients (a removal that broke the
    model) become a finite penalty larger than twice any achievable energy magnitude of the
    finite terms, so every subset touching one ranks after every subset that does not; the
    returned energies include the penalty. Each state is an exact MILP solve (HiGHS, gaps of
    zero relative and 1e-9 absolute) with the previous states cut off. `time_limit_s` bounds
    the wall time of the whole enumeration, shared evenly by the solves still to come: a solve
    that hits its share contributes its best incumbent (the states are then no longer
    guaranteed to be the lowest, and the result depends on machine speed); the enumeration
    ends when a solve has no incumbent or no time is left.
    """
    h = np.asarray(h, dtype=float)
    upper = np.triu(np.asarray(J, dtype=float), 1)
    n_blocks = h.size
    if upper.shape != (n_blocks, n_blocks):
        raise BadInput(f"J has shape {upper.shape}, expected ({n_blocks}, {n_blocks})")
    if not 1 <= k <= n_blocks:
        raise BadInput(f"k={k} is out of range 1..{n_blocks}")
    h, upper = _penalise_non_finite(h, upper, k)
    h, upper = _quantised(h), _quantised(upper)
    pairs = list(itertools.combinations(range(n_blocks), 2))

    model = _milp(h, upper, k, pairs)
    solver = Highs()
    solver.config.load_solution = False
    # Exact optima, so consecutive states come out in energy order.
    solver.highs_options = {"mip_rel_gap": 0.0, "mip_abs_gap": 1e-9}

    states: list[tuple[Subset, float]] = []
    wanted = min(count, math.comb(n_blocks, k))
    started = time.perf_counter()
    limit_hit = False
    while len(states) < wanted:
        if time_limit_s is not None:
            left = time_limit_s - (time.perf_counter() - started)
            if left <= 0:
                limit_hit = True
                break
            # Unused time carries over: each solve gets an even share of what is left.
            solver.config.time_limit = left / (wanted - len(states))
        results = solver.solve(model)
        condition = results.termination_condition
        if condition == TerminationCondition.maxTimeLimit:
            limit_hit = True
            if results.best_feasible_objective is None:
                break
        elif condition != TerminationCondition.optimal:
            break
        values = solver.get_primals(vars_to_load=list(model.x.values()))
        subset = tuple(i for i in range(n_blocks) if values[model.x[i]] > 0.5)
        states.append((subset, _energy(h, upper, subset)))
        model.no_good.add(sum(model.x[i] for i in subset) <= k - 1)
    if limit_hit:
        logger.warning("HiGHS time limit of %.3g s hit: %d of %d states found, not all proven optimal",
                       time_limit_s, len(states), wanted)
    states.sort(key=lambda state: (state[1], state[0]))
    return states


def _milp(h: np.ndarray, upper: np.ndarray, k: int, pairs: list[tuple[int, int]]) -> pyo.ConcreteModel:
    """Binaries x_i, continuous y_ij = x_i·x_j by McCormick rows, the cardinality row, and the
    RLT rows (cardinality times x_j), which make the LP relaxation far tighter."""
    n_blocks = h.size
    model = pyo.ConcreteModel()
    model.x = pyo.Var(range(n_blocks), domain=pyo.Binary)
    model.y = pyo.Var(pairs, bounds=(0.0, 1.0))
    model.cardinality = pyo.Constraint(expr=sum(model.x[i] for i in range(n_blocks)) == k)
    model.below_i = pyo.Constraint(pairs, rule=lambda m, i, j: m.y[i, j] <= m.x[i])
    model.below_j = pyo.Constraint(pairs, rule=lambda m, i, j: m.y[i, j] <= m.x[j])
    model.above = pyo.Constraint(pairs, rule=lambda m, i, j: m.y[i, j] >= m.x[i] + m.x[j] - 1)
    model.rlt = pyo.Constraint(
        range(n_blocks),
        rule=lambda m, j: sum(m.y[min(i, j), max(i, j)] for i in range(n_blocks) if i != j) == (k - 1) * m.x[j],
    )
    model.energy = pyo.Objective(
        expr=sum(float(h[i]) * model.x[i] for i in range(n_blocks) if h[i] != 0.0)
        + sum(float(upper[i, j]) * model.y[i, j] for i, j in pairs if upper[i, j] != 0.0),
        sense=pyo.minimize,
    )
    model.no_good = pyo.ConstraintList()
    return model


def _penalise_non_finite(h: np.ndarray, upper: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Replace NaN/inf in h and J (i < j) by a penalty P > 2·B, B bounding |E| of any k-subset
    over the finite terms alone."""
    finite_h, finite_J = np.isfinite(h), np.isfinite(upper)
    if finite_h.all() and finite_J.all():
        return h, upper
    largest_h = float(np.abs(h[finite_h]).max(initial=0.0))
    largest_J = float(np.abs(upper[finite_J]).max(initial=0.0))
    bound = k * largest_h + math.comb(k, 2) * largest_J
    penalty = 2.0 * bound + 1.0
    upper = np.where(finite_J, upper, penalty)
    return np.where(finite_h, h, penalty), np.triu(upper, 1)


def _quantised(values: np.ndarray) -> np.ndarray:
    return np.round(values / QUANTUM) * QUANTUM


def _energy(h: np.ndarray, upper: np.ndarray, subset: Subset) -> float:
    index = list(subset)
    return float(h[index].sum() + upper[np.ix_(index, index)].sum())


def _ridge(features: np.ndarray, targets: np.ndarray, alpha: float) -> np.ndarray:
    """argmin_w ‖Xw − y‖² + α‖w‖², through the smaller of the primal and dual systems."""
    rows, columns = features.shape
    if rows == 0:
        return np.zeros(columns)
    if rows < columns:
        return features.T @ np.linalg.solve(features @ features.T + alpha * np.eye(rows), targets)
    return np.linalg.solve(features.T @ features + alpha * np.eye(columns), features.T @ targets)


def _random_subsets(session: SearchSession, rng: np.random.Generator, count: int,
                    exclude: set[Subset]) -> list[Subset]:
    """Up to `count` distinct uniform random k-subsets not yet evaluated nor in `exclude`
    (fewer when they run out: at most 20·count draws)."""
    found: list[Subset] = []
    seen = set(exclude)
    for _ in range(20 * count):
        if len(found) == count:
            break
        subset = tuple(sorted(int(i) for i in rng.choice(session.n_blocks, size=session.k, replace=False)))
        if subset not in seen and session.known(subset) is None:
            seen.add(subset)
            found.append(subset)
    return found


def _top_k(scores: np.ndarray, k: int) -> Subset:
    """The k lowest scores (NaN/inf last, ties by index)."""
    ranked = np.lexsort((np.arange(scores.size), np.where(np.isfinite(scores), scores, np.inf)))
    return tuple(sorted(int(i) for i in ranked[:k]))
