"""A surrogate of L(S) fitted on a table's rows, for answering table misses offline.

The model is linear in features of the removal mask x ∈ {0,1}^N: every x_i, every x_i·x_j (so a
table holding ∅, all singles and all pairs pins down the exact second-order model, fitted by least
squares; otherwise scikit-learn's RidgeCV, the penalty chosen by efficient leave-one-out), then a correction learned
from the larger subsets on the same terms plus one indicator per subset size and contiguous-run
features (see `run_features`), since removing a contiguous segment costs other than its pairs
say. See `Surrogate` for how the two stages are fitted. A Gaussian process (RBF kernel on the mask)
on the correction's residuals was measured and added nothing: its fitted signal variance was
negligible against the noise term on both shipped tables. Its answers are marked
source="surrogate" and never written to a table.

`holdout_error` measures it honestly: a random 20% of the table's subsets of size ≥ 4 are held
out, the model is fitted on every other row, and the held-out losses are compared."""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import spearmanr
from sklearn.linear_model import LinearRegression, RidgeCV

from oracle.evaluation import Evaluation
from oracle.subset import Subset

ALPHAS = np.logspace(-5, 2, 15)
RUN_LENGTHS = (3, 4, 6)
HOLDOUT_FRACTION = 0.2
HOLDOUT_MIN_SIZE = 4
HOLDOUT_MIN_ROWS = 25  # fewer subsets of size ≥ 4 than this: the error is not measured
CANDIDATES = 10  # best-of-candidates: how often the surrogate's pick among 10 is the true best
DRAWS = 1000


def quadratic_features(masks: np.ndarray) -> np.ndarray:
    """x_i and x_i·x_j (i < j) of boolean removal masks (subsets × N)."""
    x = np.asarray(masks, dtype=np.float64)
    first, second = np.triu_indices(x.shape[1], 1)
    return np.hstack([x, x[:, first] * x[:, second]])


def correction_features(masks: np.ndarray, quadratic: np.ndarray) -> np.ndarray:
    """What the second-order expansion misses in larger subsets, given the masks and their
    `quadratic_features`: x_i and x_i·x_j again (how a block's or a pair's cost changes in
    company: on the margin objective this cut the hold-out MAE by about a third), one indicator
    per subset size, and the run features."""
    masks = np.asarray(masks, dtype=bool)
    sizes = masks.sum(axis=1)
    size_indicators = np.zeros((len(masks), masks.shape[1] + 1))
    size_indicators[np.arange(len(masks)), sizes] = 1.0
    return np.hstack([quadratic, size_indicators, run_features(masks)])


def run_features(masks: np.ndarray) -> np.ndarray:
    """Per mask, over its maximal runs of consecutive removed blocks (lengths r): the number of
    runs, Σ max(r − 2, 0), Σ max(r − 2, 0)², and how many runs are at least each of
    RUN_LENGTHS long: enough to fit how a contiguous segment's cost saturates with its length."""
    padded = np.pad(masks.astype(np.int8), ((0, 0), (1, 1)))
    edges = np.diff(padded, axis=1)
    out = np.zeros((len(masks), 3 + len(RUN_LENGTHS)))
    for row, (starts, ends) in enumerate(zip(edges == 1, edges == -1)):
        lengths = np.flatnonzero(ends) - np.flatnonzero(starts)
        beyond_pair = np.maximum(lengths - 2, 0)
        out[row] = ([len(lengths), beyond_pair.sum(), (beyond_pair**2).sum()]
                    + [(lengths >= length).sum() for length in RUN_LENGTHS])
    return out


def masks_of(subsets: Sequence[Subset], n_blocks: int) -> np.ndarray:
    masks = np.zeros((len(subsets), n_blocks), dtype=bool)
    for row, subset in enumerate(subsets):
        masks[row, list(subset)] = True
    return masks


class Surrogate:
    """L(S) predicted from the table rows it was fitted on, in two stages: a second-order ridge
    model fitted on ∅, the singles and the pairs (on every row when the table lacks some of
    them), then a ridge model of every row's residual on the correction features. The
    second-order part is thus the table's exact expansion, not a compromise bent by larger
    subsets, and what larger subsets add is learned as a correction. The correction is fitted on
    every row, not only the larger subsets: the zero residuals of the singles and pairs hold it
    near zero where the table already knows the answer."""

    def __init__(self, masks: np.ndarray, losses: np.ndarray):
        masks, losses = np.asarray(masks, dtype=bool), np.asarray(losses, dtype=float)
        finite = np.isfinite(losses)
        if finite.sum() < 2:
            raise ValueError("a surrogate needs at least two finite losses to fit")
        masks, losses = masks[finite], losses[finite]
        self.n_blocks = masks.shape[1]
        self.n_rows = len(losses)
        small = masks.sum(axis=1) <= 2
        # ∅, every single and every pair: as many rows as second-order terms, so least squares
        # interpolates them: the exact expansion L(∅) + Σ Δ_i + Σ J_ij. Otherwise a ridge fit
        # on every row stands in for it.
        n_terms = 1 + self.n_blocks * (self.n_blocks + 1) // 2
        self.exact_second_order = len(np.unique(masks[small], axis=0)) == n_terms
        quadratic = quadratic_features(masks)
        if self.exact_second_order:
            self.second_order = LinearRegression().fit(quadratic[small], losses[small])
        else:
            self.second_order = RidgeCV(alphas=ALPHAS).fit(quadratic, losses)
        residuals = losses - self.second_order.predict(quadratic)
        self.correction = RidgeCV(alphas=ALPHAS).fit(correction_features(masks, quadratic), residuals)

    @classmethod
    def from_table(cls, table) -> "Surrogate":
        arrays = table.to_arrays()
        return cls(arrays["removed"], arrays["loss"])

    @property
    def penalties(self) -> str:
        first = "exact" if self.exact_second_order else f"ridge α {self.second_order.alpha_:.2g}"
        return f"second-order stage {first}, correction ridge α {self.correction.alpha_:.2g}"

    def predict(self, subsets: Sequence[Subset]) -> np.ndarray:
        return self.predict_masks(masks_of(subsets, self.n_blocks))

    def predict_masks(self, masks: np.ndarray) -> np.ndarray:
        quadratic = quadratic_features(masks)
        return self.second_order.predict(quadratic) + self.correction.predict(correction_features(masks, quadratic))

    def evaluate(self, subsets: Sequence[Subset]) -> list[Evaluation]:
        # Answers are rounded to 1e-9 nats: the fit differs in the last bits from one BLAS to
        # another, and a solver comparing two answers must not see that.
        return [Evaluation(tuple(subset), float(loss), None, 0.0, "surrogate")
                for subset, loss in zip(subsets, np.round(self.predict(subsets), 9))]


