"""Behaviour of the baseline solvers: one-shot, greedy, beam, random search and exact."""

import itertools
import math

import numpy as np
import pytest

import problems
import solvers
from oracle.errors import BadInput
from solvers.criteria import CRITERIA, block_scores, ranked_blocks
from solvers.greedy import removal_order
from solvers.session import SearchSession
from tests.solver_problems import additive_problem

N32 = "synthetic/quadratic-N32-seed0"


# --- criteria and one-shot ----------------------------------------------------------------


def test_removal_loss_scores_are_the_single_block_losses_in_one_batch():
    problem = problems.get("synthetic/quadratic-N12-seed0")
    session = SearchSession(problem, 3)
    scores = block_scores(session, "removal_loss")
    assert np.array_equal(scores, [problem.loss((i,)) for i in range(12)])
    assert session.evaluations == 12 and session.requests == 12


@pytest.mark.parametrize("criterion", [c for c in CRITERIA if c != "removal_loss"])
def test_hidden_state_criteria_are_refused_without_a_live_model(criterion):
    session = SearchSession(problems.get("synthetic/quadratic-N12-seed0"), 3)
    with pytest.raises(BadInput, match=f"criterion '{criterion}' needs hidden states"):
        block_scores(session, criterion)


def test_criteria_are_served_by_an_oracle_that_offers_block_scores():
    problem = problems.get("synthetic/quadratic-N12-seed0")
    problem.oracle.block_scores = lambda criterion: np.arange(12.0)[::-1]
    result = solvers.get("oneshot", criterion="cosine").solve(problem, 3)
    assert result.subset == (9, 10, 11) and result.n_evaluations == 1


def test_unknown_criterion_is_refused():
    with pytest.raises(BadInput, match="unknown criterion 'bogus'"):
        solvers.get("oneshot", criterion="bogus").solve(problems.get("synthetic/quadratic-N12-seed0"), 3)


def test_oneshot_removes_the_k_smallest_singles_for_n_plus_one_evaluations():
    problem = problems.get("synthetic/quadratic-N16-seed1")
    singles = [problem.loss((i,)) for i in range(16)]
    result = solvers.get("oneshot").solve(problem, 4)
    assert result.subset == tuple(sorted(np.argsort(singles, kind="stable")[:4]))
    assert result.n_evaluations == 17


def test_oneshot_with_a_prior_evaluates_only_its_choice_and_breaks_ties_by_index():
    prior = np.array([5.0, 1.0, 1.0, 0.5, 1.0, 9.0])
    problem = additive_problem(6, seed=0)
    result = solvers.get("oneshot").solve(problem, 3, prior=prior)
    assert result.subset == (1, 2, 3) and result.n_evaluations == 1


def test_blocks_rank_with_unusable_scores_last_whatever_their_sign():
    # -inf and NaN scores come from a broken criterion, not from a removable block
    assert ranked_blocks([0.5, math.nan, 0.5, -math.inf, 0.1, math.inf]) == [4, 0, 2, 1, 3, 5]
    problem = additive_problem(6, seed=0)
    result = solvers.get("oneshot").solve(problem, 3, prior=np.array([0.5, math.nan, 0.5, -math.inf, 0.1, 2.0]))
    assert result.subset == (0, 2, 4)


# --- greedy ------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 4, 9])
def test_greedy_on_an_additive_problem_removes_the_k_smallest_singles(k):
    problem = additive_problem(14, seed=k)
    result = solvers.get("greedy").solve(problem, k)
    assert result.subset == tuple(sorted(np.argsort(problem.oracle.h)[:k]))


@pytest.mark.parametrize("barriers, expected", [(False, 228), (True, 212), ((1, 1), 212), ((2, 0), 212)])
def test_greedy_costs_the_sleb_formula_on_n32_k8(barriers, expected):
    result = solvers.get("greedy", barriers=barriers).solve(problems.get(N32), 8)
    assert result.n_evaluations == result.n_requests == expected


