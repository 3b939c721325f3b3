"""MemoOracle and ReplayOracle: hits, misses, batching, counters and refusals."""

import numpy as np
import pytest

from oracle.errors import BadInput, FingerprintMismatch, InvalidSubset, TableError, TableMiss
from oracle.evaluation import Evaluation, OracleCounters
from oracle.memo import MemoOracle, ReplayOracle
from oracle.table import EvaluationTable

N_BLOCKS = 10
N_SAMPLES = 4
FINGERPRINT = "fake0123fake4567"


class FakeOracle:
    """Deterministic pseudo-Boolean loss: block weights plus pairwise interactions."""

    def __init__(self, fingerprint=FINGERPRINT, n_blocks=N_BLOCKS, seed=0):
        rng = np.random.default_rng(seed)
        self.n_blocks = n_blocks
        self.fingerprint = fingerprint
        self.counters = OracleCounters()
        self.weights = rng.normal(size=n_blocks)
        self.pairs = np.triu(rng.normal(scale=0.1, size=(n_blocks, n_blocks)), 1)
        self.batches: list[list[tuple[int, ...]]] = []

    def loss(self, subset):
        index = list(subset)
        return float(self.weights[index].sum() + self.pairs[np.ix_(index, index)].sum())

    def evaluate(self, subsets):
        self.batches.append(list(subsets))
        self.counters.requests += len(subsets)
        self.counters.evaluations += len(subsets)
        results = []
        for subset in subsets:
            loss = self.loss(subset)
            per_sample = loss + np.linspace(-0.5, 0.5, N_SAMPLES)
            results.append(Evaluation(tuple(subset), loss, per_sample, 0.25, "live"))
        return results


@pytest.fixture
def table(tmp_path):
    with EvaluationTable.create(
        tmp_path / "memo.h5", fingerprint=FINGERPRINT, n_blocks=N_BLOCKS, n_samples=N_SAMPLES, spec={"fake": 1}
    ) as table:
        yield table


def filled_read_only_table(path, subsets):
    with EvaluationTable.create(
        path, fingerprint=FINGERPRINT, n_blocks=N_BLOCKS, n_samples=N_SAMPLES, spec={"fake": 1}
    ) as writer:
        writer.append(FakeOracle().evaluate(subsets))
    return EvaluationTable.open(path)


# ---- MemoOracle -----------------------------------------------------------------------------


def test_memo_evaluates_a_new_subset_and_serves_it_from_the_table_next_time(table):
    inner = FakeOracle()
    memo = MemoOracle(inner, table)
    (first,) = memo.evaluate([(1, 2)])
    (second,) = memo.evaluate([(1, 2)])
    assert first.source == "live" and second.source == "table"
    assert second.loss == pytest.approx(inner.loss((1, 2)))
    assert second.cost_s == 0.25
    assert len(inner.batches) == 1
    assert memo.counters.as_dict() == {"requests": 2, "hits": 1, "evaluations": 1, "surrogate": 0, "cost_s": 0.25}


def test_memo_sends_the_unique_misses_of_a_batch_as_one_batch(table):
    inner = FakeOracle()
    memo = MemoOracle(inner, table)
    memo.evaluate([(3,)])
    results = memo.evaluate([(5, 1), (3,), (1, 5), (2,), (5, 1)])
    assert inner.batches[-1] == [(1, 5), (2,)]
    assert [r.subset for r in results] == [(1, 5), (3,), (1, 5), (2,), (1, 5)]
    assert [r.source for r in results] == ["live", "table", "live", "live", "live"]
    assert [r.loss for r in results] == pytest.approx([inner.loss(r.subset) for r in results])
    assert (memo.counters.requests, memo.counters.hits, memo.counters.evaluations) == (6, 1, 3)
    assert memo.counters.cost_s == pytest.approx(0.75)


def test_memo_appends_each_batch_of_misses_once(table, monkeypatch):
    appended = []
    original = table.append
    monkeypatch.setattr(table, "append", lambda evaluations: appended.append(len(evaluations)) or original(evaluations))
    memo = MemoOracle(FakeOracle(), table)
    memo.evaluate([(1,), (2,), (3,)])
    memo.evaluate([(1,), (2,)])
    assert appended == [3]


