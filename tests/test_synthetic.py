"""Synthetic problems: their formulas, known optima, determinism, oracle contract and registry."""

import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import problems
from oracle.errors import BadInput, InvalidSubset, UnknownProblem
from oracle.fingerprint import fingerprint
from problems import registry
from problems.synthetic import (
    N_SAMPLES,
    SyntheticFunction,
    SyntheticOracle,
    SyntheticSpec,
    make_synthetic_problem,
)


def function_of(name: str) -> SyntheticFunction:
    return SyntheticFunction(SyntheticSpec.parse(name))


def random_subsets(n_blocks: int, count: int, seed: int) -> list[tuple[int, ...]]:
    rng = np.random.default_rng(seed)
    subsets = []
    for _ in range(count):
        k = int(rng.integers(0, n_blocks + 1))
        subsets.append(tuple(sorted(int(i) for i in rng.choice(n_blocks, size=k, replace=False))))
    return subsets


def quadratic_formula(function: SyntheticFunction, subset: tuple[int, ...]) -> float:
    total = function.constant
    for i in subset:
        total += function.h[i]
    for i, j in itertools.combinations(subset, 2):
        total += function.J[i, j]
    return total


def run_lengths(subset: tuple[int, ...]) -> list[int]:
    lengths, previous = [], None
    for block in subset:
        if previous is not None and block == previous + 1:
            lengths[-1] += 1
        else:
            lengths.append(1)
        previous = block
    return lengths


# --- the two families ---------------------------------------------------------------------


def test_quadratic_loss_equals_constant_plus_first_and_pairwise_terms():
    function = function_of("synthetic/quadratic-N30-seed0")
    for subset in random_subsets(30, 200, seed=1):
        assert function.loss(subset) == pytest.approx(quadratic_formula(function, subset), abs=1e-12)


def test_interaction_matrix_is_symmetric_with_zero_diagonal():
    function = function_of("synthetic/higher-order-N25-seed4")
    assert np.array_equal(function.J, function.J.T)
    assert np.all(np.diag(function.J) == 0.0)


def test_empty_subset_loss_is_the_constant():
    function = function_of("synthetic/higher-order-N30-seed0")
    assert function.loss(()) == function.constant


def test_higher_order_differs_from_its_quadratic_part_exactly_by_the_run_terms():
    function = function_of("synthetic/higher-order-N30-seed2")
    term = function.higher_order
    assert term is not None and term.coefficient < 0 and term.min_length == 3
    for subset in random_subsets(30, 200, seed=3):
        expected = sum(term.coefficient * (r - 2) ** term.exponent for r in run_lengths(subset) if r >= 3)
        difference = function.loss(subset) - quadratic_formula(function, subset)
        assert difference == pytest.approx(expected, abs=1e-12)


def test_quadratic_family_has_no_higher_order_part():
    function = function_of("synthetic/quadratic-N12-seed0")
    assert function.higher_order is None
    assert np.all(function.run_terms_of_masks(function.masks([(3, 4, 5, 6), (0, 1, 2)])) == 0.0)


def third_order_interaction(function: SyntheticFunction, triple: tuple[int, int, int]) -> float:
    """Möbius coefficient of the triple: zero for every quadratic function."""
    return sum(
        (-1) ** (3 - size) * function.loss(part)
        for size in range(4)
        for part in itertools.combinations(triple, size)
    )


def test_only_the_higher_order_family_has_third_order_interactions():
    quadratic = function_of("synthetic/quadratic-N20-seed1")
    higher = function_of("synthetic/higher-order-N20-seed1")
    assert third_order_interaction(quadratic, (8, 9, 10)) == pytest.approx(0.0, abs=1e-12)
    assert third_order_interaction(higher, (8, 9, 10)) == pytest.approx(higher.higher_order.coefficient)
    assert third_order_interaction(higher, (4, 9, 10)) == pytest.approx(0.0, abs=1e-12)


def test_first_and_last_blocks_are_costly_and_the_middle_cheap():
    for name in ("synthetic/quadratic-N32-seed0", "synthetic/higher-order-N64-seed5"):
        function = function_of(name)
        n = function.n_blocks
        assert function.h[0] == function.h.max()
        assert function.h[-1] > 1.0
        middle = function.h[int(0.4 * n) : int(0.9 * n)]
        assert np.median(middle) < 0.2


# --- optima -------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["quadratic", "higher-order"])
@pytest.mark.parametrize("k", [0, 1, 2, 3, 5, 7, 10])
def test_exact_optimum_matches_brute_force(family, k):
    function = function_of(f"synthetic/{family}-N10-seed3")
    losses = {subset: function.loss(subset) for subset in itertools.combinations(range(10), k)}
    best = min(losses.values())
    subset, loss = function.exact_optimum(k)
    assert loss == pytest.approx(best, abs=1e-12)
    assert subset == min(s for s, value in losses.items() if value == best)
    assert function.loss(subset) == loss