def test_greedy_batches_each_step_and_records_the_removal_order():
    problem = additive_problem(10, seed=3)
    result = solvers.get("greedy").solve(problem, 4)
    sizes = [len(entry.subset) for entry in result.trace]
    assert sizes == sorted(sizes) and [sizes.count(m) for m in (1, 2, 3, 4)] == [10, 9, 8, 7]
    assert removal_order(result.trace) == [int(i) for i in np.argsort(problem.oracle.h)[:4]]


def test_greedy_barriers_never_remove_the_first_or_last_alive_block():
    problem = additive_problem(12, seed=4)
    problem.oracle.h[[0, 11]] = -1.0  # the cheapest blocks, but behind the barriers
    inner = [int(b) for b in np.argsort(problem.oracle.h) if b not in (0, 11)]
    result = solvers.get("greedy", barriers=True).solve(problem, 3)
    assert result.subset == tuple(sorted(inner[:3]))


@pytest.mark.parametrize("barriers", [(1,), (-1, 1), "yes", (1.0, 1)])
def test_malformed_barriers_are_refused(barriers):
    with pytest.raises(BadInput, match="barriers must be"):
        solvers.get("greedy", barriers=barriers).solve(additive_problem(8, seed=0), 2)


def test_barriers_that_leave_too_few_candidates_are_refused():
    with pytest.raises(BadInput, match="k=7 blocks cannot be removed from 8"):
        solvers.get("greedy", barriers=True).solve(additive_problem(8, seed=0), 7)


@pytest.mark.parametrize("budget", [17, 20, 30, 40])
def test_greedy_under_a_short_budget_completes_its_subset_instead_of_failing(budget):
    # N=16, k=5 needs 70 evaluations; the budget stops it part-way.
    problem = problems.get("synthetic/higher-order-N16-seed0")
    result = solvers.get("greedy").solve(problem, 5, budget=budget)
    assert len(result.subset) == 5 and result.n_evaluations <= budget and math.isfinite(result.loss)


def test_greedy_under_a_short_budget_keeps_the_steps_it_paid_for():
    problem = problems.get("synthetic/quadratic-N16-seed0")
    full = solvers.get("greedy").solve(problem, 5)
    short = solvers.get("greedy").solve(problem, 5, budget=16 + 15 + 1)
    assert removal_order(short.trace)[:2] == removal_order(full.trace)[:2]


# --- beam --------------------------------------------------------------------------------


@pytest.mark.parametrize("barriers", [False, True])
def test_beam_of_width_one_is_greedy(barriers):
    for name in ("synthetic/quadratic-N20-seed1", "synthetic/higher-order-N20-seed2"):
        problem = problems.get(name)
        greedy = solvers.get("greedy", barriers=barriers).solve(problem, 6)
        beam = solvers.get("beam", width=1, barriers=barriers).solve(problem, 6)
        assert beam.subset == greedy.subset
        assert [e.subset for e in beam.trace] == [e.subset for e in greedy.trace]


def beam_bound(n_blocks: int, k: int, width: int, barriers: int = 0) -> int:
    """≤ N + Σ_{d=2..k} B(N − d + 1) of ALGORITHMS.md §4.3, each depth less 2 per barrier."""
    return n_blocks - 2 * barriers + sum(width * (n_blocks - d + 1 - 2 * barriers) for d in range(2, k + 1))


@pytest.mark.parametrize("barriers, expected", [(False, 962), (True, 890)])
def test_beam_cost_on_n32_k8_is_within_the_bound_and_deduped(barriers, expected):
    bound = beam_bound(32, 8, 5, barriers=int(barriers))
    assert bound == (1012 if not barriers else 940)
    result = solvers.get("beam", barriers=barriers).solve(problems.get(N32), 8)
    assert result.n_evaluations == result.n_requests == expected <= bound


def test_beam_evaluates_each_depth_as_distinct_sets():
    result = solvers.get("beam", width=5).solve(problems.get("synthetic/quadratic-N12-seed0"), 4)
    subsets = [entry.subset for entry in result.trace]
    assert len(subsets) == len(set(subsets))
    assert [len(s) for s in subsets] == sorted(len(s) for s in subsets)


