"""The report's study section: the reference study's tables, findings and verdicts for the pruned
models of a run, from the run's rows, its problems' tables and the stored downstream scores of its
answers (`python -m bench downstream OUT` stores them; nothing here evaluates)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench import figures, study
from bench.analysis import split_problem
from bench.downstream import HEADLINE, evaluation_sets, serving_model, stored_scores
from problems.model_problems import MODELS
from solvers.criteria import ranked_blocks

SINGLES_TARGET = "Δ calibration loss"


@dataclass
class StudyTable:
    title: str
    header: list[str]
    lines: list[list[str]]
    note: str = ""


@dataclass
class StudySection:
    tables: list[StudyTable] = field(default_factory=list)
    figures: list[tuple[str, Path, str]] = field(default_factory=list)  # (title, path, caption)
    coverage: str = ""


def downstream_scores(cells, n_blocks: dict[str, int], table_paths: dict[str, Path | None], draw: dict
                      ) -> dict[tuple[str, tuple[int, ...]], study.Scores]:
    """(model, subset) → stored scores per evaluation set on the item draw `draw` (options of
    `bench.downstream.recorded_draw`), for every answer of the run, the dense model and every
    single-block removal, of the models with downstream tables (a `--model` run's model: when
    its weights, named in its calibration tables, are here)."""
    from oracle.errors import DepthbenchError

    wanted: dict[str, set[tuple[int, ...]]] = {}
    for (problem, _), runs in cells.items():
        model, _ = split_problem(problem)
        if model == "synthetic":
            continue
        chosen = wanted.setdefault(model, {()} | {(block,) for block in range(n_blocks[problem])})
        chosen.update(tuple(row["subset"]) for rows in runs.values() for row in rows)
    found: dict[tuple[str, tuple[int, ...]], study.Scores] = {}
    for model, subsets in wanted.items():
        try:
            named, retarget = serving_model(model, model_weights(model, cells, table_paths))
            stored = stored_scores(named, sorted(subsets), evaluation_sets(), {**retarget, **draw})
        except DepthbenchError:
            continue  # no downstream tables, or a --model run whose weights are not here
        for (subset, name), value in stored.items():
            found.setdefault((model, subset), {})[name] = value
    return found


def model_weights(model: str, cells, table_paths: dict[str, Path | None]) -> str | None:
    """Where the weights of a `--model` run's model are, as its calibration tables record them
    (None for a named model, or when no table of the run names them)."""
    if model in MODELS:
        return None
    for problem, _ in cells:
        table = _open(table_paths.get(problem)) if split_problem(problem)[0] == model else None
        if table is not None:
            with table:
                path = table.spec.get("model", {}).get("path")
            if path:
                return path
    return None


def _interval(interval: tuple[float, float], digits: int = 2, sign: str = "+") -> str:
    return f"[{interval[0]:{sign}.{digits}f}, {interval[1]:{sign}.{digits}f}]"


def _accuracies(values: dict[str, float], intervals: dict[str, tuple[float, float]]) -> list[str]:
    return [f"{values[name]:.1f} {_interval(intervals[name], 0, '')}" for name in (*HEADLINE, "mean")]


def _perplexities(values: dict[str, tuple[float, tuple[float, float]]], texts: list[str]) -> list[str]:
    # A broken model's perplexity runs to 10⁵: four significant digits keep every value readable.
    return [f"{values[text][0]:.4g} [{values[text][1][0]:.4g}, {values[text][1][1]:.4g}]" if text in values else "—"
            for text in texts]


def _subset(subset) -> str:
    return "{" + ",".join(map(str, subset)) + "}"


def build_study(cells, n_blocks: dict[str, int], table_paths: dict[str, Path | None], draw: dict, target: Path
                ) -> StudySection:
    scores = downstream_scores(cells, n_blocks, table_paths, draw)
    section = StudySection()
    answers = {(split_problem(problem)[0], tuple(row["subset"])) for (problem, _), runs in cells.items()
               for rows in runs.values() for row in rows if split_problem(problem)[0] != "synthetic"}
    evaluated = sum(study.has_tasks(scores.get(answer)) for answer in answers)
    section.coverage = (f"{evaluated} of the run's {len(answers)} distinct pruned models have stored downstream "
                        f"scores on all six tasks" + ("" if evaluated == len(answers) else
                                                       " (the others: `python -m bench downstream OUT`)"))
    rows = study.solver_rows(cells, scores)
    texts = [name for name in evaluation_sets() if name not in HEADLINE]
    dense = {model: scores.get((model, ())) for model, _ in answers}
    for model, found in sorted(dense.items()):
        if study.has_tasks(found):
            section.tables.append(StudyTable(
                f"Dense {model}", ["model"] + [f"{t} ({HEADLINE[t]})" for t in HEADLINE] + ["mean"] + texts,
                [[model] + _accuracies(study.accuracy(found), study.accuracy_intervals(found))
                 + _perplexities(study.held_out_perplexity(found), texts)]))
    lines = [[f"{r.problem} k={r.k}", r.solver, ",".join(map(str, r.seeds)), _subset(r.subset), f"{r.delta:.4f}"]
             + (_accuracies(r.accuracy, r.interval) if r.accuracy else ["—"] * (len(HEADLINE) + 1))
             + _perplexities(r.perplexity, texts) for r in rows]
    section.tables.append(StudyTable(
        "Pruned models downstream (the study's Tables 1–2)",
        ["problem", "solver", "seeds", "removed", "Δ calibration"] + list(HEADLINE) + ["mean"]
        + [f"{text} ppl" for text in texts],
        lines, f"Accuracy in % on items drawn by seed 0 ({_items_per_task(scores)}; ARC, HellaSwag and PIQA "
               "acc_norm; WinoGrande and BoolQ acc, as lm-eval-harness reports them), each with its 95% interval: "
               "Wilson per task, a bootstrap over items (stratified by task) for the mean, over windows for "
               "perplexity. Held-out "
               "perplexity on BoolQ's validation Wikipedia passages (never calibrated on) and on two Jane Austen "
               "novels."))

    overlaps = study.objective_overlap(cells, n_blocks)
    if overlaps:
        section.tables.append(StudyTable(
            "Finding (i): does the objective decide which blocks are redundant?",
            ["model, k", "objectives", "per solver: Jaccard (p vs relabelled blocks)", "within objective",
             "across objectives", "p (exchange)"],
            [[f"{o.model} k={o.k}", " vs ".join(o.objectives),
              "; ".join(f"{s} {o.jaccard[s]:.2f} ({o.p_overlap[s]:.3f})" for s in o.jaccard),
              f"{o.within:.2f}", f"{o.across:.2f}", f"{o.p_exchange:.4f}"] for o in overlaps],
            "Within: mean Jaccard between different solvers under one objective; across: between one solver's "
            "subsets under the two objectives. p (exchange): share of the assignments of each solver's two objective "
            f"labels with at least the observed within − across (all of them up to {study.EXACT_ASSIGNMENTS}, else "
            f"{study.PERMUTATIONS} drawn); small p means the objective, not the solver, decides the subset. "
            f"Per-solver p: share of {study.PERMUTATIONS} random relabellings of the blocks with at least the observed "
            "overlap (small p: more overlap than chance)."))

    alignments = study.rank_alignment(cells, scores)
    if alignments:
        section.tables.append(StudyTable(
            "Finding (ii): calibration rank against accuracy rank (the study's Figure 2)",
            ["problem", "k", "models", "Spearman ρ (lower loss ~ higher accuracy)", "95% interval"],
            [[a.problem, str(a.k), str(len(a.subsets)), f"{a.rho:+.2f}", _interval(a.interval)] for a in alignments],
            "The distinct models the solvers of one objective returned; ρ > 0 when a lower calibration loss goes "
            "with a higher mean accuracy. Interval: bootstrap over the models (each with its loss) and the evaluation "
            "items."))
        section.figures.append(("Calibration rank against accuracy rank",
                                figures.rank_alignment(alignments, target / "rank_alignment.png"),
                                "Each point a distinct pruned model; rank 1 = lowest calibration loss / highest "
                                "mean accuracy (the study's Figure 2)."))

    contrasts = study.search_against_objective(cells, scores)
    if contrasts:
        section.tables.append(StudyTable(
            "Finding (iii): switching the solver against switching the objective (the study's Figure 3)",
            ["model, k", "objectives", "solvers", "σ² of mean accuracy (pts²) per objective",
             "switch solver |Δacc|", "switch objective |Δacc|", "excess [95%]"],
            [[f"{c.model} k={c.k}", " vs ".join(c.objectives), str(len(c.solvers)),
              "; ".join(f"{name} {value:.1f} {_interval(interval, 1, '')}" for name, (value, interval)
                        in c.variance.items()),
              f"{c.within[0]:.1f} {_interval(c.within[1], 1, '')}", f"{c.switch[0]:.1f} {_interval(c.switch[1], 1, '')}",
              _interval(c.excess, 1)] for c in contrasts],
            "Each solver's seed-0 model under each objective. Switch solver: mean |difference in mean accuracy| "
            "between two solvers of one objective; switch objective: between one solver's models under the two "
            "objectives; excess = switch objective − switch solver (above 0: the objective matters more)."))
    section.tables += cost_benefit(cells, scores, table_paths)

    criteria, relevance = block_relevance(cells, n_blocks, table_paths, scores)
    if criteria:
        section.tables.append(StudyTable(
            "Beyond cosine similarity: per-block criteria against the true single-removal damage",
            ["problem", "criterion", "damage measured by", "Pearson", "Spearman", "block pairs misranked"],
            [[c.problem, c.criterion, c.target, f"{c.pearson:+.2f}", f"{c.spearman:+.2f}",
              f"{100 * c.misranked:.1f}%"] for c in criteria],
            "Criteria scores: higher = more important (cosine: ShortGPT's block influence 1 − cos); damage: Δ "
            "of removing the block alone, or on an evaluation set (the ppl problem's criteria) the drop of a "
            "task's accuracy or the rise of held-out NLL. 50% misranked is chance."))
    for model, (labels, matrix) in relevance.items():
        section.figures.append((f"Per-block relevance: {model}",
                                figures.relevance(model, labels, matrix, target / f"relevance__{model}.png"),
                                "Damage of removing each block alone, per objective and evaluation set, each row "
                                "scaled to its largest value (the task dependence of block relevance)."))
    section.tables += one_shot_against_iterative(cells, n_blocks, table_paths)
    verdicts = study.verdicts(overlaps, alignments, contrasts, criteria)
    section.tables.append(StudyTable(
        "Verdicts", ["finding", "model (objectives)", "verdict", "evidence"],
        [[v.finding, v.model, v.verdict, v.evidence] for v in verdicts],
        "Written from the numbers above by the rules of `bench.study.verdicts`; a finding without the data it "
        "needs is not listed."))
    return section


def _items_per_task(scores) -> str:
    """How many items of each task the report's scores hold: "100 per task", or per task."""
    counts = {task: sorted({len(found[task].acc) for found in scores.values() if task in found}) for task in HEADLINE}
    sizes = {size for found in counts.values() for size in found}
    if len(sizes) <= 1:
        return f"{sizes.pop()} per task" if sizes else "none stored"
    return ", ".join(f"{task} {'/'.join(map(str, found))}" for task, found in counts.items() if found)


