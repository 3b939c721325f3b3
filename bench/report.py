"""`python -m bench report OUT`: an HTML page and a Markdown summary of the results stored in OUT,
with the figures as PNG files next to them (OUT/report/). Everything is rebuilt from
OUT/results.jsonl, OUT/environment.json and the tables those name; nothing is re-run."""

import html
import itertools
import json
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np

import problems
from bench import analysis, figures
from bench.downstream import recorded_draw
from bench.study_report import StudySection, build_study
from bench.runner import (
    ENVIRONMENT,
    LEADERBOARD_LEGEND,
    RESULTS,
    annotate,
    completed,
    failure_line,
    failures,
    format_fidelity,
    format_score,
    leaderboard_cells,
    read_rows,
    summary_line,
)
from oracle.errors import BadInput

REPORT_DIR = "report"


class RunSummary(NamedTuple):
    fidelity: str  # the replay fidelity line
    failed: list[str]  # one line per cell stopped by a table miss


class Section(NamedTuple):
    title: str
    path: Path  # the figure
    caption: str


def build_report(out: Path) -> Path:
    """Write OUT/report/index.html, OUT/report/summary.md and the figures; return the HTML path."""
    if not (out / RESULTS).exists():
        raise BadInput(f"no {RESULTS} in {out}")
    rows = annotate(read_rows([out]))
    if not completed(rows):
        raise BadInput(f"{out / RESULTS} holds no completed cells ({len(failures(rows))} failed)")
    environment = json.loads((out / ENVIRONMENT).read_text()) if (out / ENVIRONMENT).exists() else {}
    cells = analysis.by_cell(completed(rows))
    names = sorted({problem for problem, _ in cells})
    table_records = environment.get("tables", {})
    tables = {name: table_label(table_records.get(name)) for name in names}
    # As the run recorded it, else from the name (runs before N was recorded): an unknown problem stops here.
    n_blocks = {name: (table_records.get(name) or {}).get("n_blocks") or problems.block_count(name)
                for name in names}
    target = out / REPORT_DIR
    target.mkdir(parents=True, exist_ok=True)
    landscapes = [landscape for name in names if (landscape := load_landscape(name, table_records.get(name)))]
    pairs = analysis.across_objectives(cells)
    seeds = analysis.seeds_label(runs for by_solver in cells.values() for runs in by_solver.values())

    sections = [
        Section("Pruning masks", figures.masks(cells, n_blocks, tables, target / "masks.png"),
                "Rows are solvers, columns blocks; a cell's colour is the share of seeds that removed that block "
                "(the reference study's Figure 1)."),
        Section("Agreement between solvers", figures.agreement(cells, tables, target / "agreement.png"),
                "Mean Jaccard overlap |A∩B|/|A∪B| of the removed subsets over every pairing of seeds."),
    ]
    if pairs:
        sections.append(Section(
            "Agreement across objectives", figures.objective_agreement(pairs, seeds, target / "objectives.png"),
            "For a fixed solver, the overlap of the blocks it removes under two objectives of the same model."))
    sections += [
        Section("Spread across solvers", figures.spread(cells, tables, target / "spread.png"),
                "Each point is a solver's mean Δ; the band is the range, the line the mean, σ² the inter-solver "
                "variance (the study's Figure 3)."),
        Section("Anytime curves", figures.anytime(cells, tables, target / "anytime.png"),
                "Best Δ among the k-subsets evaluated so far, against unique evaluations, averaged over seeds from "
                "the point where every seed has one."),
        Section("Cost against quality", figures.pareto(cells, tables, target / "pareto.png"),
                "Mean unique evaluations against mean Δ; circled points are on the cost–quality front (the "
                "study's Table 3)."),
    ]
    for landscape in landscapes:
        slug = landscape.problem.replace("/", "__")
        sections.append(Section(
            f"Pair interactions: {landscape.problem}",
            figures.interactions(landscape, target / f"interactions__{slug}.png"),
            "J_ij = Δ({i,j}) − Δ({i}) − Δ({j}); zero means the two removals add up, red means removing both "
            "hurts more than the sum, blue less."))
    additivity = additivity_points(cells, landscapes)
    if additivity:
        sources = {landscape.problem: landscape.source for landscape in landscapes}
        sections.append(Section(
            "Additivity of the chosen subsets", figures.additivity(additivity, sources, target / "additivity.png"),
            "Δ(S) of each solver's subset (every seed and k) against the sum of its blocks' single-removal Δ; "
            "points above the dotted line are subsets whose blocks interact badly, below it well."))

    paths = {name: Path(record["path"]) if record and record.get("path") else None
             for name, record in ((name, table_records.get(name)) for name in names)}
    findings = build_study(cells, n_blocks, paths, recorded_draw(out), target)
    sections += [Section(title, path, caption) for title, path, caption in findings.figures]

    board = leaderboard_cells(rows)
    runs = RunSummary(summary_line(rows), [failure_line(row) for row in failures(rows)])
    (target / "summary.md").write_text(markdown(out, board, pairs, cells, tables, sections, environment, runs,
                                                findings))
    page = target / "index.html"
    page.write_text(html_page(out, board, pairs, cells, tables, sections, environment, runs, findings))
    return page


