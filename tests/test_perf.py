"""`python -m bench perf` on a CPU: every figure printed, on a random-weight model of a named
shape (a tiny one here; the study's shapes are measured the same way on a GPU)."""

import re

import pytest

from bench import perf
from bench.cli import main


@pytest.fixture
def tiny_shape(monkeypatch):
    shape = ("LlamaConfig", dict(vocab_size=49_152, hidden_size=32, intermediate_size=64, num_hidden_layers=5,
                                 num_attention_heads=4, num_key_value_heads=2))
    monkeypatch.setitem(perf.SHAPES, "tiny", shape)
    monkeypatch.setattr(perf, "MEASURE_S", 0.1)


@pytest.mark.parametrize("problem", ["smollm2-135m/ppl", "smollm2-135m/margin"])
def test_perf_measures_a_random_model_of_a_named_shape(capsys, tiny_shape, problem):
    code = main(["perf", "--problem", problem, "--shape", "tiny", "--base", "1", "--step-subsets", "3",
                 "--batch-tokens", "1024"])
    out = capsys.readouterr().out
    assert code == 0
    assert "random weights of the tiny shape: 5 blocks" in out and "batches of 1,024 tokens" in out
    assert "greedy-step workload: 3 subsets" in out
    assert re.search(r"prefix-reuse speed-up \d+\.\d\dx; max \|ΔL\| between the paths 0\.00e\+00", out)
    assert re.search(r"MFU \d+% of a plain 2048² float32 matmul", out)
    assert "lookups/s" in out


@pytest.mark.parametrize("argv, fragment", [
    (["--shape", "gpt5"], "unknown --shape 'gpt5'"),
    (["--dtype", "bfloat16"], "not supported on cpu"),
    (["--batch-tokens", "0"], "--batch-tokens must be at least 1"),
    (["--step-subsets", "0"], "--step-subsets must be at least 1"),
])
def test_perf_bad_input_is_one_line(capsys, argv, fragment):
    assert main(["perf", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0]
