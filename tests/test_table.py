"""EvaluationTable: round trips, no duplicates, refusals, locking and crash safety."""

import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

import table_writer_worker as worker
from oracle.errors import BadInput, FingerprintMismatch, InvalidSubset, TableError, TableLocked, TokenMismatch
from oracle.evaluation import Evaluation
from oracle.subset import pack_subset, parse_subset
from oracle.table import EvaluationTable, table_path

REPO = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).resolve().parent / "table_writer_worker.py"
N_BLOCKS = 12
N_SAMPLES = 5
FINGERPRINT = "0123456789abcdef"


def evaluation(subset, loss=None, per_sample=True, cost_s=0.5, source="live"):
    values = np.arange(N_SAMPLES, dtype=np.float32) + sum(subset)
    return Evaluation(
        tuple(subset),
        float(values.mean()) if loss is None else loss,
        values if per_sample else None,
        cost_s,
        source,
    )


def new_table(path, **overrides):
    settings = dict(fingerprint=FINGERPRINT, n_blocks=N_BLOCKS, n_samples=N_SAMPLES, spec={"model": "tiny"})
    settings.update(overrides)
    return EvaluationTable.create(path, **settings)


def run_python(code, *args):
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def start_worker(path, *args, stdout=subprocess.PIPE):
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(path), *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=stdout,
        text=True,
    )


HOLD_WRITER = """
import sys
from oracle.evaluation import Evaluation
from oracle.table import EvaluationTable
table = EvaluationTable.open(sys.argv[1], mode="a")
table.append([Evaluation((0, 1), 1.5, None, 2.0, "live")])
print("ready", flush=True)
sys.stdin.readline()
table.close()
"""


# ---- naming ---------------------------------------------------------------------------------


def test_table_path_puts_problem_and_fingerprint_in_the_file_name(tmp_path):
    path = table_path(tmp_path, "smollm2-135m/ppl", "abc123")
    assert path == tmp_path / "smollm2-135m__ppl__abc123.h5"


# ---- round trip -----------------------------------------------------------------------------


def test_rows_round_trip_with_nan_inf_and_per_sample(tmp_path):
    path = tmp_path / "t.h5"
    stored = [
        evaluation((3,)),
        evaluation((1, 4), loss=float("nan")),
        evaluation((2, 5, 7), loss=float("inf"), per_sample=False, cost_s=3.25),
        evaluation((), loss=-float("inf"), source="surrogate"),
    ]
    with new_table(path) as table:
        assert table.append(stored) == 4
    with EvaluationTable.open(path) as table:
        assert len(table) == 4
        for expected in stored:
            found = table.lookup(expected.subset)
            assert found.subset == expected.subset
            assert found.source == "table"
            assert found.cost_s == expected.cost_s
            if math.isnan(expected.loss):
                assert math.isnan(found.loss)
            else:
                assert found.loss == expected.loss
            if expected.per_sample is None:
                assert found.per_sample is None
            else:
                np.testing.assert_array_equal(found.per_sample, expected.per_sample)
        assert list(table.to_arrays()["source"]) == ["live", "live", "live", "surrogate"]


def test_rows_are_readable_before_the_writer_closes(tmp_path):
    path = tmp_path / "t.h5"
    writer = new_table(path)
    writer.append([evaluation((1,)), evaluation((2, 3))])
    reader = EvaluationTable.open(path)
    assert reader.subsets() == [(1,), (2, 3)]
    writer.close()


def test_rows_subsets_and_arrays_follow_row_order(tmp_path):
    with new_table(tmp_path / "t.h5") as table:
        table.append([evaluation((5,)), evaluation((0, 11))])
        table.append([evaluation(())])
        assert table.subsets() == [(5,), (0, 11), ()]
        assert [row.subset for row in table.rows()] == [(5,), (0, 11), ()]
        arrays = table.to_arrays()
        assert arrays["removed"].shape == (3, N_BLOCKS)
        assert arrays["removed"][1].nonzero()[0].tolist() == [0, 11]
        assert arrays["mask"][0].tobytes() == pack_subset((5,), N_BLOCKS)
        assert arrays["per_sample"].shape == (3, N_SAMPLES)
        assert arrays["per_sample_valid"].dtype == bool


def test_table_without_per_sample_losses_works(tmp_path):
    path = tmp_path / "t.h5"
    with new_table(path, n_samples=0) as table:
        table.append([Evaluation((1,), 0.5, None, 0.0, "live")])
    with EvaluationTable.open(path) as table:
        assert table.lookup((1,)).loss == 0.5
        assert table.lookup((1,)).per_sample is None


