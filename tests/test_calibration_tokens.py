"""Calibration token ids. The default problems read theirs from shipped token files (a tokenizer
library upgrade cannot change their losses) and their fingerprints cover those files; every other
problem stores the digest of its ids in its table, and every live path refuses, in one line and
before evaluating anything, a table whose digest differs. The real tokenizer is checked in
test_model_integration; here the shipped files and tiny models do."""

import copy
import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import oracle.model_loading
from bench.cli import main
from oracle.errors import DataError, TokenMismatch
from oracle.table import EvaluationTable
from problems import calibration_tokens, registry
from problems.calibration_tokens import (
    build_token_file,
    encode_token_file,
    prepare_calibration,
    read_token_file,
    refuse_other_tokens,
    token_file_name,
)
from problems.model_problems import problem_spec, spec_fingerprint
from problems.table_directories import SHIPPED_TABLES
from tests.tiny_models import CharTokenizer, save_char_tokenizer, save_tiny_model_directory

DEFAULTS = ("smollm2-135m/ppl", "smollm2-135m/margin", "gemma3-270m/ppl", "gemma3-270m/margin")
# What the default fingerprints were before the token files: the spec without them still gives it.
FINGERPRINT_WITHOUT_TOKEN_FILE = {"smollm2-135m/ppl": "e83eb213fa5ba7bf", "smollm2-135m/margin": "42239ca33ffa52a2",
                                  "gemma3-270m/ppl": "c7dfd0ba318641d1", "gemma3-270m/margin": "58e4dd85e98a87ce"}
TABLE_TOKEN_DIGEST = {"smollm2-135m/ppl": "6b9a141e129eec0f", "smollm2-135m/margin": "c1d6716f5a237990",
                      "gemma3-270m/ppl": "818b241f545b7940", "gemma3-270m/margin": "b1894a481c638ec0"}


def shipped_table(name: str) -> Path:
    return SHIPPED_TABLES / f"{name.replace('/', '__')}__{problem_spec(name)['fingerprint']}.h5"


def without_tokens(spec: dict) -> dict:
    spec = copy.deepcopy(spec)
    del spec["data"]["tokens"]
    return spec


@pytest.fixture
def no_tokenizer(monkeypatch):
    """Any attempt to tokenise fails: what is computed must come from the shipped ids."""

    def refuse(source):
        raise AssertionError("the tokenizer was loaded")

    monkeypatch.setattr(oracle.model_loading, "load_tokenizer", refuse)


@pytest.mark.parametrize("name", DEFAULTS)
def test_default_problems_name_their_token_file_and_the_fingerprint_covers_it(name):
    spec = problem_spec(name)
    tokens = spec["data"]["tokens"]
    path = calibration_tokens.DATA_DIR / tokens["file"]
    assert tokens["file"] == token_file_name(*name.split("/"))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == tokens["sha256"]
    assert path.stat().st_size < 20_000
    assert spec_fingerprint(without_tokens(spec)) == FINGERPRINT_WITHOUT_TOKEN_FILE[name] != spec["fingerprint"]


@pytest.mark.parametrize("name", DEFAULTS)
def test_token_file_bytes_follow_from_their_content(name):
    path = calibration_tokens.DATA_DIR / problem_spec(name)["data"]["tokens"]["file"]
    assert encode_token_file(read_token_file(path)) == path.read_bytes()


@pytest.mark.parametrize("name", DEFAULTS)
def test_the_shipped_ids_are_those_the_shipped_tables_were_built_on(name, no_tokenizer):
    _, prepared = prepare_calibration(problem_spec(name))
    assert prepared.token_digest.startswith(TABLE_TOKEN_DIGEST[name])
    with EvaluationTable.open(shipped_table(name), mode="r") as table:
        assert table.attribute("token_digest") == prepared.token_digest
        assert refuse_other_tokens(table, prepared.token_digest)


def test_a_prefix_of_the_shipped_ids_serves_smaller_problems_and_larger_ones_tokenise(no_tokenizer):
    ppl, margin = (problem_spec(name)["data"]["tokens"] for name in DEFAULTS[:2])
    assert problem_spec("smollm2-135m/ppl", windows=4)["data"]["tokens"] == ppl
    assert problem_spec("smollm2-135m/ppl", windows=32, window_tokens=64)["data"]["tokens"] == ppl
    assert problem_spec("smollm2-135m/margin", items=8)["data"]["tokens"] == margin
    assert problem_spec("smollm2-135m/margin", margin_reduce="pudding_sum")["data"]["tokens"] == margin
    for name, sizes in [("smollm2-135m/ppl", {"windows": 17}), ("smollm2-135m/ppl", {"study_sizes": True}),
                        ("smollm2-135m/ppl", {"bos": True}), ("smollm2-135m/margin", {"items": 33}),
                        ("smollm2-135m/margin", {"study_sizes": True}), ("gemma3-270m/ppl", {"study_sizes": True}),
                        ("gemma3-270m/margin", {"items": 33})]:
        assert "tokens" not in problem_spec(name, **sizes)["data"], (name, sizes)

    full = prepare_calibration(problem_spec("smollm2-135m/ppl"))[1]
    four = prepare_calibration(problem_spec("smollm2-135m/ppl", windows=4))[1]
    assert torch.equal(torch.cat([b.input_ids for b in four.batches]),
                       torch.cat([b.input_ids for b in full.batches])[:4])
    eight = prepare_calibration(problem_spec("smollm2-135m/margin", items=8))[1]
    assert eight.n_samples == 8


