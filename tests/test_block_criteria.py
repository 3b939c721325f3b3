"""Hidden-state criteria (cosine Block Influence, angular distance) on tiny random models: equal to
a recomputation from the plain Hugging Face forward, blind to padding, stored in and replayed
from tables, and used by one-shot; and the accuracy-based relevance of margin problems."""

import numpy as np
import pytest
import torch

import solvers
from oracle.block_runner import BlockRunner
from oracle.errors import BadInput
from oracle.live import LiveOracle
from oracle.memo import MemoOracle, ReplayOracle
from oracle.objectives import MarginObjective
from oracle.table import EvaluationTable
from problems.model_oracles import DeferredLiveOracle
from problems.problem import Problem
from tests.test_live_oracle import ppl_oracle
from tests.tiny_models import CharTokenizer, items, rebuilt_without, tiny_model

N_BLOCKS = 6


def reference_states(model, oracle) -> np.ndarray:
    """h_0 … h_N in float64 from the plain forward: HF's hidden states for h_0 … h_{N−1} and the
    input of the final norm for h_N (HF's last hidden state is after the norm)."""
    windows = torch.cat([batch.input_ids for batch in oracle.prepared.batches])
    captured = {}
    hook = model.model.norm.register_forward_pre_hook(lambda module, args: captured.update(pre_norm=args[0]))
    try:
        with torch.no_grad():
            hidden = model(windows, output_hidden_states=True).hidden_states
    finally:
        hook.remove()
    states = list(hidden[:-1]) + [captured["pre_norm"]]
    return torch.stack(states).double().numpy()  # [N+1, windows, length, d]


def cosine(a, b):
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_cosine_and_angular_equal_a_recomputation_from_the_hf_forward(family):
    model = tiny_model(family, N_BLOCKS)
    oracle = ppl_oracle(model, needs_bos=family == "gemma3")
    states = reference_states(model, oracle)
    expected_cosine = [np.mean(1 - cosine(states[i], states[i + 1])) for i in range(N_BLOCKS)]
    last = states[:, :, -1]
    expected_angular = [np.mean(np.arccos(cosine(last[i], last[i + 1])) / np.pi) for i in range(N_BLOCKS)]
    np.testing.assert_allclose(oracle.block_scores("cosine"), expected_cosine, rtol=1e-4)
    np.testing.assert_allclose(oracle.block_scores("angular"), expected_angular, rtol=1e-4)
    for length in (2, 4):
        expected = [np.mean(np.arccos(cosine(last[s], last[s + length])) / np.pi)
                    for s in range(N_BLOCKS - length + 1)]
        np.testing.assert_allclose(oracle.run_distances(length), expected, rtol=1e-4)
    assert oracle.counters.evaluations == 0


def margin_oracle(model, batch_tokens):
    objective = MarginObjective(needs_bos=False, batch_tokens=batch_tokens)
    return LiveOracle(BlockRunner(model), objective, objective.prepare(CharTokenizer(), items()), "test")


def test_scores_ignore_padding():
    model = tiny_model("llama", N_BLOCKS)
    padded = margin_oracle(model, batch_tokens=512)
    alone = margin_oracle(model, batch_tokens=1)
    assert any((batch.segment_ids == -1).any() for batch in padded._batches)
    assert all((batch.segment_ids >= 0).all() for batch in alone._batches)
    for criterion in ("cosine", "angular"):
        np.testing.assert_allclose(padded.block_scores(criterion), alone.block_scores(criterion), rtol=1e-5)
    np.testing.assert_allclose(padded.run_distances(3), alone.run_distances(3), rtol=1e-5)


def test_unknown_criterion_and_run_length_are_refused():
    oracle = ppl_oracle(tiny_model("llama", N_BLOCKS))
    with pytest.raises(BadInput, match="criterion 'bogus'"):
        oracle.block_scores("bogus")
    with pytest.raises(BadInput, match="run length"):
        oracle.run_distances(N_BLOCKS + 1)


def new_table(path, oracle):
    return EvaluationTable.create(path, fingerprint=oracle.fingerprint, n_blocks=N_BLOCKS,
                                  n_samples=oracle.n_samples, spec={"test": 1})