def cost_benefit(cells, scores, table_paths: dict[str, Path | None]) -> list[StudyTable]:
    """The study's Table 3 per (problem, k): each solver's mean unique evaluations, the search
    time they cost on the model (evaluations × the table's mean measured seconds per evaluation,
    since replayed wall times are not search times) and the mean accuracy of its models."""
    lines = []
    for (problem, k), runs in cells.items():
        model, _ = split_problem(problem)
        cost = table_cost(table_paths.get(problem))
        for solver, results in runs.items():
            found = [scores.get((model, tuple(row["subset"]))) for row in results]
            accuracies = [study.accuracy(f)["mean"] for f in found if study.has_tasks(f)]
            evaluations = float(np.mean([row["n_evaluations"] for row in results]))
            lines.append([f"{problem} k={k}", solver, f"{evaluations:.0f}",
                          f"{evaluations * cost:.0f}" if math.isfinite(cost) else "—",
                          f"{np.mean(accuracies):.1f}" if accuracies else "—"])
    return [StudyTable("Cost against accuracy (the study's Table 3)",
                       ["problem", "solver", "unique evaluations", "search s on the model", "mean accuracy"], lines,
                       "Search seconds: unique evaluations × the mean measured cost of one evaluation in the "
                       "problem's table (the machine that built it); mean over seeds.")]


