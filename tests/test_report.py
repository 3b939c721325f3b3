"""`python -m bench report`: the HTML page, the Markdown summary and the figures, rebuilt from a
run directory."""

import json

from bench.cli import main

PROBLEMS = ["synthetic/quadratic-N8-seed0", "synthetic/higher-order-N8-seed0"]
FIGURES = ["masks.png", "agreement.png", "objectives.png", "spread.png", "anytime.png", "pareto.png",
           "interactions__synthetic__quadratic-N8-seed0.png", "interactions__synthetic__higher-order-N8-seed0.png",
           "additivity.png"]


def test_run_writes_a_report_and_report_rebuilds_it(capsys, tmp_path):
    out = tmp_path / "grid"
    assert main(["run", "--problem", *PROBLEMS, "--k", "2", "3", "--solvers", "greedy,random,exact",
                 "--seeds", "0", "1", "--out", str(out)]) == 0
    assert f"report {out / 'report' / 'index.html'}" in capsys.readouterr().out
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert all(r["trace"] and r["trace"][-1][1] == r["delta"] for r in rows)  # the curve ends at the result
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
    assert "quadratic-N8-seed0 vs " in summary or "higher-order-N8-seed0 vs " in summary


def test_report_of_a_directory_without_results_is_one_line_exit_2(capsys, tmp_path):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no results.jsonl" in err
