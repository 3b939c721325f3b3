"""The tables shipped in surrogate_tables/: each matches its problem in the registry, stays
small, and is described by an up-to-date generated datasheet. (The default grid's zero-miss
replay is tested in test_runner.)"""

import math

import pytest

import problems
import solvers
from bench.datasheet import render
from oracle.table import EvaluationTable
from problems.table_directories import SHIPPED_TABLES
from problems.model_problems import problem_spec

TABLES = sorted(SHIPPED_TABLES.glob("*.h5"))


def test_the_default_problems_have_tables():
    names = set()
    for path in TABLES:
        with EvaluationTable.open(path, mode="r") as table:
            names.add(table.spec["name"])
    assert {"smollm2-135m/ppl", "smollm2-135m/margin"} <= names


@pytest.mark.parametrize("path", TABLES, ids=lambda path: path.name)
def test_shipped_table_matches_the_registry_and_stays_small(path):
    with EvaluationTable.open(path, mode="r") as table:
        spec = problem_spec(table.spec["name"])
        assert table.fingerprint == spec["fingerprint"] == table.spec["fingerprint"]
        assert table.spec == spec
        assert path.name == f"{spec['name'].replace('/', '__')}__{spec['fingerprint']}.h5"
        coverage = table.coverage()
        n = table.n_blocks
        assert coverage["singles"]["present"] == n and coverage["pairs"]["present"] == n * (n - 1) // 2
    assert path.stat().st_size < 5_000_000


def test_datasheet_describes_the_shipped_tables_as_they_are():
    """Compared on what cannot vary between machines (the surrogate's error figures may differ in
    the last digit): the generated text's lines about tables, rows and best subsets."""
    shipped = (SHIPPED_TABLES / "README.md").read_text().splitlines()
    fresh = render(SHIPPED_TABLES).splitlines()
    stable = [line for line in fresh if not line.startswith("Surrogate")]
    assert [line for line in shipped if not line.startswith("Surrogate")] == stable, \
        "surrogate_tables/README.md is stale: run `python -m bench table datasheet`"
    assert sum(line.startswith("Surrogate") for line in shipped) == len(TABLES)


@pytest.mark.parametrize("path", TABLES, ids=lambda path: path.name)
@pytest.mark.parametrize("solver, config, ks", [
    ("oneshot", {"criterion": "cosine"}, [4]),
    ("oneshot", {"criterion": "angular"}, range(1, 9)),
    ("ga", {"criterion": "angular"}, [4]),  # budget 1: the stored prior, not a ga run
    ("fbs", {"mode": "mi"}, [4, 6, 8]),
    ("oneshot", {"criterion": "cosine", "iterative": True}, [4, 6, 8]),
    ("oneshot", {"criterion": "angular", "iterative": True}, [4, 6, 8]),
], ids=lambda value: str(value) if isinstance(value, (str, dict)) else None)
def test_hidden_state_criteria_replay_from_the_shipped_tables(path, solver, config, ks):
    with EvaluationTable.open(path, mode="r") as table:
        name = table.spec["name"]
    with problems.get(name, oracle="replay", table=path) as problem:
        for k in ks:
            result = solvers.get(solver, **config).solve(problem, k, budget=1 if solver == "ga" else None)
            assert len(result.subset) == k and math.isfinite(result.loss)
