"""The report's analyses: pure functions from results rows (and a problem's singles and pairs)
to the numbers its tables and figures show. Rows are those of `bench.runner` (annotated)."""

import itertools
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from bench.metrics import jaccard, spearman

Cell = tuple[str, int]  # (problem, k)


def by_cell(rows: Iterable[dict]) -> dict[Cell, dict[str, list[dict]]]:
    """rows grouped by (problem, k), then by solver, seeds in order; cells and solvers sorted."""
    groups: dict[Cell, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        groups[row["problem"], row["k"]][row["solver"]].append(row)
    return {cell: {solver: sorted(runs, key=lambda r: r["seed"]) for solver, runs in sorted(solvers.items())}
            for cell, solvers in sorted(groups.items())}


def split_problem(problem: str) -> tuple[str, str]:
    """'smollm2-135m/ppl' → ('smollm2-135m', 'ppl'): the model and its objective."""
    model, _, objective = problem.rpartition("/")
    return model, objective


def seeds_label(runs: Iterable[Iterable[dict]]) -> str:
    seeds = sorted({row["seed"] for rows in runs for row in rows})
    return "seed " + ",".join(map(str, seeds)) if len(seeds) == 1 else "seeds " + ",".join(map(str, seeds))


def removal_frequency(runs: dict[str, list[dict]], n_blocks: int) -> np.ndarray:
    """solvers × blocks: the fraction of each solver's seeds that removed each block."""
    frequency = np.zeros((len(runs), n_blocks))
    for row_index, rows in enumerate(runs.values()):
        for row in rows:
            frequency[row_index, row["subset"]] += 1 / len(rows)
    return frequency


def mean_jaccard(a: Sequence[dict], b: Sequence[dict]) -> float:
    """Mean Jaccard overlap of the subsets of two lists of runs over every pairing of their
    seeds (for one list with itself, the distinct pairs; 1.0 when there is a single run)."""
    if a is b:
        pairs = list(itertools.combinations(a, 2)) or [(a[0], a[0])]
    else:
        pairs = list(itertools.product(a, b))
    return float(np.mean([jaccard(x["subset"], y["subset"]) for x, y in pairs]))


def agreement_matrix(runs: dict[str, list[dict]]) -> np.ndarray:
    """solvers × solvers mean Jaccard overlap; the diagonal is a solver's agreement across seeds."""
    names = list(runs)
    return np.array([[mean_jaccard(runs[a], runs[b]) for b in names] for a in names])


@dataclass(frozen=True)
class ObjectivePair:
    model: str
    k: int
    objectives: tuple[str, str]
    jaccard: dict[str, float]  # solver → mean Jaccard of its subsets under the two objectives
    rho: float  # Spearman ρ of the solvers' ranks (by mean Δ) under the two objectives
    n_solvers: int


@dataclass(frozen=True)
class ObjectivesOfModel:
    """Two objectives' runs on one model at one k, and the solvers run under both."""

    model: str
    k: int
    objectives: tuple[str, str]
    runs: tuple[dict[str, list[dict]], dict[str, list[dict]]]
    shared: list[str]


def objective_pairs(cells: dict[Cell, dict[str, list[dict]]]) -> list[ObjectivesOfModel]:
    """For each model and k with more than one objective, each pair of its objectives that share
    a solver. Synthetic functions share no model, so they are never paired."""
    by_model: dict[tuple[str, int], dict[str, dict[str, list[dict]]]] = defaultdict(dict)
    for (problem, k), runs in cells.items():
        model, objective = split_problem(problem)
        if model != "synthetic":
            by_model[model, k][objective] = runs
    pairs = []
    for (model, k), objectives in sorted(by_model.items()):
        for first, second in itertools.combinations(sorted(objectives), 2):
            a, b = objectives[first], objectives[second]
            shared = [solver for solver in a if solver in b]
            if shared:
                pairs.append(ObjectivesOfModel(model, k, (first, second), (a, b), shared))
    return pairs


def across_objectives(cells: dict[Cell, dict[str, list[dict]]]) -> list[ObjectivePair]:
    """For each model and k and each pair of its objectives: how far each solver's subsets agree,
    and how well the solvers' rankings agree."""
    pairs = []
    for pair in objective_pairs(cells):
        (a, b), shared = pair.runs, pair.shared
        rho = (spearman([mean_delta(a[s]) for s in shared], [mean_delta(b[s]) for s in shared])
               if len(shared) >= 3 else math.nan)
        pairs.append(ObjectivePair(pair.model, pair.k, pair.objectives,
                                   {s: mean_jaccard(a[s], b[s]) for s in shared}, rho, len(shared)))
    return pairs


def mean_delta(rows: Sequence[dict]) -> float:
    return float(np.mean([row["delta"] for row in rows]))


def mean_evaluations(rows: Sequence[dict]) -> float:
    return float(np.mean([row["n_evaluations"] for row in rows]))


def inter_solver_variance(runs: dict[str, list[dict]]) -> float:
    """σ² of the solvers' mean Δ in one cell (population variance, as in the study's Figure 3)."""
    return float(np.var([mean_delta(rows) for rows in runs.values()]))


def anytime_curve(rows: Sequence[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Mean over seeds of the best Δ found after each number of evaluations, from the point
    where every seed has found some k-subset up to the most unique evaluations a seed used."""
    traces = [row.get("trace") or [] for row in rows]
    if not all(traces):
        return np.array([]), np.array([])
    start = max(trace[0][0] for trace in traces)
    end = max([start] + [trace[-1][0] for trace in traces] + [row.get("n_evaluations", 0) for row in rows])
    grid = np.array(sorted({start, end} | {point[0] for trace in traces for point in trace if point[0] >= start}))
    curves = []
    for trace in traces:
        evaluations = np.array([point[0] for point in trace])
        best = np.array([point[1] for point in trace])
        curves.append(best[np.searchsorted(evaluations, grid, side="right") - 1])
    return grid, np.mean(curves, axis=0)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points (cost, Δ) that no other point beats in both, sorted by cost."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1]))
    front, best = [], math.inf
    for index in order:
        if points[index][1] < best:
            front.append(index)
            best = points[index][1]
    return front


@dataclass(frozen=True)
class Landscape:
    """The second-order picture of one problem: Δ of every single and pair that is known."""

    problem: str
    source: str  # where the values came from, for the figure: "table NAME" or "the synthetic function"
    singles: np.ndarray  # Δ({i}), NaN where unknown
    pairs: np.ndarray  # Δ({i, j}), symmetric, NaN where unknown (and on the diagonal)

    @property
    def interaction(self) -> np.ndarray:
        """J_ij = Δ({i,j}) − Δ({i}) − Δ({j}); NaN where a value is missing."""
        return self.pairs - self.singles[:, None] - self.singles[None, :]

    def additive_prediction(self, subset: Iterable[int]) -> float:
        """Σ_{i∈S} Δ({i}), NaN if a single is unknown."""
        return float(sum(self.singles[i] for i in subset))
