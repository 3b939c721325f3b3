"""Downstream evaluation of pruned models: zero-shot accuracy on the reference study's six tasks
and perplexity on held-out text, per item, stored in tables.

Each evaluation set is a problem of its own (`<model>/<set>`, see `problems.model_problems`), so a
pruned model's per-item values go through the same memo and tables as calibration losses: written
as they are computed, resumable, replayed by reports without a model. `evaluate_models` builds
them; `stored_scores` reads them back (never evaluating) as per-item scores:

- a task: per item `acc` (the option of highest summed log-likelihood is gold) and `acc_norm`
  (highest log-likelihood per character), as lm-eval-harness defines them. The task's headline
  metric (HEADLINE) follows lm-eval's usual report: acc_norm where the options' lengths differ
  and it exists (ARC, HellaSwag, PIQA), acc for WinoGrande and BoolQ. Mean accuracy is the
  mean of the six headline accuracies.
- held-out text: per window the mean token NLL; perplexity = exp of the mean over windows.

Intervals: Wilson (95%) for one task's accuracy; a percentile bootstrap over items, stratified by
task, for the mean accuracy (`mean_accuracy_interval`)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from scipy import stats

import problems
from oracle.errors import BadInput
from oracle.subset import Subset

HEADLINE = {"arc_easy": "acc_norm", "arc_challenge": "acc_norm", "hellaswag": "acc_norm", "piqa": "acc_norm",
            "winogrande": "acc", "boolq": "acc"}
CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000
RETARGETED_MODEL = "smollm2-135m"  # the named model whose problems `--model` re-targets
CHUNK = 8  # subsets per stored batch: an interrupted build keeps all but the last few
DRAW_RECORD = "downstream.json"  # in a run directory: the item draw its answers were evaluated on
DRAW_OPTIONS = ("items", "study_sizes")


@dataclass(frozen=True)
class SetScores:
    """One pruned model on one evaluation set: per-item 0/1 `acc` and `acc_norm` (tasks) or
    per-window mean NLL `nll` (held-out text)."""

    acc: np.ndarray | None = None
    acc_norm: np.ndarray | None = None
    nll: np.ndarray | None = None

    @property
    def perplexity(self) -> float:
        return float(np.exp(np.mean(self.nll)))

    def headline(self, task: str) -> np.ndarray:
        return getattr(self, HEADLINE[task])


def evaluation_sets() -> tuple[str, ...]:
    from problems.model_problems import DOWNSTREAM_SETS

    return DOWNSTREAM_SETS


def is_task(name: str) -> bool:
    return name in HEADLINE


def set_problem(model: str, name: str, options: dict[str, Any], oracle: str = "replay"):
    """The problem of evaluation set `name` on `model` (`smollm2-135m`, ...). `options`: model
    options (model, bos, dtype, study_sizes, items for tasks) and execution options."""
    chosen = {key: value for key, value in options.items() if key != "items" or is_task(name)}
    if oracle == "replay":
        chosen.update(on_miss="strict")
    return problems.get(f"{model}/{name}", oracle=oracle, **chosen)


def serving_model(model: str, path: str | None = None) -> tuple[str, dict[str, Any]]:
    """The named model whose evaluation sets serve the pruned models of `model` (the model part of
    a run's problem names), and the options that retarget those sets: a named model serves
    itself; a `--model` run's model (named after its directory) is the weights at `path`, put in
    place of the study's model as `run --model` does."""
    from problems.model_problems import MODELS

    if path is None:
        if model not in MODELS:
            raise BadInput(f"{model} is the model of a --model run: give its weights with --model")
        return model, {}
    return RETARGETED_MODEL, {"model": path}


def run_model(path: str) -> str:
    """The model part of the problem names of a `run --model path` run (`serving_model`'s inverse)."""
    retargeted, _ = problems.identity(f"{RETARGETED_MODEL}/ppl", model=path)
    return retargeted.partition("/")[0]


def record_draw(out: Path, options: dict[str, Any]) -> None:
    """Note in run directory `out` which item draw `bench downstream` evaluated its answers on,
    so that its report reads that draw (the last one evaluated) and not the default."""
    draw = {key: options[key] for key in DRAW_OPTIONS if key in options}
    (Path(out) / DRAW_RECORD).write_text(json.dumps(draw, sort_keys=True) + "\n")


def recorded_draw(out: Path) -> dict[str, Any]:
    """The draw options `record_draw` noted in `out` ({} for the default draw or none noted)."""
    path = Path(out) / DRAW_RECORD
    if not path.exists():
        return {}
    try:
        draw = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise BadInput(f"{path}: not a downstream draw record ({error.msg})") from None
    if not isinstance(draw, dict) or set(draw) - set(DRAW_OPTIONS):
        raise BadInput(f"{path}: not a downstream draw record (expected keys among {', '.join(DRAW_OPTIONS)})")
    return draw


def evaluate_models(model: str, subsets: Sequence[Subset], sets: Sequence[str], options: dict[str, Any],
                    progress: TextIO | None = None) -> dict[str, tuple[int, float]]:
    """Evaluate every subset on every set (live, write-through; what is stored is skipped),
    smallest k first, CHUNK pruned models at a time on every set before the next CHUNK, so an
    interrupted build holds whole pruned models (all sets) and resumes where it stopped.
    Returns per set the number of new evaluations and the seconds they took."""
    progress = progress or sys.stderr
    label = Path(options["model"]).name if "model" in options else model
    seconds = {name: (0, 0.0) for name in sets}
    for size in sorted({len(subset) for subset in subsets}):
        group = [subset for subset in dict.fromkeys(subsets) if len(subset) == size]
        for start in range(0, len(group), CHUNK):
            chunk = group[start : start + CHUNK]
            for name in sets:
                with set_problem(model, name, options, oracle="live") as problem:
                    todo = [subset for subset in chunk if subset not in problem.oracle.table]
                    if not todo:
                        continue
                    evaluations = problem.evaluate(todo)
                count, spent = seconds[name]
                count += len(evaluations)
                spent += sum(evaluation.cost_s for evaluation in evaluations)
                seconds[name] = (count, spent)
                print(f"{label} k={size}, models {start + len(chunk)}/{len(group)}: {name} {len(todo)} new "
                      f"({len(chunk) - len(todo)} stored), {spent / count:.1f} s per pruned model",
                      file=progress, flush=True)
    return seconds


def stored_scores(model: str, subsets: Iterable[Subset], sets: Sequence[str], options: dict[str, Any]
                  ) -> dict[tuple[Subset, str], SetScores]:
    """The stored scores of every (subset, set) that has them, from the set's table (or a table of
    the same set with more items, whose first items are these); nothing is evaluated. Sets
    without a table are left out."""
    from oracle.errors import TableError, TableMiss
    from oracle.objectives import choice_accuracy
    from problems.calibration_tokens import choice_items

    subsets = list(dict.fromkeys(subsets))
    scores = {}
    for name in sets:
        try:
            problem = set_problem(model, name, options)
        except TableError:
            continue
        with problem:
            if is_task(name):
                items = choice_items(problem.spec)
                gold = [item["gold"] for item in items]
                lengths = [[len(choice["continuation"]) for choice in item["choices"]] for item in items]
            for subset in subsets:
                try:
                    evaluation = problem.evaluate([subset])[0]
                except TableMiss:
                    continue
                if is_task(name):
                    acc, acc_norm = choice_accuracy(evaluation.per_sample, gold, lengths)
                    scores[subset, name] = SetScores(acc=acc, acc_norm=acc_norm)
                else:
                    scores[subset, name] = SetScores(nll=np.asarray(evaluation.per_sample, dtype=np.float64))
    return scores


def perplexity_interval(nll: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap (95%) of a perplexity, exp of the mean window NLL, over windows."""
    result = stats.bootstrap((np.asarray(nll, dtype=float),), lambda x, axis: np.exp(x.mean(axis=axis)),
                             n_resamples=BOOTSTRAP_RESAMPLES, confidence_level=CONFIDENCE, method="percentile",
                             vectorized=True, rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def wilson_interval(correct: np.ndarray) -> tuple[float, float]:
    """95% Wilson score interval of an accuracy from per-item 0/1 outcomes."""
    interval = stats.binomtest(int(np.sum(correct)), len(correct)).proportion_ci(CONFIDENCE, method="wilson")
    return float(interval.low), float(interval.high)


def mean_accuracy_interval(per_task: dict[str, np.ndarray], seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap (95%) of the mean over tasks of each task's accuracy (per-item 0/1
    outcomes), items resampled within each task."""
    samples = [np.asarray(outcomes, dtype=float) for outcomes in per_task.values()]
    result = stats.bootstrap(samples, lambda *xs, axis: np.mean([x.mean(axis=axis) for x in xs], axis=0),
                             n_resamples=BOOTSTRAP_RESAMPLES, confidence_level=CONFIDENCE, method="percentile",
                             vectorized=True, rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)
