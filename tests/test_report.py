"""`python -m bench report`: the HTML page, the Markdown summary and the figures, rebuilt from a
run directory."""

import json

import pytest

from bench.cli import main
from problems import registry
from problems.synthetic import make_synthetic_problem

PROBLEMS = ["synthetic/quadratic-N8-seed0", "synthetic/higher-order-N8-seed0"]
FIGURES = ["masks.png", "agreement.png", "spread.png", "anytime.png", "pareto.png",
           "interactions__synthetic__quadratic-N8-seed0.png", "interactions__synthetic__higher-order-N8-seed0.png",
           "additivity.png"]


def test_run_writes_a_report_and_report_rebuilds_it(capsys, tmp_path):
    out = tmp_path / "grid"
    assert main(["run", "--problem", *PROBLEMS, "--k", "2", "3", "--solvers", "greedy,random,exact",
                 "--seeds", "0", "1", "--out", str(out)]) == 0
    assert f"report {out / 'report' / 'index.html'}" in capsys.readouterr().out
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert all(r["trace"] and r["trace"][-1][1] == pytest.approx(r["delta"]) for r in rows)  # ends at the result
    for figure in FIGURES:
        (out / "report" / figure).unlink()
    assert main(["report", str(out)]) == 0
    report = out / "report"
    for figure in FIGURES:
        assert (report / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", figure
    page = (report / "index.html").read_text()
    for figure in FIGURES:
        assert f"src='{figure}'" in page
    summary = (report / "summary.md").read_text()
    for problem in PROBLEMS:
        for k in (2, 3):
            assert f"{problem}, k={k}: best-known Δ" in summary and f"{problem}, k={k}: best-known Δ" in page
    # exact certifies every cell; it is the cheapest within 0.5% only when nothing cheaper got there.
    assert "certified optimum" in summary
    assert page.count("<tr class=best>") == 4  # one highlighted solver per (problem, k)
    assert "Across objectives" not in summary  # two synthetic functions are not two objectives of one model


def test_two_objectives_of_one_model_are_compared(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "_exact", dict(registry._exact))
    monkeypatch.setattr(registry, "_block_counts", dict(registry._block_counts))
    for objective, function in (("ppl", "quadratic"), ("margin", "higher-order")):
        registry.register(f"toy-model/{objective}", lambda name, function=function, **options:
                          make_synthetic_problem(f"synthetic/{function}-N8-seed0"), n_blocks=8)
    out = tmp_path / "grid"
    argv = ["run", "--problem", "toy-model/ppl", "toy-model/margin", "--k", "2", "--solvers", "greedy,random,exact",
            "--seeds", "0", "1", "--out", str(out)]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(argv) == 0  # rows carry the grid's names, so the re-run finds every cell done
    assert "12 cells planned, 12 already finished, 0 to run" in capsys.readouterr().err
    report = out / "report"
    assert (report / "objectives.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = (report / "summary.md").read_text()
    line = next(line for line in summary.splitlines() if "margin vs ppl" in line)
    assert line.startswith("| toy-model, k=2 |") and line.count("|") == 6


def test_report_of_a_directory_without_results_is_one_line_exit_2(capsys, tmp_path):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no results.jsonl" in err


def test_report_naming_an_unknown_problem_is_one_line_and_writes_nothing(capsys, tmp_path):
    row = {"problem": "nowhere-model/ppl", "k": 2, "solver": "greedy", "seed": 0, "subset": [0, 1], "loss": 1.0,
           "delta": 0.5, "n_evaluations": 3, "n_requests": 3, "wall_s": 0.0, "certified": False, "config": {},
           "budget_rule": None, "trace": [[3, 0.5]]}
    (tmp_path / "results.jsonl").write_text(json.dumps(row) + "\n")
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nowhere-model/ppl" in err
    assert not (tmp_path / "report").exists()
