"""The grid runner: problems × k × solvers × seeds, one problem object (so one shared memo and
table) per problem, one results row per cell appended as soon as the cell ends.

Budgets (unique evaluations): `--budget N` caps every cell; `--budget NAME=N ...` one solver's
cells. Unless given, `random` and `evopress` get DEFAULT_BUDGETS (100: the budget the shipped
tables were built with, so the default grid replays without a miss), the Nevergrad family
`ng-<Name>` 100 too, and every other solver none. `--budget matched` (or `random=matched`) gives random and evopress the mean number of
unique evaluations the other solvers of the grid used in the same (problem, k), computed after
those ran: random search under the same budget as the rest.

Resuming: a cell is identified by (problem, k, solver, seed, solver config, budget rule), where
the budget rule is the cell's budget, "matched" or None; cells already in OUT/results.jsonl
are skipped. After the grid every row gets the best-known Δ of its (problem, k) (the minimum over
all rows, and the Δ of a certified exact result if there is one), its gap to it and its score
normalised against random search (see `bench.metrics.normalised_score`).

Misses: a cell whose solver requests a subset the replayed table lacks (with on_miss='strict')
fails alone: its row records the error and the subset (`failed`, `missing_subset`), the other
cells run, the leaderboard and report list it, and a later run retries it. Replay fidelity is
the share of a cell's oracle requests answered by measured values (table rows or the model),
not by the surrogate; every row carries it and the leaderboard gives it per solver and overall."""

import csv
import json
import math
import multiprocessing
import os
import queue
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import problems
import solvers
from bench.downstream import RETARGETED_MODEL
from bench.metrics import best_so_far, gap, normalised_score
from oracle.environment import current_environment
from oracle.errors import BadInput, TableMiss
from solvers.base import BudgetTooShort
from solvers.registry import NEVERGRAD_PREFIX

DEFAULT_KS = (4, 6, 8)
# `bench run` with no arguments: each problem at every k its shipped table answers with measured
# values alone (Gemma's panel is shipped at k = 2 so far).
DEFAULT_GRID = {
    "smollm2-135m/ppl": DEFAULT_KS,
    "smollm2-135m/margin": DEFAULT_KS,
    "smollm2-135m/kl": DEFAULT_KS,
    "gemma3-270m/ppl": (2,),
    "gemma3-270m/margin": (2,),
}
# The study's objectives, on the model that --model re-targets.
STUDY_PROBLEMS = (f"{RETARGETED_MODEL}/ppl", f"{RETARGETED_MODEL}/margin")
MATCHED_BUDGET = ("random", "evopress")
DEFAULT_BUDGETS = {"random": 100, "evopress": 100}
NEVERGRAD_BUDGET = 100  # ng-<Name> cells search like random and evopress: the same default
NEAR_BEST = 0.005  # '*' marks the cheapest solver within 0.5% of |best-known Δ|
RESULTS, RESULTS_CSV, ENVIRONMENT = "results.jsonl", "results.csv", "environment.json"
ROW_KEYS = frozenset({"problem", "k", "solver", "seed", "config", "budget_rule"})  # a cell's key
CSV_COLUMNS = (
    "problem", "fingerprint", "k", "solver", "seed", "subset", "loss", "delta", "n_evaluations", "n_requests", "wall_s",
    "oracle_s", "new_evaluations", "table_hits", "surrogate", "fidelity", "predicted", "certified", "budget",
    "budget_rule", "config", "best_delta", "certified_delta", "gap", "score", "failed", "missing_subset",
)


