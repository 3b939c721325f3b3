"""The live oracle on tiny random models: skipping blocks gives exactly the loss of a model
physically rebuilt without them, and prefix reuse never changes a value."""

import numpy as np
import pytest
import torch

from oracle.block_runner import BlockRunner
from oracle.live import LiveOracle
from oracle.objectives import DivergenceObjective, MarginObjective, PerplexityObjective
from tests.tiny_models import CharTokenizer, items, passages, rebuilt_without, tiny_model

SUBSETS = [(), (0,), (2,), (5,), (1, 3), (2, 4), (0, 5), (1, 2, 3), (3, 4, 5)]


def ppl_oracle(model, needs_bos=False, prefix_reuse=True, **kwargs):
    objective = PerplexityObjective(windows=5, window_tokens=17, seed=0, needs_bos=needs_bos, batch_tokens=34)
    prepared = objective.prepare(CharTokenizer(), passages())
    return LiveOracle(BlockRunner(model), objective, prepared, "test", prefix_reuse=prefix_reuse, **kwargs)


def reference_ppl(model, oracle) -> np.ndarray:
    """Per-window mean NLL from the plain Hugging Face forward of `model`."""
    windows = torch.cat([batch.input_ids for batch in oracle.prepared.batches])
    with torch.no_grad():
        logits = model(windows).logits.double()
    logprobs = logits[:, :-1].log_softmax(-1).gather(2, windows[:, 1:, None])[..., 0]
    return (-logprobs.mean(1)).numpy()


@pytest.mark.parametrize("family, attention", [("llama", "sdpa"), ("qwen2", "sdpa"), ("gemma3", "sdpa"),
                                               ("llama", "eager"), ("gemma3", "eager")])
def test_skipping_blocks_equals_rebuilt_model_on_perplexity(family, attention):
    model = tiny_model(family, attention=attention)
    oracle = ppl_oracle(model, needs_bos=family == "gemma3")
    evaluations = oracle.evaluate(SUBSETS)
    losses = [e.loss for e in evaluations]
    assert len(set(np.round(losses, 6))) == len(SUBSETS), "every subset should change the loss"
    for evaluation in evaluations:
        reference = reference_ppl(rebuilt_without(model, evaluation.subset), oracle)
        np.testing.assert_allclose(evaluation.per_sample, reference, rtol=1e-5)
        assert evaluation.loss == pytest.approx(reference.mean(), rel=1e-5)


def reference_kl(dense, pruned, oracle) -> np.ndarray:
    """Per-window mean KL(p_dense ‖ p_pruned) from plain Hugging Face forwards of both models."""
    windows = torch.cat([batch.input_ids for batch in oracle.prepared.batches])
    with torch.no_grad():
        p = dense(windows).logits[:, :-1].double().log_softmax(-1)
        q = pruned(windows).logits[:, :-1].double().log_softmax(-1)
    return (p.exp() * (p - q)).sum(-1).mean(1).numpy()


@pytest.mark.parametrize("family, attention", [("llama", "sdpa"), ("gemma3", "eager")])
def test_kl_equals_the_divergence_of_the_rebuilt_model_from_the_dense_one(family, attention):
    model = tiny_model(family, attention=attention)
    objective = DivergenceObjective(windows=5, window_tokens=17, seed=0, needs_bos=family == "gemma3",
                                    batch_tokens=34)
    oracle = LiveOracle(BlockRunner(model), objective, objective.prepare(CharTokenizer(), passages()), "kl")
    evaluations = oracle.evaluate(SUBSETS)
    assert evaluations[0].subset == () and evaluations[0].loss == 0.0
    for evaluation in evaluations[1:]:
        reference = reference_kl(model, rebuilt_without(model, evaluation.subset), oracle)
        assert evaluation.loss > 0
        np.testing.assert_allclose(evaluation.per_sample, reference, rtol=1e-4, atol=1e-6)


def reference_margin(model, item) -> float:
    """Mean-over-wrong-options margin from one plain forward per option, no packing."""
    tokenizer = CharTokenizer()
    means = []
    for choice in item["choices"]:
        context = tokenizer(choice["context"])["input_ids"]
        continuation = tokenizer(choice["continuation"])["input_ids"]
        ids = torch.tensor([context + continuation])
        with torch.no_grad():
            logprobs = model(ids).logits[0].double().log_softmax(-1)
        scored = [logprobs[len(context) + j - 1, token] for j, token in enumerate(continuation)]
        means.append(float(torch.stack(scored).mean()))
    gold = means[item["gold"]]
    wrong = [m for j, m in enumerate(means) if j != item["gold"]]
    return gold - float(np.mean(wrong))


@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_packed_margin_equals_one_forward_per_option_on_rebuilt_model(family):
    model = tiny_model(family)
    objective = MarginObjective(needs_bos=False, batch_tokens=80)
    prepared = objective.prepare(CharTokenizer(), items())
    assert len(prepared.batches) > 1, "items should span several batches"
    oracle = LiveOracle(BlockRunner(model), objective, prepared, "test")
    for evaluation in oracle.evaluate([(), (1,), (2, 4)]):
        rebuilt = rebuilt_without(model, evaluation.subset)
        expected = [-reference_margin(rebuilt, item) for item in items()]
        np.testing.assert_allclose(evaluation.per_sample, expected, rtol=1e-5, atol=1e-6)