# ---- no duplicates --------------------------------------------------------------------------


def test_append_skips_subsets_already_present_and_repeated_in_the_batch(tmp_path):
    path = tmp_path / "t.h5"
    with new_table(path) as table:
        assert table.append([evaluation((1, 2)), evaluation((2, 1), loss=9.0), evaluation((3,))]) == 2
        assert table.append([evaluation((3,), loss=9.0), evaluation((4,))]) == 1
        assert table.append([evaluation((4,))]) == 0
    with EvaluationTable.open(path) as table:
        assert len(table) == 3
        assert table.lookup((1, 2)).loss != 9.0
        masks = table.to_arrays()["mask"]
        assert len(np.unique(masks, axis=0)) == len(masks)


def test_reopened_writer_does_not_add_duplicates(tmp_path):
    path = tmp_path / "t.h5"
    with new_table(path) as table:
        table.append([evaluation((1,))])
    with EvaluationTable.open(path, mode="a") as table:
        assert table.append([evaluation((1,)), evaluation((2,))]) == 1
    with h5py.File(path, "r") as handle:
        assert handle["loss"].shape == (2,)


# ---- lookups --------------------------------------------------------------------------------


def test_lookup_of_a_missing_subset_is_none(tmp_path):
    with new_table(tmp_path / "t.h5") as table:
        table.append([evaluation((1,))])
        assert table.lookup((2,)) is None
        assert table.lookup_many([(1,), (2,)])[1] is None
        assert (1,) in table and (2,) not in table


def test_lookup_canonicalises_the_subset(tmp_path):
    with new_table(tmp_path / "t.h5") as table:
        table.append([evaluation((2, 7))])
        assert table.lookup([7, 2]).subset == (2, 7)
        assert table.lookup(np.array([7, 2])).subset == (2, 7)


@pytest.mark.parametrize("subset", [(1, 1), (12,), (-1,), (1.5,)])
def test_lookup_refuses_invalid_subsets(tmp_path, subset):
    with new_table(tmp_path / "t.h5") as table:
        with pytest.raises(InvalidSubset):
            table.lookup(subset)


def test_lookup_speed(tmp_path, benchmark):
    rng = np.random.default_rng(0)
    n_blocks = 30
    subsets = {tuple(sorted(rng.choice(n_blocks, size=4, replace=False).tolist())) for _ in range(20000)}
    subsets = sorted(subsets)[:10000]
    with EvaluationTable.create(
        tmp_path / "t.h5", fingerprint="f", n_blocks=n_blocks, n_samples=64, spec={}
    ) as table:
        table.append([Evaluation(s, 1.0, np.zeros(64), 0.1, "live") for s in subsets])
        assert len(table) == 10000

        def lookups():
            for subset in subsets:
                table.lookup(subset)

        benchmark(lookups)
    rate = len(subsets) / benchmark.stats.stats.mean
    print(f"\n{rate:,.0f} lookups/s on a table of {len(subsets)} rows")
    assert rate >= 1e5


# ---- fingerprints and refusals --------------------------------------------------------------


def test_create_on_a_table_of_the_same_fingerprint_appends(tmp_path):
    path = tmp_path / "t.h5"
    with new_table(path) as table:
        table.append([evaluation((1,))])
    with new_table(path) as table:
        assert len(table) == 1
        table.append([evaluation((2,))])
    assert len(EvaluationTable.open(path)) == 2


def test_create_on_a_table_of_another_fingerprint_names_both(tmp_path):
    path = tmp_path / "t.h5"
    new_table(path).close()
    with pytest.raises(FingerprintMismatch) as caught:
        new_table(path, fingerprint="ffffffffffffffff")
    assert FINGERPRINT in str(caught.value) and "ffffffffffffffff" in str(caught.value)


def test_open_with_another_expected_fingerprint_names_both_and_the_path(tmp_path):
    path = tmp_path / "t.h5"
    new_table(path).close()
    for mode in ("r", "a"):
        with pytest.raises(FingerprintMismatch) as caught:
            EvaluationTable.open(path, mode=mode, expected_fingerprint="ffffffffffffffff")
        message = str(caught.value)
        assert FINGERPRINT in message and "ffffffffffffffff" in message and str(path) in message
    EvaluationTable.open(path, mode="a").close()  # the refused writer released its lock


def test_open_of_a_missing_file_is_a_table_error(tmp_path):
    with pytest.raises(TableError, match="does not exist"):
        EvaluationTable.open(tmp_path / "nothing.h5")


