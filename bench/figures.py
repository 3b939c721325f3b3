"""The report's figures (matplotlib, written as PNG). Each function draws one figure from
analysed data and returns the path it wrote; every title names its problems, k, seeds and
tables so that a figure read on its own says where it came from."""

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.ticker import NullFormatter

from bench import analysis

DPI = 110
MARKERS = "os^Dv<>pP*Xh"


def _style(solvers: Sequence[str], name: str) -> dict:
    """One colour and marker per solver, the same in every figure of a report."""
    index = list(solvers).index(name)
    return {"color": plt.cm.tab10(index % 10), "marker": MARKERS[index % len(MARKERS)]}


def _solvers(cells) -> list[str]:
    return sorted({s for runs in cells.values() for s in runs})


def _log_axis(axis, label: str) -> None:
    axis.set_xscale("log")
    axis.xaxis.set_minor_formatter(NullFormatter())  # minor labels on a short log axis collide
    axis.set_xlabel(label)


def _panels(count: int, width: float, height: float, columns: int = 2):
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(width * columns, height * rows), squeeze=False,
                                layout="constrained")
    for extra in axes.flat[count:]:
        extra.set_visible(False)
    return figure, list(axes.flat[:count])


def _save(figure, path: Path, title: str) -> Path:
    figure.suptitle(title, fontsize=11)
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return path


def _cell_title(cell: analysis.Cell, runs, tables: dict[str, str]) -> str:
    problem, k = cell
    return f"{problem}, k={k}, {analysis.seeds_label(runs.values())}\ntable {tables.get(problem, '—')}"


def masks(cells, n_blocks: dict[str, int], tables: dict[str, str], path: Path) -> Path:
    """Rows solvers, columns blocks; colour = share of seeds that removed the block."""
    figure, axes = _panels(len(cells), 0.28 * max(n_blocks.values()) + 2.2, 0.32 * max(map(len, cells.values())) + 1.6,
                           columns=1)
    for axis, (cell, runs) in zip(axes, cells.items()):
        blocks = n_blocks[cell[0]]
        image = axis.imshow(analysis.removal_frequency(runs, blocks), cmap="Reds", vmin=0, vmax=1, aspect="auto")
        axis.set_yticks(range(len(runs)), list(runs))
        axis.set_xticks(range(blocks), [str(b) for b in range(blocks)], fontsize=7)
        axis.set_xticks(np.arange(-0.5, blocks), minor=True)
        axis.set_yticks(np.arange(-0.5, len(runs)), minor=True)
        axis.grid(which="minor", color="#dddddd", linewidth=0.5)
        axis.tick_params(which="minor", length=0)
        axis.set_xlabel("block (0 = closest to the embeddings)")
        axis.set_title(_cell_title(cell, runs, tables), fontsize=9)
        figure.colorbar(image, ax=axis, fraction=0.025, pad=0.01, label="share of seeds removing it")
    return _save(figure, path, "Pruning masks: which blocks each solver removes")


def agreement(cells, tables: dict[str, str], path: Path) -> Path:
    """Solver × solver mean Jaccard overlap of the removed subsets, one panel per cell."""
    size = 0.45 * max(map(len, cells.values())) + 2.0
    figure, axes = _panels(len(cells), size + 0.8, size)
    for axis, (cell, runs) in zip(axes, cells.items()):
        matrix = analysis.agreement_matrix(runs)
        axis.imshow(matrix, cmap="Blues", vmin=0, vmax=1)
        names = list(runs)
        axis.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
        axis.set_yticks(range(len(names)), names, fontsize=8)
        for (i, j), value in np.ndenumerate(matrix):
            axis.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=6,
                      color="white" if value > 0.6 else "black")
        axis.set_title(_cell_title(cell, runs, tables), fontsize=8)
    return _save(figure, path, "Agreement: mean Jaccard overlap of removed blocks\n"
                               "(diagonal: the same solver across seeds)")


def objective_agreement(pairs: Sequence[analysis.ObjectivePair], seeds: str, path: Path) -> Path:
    """Solvers × (model, k, objective pair): Jaccard of a solver's subsets under two objectives."""
    solvers = sorted({s for pair in pairs for s in pair.jaccard})
    columns = [f"{p.model}\nk={p.k}: {p.objectives[0]} vs {p.objectives[1]}" for p in pairs]
    matrix = np.array([[pair.jaccard.get(s, np.nan) for pair in pairs] for s in solvers])
    figure, axis = plt.subplots(figsize=(max(1.9 * len(pairs) + 2.5, 6.5), 0.4 * len(solvers) + 2.4),
                                layout="constrained")
    axis.imshow(matrix, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    axis.set_xticks(range(len(columns)), columns, fontsize=8)
    axis.set_yticks(range(len(solvers)), solvers, fontsize=8)
    for (i, j), value in np.ndenumerate(matrix):
        if np.isfinite(value):
            axis.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8,
                      color="white" if value > 0.6 else "black")
    return _save(figure, path, "Does the objective change which blocks are redundant?\n"
                               f"mean Jaccard of each solver's subsets under two objectives\n({seeds}; "
                               "1 = same blocks, 0 = disjoint)")