def test_the_fingerprint_changes_when_the_token_file_changes(tmp_path, monkeypatch):
    name = "smollm2-135m/ppl"
    original = problem_spec(name)
    file = original["data"]["tokens"]["file"]
    shutil.copy(calibration_tokens.DATA_DIR / file, tmp_path / file)
    monkeypatch.setattr(calibration_tokens, "DATA_DIR", tmp_path)
    assert problem_spec(name) == original  # the same bytes: the same problem

    content = read_token_file(tmp_path / file)
    content["stream"][5] += 1
    (tmp_path / file).write_bytes(encode_token_file(content))
    changed = problem_spec(name)
    assert changed["data"]["tokens"]["sha256"] != original["data"]["tokens"]["sha256"]
    assert changed["fingerprint"] != original["fingerprint"]
    # A spec (a table's) naming the file as it was is refused rather than served other ids.
    with pytest.raises(DataError, match="sha256"):
        prepare_calibration(original)


def _as_built_before_the_token_file(name: str, directory: Path) -> Path:
    """A copy of a shipped table under the spec and fingerprint its problem had before its token
    file was shipped (what a table built then holds)."""
    spec = without_tokens(problem_spec(name))
    spec["fingerprint"] = FINGERPRINT_WITHOUT_TOKEN_FILE[name]
    path = directory / f"{name.replace('/', '__')}__{spec['fingerprint']}.h5"
    with EvaluationTable.open(shipped_table(name), mode="r") as table:
        table.write_rekeyed(path, spec["fingerprint"], spec)
    return path


def test_rekey_gives_a_table_built_before_the_token_file_its_problems_name_and_rows(tmp_path, capsys, no_tokenizer):
    name = "gemma3-270m/margin"
    old = _as_built_before_the_token_file(name, tmp_path)
    assert main(["table", "rekey", str(old)]) == 0
    assert capsys.readouterr().out.startswith(f"{old} → {tmp_path / shipped_table(name).name} (")
    with EvaluationTable.open(tmp_path / shipped_table(name).name, mode="r") as rekeyed, \
            EvaluationTable.open(shipped_table(name), mode="r") as shipped:
        assert (rekeyed.fingerprint, rekeyed.spec) == (shipped.fingerprint, shipped.spec)
        for column, values in shipped.to_arrays().items():
            np.testing.assert_array_equal(rekeyed.to_arrays()[column], values, err_msg=column)
        assert rekeyed.attribute("token_digest") == shipped.attribute("token_digest")
    assert main(["table", "rekey", str(old)]) == 2
    assert "exists already" in capsys.readouterr().err


