"""The checks every registered solver passes on synthetic problems (the check_estimator idea):
a valid k-subset, determinism for a fixed seed, the budget respected and a complete Result.

A solver whose module does not exist yet is skipped, so solvers can land one at a time."""

import functools
import importlib
import math

import numpy as np
import pytest

import problems
import solvers
from solvers.registry import SOLVERS
from tests.solver_problems import nan_problem, trace_of

BUDGET = 60
# (problem, k): both families, N in {12, 16}, k in {3, 5}.
CASES = [
    ("synthetic/quadratic-N12-seed1", 3),
    ("synthetic/quadratic-N16-seed2", 5),
    ("synthetic/higher-order-N12-seed3", 5),
    ("synthetic/higher-order-N16-seed4", 3),
]
CASE_IDS = [f"{name.split('/')[1]}-k{k}" for name, k in CASES]


def make_solver(name: str):
    module = SOLVERS[name].partition(":")[0]
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name != module:
            raise
        pytest.skip(f"{module} does not exist yet")
    return solvers.get(name)


def budget_for(name: str) -> int | None:
    return None if name == "exact" else BUDGET


@functools.lru_cache(maxsize=None)
def run(name: str, problem_name: str, k: int, seed: int = 0):
    problem = problems.get(problem_name)
    return problem, make_solver(name).solve(problem, k, budget=budget_for(name), seed=seed)


solver_names = pytest.mark.parametrize("name", solvers.names())
cases = pytest.mark.parametrize("problem_name, k", CASES, ids=CASE_IDS)


@solver_names
@cases
def test_returns_k_distinct_valid_blocks_in_sorted_order(name, problem_name, k):
    problem, result = run(name, problem_name, k)
    assert len(result.subset) == k
    assert list(result.subset) == sorted(set(result.subset))
    assert all(isinstance(block, int) and 0 <= block < problem.n_blocks for block in result.subset)


@solver_names
@cases
def test_same_seed_gives_same_subset_and_trace(name, problem_name, k):
    _, first = run(name, problem_name, k)
    again = make_solver(name).solve(problems.get(problem_name), k, budget=budget_for(name), seed=0)
    assert again.subset == first.subset
    assert trace_of(again) == trace_of(first)


@solver_names
@cases
def test_respects_the_budget(name, problem_name, k):
    _, result = run(name, problem_name, k)
    if result.budget is not None:
        assert result.n_evaluations <= result.budget
    assert result.n_requests >= result.n_evaluations
    assert len(result.trace) == result.n_evaluations


@solver_names
@cases
def test_result_fields_are_filled(name, problem_name, k):
    problem, result = run(name, problem_name, k)
    solver = make_solver(name)
    assert result.solver == name == solver.name
    assert result.config == solver.get_config()
    assert (result.problem, result.k, result.seed, result.budget) == (problem.name, k, 0, budget_for(name))
    assert result.wall_s > 0
    evaluations = [entry.evaluations for entry in result.trace]
    assert evaluations == sorted(set(evaluations)) and evaluations[-1] == result.n_evaluations
    assert all(entry.time_s >= 0 for entry in result.trace)


@solver_names
@cases
def test_loss_and_delta_are_those_of_the_subset(name, problem_name, k):
    problem, result = run(name, problem_name, k)
    assert result.loss == problem.loss(result.subset)
    assert result.delta == pytest.approx(result.loss - problem.base_loss(), abs=1e-12)


@solver_names
@cases
def test_returns_the_best_subset_it_evaluated(name, problem_name, k):
    _, result = run(name, problem_name, k)
    evaluated = [entry.loss for entry in result.trace if len(entry.subset) == k]
    assert result.loss == min(evaluated)


@solver_names
def test_never_returns_a_nan_subset_when_a_finite_one_was_evaluated(name):
    problem = nan_problem("synthetic/higher-order-N12-seed5")
    result = make_solver(name).solve(problem, 3, budget=budget_for(name), seed=0)
    assert any(len(e.subset) == 3 and math.isfinite(e.loss) for e in result.trace)
    assert math.isfinite(result.loss) and 0 not in result.subset
    assert np.isfinite(result.delta)
