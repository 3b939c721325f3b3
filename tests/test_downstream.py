"""Downstream evaluation: lm-eval-harness scoring of a pruned model equals one plain forward per
option on the model rebuilt without the blocks; acc and acc_norm from stored values; the
evaluation sets are problems with stable specs; intervals behave."""

import re

import numpy as np
import pytest
import torch

from bench.downstream import (DRAW_RECORD, HEADLINE, SetScores, mean_accuracy_interval, perplexity_interval, record_draw,
                              recorded_draw, wilson_interval)
from oracle.block_runner import BlockRunner
from oracle.errors import BadInput, DataError
from oracle.live import LiveOracle
from oracle.objectives import ChoiceObjective, choice_accuracy
from tests.tiny_models import CharTokenizer, items, rebuilt_without, tiny_model


def reference_logliks(model, item, needs_bos=False) -> list[float]:
    """Σ log p(continuation | context) of every option, one plain forward each, no packing."""
    tokenizer = CharTokenizer()
    sums = []
    for choice in item["choices"]:
        context = ([tokenizer.bos_token_id] if needs_bos else []) + tokenizer(choice["context"])["input_ids"]
        continuation = tokenizer(choice["continuation"])["input_ids"]
        with torch.no_grad():
            logprobs = model(torch.tensor([context + continuation])).logits[0].double().log_softmax(-1)
        sums.append(float(sum(logprobs[len(context) + j - 1, token] for j, token in enumerate(continuation))))
    return sums


@pytest.mark.parametrize("family,needs_bos", [("llama", False), ("gemma3", True)])
def test_choice_values_equal_one_forward_per_option_on_the_rebuilt_model(family, needs_bos):
    model = tiny_model(family)
    objective = ChoiceObjective(needs_bos=needs_bos, batch_tokens=80)
    prepared = objective.prepare(CharTokenizer(), items())
    assert len(prepared.batches) > 1
    oracle = LiveOracle(BlockRunner(model), objective, prepared, "test")
    for evaluation in oracle.evaluate([(), (1,), (2, 4)]):
        rebuilt = rebuilt_without(model, evaluation.subset)
        expected = [-value for item in items() for value in reference_logliks(rebuilt, item, needs_bos)]
        np.testing.assert_allclose(evaluation.per_sample, expected, rtol=1e-5, atol=1e-5)
        assert evaluation.loss == pytest.approx(np.mean(evaluation.per_sample), rel=1e-6)


class SplittingTokenizer(CharTokenizer):
    """Merges ' ' + the next character into one token, so a pair tokenised whole differs from its
    halves tokenised apart (as BPE merges a leading space into the next word)."""

    def __call__(self, text, add_special_tokens=False):
        ids, index = [], 0
        while index < len(text):
            if text[index] == " " and index + 1 < len(text):
                ids.append(60 + ord(text[index + 1]) % 4)
                index += 2
            else:
                ids.append(3 + ord(text[index]) % 50)
                index += 1
        return {"input_ids": ids}


def test_pairs_are_tokenised_whole_as_lm_eval_does():
    tokenizer = SplittingTokenizer()
    item = {"task": "t", "id": "a", "gold": 0, "choices": [{"context": "Answer: ", "continuation": "yes"},
                                                           {"context": "Answer:", "continuation": " no"}]}
    tokens = ChoiceObjective(needs_bos=False).tokenize(tokenizer, [item])[0]
    # The trailing space moves to the continuation: both options score " y…"/" n…" merged tokens.
    assert tokens["contexts"][0] == tokenizer("Answer:")["input_ids"]
    assert tokens["continuations"][0] == tokenizer(" yes")["input_ids"]
    assert tokens["contexts"][1] + tokens["continuations"][1] == tokenizer("Answer: no")["input_ids"]


def test_acc_picks_the_highest_loglik_and_acc_norm_divides_by_characters():
    # Item 1: option 1 wins on the sum, option 0 per character; item 2: a tie goes to the first.
    nll = np.array([6.0, 5.0, 2.0, 2.0])
    acc, acc_norm = choice_accuracy(nll, gold=[0, 0], lengths=[[12, 2], [3, 3]])
    np.testing.assert_array_equal(acc, [0.0, 1.0])
    np.testing.assert_array_equal(acc_norm, [1.0, 1.0])
    with pytest.raises(DataError):
        choice_accuracy(nll[:3], gold=[0, 0], lengths=[[12, 2], [3, 3]])


def test_wilson_interval_contains_the_accuracy_and_narrows_with_items():
    small = wilson_interval(np.array([1, 0] * 10))
    large = wilson_interval(np.array([1, 0] * 500))
    assert small[0] < 0.5 < small[1] and large[0] < 0.5 < large[1]
    assert large[1] - large[0] < small[1] - small[0]
    assert wilson_interval(np.ones(20))[1] == pytest.approx(1.0)


def test_mean_accuracy_interval_is_a_stratified_bootstrap():
    rng = np.random.default_rng(1)
    per_task = {"a": (rng.random(100) < 0.3).astype(float), "b": (rng.random(300) < 0.8).astype(float)}
    low, high = mean_accuracy_interval(per_task)
    assert low < (per_task["a"].mean() + per_task["b"].mean()) / 2 < high
    assert high - low < 0.15
    assert mean_accuracy_interval(per_task) == (low, high), "seeded: the same interval every time"


def test_held_out_perplexity_is_exp_of_the_mean_window_nll():
    nll = np.array([1.0, 3.0, 2.0, 2.5])
    assert SetScores(nll=nll).perplexity == pytest.approx(np.exp(2.125))
    low, high = perplexity_interval(nll)
    assert np.exp(1.0) <= low < np.exp(2.125) < high <= np.exp(3.0)


