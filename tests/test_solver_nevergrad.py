"""The Nevergrad family (`ng-<Name>`): any optimiser of Nevergrad's registry as an exactly-k
solver through random keys, held to the conformance battery every registered solver passes."""

import subprocess
import sys
from importlib.util import find_spec

import numpy as np
import pytest

import problems
import solvers
import tests.test_solver_conformance as conformance
from bench.cli import main
from oracle.errors import BadInput, SolverUnavailable

nevergrad_solver = pytest.importorskip("solvers.nevergrad_solver")  # skipped where nevergrad is missing
decode, rank_keys = nevergrad_solver.decode, nevergrad_solver.rank_keys

QUADRATIC = "synthetic/quadratic-N12-seed0"
HIGHER_ORDER = "synthetic/higher-order-N16-seed4"
# Nevergrad's own pick, a discrete (1+1), an evolution strategy, differential evolution, a swarm
# and a scipy method Nevergrad runs on a thread (Cobyla): one of each kind of optimiser.
KINDS = ("ng-NGOpt", "ng-DiscreteOnePlusOne", "ng-CMA", "ng-TwoPointsDE", "ng-PSO", "ng-Cobyla")
CONFORMANCE_CHECKS = (
    conformance.test_returns_k_distinct_valid_blocks_in_sorted_order,
    conformance.test_same_seed_gives_same_subset_and_trace,
    conformance.test_respects_the_budget,
    conformance.test_result_fields_are_filled,
    conformance.test_loss_and_delta_are_those_of_the_subset,
    conformance.test_returns_the_best_subset_it_evaluated,
)


@pytest.fixture
def family_in_conformance(monkeypatch):
    """The conformance battery finds solvers in the registry's table, which holds no ng-<Name>:
    let it build them by name, the way every user does."""
    monkeypatch.setattr(conformance, "make_solver", solvers.get)


@pytest.mark.parametrize("check", CONFORMANCE_CHECKS, ids=lambda check: check.__name__.removeprefix("test_"))
@pytest.mark.parametrize("name", ("ng-NGOpt", "ng-DiscreteOnePlusOne", "ng-CMA"))
@pytest.mark.parametrize("problem_name, k", conformance.CASES, ids=conformance.CASE_IDS)
def test_representatives_pass_the_conformance_battery(family_in_conformance, check, name, problem_name, k):
    check(name, problem_name, k)


@pytest.mark.parametrize("name", ("ng-NGOpt", "ng-DiscreteOnePlusOne", "ng-CMA"))
def test_representatives_never_return_a_nan_subset(family_in_conformance, name):
    conformance.test_never_returns_a_nan_subset_when_a_finite_one_was_evaluated(name)


@pytest.mark.parametrize("name", KINDS)
def test_every_proposal_decodes_to_exactly_k_distinct_blocks(name):
    problem = problems.get(HIGHER_ORDER)
    result = solvers.get(name, criterion=None).solve(problem, 5, budget=40, seed=3)  # no prior singles
    assert result.trace
    for entry in result.trace:
        assert len(entry.subset) == len(set(entry.subset)) == 5
        assert all(0 <= block < problem.n_blocks for block in entry.subset)


@pytest.mark.parametrize("name", KINDS)
def test_same_seed_gives_the_same_search_and_other_seeds_another(name):
    """Without a prior, whose fixed start leaves a deterministic method (Cobyla) nothing to draw."""
    problem = problems.get(HIGHER_ORDER)
    solver = solvers.get(name, criterion=None)
    first, again, other = (solver.solve(problem, 5, budget=30, seed=seed) for seed in (4, 4, 5))
    assert [e.subset for e in first.trace] == [e.subset for e in again.trace]
    assert [e.subset for e in first.trace] != [e.subset for e in other.trace]


@pytest.mark.parametrize("name", KINDS)
def test_unique_evaluations_stay_within_the_budget_and_asks_within_the_cap(name):
    result = solvers.get(name, asks_per_evaluation=3).solve(problems.get(HIGHER_ORDER), 5, budget=25, seed=0)
    assert result.n_evaluations <= 25
    assert result.n_requests <= 3 * 25


def test_a_search_that_keeps_finding_new_subsets_spends_the_whole_budget():
    result = solvers.get("ng-DiscreteOnePlusOne").solve(problems.get(HIGHER_ORDER), 5, budget=50, seed=0)
    assert result.n_evaluations == 50


def test_without_a_budget_it_evaluates_its_own_number_of_subsets_besides_the_prior_singles():
    problem = problems.get(HIGHER_ORDER)
    result = solvers.get("ng-DiscreteOnePlusOne", evaluations=35).solve(problem, 5, seed=0)
    assert result.n_evaluations == problem.n_blocks + 35 and result.budget is None
    without_prior = solvers.get("ng-DiscreteOnePlusOne", criterion=None, evaluations=35).solve(problem, 5, seed=0)
    assert without_prior.n_evaluations == 35


def test_a_space_smaller_than_the_budget_ends_when_every_subset_is_seen():
    result = solvers.get("ng-RandomSearch", criterion=None).solve(problems.get("synthetic/quadratic-N6-seed0"), 2,
                                                                  budget=100, seed=0)
    assert result.n_evaluations == 15  # C(6, 2)
    assert result.n_requests < 20 * 15


