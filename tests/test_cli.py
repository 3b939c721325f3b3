"""Bad input on the command line: one line on stderr, exit code 2, no table touched."""

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

from bench.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code, err, *fragments):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture(autouse=True)
def table_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("DEPTHBENCH_TABLES", str(tmp_path / "tables"))
    return tmp_path / "tables"


@pytest.mark.parametrize(
    "subset, fragment",
    [("3,3", "duplicate"), ("30", "out of range"), ("-1", "out of range"), ("a,b", "cannot read subset")],
)
def test_bad_subsets_are_refused_before_any_table_exists(capsys, table_directory, subset, fragment):
    code, _, err = run(capsys, "evaluate", "--problem", "smollm2-135m/ppl", "--subset", subset)
    assert_one_line_error(code, err, fragment)
    assert not table_directory.exists()


def test_unknown_problem_is_one_line(capsys):
    code, _, err = run(capsys, "evaluate", "--problem", "nosuch/ppl", "--subset", "1")
    assert_one_line_error(code, err, "nosuch/ppl")


def test_unreadable_subsets_file_is_one_line(capsys, tmp_path):
    code, _, err = run(capsys, "evaluate", "--problem", "synthetic/quadratic-N10-seed0",
                       "--subsets-file", str(tmp_path / "missing.txt"))
    assert_one_line_error(code, err, "missing.txt")


def test_unknown_option_is_one_line(capsys):
    code, _, err = run(capsys, "evaluate", "--problem", "smollm2-135m/ppl", "--subset", "1", "--frobnicate")
    assert_one_line_error(code, err, "--frobnicate")


def test_nonpositive_sizes_are_refused(capsys, table_directory):
    code, _, err = run(capsys, "evaluate", "--problem", "smollm2-135m/ppl", "--subset", "1", "--windows", "0")
    assert_one_line_error(code, err, "windows")
    assert not table_directory.exists()


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_unknown_dtype_is_refused_before_any_table_exists(capsys, table_directory, device):
    code, _, err = run(capsys, "evaluate", "--problem", "smollm2-135m/ppl", "--subset", "1", "--device", device,
                       "--dtype", "bf16")
    assert_one_line_error(code, err, "'bf16' is not one of float32, bfloat16, float16")
    assert not table_directory.exists()


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("content", [b"", b"not an hdf5 file at all" * 10])
def test_corrupt_table_is_refused_and_left_untouched(capsys, tmp_path, content):
    path = tmp_path / "broken.h5"
    path.write_bytes(content)
    before = digest(path)
    for argv in (["table", "info", str(path)],
                 ["evaluate", "--problem", "smollm2-135m/ppl", "--subset", "1", "--table", str(path)],
                 ["evaluate", "--problem", "smollm2-135m/ppl", "--subset", "1", "--oracle", "replay",
                  "--table", str(path)]):
        code, _, err = run(capsys, *argv)
        assert_one_line_error(code, err, str(path))
        assert digest(path) == before


def test_table_of_another_problem_is_refused_with_both_fingerprints(capsys, tmp_path):
    from oracle.table import EvaluationTable
    from problems.model_problems import problem_spec

    path = tmp_path / "other.h5"
    EvaluationTable.create(path, fingerprint="0123456789abcdef", n_blocks=30, n_samples=8,
                           spec={"name": "other"}).close()
    before = digest(path)
    code, _, err = run(capsys, "evaluate", "--problem", "smollm2-135m/ppl", "--subset", "1", "--table", str(path))
    assert_one_line_error(code, err, "0123456789abcdef", problem_spec("smollm2-135m/ppl")["fingerprint"])
    assert digest(path) == before


def test_replay_miss_names_subset_and_table(capsys, tmp_path):
    from oracle.table import EvaluationTable
    from problems.model_problems import problem_spec

    spec = problem_spec("smollm2-135m/ppl")
    path = tmp_path / "empty.h5"
    EvaluationTable.create(path, fingerprint=spec["fingerprint"], n_blocks=30, n_samples=16, spec=spec).close()
    code, _, err = run(capsys, "evaluate", "--problem", "smollm2-135m/ppl", "--oracle", "replay",
                       "--table", str(path), "--subset", "4,9")
    assert_one_line_error(code, err, "[]", str(path))  # L(∅) is requested first, with the batch


def test_synthetic_evaluate_prints_loss_base_and_delta(capsys):
    code, out, _ = run(capsys, "evaluate", "--problem", "synthetic/quadratic-N12-seed1", "--subset", "2,5", "--json")
    assert code == 0
    import json

    row = json.loads(out.strip())
    assert row["subset"] == [2, 5]
    assert row["delta"] == pytest.approx(row["loss"] - row["base_loss"])


