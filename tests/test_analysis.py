"""The report's analyses, on hand-made results rows."""

import math

import numpy as np
import pytest

from bench import analysis


def row(solver, seed, subset, delta, problem="m/ppl", k=2, evaluations=10, trace=None):
    return {"problem": problem, "k": k, "solver": solver, "seed": seed, "subset": list(subset), "delta": delta,
            "n_evaluations": evaluations, "trace": trace}


ROWS = [
    row("greedy", 0, (1, 2), 0.3), row("greedy", 1, (1, 2), 0.3),
    row("random", 0, (1, 3), 0.5), row("random", 1, (3, 4), 0.7),
]


def test_cells_group_by_problem_k_and_solver_with_seeds_in_order():
    cells = analysis.by_cell(list(reversed(ROWS)))
    assert list(cells) == [("m/ppl", 2)]
    assert list(cells["m/ppl", 2]) == ["greedy", "random"]
    assert [r["seed"] for r in cells["m/ppl", 2]["random"]] == [0, 1]


def test_removal_frequency_is_the_share_of_seeds():
    frequency = analysis.removal_frequency(analysis.by_cell(ROWS)["m/ppl", 2], n_blocks=5)
    assert frequency.tolist() == [[0, 1, 1, 0, 0], [0, 0.5, 0, 1, 0.5]]


def test_agreement_matrix_is_mean_jaccard_over_seed_pairings():
    matrix = analysis.agreement_matrix(analysis.by_cell(ROWS)["m/ppl", 2])
    # greedy vs random: J({1,2},{1,3}) = 1/3, J({1,2},{3,4}) = 0, twice each.
    assert matrix[0, 1] == matrix[1, 0] == pytest.approx(1 / 6)
    assert matrix[0, 0] == 1.0  # the same subset under both seeds
    assert matrix[1, 1] == pytest.approx(1 / 3)  # J({1,3},{3,4})


def test_across_objectives_compares_subsets_and_rankings():
    rows = [row(s, 0, subset, delta, problem="m/ppl") for s, subset, delta in
            [("a", (1, 2), 0.1), ("b", (1, 3), 0.2), ("c", (4, 5), 0.3)]]
    rows += [row(s, 0, subset, delta, problem="m/margin") for s, subset, delta in
             [("a", (1, 2), 0.3), ("b", (2, 3), 0.2), ("c", (4, 5), 0.1)]]
    rows.append(row("a", 0, (1, 2), 0.1, problem="other/ppl"))
    (pair,) = analysis.across_objectives(analysis.by_cell(rows))
    assert (pair.model, pair.k, pair.objectives, pair.n_solvers) == ("m", 2, ("margin", "ppl"), 3)
    assert pair.jaccard == {"a": 1.0, "b": pytest.approx(1 / 3), "c": 1.0}
    assert pair.rho == pytest.approx(-1.0)  # the rankings are reversed


def test_inter_solver_variance_is_population_variance_of_means():
    runs = analysis.by_cell(ROWS)["m/ppl", 2]
    assert analysis.inter_solver_variance(runs) == pytest.approx(np.var([0.3, 0.6]))


def test_anytime_curve_averages_seeds_from_where_all_have_a_value():
    rows = [row("ga", 0, (1, 2), 0.1, evaluations=5, trace=[[2, 0.5], [5, 0.1]]),
            row("ga", 1, (1, 2), 0.2, evaluations=9, trace=[[3, 0.4], [4, 0.2]])]
    evaluations, best = analysis.anytime_curve(rows)
    assert evaluations.tolist() == [3, 4, 5, 9]  # to the last evaluation, not the last improvement
    assert best.tolist() == pytest.approx([0.45, 0.35, 0.15, 0.15])
    assert [len(part) for part in analysis.anytime_curve([row("x", 0, (), 0, trace=[])])] == [0, 0]


def test_pareto_front_keeps_the_undominated_points_by_cost():
    points = [(10, 0.5), (20, 0.3), (15, 0.6), (40, 0.3), (50, 0.1)]
    assert analysis.pareto_front(points) == [0, 1, 4]


def test_landscape_interactions_and_additive_prediction():
    singles = np.array([0.1, 0.2, 0.4])
    pairs = np.full((3, 3), np.nan)
    pairs[0, 1] = pairs[1, 0] = 0.5
    landscape = analysis.Landscape("m/ppl", "hand", singles, pairs)
    assert landscape.interaction[0, 1] == pytest.approx(0.2)
    assert math.isnan(landscape.interaction[0, 2])
    assert landscape.additive_prediction((0, 2)) == pytest.approx(0.5)
