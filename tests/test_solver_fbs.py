"""Fast-Block-Select in black-box mode: determinism, feasibility, improvement over one-shot
top-k, fixed point, options, and the refusal of MI mode without hidden states."""

import numpy as np
import pytest

import problems
import solvers
from oracle.errors import BadInput
from problems.problem import Problem
from solvers.fast_block_select import FastBlockSelect
from tests.solver_problems import trace_of

CASES = [
    ("synthetic/quadratic-N16-seed0", 4),
    ("synthetic/quadratic-N16-seed1", 6),
    ("synthetic/quadratic-N20-seed3", 5),
    ("synthetic/higher-order-N20-seed2", 5),
]


@pytest.mark.parametrize("name, k", CASES)
def test_returns_k_blocks(name, k):
    result = solvers.get("fbs").solve(problems.get(name), k)
    assert len(result.subset) == k == len(set(result.subset))


@pytest.mark.parametrize("name, k", CASES)
def test_is_deterministic_and_ignores_the_seed(name, k):
    problem = problems.get(name)
    first = solvers.get("fbs").solve(problem, k, seed=0)
    assert trace_of(solvers.get("fbs").solve(problem, k, seed=0)) == trace_of(first)
    assert trace_of(solvers.get("fbs").solve(problem, k, seed=7)) == trace_of(first)


@pytest.mark.parametrize("name, k", CASES[:3])
def test_is_at_least_as_good_as_one_shot_top_k_on_a_quadratic_problem(name, k):
    problem = problems.get(name)
    one_shot = solvers.get("oneshot").solve(problem, k)
    result = solvers.get("fbs").solve(problem, k)
    assert result.loss <= one_shot.loss


def test_improves_on_one_shot_top_k_where_it_is_not_optimal():
    problem = problems.get("synthetic/quadratic-N16-seed0")
    one_shot = solvers.get("oneshot").solve(problem, 4)
    optimum = problem.oracle.function.exact_optimum(4)
    assert one_shot.subset != optimum[0]
    assert solvers.get("fbs").solve(problem, 4).loss < one_shot.loss


def test_starts_from_the_one_shot_top_k():
    problem = problems.get("synthetic/quadratic-N16-seed1")
    result = solvers.get("fbs").solve(problem, 6)
    first_k_subset = next(entry.subset for entry in result.trace if len(entry.subset) == 6)
    assert first_k_subset == solvers.get("oneshot").solve(problem, 6).subset


@pytest.mark.parametrize("name, k", [("synthetic/quadratic-N16-seed0", 4), ("synthetic/higher-order-N16-seed2", 4)])
def test_reaches_a_fixed_point_under_the_default_max_iter(name, k):
    problem = problems.get(name)
    default = solvers.get("fbs").solve(problem, k)
    unbounded = solvers.get("fbs", max_iter=1000).solve(problem, k)
    assert trace_of(unbounded) == trace_of(default)


def test_max_iter_zero_is_one_shot_top_k():
    problem = problems.get("synthetic/quadratic-N16-seed0")
    result = solvers.get("fbs", max_iter=0).solve(problem, 4)
    assert result.subset == solvers.get("oneshot").solve(problem, 4).subset
    assert result.n_evaluations == 16 + 1


def test_a_prior_replaces_the_single_block_evaluations():
    problem = problems.get("synthetic/quadratic-N16-seed0")
    prior = np.array([problem.loss((i,)) for i in range(16)])
    with_prior = solvers.get("fbs").solve(problem, 4, prior=prior)
    without = solvers.get("fbs").solve(problem, 4)
    assert all(len(entry.subset) == 4 for entry in with_prior.trace)
    assert with_prior.subset == without.subset
    assert with_prior.n_evaluations == without.n_evaluations - 16


def test_never_evaluates_a_candidate_twice():
    result = solvers.get("fbs").solve(problems.get("synthetic/higher-order-N20-seed2"), 5)
    assert result.n_requests >= result.n_evaluations == len({entry.subset for entry in result.trace})


def proposals(pool, **config):
    problem = problems.get("synthetic/quadratic-N20-seed3")
    scores = np.array([problem.loss((i,)) for i in range(20)])
    return FastBlockSelect(**config)._proposals(pool, scores, lambda subset: False), scores


def test_run_proposals_swap_each_maximal_run_for_the_top_k_same_length_runs_outside_the_pool():
    pool = (3, 4, 5, 9, 14)
    found, scores = proposals(pool, single_swaps=False, top_k=3)
    by_run = {}
    for removed, added, subset in found:
        assert subset == tuple(sorted(set(pool) - set(removed) | set(added)))
        by_run.setdefault(removed, []).append(added)
    assert sorted(by_run) == [(3, 4, 5), (9,), (14,)]
    for removed, added_runs in by_run.items():
        length = len(removed)
        outside = [tuple(range(s, s + length)) for s in range(21 - length)
                   if set(range(s, s + length)).isdisjoint(pool)]
        best = sorted(outside, key=lambda run: (scores[list(run)].sum(), run))[:3]
        assert added_runs == best


def test_single_swaps_add_one_member_of_each_longer_run_for_one_kept_block():
    pool = (3, 4, 5, 9, 14)
    with_singles, _ = proposals(pool, top_k=3)
    without, _ = proposals(pool, top_k=3, single_swaps=False)
    extra = {removed for removed, added, _ in set(with_singles) - set(without)}
    assert extra == {(3,), (4,), (5,)}
    assert all(len(added) == 1 for removed, added, _ in set(with_singles) - set(without))


def test_accepting_only_single_swaps_also_improves():
    problem = problems.get("synthetic/quadratic-N16-seed0")
    one_shot = solvers.get("oneshot").solve(problem, 4)
    assert solvers.get("fbs", combine_swaps=False).solve(problem, 4).loss < one_shot.loss


def test_respects_a_small_budget():
    problem = problems.get("synthetic/quadratic-N20-seed3")
    result = solvers.get("fbs").solve(problem, 5, budget=30)
    assert result.n_evaluations <= 30 and len(result.subset) == 5


def test_mi_mode_is_refused_without_hidden_states():
    with pytest.raises(BadInput, match="mode='mi' needs hidden states"):
        solvers.get("fbs", mode="mi").solve(problems.get("synthetic/quadratic-N12-seed0"), 3)


def with_segment_information(information):
    base = problems.get("synthetic/quadratic-N12-seed0")
    base.oracle.segment_information = lambda: information
    return Problem(name=base.name, n_blocks=12, oracle=base.oracle, description="with hidden states")


def test_mi_mode_improves_the_segment_value_and_evaluates_only_its_answer():
    from solvers.fast_block_select import _segments_value

    rng = np.random.default_rng(0)
    information = rng.uniform(0.0, 2.0, size=(13, 13))
    result = solvers.get("fbs", mode="mi").solve(with_segment_information(information), 4)
    start = tuple(sorted(np.lexsort((np.arange(12), -np.diagonal(information, offset=1)))[:4].tolist()))
    assert result.n_evaluations == 1 and len(result.subset) == 4
    assert _segments_value(result.subset, information) < _segments_value(start, information)


def test_mi_mode_refuses_segment_information_of_the_wrong_shape():
    with pytest.raises(BadInput, match="shape"):
        solvers.get("fbs", mode="mi").solve(with_segment_information(np.zeros((5, 5))), 3)


@pytest.mark.parametrize("config", [{"mode": "greedy"}, {"top_k": 0}, {"max_iter": -1}])
def test_bad_options_are_refused(config):
    with pytest.raises(BadInput):
        solvers.get("fbs", **config).solve(problems.get("synthetic/quadratic-N12-seed0"), 3)