@pytest.mark.parametrize("name", [f"synthetic/{family}-N{n}-seed{seed}" for family in ("quadratic", "higher-order") for n in (2, 3, 9, 16, 21) for seed in (0, 1, 2)])
def test_planted_subset_is_the_exact_optimum_for_the_planted_k(name):
    function = function_of(name)
    assert function.planted_k == max(1, function.n_blocks // 4)
    assert function.planted_gap > 0
    assert function.exact_optimum(function.planted_k) == (
        function.planted_subset,
        pytest.approx(function.loss(function.planted_subset)),
    )


def test_higher_order_plants_one_contiguous_run():
    planted = function_of("synthetic/higher-order-N40-seed7").planted_subset
    assert planted == tuple(range(planted[0], planted[0] + 10))


def test_planted_optimum_is_not_the_k_cheapest_single_blocks():
    """Decoys with smaller single-block costs make one-shot selection miss the planted optimum."""
    function = function_of("synthetic/quadratic-N30-seed0")
    singles = np.array([function.loss((i,)) for i in range(30)])
    one_shot = tuple(sorted(int(i) for i in np.argsort(singles, kind="stable")[: function.planted_k]))
    assert one_shot != function.planted_subset


def test_exact_optimum_refuses_too_many_subsets_and_bad_k():
    function = function_of("synthetic/quadratic-N60-seed0")
    with pytest.raises(BadInput, match="C\\(60,30\\)"):
        function.exact_optimum(30)
    for k in (-1, 61, 2.0):
        with pytest.raises(BadInput):
            function.exact_optimum(k)


# --- determinism and fingerprints ---------------------------------------------------------


def test_same_name_gives_same_fingerprint_and_losses():
    first = problems.get("synthetic/higher-order-N30-seed0")
    second = problems.get("synthetic/higher-order-N30-seed0")
    subsets = random_subsets(30, 50, seed=5)
    assert first.oracle.fingerprint == second.oracle.fingerprint
    assert [e.loss for e in first.evaluate(subsets)] == [e.loss for e in second.evaluate(subsets)]
    for a, b in zip(first.evaluate(subsets), second.evaluate(subsets)):
        assert np.array_equal(a.per_sample, b.per_sample)


def test_different_seed_or_family_gives_different_fingerprint_and_losses():
    base = problems.get("synthetic/quadratic-N30-seed0")
    for other_name in ("synthetic/quadratic-N30-seed1", "synthetic/higher-order-N30-seed0", "synthetic/quadratic-N31-seed0"):
        other = problems.get(other_name)
        assert other.oracle.fingerprint != base.oracle.fingerprint
    other = problems.get("synthetic/quadratic-N30-seed1")
    assert base.loss((3, 10, 20)) != other.loss((3, 10, 20))


def test_fingerprint_hashes_the_spec_which_round_trips():
    problem = problems.get("synthetic/quadratic-N12-seed9")
    assert problem.oracle.fingerprint == fingerprint(problem.spec)
    spec = SyntheticSpec.from_dict(problem.spec)
    assert spec.name == problem.name == "synthetic/quadratic-N12-seed9"


# --- the oracle contract ------------------------------------------------------------------


def test_evaluate_answers_in_request_order_with_per_sample_averaging_to_loss():
    problem = problems.get("synthetic/higher-order-N20-seed0")
    subsets = [(5, 6, 7), (), (0, 19), (1,), (5, 6, 7)]
    evaluations = problem.oracle.evaluate(subsets)
    assert [e.subset for e in evaluations] == subsets
    function = problem.oracle.function
    for evaluation in evaluations:
        assert evaluation.source == "live"
        assert evaluation.loss == function.loss(evaluation.subset)
        assert evaluation.per_sample.shape == (N_SAMPLES,)
        assert np.mean(evaluation.per_sample) == pytest.approx(evaluation.loss, abs=1e-12)
        assert np.std(evaluation.per_sample) > 0
    assert np.array_equal(evaluations[0].per_sample, evaluations[-1].per_sample)


def test_evaluate_canonicalises_subsets():
    problem = problems.get("synthetic/quadratic-N20-seed0")
    [evaluation] = problem.oracle.evaluate([(9, 2, 4)])
    assert evaluation.subset == (2, 4, 9)


def test_empty_batch_evaluates_nothing():
    problem = problems.get("synthetic/quadratic-N20-seed0")
    assert problem.oracle.evaluate([]) == []
    assert problem.oracle.counters.requests == 0


@pytest.mark.parametrize("blocks", [(1, 1), (3, 20), (-1,), (2.0,), (True,)])
def test_invalid_subsets_are_refused(blocks):
    problem = problems.get("synthetic/quadratic-N20-seed0")
    with pytest.raises(InvalidSubset):
        problem.subset(blocks)
    with pytest.raises(InvalidSubset):
        problem.loss(blocks)
    with pytest.raises(InvalidSubset):
        problem.oracle.evaluate([blocks])


def test_subset_of_wrong_size_is_refused():
    problem = problems.get("synthetic/quadratic-N20-seed0")
    with pytest.raises(InvalidSubset):
        problem.subset((1, 2, 3), k=4)


def test_counters_count_requests_evaluations_and_simulated_cost():
    problem = problems.get("synthetic/quadratic-N20-seed0", cost_s=0.5)
    problem.evaluate([(1,), (2,), (1,)])
    problem.loss((4, 5))
    counters = problem.oracle.counters
    assert counters.requests == 4
    assert counters.evaluations == 4
    assert counters.hits == 0
    assert counters.cost_s == pytest.approx(2.0)
    assert all(e.cost_s == 0.5 for e in problem.evaluate([(3,)]))
    counters.reset()
    assert counters.requests == 0


def test_default_cost_is_zero():
    problem = problems.get("synthetic/quadratic-N20-seed0")
    assert problem.evaluate([(1,)])[0].cost_s == 0.0
    assert problem.oracle.counters.cost_s == 0.0


def test_delta_is_loss_minus_empty_loss():
    problem = problems.get("synthetic/higher-order-N20-seed0")
    function = problem.oracle.function
    assert problem.delta((4, 5, 6)) == pytest.approx(function.loss((4, 5, 6)) - function.constant)


# --- names, options and the registry ------------------------------------------------------


def test_problem_carries_name_size_description_and_spec():
    problem = make_synthetic_problem("synthetic/higher-order-N24-seed3")
    assert problem.name == "synthetic/higher-order-N24-seed3"
    assert problem.n_blocks == problem.oracle.n_blocks == 24
    assert "higher-order" in problem.description and "planted optimum" in problem.description
    assert problem.spec == {"kind": "synthetic", "family": "higher-order", "n_blocks": 24, "seed": 3, "generator": 1}
    assert isinstance(problem.oracle, SyntheticOracle)


@pytest.mark.parametrize("name", ["synthetic/cubic-N30-seed0", "synthetic/quadratic-N030-seed0", "synthetic/quadratic-N30", "nonsense", "synthetic/quadratic-N30-seed01"])
def test_unknown_names_are_refused_with_the_known_names(name):
    with pytest.raises(UnknownProblem) as raised:
        problems.get(name)
    message = str(raised.value)
    assert "\n" not in message
    assert "synthetic/<quadratic|higher-order>-N<2..256>-seed<seed>" in message


@pytest.mark.parametrize("n_blocks", [0, 1, 257])
def test_block_counts_outside_2_to_256_are_refused(n_blocks):
    with pytest.raises(BadInput, match="2..256"):
        problems.get(f"synthetic/quadratic-N{n_blocks}-seed0")


def test_any_block_count_and_seed_in_range_resolves():
    for name in ("synthetic/quadratic-N2-seed0", "synthetic/higher-order-N256-seed123456"):
        problem = problems.get(name)
        assert problem.n_blocks == int(name.split("-N")[1].split("-")[0])


def test_options_common_to_all_problems_are_accepted_and_unused():
    plain = problems.get("synthetic/quadratic-N20-seed0")
    other = problems.get("synthetic/quadratic-N20-seed0", oracle="replay", table="t.h5", device="cuda", on_miss="strict")
    assert other.oracle.fingerprint == plain.oracle.fingerprint
    assert other.loss((3, 4)) == plain.loss((3, 4))


@pytest.mark.parametrize("options", [{"dtype": "bf16"}, {"oracle": "remote"}, {"cost_s": -1.0}, {"cost_s": "1"}])
def test_meaningless_options_are_refused(options):
    with pytest.raises(BadInput):
        problems.get("synthetic/quadratic-N20-seed0", **options)


def test_names_lists_synthetic_examples_that_resolve():
    listed = problems.names()
    assert "synthetic/quadratic-N30-seed0" in listed
    assert "synthetic/higher-order-N30-seed0" in listed
    for name in ("synthetic/quadratic-N30-seed0", "synthetic/higher-order-N30-seed0"):
        assert problems.get(name).name == name


def test_registered_factory_receives_name_and_options(monkeypatch):
    monkeypatch.setattr(registry, "_exact", dict(registry._exact))
    calls = []

    def factory(name, **options):
        calls.append((name, options))
        return make_synthetic_problem("synthetic/quadratic-N8-seed0")

    registry.register("toy/constant", factory)
    problem = problems.get("toy/constant", oracle="replay", table="x.h5")
    assert calls == [("toy/constant", {"oracle": "replay", "table": "x.h5"})]
    assert problem.n_blocks == 8
    assert "toy/constant" in problems.names()
    with pytest.raises(ValueError):
        registry.register("toy/constant", lambda name, **options: None)


def test_missing_lazy_module_makes_its_names_unknown(monkeypatch):
    monkeypatch.setattr(registry, "LAZY_MODULES", {"nowhere-model/": "problems.not_a_module"})
    with pytest.raises(UnknownProblem, match="nowhere-model/ppl"):
        problems.get("nowhere-model/ppl")
    assert "synthetic/quadratic-N30-seed0" in problems.names()


def test_synthetic_problems_never_import_torch():
    code = (
        "import sys, problems; p = problems.get('synthetic/higher-order-N30-seed0'); p.loss((1, 2)); "
        "problems.names(); print('torch' in sys.modules)"
    )
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
