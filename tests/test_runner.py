"""`python -m bench run` and `leaderboard`: the grid, its results files, resuming, bad input."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import problems
from bench.cli import main
from bench.runner import DEFAULT_GRID, DEFAULT_KS, RESULTS, STUDY_PROBLEMS, annotate, leaderboard, read_rows
from tests.shipped_tables import needs_default_grid_tables, shipped
from oracle.table import EvaluationTable

GRID = ["run", "--problem", "synthetic/quadratic-N12-seed0", "--k", "3", "--solvers", "greedy,random,exact"]


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def rows_of(out):
    return [json.loads(line) for line in (out / RESULTS).read_text().splitlines()]


def test_run_writes_one_row_per_cell(capsys, tmp_path):
    out = tmp_path / "out"
    code, stdout, _ = run(capsys, *GRID, "--seeds", "0", "1", "--out", str(out))
    assert code == 0
    rows = rows_of(out)
    assert sorted((r["solver"], r["seed"]) for r in rows) == [
        ("exact", 0), ("exact", 1), ("greedy", 0), ("greedy", 1), ("random", 0), ("random", 1)]
    exact = [r for r in rows if r["solver"] == "exact"]
    assert all(r["certified"] and r["gap"] == 0 and r["score"] == 1.0 for r in exact)
    assert all(r["best_delta"] == exact[0]["delta"] == r["certified_delta"] for r in rows)
    with open(out / "results.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 6
    environment = json.loads((out / "environment.json").read_text())
    assert environment["command_line"] == ["python", "-m", "bench", *GRID, "--seeds", "0", "1", "--out", str(out)]
    assert "synthetic/quadratic-N12-seed0" in environment["tables"]
    assert "6 cells run" in stdout and "exact" in stdout


def test_random_gets_a_default_budget_of_100(capsys, tmp_path):
    out = tmp_path / "out"
    run(capsys, *GRID, "--seeds", "0", "--out", str(out))
    rules = {r["solver"]: (r["budget"], r["budget_rule"], r["n_evaluations"]) for r in rows_of(out)}
    assert rules["random"] == (100, 100, 100)
    assert rules["greedy"][:2] == (None, None)


def test_matched_budget_gives_random_the_mean_of_the_others(capsys, tmp_path):
    out = tmp_path / "out"
    run(capsys, *GRID, "--seeds", "0", "1", "--budget", "matched", "--out", str(out))
    rows = rows_of(out)
    others = [r["n_evaluations"] for r in rows if r["solver"] != "random"]
    for row in (r for r in rows if r["solver"] == "random"):
        assert row["budget_rule"] == "matched"
        assert row["budget"] == round(sum(others) / len(others))
        assert row["n_evaluations"] <= row["budget"]


def test_budget_per_solver_applies_to_its_cells_only(capsys, tmp_path):
    out = tmp_path / "out"
    run(capsys, *GRID, "--seeds", "0", "--budget", "random=7", "--out", str(out))
    rules = {r["solver"]: (r["budget"], r["budget_rule"], r["n_evaluations"]) for r in rows_of(out)}
    assert rules["random"] == (7, 7, 7)
    assert rules["greedy"][:2] == rules["exact"][:2] == (None, None)


def test_budget_option_applies_to_every_cell(capsys, tmp_path):
    out = tmp_path / "out"
    run(capsys, *GRID, "--seeds", "0", "--budget", "20", "--out", str(out))
    assert {(r["budget"], r["budget_rule"]) for r in rows_of(out)} == {(20, 20)}


def test_a_budget_too_short_for_one_solver_skips_its_cells_and_runs_the_rest(capsys, tmp_path):
    out = tmp_path / "out"
    code, stdout, err = run(capsys, *GRID, "--seeds", "0", "--budget", "8", "--out", str(out))
    assert code == 0 and "2 cells run" in stdout
    assert {r["solver"] for r in rows_of(out)} == {"random", "exact"}  # greedy's 12 singles do not fit in 8
    assert "[skipped] synthetic/quadratic-N12-seed0 k=3 greedy seed 0: greedy: budget 8 ended" in err
    assert "1 cells skipped" in err


def test_a_run_without_surrogate_reruns_cells_whose_rows_used_it(capsys, tmp_path):
    out = tmp_path / "out"
    run(capsys, *GRID, "--seeds", "0", "--out", str(out))
    rows = rows_of(out)
    for row in rows:
        row["surrogate"] = 4 if row["solver"] == "greedy" else 0
    (out / RESULTS).write_text("".join(json.dumps(row) + "\n" for row in rows))
    code, _, err = run(capsys, *GRID, "--seeds", "0", "--on-miss", "strict", "--out", str(out))
    assert code == 0 and "2 already finished, 1 to run (1 of them again: their rows used surrogate answers)" in err
    assert sorted((r["solver"], r["surrogate"]) for r in rows_of(out)) == [("exact", 0), ("greedy", 0), ("random", 0)]
    _, _, err = run(capsys, *GRID, "--seeds", "0", "--on-miss", "surrogate", "--out", str(out))
    assert "3 already finished, 0 to run" in err


def test_rerun_skips_every_finished_cell(capsys, tmp_path):
    out = tmp_path / "out"
    run(capsys, *GRID, "--seeds", "0", "1", "--out", str(out))
    before = (out / RESULTS).read_bytes()
    code, stdout, err = run(capsys, *GRID, "--seeds", "0", "1", "--out", str(out))
    assert code == 0
    assert "0 cells run" in stdout
    assert "6 already finished, 0 to run" in err
    assert (out / RESULTS).read_bytes() == before


def test_a_row_made_with_another_solver_configuration_is_replaced_not_kept_beside(capsys, tmp_path):
    # As after an upgrade that gave a solver a new parameter: the old row is not this grid's.
    out = tmp_path / "out"
    run(capsys, *GRID, "--seeds", "0", "--out", str(out))
    rows = rows_of(out)
    for row in rows:
        if row["solver"] == "greedy":
            row["config"] = {"an_older_parameter": 1}
    (out / RESULTS).write_text("".join(json.dumps(row) + "\n" for row in rows))
    code, _, err = run(capsys, *GRID, "--seeds", "0", "--out", str(out))
    assert code == 0 and "2 already finished, 1 to run" in err
    greedy = [row for row in rows_of(out) if row["solver"] == "greedy"]
    assert len(greedy) == 1 and greedy[0]["config"] == {"barriers": False}


def test_interrupted_run_resumes_with_only_the_missing_cells(capsys, tmp_path):
    out, whole = tmp_path / "out", tmp_path / "whole"
    run(capsys, *GRID, "--seeds", "0", "--out", str(out))
    first = {(r["solver"], r["seed"]): r for r in rows_of(out)}
    code, stdout, err = run(capsys, *GRID, "--seeds", "0", "1", "--out", str(out))
    assert code == 0 and "3 cells run" in stdout
    assert err.count("seed 1:") == 3 and "seed 0:" not in err
    resumed = rows_of(out)
    assert sorted((r["solver"], r["seed"]) for r in resumed) == sorted(
        (s, seed) for s in ("greedy", "random", "exact") for seed in (0, 1))
    assert all(r["subset"] == first[r["solver"], 0]["subset"] for r in resumed if r["seed"] == 0)
    run(capsys, *GRID, "--seeds", "0", "1", "--out", str(whole))
    assert sorted(map(outcome, resumed)) == sorted(map(outcome, rows_of(whole)))


def outcome(row):
    return row["solver"], row["seed"], row["subset"], row["delta"], row["n_evaluations"]


def test_torn_last_line_is_rerun(capsys, tmp_path):
    out = tmp_path / "out"
    run(capsys, *GRID, "--seeds", "0", "--out", str(out))
    text = (out / RESULTS).read_text().splitlines()
    (out / RESULTS).write_text("\n".join(text[:-1]) + "\n" + text[-1][:40])
    code, stdout, _ = run(capsys, *GRID, "--seeds", "0", "--out", str(out))
    assert code == 0 and "1 cells run" in stdout
    assert len(rows_of(out)) == 3


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--solvers", "greedy,nosuch"], "nosuch"),
        (["--k", "12"], "out of range"),
        (["--k", "0"], "out of range"),
        (["--problem", "nosuch/ppl"], "nosuch/ppl"),
        (["--budget", "0"], "budget"),
        (["--budget", "random=x"], "--budget takes"),
        (["--budget", "greedy=matched"], "matched budget, not greedy"),
        (["--budget", "10", "random=5"], "--budget takes"),
        (["--budget", "beam=5"], "not in the grid: beam"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, argv, fragment):
    out = tmp_path / "out"
    code, _, err = run(capsys, *GRID, "--seeds", "0", "--out", str(out), *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0]
    assert not out.exists()


def test_leaderboard_merges_runs_and_stars_the_cheapest_near_best(capsys, tmp_path):
    run(capsys, *GRID, "--seeds", "0", "--out", str(tmp_path / "a"))
    run(capsys, *GRID, "--seeds", "1", "--out", str(tmp_path / "b"))
    code, stdout, _ = run(capsys, "leaderboard", str(tmp_path / "a"), str(tmp_path / "b"))
    assert code == 0
    exact = next(line for line in stdout.splitlines() if " exact " in line)
    assert exact.startswith("* ") and " 2 " in exact
    code, _, err = run(capsys, "leaderboard", str(tmp_path / "missing"))
    assert code == 2 and "missing" in err


def test_leaderboard_star_goes_to_fewest_evaluations_within_half_a_percent():
    def row(solver, delta, evaluations, certified=False):
        return {"problem": "p", "k": 2, "solver": solver, "seed": 0, "delta": delta, "certified": certified,
                "n_evaluations": evaluations, "wall_s": 0.0, "config": {}, "budget_rule": None}

    rows = [row("exact", 1.0, 100, certified=True), row("greedy", 1.004, 10), row("oneshot", 1.2, 1),
            row("random", 2.0, 50)]
    text = leaderboard(annotate(rows))
    assert next(line for line in text.splitlines() if "greedy" in line).startswith("* ")
    scores = {r["solver"]: r["score"] for r in annotate(rows)}
    assert scores["exact"] == 1.0 and scores["random"] == 0.0 and scores["oneshot"] == pytest.approx(0.8)
    optimistic = {**row("bo", 0.5, 20), "predicted": True}  # a surrogate's answer does not set the best
    assert {r["best_delta"] for r in annotate(rows + [optimistic])} == {1.0}
    assert {r["best_delta"] for r in annotate([optimistic])} == {0.5}  # unless nothing was measured


@needs_default_grid_tables
def test_default_grid_replays_the_shipped_tables_with_no_miss_and_judges_both_families(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("DEPTHBENCH_TABLES", raising=False)
    out = tmp_path / "default"
    code, stdout, _ = run(capsys, "run", "--out", str(out))
    # SmolLM2: 3 objectives × k = 4, 6, 8; Gemma: 2 objectives × k = 2; × 10 solvers × 3 seeds
    assert code == 0 and "330 cells run" in stdout
    assert "replay fidelity 100.0% of" in stdout
    rows = read_rows([out])
    assert len(rows) == 330
    assert {(row["problem"], row["k"]) for row in rows} == {(name, k) for name, ks in DEFAULT_GRID.items() for k in ks}
    assert sum(r["new_evaluations"] for r in rows) == 0
    assert all(r["table_hits"] == r["n_evaluations"] or r["table_hits"] == r["n_evaluations"] + 1 for r in rows)
    # The study section comes from the shipped tables alone: no model, no evaluation.
    summary = (out / "report" / "summary.md").read_text()
    for heading in ("Pruned models downstream", "Finding (i)", "Finding (ii)", "Finding (iii)",
                    "Beyond cosine similarity", "One-shot against iterative removal", "Verdicts"):
        assert f"### {heading}" in summary, heading
    verdicts = summary[summary.index("### Verdicts"):]
    assert "gemma3-270m, margin vs ppl" in verdicts and "| gemma3-270m/ppl | " in verdicts
    assert "smollm2-135m, kl vs ppl" in verdicts


@pytest.mark.parametrize("argv, expected", [
    ([], DEFAULT_GRID),
    (["--k", "2"], {name: (2,) for name in DEFAULT_GRID}),
    (["--problem", "smollm2-135m/ppl", "smollm2-135m/ppl", "gemma3-270m/kl"],
     {"smollm2-135m/ppl": DEFAULT_KS, "gemma3-270m/kl": DEFAULT_KS}),
    (["--model", "some/model", "--k", "7", "9"], {name: (7, 9) for name in STUDY_PROBLEMS}),
])
def test_the_grid_pairs_each_problem_with_its_k(argv, expected):
    from bench.cli import build_parser
    from bench.commands import grid_problems

    assert grid_problems(build_parser().parse_args(["run", *argv])) == expected


@shipped("smollm2-135m/ppl")
def test_a_strict_miss_fails_its_cell_alone_and_the_run_names_it(capsys, tmp_path, monkeypatch):
    # At k = 3 the table holds about half of the triples: random search misses at once, while
    # one-shot's single triple (the best singles) is there.
    monkeypatch.delenv("DEPTHBENCH_TABLES", raising=False)
    out = tmp_path / "strict"
    argv = ["run", "--problem", "smollm2-135m/ppl", "--k", "3", "--solvers", "random,oneshot", "--seeds", "0",
            "--on-miss", "strict", "--out", str(out)]
    code, stdout, err = run(capsys, *argv)
    assert code == 2 and len(err.strip().splitlines()[-1:]) == 1
    assert "error: 1 cells failed on a table miss: smollm2-135m/ppl k=3 random seed 0: subset [" in err
    rows = read_rows([out])
    failed = [row for row in rows if "failed" in row]
    assert [row["solver"] for row in failed] == ["random"] and len(failed[0]["missing_subset"]) == 3
    assert [row["solver"] for row in rows if "failed" not in row] == ["oneshot"]
    assert "failed: smollm2-135m/ppl k=3 random seed 0" in stdout and "replay fidelity 100.0% of" in stdout
    assert "random k=3" not in (out / "report" / "summary.md").read_text().split("## Leaderboard")[1]
    assert "## Failed cells" in (out / "report" / "summary.md").read_text()

    # The default answers the miss with the surrogate: the failed cell runs again, below 100%.
    code, stdout, err = run(capsys, *argv[:-4], "--out", str(out))
    assert code == 0 and "1 already finished, 1 to run" in err
    rows = read_rows([out])
    assert not [row for row in rows if "failed" in row]
    random_row = next(row for row in rows if row["solver"] == "random")
    assert random_row["surrogate"] > 0 and 0 < random_row["fidelity"] < 1
    assert "replay fidelity 100.0%" not in stdout and "~" in stdout


@shipped("smollm2-135m/ppl")
def test_problem_options_shape_the_grid_and_results_of_other_options_are_not_mixed(capsys, tmp_path, monkeypatch):
    # 8 windows are the first 8 of the shipped 16-window table: a strict replay needs no model.
    monkeypatch.delenv("DEPTHBENCH_TABLES", raising=False)
    out = tmp_path / "windows"
    argv = ["run", "--problem", "smollm2-135m/ppl", "--k", "2", "--solvers", "oneshot", "--seeds", "0",
            "--on-miss", "strict", "--out", str(out)]
    code, _, err = run(capsys, *argv, "--windows", "8", "--batch-tokens", "512")
    assert code == 0, err
    [row] = read_rows([out])
    assert row["fingerprint"] == problems.identity("smollm2-135m/ppl", windows=8)[1]
    assert row["fingerprint"] != problems.identity("smollm2-135m/ppl")[1]
    code, _, err = run(capsys, *argv)
    assert code == 2 and "other sizes, model or dtype" in err and len(err.strip().splitlines()) == 1
    assert read_rows([out]) == [row]


def test_rows_of_another_model_are_named_after_it(tmp_path):
    from tests.tiny_models import tiny_model

    directory = tmp_path / "tiny-llama"
    tiny_model("llama").save_pretrained(directory)
    label, fingerprint = problems.identity("smollm2-135m/ppl", model=str(directory), device="cpu")
    assert label == "tiny-llama/ppl"
    assert fingerprint == problems.identity("smollm2-135m/ppl", model=str(directory))[1]
    assert fingerprint != problems.identity("smollm2-135m/ppl")[1]


def test_killed_live_run_resumes_without_evaluating_anything_twice(tmp_path):
    """A live run on a tiny model is killed once some cells are written; the re-run finishes
    the grid, reproduces an uninterrupted run, and never re-evaluates a subset the table holds."""
    repository = Path(__file__).resolve().parent.parent
    argv = ["run", "--problem", "tiny/ppl", "--oracle", "live", "--k", "2", "3", "--solvers", "greedy,ga,random",
            "--seeds", "0", "1"]

    def start(name, sleep):
        environment = {**os.environ, "PYTHONPATH": str(repository), "TABLE": str(tmp_path / f"{name}.h5"),
                       "LOG": str(tmp_path / f"{name}.log"), "SLEEP": str(sleep)}
        return subprocess.Popen([sys.executable, str(repository / "tests" / "live_run_worker.py"), *argv,
                                 "--out", str(tmp_path / name)], env=environment,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    worker = start("killed", sleep=0.05)
    results = tmp_path / "killed" / RESULTS
    deadline = time.monotonic() + 120
    while not (results.exists() and len(results.read_text().splitlines()) >= 3):
        assert worker.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.05)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    cells_before = len(rows_of(tmp_path / "killed"))
    with EvaluationTable.open(tmp_path / "killed.h5") as table:
        stored = set(table.subsets())
    evaluated_before = (tmp_path / "killed.log").read_text().splitlines()
    assert 3 <= cells_before < 12 and stored

    assert start("killed", sleep=0).wait() == 0
    evaluated_after = (tmp_path / "killed.log").read_text().splitlines()[len(evaluated_before):]
    assert not stored & {tuple(map(int, line.split(","))) for line in evaluated_after}
    assert start("whole", sleep=0).wait() == 0
    resumed, whole = rows_of(tmp_path / "killed"), rows_of(tmp_path / "whole")
    assert len(resumed) == 12
    assert sorted(map(outcome, resumed)) == sorted(map(outcome, whole))
    # Nothing evaluated twice: the killed and resumed runs together did the uninterrupted run's work,
    # give or take the one batch that was in flight at the kill.
    log_whole = (tmp_path / "whole.log").read_text().splitlines()
    assert len(set(log_whole)) == len(log_whole)
    repeated = len(evaluated_before) + len(evaluated_after) - len(set(evaluated_before + evaluated_after))
    assert repeated == 0
    assert set(evaluated_before + evaluated_after) == set(log_whole)


def test_nevergrad_cells_get_the_default_search_budget(capsys, tmp_path):
    out = tmp_path / "ng"
    code, _, err = run(capsys, "run", "--problem", "synthetic/quadratic-N12-seed0", "--k", "3", "--solvers",
                       "ng-DiscreteOnePlusOne", "--seeds", "0", "--out", str(out))
    assert code == 0, err
    [row] = rows_of(out)
    assert row["budget"] == 100 and row["n_evaluations"] <= 100