def test_pudding_sum_weights_each_wrong_option():
    model = tiny_model("llama")
    mean_objective = MarginObjective(needs_bos=False)
    sum_objective = MarginObjective(needs_bos=False, reduce="pudding_sum")
    runner = BlockRunner(model)
    mean_loss = LiveOracle(runner, mean_objective, mean_objective.prepare(CharTokenizer(), items()), "a").evaluate([()])
    sum_loss = LiveOracle(runner, sum_objective, sum_objective.prepare(CharTokenizer(), items()), "b").evaluate([()])
    wrong = np.array([len(item["choices"]) - 1 for item in items()])
    np.testing.assert_allclose(sum_loss[0].per_sample, mean_loss[0].per_sample * wrong, rtol=1e-5)


def test_prefix_reuse_gives_the_same_values_as_full_forwards():
    model = tiny_model("llama")
    reused = ppl_oracle(model).evaluate(SUBSETS)
    full = ppl_oracle(model, prefix_reuse=False).evaluate(SUBSETS)
    for a, b in zip(reused, full):
        np.testing.assert_allclose(a.per_sample, b.per_sample, rtol=1e-6)


def test_prefix_reuse_runs_fewer_blocks():
    model = tiny_model("llama")
    step = [(2, 4, j) for j in (0, 1, 3, 5)]
    reused, full = ppl_oracle(model), ppl_oracle(model, prefix_reuse=False)
    reused.evaluate(step)
    full.evaluate(step)
    assert reused.runner.flops.blocks_run < full.runner.flops.blocks_run


def test_order_and_duplicates_in_a_batch_do_not_change_values():
    model = tiny_model("llama")
    oracle = ppl_oracle(model)
    forward = {e.subset: e.loss for e in oracle.evaluate(SUBSETS)}
    shuffled = SUBSETS[::-1] + SUBSETS[:2]
    again = ppl_oracle(model).evaluate(shuffled)
    assert [e.subset for e in again] == shuffled
    assert all(e.loss == pytest.approx(forward[e.subset], rel=1e-6) for e in again)


def test_dense_cache_budget_of_zero_still_gives_the_same_values():
    model = tiny_model("llama")
    cached = ppl_oracle(model).evaluate(SUBSETS)
    uncached_oracle = ppl_oracle(model, dense_cache_bytes=0)
    uncached = uncached_oracle.evaluate(SUBSETS)
    assert uncached_oracle._dense == {}
    assert [e.loss for e in cached] == pytest.approx([e.loss for e in uncached], rel=1e-6)


def test_counters_count_unique_evaluations_and_cost():
    oracle = ppl_oracle(tiny_model("llama"))
    oracle.evaluate([(1,), (1,), (2,)])
    assert oracle.counters.requests == 3
    assert oracle.counters.evaluations == 2
    assert oracle.counters.cost_s > 0


def test_bos_is_first_in_every_window_only_when_needed():
    with_bos = PerplexityObjective(3, 9, 0, needs_bos=True).prepare(CharTokenizer(), passages())
    without = PerplexityObjective(3, 9, 0, needs_bos=False).prepare(CharTokenizer(), passages())
    assert (with_bos.batches[0].input_ids[:, 0] == CharTokenizer.bos_token_id).all()
    assert (without.batches[0].input_ids != CharTokenizer.bos_token_id).all()
    # Consecutive, non-overlapping windows of one stream: window 1 continues window 0.
    stream = without.batches[0].input_ids.flatten().tolist()
    first = CharTokenizer()(passages()[int(np.random.default_rng(0).permutation(40)[0])])["input_ids"]
    assert stream[: len(first)] == first[: len(stream)]


def test_lm_head_chunk_size_does_not_change_values():
    model = tiny_model("llama")
    chunked = ppl_oracle(model)
    chunked.runner.head_chunk = 7  # several chunks per batch, the last one partial
    whole = ppl_oracle(model)
    whole.runner.head_chunk = 10_000
    # Equal to float32 rounding: a BLAS may pick its GEMM kernel by row count (MKL_CBWR=COMPATIBLE
    # does), so the last bit can depend on the chunk.
    for a, b in zip(chunked.evaluate(SUBSETS), whole.evaluate(SUBSETS)):
        np.testing.assert_allclose(a.per_sample, b.per_sample, rtol=1e-6, atol=0)


def test_a_batch_comes_back_in_chunks_that_a_memo_stores_as_they_finish(tmp_path):
    """An interrupted in-process batch keeps its finished chunks in the table, and the chunks'
    values are those of one evaluation of the whole batch."""
    from oracle.memo import MemoOracle
    from oracle.table import EvaluationTable

    model = tiny_model("llama")
    whole = {e.subset: e.per_sample for e in ppl_oracle(model).evaluate(SUBSETS)}
    chunks = list(ppl_oracle(model).evaluate_iter(SUBSETS + SUBSETS[:2], chunk=4))
    assert [len(chunk) for chunk in chunks] == [4, 4, 1]
    for chunk in chunks:
        for evaluation in chunk:
            np.testing.assert_allclose(evaluation.per_sample, whole[evaluation.subset], rtol=1e-6)

    class Killed(Exception):
        pass

    oracle = ppl_oracle(model)
    chunked = oracle.evaluate_iter
    finished = []

    def killed_after_one_chunk(subsets):
        for chunk in chunked(subsets, chunk=4):
            if finished:
                raise Killed
            finished.extend(evaluation.subset for evaluation in chunk)
            yield chunk

    oracle.evaluate_iter = killed_after_one_chunk
    table = EvaluationTable.create(tmp_path / "t.h5", fingerprint="test", n_blocks=oracle.n_blocks, n_samples=5,
                                   spec={"tiny": "llama"})
    with pytest.raises(Killed):
        MemoOracle(oracle, table).evaluate(SUBSETS)
    assert sorted(table.subsets()) == sorted(finished) and len(finished) == 4