@dataclass(frozen=True)
class Grid:
    problems: Mapping[str, Sequence[int]]  # each problem with the k to remove from it
    solvers: Sequence[str]
    seeds: Sequence[int]
    budget: int | dict[str, int | str] | None = None  # every cell's, or per solver name (N or "matched")

    def check(self, problem_options: dict[str, Any] | None = None) -> None:
        """Refuse bad input before any problem or table is opened."""
        for name in self.solvers:
            solvers.get(name)
        budgets = self.budget.values() if isinstance(self.budget, dict) else [self.budget]
        if any(budget != "matched" and budget is not None and budget < 1 for budget in budgets):
            raise BadInput(f"--budget must be at least 1, got {self.budget}")
        matched = [name for name, budget in (self.budget.items() if isinstance(self.budget, dict) else [])
                   if budget == "matched" and name not in MATCHED_BUDGET]
        if matched:
            raise BadInput(f"only {' and '.join(MATCHED_BUDGET)} take a matched budget, not {', '.join(matched)}")
        unknown = set(self.budget) - set(self.solvers) if isinstance(self.budget, dict) else set()
        if unknown:
            raise BadInput(f"--budget names solvers not in the grid: {', '.join(sorted(unknown))}")
        for name, ks in self.problems.items():
            n_blocks = problems.block_count(name, **(problem_options or {}))
            for k in ks:
                if not 1 <= k <= n_blocks - 1:
                    raise BadInput(f"k={k} is out of range 1..{n_blocks - 1} for {name}")

    def budget_rule(self, solver: str) -> int | str | None:
        if isinstance(self.budget, int):
            return self.budget
        default = NEVERGRAD_BUDGET if solver.startswith(NEVERGRAD_PREFIX) else DEFAULT_BUDGETS.get(solver)
        return (self.budget or {}).get(solver, default)

    def cells(self) -> list[tuple[str, int, str, int]]:
        """Every (problem, k, solver, seed), matched-budget solvers last in each (problem, k)."""
        ordered = [s for s in self.solvers if s not in MATCHED_BUDGET] + [s for s in self.solvers if s in MATCHED_BUDGET]
        return [(p, k, s, seed) for p, ks in self.problems.items() for k in ks for s in ordered for seed in self.seeds]


def run_grid(grid: Grid, out: Path, problem_options: dict[str, Any], command_line: Sequence[str],
             progress: TextIO | None = None, measured_only: bool = False,
             jobs: int = 1) -> tuple[list[dict], int, list[dict]]:
    """Run the cells of `grid` not yet in `out`, each problem built by
    `problems.get(name, **problem_options)`; return every row of `out` (annotated), the number
    of cells run and this run's failed rows. With `measured_only` (a run without surrogate
    answers), a finished cell whose row used surrogate answers is run again and its old row
    dropped. With `jobs` > 1 that many problems run at once, each in its own process (one
    writer per table still); rows are appended here as cells end. Progress goes to `progress`
    (default: stderr)."""
    progress = progress or sys.stderr
    grid.check(problem_options)
    out.mkdir(parents=True, exist_ok=True)
    rows = read_rows([out])
    # Rows name a problem as it was built: "Meta-Llama-3-8B/ppl" for smollm2-135m/ppl with --model.
    identities = {name: problems.identity(name, **problem_options) for name in grid.problems}
    labels = {name: label for name, (label, _) in identities.items()}
    check_same_problems(out, rows, dict(identities.values()))
    finished = {cell_key(row): row for row in completed(rows)}
    configs = {name: solvers.get(name).get_config() for name in grid.solvers}
    keys = {cell: cell_key({"problem": labels[cell[0]], "k": cell[1], "solver": cell[2], "seed": cell[3],
                            "config": configs[cell[2]], "budget_rule": grid.budget_rule(cell[2])})
            for cell in grid.cells()}
    # Rows of this grid's cells that used surrogate answers, when this run wants measurements.
    stale = {key for key in keys.values() if measured_only and finished.get(key, {}).get("surrogate", 0) > 0}
    pending = [cell for cell in grid.cells() if keys[cell] not in finished or keys[cell] in stale]
    # A row of a pending cell goes, whatever solver configuration made it: one made with another
    # release's configuration (a new parameter) is replaced, not averaged with the new one.
    retried = {_without_config(keys[cell]) for cell in pending}
    rows = [row for row in rows if _without_config(cell_key(row)) not in retried]
    if rows or stale or retried:
        # Drops a torn last line (and rows about to be re-run) before appending to the file.
        _replace(out / RESULTS, "".join(json.dumps(row) + "\n" for row in rows))
    again = f" ({len(stale)} of them again: their rows used surrogate answers)" if stale else ""
    print(f"{len(grid.cells())} cells planned, {len(grid.cells()) - len(pending)} already finished, "
          f"{len(pending)} to run{again}", file=progress, flush=True)
    work = [ProblemWork(name, labels[name], [cell[1:] for cell in pending if cell[0] == name],
                        [row for row in completed(rows) if row["problem"] == labels[name]])
            for name in grid.problems if any(cell[0] == name for cell in pending)]
    tally = _Tally(len(pending), progress)
    tables: dict[str, dict] = {}
    with open(out / RESULTS, "a") as results:
        for kind, name, payload in _problem_events(work, grid, problem_options, configs, jobs):
            if kind == "table":
                tables[name] = payload
            elif kind == "skipped":
                tally.skipped(payload)
            else:
                results.write(json.dumps(payload) + "\n")
                results.flush()
                rows.append(payload)
                tally.row(payload)
    if tally.n_skipped:
        print(f"{tally.n_skipped} cells skipped: their budget ended before any k-subset was evaluated",
              file=progress, flush=True)
    rows = annotate(rows)
    write_rows(out, rows)
    write_environment(out, tables, command_line)
    return rows, tally.n_done, tally.failed


