"""The reference study's analyses of pruned models, with uncertainty: pure functions from a run's
rows and the stored downstream scores of its answers (`bench.downstream`) to the numbers of the
report's study section and its verdicts.

1. `solver_rows`: Tables 1–2 — per (model, objective, k), every solver's subset with its
   accuracies, held-out perplexity and calibration loss.
2. `objective_overlap`: finding (i) — per solver, the Jaccard overlap of its subsets under two
   objectives against a block-relabelling null, and an exchange test of whether solutions
   agree more within an objective than across objectives for the same solver.
3. `rank_alignment`: finding (ii) — Spearman ρ between calibration-loss rank and accuracy rank of
   the distinct models one objective's solvers return, with a bootstrap interval over models and
   items.
4. `search_against_objective`: finding (iii) — the spread of mean accuracy across solvers
   within an objective (σ², and the mean absolute difference between solvers) against the
   change from switching the objective with the solver fixed, with bootstrap intervals.
5. `criterion_alignment`: "beyond cosine similarity" — how a per-block criterion ranks blocks
   against the true single-removal damage (Pearson, Spearman, share of misranked pairs).
6. `verdicts`: each finding marked reproduced / not reproduced / inconclusive from 2–5, by
   the rules stated with each function.

Accuracies are in points (percent). Bootstraps resample evaluation items within each task, the
same items for every model, so differences between models are paired; finding (ii)'s also
resamples the models, since its few models are themselves a sample of what solvers return."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from bench.analysis import objective_pairs, split_problem
from bench.downstream import BOOTSTRAP_RESAMPLES, CONFIDENCE, HEADLINE, SetScores

Scores = dict[str, SetScores]  # evaluation set → one pruned model's scores
TASKS = tuple(HEADLINE)
PERMUTATIONS = 2000
EXACT_ASSIGNMENTS = 4096  # the exchange test enumerates every label assignment up to this many
ALPHA = 0.05


def has_tasks(scores: Scores | None) -> bool:
    return scores is not None and all(task in scores for task in TASKS)


def accuracy(scores: Scores) -> dict[str, float]:
    """Headline accuracy per task and their mean ("mean"), in points."""
    values = {task: 100 * float(np.mean(scores[task].headline(task))) for task in TASKS}
    values["mean"] = float(np.mean([values[task] for task in TASKS]))
    return values


def _outcomes(models: Sequence[Scores]) -> list[np.ndarray]:
    """Per task, a models × items matrix of headline outcomes (0/1)."""
    return [np.array([model[task].headline(task) for model in models], dtype=float) for task in TASKS]


def _mean_accuracy(*per_task: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mean accuracy (points) of every model from per-task outcome matrices (items on `axis`)."""
    return 100 * np.mean([outcomes.mean(axis=axis) for outcomes in per_task], axis=0)


