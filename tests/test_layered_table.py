"""A problem's shipped table and its user table read together: reads see both, writes go to the
user table only (created on its first write), and the shipped files never change."""

import hashlib
import stat
from functools import partial
from pathlib import Path

import numpy as np
import pytest

import problems
from bench.cli import main
from oracle.errors import TableError, TableMiss
from oracle.evaluation import Evaluation, OracleCounters
from oracle.layered_table import LayeredTable
from oracle.memo import MemoOracle, ReplayOracle
from oracle.table import EvaluationTable, table_path
from problems import model_oracles, table_directories
from problems.model_problems import problem_spec

N_BLOCKS, N_SAMPLES, FINGERPRINT = 8, 3, "layered0fake0001"


def evaluation(subset, loss):
    return Evaluation(tuple(subset), float(loss), np.full(N_SAMPLES, loss, np.float32), 0.5, "live")


class CountingOracle:
    """Loss = 10 + the sum of the removed blocks; remembers what it evaluated."""

    def __init__(self, fingerprint=FINGERPRINT, n_blocks=N_BLOCKS):
        self.fingerprint, self.n_blocks, self.counters = fingerprint, n_blocks, OracleCounters()
        self.evaluated = []

    def evaluate(self, subsets):
        self.evaluated += subsets
        return [Evaluation(tuple(s), 10.0 + sum(s), None, 1.0, "live") for s in subsets]


def create(path, **extra):
    return EvaluationTable.create(path, fingerprint=FINGERPRINT, n_blocks=N_BLOCKS, n_samples=N_SAMPLES,
                                  spec={"name": "fake"}, **extra)


def state(directory: Path) -> dict:
    """What must not change: every file's bytes and the directory itself (an entry made and
    removed again, such as a lock file, changes its modification time)."""
    files = {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(directory.iterdir())
             if path.is_file()}
    return {"files": files, "mtime": directory.stat().st_mtime_ns}


@pytest.fixture
def read_only(tmp_path):
    """Makes directories read-only for the test (as in an installed package) and writable again
    afterwards so that they can be removed. Running as root this proves nothing by itself,
    hence the `state` checks."""
    made = []

    def make(directory: Path) -> Path:
        for path in [*directory.iterdir(), directory]:
            path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
            made.append(path)
        return directory

    yield make
    for path in made:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)


@pytest.fixture
def shipped(tmp_path, read_only):
    directory = tmp_path / "shipped"
    with create(directory / "fake.h5") as table:
        table.append([evaluation((), 1.0), evaluation((1,), 2.0), evaluation((2,), 3.0)])
        table.set_attribute("block_scores/cosine", [0.5] * N_BLOCKS)
    return read_only(directory) / "fake.h5"


def layered(shipped, user, writes=True):
    return LayeredTable(EvaluationTable.open(shipped), user, partial(create, user) if writes else None)


def test_reads_see_both_and_writes_go_to_a_user_table_created_on_the_first_write(shipped, tmp_path):
    before, user = state(shipped.parent), tmp_path / "user" / "fake.h5"
    live = CountingOracle()
    with layered(shipped, user) as table:
        memo = MemoOracle(live, table)
        assert [e.source for e in memo.evaluate([(), (1,)])] == ["table", "table"]
        assert not user.parent.exists()  # nothing written yet: no user table
        assert [e.source for e in memo.evaluate([(2,), (3, 4)])] == ["table", "live"]
    assert live.evaluated == [(3, 4)]
    with EvaluationTable.open(user) as own:
        assert own.subsets() == [(3, 4)] and own.fingerprint == FINGERPRINT
    with layered(shipped, user, writes=False) as table:
        assert (1,) in table and (4, 3) in table and (5,) not in table
        assert [e.source for e in ReplayOracle(table).evaluate([(1,), (3, 4)])] == ["table", "table"]
        assert table.lookup((3, 4)).loss == 17.0
    assert state(shipped.parent) == before


def test_a_read_only_layered_table_creates_nothing(shipped, tmp_path):
    before, user = state(shipped.parent), tmp_path / "user" / "fake.h5"
    with layered(shipped, user, writes=False) as table:
        assert [e.loss for e in ReplayOracle(table).evaluate([(), (2,)])] == [1.0, 3.0]
        with pytest.raises(TableMiss, match=r"\[5\]"):
            ReplayOracle(table).evaluate([(5,)])
        with pytest.raises(TableError, match="read-only"):
            table.append([evaluation((5,), 4.0)])
        with pytest.raises(TableError, match="read-only"):
            table.set_attribute("note", 1)
    assert not user.parent.exists() and state(shipped.parent) == before


def test_attributes_come_from_either_table_and_are_written_to_the_user_one(shipped, tmp_path):
    user = tmp_path / "user" / "fake.h5"
    with layered(shipped, user) as table:
        table.set_attribute("block_scores/angular", [0.25] * N_BLOCKS)
        assert table.attribute("block_scores/cosine") == [0.5] * N_BLOCKS
        assert table.attribute("block_scores/angular") == [0.25] * N_BLOCKS
        with pytest.raises(KeyError):
            table.attribute("run_distances/2")
    with EvaluationTable.open(user) as own, EvaluationTable.open(shipped) as original:
        assert own.attribute("block_scores/angular") == [0.25] * N_BLOCKS
        with pytest.raises(KeyError):
            original.attribute("block_scores/angular")