def table_cost(path: Path | None) -> float:
    """Mean measured seconds per evaluation in a table, NaN without one."""
    table = _open(path)
    if table is None:
        return math.nan
    with table:
        costs = table.to_arrays()["cost_s"]
    costs = costs[costs > 0]
    return float(costs.mean()) if len(costs) else math.nan


def _open(path: Path | None):
    from oracle.table import EvaluationTable

    return EvaluationTable.open(path, mode="r") if path is not None and Path(path).exists() else None


def one_shot_against_iterative(cells, n_blocks: dict[str, int], table_paths: dict[str, Path | None]
                               ) -> list[StudyTable]:
    """Per (problem, k) and criterion: Δ of removing the k blocks it ranks least important at
    once (one-shot) against removing one block at a time and ranking again on the pruned model
    (iterative: the stored removal order for the hidden-state criteria; greedy for the removal
    loss). Subsets the table lacks are shown as such, never predicted."""
    lines = []
    for (problem, k), runs in cells.items():
        table = _open(table_paths.get(problem))
        if table is None:
            continue
        with table:
            empty = table.lookup(())
            if empty is None:
                continue
            cells_of_line = []
            for name in ("cosine", "angular"):
                scores = _attribute(table, f"block_scores/{name}")
                order = _attribute(table, f"removal_order/{name}")
                one_shot = None if scores is None else ranked_blocks(scores)[:k]
                iterative = None if order is None or len(order) < k else order[:k]
                cells_of_line += [_delta_of(table, empty, removed) for removed in (one_shot, iterative)]
        by_loss = [f"{np.mean([row['delta'] for row in runs[name]]):.4f}"
                   + (" ~" if any(row.get("surrogate") for row in runs[name]) else "") if name in runs else "—"
                   for name in ("oneshot", "greedy")]
        lines.append([problem, str(k), *cells_of_line, *by_loss])
    if not lines:
        return []
    return [StudyTable("One-shot against iterative removal",
                       ["problem", "k", "cosine one-shot Δ", "cosine iterative Δ", "angular one-shot Δ",
                        "angular iterative Δ", "removal-loss one-shot Δ", "removal-loss iterative (greedy) Δ"],
                       lines,
                       "One-shot: the k blocks of lowest score removed at once (block influence 1 − cos, angular "
                       "distance of a block's input and output at the last token, or the loss of removing the block "
                       "alone); iterative: the block of lowest score removed, the scores measured again on the "
                       "pruned model, k times (greedy re-measures the loss). — : the table holds no such "
                       "criterion; ~ : some of the run's losses came from the surrogate, not the model.")]