def _bootstrap(per_task: list[np.ndarray], statistic: Callable[[np.ndarray], float], seed: int
               ) -> tuple[float, float]:
    """Percentile interval of statistic(mean accuracy per model), items resampled within each task
    (the same items for every model)."""
    def resampled(*samples, axis=-1):
        means = _mean_accuracy(*samples, axis=axis)  # models (× resamples)
        return np.apply_along_axis(statistic, 0, means) if means.ndim > 1 else statistic(means)

    result = stats.bootstrap(per_task, resampled, n_resamples=BOOTSTRAP_RESAMPLES, confidence_level=CONFIDENCE,
                             method="percentile", vectorized=True, axis=-1, rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


# --- 1. Tables 1–2 ---------------------------------------------------------------------------

@dataclass(frozen=True)
class SolverRow:
    problem: str
    k: int
    solver: str
    seeds: tuple[int, ...]
    subset: tuple[int, ...]
    delta: float
    loss: float
    accuracy: dict[str, float] | None  # per task and "mean", points; None when not evaluated
    interval: dict[str, tuple[float, float]] | None  # per task (Wilson) and "mean" (bootstrap), points
    perplexity: dict[str, tuple[float, tuple[float, float]]]  # held-out text → perplexity, interval


def solver_rows(cells, scores: dict[tuple[str, tuple[int, ...]], Scores]) -> list[SolverRow]:
    """One row per (problem, k, solver, distinct subset); `scores` by (model, subset)."""
    rows = []
    for (problem, k), runs in cells.items():
        model, _ = split_problem(problem)
        for solver, results in runs.items():
            for subset in dict.fromkeys(tuple(row["subset"]) for row in results):
                same = [row for row in results if tuple(row["subset"]) == subset]
                found = scores.get((model, subset))
                evaluated = has_tasks(found)
                rows.append(SolverRow(problem, k, solver, tuple(row["seed"] for row in same), subset,
                                      same[0]["delta"], same[0]["loss"], accuracy(found) if evaluated else None,
                                      accuracy_intervals(found) if evaluated else None, held_out_perplexity(found)))
    return rows


def accuracy_intervals(scores: Scores) -> dict[str, tuple[float, float]]:
    """95% intervals (points) of each task's headline accuracy (Wilson) and of the mean (bootstrap
    over items, stratified by task)."""
    from bench.downstream import mean_accuracy_interval, wilson_interval

    per_task = {task: scores[task].headline(task) for task in TASKS}
    intervals = {task: wilson_interval(outcomes) for task, outcomes in per_task.items()}
    intervals["mean"] = mean_accuracy_interval(per_task)
    return {name: (100 * low, 100 * high) for name, (low, high) in intervals.items()}


def held_out_perplexity(scores: Scores | None) -> dict[str, tuple[float, tuple[float, float]]]:
    """Perplexity and its bootstrap interval over windows on each held-out text evaluated (the
    sets without a headline task metric)."""
    from bench.downstream import perplexity_interval

    return {name: (value.perplexity, perplexity_interval(value.nll)) for name, value in (scores or {}).items()
            if name not in HEADLINE}


# --- 2. Finding (i): the objective reshapes which blocks are redundant -------------------------

@dataclass(frozen=True)
class ObjectiveOverlap:
    model: str
    k: int
    objectives: tuple[str, str]
    jaccard: dict[str, float]  # solver → mean Jaccard of its subsets under the two objectives
    p_overlap: dict[str, float]  # solver → P(Jaccard ≥ observed) when one objective's blocks are relabelled
    within: float  # mean Jaccard between different solvers under the same objective
    across: float  # mean Jaccard of one solver's subsets under the two objectives
    p_exchange: float  # P(within − across ≥ observed) when each solver's objective labels are swapped at random
    n_solvers: int


def objective_overlap(cells, n_blocks: dict[str, int], seed: int = 0) -> list[ObjectiveOverlap]:
    """For each model, k and pair of its objectives: per solver, the overlap of its subsets under
    the two objectives against a null that relabels the blocks of one objective's subsets at
    random (p: the share of PERMUTATIONS with at least the observed overlap; small p means more
    overlap than chance); and the exchange test: under "the objective does not matter" a solver's
    two subsets are exchangeable between objectives, so the observed excess of within-objective
    over across-objective agreement is compared with every assignment of the labels (random
    ones beyond EXACT_ASSIGNMENTS; small p: the objective decides; with n solvers p ≥ 2/2ⁿ)."""
    rng = np.random.default_rng(seed)
    found = []
    for objectives in objective_pairs(cells):
        shared = objectives.shared
        blocks = n_blocks[f"{objectives.model}/{objectives.objectives[0]}"]
        # Per solver and objective, the seeds' subsets as a seeds × blocks 0/1 matrix.
        masks = [[_masks(runs[s], blocks) for runs in objectives.runs] for s in shared]
        overlaps, p_values = {}, {}
        for solver, (a, b) in zip(shared, masks):
            observed = _mean_pair_jaccard(a, b)
            relabelled = _mean_pair_jaccard(a, np.stack([b[:, rng.permutation(blocks)]
                                                         for _ in range(PERMUTATIONS)]))
            overlaps[solver] = float(observed)
            p_values[solver] = float((1 + np.sum(relabelled >= observed - 1e-12)) / (1 + PERMUTATIONS))
        # Agreement between every two (solver, objective) solutions: index 2s + objective.
        flat = [side for pair in masks for side in pair]
        agreement = np.array([[_mean_pair_jaccard(x, y) for y in flat] for x in flat])
        n = len(shared)
        across = float(np.mean([agreement[2 * s, 2 * s + 1] for s in range(n)]))
        # Every assignment of the solvers' labels when there are few (an exact test), else random ones.
        flips = (np.array(list(itertools.product((0, 1), repeat=n))) if 2 ** n <= EXACT_ASSIGNMENTS
                 else np.vstack([np.zeros(n, dtype=int), rng.integers(0, 2, size=(PERMUTATIONS, n))]))
        within = _within(agreement, flips)
        excess = within - across
        p_exchange = float(np.mean(excess >= excess[0] - 1e-12)) if 2 ** n <= EXACT_ASSIGNMENTS else float(
            (1 + np.sum(excess[1:] >= excess[0] - 1e-12)) / (1 + PERMUTATIONS))
        found.append(ObjectiveOverlap(objectives.model, objectives.k, objectives.objectives, overlaps, p_values,
                                      float(within[0]), across, p_exchange, n))
    return found


def _masks(rows: Sequence[dict], blocks: int) -> np.ndarray:
    masks = np.zeros((len(rows), blocks))
    for index, row in enumerate(rows):
        masks[index, row["subset"]] = 1
    return masks


def _mean_pair_jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean Jaccard over every pair of a row of `a` (seeds × blocks) and a row of `b` (… × seeds ×
    blocks: a leading axis gives one mean per entry)."""
    intersection = np.einsum("in,...jn->...ij", a, b)
    union = a.sum(-1)[:, None] + b.sum(-1)[..., None, :] - intersection
    return np.where(union > 0, intersection / np.where(union > 0, union, 1), 1.0).mean(axis=(-2, -1))


def _within(agreement: np.ndarray, flips: np.ndarray) -> np.ndarray:
    """Mean agreement between different solvers on the same side, for each row of `flips` (1:
    the solver's two solutions change sides)."""
    n = flips.shape[1]
    first = 2 * np.arange(n) + flips
    second = 2 * np.arange(n) + 1 - flips
    upper = np.triu_indices(n, 1)
    if not len(upper[0]):
        return np.full(len(flips), math.nan)
    sides = [agreement[side[:, :, None], side[:, None, :]][:, upper[0], upper[1]] for side in (first, second)]
    return np.concatenate(sides, axis=1).mean(axis=1)


# --- 3. Finding (ii): calibration rank against accuracy rank ----------------------------------

@dataclass(frozen=True)
class RankAlignment:
    problem: str
    k: int
    subsets: tuple[tuple[int, ...], ...]  # the distinct models ranked
    loss: tuple[float, ...]  # their calibration losses
    accuracy: tuple[float, ...]  # their mean accuracies (points)
    rho: float  # Spearman ρ of (−loss, accuracy): positive when lower loss goes with higher accuracy
    interval: tuple[float, float]  # bootstrap over models (each with its loss) and evaluation items


def rank_alignment(cells, scores: dict[tuple[str, tuple[int, ...]], Scores], seed: int = 0) -> list[RankAlignment]:
    """Per (problem, k): the distinct subsets its solvers returned that have downstream scores,
    ranked by calibration loss and by mean accuracy (the study's Figure 2 ranks the models of
    the perplexity objective; here every objective is given). Needs at least 4 models."""
    found = []
    for (problem, k), runs in cells.items():
        model, _ = split_problem(problem)
        losses = {tuple(row["subset"]): row["loss"] for rows in runs.values() for row in rows
                  if not row.get("predicted")}
        ranked = [subset for subset in losses if has_tasks(scores.get((model, subset)))]
        if len(ranked) < 4:
            continue
        per_task = _outcomes([scores[model, subset] for subset in ranked])
        loss = np.array([losses[subset] for subset in ranked])
        means = _mean_accuracy(*per_task)
        found.append(RankAlignment(problem, k, tuple(ranked), tuple(loss), tuple(means), _rho(loss, means),
                                   _models_and_items_bootstrap(loss, per_task, seed)))
    return found


def _rho(loss: np.ndarray, accuracy: np.ndarray) -> float:
    if np.ptp(loss) == 0 or np.ptp(accuracy) == 0:
        return 0.0  # all tied (one model drawn throughout): no alignment
    return float(stats.spearmanr(-loss, accuracy).statistic)


def _models_and_items_bootstrap(loss: np.ndarray, per_task: list[np.ndarray], seed: int) -> tuple[float, float]:
    """Percentile interval of ρ when both the models (each with its loss) and the items within
    each task (the same for every model) are drawn with replacement. scipy's bootstrap draws
    along one axis of paired samples; this statistic needs two independent draws per resample."""
    rng = np.random.default_rng(seed)
    models = rng.integers(0, len(loss), (BOOTSTRAP_RESAMPLES, len(loss)))
    # An item drawn c times weighs c: resample × model mean accuracy under every item draw at once.
    accuracy = 100 * np.mean([rng.multinomial(outcomes.shape[1], np.full(outcomes.shape[1], 1 / outcomes.shape[1]),
                                              size=BOOTSTRAP_RESAMPLES) @ outcomes.T / outcomes.shape[1]
                              for outcomes in per_task], axis=0)
    accuracy = np.take_along_axis(accuracy, models, axis=1)
    ranks = [stats.rankdata(values, axis=1) for values in (-loss[models], accuracy)]
    centred = [r - r.mean(axis=1, keepdims=True) for r in ranks]
    spread = np.sqrt(np.sum(centred[0] ** 2, axis=1) * np.sum(centred[1] ** 2, axis=1))
    # Spearman's ρ is Pearson's r of the ranks; a draw with all losses or accuracies tied aligns nothing.
    rho = np.divide(np.sum(centred[0] * centred[1], axis=1), spread, out=np.zeros(len(spread)), where=spread > 0)
    low, high = np.quantile(rho, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
    return float(low), float(high)


# --- 4. Finding (iii): the search moves accuracy less than the objective ---------------------

@dataclass(frozen=True)
class SearchAgainstObjective:
    model: str
    k: int
    objectives: tuple[str, str]
    solvers: tuple[str, ...]
    variance: dict[str, tuple[float, tuple[float, float]]]  # objective → σ² of solver mean accuracy (points²), interval
    within: tuple[float, tuple[float, float]]  # mean |acc(s) − acc(s')| within an objective, interval
    switch: tuple[float, tuple[float, float]]  # mean |acc_first(s) − acc_second(s)| over solvers, interval
    excess: tuple[float, float]  # interval of switch − within


def search_against_objective(cells, scores: dict[tuple[str, tuple[int, ...]], Scores], seed: int = 0
                             ) -> list[SearchAgainstObjective]:
    """Per model, k and pair of objectives, over the solvers evaluated downstream under both
    (each solver's seed-0 subset, as the study's one model per algorithm): the inter-solver
    variance σ² of mean accuracy within each objective (the study's Figure 3), the mean absolute
    accuracy difference between two solvers of one objective, and the mean absolute change when
    the objective is switched with the solver fixed."""
    found = []
    for objectives in objective_pairs(cells):
        model = objectives.model
        chosen = {}
        for solver in objectives.shared:
            pair = [tuple(runs[solver][0]["subset"]) for runs in objectives.runs]
            if all(has_tasks(scores.get((model, subset))) for subset in pair):
                chosen[solver] = pair
        if len(chosen) < 3:
            continue
        models = [scores[model, pair[0]] for pair in chosen.values()] + [scores[model, pair[1]]
                                                                        for pair in chosen.values()]
        per_task = _outcomes(models)
        n = len(chosen)

        def variance_of(side: int) -> Callable[[np.ndarray], float]:
            return lambda means: float(np.var(means[side * n : (side + 1) * n]))

        def within(means: np.ndarray) -> float:
            return float(np.mean([abs(side[i] - side[j]) for side in (means[:n], means[n:])
                                  for i, j in itertools.combinations(range(n), 2)]))

        def switch(means: np.ndarray) -> float:
            return float(np.mean(np.abs(means[:n] - means[n:])))

        means = _mean_accuracy(*per_task)
        found.append(SearchAgainstObjective(
            model, objectives.k, objectives.objectives, tuple(chosen),
            {name: (variance_of(side)(means), _bootstrap(per_task, variance_of(side), seed))
             for side, name in enumerate(objectives.objectives)},
            (within(means), _bootstrap(per_task, within, seed)),
            (switch(means), _bootstrap(per_task, switch, seed)),
            _bootstrap(per_task, lambda m: switch(m) - within(m), seed)))
    return found


# --- 5. Beyond cosine similarity ---------------------------------------------------------------

@dataclass(frozen=True)
class CriterionAlignment:
    problem: str
    criterion: str
    target: str  # what the true damage is measured by: "Δ calibration loss" or a task's accuracy drop
    pearson: float
    spearman: float
    misranked: float  # share of block pairs the criterion orders against the true damage


def criterion_alignment(problem: str, criterion: str, target: str, scores: np.ndarray, damage: np.ndarray
                        ) -> CriterionAlignment:
    """How a criterion's per-block scores (higher = more important) track the true damage of
    removing each block alone (higher = worse). Misranked: discordant pairs over all pairs,
    ties in either counting half (so 0.5 is chance)."""
    concordance = []
    for i, j in itertools.combinations(range(len(scores)), 2):
        product = np.sign(scores[i] - scores[j]) * np.sign(damage[i] - damage[j])
        concordance.append(0.5 if product == 0 else float(product < 0))
    return CriterionAlignment(problem, criterion, target, float(stats.pearsonr(scores, damage).statistic),
                              float(stats.spearmanr(scores, damage).statistic), float(np.mean(concordance)))


# --- 6. Verdicts -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Verdict:
    finding: str
    model: str
    verdict: str  # "reproduced", "not reproduced" or "inconclusive"
    evidence: str


REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"


def verdicts(overlaps: Sequence[ObjectiveOverlap], alignments: Sequence[RankAlignment],
             contrasts: Sequence[SearchAgainstObjective], criteria: Sequence[CriterionAlignment]) -> list[Verdict]:
    """Per model family (and per pair of objectives for (i) and (iii), since two objectives may
    agree where a third differs), from the analyses' numbers:
    (i) reproduced when the exchange test finds more agreement within than across objectives
        (p < 0.05) at every k; not reproduced when it does at none; else inconclusive.
    (ii) on the ppl objective: reproduced when some k has its interval of ρ below 0 (evidence
        of disagreement, not only a lack of evidence of agreement), no k has it above 0 and at
        least half the point estimates are ≤ 0; not reproduced when most k have intervals
        above 0; else inconclusive.
    (iii) reproduced when switching the objective changes accuracy more than switching the
        solver (interval of the excess above 0) at every k; not reproduced when the interval is
        below 0 at any k; else inconclusive.
    cosine, per objective: reproduced when cosine's Spearman with the single-removal Δ is below
        0.5 in absolute value and at least 20% of block pairs are misranked; else not reproduced."""
    found = []
    for model in sorted({o.model for o in overlaps} | {split_problem(a.problem)[0] for a in alignments}
                        | {c.model for c in contrasts} | {split_problem(c.problem)[0] for c in criteria}):
        for pair, mine in _by_objectives(o for o in overlaps if o.model == model):
            decided = [o.p_exchange < ALPHA for o in mine]
            verdict = REPRODUCED if all(decided) else NOT_REPRODUCED if not any(decided) else INCONCLUSIVE
            found.append(Verdict("(i) the objective reshapes which blocks are redundant", f"{model}, {pair}", verdict,
                                 "; ".join(f"k={o.k}: Jaccard within {o.within:.2f}, across {o.across:.2f}, "
                                           f"p={o.p_exchange:.3f}" for o in mine)))
        mine = [a for a in alignments if a.problem == f"{model}/ppl"]
        if mine:
            above = [a.interval[0] > 0 for a in mine]
            below = [a.interval[1] < 0 for a in mine]
            nonpositive = sum(a.rho <= 0 for a in mine)
            verdict = (REPRODUCED if any(below) and not any(above) and 2 * nonpositive >= len(mine)
                       else NOT_REPRODUCED if 2 * sum(above) > len(mine) else INCONCLUSIVE)
            found.append(Verdict("(ii) perplexity rank and accuracy rank disagree", model, verdict, "; ".join(
                f"k={a.k}: ρ={a.rho:+.2f} [{a.interval[0]:+.2f}, {a.interval[1]:+.2f}] over {len(a.subsets)} models"
                for a in mine)))
        for pair, mine in _by_objectives(c for c in contrasts if c.model == model):
            above = [c.excess[0] > 0 for c in mine]
            below = [c.excess[1] < 0 for c in mine]
            verdict = REPRODUCED if all(above) else NOT_REPRODUCED if any(below) else INCONCLUSIVE
            found.append(Verdict("(iii) the objective moves accuracy more than the search", f"{model}, {pair}",
                                 verdict, "; ".join(
                                     f"k={c.k}: switch objective {c.switch[0]:.1f} pts, switch solver "
                                     f"{c.within[0]:.1f} pts, excess [{c.excess[0]:+.1f}, {c.excess[1]:+.1f}]"
                                     for c in mine)))
        for c in criteria:
            if split_problem(c.problem)[0] == model and c.criterion == "cosine" and c.target == "Δ calibration loss":
                weak = abs(c.spearman) < 0.5 and c.misranked >= 0.2
                found.append(Verdict("cosine influence tracks removal damage only weakly", c.problem,
                                     REPRODUCED if weak else NOT_REPRODUCED,
                                     f"Pearson {c.pearson:+.2f}, Spearman {c.spearman:+.2f}, "
                                     f"{100 * c.misranked:.0f}% of block pairs misranked"))
    return found


def _by_objectives(results) -> list[tuple[str, list]]:
    """One model's results of a pairwise analysis grouped by their pair of objectives, each
    group in order of k: [("margin vs ppl", [...]), ...]."""
    groups: dict[tuple[str, str], list] = {}
    for result in results:
        groups.setdefault(result.objectives, []).append(result)
    return [(f"{first} vs {second}", sorted(group, key=lambda result: result.k))
            for (first, second), group in sorted(groups.items())]