def test_rekey_refuses_other_ids_in_one_line_and_writes_nothing(tmp_path, capsys, no_tokenizer):
    old = _as_built_before_the_token_file("smollm2-135m/margin", tmp_path)
    with EvaluationTable.open(old, mode="a") as table:
        table.set_attribute("token_digest", "0" * 64)
    assert main(["table", "rekey", str(old)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds other ids" in err, err
    assert main(["table", "rekey", str(shipped_table("smollm2-135m/margin"))]) == 2
    assert "already names token file" in capsys.readouterr().err
    assert sorted(path.name for path in tmp_path.iterdir()) == [old.name]


@pytest.mark.parametrize("objective, sizes", [("ppl", {"windows": 3, "window_tokens": 20}), ("margin", {"items": 12})])
def test_shipped_ids_give_the_batches_tokenising_gives(tmp_path, monkeypatch, objective, sizes):
    """A token file made with a tokenizer, read back: the same batches, hence the same losses."""
    name = f"smollm2-135m/{objective}"
    content = build_token_file("smollm2-135m", objective, tokenizer=CharTokenizer())
    (tmp_path / token_file_name("smollm2-135m", objective)).write_bytes(encode_token_file(content))
    monkeypatch.setattr(calibration_tokens, "DATA_DIR", tmp_path)
    spec = problem_spec(name, **sizes)
    assert spec["data"]["tokens"]["file"] == token_file_name("smollm2-135m", objective)
    _, shipped = prepare_calibration(spec)
    _, tokenised = prepare_calibration(without_tokens(spec), tokenizer=CharTokenizer())
    assert shipped.token_digest == tokenised.token_digest
    assert len(shipped.batches) == len(tokenised.batches)
    for a, b in zip(shipped.batches, tokenised.batches):
        assert a.plain_causal == b.plain_causal
        assert all(torch.equal(getattr(a, field), getattr(b, field)) for field in vars(a) if field != "plain_causal")


# ---- other problems: the token digest, checked before anything is evaluated ----------------------------


@pytest.fixture
def tiny_directory(tmp_path, monkeypatch):
    """A tiny Llama with a character tokenizer, as `--model DIR`; tables under tmp_path/tables."""
    monkeypatch.setenv("DEPTHBENCH_TABLES", str(tmp_path / "tables"))
    directory = tmp_path / "tiny-llama"
    save_tiny_model_directory(directory, n_blocks=4)
    return directory


def assert_refused_for_tokens(code, out, err, stored_digest):
    assert code == 2 and out == "", out
    # `run` reports its plan on stderr first; the error is one line, the last.
    errors = [line for line in err.strip().splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and err.strip().splitlines()[-1] == errors[0], err
    found = re.search(r"token digest ([0-9a-f]{16}) here, ([0-9a-f]{16}) in the table", errors[0])
    assert found and found.group(2) == stored_digest[:16] and found.group(1) != found.group(2), errors[0]
    assert "transformers" in errors[0] and "tokenizers" in errors[0]


def test_every_live_path_refuses_a_table_made_on_other_tokens_in_one_line(tiny_directory, tmp_path, capsys,
                                                                         monkeypatch):
    sizes = ["--problem", "smollm2-135m/ppl", "--model", str(tiny_directory), "--windows", "2",
             "--window-tokens", "16"]
    assert main(["evaluate", *sizes, "--subset", "1", "--json"]) == 0
    first = capsys.readouterr().out
    (path,) = (tmp_path / "tables").glob("*.h5")
    with EvaluationTable.open(path, mode="r") as table:
        stored, rows = table.attribute("token_digest"), len(table)
        assert set(table.attribute("token_libraries")) == {"transformers", "tokenizers"}
    assert rows == 2

    # Same weights (same fingerprint), but the tokenizer now gives other ids: as after an upgrade.
    save_char_tokenizer(tiny_directory, shift=1)
    monkeypatch.setitem(registry._exact, "tiny-llama/ppl", lambda name, **options: registry.get(
        "smollm2-135m/ppl", model=str(tiny_directory), windows=2, window_tokens=16, **options))
    monkeypatch.setitem(registry._block_counts, "tiny-llama/ppl", 4)
    for argv in (
        ["evaluate", *sizes, "--subset", "2"],
        ["evaluate", *sizes, "--oracle", "replay", "--on-miss", "live", "--subset", "2"],
        ["run", "--problem", "tiny-llama/ppl", "--oracle", "live", "--k", "1", "--solvers", "oneshot",
         "--seeds", "0", "--out", str(tmp_path / "run")],
        ["table", "verify", str(path), "--rows", "2"],
    ):
        code = main(argv)
        captured = capsys.readouterr()
        assert_refused_for_tokens(code, captured.out, captured.err, stored)
    with EvaluationTable.open(path, mode="r") as table:
        assert len(table) == rows and table.attribute("token_digest") == stored

    # A replay needs no tokens: it still answers from the table.
    assert main(["evaluate", *sizes, "--oracle", "replay", "--subset", "1", "--json"]) == 0
    replayed = json.loads(capsys.readouterr().out)
    assert replayed["source"] == "table" and replayed["loss"] == json.loads(first)["loss"]

    # The tokenizer as it was: accepted again.
    save_char_tokenizer(tiny_directory, shift=0)
    assert main(["evaluate", *sizes, "--subset", "2", "--json"]) == 0


def test_the_refusal_names_the_tables_recorded_versions_or_its_environment():
    class Table:
        path = "t.h5"

        def __init__(self, attributes):
            self.attributes = attributes

        def attribute(self, name):
            return self.attributes[name]

    digest = "a" * 64
    assert not refuse_other_tokens(Table({}), digest)
    assert refuse_other_tokens(Table({"token_digest": digest}), digest)
    with pytest.raises(TokenMismatch, match=r"the table's: transformers 5\.23\.0, tokenizers not recorded"):
        refuse_other_tokens(Table({"token_digest": "b" * 64, "environment": {"transformers": "5.23.0"}}), digest)
    with pytest.raises(TokenMismatch, match=r"token digest a{16} here, b{16} in the table.*transformers 4\.0, tokenizers 0\.1"):
        refuse_other_tokens(Table({"token_digest": "b" * 64, "token_libraries": {"transformers": "4.0", "tokenizers": "0.1"},
                                   "environment": {"transformers": "5.23.0"}}), digest)