def test_beam_is_at_least_as_good_as_greedy_on_the_planted_problem():
    problem = problems.get("synthetic/higher-order-N16-seed3")
    assert solvers.get("beam").solve(problem, 4).loss <= solvers.get("greedy").solve(problem, 4).loss


@pytest.mark.parametrize("width", [0, 2.5, True])
def test_bad_beam_width_is_refused(width):
    with pytest.raises(BadInput, match="beam width"):
        solvers.get("beam", width=width).solve(additive_problem(8, seed=0), 2)


@pytest.mark.parametrize("budget", [13, 30, 60])
def test_beam_under_a_short_budget_still_returns_a_k_subset(budget):
    result = solvers.get("beam").solve(problems.get("synthetic/quadratic-N12-seed2"), 5, budget=budget)
    assert len(result.subset) == 5 and result.n_evaluations <= budget


# --- random search -----------------------------------------------------------------------


@pytest.mark.parametrize("budget", [1, 37, 120])
def test_random_spends_exactly_its_budget_on_distinct_k_subsets(budget):
    result = solvers.get("random").solve(problems.get("synthetic/quadratic-N16-seed0"), 4, budget=budget)
    subsets = [entry.subset for entry in result.trace]
    assert result.n_evaluations == result.n_requests == budget
    assert len(set(subsets)) == budget and all(len(s) == 4 for s in subsets)


def test_random_without_a_budget_uses_its_evaluations_option():
    result = solvers.get("random", evaluations=75).solve(problems.get("synthetic/quadratic-N16-seed0"), 4)
    assert result.n_evaluations == 75


def test_random_stops_when_every_subset_has_been_drawn():
    result = solvers.get("random").solve(problems.get("synthetic/quadratic-N12-seed0"), 2, budget=500)
    assert result.n_evaluations == math.comb(12, 2)
    assert {e.subset for e in result.trace} == set(itertools.combinations(range(12), 2))


def test_random_draws_do_not_depend_on_the_batch_size():
    problem = problems.get("synthetic/quadratic-N16-seed0")
    one = solvers.get("random", batch_size=7).solve(problem, 4, budget=40, seed=3)
    other = solvers.get("random", batch_size=50).solve(problem, 4, budget=40, seed=3)
    assert [e.subset for e in one.trace] == [e.subset for e in other.trace]


def test_random_with_another_seed_draws_other_subsets():
    problem = problems.get("synthetic/quadratic-N16-seed0")
    first = solvers.get("random").solve(problem, 4, budget=20, seed=0)
    second = solvers.get("random").solve(problem, 4, budget=20, seed=1)
    assert [e.subset for e in first.trace] != [e.subset for e in second.trace]


# --- exact -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["synthetic/quadratic-N12-seed0", "synthetic/higher-order-N12-seed1"])
@pytest.mark.parametrize("k", [3, 6])
def test_exact_agrees_with_the_known_optimum_and_is_certified(name, k):
    problem = problems.get(name)
    result = solvers.get("exact", batch_size=100).solve(problem, k)
    assert (result.subset, result.loss) == problem.oracle.function.exact_optimum(k)
    assert result.certified and result.n_evaluations == math.comb(12, k)


def test_exact_cut_short_by_a_budget_is_not_certified():
    result = solvers.get("exact").solve(problems.get("synthetic/quadratic-N12-seed0"), 3, budget=50)
    assert not result.certified and result.n_evaluations == 50


def test_exact_refuses_above_its_limit_with_one_line():
    with pytest.raises(BadInput) as error:
        solvers.get("exact", max_subsets=200).solve(problems.get("synthetic/quadratic-N12-seed0"), 3)
    message = str(error.value)
    assert "\n" not in message and "C(12,3) = 220" in message and "max_subsets=200" in message


def test_exact_refuses_n32_k8_by_default_before_evaluating_anything():
    problem = problems.get(N32)
    with pytest.raises(BadInput, match="10,518,300"):
        solvers.get("exact").solve(problem, 8)
    assert problem.oracle.counters.evaluations == 0