def spread(cells, tables: dict[str, str], path: Path) -> Path:
    """Per cell: each solver's mean Δ as a point, the range shaded, the mean as a line, σ² noted
    (the study's Figure 3)."""
    solvers = _solvers(cells)
    figure, axis = plt.subplots(figsize=(max(2.2 * len(cells) + 2.5, 6.5), 5.0), layout="constrained")
    for x, (cell, runs) in enumerate(cells.items()):
        deltas = {s: analysis.mean_delta(rows) for s, rows in runs.items()}
        low, high = min(deltas.values()), max(deltas.values())
        axis.fill_between([x - 0.3, x + 0.3], low, high, color="#cfe0f3", zorder=0)
        axis.hlines(np.mean(list(deltas.values())), x - 0.3, x + 0.3, color="#1f4e79", zorder=1)
        for s, delta in deltas.items():
            offset = 0.5 * (solvers.index(s) / max(len(solvers) - 1, 1) - 0.5)
            axis.scatter(x + offset, delta, zorder=2, **_style(solvers, s))
        axis.annotate(f"σ²={analysis.inter_solver_variance(runs):.2g}", (x, high), textcoords="offset points",
                      xytext=(0, 6), ha="center", fontsize=8)
    axis.set_xticks(range(len(cells)), [f"{p}\nk={k}\ntable {tables.get(p, '—').split(' ')[0]}" for p, k in cells],
                    fontsize=8)
    axis.set_ylabel("mean Δ over seeds (lower is better)")
    _solver_legend(figure, solvers)
    axis.margins(y=0.15)
    seeds = analysis.seeds_label(r for runs in cells.values() for r in runs.values())
    return _save(figure, path, f"Spread across solvers per cell\n({seeds})")


def _solver_legend(figure, solvers: Sequence[str], extra: Sequence = ()) -> None:
    handles = [Line2D([], [], linestyle="", **_style(solvers, s)) for s in solvers]
    figure.legend(list(handles) + [h for h, _ in extra], list(solvers) + [label for _, label in extra],
                  loc="outside right upper", fontsize=8)


def anytime(cells, tables: dict[str, str], path: Path) -> Path:
    """Best Δ found so far against unique evaluations, mean over seeds, one panel per cell. The
    y axis ends a little above the worst final value: early values of exhaustive or random
    searches are far off and would flatten every curve that matters."""
    figure, axes = _panels(len(cells), 5.0, 3.7)
    solvers = _solvers(cells)
    for axis, (cell, runs) in zip(axes, cells.items()):
        finals = []
        for s, rows in runs.items():
            evaluations, best = analysis.anytime_curve(rows)
            if len(evaluations):
                axis.step(evaluations, best, where="post", color=_style(solvers, s)["color"])
                axis.scatter(evaluations[-1], best[-1], s=18, **_style(solvers, s))
                finals.append(best[-1])
        if finals:
            low, high = min(finals), max(finals)
            width = max(high - low, 0.05 * abs(low), 1e-6)
            axis.set_ylim(low - 0.15 * width, high + 1.5 * width)
        _log_axis(axis, "unique evaluations (log)")
        axis.set_ylabel("best Δ so far")
        axis.set_title(_cell_title(cell, runs, tables), fontsize=8)
    _solver_legend(figure, solvers)
    return _save(figure, path, "Anytime performance: best Δ against evaluations (mean over seeds; marker = end)")


def pareto(cells, tables: dict[str, str], path: Path) -> Path:
    """Mean evaluations against mean Δ per solver, the cost–quality front joined."""
    figure, axes = _panels(len(cells), 5.0, 3.7)
    solvers = _solvers(cells)
    for axis, (cell, runs) in zip(axes, cells.items()):
        points = [(analysis.mean_evaluations(rows), analysis.mean_delta(rows)) for rows in runs.values()]
        front = analysis.pareto_front(points)
        axis.plot([points[i][0] for i in front], [points[i][1] for i in front], color="#999999", zorder=0)
        for index, ((cost, delta), name) in enumerate(zip(points, runs)):
            axis.scatter(cost, delta, zorder=2, s=30, **_style(solvers, name))
            if index in front:
                axis.scatter(cost, delta, zorder=1, s=140, facecolors="none", edgecolors="#c0392b", linewidths=1.5)
        _log_axis(axis, "mean unique evaluations (log)")
        axis.set_ylabel("mean Δ")
        axis.set_title(_cell_title(cell, runs, tables), fontsize=8)
    front_handle = Line2D([], [], marker="o", markersize=10, markerfacecolor="none", markeredgecolor="#c0392b",
                          linestyle="-", color="#999999")
    _solver_legend(figure, solvers, [(front_handle, "on the front")])
    return _save(figure, path, "Cost against quality: mean unique evaluations and mean Δ per solver")