def check_same_problems(out: Path, rows: list[dict], fingerprints: dict[str, str]) -> None:
    # fingerprints: problem label → this run's fingerprint
    """Refuse to add rows of a problem to an `out` that holds rows of the same name computed
    differently (other sizes, model, dtype, …): their Δ would be compared as if equal."""
    for row in rows:
        expected = fingerprints.get(row["problem"])
        if expected is not None and row.get("fingerprint", expected) != expected:
            raise BadInput(f"{out} holds {row['problem']} results of problem fingerprint {row['fingerprint']}, "
                           f"this run's is {expected} (other sizes, model or dtype): give another --out")


@dataclass(frozen=True)
class ProblemWork:
    name: str  # as the grid names it
    label: str  # as its rows name it
    cells: list[tuple[int, str, int]]  # (k, solver, seed), in grid order
    rows: list[dict]  # the problem's completed rows so far (matched budgets read them)


def _problem_events(work: list[ProblemWork], grid: Grid, problem_options: dict, configs: dict,
                    jobs: int) -> Iterator[tuple[str, str, Any]]:
    """("table", problem, record), ("skipped", problem, line) and ("row", problem, row) events
    of every problem's cells: in this process one problem after the other, or from `jobs`
    worker processes at once."""
    if jobs <= 1 or len(work) <= 1:
        for item in work:
            yield from _run_problem(item, grid, problem_options, configs)
        return
    # Fork where it is safe, so workers know every problem registered in this process: on Linux
    # the parent has run no torch or OpenMP work yet (it only checked the grid). Elsewhere spawn,
    # whose workers know the problems a fresh interpreter knows.
    context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    with context.Manager() as manager, context.Pool(min(jobs, len(work))) as pool:
        events = manager.Queue()
        pending = [pool.apply_async(_run_problem_into, (item, grid, problem_options, configs, events))
                   for item in work]
        running = len(pending)
        while running:
            try:
                kind, name, payload = events.get(timeout=1.0)
            except queue.Empty:
                for result in pending:
                    if result.ready():
                        result.get()  # a worker that died without its "end" raises here
                continue
            if kind == "end":
                running -= 1
            elif kind == "error":
                raise (BadInput(payload[1]) if payload[0] else RuntimeError(payload[1]))
            else:
                yield kind, name, payload


def _run_problem_into(item: ProblemWork, grid: Grid, problem_options: dict, configs: dict, events) -> None:
    """A worker process's loop: the events of one problem's cells, put on `events`, then "end"
    (or "error" with whether it was bad input, and the message)."""
    try:
        for event in _run_problem(item, grid, problem_options, configs):
            events.put(event)
    except Exception as error:  # reported to the parent, which raises it there
        events.put(("error", item.name, (isinstance(error, BadInput), str(error))))
    events.put(("end", item.name, None))


def _run_problem(item: ProblemWork, grid: Grid, problem_options: dict,
                 configs: dict) -> Iterator[tuple[str, str, Any]]:
    rows = list(item.rows)
    with problems.get(item.name, **problem_options) as problem:
        name = item.label
        yield "table", name, table_record(problem)
        for k, solver, seed in item.cells:
            budget = cell_budget(grid, rows, name, k, solver)
            try:
                row = run_cell(name, problem, k, solver, seed, budget, grid.budget_rule(solver))
                rows.append(row)
            except BudgetTooShort as error:
                # One solver's budget is too short; the other cells still run.
                yield "skipped", name, f"[skipped] {name} k={k} {solver} seed {seed}: {error}"
                continue
            except TableMiss as error:
                row = failed_row(name, k, solver, seed, budget, grid.budget_rule(solver), configs[solver], error)
            yield "row", name, row