def test_evaluation_sets_are_problems_with_their_own_fingerprints():
    from problems.model_oracles import sample_count
    from problems.model_problems import DOWNSTREAM_SETS, is_sample_prefix, problem_spec

    specs = {name: problem_spec(f"smollm2-135m/{name}") for name in DOWNSTREAM_SETS}
    assert len({spec["fingerprint"] for spec in specs.values()}) == len(DOWNSTREAM_SETS)
    assert specs["arc_easy"]["objective"] == {"name": "choice", "seed": 0, "items": 100, "task": "arc_easy",
                                              "scoring": "lm-eval-harness 0.4"}
    assert specs["heldout-wiki"]["objective"]["name"] == "ppl"
    assert specs["heldout-wiki"]["data"]["file"] == "ppl-boolq-wiki-validation.jsonl.gz"
    assert problem_spec("smollm2-135m/ppl")["data"]["file"] != specs["heldout-wiki"]["data"]["file"]
    assert sample_count(specs["piqa"]) == 200  # two options per item
    assert sample_count(problem_spec("smollm2-135m/piqa", study_sizes=True)) == 2000
    assert is_sample_prefix(specs["piqa"], problem_spec("smollm2-135m/piqa", items=300))
    assert not is_sample_prefix(problem_spec("smollm2-135m/piqa", items=300), specs["piqa"])


def test_downstream_items_are_drawn_by_seed_and_a_larger_draw_extends_a_smaller_one():
    from problems.calibration_tokens import choice_items
    from problems.model_problems import problem_spec

    small = choice_items(problem_spec("smollm2-135m/arc_challenge", items=20))
    large = choice_items(problem_spec("smollm2-135m/arc_challenge", items=40))
    assert [item["id"] for item in large[:20]] == [item["id"] for item in small]
    assert len({item["id"] for item in large}) == 40


def test_an_interrupted_build_holds_whole_pruned_models(monkeypatch):
    """Models go CHUNK at a time through every set, so stopping mid-build leaves each pruned
    model either on every set or on none; what a table holds is not evaluated again."""
    import io
    from types import SimpleNamespace

    from bench import downstream

    calls: list[tuple[str, tuple]] = []
    stored = {("heldout-wiki", (2,))}

    class FakeProblem:
        def __init__(self, name):
            self.name = name
            self.oracle = SimpleNamespace(table=[s for n, s in stored if n == name])

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def evaluate(self, subsets):
            calls.append((self.name, tuple(subsets)))
            return [SimpleNamespace(cost_s=1.0) for _ in subsets]

    monkeypatch.setattr(downstream, "CHUNK", 2)
    monkeypatch.setattr(downstream, "set_problem", lambda model, name, options, oracle: FakeProblem(name))
    progress = io.StringIO()
    seconds = downstream.evaluate_models("m", [(3, 4), (1,), (2,), (0,)], ["arc_easy", "heldout-wiki"], {},
                                         progress)
    assert calls == [("arc_easy", ((1,), (2,))), ("heldout-wiki", ((1,),)),
                     ("arc_easy", ((0,),)), ("heldout-wiki", ((0,),)),
                     ("arc_easy", ((3, 4),)), ("heldout-wiki", ((3, 4),))]
    assert seconds == {"arc_easy": (4, 4.0), "heldout-wiki": (3, 3.0)}
    assert "m k=1, models 2/3: heldout-wiki 1 new (1 stored)" in progress.getvalue()


def test_a_model_run_is_evaluated_downstream_and_reported(tmp_path, monkeypatch, capsys):
    """`downstream --model DIR` evaluates the answers of `run --model DIR`, and the run's report
    finds those evaluations through the weights its calibration tables name."""
    from bench.cli import main
    from tests.tiny_models import save_tiny_model_directory

    monkeypatch.setenv("DEPTHBENCH_TABLES", str(tmp_path / "tables"))
    directory = tmp_path / "tiny-llama"
    save_tiny_model_directory(directory, n_blocks=4)
    out = tmp_path / "run"
    assert main(["run", "--problem", "smollm2-135m/ppl", "--model", str(directory), "--oracle", "live", "--k", "1",
                 "--solvers", "oneshot,exact", "--seeds", "0", "--windows", "2", "--window-tokens", "16",
                 "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["downstream", str(out)]) == 2
    assert "tiny-llama is the model of a --model run: give its weights with --model" in capsys.readouterr().err
    assert main(["downstream", str(out), "--model", str(directory), "--sets", *HEADLINE, "--items", "20"]) == 0
    assert "tiny-llama: " in capsys.readouterr().out
    assert main(["report", str(out)]) == 0
    summary = (out / "report" / "summary.md").read_text()
    assert "items drawn by seed 0 (20 per task;" in summary, "the report reads the draw that was evaluated"
    # Six accuracies and their mean, each with its interval, for the dense and the pruned model.
    accuracies = r"( \d+\.\d \[\d+, \d+\] \|){7}"
    assert re.search(r"\| tiny-llama \|" + accuracies, summary), summary
    assert re.search(r"\| tiny-llama/ppl k=1 \| exact \| 0 \| \{3\} \| 0\.1109 \|" + accuracies, summary), summary


def test_a_draw_record_names_the_draw_and_a_broken_one_is_refused(tmp_path):
    record_draw(tmp_path, {"items": 20, "device": "cpu"})
    assert recorded_draw(tmp_path) == {"items": 20}
    assert recorded_draw(tmp_path / "elsewhere") == {}
    (tmp_path / DRAW_RECORD).write_text('{"windows": 3}')
    with pytest.raises(BadInput, match="not a downstream draw record"):
        recorded_draw(tmp_path)