def table_label(record: dict | None) -> str:
    if not record or not record.get("fingerprint"):
        return "none (computed on the fly)"
    fingerprint, path = record["fingerprint"][:16], record.get("path")
    if not path:
        return f"{fingerprint} (computed, no table)"
    name = Path(path).name
    return name if fingerprint in name else f"{fingerprint} ({name})"  # shipped names carry it


def load_landscape(problem: str, record: dict | None) -> analysis.Landscape | None:
    """Singles and pairs of a problem: from its table when the run used one, computed when the
    problem is synthetic (cheap), else None."""
    path = Path(record["path"]) if record and record.get("path") else None
    if path is not None and path.exists():
        from oracle.table import EvaluationTable

        with EvaluationTable.open(path, mode="r") as table:
            n_blocks = table.n_blocks
            empty = table.lookup(())
            base = empty.loss if empty is not None else math.nan

            def delta(subset):
                found = table.lookup(subset)
                return found.loss - base if found is not None else math.nan

            return _landscape(problem, f"table {path.name}", n_blocks, delta)
    if problem.startswith("synthetic/"):
        with problems.get(problem) as synthetic:
            return _landscape(problem, "the synthetic function", synthetic.n_blocks, synthetic.delta)
    return None


def _landscape(problem: str, source: str, n_blocks: int, delta) -> analysis.Landscape | None:
    singles = np.array([delta((i,)) for i in range(n_blocks)])
    pairs = np.full((n_blocks, n_blocks), np.nan)
    for i, j in itertools.combinations(range(n_blocks), 2):
        pairs[i, j] = pairs[j, i] = delta((i, j))
    if not np.isfinite(singles).any():
        return None
    return analysis.Landscape(problem, source, singles, pairs)


def additivity_points(cells, landscapes) -> dict[str, list[tuple[str, float, float]]]:
    """problem → (solver, Σ Δ({i}), Δ(S)) of every run whose singles are all known and whose
    Δ(S) was measured, not predicted by a surrogate."""
    by_problem = {landscape.problem: landscape for landscape in landscapes}
    points: dict[str, list[tuple[str, float, float]]] = {}
    for (problem, _), runs in cells.items():
        landscape = by_problem.get(problem)
        if landscape is None:
            continue
        for solver, rows in runs.items():
            for row in rows:
                additive = landscape.additive_prediction(row["subset"])
                if math.isfinite(additive) and not row.get("predicted"):
                    points.setdefault(problem, []).append((solver, additive, row["delta"]))
    return points


def _subset_text(rows: list[dict]) -> str:
    subsets = sorted({tuple(row["subset"]) for row in rows})
    return " / ".join("{" + ",".join(map(str, subset)) + "}" for subset in subsets)


def _board_rows(cell: dict, cells) -> list[list[str]]:
    runs = cells[cell["problem"], cell["k"]]
    return [[("* " if s["solver"] == cell["cheapest"] else "") + s["solver"] + (" ~" if s["surrogate"] else ""),
             str(s["seeds"]), f"{s['delta']:.5f}", f"{s['gap']:.5f}", format_score(s["score"]),
             f"{s['evaluations']:.1f}", f"{s['wall_s']:.2f}", format_fidelity(s["fidelity"]),
             _subset_text(runs[s["solver"]])]
            for s in cell["stats"]]


BOARD_HEADER = ["solver", "seeds", "mean Δ", "mean gap", "score", "evaluations", "wall s", "fidelity",
                "subsets removed"]


def _cell_heading(cell: dict, tables: dict[str, str]) -> str:
    certified = f", certified optimum {cell['certified']:.5f}" if cell["certified"] is not None else ""
    return (f"{cell['problem']}, k={cell['k']}: best-known Δ {cell['best']:.5f}{certified} "
            f"(table {tables[cell['problem']]})")


def _objective_lines(pairs) -> list[list[str]]:
    return [[f"{p.model}, k={p.k}", f"{p.objectives[0]} vs {p.objectives[1]}",
             "—" if math.isnan(p.rho) else f"{p.rho:+.2f}", str(p.n_solvers),
             f"{np.mean(list(p.jaccard.values())):.2f}"] for p in pairs]


OBJECTIVE_HEADER = ["model, k", "objectives", "Spearman ρ of solver ranks", "solvers", "mean Jaccard of subsets"]