def test_arrays_hold_the_rows_of_both_and_the_shipped_row_wins(shipped, tmp_path):
    user = tmp_path / "user" / "fake.h5"
    with create(user, environment={"device": "elsewhere"}) as own:
        own.append([evaluation((1,), 99.0), evaluation((4, 5), 6.0)])  # (1,) as a newer release ships it
    with LayeredTable(EvaluationTable.open(shipped), user, partial(create, user, environment={"device": "here"})) as table:
        assert table.lookup((1,)).loss == 2.0
        assert table.append([evaluation((2,), 42.0), evaluation((6,), 7.0)]) == 1
        arrays = table.to_arrays()
        losses = {tuple(np.flatnonzero(mask)): loss for mask, loss in zip(arrays["removed"], arrays["loss"])}
        assert losses == {(): 1.0, (1,): 2.0, (2,): 3.0, (4, 5): 6.0, (6,): 7.0}
        devices = [table.environments[index].get("device") for index in arrays["environment"]]
        assert devices == [None, None, None, "elsewhere", "here"]


def test_appending_to_an_existing_user_table_takes_the_writer_lock_only_then(shipped, tmp_path):
    user = tmp_path / "user" / "fake.h5"
    create(user).close()
    with layered(shipped, user) as table:
        with create(user) as other_writer:  # free while the layered table only reads
            other_writer.append([evaluation((7,), 8.0)])
        with pytest.raises(TableError, match="being written"):
            with create(user):
                table.append([evaluation((6,), 7.0)])
        table.append([evaluation((6,), 7.0)])
        assert table.lookup((7,)).loss == 8.0  # re-opened for writing, it sees the other writer's rows


# ---- the problems -----------------------------------------------------------------------------


@pytest.fixture
def shipped_problem(tmp_path, monkeypatch, read_only):
    """smollm2-135m/ppl with a read-only shipped table of made-up losses (∅ 1, block i alone
    2 + i/100, {0, 1, 2, 3} 5) in place of the shipped tables, an empty user directory, and a
    stand-in for the model."""
    spec = problem_spec("smollm2-135m/ppl")
    n_blocks = spec["model"]["n_blocks"]
    path = table_path(tmp_path / "shipped", spec["name"], spec["fingerprint"])
    rows = [(), *((i,) for i in range(n_blocks)), (0, 1, 2, 3)]
    losses = [1.0, *(2 + i / 100 for i in range(n_blocks)), 5.0]
    with EvaluationTable.create(path, fingerprint=spec["fingerprint"], n_blocks=n_blocks,
                                n_samples=model_oracles.sample_count(spec), spec=spec) as table:
        table.append([Evaluation(subset, loss, None, 1.0, "live") for subset, loss in zip(rows, losses)])
    monkeypatch.setattr(table_directories, "SHIPPED_TABLES", read_only(path.parent))
    monkeypatch.setenv("DEPTHBENCH_TABLES", str(tmp_path / "user"))
    model = CountingOracle(spec["fingerprint"], n_blocks)
    monkeypatch.setattr(model_oracles.DeferredLiveOracle, "evaluate", lambda self, subsets: model.evaluate(subsets))
    monkeypatch.setattr(model_oracles.DeferredLiveOracle, "evaluate_iter",
                        lambda self, subsets: iter([model.evaluate(subsets)]))
    return path


def test_live_evaluations_of_a_shipped_problem_go_to_the_user_table(shipped_problem, tmp_path, capsys):
    before, user = state(shipped_problem.parent), tmp_path / "user" / shipped_problem.name
    with problems.get("smollm2-135m/ppl") as problem:
        assert [e.source for e in problem.evaluate([(), (7,)])] == ["table", "table"]
        assert not user.exists()
        assert [e.source for e in problem.evaluate([(7,), (5, 6)])] == ["table", "live"]
    with problems.get("smollm2-135m/ppl", oracle="replay") as problem:
        assert problem.loss((5, 6)) == 21.0 and problem.loss((0, 1, 2, 3)) == 5.0
    with EvaluationTable.open(user) as own:
        assert own.subsets() == [(5, 6)]
    assert main(["list"]) == 0
    listing = capsys.readouterr().out
    assert f"shipped (read-only) tables in {shipped_problem.parent}:\n  {shipped_problem.name}" in listing
    assert f"user tables in {user.parent}:\n  {user.name}  1 rows" in listing
    assert main(["table", "info", str(shipped_problem)]) == 0
    assert f"read with    {user} (1 rows)" in capsys.readouterr().out
    assert state(shipped_problem.parent) == before


def test_a_replay_of_a_shipped_problem_creates_no_file(shipped_problem, tmp_path, capsys):
    before = state(shipped_problem.parent)
    assert main(["run", "--problem", "smollm2-135m/ppl", "--k", "4", "--solvers", "oneshot", "--seeds", "0",
                 "--out", str(tmp_path / "out")]) == 0
    assert "Δ 4.00000" in capsys.readouterr().err
    assert not (tmp_path / "user").exists() and state(shipped_problem.parent) == before


def test_an_explicit_table_is_the_only_table(shipped_problem, tmp_path):
    path = tmp_path / "mine.h5"
    with problems.get("smollm2-135m/ppl", table=path) as problem:
        assert problem.evaluate([(7,)])[0].source == "live"
    with EvaluationTable.open(path) as table:
        assert table.subsets() == [(7,)]
    assert not (tmp_path / "user").exists()