def write_hdf5_without_attributes(path):
    with h5py.File(path, "w") as handle:
        handle["loss"] = np.zeros(3)


@pytest.mark.parametrize(
    "make",
    [
        lambda path: path.write_bytes(random.Random(0).randbytes(4096)),
        lambda path: path.write_bytes(b""),
        write_hdf5_without_attributes,
    ],
    ids=["random-bytes", "empty", "hdf5-without-attributes"],
)
def test_a_file_that_is_not_a_table_is_refused_and_left_unchanged(tmp_path, make):
    path = tmp_path / "t.h5"
    make(path)
    before = path.read_bytes()
    attempts = [
        lambda: EvaluationTable.open(path),
        lambda: EvaluationTable.open(path, mode="a"),
        lambda: new_table(path),
    ]
    for attempt in attempts:
        with pytest.raises(TableError) as caught:
            attempt()
        assert str(caught.value).startswith(f"{path} is not a depthbench table (")
        assert "\n" not in str(caught.value)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["t.h5"]


def test_a_read_only_table_refuses_writes(tmp_path):
    path = tmp_path / "t.h5"
    new_table(path).close()
    table = EvaluationTable.open(path)
    with pytest.raises(TableError, match="read-only"):
        table.append([evaluation((1,))])
    with pytest.raises(TableError, match="read-only"):
        table.set_attribute("scores", [1])


def test_per_sample_of_the_wrong_width_is_refused(tmp_path):
    with new_table(tmp_path / "t.h5") as table:
        with pytest.raises(BadInput, match="per-sample"):
            table.append([Evaluation((1,), 1.0, np.zeros(N_SAMPLES + 1), 0.0, "live")])
        assert len(table) == 0


# ---- attributes, info, coverage -------------------------------------------------------------


def test_attributes_round_trip(tmp_path):
    path = tmp_path / "t.h5"
    with new_table(path, description="tiny model, ppl") as table:
        table.set_attribute("block_scores", {"cosine": [0.1, 0.2]})
        with pytest.raises(BadInput, match="reserved"):
            table.set_attribute("fingerprint", "x")
    with EvaluationTable.open(path) as table:
        assert table.attribute("block_scores") == {"cosine": [0.1, 0.2]}
        assert table.attribute("spec") == {"model": "tiny"}
        assert table.description == "tiny model, ppl"
        with pytest.raises(KeyError):
            table.attribute("nothing")