class _Tally:
    """Counts cells as they end and prints a progress line for each."""

    def __init__(self, planned: int, progress: TextIO):
        self.planned = planned
        self.progress = progress
        self.started = time.perf_counter()
        self.n_done = self.n_skipped = self.evaluations = 0
        self.failed: list[dict] = []

    def skipped(self, line: str) -> None:
        self.n_skipped += 1
        print(line, file=self.progress, flush=True)

    def row(self, row: dict) -> None:
        ended = self.n_done + self.n_skipped + len(self.failed) + 1
        position = f"[{ended}/{self.planned}] {row['problem']} k={row['k']} {row['solver']} seed {row['seed']}"
        if "failed" in row:
            self.failed.append(row)
            print(f"{position}: failed: {row['failed']}", file=self.progress, flush=True)
            return
        self.n_done += 1
        self.evaluations += row["n_evaluations"]
        elapsed = time.perf_counter() - self.started
        print(f"{position}: Δ {row['delta']:.5f}, fidelity {format_fidelity(row['fidelity'])}; "
              f"{self.evaluations} evaluations ({row['new_evaluations']} new this cell), "
              f"{self.n_done / elapsed:.2f} cells/s, ETA {(self.planned - ended) * elapsed / ended:.0f} s",
              file=self.progress, flush=True)


def run_cell(name: str, problem, k: int, solver_name: str, seed: int, budget: int | None, budget_rule) -> dict:
    """One solver run on the problem the grid calls `name` (the row's key, also for a registered
    alias of another problem); oracle figures are the problem oracle's counters spent during it."""
    counters = problem.oracle.counters
    before = counters.as_dict()
    result = solvers.get(solver_name).solve(problem, k, budget=budget, seed=seed)
    spent = {key: value - before[key] for key, value in problem.oracle.counters.as_dict().items()}
    base_loss = result.loss - result.delta
    trace = best_so_far((entry.evaluations, entry.loss - base_loss) for entry in result.trace if len(entry.subset) == k)
    row = {
        "problem": name, "fingerprint": problem.oracle.fingerprint, "k": k, "solver": solver_name, "seed": seed,
        "subset": list(result.subset), "loss": result.loss, "delta": result.delta,
        "n_evaluations": result.n_evaluations, "n_requests": result.n_requests, "wall_s": result.wall_s,
        "oracle_s": spent["cost_s"], "new_evaluations": spent["evaluations"], "table_hits": spent["hits"],
        "surrogate": spent["surrogate"], "predicted": result.predicted, "certified": result.certified,
        "budget": budget,
        "budget_rule": budget_rule, "config": result.config, "trace": trace,
    }
    return {**row, "fidelity": fidelity([row])}


def failed_row(name: str, k: int, solver_name: str, seed: int, budget: int | None, budget_rule,
               config: dict, miss: TableMiss) -> dict:
    """The row of a cell stopped by a table miss: its key, the error and the missing subset."""
    return {"problem": name, "k": k, "solver": solver_name, "seed": seed, "budget": budget,
            "budget_rule": budget_rule, "config": config, "failed": str(miss), "missing_subset": list(miss.subset)}


def fidelity(rows: Iterable[dict]) -> float:
    """The share of the rows' oracle requests answered by measured values (1.0 with none)."""
    measured = sum(row.get("table_hits", 0) + row.get("new_evaluations", 0) for row in rows)
    answered = measured + sum(row.get("surrogate", 0) for row in rows)
    return measured / answered if answered else 1.0


def format_fidelity(value: float) -> str:
    # Floor, so that a run with one predicted answer in a million never prints 100.0%.
    return f"{math.floor(value * 1000) / 10:.1f}%"


def completed(rows: Iterable[dict]) -> list[dict]:
    """The rows of cells that ran to the end (not stopped by a table miss)."""
    return [row for row in rows if "failed" not in row]


def failures(rows: Iterable[dict]) -> list[dict]:
    return [row for row in rows if "failed" in row]


def failure_line(row: dict) -> str:
    return f"{row['problem']} k={row['k']} {row['solver']} seed {row['seed']}: subset {row['missing_subset']} missing"