def _delta_of(table, empty, removed) -> str:
    """A report cell: Δ of removing `removed` with the subset, 'not in table' when the table
    lacks it, — when there is no such subset (a criterion the table does not hold)."""
    if removed is None:
        return "—"
    subset = tuple(sorted(int(block) for block in removed))
    found = table.lookup(subset)
    return f"{found.loss - empty.loss:.4f} {_subset(subset)}" if found else f"not in table {_subset(subset)}"


def _attribute(table, name: str):
    try:
        return table.attribute(name)
    except KeyError:
        return None


def block_relevance(cells, n_blocks: dict[str, int], table_paths: dict[str, Path | None], scores
                    ) -> tuple[list[study.CriterionAlignment], dict[str, tuple[list[str], np.ndarray]]]:
    """Per model: the damage of removing each block alone under each objective (Δ from its table)
    and on each evaluation set whose singles are stored (accuracy drop in points; held-out NLL
    increase), and how the stored hidden-state criteria rank blocks against each damage (against
    a set's damage, the criteria of the model's ppl problem: block influence on text, as ShortGPT
    measures it)."""
    criteria: list[study.CriterionAlignment] = []
    relevance: dict[str, tuple[list[str], np.ndarray]] = {}
    text_criteria: dict[str, tuple[str, dict[str, np.ndarray]]] = {}  # model → (problem, criterion → scores)
    for problem in sorted({problem for problem, _ in cells}):
        model, objective = split_problem(problem)
        table = _open(table_paths.get(problem))
        if table is None:
            continue
        with table:
            empty = table.lookup(())
            singles = [table.lookup((block,)) for block in range(n_blocks[problem])]
            if empty is None or any(single is None for single in singles):
                continue
            damage = np.array([single.loss - empty.loss for single in singles])
            stored = {name: _attribute(table, f"block_scores/{name}") for name in ("cosine", "angular")}
        usable = {name: np.asarray(values) for name, values in stored.items()
                  if values is not None and np.all(np.isfinite(values))}
        if objective == "ppl" or model not in text_criteria:
            text_criteria[model] = (problem, usable)
        labels, rows = relevance.setdefault(model, ([], []))
        labels.append(f"Δ {objective}")
        rows.append(damage)
        criteria += [study.criterion_alignment(problem, name, SINGLES_TARGET, values, damage)
                     for name, values in usable.items()]
    for model, (labels, rows) in list(relevance.items()):
        dense = scores.get((model, ()))
        blocks = len(rows[0])
        for name in evaluation_sets():
            found = [scores.get((model, (block,)), {}).get(name) for block in range(blocks)]
            if dense is None or name not in dense or any(f is None for f in found):
                continue
            if name in HEADLINE:
                base = 100 * np.mean(dense[name].headline(name))
                damage = np.array([base - 100 * np.mean(f.headline(name)) for f in found])
                labels.append(f"{name} accuracy drop")
            else:
                damage = np.array([np.mean(f.nll) - np.mean(dense[name].nll) for f in found])
                labels.append(f"{name} Δ NLL")
            rows.append(damage)
            problem, usable = text_criteria[model]
            if np.ptp(damage) > 0:  # a damage equal for every block ranks nothing
                criteria += [study.criterion_alignment(problem, criterion, labels[-1], values, damage)
                             for criterion, values in usable.items()]
        relevance[model] = (labels, np.array(rows))
    return criteria, relevance