def _spread_lines(cells) -> list[list[str]]:
    return [[problem, str(k), f"{analysis.inter_solver_variance(runs):.3g}",
             f"{min(analysis.mean_delta(r) for r in runs.values()):.5f} – {max(analysis.mean_delta(r) for r in runs.values()):.5f}"]
            for (problem, k), runs in cells.items()]


SPREAD_HEADER = ["problem", "k", "σ² of solver mean Δ", "range of solver mean Δ"]


def _md_table(header: list[str], lines: list[list[str]]) -> str:
    lines = [[value.replace("|", "\\|") for value in line] for line in lines]
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                     + ["| " + " | ".join(line) + " |" for line in lines])


def _run_line(out: Path, environment: dict) -> str:
    command = " ".join(environment.get("command_line", [])) or "unknown command"
    machine = f"{environment.get('processor', '?')}, {environment.get('cpu_count', '?')} CPUs"
    return f"Results in `{out}`, from `{command}` on {machine}, torch {environment.get('torch')}."


def markdown(out, board, pairs, cells, tables, sections, environment, runs: RunSummary,
             findings: StudySection) -> str:
    parts = [f"# depthbench report: {out.name}", "", _run_line(out, environment), "", runs.fidelity + ".", ""]
    if runs.failed:
        parts += ["## Failed cells", ""] + [f"- {line}" for line in runs.failed] + [""]
    parts += ["## Leaderboard", ""]
    for cell in board:
        parts += [f"### {_cell_heading(cell, tables)}", "", _md_table(BOARD_HEADER, _board_rows(cell, cells)), ""]
    parts += [LEADERBOARD_LEGEND, "", "## Spread across solvers", "", _md_table(SPREAD_HEADER, _spread_lines(cells)), ""]
    if pairs:
        parts += ["## Across objectives", "", _md_table(OBJECTIVE_HEADER, _objective_lines(pairs)), ""]
    parts += ["## The study: pruned models downstream", "", findings.coverage + ".", ""]
    for table in findings.tables:
        parts += [f"### {table.title}", "", _md_table(table.header, table.lines), ""] + (
            [table.note, ""] if table.note else [])
    parts += ["## Figures", ""] + [f"- [{section.title}]({section.path.name})" for section in sections]
    return "\n".join(parts) + "\n"


def _html_table(header: list[str], lines: list[list[str]], highlight: set[int] = frozenset()) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        f"<tr{' class=best' if index in highlight else ''}>" + "".join(f"<td>{html.escape(v)}</td>" for v in line) + "</tr>"
        for index, line in enumerate(lines))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


STYLE = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}
th{background:#f0f0f0}td:nth-child(n+2):not(:last-child){text-align:right}tr.best{background:#e6f4ea;font-weight:600}
img{max-width:100%;border:1px solid #eee}figure{margin:1em 0 2.5em}figcaption{color:#555;font-size:14px}"""


def html_page(out, board, pairs, cells, tables, sections, environment, runs: RunSummary,
              findings: StudySection) -> str:
    body = [f"<h1>depthbench report: {html.escape(out.name)}</h1>", f"<p>{html.escape(_run_line(out, environment))}</p>",
            f"<p>{html.escape(runs.fidelity)}.</p>"]
    if runs.failed:
        body += ["<h2>Failed cells</h2><ul>", *(f"<li>{html.escape(line)}</li>" for line in runs.failed), "</ul>"]
    body.append("<h2>Leaderboard</h2>")
    for cell in board:
        cheapest = {i for i, s in enumerate(cell["stats"]) if s["solver"] == cell["cheapest"]}
        body += [f"<h3>{html.escape(_cell_heading(cell, tables))}</h3>",
                 _html_table(BOARD_HEADER, _board_rows(cell, cells), cheapest)]
    body += [f"<p>{html.escape(LEADERBOARD_LEGEND)} (highlighted row)</p>", "<h2>Spread across solvers</h2>",
             _html_table(SPREAD_HEADER, _spread_lines(cells))]
    if pairs:
        body += ["<h2>Across objectives</h2>", _html_table(OBJECTIVE_HEADER, _objective_lines(pairs))]
    body += ["<h2>The study: pruned models downstream</h2>", f"<p>{html.escape(findings.coverage)}.</p>"]
    for table in findings.tables:
        body += [f"<h3>{html.escape(table.title)}</h3>", _html_table(table.header, table.lines)]
        if table.note:
            body.append(f"<p>{html.escape(table.note)}</p>")
    for section in sections:
        title = html.escape(section.title)
        body.append(f"<h2>{title}</h2><figure><img src='{section.path.name}' alt='{title}'>"
                    f"<figcaption>{html.escape(section.caption)}</figcaption></figure>")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>depthbench report: {html.escape(out.name)}"
            f"</title><style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n")
