"""A replay is a function of the table: bo and cbo, the solvers that compare numbers they compute
themselves (a GP's acquisition, a MILP's energies), request the same subsets in the same order
under other thread counts and BLAS code paths, and every request of the default grid is in the
shipped tables.

Each numeric setting runs in its own process (MKL and OpenMP read these variables once, when
they load), all at once. Every default-grid cell of bo and cbo is replayed: each default problem at
its k, seeds 0, 1 and 2."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.runner import DEFAULT_GRID
from tests.shipped_tables import needs_default_grid_tables

ROOT = Path(__file__).resolve().parent.parent
SEEDS = (0, 1, 2)
SOLVERS = ("bo", "cbo")
SETTINGS = {
    "as installed": {},
    "one thread": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    "MKL conditional reproducibility": {"MKL_CBWR": "COMPATIBLE"},
    "AVX2 kernels": {"MKL_ENABLE_INSTRUCTIONS": "AVX2"},
}
NUMERIC_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS")

# Replays every cell with misses refused and prints {cell: subsets requested, in order} as JSON.
REPLAY = """
import json, sys
import problems, solvers
from oracle.errors import TableMiss
grid, seeds, solver_names = json.loads(sys.argv[1])
traces = {}
for name, ks in grid.items():
    with problems.get(name, oracle="replay", on_miss="strict") as problem:
        for k in ks:
            for solver in solver_names:
                for seed in seeds:
                    cell = f"{name} k={k} {solver} seed {seed}"
                    try:
                        result = solvers.get(solver).solve(problem, k, seed=seed)
                        traces[cell] = [list(entry.subset) for entry in result.trace]
                    except TableMiss as miss:
                        traces[cell] = f"miss: {list(miss.subset)}"
print(json.dumps(traces))
"""


@pytest.mark.slow
@needs_default_grid_tables
def test_bo_and_cbo_replay_the_default_grid_identically_under_every_numeric_setting(tmp_path):
    cells = json.dumps([DEFAULT_GRID, SEEDS, SOLVERS])
    base = {key: value for key, value in os.environ.items() if key not in NUMERIC_VARIABLES}
    # No user table: only the shipped ones may answer.
    base["DEPTHBENCH_TABLES"] = str(tmp_path / "user-tables")
    processes = {
        setting: subprocess.Popen([sys.executable, "-c", REPLAY, cells], cwd=ROOT, env={**base, **variables},
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for setting, variables in SETTINGS.items()
    }
    traces = {}
    for setting, process in processes.items():
        stdout, stderr = process.communicate(timeout=1800)
        assert process.returncode == 0, f"{setting}: {stderr[-2000:]}"
        traces[setting] = json.loads(stdout)

    reference = traces["as installed"]
    assert len(reference) == sum(map(len, DEFAULT_GRID.values())) * len(SEEDS) * len(SOLVERS)
    misses = {cell: trace for cell, trace in reference.items() if isinstance(trace, str)}
    assert not misses, f"requests missing from the shipped tables: {misses}"
    for setting, other in traces.items():
        differing = [cell for cell in reference if other[cell] != reference[cell]]
        assert not differing, f"{setting}: other subsets requested in {differing}"
