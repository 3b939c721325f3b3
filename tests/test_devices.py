"""The live oracle on a device other than the CPU, tested without one: on the `meta` device a
whole forward runs and any tensor left on the CPU raises, so everything up to the copy of the
results to the host is exercised; FakeTensorMode fakes `cuda` tensors for the oracle's own
tensor code. Batch sizes chosen per device never change a loss."""

import copy

import numpy as np
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import oracle.live
from oracle import devices
from oracle.block_runner import BlockRunner
from oracle.live import LiveOracle
from oracle.objectives import DivergenceObjective, MarginObjective, PerplexityObjective
from tests.tiny_models import CharTokenizer, items, passages, tiny_model

SUBSETS = [(), (0,), (1, 3), (0, 4, 5), (2,)]


def objective_of(name: str, batch_tokens: int):
    if name in ("ppl", "kl"):
        windowed = DivergenceObjective if name == "kl" else PerplexityObjective
        objective = windowed(windows=5, window_tokens=17, seed=0, needs_bos=False, batch_tokens=batch_tokens)
        return objective, objective.prepare(CharTokenizer(), passages())
    objective = MarginObjective(needs_bos=False, batch_tokens=batch_tokens)
    return objective, objective.prepare(CharTokenizer(), items())


def fake_copy_out(tensor: torch.Tensor) -> torch.Tensor:
    """What `to_host` gives for a meta tensor, which holds no data: ones of its shape."""
    assert tensor.device.type == "meta", f"a result left the device from {tensor.device}, not meta"
    return torch.ones(tensor.shape, dtype=tensor.dtype)


@pytest.mark.parametrize("objective_name", ["ppl", "kl", "margin"])
@pytest.mark.parametrize("family, attention", [("llama", "sdpa"), ("gemma3", "eager")])
def test_every_tensor_of_an_evaluation_stays_on_the_model_device(monkeypatch, objective_name, family, attention):
    monkeypatch.setattr(oracle.live, "to_host", fake_copy_out)
    model = tiny_model(family, attention=attention).to("meta")
    objective, prepared = objective_of(objective_name, batch_tokens=40)
    live = LiveOracle(BlockRunner(model), objective, prepared, "meta")
    assert all(batch.input_ids.device.type == "meta" for batch in live._batches)
    evaluations = live.evaluate(SUBSETS)
    assert [e.subset for e in evaluations] == SUBSETS
    assert all(e.per_sample.shape == (prepared.n_samples,) for e in evaluations)
    assert live.block_scores("cosine").shape == (6,)
    assert live.run_distances(2).shape == (5,)
    assert live.segment_information().shape == (7, 7)
    assert live.removal_order("cosine").shape == (5,)  # passes of pruned models stay on the device too


def test_attention_masks_are_built_on_the_batch_device():
    objective, prepared = objective_of("margin", batch_tokens=40)
    with FakeTensorMode():
        # Fake tensors cannot be copied to a device this build lacks, only made on it.
        batch = copy.copy(prepared.batches[0])
        for name, value in vars(prepared.batches[0]).items():
            if isinstance(value, torch.Tensor):
                setattr(batch, name, torch.zeros(value.shape, dtype=value.dtype, device="cuda"))
        for window in (None, 3):
            mask = batch.attention_mask(window, torch.bfloat16, causal_without_mask=False)
            assert mask.device.type == "cuda" and mask.dtype == torch.bfloat16


@pytest.mark.parametrize("objective_name", ["ppl", "kl", "margin"])
def test_losses_do_not_depend_on_the_batch_size(objective_name):
    model = tiny_model("llama")
    losses = []
    for batch_tokens in (1, 40, 100, 10_000):
        objective, prepared = objective_of(objective_name, batch_tokens)
        live = LiveOracle(BlockRunner(model), objective, prepared, "sizes")
        losses.append(np.array([e.per_sample for e in live.evaluate(SUBSETS)]))
    for other in losses[1:]:
        np.testing.assert_allclose(other, losses[0], rtol=1e-6, atol=1e-6)


class Shape:
    hidden_size = 4096
    intermediate_size = 14336


def test_batch_tokens_are_the_table_sizes_on_a_cpu_and_fill_an_accelerator():
    assert devices.default_batch_tokens("ppl", "cpu") == 2048
    assert devices.default_batch_tokens("margin", "cpu") == 512
    big = devices.default_batch_tokens("ppl", "cuda", Shape, torch.bfloat16, available=100 << 30)
    small = devices.default_batch_tokens("ppl", "cuda", Shape, torch.bfloat16, available=4 << 30)
    assert big == devices.ACCELERATOR_BATCH_TOKENS["ppl"]
    assert devices.MIN_BATCH_TOKENS <= small < big and small % 256 == 0
    assert devices.default_batch_tokens("margin", "cuda", Shape, torch.bfloat16, available=1 << 20) == 256
    cache = devices.dense_cache_bytes("cuda", big, Shape, torch.bfloat16, available=100 << 30)
    assert 0 < cache < 100 << 30
    assert devices.dense_cache_bytes("cpu", 2048) == devices.CPU_DENSE_CACHE_BYTES