def test_a_real_process_exits_2_without_traceback():
    result = subprocess.run([sys.executable, "-m", "bench", "evaluate", "--problem", "smollm2-135m/ppl",
                             "--subset", "1,1"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == "error: duplicate block indices [1] in subset [1, 1]"


def test_solve_runs_a_solver_and_reports_its_result(capsys):
    import json

    code, out, _ = run(capsys, "solve", "--problem", "synthetic/quadratic-N12-seed0", "--solver", "exact",
                       "--k", "3", "--json")
    assert code == 0
    row = json.loads(out)
    assert row["certified"] and len(row["subset"]) == 3 and row["evaluations"] == 220


@pytest.mark.parametrize("argv, fragment", [
    (["--solver", "nosuch", "--k", "3"], "nosuch"),
    (["--solver", "greedy", "--k", "12"], "k=12"),
    (["--solver", "greedy", "--k", "3", "--config", "{bad"], "--config"),
    (["--solver", "beam", "--k", "3", "--config", '{"colour": 1}'], "colour"),
])
def test_solve_bad_input_is_one_line(capsys, argv, fragment):
    code, _, err = run(capsys, "solve", "--problem", "synthetic/quadratic-N12-seed0", *argv)
    assert_one_line_error(code, err, fragment)


def test_list_shows_problems_and_solvers_with_their_defaults(capsys):
    code, out, _ = run(capsys, "list")
    assert code == 0
    assert "smollm2-135m/ppl" in out and "greedy     barriers=False" in out


def test_all_of_size_evaluates_every_subset_of_those_sizes(capsys):
    code, out, _ = run(capsys, "evaluate", "--problem", "synthetic/quadratic-N6-seed0", "--all-of-size", "0", "2",
                       "--json")
    assert code == 0
    assert sorted(len(json.loads(line)["subset"]) for line in out.splitlines()) == [0] + [2] * 15


@pytest.mark.parametrize("size, fragment", [("7", "out of range"), ("-1", "out of range")])
def test_all_of_size_out_of_range_is_one_line(capsys, size, fragment):
    code, _, err = run(capsys, "evaluate", "--problem", "synthetic/quadratic-N6-seed0", "--all-of-size", size)
    assert_one_line_error(code, err, fragment)


def test_all_of_size_refuses_an_enumeration_too_large(capsys, table_directory):
    code, _, err = run(capsys, "evaluate", "--problem", "smollm2-135m/ppl", "--all-of-size", "15")
    assert_one_line_error(code, err, "155,117,520 subsets")
    code, _, err = run(capsys, "evaluate", "--problem", "smollm2-135m/ppl", "--all-of-size", "6", "24")
    assert_one_line_error(code, err, "1,187,550 subsets")  # each size alone is under the limit, together not
    assert not table_directory.exists()


def test_surrogate_replay_answers_misses_without_a_model(capsys, monkeypatch):
    monkeypatch.delenv("DEPTHBENCH_TABLES")
    code, out, _ = run(capsys, "evaluate", "--problem", "smollm2-135m/ppl", "--oracle", "replay", "--on-miss",
                       "surrogate", "--subset", "17,18", "--subset", "3,9,14,20,25,28,29", "--json")
    assert code == 0
    pair, large = map(json.loads, out.splitlines())
    assert (pair["source"], large["source"]) == ("table", "surrogate")
    assert large["delta"] > pair["delta"] > 0


def test_table_info_prints_the_surrogate_error_line(capsys):
    from problems.table_directories import SHIPPED_TABLES

    code, out, _ = run(capsys, "table", "info", str(next(SHIPPED_TABLES.glob("*.h5"))))
    line = next(line for line in out.splitlines() if line.startswith("surrogate    "))
    assert code == 0 and "MAE" in line and "Spearman ρ" in line and "second-order stage exact" in line


def test_predicted_order_puts_the_lowest_predicted_loss_first(capsys, monkeypatch):
    monkeypatch.delenv("DEPTHBENCH_TABLES")  # the shipped table: its pairs are predicted exactly
    code, out, _ = run(capsys, "evaluate", "--problem", "smollm2-135m/ppl", "--oracle", "replay", "--order",
                       "predicted", "--subset", "0,1", "--subset", "17,18", "--subset", "5,6", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and {row["source"] for row in rows} == {"table"}
    assert [row["loss"] for row in rows] == sorted(row["loss"] for row in rows)
    assert rows[0]["subset"] == [17, 18]


def test_predicted_order_without_a_table_is_one_line(capsys, table_directory):
    code, _, err = run(capsys, "evaluate", "--problem", "synthetic/quadratic-N6-seed0", "--order", "predicted",
                       "--all-of-size", "2")
    assert_one_line_error(code, err, "needs a table")


def test_bos_against_the_model_setting_is_another_problem_with_its_own_table(capsys, monkeypatch):
    from problems.model_problems import problem_spec

    default = problem_spec("smollm2-135m/ppl")["fingerprint"]
    assert problem_spec("smollm2-135m/ppl", bos=False)["fingerprint"] == default  # SmolLM2 adds no BOS
    assert problem_spec("smollm2-135m/ppl", bos=True)["fingerprint"] != default
    monkeypatch.delenv("DEPTHBENCH_TABLES")  # the shipped table must not answer a BOS request
    code, _, err = run(capsys, "evaluate", "--problem", "smollm2-135m/ppl", "--bos", "--oracle", "replay",
                       "--subset", "17")
    assert_one_line_error(code, err, "does not exist")


def test_a_solver_whose_library_is_missing_is_one_line_and_listed_as_unavailable(capsys, monkeypatch):
    from solvers.registry import SOLVERS

    monkeypatch.setitem(SOLVERS, "gp", "no_such_gp_library.model:GP")
    code, _, err = run(capsys, "solve", "--problem", "synthetic/quadratic-N6-seed0", "--solver", "gp", "--k", "2")
    assert_one_line_error(code, err, "no_such_gp_library", "pip install 'depthbench[solvers]'")
    code, out, _ = run(capsys, "list")
    assert code == 0 and "gp         unavailable: solver 'gp' needs no_such_gp_library" in out


def test_ray_executor_option_builds_replicas_of_the_problem_and_releases_them(capsys, tmp_path, monkeypatch):
    """`--executor ray` hands RayOracle a factory of the problem's live oracle and the worker
    count; the problem's close releases the replicas (Ray itself is tested in test_ray_executor)."""
    from oracle.evaluation import Evaluation, OracleCounters

    built = {}

    class FakeRayOracle:
        def __init__(self, factory, workers, n_blocks, fingerprint, address, gpus_per_worker):
            built.update(factory=factory, workers=workers, address=address, gpus=gpus_per_worker)
            self.n_blocks, self.fingerprint, self.counters = n_blocks, fingerprint, OracleCounters()

        def evaluate_iter(self, subsets):
            for subset in subsets:  # one chunk each, as Ray hands them back
                built["chunks"] = built.get("chunks", 0) + 1
                yield [Evaluation(subset, float(len(subset)), np.zeros(4, np.float32), 0.0, "live")]

        def close(self):
            built["closed"] = True

    monkeypatch.setattr("oracle.ray_executor.RayOracle", FakeRayOracle)
    table = tmp_path / "ray.h5"
    code, out, err = run(capsys, "evaluate", "--problem", "smollm2-135m/ppl", "--windows", "4", "--subset", "3",
                         "--executor", "ray", "--workers", "2", "--batch-tokens", "256", "--table", str(table))
    assert code == 0, err
    factory = built["factory"]
    assert factory.func.__name__ == "build_live_oracle" and factory.args[1:] == ("cpu", None, 256)
    assert factory.args[0]["objective"]["windows"] == 4
    assert (built["workers"], built["address"], built["gpus"], built["closed"]) == (2, None, 0.0, True)
    assert "new evaluations 2" in out and built["chunks"] == 2


def test_downstream_refuses_unknown_sets_and_runs_without_answers(capsys, tmp_path, table_directory):
    code, _, err = run(capsys, "downstream", str(tmp_path / "nothing"), "--sets", "mmlu")
    assert_one_line_error(code, err, "unknown evaluation sets mmlu")
    code, _, err = run(capsys, "downstream", str(tmp_path / "nothing"))
    assert_one_line_error(code, err, "no finished cells")
    assert not table_directory.exists()


def test_an_unusable_device_is_refused_before_a_table_is_created(capsys, table_directory):
    code, _, err = run(capsys, "evaluate", "--problem", "smollm2-135m/ppl", "--subset", "3", "--device", "nodevice")
    assert_one_line_error(code, err, "nodevice")
    assert not table_directory.exists()


def test_table_merge_reports_what_it_added_and_refuses_another_problem_untouched(capsys, tmp_path):
    from oracle.evaluation import Evaluation
    from oracle.table import EvaluationTable

    def table(name, fingerprint, subsets):
        with EvaluationTable.create(tmp_path / name, fingerprint=fingerprint, n_blocks=4, n_samples=1,
                                    spec={}) as created:
            created.append([Evaluation(subset, 1.0, None, 0.1, "live") for subset in subsets])
        return str(tmp_path / name)

    target = table("target.h5", "0123456789abcdef", [(), (1,)])
    parts = [table("part1.h5", "0123456789abcdef", [(1,), (2,)]), table("part2.h5", "0123456789abcdef", [(3,)])]
    code, out, _ = run(capsys, "table", "merge", target, *parts)
    assert code == 0 and out.splitlines() == [f"{parts[0]}: 1 rows and 0 attributes added",
                                              f"{parts[1]}: 1 rows and 0 attributes added", f"{target}: 4 rows"]
    other = table("other.h5", "ffffffffffffffff", [(0,)])
    before = digest(tmp_path / "target.h5")
    code, _, err = run(capsys, "table", "merge", target, other)
    assert_one_line_error(code, err, "ffffffffffffffff")
    assert digest(tmp_path / "target.h5") == before
    code, _, err = run(capsys, "table", "merge", target, target)
    assert_one_line_error(code, err, "into itself")