def interactions(landscape: analysis.Landscape, path: Path) -> Path:
    """Heatmap of J_ij = Δ({i,j}) − Δ({i}) − Δ({j}), centred on zero."""
    matrix = landscape.interaction
    limit = float(np.nanpercentile(np.abs(matrix), 98)) if np.isfinite(matrix).any() else 1.0
    figure, axis = plt.subplots(figsize=(7.2, 6.2), layout="constrained")
    image = axis.imshow(matrix, cmap="RdBu_r", vmin=-limit, vmax=limit)
    blocks = len(landscape.singles)
    step = 1 if blocks <= 20 else 2
    axis.set_xticks(range(0, blocks, step))
    axis.set_yticks(range(0, blocks, step))
    axis.set_xlabel("block j")
    axis.set_ylabel("block i")
    figure.colorbar(image, ax=axis, label="J_ij  (red: the pair hurts more than its singles' sum)")
    known = np.isfinite(matrix[np.triu_indices(blocks, 1)]).sum()
    return _save(figure, path, f"Non-additivity of pairs: {landscape.problem}\n"
                               + textwrap.fill(f"{known} of {blocks * (blocks - 1) // 2} pairs, from {landscape.source}", 70))


def additivity(points: dict[str, list[tuple[str, float, float]]], sources: dict[str, str], path: Path) -> Path:
    """Per problem: Δ(S) of each solver's subset against Σ Δ({i}), with the y = x line."""
    figure, axes = _panels(len(points), 4.8, 4.0)
    solvers = sorted({label for entries in points.values() for label, _, _ in entries})
    for axis, (problem, entries) in zip(axes, points.items()):
        for label in solvers:
            xs = [x for name, x, _ in entries if name == label]
            ys = [y for name, _, y in entries if name == label]
            axis.scatter(xs, ys, s=18, alpha=0.8, **_style(solvers, label))
        values = [v for _, x, y in entries for v in (x, y)]
        axis.plot([min(values), max(values)], [min(values), max(values)], color="#888888", linestyle=":")
        axis.set_xlabel("Σ Δ({i}) over i ∈ S  (additive prediction)")
        axis.set_ylabel("Δ(S)  (measured)")
        axis.set_title(f"{problem}\nsingles from {sources[problem]}", fontsize=8)
    _solver_legend(figure, solvers, [(Line2D([], [], color="#888888", linestyle=":"), "Δ(S) = Σ Δ({i})")])
    return _save(figure, path, "Measured Δ(S) of every solver's subset\nagainst the sum of its singles")


def rank_alignment(alignments, path: Path) -> Path:
    """Per (problem, k): calibration-loss rank against mean-accuracy rank of its distinct pruned
    models, with ρ and its interval (the study's Figure 2)."""
    from scipy.stats import rankdata

    figure, axes = _panels(len(alignments), 3.4, 3.2, columns=3)
    for axis, found in zip(axes, alignments):
        loss_rank = rankdata(found.loss)
        accuracy_rank = rankdata(-np.asarray(found.accuracy))
        axis.scatter(loss_rank, accuracy_rank, color="#1f4e79")
        top = len(found.subsets) + 0.5
        axis.plot([0.5, top], [0.5, top], color="#999999", linestyle=":", linewidth=1)
        axis.set_xlim(0.5, top)
        axis.set_ylim(0.5, top)
        axis.set_xlabel("calibration loss rank")
        axis.set_ylabel("mean accuracy rank")
        axis.set_title(f"{found.problem}, k={found.k}\nρ={found.rho:+.2f} "
                       f"[{found.interval[0]:+.2f}, {found.interval[1]:+.2f}]", fontsize=9)
    return _save(figure, path, "Do lower calibration losses give more accurate pruned models?\n"
                               "(dotted: perfect agreement; interval: bootstrap over evaluation items)")


def relevance(model: str, labels: Sequence[str], matrix: np.ndarray, path: Path) -> Path:
    """Rows: objectives and evaluation sets; columns: blocks; colour: the damage of removing the
    block alone, each row divided by its largest absolute value."""
    scale = np.nanmax(np.abs(matrix), axis=1, keepdims=True)
    scaled = matrix / np.where(scale > 0, scale, 1.0)
    figure, axis = plt.subplots(figsize=(0.28 * matrix.shape[1] + 3.5, 0.42 * len(labels) + 1.8),
                                layout="constrained")
    image = axis.imshow(scaled, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    axis.set_yticks(range(len(labels)), labels, fontsize=8)
    axis.set_xticks(range(matrix.shape[1]), [str(b) for b in range(matrix.shape[1])], fontsize=7)
    axis.set_xlabel("block removed alone (0 = closest to the embeddings)")
    figure.colorbar(image, ax=axis, fraction=0.025, pad=0.01, label="damage / row's largest")
    return _save(figure, path, f"Per-block relevance of {model} across objectives and tasks")