@pytest.mark.parametrize("seed", (0, 1, 2))
def test_ngopt_reaches_the_exact_optimum_of_a_small_problem(seed):
    problem = problems.get(QUADRATIC)
    exact = solvers.get("exact").solve(problem, 3)
    result = solvers.get("ng-NGOpt").solve(problem, 3, budget=100, seed=seed)
    assert exact.certified and result.subset == exact.subset and result.n_evaluations <= 100


@pytest.mark.parametrize("name", ("ng-NGOpt", "ng-CMA", "ng-TwoPointsDE", "ng-PSO", "ng-EDA"))
def test_a_given_prior_is_the_first_subset_evaluated(name):
    """Also for optimisers that sample their first point around the centre (CMA, DE, PSO) and
    for one that cannot learn from a suggested point (EDA)."""
    problem = problems.get(HIGHER_ORDER)
    prior = np.random.default_rng(11).normal(size=problem.n_blocks)
    result = solvers.get(name).solve(problem, 5, budget=20, seed=0, prior=prior)
    assert result.trace[0].subset == tuple(sorted(np.argsort(prior, kind="stable")[:5]))


def test_the_default_criterion_costs_the_singles_and_then_its_top_k_comes_first():
    problem = problems.get(HIGHER_ORDER)
    result = solvers.get("ng-DiscreteOnePlusOne").solve(problem, 5, budget=40, seed=0)
    singles = [entry.subset for entry in result.trace[:problem.n_blocks]]
    assert singles == [(block,) for block in range(problem.n_blocks)]
    losses = [entry.loss for entry in result.trace[:problem.n_blocks]]
    assert result.trace[problem.n_blocks].subset == tuple(sorted(np.argsort(losses, kind="stable")[:5]))
    assert result.n_evaluations <= 40


def test_keys_decode_to_the_k_smallest_with_ties_to_the_lower_index():
    assert decode(np.array([0.5, -1.0, 0.2, -1.0, 3.0]), 2) == (1, 3)
    assert decode(np.array([0.0, 0.0, 0.0, 0.0]), 3) == (0, 1, 2)
    # A last-bit difference is no difference: the lower index wins.
    assert decode(np.array([1.0, 0.3 + 1e-13, 0.3, 2.0]), 1) == (1,)


def test_prior_keys_are_z_scored_ranks_with_non_finite_scores_last():
    prior = np.array([0.9, np.nan, 0.1, 0.1, -np.inf, 5.0])
    keys = rank_keys(prior)
    assert keys.mean() == pytest.approx(0.0) and keys.std() == pytest.approx(1.0)
    assert decode(keys, 3) == (0, 2, 3)
    assert keys[2] < keys[3] < keys[0] < keys[5] < keys[1] < keys[4]


def test_any_registry_name_resolves_and_a_results_row_rebuilds_it():
    solver = solvers.get("ng-TwoPointsDE", evaluations=10)
    assert solver.name == "ng-TwoPointsDE" and solver.get_config()["optimizer"] == "TwoPointsDE"
    assert solvers.get(solver.name, **solver.get_config()).get_config() == solver.get_config()


def test_a_config_cannot_name_another_optimiser():
    with pytest.raises(BadInput, match="ng-CMA runs Nevergrad's CMA"):
        solvers.get("ng-CMA", optimizer="DE")


@pytest.mark.parametrize("config, fragment", [
    ({"criterion": "bogus"}, "bogus"),
    ({"evaluations": 0}, "evaluations"),
    ({"asks_per_evaluation": 2.5}, "asks_per_evaluation"),
])
def test_bad_options_are_refused(config, fragment):
    with pytest.raises(BadInput, match=fragment):
        solvers.get("ng-NGOpt", **config)


def test_the_family_is_no_entry_of_the_panel():
    assert not any(name.startswith("ng-") for name in solvers.names())


def test_an_unknown_optimiser_is_one_line_and_exit_2(capsys):
    code = main(["solve", "--problem", "synthetic/quadratic-N6-seed0", "--solver", "ng-Foo", "--k", "2"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == ("error: unknown Nevergrad optimiser 'Foo'; see nevergrad.optimizers.registry")


@pytest.mark.skipif(find_spec("ax") is not None, reason="ax is installed here")
def test_an_optimiser_whose_library_is_missing_is_unavailable():
    with pytest.raises(SolverUnavailable, match="ng-AX.*needs ax"):
        solvers.get("ng-AX").solve(problems.get(QUADRATIC), 3, budget=30)


def test_bench_list_shows_the_family(capsys):
    assert main(["list"]) == 0
    assert "ng-<Name>" in capsys.readouterr().out


def test_the_registry_does_not_import_nevergrad_until_an_ng_solver_is_built():
    code = ("import sys, solvers; solvers.names(); solvers.get('random'); "
            "assert 'nevergrad' not in sys.modules; solvers.get('ng-NGOpt'); assert 'nevergrad' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_an_optimiser_on_a_thread_does_not_keep_the_process_alive():
    """Nevergrad runs scipy's Cobyla on a background thread; a finished solve must let the
    process exit."""
    result = subprocess.run([sys.executable, "-m", "bench", "solve", "--problem", "synthetic/quadratic-N8-seed0",
                             "--solver", "ng-Cobyla", "--k", "2", "--budget", "10"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
