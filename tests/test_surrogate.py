"""The surrogate miss policy: its features, its fit on synthetic functions whose truth is known,
its honest hold-out error, and replay with on_miss='surrogate' (answers marked, counted, never
stored)."""

import itertools

import numpy as np
import pytest

from oracle.evaluation import Evaluation
from oracle.memo import ReplayOracle
from oracle.surrogate import CANDIDATES, Surrogate, holdout_error, masks_of, quadratic_features, run_features
from oracle.table import EvaluationTable
from problems.synthetic import SyntheticFunction, SyntheticSpec

N = 14


def function(family: str) -> SyntheticFunction:
    return SyntheticFunction(SyntheticSpec(family, N, 0))


def up_to_pairs() -> list[tuple[int, ...]]:
    return [()] + [s for size in (1, 2) for s in itertools.combinations(range(N), size)]


def random_subsets(size: int, count: int, seed: int = 0) -> list[tuple[int, ...]]:
    rng = np.random.default_rng(seed)
    return sorted({tuple(sorted(rng.choice(N, size, replace=False).tolist())) for _ in range(count)})


def test_run_features_count_runs_and_long_runs():
    masks = masks_of([(), (3,), (1, 2, 3, 7, 8), (0, 1, 2, 3, 4, 5, 9)], 12)
    # runs, Σ max(r−2, 0), Σ max(r−2, 0)², runs ≥ 3, ≥ 4, ≥ 6
    assert run_features(masks).tolist() == [
        [0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0], [2, 1, 1, 1, 0, 0], [2, 4, 16, 1, 1, 1]]


def test_second_order_truth_is_recovered_from_singles_and_pairs():
    truth = function("quadratic")
    subsets = up_to_pairs()
    surrogate = Surrogate(masks_of(subsets, N), truth.losses(subsets))
    larger = random_subsets(4, 200) + random_subsets(6, 200, seed=1)
    error = np.abs(surrogate.predict(larger) - truth.losses(larger))
    spread = np.ptp(truth.losses(larger))
    assert error.max() < 0.02 * spread


def test_second_order_stage_interpolates_the_singles_and_pairs_of_any_function():
    """Not quadratic and noisy: the stage is still the exact expansion L(∅) + Σ Δ_i + Σ J_ij, so
    it returns every fitted single and pair as measured; without every pair it falls back to
    ridge, which does not."""
    rng = np.random.default_rng(4)
    subsets = up_to_pairs()
    truth = function("higher-order").losses(subsets) + rng.normal(0, 0.05, len(subsets))
    extra = random_subsets(5, 100, seed=6)
    masks = masks_of(subsets + extra, N)
    losses = np.concatenate([truth, function("higher-order").losses(extra)])
    surrogate = Surrogate(masks, losses)
    assert surrogate.exact_second_order and "exact" in surrogate.penalties
    stage = surrogate.second_order.predict(quadratic_features(masks_of(subsets, N)))
    assert np.abs(stage - truth).max() < 1e-9
    partial = Surrogate(masks[1:], losses[1:])  # ∅ missing
    assert not partial.exact_second_order and "ridge α" in partial.penalties


def test_larger_subsets_teach_what_pairs_cannot():
    truth = function("higher-order")
    test = random_subsets(7, 300, seed=5)
    pairs_only = up_to_pairs()
    with_larger = pairs_only + random_subsets(5, 300, seed=2) + random_subsets(8, 300, seed=3)
    errors = []
    for subsets in (pairs_only, with_larger):
        surrogate = Surrogate(masks_of(subsets, N), truth.losses(subsets))
        errors.append(np.mean(np.abs(surrogate.predict(test) - truth.losses(test))))
    assert errors[1] < 0.1 * errors[0]


def test_holdout_error_is_measured_on_unseen_subsets_of_size_at_least_four():
    truth = function("higher-order")
    subsets = up_to_pairs() + random_subsets(4, 300, seed=2) + random_subsets(6, 300, seed=3)
    masks, losses = masks_of(subsets, N), truth.losses(subsets)
    error = holdout_error(masks, losses, seed=0)
    large = int((masks.sum(axis=1) >= 4).sum())
    assert error.held_out == round(0.2 * large) and error.fitted_on == len(subsets) - error.held_out
    assert 0 < error.mae < 0.1 * np.ptp(losses)
    assert error.spearman > 0.8
    assert error.mae < error.second_order_mae  # the larger subsets taught it the run terms
    assert error.best_of_candidates > 2 / CANDIDATES
    assert "MAE" in error.line() and "Spearman" in error.line()
    assert holdout_error(masks_of(up_to_pairs(), N), truth.losses(up_to_pairs())) is None


def test_surrogate_replay_marks_counts_and_never_stores(tmp_path):
    truth = function("quadratic")
    subsets = up_to_pairs()
    path = tmp_path / "pairs.h5"
    with EvaluationTable.create(path, fingerprint="surrogate-test", n_blocks=N, n_samples=1, spec={}) as table:
        table.append([Evaluation(s, float(loss), None, 0.1, "live") for s, loss in zip(subsets, truth.losses(subsets))])
    before = path.read_bytes()
    with EvaluationTable.open(path) as table:
        oracle = ReplayOracle(table, on_miss="surrogate")
        pair, triple = oracle.evaluate([(0, 1), (2, 5, 9)])
        assert (pair.source, pair.loss) == ("table", pytest.approx(truth.loss((0, 1))))
        assert triple.source == "surrogate" and triple.per_sample is None
        assert triple.loss == pytest.approx(truth.loss((2, 5, 9)), abs=0.02)
        assert oracle.counters.as_dict() == {"requests": 2, "hits": 1, "evaluations": 0, "surrogate": 1, "cost_s": 0.0}
        assert len(table) == len(subsets)
    assert path.read_bytes() == before


def test_exact_over_surrogate_answers_is_not_certified(tmp_path):
    from problems.problem import Problem
    from solvers import get

    truth = function("quadratic")
    path = tmp_path / "pairs.h5"
    with EvaluationTable.create(path, fingerprint="surrogate-test", n_blocks=N, n_samples=1, spec={}) as table:
        table.append([Evaluation(s, float(loss), None, 0.1, "live")
                      for s, loss in zip(up_to_pairs(), truth.losses(up_to_pairs()))])
    with EvaluationTable.open(path) as table:
        problem = Problem("pairs", N, ReplayOracle(table, on_miss="surrogate"), "pairs and a surrogate")
        at_two = get("exact").solve(problem, 2)
        at_three = get("exact").solve(problem, 3)
    assert at_two.certified and at_two.n_surrogate == 0 and not at_two.predicted
    assert not at_three.certified and at_three.n_surrogate == len(list(itertools.combinations(range(N), 3)))
    assert at_three.predicted  # its loss is the surrogate's answer
