"""RayOracle on a tiny model with two CPU workers: the same values as the in-process live
oracle, nothing lost when a worker dies, and every chunk written through by MemoOracle."""

import contextlib
import itertools
import os
import sys
from functools import partial

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from oracle.block_runner import BlockRunner  # noqa: E402
from oracle.errors import BadInput  # noqa: E402
from oracle.live import LiveOracle, visit_order  # noqa: E402
from oracle.memo import MemoOracle  # noqa: E402
from oracle.objectives import PerplexityObjective  # noqa: E402
from oracle.ray_executor import RayOracle  # noqa: E402
from oracle.table import EvaluationTable  # noqa: E402
from tests.tiny_models import CharTokenizer, passages, tiny_model  # noqa: E402

pytestmark = pytest.mark.slow

N_BLOCKS = 6
FINGERPRINT = "tiny-llama-6"
SINGLES_AND_PAIRS = [(block,) for block in range(N_BLOCKS)] + list(itertools.combinations(range(N_BLOCKS), 2))


def tiny_oracle() -> LiveOracle:
    """The same tiny live oracle in any process: seeded weights, fixed calibration windows."""
    objective = PerplexityObjective(windows=5, window_tokens=17, seed=0, needs_bos=False, batch_tokens=34)
    prepared = objective.prepare(CharTokenizer(), passages())
    return LiveOracle(BlockRunner(tiny_model("llama", n_blocks=N_BLOCKS)), objective, prepared, FINGERPRINT)


class CrashOnce:
    """The tiny live oracle, in a process that exits at the start of an evaluation while `flag`
    exists: the one process that removes the flag dies, once."""

    def __init__(self, flag: str):
        self.flag = flag
        self.oracle = tiny_oracle()

    def __getattr__(self, name: str):
        return getattr(self.oracle, name)

    def evaluate(self, subsets):
        try:
            os.remove(self.flag)
        except FileNotFoundError:
            return self.oracle.evaluate(subsets)
        os._exit(1)


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    # pytest imports this module by file name, which the workers cannot import: send the
    # factories defined here by value instead.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@contextlib.contextmanager
def one_thread():
    """Ray gives each one-CPU worker one thread, and the thread count changes fp32 reductions
    (by ~1e-8 here): in-process references run on one thread too, so values must match exactly."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reference():
    with one_thread():
        oracle = tiny_oracle()
        return {evaluation.subset: evaluation for evaluation in oracle.evaluate([()] + SINGLES_AND_PAIRS)}


@pytest.fixture(scope="module")
def crash_flag(tmp_path_factory):
    return tmp_path_factory.mktemp("ray") / "crash"


@pytest.fixture(scope="module")
def workers(crash_flag):
    """One pair of workers for the module (they hold both CPU slots): tiny oracles that crash
    when `crash_flag` is created."""
    factory = partial(CrashOnce, str(crash_flag))
    with RayOracle(factory, workers=2, n_blocks=N_BLOCKS, fingerprint=FINGERPRINT) as oracle:
        yield oracle


def assert_same(evaluations, reference, source="live"):
    for evaluation in evaluations:
        expected = reference[evaluation.subset]
        assert evaluation.loss == expected.loss
        np.testing.assert_array_equal(evaluation.per_sample, expected.per_sample)
        assert evaluation.source == source


def test_a_replica_of_another_problem_is_refused():
    # First in the module: its worker needs a CPU slot, which the shared workers hold later.
    with pytest.raises(BadInput, match="fingerprint other"):
        RayOracle(tiny_oracle, workers=1, n_blocks=N_BLOCKS, fingerprint="other")


def test_without_ray_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(BadInput, match=r"pip install 'depthbench\[ray\]'"):
        RayOracle(tiny_oracle, workers=1, n_blocks=N_BLOCKS, fingerprint=FINGERPRINT)


def test_two_workers_give_exactly_the_in_process_values_in_request_order(workers, reference):
    workers.counters.reset()
    request = SINGLES_AND_PAIRS[::-1] + [(2, 4), (0,)]  # reversed, with two repeats
    evaluations = workers.evaluate(request)
    assert [evaluation.subset for evaluation in evaluations] == request
    assert_same(evaluations, reference)
    counters = workers.counters
    assert (counters.requests, counters.evaluations) == (len(request), len(SINGLES_AND_PAIRS))
    assert counters.cost_s == pytest.approx(sum(evaluation.cost_s for evaluation in
                                                {e.subset: e for e in evaluations}.values()))


def test_a_batch_comes_back_in_contiguous_chunks_of_the_visit_order(workers):
    chunks = list(workers.evaluate_iter(SINGLES_AND_PAIRS))
    assert len(chunks) == 2 * workers.chunks_per_worker
    assert sorted(len(chunk) for chunk in chunks) == [3, 3, 3, 4, 4, 4]
    order = sorted(SINGLES_AND_PAIRS, key=lambda subset: visit_order(subset, workers.n_blocks))
    for chunk in chunks:
        start = order.index(chunk[0].subset)
        assert [evaluation.subset for evaluation in chunk] == order[start:start + len(chunk)]
    assert workers.evaluate([]) == []


def test_criteria_come_from_a_replica(workers):
    with one_thread():
        local = tiny_oracle()
        np.testing.assert_array_equal(workers.block_scores("cosine"), local.block_scores("cosine"))
        np.testing.assert_array_equal(workers.run_distances(2), local.run_distances(2))
        np.testing.assert_array_equal(workers.removal_order("angular"), local.removal_order("angular"))


def test_memo_over_ray_writes_every_chunk_to_the_table_as_it_arrives(workers, reference, tmp_path, monkeypatch):
    table = EvaluationTable.create(tmp_path / "ray.h5", fingerprint=FINGERPRINT, n_blocks=N_BLOCKS,
                                   n_samples=5, spec={"tiny": "llama"})
    appended = []
    original = table.append
    monkeypatch.setattr(table, "append", lambda evaluations: appended.append(len(evaluations)) or original(evaluations))
    memo = MemoOracle(workers, table)
    evaluations = memo.evaluate(SINGLES_AND_PAIRS + [(1,)])
    assert_same(evaluations, reference)
    assert len(appended) == 2 * workers.chunks_per_worker and sum(appended) == len(SINGLES_AND_PAIRS)
    assert memo.counters.as_dict() == {"requests": len(SINGLES_AND_PAIRS) + 1, "hits": 0,
                                       "evaluations": len(SINGLES_AND_PAIRS), "surrogate": 0,
                                       "cost_s": pytest.approx(sum(e.cost_s for e in evaluations[:-1]))}
    table.close()
    with EvaluationTable.open(tmp_path / "ray.h5") as stored:
        assert sorted(stored.subsets()) == sorted(SINGLES_AND_PAIRS)
        assert_same(list(stored.rows()), reference, source="table")


def test_a_worker_that_dies_mid_batch_is_restarted_and_loses_nothing(workers, reference, crash_flag):
    workers.counters.reset()
    crash_flag.touch()
    evaluations = workers.evaluate(SINGLES_AND_PAIRS)
    assert not crash_flag.exists(), "a worker should have died"
    assert [evaluation.subset for evaluation in evaluations] == SINGLES_AND_PAIRS
    assert_same(evaluations, reference)
    assert workers.counters.evaluations == len(SINGLES_AND_PAIRS)