def cell_budget(grid: Grid, rows: list[dict], problem: str, k: int, solver: str) -> int | None:
    """The budget of one cell (see the module docstring)."""
    rule = grid.budget_rule(solver)
    if rule != "matched":
        return rule
    others = [row["n_evaluations"] for row in completed(rows)
              if row["problem"] == problem and row["k"] == k and row["solver"] in grid.solvers
              and row["solver"] not in MATCHED_BUDGET and row["seed"] in grid.seeds]
    return max(1, round(sum(others) / len(others))) if others else None


def cell_key(row: dict) -> tuple:
    return (row["problem"], row["k"], row["solver"], row["seed"],
            json.dumps(row["config"], sort_keys=True, default=str), json.dumps(row["budget_rule"]))


def _without_config(key: tuple) -> tuple:
    """A cell key without the solver configuration: the cell itself."""
    return key[:4] + key[5:]


def annotate(rows: list[dict]) -> list[dict]:
    """Add best_delta, certified_delta, gap and score to every completed row, per (problem, k);
    failed rows pass unchanged."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in completed(rows):
        groups[row["problem"], row["k"]].append(row)
    annotated = []
    for row in rows:
        if "failed" in row:
            annotated.append(row)
            continue
        group = groups[row["problem"], row["k"]]
        # Predicted losses set the best only when nothing was measured: a search over a
        # surrogate finds exactly where it is too optimistic. A NaN Δ (a broken model) would
        # make min() depend on row order.
        measured = [r for r in group if not r.get("predicted")] or group
        best = min((r["delta"] for r in measured if math.isfinite(r["delta"])), default=math.nan)
        certified = [r["delta"] for r in group if r["certified"]]
        random = [r["delta"] for r in group if r["solver"] == "random"]
        random_mean = sum(random) / len(random) if random else math.nan
        score = normalised_score(row["delta"], random_mean, best)
        annotated.append({**row, "best_delta": best, "certified_delta": min(certified) if certified else None,
                          "gap": gap(row["delta"], best), "score": None if math.isnan(score) else score})
    return annotated


def read_rows(directories: Iterable[Path]) -> list[dict]:
    """The rows of the results files of `directories`, each cell once: the first one read, unless
    that one failed and a later one did not."""
    rows: dict[tuple, dict] = {}
    for directory in directories:
        path = Path(directory) / RESULTS
        if not path.exists():
            continue
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                # A run killed mid-write leaves at most one torn last line; that cell reruns.
                if number == len(lines):
                    continue
                raise BadInput(f"{path}:{number} is not a JSON line") from None
            if not isinstance(row, dict) or not ROW_KEYS <= row.keys():
                raise BadInput(f"{path}:{number} is not a results row (it needs {', '.join(sorted(ROW_KEYS))})")
            key = cell_key(row)
            if key not in rows or ("failed" in rows[key] and "failed" not in row):
                rows[key] = row
    return list(rows.values())


def write_rows(out: Path, rows: list[dict]) -> None:
    """Rewrite results.jsonl (annotated) and results.csv, each atomically."""
    text = "".join(json.dumps(row) + "\n" for row in rows)
    _replace(out / RESULTS, text)
    temporary = out / (RESULTS_CSV + ".tmp")
    with open(temporary, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({column: _flat(row.get(column)) for column in CSV_COLUMNS})
    os.replace(temporary, out / RESULTS_CSV)


def _flat(value: Any) -> Any:
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, default=str)
    return "" if value is None else value


def _replace(path: Path, text: str) -> None:
    if path.exists() and path.read_text() == text:
        return
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def table_record(problem) -> dict:
    """Fingerprint and path of the table a problem replays or writes (None for synthetic problems),
    and N (a `--model` run's problem is not named, so its report cannot look N up)."""
    oracle, table = problem.oracle, None
    while oracle is not None and table is None:
        table = getattr(oracle, "table", None)
        oracle = getattr(oracle, "inner", None)
    return {"fingerprint": getattr(table, "fingerprint", None) or problem.spec.get("fingerprint"),
            "path": str(table.path) if table is not None else None, "n_blocks": problem.n_blocks}


def write_environment(out: Path, tables: dict[str, dict], command_line: Sequence[str]) -> None:
    """Versions, machine and BLAS (see `oracle.environment`), tables and command line of the run;
    tables of earlier runs into the same directory are kept."""
    path = out / ENVIRONMENT
    previous = json.loads(path.read_text()).get("tables", {}) if path.exists() else {}
    environment = {**current_environment(), "tables": {**previous, **tables}, "command_line": list(command_line)}
    _replace(path, json.dumps(environment, indent=2, sort_keys=True) + "\n")


def leaderboard_cells(rows: list[dict]) -> list[dict]:
    """Per (problem, k): best-known and certified Δ, and per solver the seeds, mean Δ, mean gap,
    mean normalised score, mean unique evaluations and wall seconds, sorted by mean Δ; `cheapest`
    is the solver with the fewest mean evaluations among those whose mean Δ is within 0.5% of
    |best-known Δ| of the best-known Δ. `rows` are annotated (see `annotate`)."""
    groups: dict[tuple, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for row in completed(rows):
        groups[row["problem"], row["k"]][row["solver"]].append(row)
    cells = []
    for (problem, k), by_solver in sorted(groups.items()):
        first = next(iter(by_solver.values()))[0]
        best, certified = first["best_delta"], first["certified_delta"]
        stats = []
        for solver, runs in by_solver.items():
            scores = [row["score"] for row in runs if row["score"] is not None]
            stats.append({
                "solver": solver, "seeds": len(runs), "delta": _mean(row["delta"] for row in runs),
                "gap": _mean(row["gap"] for row in runs), "score": _mean(scores) if scores else math.nan,
                "evaluations": _mean(row["n_evaluations"] for row in runs),
                "wall_s": _mean(row["wall_s"] for row in runs),
                "surrogate": sum(row.get("surrogate") or 0 for row in runs),
                "fidelity": fidelity(runs),
            })
        stats.sort(key=lambda s: (s["delta"], s["evaluations"]))
        near = [s for s in stats if s["delta"] - best <= NEAR_BEST * abs(best)]
        cells.append({"problem": problem, "k": k, "best": best, "certified": certified,
                      "stats": stats, "cheapest": min(near, key=lambda s: s["evaluations"])["solver"] if near else None})
    return cells


LEADERBOARD_LEGEND = ("score: (mean Δ of random − Δ)/(mean Δ of random − best-known Δ), 1 = best known, 0 = random, "
                      "— when random already found the best; * = fewest evaluations within 0.5% of best-known Δ; "
                      "fidelity = share of oracle requests answered by measured values; "
                      "~ = some losses came from the surrogate, not the model (best-known Δ counts measured "
                      "results only, unless none is)")


def leaderboard(rows: list[dict]) -> str:
    """The leaderboard of annotated rows as text (see `leaderboard_cells`)."""
    lines = []
    cells = leaderboard_cells(rows)
    width = max([10] + [len(s["solver"]) for cell in cells for s in cell["stats"]])
    for cell in cells:
        lines.append(f"{cell['problem']}, k={cell['k']}: best-known Δ {cell['best']:.5f}"
                     + (f" (certified optimum {cell['certified']:.5f})" if cell["certified"] is not None else ""))
        lines.append(f"  {'solver':<{width}} {'seeds':>5} {'mean Δ':>10} {'mean gap':>10} {'score':>7} "
                     f"{'evals':>8} {'wall s':>8} {'fidelity':>9}")
        for s in cell["stats"]:
            mark = "*" if s["solver"] == cell["cheapest"] else " "
            surrogate = "~" if s["surrogate"] else " "
            lines.append(f"{mark} {s['solver']:<{width}} {s['seeds']:>5} {s['delta']:>10.5f} {s['gap']:>10.5f} "
                         f"{format_score(s['score']):>7} {s['evaluations']:>8.1f} {s['wall_s']:>8.2f} "
                         f"{format_fidelity(s['fidelity']):>9}{surrogate}")
    lines.append(LEADERBOARD_LEGEND)
    lines.append(summary_line(rows))
    lines += [f"  failed: {failure_line(row)}" for row in failures(rows)]
    return "\n".join(lines)


def summary_line(rows: list[dict]) -> str:
    """Replay fidelity over every completed cell, and the count of failed ones."""
    done = completed(rows)
    requests = sum(row.get(count, 0) for row in done for count in ("table_hits", "new_evaluations", "surrogate"))
    failed = len(failures(rows))
    return (f"replay fidelity {format_fidelity(fidelity(done))} of {requests:,} oracle requests over {len(done)} cells"
            + (f"; {failed} cells failed on a table miss (on_miss='strict')" if failed else ""))


def format_score(score: float) -> str:
    return "—" if math.isnan(score) else f"{round(score, 3) + 0.0:.3f}"


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values)