@dataclass(frozen=True)
class HoldoutError:
    held_out: int
    fitted_on: int
    mae: float
    spearman: float
    best_of_candidates: float  # share of draws where the surrogate's best of CANDIDATES is the true best
    penalties: str  # how each stage was fitted (see `Surrogate.penalties`)
    second_order_mae: float  # the same figures for the second-order stage alone
    second_order_spearman: float

    def line(self) -> str:
        return (f"held out {self.held_out} random subsets of size ≥ {HOLDOUT_MIN_SIZE} ({HOLDOUT_FRACTION:.0%}), "
                f"fitted on the other {self.fitted_on} rows ({self.penalties}): MAE {self.mae:.4f}, "
                f"Spearman ρ {self.spearman:.3f}, " + self._candidates_text()
                + f"; the second-order stage alone: MAE {self.second_order_mae:.4f}, "
                  f"Spearman ρ {self.second_order_spearman:.3f}")

    def _candidates_text(self) -> str:
        if np.isnan(self.best_of_candidates):
            return f"best-of-{CANDIDATES} not measured (fewer than {CANDIDATES} held-out subsets of one size)"
        return (f"best of {CANDIDATES} equal-size candidates found {self.best_of_candidates:.0%} of the time "
                f"(chance {1 / CANDIDATES:.0%})")


def holdout_error(masks: np.ndarray, losses: np.ndarray, seed: int = 0) -> HoldoutError | None:
    """Error of the surrogate on a random HOLDOUT_FRACTION of the subsets of size ≥ 4, fitted on
    the rest; None when the table has fewer than HOLDOUT_MIN_ROWS such subsets."""
    masks, losses = np.asarray(masks, dtype=bool), np.asarray(losses, dtype=float)
    rng = np.random.default_rng(seed)
    eligible = np.flatnonzero((masks.sum(axis=1) >= HOLDOUT_MIN_SIZE) & np.isfinite(losses))
    if len(eligible) < HOLDOUT_MIN_ROWS:
        return None
    count = int(round(HOLDOUT_FRACTION * len(eligible)))
    held = rng.choice(eligible, count, replace=False)
    kept = np.setdiff1d(np.arange(len(losses)), held)
    surrogate = Surrogate(masks[kept], losses[kept])
    predicted = surrogate.predict_masks(masks[held])
    second_order = surrogate.second_order.predict(quadratic_features(masks[held]))
    truth = losses[held]
    return HoldoutError(held_out=count, fitted_on=surrogate.n_rows, mae=float(np.mean(np.abs(predicted - truth))),
                        spearman=float(spearmanr(predicted, truth).statistic),
                        best_of_candidates=best_of_candidates(masks[held].sum(axis=1), predicted, truth, rng),
                        penalties=surrogate.penalties, second_order_mae=float(np.mean(np.abs(second_order - truth))),
                        second_order_spearman=float(spearmanr(second_order, truth).statistic))


def holdout_summary(error: HoldoutError | None) -> str:
    """One line for `table info` and the datasheet."""
    if error is None:
        return f"error not measured: fewer than {HOLDOUT_MIN_ROWS} subsets of size ≥ {HOLDOUT_MIN_SIZE} in the table"
    return error.line()


def best_of_candidates(sizes: np.ndarray, predicted: np.ndarray, truth: np.ndarray, rng: np.random.Generator) -> float:
    """Draw CANDIDATES held-out subsets of one size (sizes weighted by how many there are), let
    the surrogate pick the lowest predicted loss; the share of DRAWS where it is the true lowest.
    NaN when no size has enough held-out subsets."""
    groups = [np.flatnonzero(sizes == size) for size in np.unique(sizes)]
    groups = [group for group in groups if len(group) >= CANDIDATES]
    if not groups:
        return float("nan")
    weights = np.array([len(group) for group in groups], dtype=float)
    hits = 0
    for group_index in rng.choice(len(groups), DRAWS, p=weights / weights.sum()):
        chosen = rng.choice(groups[group_index], CANDIDATES, replace=False)
        hits += chosen[np.argmin(predicted[chosen])] == chosen[np.argmin(truth[chosen])]
    return hits / DRAWS
