"""The comparison metrics, on hand-made values."""

import math

import pytest

from bench.metrics import best_so_far, gap, jaccard, normalised_score, spearman


def test_jaccard_is_overlap_over_union():
    assert jaccard((1, 2, 3), (2, 3, 4)) == 0.5
    assert jaccard((1, 2), (1, 2)) == 1.0
    assert jaccard((1,), (2,)) == 0.0
    assert jaccard((), ()) == 1.0


def test_gap_is_distance_to_best_known():
    assert gap(0.25, 0.125) == 0.125
    assert gap(0.125, 0.125) == 0.0


def test_normalised_score_is_one_at_best_and_zero_at_random():
    assert normalised_score(0.1, random_mean_delta=0.5, best_delta=0.1) == 1.0
    assert normalised_score(0.5, random_mean_delta=0.5, best_delta=0.1) == 0.0
    assert normalised_score(0.3, random_mean_delta=0.5, best_delta=0.1) == pytest.approx(0.5)
    assert normalised_score(0.9, random_mean_delta=0.5, best_delta=0.1) == pytest.approx(-1.0)


def test_normalised_score_is_undefined_when_random_finds_the_best():
    assert math.isnan(normalised_score(0.1, random_mean_delta=0.1, best_delta=0.1))
    assert math.isnan(normalised_score(0.1, random_mean_delta=math.nan, best_delta=0.1))


def test_spearman_ranks():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)


def test_spearman_of_a_constant_sequence_is_undefined():
    assert math.isnan(spearman([1, 2, 3], [5, 5, 5])) and math.isnan(spearman([2, 2], [1, 3]))
    with pytest.raises(ValueError):
        spearman([1, 2], [1])


def test_best_so_far_keeps_only_improvements():
    points = [(1, 0.5), (2, 0.7), (3, 0.4), (4, math.nan), (5, 0.4), (6, 0.1)]
    assert best_so_far(points) == [[1, 0.5], [3, 0.4], [6, 0.1]]
    assert best_so_far([]) == []