def test_info_reports_rows_coverage_and_environment(tmp_path):
    path = tmp_path / "t.h5"
    with new_table(path, environment={"torch": "2.5", "device": "cpu"}) as table:
        table.append([evaluation((i,)) for i in range(N_BLOCKS)] + [evaluation((0, 1)), evaluation((0, 1, 2))])
    info = EvaluationTable.open(path).info()
    assert info["rows"] == N_BLOCKS + 2
    assert info["fingerprint"] == FINGERPRINT and info["n_blocks"] == N_BLOCKS
    assert info["coverage"]["by_size"] == {1: N_BLOCKS, 2: 1, 3: 1}
    assert info["coverage"]["singles"] == {"present": N_BLOCKS, "possible": N_BLOCKS}
    assert info["coverage"]["pairs"] == {"present": 1, "possible": N_BLOCKS * (N_BLOCKS - 1) // 2}
    assert info["environment"]["torch"] == "2.5" and "h5py" in info["environment"]
    assert info["environments"][0]["rows"] == N_BLOCKS + 2
    assert info["created"].endswith("Z") and info["file_bytes"] > 0


def test_rows_from_another_environment_are_recorded_separately(tmp_path):
    path = tmp_path / "t.h5"
    with new_table(path, environment={"device": "cpu"}) as table:
        table.append([evaluation((1,))])
    with EvaluationTable.open(path, mode="a", environment={"device": "cuda"}) as table:
        table.append([evaluation((2,)), evaluation((3,))])
    table = EvaluationTable.open(path)
    assert [(e["environment"]["device"], e["rows"]) for e in table.info()["environments"]] == [("cpu", 1), ("cuda", 2)]
    assert table.to_arrays()["environment"].tolist() == [0, 1, 1]


# ---- journal --------------------------------------------------------------------------------


def test_journal_is_merged_into_the_hdf5_file_as_it_grows(tmp_path, monkeypatch):
    monkeypatch.setattr(EvaluationTable, "compact_min_rows", 4)
    path = tmp_path / "t.h5"
    table = new_table(path)
    for block in range(N_BLOCKS):
        table.append([evaluation((block,))])
    with h5py.File(path, "r") as handle:
        assert handle["loss"].shape[0] >= 8
    assert len(EvaluationTable.open(path)) == N_BLOCKS
    table.close()
    assert sorted(os.listdir(tmp_path)) == ["t.h5"]


def test_a_torn_last_journal_record_is_dropped(tmp_path):
    path = tmp_path / "t.h5"
    table = new_table(path)
    table.append([evaluation((1,))])
    table.append([evaluation((2,))])
    # A copy taken while the writer is active is what a killed writer leaves behind.
    copy = tmp_path / "copy" / "t.h5"
    copy.parent.mkdir()
    copy.write_bytes(path.read_bytes())
    journal = path.with_name("t.h5.journal").read_bytes()
    copy.with_name("t.h5.journal").write_bytes(journal[:-3])
    table.close()
    assert EvaluationTable.open(copy).subsets() == [(1,)]
    with EvaluationTable.open(copy, mode="a") as writer:
        writer.append([evaluation((3,))])
    assert EvaluationTable.open(copy).subsets() == [(1,), (3,)]


# ---- one writer, many readers ---------------------------------------------------------------


def test_a_second_writer_in_another_process_is_refused_with_its_pid(tmp_path):
    path = tmp_path / "t.h5"
    new_table(path).close()
    holder = run_python(HOLD_WRITER, path)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(TableLocked, match=f"being written by another process \\(pid {holder.pid}\\)"):
            EvaluationTable.open(path, mode="a")
        with pytest.raises(TableLocked):
            new_table(path)
    finally:
        holder.communicate("\n", timeout=20)
    EvaluationTable.open(path, mode="a").close()


def test_a_second_writer_in_the_same_process_is_refused(tmp_path):
    path = tmp_path / "t.h5"
    with new_table(path):
        with pytest.raises(TableLocked):
            EvaluationTable.open(path, mode="a")


def test_a_reader_works_while_another_process_writes(tmp_path):
    path = tmp_path / "t.h5"
    with new_table(path) as table:
        table.append([evaluation((5,))])
    holder = run_python(HOLD_WRITER, path)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with EvaluationTable.open(path, expected_fingerprint=FINGERPRINT) as reader:
            assert reader.subsets() == [(5,), (0, 1)]
            assert reader.lookup((0, 1)).cost_s == 2.0
    finally:
        holder.communicate("\n", timeout=20)
    assert holder.returncode == 0


def test_readers_see_a_growing_prefix_while_a_writer_appends_and_compacts(tmp_path):
    path = tmp_path / "t.h5"
    writer = start_worker(path, "1000", stdout=subprocess.DEVNULL)
    order = worker.all_subsets()
    seen = []
    try:
        while writer.poll() is None:
            if path.exists():
                with EvaluationTable.open(path) as reader:
                    subsets = reader.subsets()
                assert subsets == order[: len(subsets)]
                seen.append(len(subsets))
    finally:
        writer.wait(timeout=60)
    assert writer.returncode == 0
    assert seen == sorted(seen) and len(set(seen)) >= 2


# ---- crash safety ---------------------------------------------------------------------------


def check_table(path, expected_done):
    """The table opens, holds every subset in `expected_done`, holds each subset once and holds
    the worker's losses; returns its row count."""
    with EvaluationTable.open(path) as table:
        present = table.subsets()
        arrays = table.to_arrays()
    assert len(set(present)) == len(present), "duplicate rows"
    missing = set(expected_done) - set(present)
    assert not missing, f"{len(missing)} subsets of batches reported done are missing, e.g. {min(missing)}"
    expected_loss = arrays["removed"] @ np.arange(worker.N_BLOCKS) + 0.25 * (worker.N_SAMPLES - 1) / 2
    np.testing.assert_allclose(arrays["loss"], expected_loss, rtol=1e-6)
    with h5py.File(path, "r", locking=False) as handle:
        masks = handle["mask"][()]
    assert len(np.unique(masks, axis=0)) == len(masks), "duplicate rows in the HDF5 file"
    return len(present)


def test_a_writer_killed_at_random_moments_loses_no_finished_batch(tmp_path):
    path = tmp_path / "crash.h5"
    batches = worker.batches()
    done: set[tuple[int, ...]] = set()
    rng = random.Random(1234)
    rounds = 10
    for round_ in range(rounds):
        process = start_worker(path)
        if round_ % 2:
            # Kill during appends and compactions, not only while the interpreter starts.
            assert process.stdout.readline().strip() == "open"
        time.sleep(rng.uniform(0.05, 0.5))
        process.send_signal(signal.SIGKILL)
        output, _ = process.communicate(timeout=20)
        for line in output.splitlines():
            if line.startswith("done "):
                done.update(batches[int(line.split()[1])])
        if path.exists():
            check_table(path, done)
    process = start_worker(path)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0 and output.splitlines()[-1] == "closed"
    assert check_table(path, worker.all_subsets()) == len(worker.all_subsets())
    assert sorted(os.listdir(tmp_path)) == ["crash.h5"]


@pytest.mark.parametrize("text", ["3,7,12", "3 7 12", "[3, 7, 12]", " 12,3 ,7 ", "3, 7 12"])
def test_subset_text_accepts_commas_and_spaces(text):
    assert parse_subset(text, 30) == (3, 7, 12)


@pytest.mark.parametrize("text", ["", "-", "[]"])
def test_subset_text_for_the_empty_subset(text):
    assert parse_subset(text, 30) == ()


def test_merge_takes_the_missing_rows_with_their_times_and_environments_and_the_missing_attributes(tmp_path):
    with new_table(tmp_path / "a.h5", environment={"machine": "a"}) as table:
        table.append([evaluation(()), evaluation((1,), loss=1.0)])
        table.set_attribute("block_scores/cosine", [0.1] * N_BLOCKS)
    with new_table(tmp_path / "b.h5", environment={"machine": "b"}) as table:
        table.append([evaluation((1,), loss=2.0), evaluation((2, 3), cost_s=7.0)])
        table.set_attribute("block_scores/cosine", [0.2] * N_BLOCKS)
        table.set_attribute("removal_order/cosine", [3, 1])
    with EvaluationTable.open(tmp_path / "b.h5") as other:
        other_row = other.to_arrays()
    with EvaluationTable.open(tmp_path / "a.h5", mode="a") as target, EvaluationTable.open(tmp_path / "b.h5") as other:
        assert target.merge([other]) == [(1, ["removal_order/cosine"], ["block_scores/cosine"])]
    with EvaluationTable.open(tmp_path / "a.h5") as merged:
        assert len(merged) == 3 and merged.lookup((1,)).loss == 1.0  # a row already held is kept
        arrays = merged.to_arrays()
        assert arrays["cost_s"][2] == 7.0 and arrays["time"][2] == other_row["time"][1]
        assert [e["machine"] for e in merged.environments] == ["a", "b"]
        assert merged.environments[arrays["environment"][2]]["machine"] == "b"
        assert merged.attribute("block_scores/cosine") == [0.1] * N_BLOCKS
        assert merged.attribute("removal_order/cosine") == [3, 1]
        np.testing.assert_array_equal(merged.lookup((2, 3)).per_sample, evaluation((2, 3)).per_sample)


def test_merge_refuses_another_problem_or_other_tokens_before_writing_anything(tmp_path):
    with new_table(tmp_path / "a.h5") as table:
        table.append([evaluation(())])
        table.set_attribute("token_digest", "x")
    with new_table(tmp_path / "same.h5") as table:
        table.append([evaluation((1,))])
    with new_table(tmp_path / "other-tokens.h5") as table:
        table.set_attribute("token_digest", "y")
    new_table(tmp_path / "other-problem.h5", fingerprint="ffffffffffffffff").close()
    before = (tmp_path / "a.h5").read_bytes()
    for bad, error in [("other-problem.h5", FingerprintMismatch), ("other-tokens.h5", TableError)]:
        with EvaluationTable.open(tmp_path / "a.h5", mode="a") as target:
            sources = [EvaluationTable.open(tmp_path / name) for name in ("same.h5", bad)]
            with pytest.raises(error):
                target.merge(sources)
        assert (tmp_path / "a.h5").read_bytes() == before and len(EvaluationTable.open(tmp_path / "a.h5")) == 1


def test_merge_refuses_sources_built_on_other_tokens_than_each_other(tmp_path):
    new_table(tmp_path / "target.h5").close()  # no token digest of its own
    for name, digest in [("x.h5", "x"), ("y.h5", "y")]:
        with new_table(tmp_path / name) as table:
            table.append([evaluation((len(name),))])
            table.set_attribute("token_digest", digest)
    with EvaluationTable.open(tmp_path / "target.h5", mode="a") as target:
        with pytest.raises(TokenMismatch, match="other calibration tokens"):
            target.merge([EvaluationTable.open(tmp_path / name) for name in ("x.h5", "y.h5")])
        assert len(target) == 0 and "token_digest" not in target.info()["attributes"]
