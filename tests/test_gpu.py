"""The live oracle on a CUDA device (skipped without one; `make gpu-check` runs these): skipping
blocks equals the rebuilt model there too, the GPU agrees with the CPU in fp32, batch sizes
chosen from free memory change no loss, and the real model reproduces the shipped table."""

import numpy as np
import pytest
import torch

from oracle import devices
from oracle.block_runner import BlockRunner
from oracle.live import LiveOracle
from tests.test_devices import SUBSETS, objective_of
from tests.test_live_oracle import ppl_oracle, reference_ppl
from tests.tiny_models import rebuilt_without, tiny_model

pytestmark = pytest.mark.gpu
CUDA = "cuda"


@pytest.mark.parametrize("family, attention", [("llama", "sdpa"), ("gemma3", "eager")])
def test_skipping_blocks_equals_the_rebuilt_model_on_the_gpu(family, attention):
    model = tiny_model(family, attention=attention).to(CUDA)
    oracle = ppl_oracle(model, needs_bos=family == "gemma3")
    for evaluation in oracle.evaluate(SUBSETS):
        reference = reference_ppl(rebuilt_without(model, evaluation.subset), oracle)
        np.testing.assert_allclose(evaluation.per_sample, reference, rtol=1e-5)


@pytest.mark.parametrize("objective_name", ["ppl", "margin"])
def test_gpu_and_cpu_agree_in_fp32_at_any_batch_size(objective_name):
    model = tiny_model("llama")
    results = []
    for device, batch_tokens in (("cpu", 40), (CUDA, 40), (CUDA, 10_000)):
        objective, prepared = objective_of(objective_name, batch_tokens)
        live = LiveOracle(BlockRunner(model.to(device)), objective, prepared, "gpu")
        results.append(np.array([e.per_sample for e in live.evaluate(SUBSETS)]))
    for other in results[1:]:
        np.testing.assert_allclose(other, results[0], rtol=1e-5, atol=1e-6)


def test_default_batches_fill_the_gpu():
    model = tiny_model("llama").to(CUDA)
    runner = BlockRunner(model)
    tokens = devices.default_batch_tokens("ppl", CUDA, runner.config, runner.dtype)
    assert tokens > devices.CPU_BATCH_TOKENS["ppl"]
    assert devices.dense_cache_bytes(CUDA, tokens, runner.config, runner.dtype) > 0


@pytest.mark.model
@pytest.mark.parametrize("problem", ["smollm2-135m/ppl", "smollm2-135m/margin"])
def test_the_real_model_on_the_gpu_reproduces_the_shipped_table(problem):
    from oracle.table import EvaluationTable, table_path
    from problems.model_oracles import build_live_oracle
    from problems.model_problems import problem_spec
    from problems.table_directories import SHIPPED_TABLES

    spec = problem_spec(problem)
    with EvaluationTable.open(table_path(SHIPPED_TABLES, spec["name"], spec["fingerprint"]), mode="r") as table:
        stored = {e.subset: e.loss for e in table.rows()}
    subsets = [(), (3,), (5, 20), min(subset for subset in stored if len(subset) == 4)]
    live = build_live_oracle(spec, CUDA)
    for evaluation in live.evaluate(subsets):
        assert evaluation.loss == pytest.approx(stored[evaluation.subset], rel=1e-4)