def test_a_table_stores_the_scores_and_a_strict_replay_serves_them_without_the_model(tmp_path):
    live = ppl_oracle(tiny_model("llama", N_BLOCKS))
    path = tmp_path / "scores.h5"
    with new_table(path, live) as table:
        memo = MemoOracle(live, table)
        cosine_scores = memo.block_scores("cosine")
        distances = memo.run_distances(2)
        assert table.info()["attributes"]["block_scores/cosine"] == pytest.approx(cosine_scores.tolist())
        assert table.info()["attributes"]["run_distances/2"] == pytest.approx(distances.tolist())
    with EvaluationTable.open(path) as table:
        replay = ReplayOracle(table)
        np.testing.assert_array_equal(replay.block_scores("cosine"), cosine_scores)
        np.testing.assert_array_equal(replay.run_distances(2), distances)
        with pytest.raises(BadInput, match=f"criterion 'angular' is not stored in table {path} and no live model"):
            replay.block_scores("angular")
        with pytest.raises(BadInput, match="run distances of length 3 is not stored"):
            replay.run_distances(3)


def test_a_replay_with_live_misses_computes_through_the_deferred_oracle_and_stores(tmp_path):
    live = ppl_oracle(tiny_model("llama", N_BLOCKS))
    deferred = DeferredLiveOracle({"fingerprint": live.fingerprint}, "cpu", N_BLOCKS)
    deferred._live = live
    path = tmp_path / "scores.h5"
    new_table(path, live).close()
    with EvaluationTable.open(path, mode="a") as table:
        angular = ReplayOracle(table, on_miss="live", live=deferred).block_scores("angular")
        np.testing.assert_allclose(angular, live.block_scores("angular"))
    with EvaluationTable.open(path) as table:
        np.testing.assert_array_equal(ReplayOracle(table).block_scores("angular"), angular)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_oneshot_angular_removes_the_contiguous_run_of_minimal_distance(tmp_path, k):
    live = ppl_oracle(tiny_model("llama", N_BLOCKS))
    with new_table(tmp_path / "oneshot.h5", live) as table:
        problem = Problem(name="tiny", n_blocks=N_BLOCKS, oracle=MemoOracle(live, table), description="tiny")
        result = solvers.get("oneshot", criterion="angular").solve(problem, k)
        start = int(np.argmin(live.run_distances(k)))
        assert result.subset == tuple(range(start, start + k))
        assert result.n_evaluations == 1


def test_oneshot_cosine_removes_the_k_lowest_block_influences(tmp_path):
    live = ppl_oracle(tiny_model("llama", N_BLOCKS))
    with new_table(tmp_path / "oneshot.h5", live) as table:
        problem = Problem(name="tiny", n_blocks=N_BLOCKS, oracle=MemoOracle(live, table), description="tiny")
        result = solvers.get("oneshot", criterion="cosine").solve(problem, 2)
        assert result.subset == tuple(sorted(np.argsort(live.block_scores("cosine"), kind="stable")[:2]))


@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_criteria_of_a_pruned_model_equal_those_of_the_model_rebuilt_without_its_blocks(family):
    model = tiny_model(family, N_BLOCKS)
    oracle = ppl_oracle(model, needs_bos=family == "gemma3")
    dense = oracle.criteria_without(())
    for criterion in ("cosine", "angular"):
        np.testing.assert_array_equal(dense[criterion], oracle.block_scores(criterion))
    for removed in [(0,), (2, 3), (1, 5)]:
        kept = [block for block in range(N_BLOCKS) if block not in removed]
        rebuilt = ppl_oracle(rebuilt_without(model, removed), needs_bos=family == "gemma3")
        pruned = oracle.criteria_without(removed)
        for criterion in ("cosine", "angular"):
            assert np.isnan(pruned[criterion][list(removed)]).all()
            np.testing.assert_allclose(pruned[criterion][kept], rebuilt.block_scores(criterion), rtol=1e-4)
    assert oracle.counters.evaluations == 0


@pytest.mark.parametrize("criterion", ["cosine", "angular"])
def test_removal_order_takes_the_lowest_score_of_each_rebuilt_model_in_turn(criterion):
    model = tiny_model("llama", N_BLOCKS)
    order = ppl_oracle(model).removal_order(criterion)
    assert sorted(order) == sorted(set(order)) and len(order) == N_BLOCKS - 1
    for step in range(N_BLOCKS - 1):
        removed = sorted(int(block) for block in order[:step])
        kept = [block for block in range(N_BLOCKS) if block not in removed]
        scores = ppl_oracle(rebuilt_without(model, removed)).block_scores(criterion)
        assert order[step] == kept[int(np.argmin(scores))]