def test_memo_writes_every_evaluation_through_to_the_file(table):
    MemoOracle(FakeOracle(), table).evaluate([(0,), (4, 7)])
    table.close()
    reopened = EvaluationTable.open(table.path)
    assert reopened.subsets() == [(0,), (4, 7)]
    np.testing.assert_allclose(reopened.lookup((4, 7)).per_sample, FakeOracle().evaluate([(4, 7)])[0].per_sample, rtol=1e-6)


def test_memo_of_an_empty_batch_is_empty(table):
    memo = MemoOracle(FakeOracle(), table)
    assert memo.evaluate([]) == []
    assert memo.counters.requests == 0


def test_memo_refuses_an_invalid_subset_before_evaluating(table):
    inner = FakeOracle()
    with pytest.raises(InvalidSubset):
        MemoOracle(inner, table).evaluate([(1,), (N_BLOCKS,)])
    assert inner.batches == [] and len(table) == 0


def test_memo_refuses_a_table_of_another_fingerprint(table):
    with pytest.raises(FingerprintMismatch) as caught:
        MemoOracle(FakeOracle(fingerprint="other0fingerprnt"), table)
    assert FINGERPRINT in str(caught.value) and "other0fingerprnt" in str(caught.value)


def test_memo_refuses_a_read_only_table(tmp_path):
    table = filled_read_only_table(tmp_path / "t.h5", [(1,)])
    with pytest.raises(TableError, match="read-only"):
        MemoOracle(FakeOracle(), table)


def test_memo_takes_size_and_fingerprint_from_the_table(table):
    memo = MemoOracle(FakeOracle(), table)
    assert (memo.n_blocks, memo.fingerprint) == (N_BLOCKS, FINGERPRINT)


# ---- ReplayOracle ---------------------------------------------------------------------------


def test_replay_answers_from_the_table(tmp_path):
    table = filled_read_only_table(tmp_path / "t.h5", [(1,), (2, 3)])
    replay = ReplayOracle(table)
    results = replay.evaluate([(3, 2), (1,)])
    assert [r.subset for r in results] == [(2, 3), (1,)]
    assert all(r.source == "table" for r in results)
    assert (replay.n_blocks, replay.fingerprint) == (N_BLOCKS, FINGERPRINT)
    assert (replay.counters.requests, replay.counters.hits, replay.counters.evaluations) == (2, 2, 0)


def test_strict_replay_miss_names_the_first_missing_subset_and_the_table(tmp_path):
    path = tmp_path / "t.h5"
    table = filled_read_only_table(path, [(1,)])
    replay = ReplayOracle(table, on_miss="strict")
    with pytest.raises(TableMiss) as caught:
        replay.evaluate([(1,), (6, 4), (8,)])
    assert caught.value.subset == (4, 6)
    assert "[4, 6]" in str(caught.value) and str(path) in str(caught.value)
    assert replay.counters.requests == 0


def test_live_replay_evaluates_misses_and_writes_them_to_a_writable_table(table):
    table.append(FakeOracle().evaluate([(1,)]))
    live = FakeOracle()
    replay = ReplayOracle(table, on_miss="live", live=live)
    results = replay.evaluate([(1,), (2,), (2,)])
    assert [r.source for r in results] == ["table", "live", "live"]
    assert live.batches == [[(2,)]]
    assert (2,) in table
    assert (replay.counters.requests, replay.counters.hits, replay.counters.evaluations) == (3, 1, 1)


def test_live_replay_on_a_read_only_table_does_not_write(tmp_path):
    table = filled_read_only_table(tmp_path / "t.h5", [(1,)])
    before = (tmp_path / "t.h5").read_bytes()
    replay = ReplayOracle(table, on_miss="live", live=FakeOracle())
    assert replay.evaluate([(2,)])[0].source == "live"
    assert (2,) not in table
    assert (tmp_path / "t.h5").read_bytes() == before


def test_live_replay_needs_a_live_oracle(table):
    with pytest.raises(BadInput, match="live oracle"):
        ReplayOracle(table, on_miss="live")


def test_live_replay_refuses_a_live_oracle_of_another_fingerprint(table):
    with pytest.raises(FingerprintMismatch) as caught:
        ReplayOracle(table, on_miss="live", live=FakeOracle(fingerprint="other0fingerprnt"))
    assert FINGERPRINT in str(caught.value) and "other0fingerprnt" in str(caught.value)


def test_unknown_on_miss_is_refused(table):
    with pytest.raises(BadInput, match="on_miss"):
        ReplayOracle(table, on_miss="guess")
