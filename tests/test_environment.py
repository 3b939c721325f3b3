"""The environment recorded with table rows and runs names every library a value or a solver's
path depends on, the machine and the BLAS, without importing torch for it."""

import json
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from bench.runner import ENVIRONMENT, write_environment
from oracle.environment import LIBRARIES, NUMERIC_VARIABLES, current_environment
from oracle.evaluation import Evaluation
from oracle.table import EvaluationTable
from problems.table_directories import SHIPPED_TABLES

REPOSITORY = Path(__file__).resolve().parent.parent
NAMED = ("torch", "transformers", "tokenizers", "numpy", "scipy", "scikit-learn", "botorch", "gpytorch", "pyomo",
         "highspy", "h5py")


def installed(distribution):
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def test_the_environment_names_every_library_the_machine_and_the_blas(monkeypatch):
    for name in NUMERIC_VARIABLES:  # the suite itself may run under any numeric setting
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    environment = current_environment({"device": "cpu"})
    assert set(NAMED) <= set(LIBRARIES)
    assert {library: environment[library] for library in NAMED} == {library: installed(library) for library in NAMED}
    assert {"python", "platform", "machine", "processor", "cpu_count"} <= set(environment)
    blas = environment["blas"]
    assert blas["numpy"]["blas"]["name"] and blas["numpy"]["lapack"]["name"]
    assert any(library["user_api"] == "blas" and library["internal_api"] and library["num_threads"] >= 1
               for library in blas["loaded"])
    assert environment["numeric_variables"] == {"OMP_NUM_THREADS": "1"} and environment["device"] == "cpu"
    assert json.loads(json.dumps(environment)) == environment == current_environment({"device": "cpu"})


def test_torch_is_described_only_when_already_loaded():
    script = ("import sys, json; from oracle.environment import current_environment; "
              "before = current_environment()['blas']['torch']; loaded = 'torch' in sys.modules; import torch; "
              "print(json.dumps([before, loaded, current_environment()['blas']['torch']]))")
    output = subprocess.run([sys.executable, "-c", script], cwd=REPOSITORY, capture_output=True, text=True, check=True)
    before, loaded, after = json.loads(output.stdout)
    assert before is None and not loaded
    assert after["blas_info"] and after["num_threads"] >= 1 and isinstance(after["mkl"], bool)


def test_new_rows_get_a_new_environment_and_old_rows_keep_theirs(tmp_path):
    (shipped,) = SHIPPED_TABLES.glob("smollm2-135m__ppl__*.h5")
    path = shutil.copy2(shipped, tmp_path / shipped.name)
    with EvaluationTable.open(path) as table:
        old, old_rows = table.environments, table.to_arrays()["environment"]
    with EvaluationTable.open(path, mode="a", environment={"device": "cpu"}) as table:
        table.append([Evaluation(tuple(range(20)), 9.0, None, 1.0, "live")])
        table.append([Evaluation(tuple(range(21)), 9.5, None, 1.0, "live")])
    with EvaluationTable.open(path) as table:
        environments, rows = table.environments, table.to_arrays()["environment"]
    assert environments[: len(old)] == old and len(environments) == len(old) + 1
    np.testing.assert_array_equal(rows[: len(old_rows)], old_rows)
    assert rows[-2:].tolist() == [len(old)] * 2
    assert environments[-1]["blas"]["loaded"] and environments[-1]["scikit-learn"] == installed("scikit-learn")


def test_a_run_records_the_same_environment(tmp_path):
    write_environment(tmp_path, {"p": {"fingerprint": "f", "path": None}}, ["python", "-m", "bench", "run"])
    recorded = json.loads((tmp_path / ENVIRONMENT).read_text())
    assert {key: recorded[key] for key in current_environment()} == json.loads(json.dumps(current_environment()))
    assert recorded["tables"] == {"p": {"fingerprint": "f", "path": None}}