def test_iterative_oneshot_removes_the_first_k_of_the_stored_order_and_replays_it(tmp_path):
    live = ppl_oracle(tiny_model("llama", N_BLOCKS))
    path = tmp_path / "iterative.h5"
    with new_table(path, live) as table:
        problem = Problem(name="tiny", n_blocks=N_BLOCKS, oracle=MemoOracle(live, table), description="tiny")
        result = solvers.get("oneshot", criterion="cosine", iterative=True).solve(problem, 3)
        order = live.removal_order("cosine")
        assert result.subset == tuple(sorted(int(block) for block in order[:3])) and result.n_evaluations == 1
    with EvaluationTable.open(path) as table:
        problem = Problem(name="tiny", n_blocks=N_BLOCKS, oracle=ReplayOracle(table), description="tiny")
        assert solvers.get("oneshot", criterion="cosine", iterative=True).solve(problem, 3).subset == result.subset
        with pytest.raises(BadInput, match="removal order 'angular' is not stored"):
            solvers.get("oneshot", criterion="angular", iterative=True).solve(problem, 3)
    with pytest.raises(BadInput, match="iterative removal_loss is the greedy solver"):
        solvers.get("oneshot", iterative=True)


def reference_accuracy(model) -> float:
    """Fraction of items whose gold option has the highest mean continuation log-prob, from one
    plain forward per option."""
    tokenizer = CharTokenizer()
    correct = []
    for item in items():
        means = []
        for choice in item["choices"]:
            context = tokenizer(choice["context"])["input_ids"]
            continuation = tokenizer(choice["continuation"])["input_ids"]
            with torch.no_grad():
                logprobs = model(torch.tensor([context + continuation])).logits[0].double().log_softmax(-1)
            means.append(float(np.mean([logprobs[len(context) + j - 1, t] for j, t in enumerate(continuation)])))
        gold = means.pop(item["gold"])
        correct.append(gold > max(means))
    return float(np.mean(correct))


def test_accuracy_relevance_equals_a_recomputation_on_rebuilt_models():
    n_blocks = 4
    model = tiny_model("llama", n_blocks)
    oracle = margin_oracle(model, batch_tokens=512)
    relevance = oracle.block_scores("accuracy")
    chance = np.mean([1 / len(item["choices"]) for item in items()])
    full = reference_accuracy(model)
    assert full > chance
    singles = np.array([reference_accuracy(rebuilt_without(model, (block,))) for block in range(n_blocks)])
    assert len(set(singles)) > 1, "removals should differ in accuracy"
    np.testing.assert_allclose(relevance, 1 - np.maximum(singles - chance, 0) / (full - chance))
    assert oracle.counters.evaluations == n_blocks + 1


def test_accuracy_needs_a_multiple_choice_objective():
    with pytest.raises(BadInput, match="criterion 'accuracy' needs a multiple-choice"):
        ppl_oracle(tiny_model("llama", N_BLOCKS)).block_scores("accuracy")


def test_segment_information_is_the_gaussian_mi_of_the_reference_states():
    from oracle.mutual_information import gaussian_mutual_information

    model = tiny_model("llama")
    oracle = ppl_oracle(model)
    information = oracle.segment_information()
    states = reference_states(model, oracle).reshape(N_BLOCKS + 1, -1, 32)
    assert information.shape == (N_BLOCKS + 1, N_BLOCKS + 1)
    np.testing.assert_allclose(information, information.T)
    for start, stop in [(0, 1), (2, 5), (1, 6)]:
        expected = gaussian_mutual_information(states[start], states[stop])
        assert information[start, stop] == pytest.approx(expected, rel=1e-4)


def test_fbs_mi_mode_runs_on_a_live_model_with_one_evaluation_and_replays_from_the_table(tmp_path):
    oracle = ppl_oracle(tiny_model("llama"))
    path = tmp_path / "mi.h5"
    table = EvaluationTable.create(path, fingerprint="test", n_blocks=N_BLOCKS, n_samples=oracle.n_samples, spec={})
    live = Problem(name="tiny", n_blocks=N_BLOCKS, oracle=MemoOracle(oracle, table), description="tiny")
    result = solvers.get("fbs", mode="mi").solve(live, 2)
    assert result.n_evaluations == 1 and len(result.subset) == 2
    table.close()
    with EvaluationTable.open(path) as stored:
        replayed = Problem(name="tiny", n_blocks=N_BLOCKS, oracle=ReplayOracle(stored), description="tiny")
        again = solvers.get("fbs", mode="mi").solve(replayed, 2)
    assert again.subset == result.subset and again.loss == result.loss
