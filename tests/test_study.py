"""The study's analyses on constructed rows and scores, where the right answer is known."""

import numpy as np
import pytest
from scipy import stats

from bench import study
from bench.downstream import SetScores
from bench.study import REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE

N = 12


def row(problem, k, solver, seed, subset, loss=1.0):
    return {"problem": problem, "k": k, "solver": solver, "seed": seed, "subset": list(subset), "loss": loss,
            "delta": loss - 1.0, "n_evaluations": 10}


def cells_of(rows):
    from bench.analysis import by_cell

    return by_cell(rows)


def scores_with(correct_share: float, items: int = 200, seed: int = 0) -> study.Scores:
    """Six tasks whose headline outcomes have exactly `correct_share` correct, in a seeded order."""
    rng = np.random.default_rng(seed)
    outcomes = {}
    for task in study.TASKS:
        values = np.zeros(items)
        values[: round(correct_share * items)] = 1
        rng.shuffle(values)
        outcomes[task] = SetScores(acc=values, acc_norm=values)
    return outcomes


def test_objective_overlap_detects_objectives_that_decide_the_subset():
    solvers = ["a", "b", "c", "d", "e", "f", "g"]
    rows = [row("m/ppl", 3, s, 0, (1, 2, 3)) for s in solvers] + [row("m/margin", 3, s, 0, (7, 8, 9)) for s in solvers]
    (found,) = study.objective_overlap(cells_of(rows), {"m/ppl": N, "m/margin": N})
    assert found.within == 1.0 and found.across == 0.0
    assert found.p_exchange < 0.05
    assert all(p == 1.0 for p in found.p_overlap.values()), "disjoint subsets are never more overlap than chance"


def test_objective_overlap_sees_no_objective_effect_when_each_solver_keeps_its_subset():
    subsets = {"a": (0, 1, 2), "b": (3, 4, 5), "c": (6, 7, 8), "d": (9, 10, 11)}
    rows = [row(f"m/{objective}", 3, s, 0, subset) for objective in ("ppl", "margin") for s, subset in subsets.items()]
    (found,) = study.objective_overlap(cells_of(rows), {"m/ppl": N, "m/margin": N})
    assert found.across == 1.0 and found.within == 0.0
    assert found.p_exchange > 0.5
    assert all(p < 0.01 for p in found.p_overlap.values()), "identical subsets overlap more than chance"


def test_rank_alignment_is_positive_when_lower_loss_means_higher_accuracy():
    shares = [0.8, 0.7, 0.6, 0.5, 0.4]
    rows = [row("m/ppl", 2, f"s{i}", 0, (i, i + 1), loss=1.0 + i) for i in range(5)]
    scores = {("m", (i, i + 1)): scores_with(share, seed=i) for i, share in enumerate(shares)}
    (found,) = study.rank_alignment(cells_of(rows), scores)
    assert found.rho == pytest.approx(1.0)
    assert found.interval[0] > 0.5
    reversed_scores = {("m", (i, i + 1)): scores_with(share, seed=i) for i, share in enumerate(reversed(shares))}
    (found,) = study.rank_alignment(cells_of(rows), reversed_scores)
    assert found.rho == pytest.approx(-1.0) and found.interval[1] < -0.5


def test_rank_alignment_interval_counts_the_few_models_not_only_the_items():
    # Eight models, many items each: their accuracies are known almost exactly, so only the
    # choice of models leaves ρ uncertain; one model out of line makes that uncertainty large.
    shares = [0.8, 0.75, 0.7, 0.65, 0.6, 0.55, 0.5, 0.2]
    losses = [1, 2, 3, 4, 5, 6, 7, 0.5]
    rows = [row("m/ppl", 2, f"s{i}", 0, (i, i + 1), loss=loss) for i, loss in enumerate(losses)]
    scores = {("m", (i, i + 1)): scores_with(share, items=4000, seed=i) for i, share in enumerate(shares)}
    (found,) = study.rank_alignment(cells_of(rows), scores)
    assert found.rho == pytest.approx(stats.spearmanr(-np.array(losses), shares).statistic)
    assert found.interval[0] < 0 < found.interval[1], "dropping or doubling the outlier moves ρ across 0"
    assert found.interval[0] <= found.rho <= found.interval[1]


def test_search_against_objective_separates_a_large_objective_effect_from_small_solver_spread():
    rows, scores = [], {}
    for index, solver in enumerate(["a", "b", "c", "d"]):
        for objective, base, offset in (("ppl", 0.40, 0), ("margin", 0.70, 100)):
            subset = (index + offset // 100 * 5,)
            rows.append(row(f"m/{objective}", 1, solver, 0, subset))
            scores["m", subset] = scores_with(base + 0.01 * index, seed=index + offset)
    (found,) = study.search_against_objective(cells_of(rows), scores)
    assert found.switch[0] == pytest.approx(30.0, abs=1.0)
    assert found.within[0] < 3.0
    assert found.excess[0] > 20.0
    assert found.variance["ppl"][0] == pytest.approx(np.var([40, 41, 42, 43]), abs=0.5)


def test_criterion_alignment_counts_misranked_pairs_with_ties_as_half():
    perfect = study.criterion_alignment("m/ppl", "cosine", "Δ", np.array([1.0, 2.0, 3.0]), np.array([0.1, 0.2, 0.3]))
    assert perfect.misranked == 0.0 and perfect.spearman == pytest.approx(1.0)
    reversed_ = study.criterion_alignment("m/ppl", "cosine", "Δ", np.array([3.0, 2.0, 1.0]), np.array([0.1, 0.2, 0.3]))
    assert reversed_.misranked == 1.0
    tied = study.criterion_alignment("m/ppl", "cosine", "Δ", np.array([1.0, 1.0, 3.0]), np.array([0.1, 0.2, 0.3]))
    assert tied.misranked == pytest.approx(0.5 / 3)


def test_verdicts_follow_their_rules():
    overlap = study.ObjectiveOverlap("m", 4, ("margin", "ppl"), {}, {}, 0.5, 0.1, 0.01, 5)
    undecided = study.ObjectiveOverlap("m", 6, ("margin", "ppl"), {}, {}, 0.5, 0.4, 0.30, 5)
    negative = study.RankAlignment("m/ppl", 4, ((),) * 5, (1.0,) * 5, (50.0,) * 5, -0.6, (-0.9, -0.1))
    unresolved = study.RankAlignment("m/ppl", 4, ((),) * 5, (1.0,) * 5, (50.0,) * 5, -0.7, (-0.9, 0.2))
    positive = study.RankAlignment("m/ppl", 6, ((),) * 5, (1.0,) * 5, (50.0,) * 5, 0.9, (0.6, 1.0))
    contrast = study.SearchAgainstObjective("m", 4, ("margin", "ppl"), ("a", "b", "c"), {}, (1.0, (0.5, 1.5)),
                                            (9.0, (7.0, 11.0)), (5.0, 10.0))
    weak = study.CriterionAlignment("m/margin", "cosine", "Δ calibration loss", -0.3, -0.2, 0.55)
    strong = study.CriterionAlignment("m/ppl", "cosine", "Δ calibration loss", 0.9, 0.8, 0.1)
    found = {(v.finding[:5], v.model): v.verdict for v in study.verdicts(
        [overlap], [negative], [contrast], [weak, strong])}
    assert found["(i) t", "m, margin vs ppl"] == REPRODUCED
    assert found["(ii) ", "m"] == REPRODUCED
    assert found["(iii)", "m, margin vs ppl"] == REPRODUCED
    assert found["cosin", "m/margin"] == REPRODUCED and found["cosin", "m/ppl"] == NOT_REPRODUCED
    found = {v.finding[:5]: v.verdict for v in study.verdicts([overlap, undecided], [negative, positive], [], [])}
    assert found["(i) t"] == INCONCLUSIVE
    assert found["(ii) "] == INCONCLUSIVE
    found = {v.finding[:5]: v.verdict for v in study.verdicts([undecided], [positive], [], [])}
    assert found["(i) t"] == NOT_REPRODUCED and found["(ii) "] == NOT_REPRODUCED
    # A negative ρ whose interval reaches above 0 is no evidence of disagreement yet.
    found = {v.finding[:5]: v.verdict for v in study.verdicts([], [unresolved], [], [])}
    assert found["(ii) "] == INCONCLUSIVE


def test_each_pair_of_objectives_gets_its_own_verdict():
    # A third objective that agrees with one of the others must not blur the first pair's verdict.
    differ = study.ObjectiveOverlap("m", 4, ("margin", "ppl"), {}, {}, 0.5, 0.1, 0.01, 5)
    agree = study.ObjectiveOverlap("m", 4, ("kl", "ppl"), {}, {}, 0.6, 0.8, 0.50, 5)
    objective_matters = study.SearchAgainstObjective("m", 4, ("margin", "ppl"), ("a", "b", "c"), {},
                                                     (1.0, (0.5, 1.5)), (9.0, (7.0, 11.0)), (5.0, 10.0))
    same_models = study.SearchAgainstObjective("m", 4, ("kl", "ppl"), ("a", "b", "c"), {},
                                               (1.0, (0.5, 1.5)), (0.0, (0.0, 0.0)), (-1.5, -0.5))
    found = {(v.finding[:5], v.model): v.verdict
             for v in study.verdicts([differ, agree], [], [objective_matters, same_models], [])}
    assert found == {("(i) t", "m, kl vs ppl"): NOT_REPRODUCED, ("(i) t", "m, margin vs ppl"): REPRODUCED,
                     ("(iii)", "m, kl vs ppl"): NOT_REPRODUCED, ("(iii)", "m, margin vs ppl"): REPRODUCED}


def test_solver_rows_give_one_row_per_distinct_subset_with_intervals_on_every_number():
    rows = [row("m/ppl", 2, "greedy", seed, (1, 2)) for seed in (0, 1)] + [row("m/ppl", 2, "random", 0, (3, 4))]
    scores = {("m", (1, 2)): {**scores_with(0.6), "heldout-wiki": SetScores(nll=np.array([2.0, 2.2, 1.8]))}}
    found = study.solver_rows(cells_of(rows), scores)
    assert [(r.solver, r.seeds, r.subset) for r in found] == [("greedy", (0, 1), (1, 2)), ("random", (0,), (3, 4))]
    greedy, unevaluated = found
    assert greedy.accuracy["mean"] == pytest.approx(60.0)
    assert all(low < greedy.accuracy[name] < high for name, (low, high) in greedy.interval.items())
    value, (low, high) = greedy.perplexity["heldout-wiki"]
    assert value == pytest.approx(np.exp(2.0)) and low < value < high
    assert unevaluated.accuracy is None and unevaluated.perplexity == {}


def test_one_shot_against_iterative_reads_both_answers_of_each_criterion_from_the_table(tmp_path):
    from bench.study_report import one_shot_against_iterative
    from oracle.evaluation import Evaluation
    from oracle.table import EvaluationTable

    path = tmp_path / "m__ppl.h5"
    with EvaluationTable.create(path, fingerprint="f", n_blocks=6, n_samples=1, spec={}) as table:
        table.append(Evaluation(subset, loss, np.array([loss]), 1.0, "live")
                     for subset, loss in [((), 1.0), ((0, 1), 1.5), ((1, 4), 1.25)])
        table.set_attribute("block_scores/cosine", [0.1, 0.2, 0.9, 0.8, 0.7, 0.6])  # one-shot: {0, 1}
        table.set_attribute("removal_order/cosine", [4, 1, 0, 2, 3])  # iterative: {1, 4}
        table.set_attribute("removal_order/angular", [5, 0, 1, 2, 3])  # {0, 5}: not in the table
    cells = cells_of([row("m/ppl", 2, "greedy", 0, (1, 4), loss=1.25),
                      {**row("m/ppl", 2, "oneshot", 0, (2, 3), loss=2.0), "surrogate": 1}])
    (found,) = one_shot_against_iterative(cells, {"m/ppl": 6}, {"m/ppl": path})
    assert found.lines == [["m/ppl", "2", "0.5000 {0,1}", "0.2500 {1,4}", "—", "not in table {0,5}", "1.0000 ~",
                            "0.2500"]]


def test_criteria_are_judged_against_each_sets_single_removal_damage(tmp_path):
    """Against calibration Δ and, once singles are evaluated downstream, each set's damage (with
    the ppl problem's criteria); a set whose damage is the same for every block ranks nothing."""
    from bench.study_report import block_relevance
    from oracle.evaluation import Evaluation
    from oracle.table import EvaluationTable

    losses = {(): 1.0, (0,): 3.0, (1,): 1.5, (2,): 1.2, (3,): 2.0}
    with EvaluationTable.create(tmp_path / "t.h5", fingerprint="f", n_blocks=4, n_samples=0, spec={}) as table:
        table.append([Evaluation(subset, loss, None, 1.0, "live") for subset, loss in losses.items()])
        table.set_attribute("block_scores/cosine", [0.9, 0.1, 0.2, 0.3])
    correct = {(): 8, (0,): 2, (1,): 7, (2,): 8, (3,): 5}  # of 8 items
    scores = {("m", subset): {"arc_easy": SetScores(acc=np.zeros(8), acc_norm=np.arange(8) < right),
                              "winogrande": SetScores(acc=np.ones(8), acc_norm=np.ones(8))}
              for subset, right in correct.items()}
    criteria, relevance = block_relevance({("m/ppl", 1): {}}, {"m/ppl": 4}, {"m/ppl": tmp_path / "t.h5"}, scores)
    labels, matrix = relevance["m"]
    assert labels == ["Δ ppl", "arc_easy accuracy drop", "winogrande accuracy drop"]
    np.testing.assert_allclose(matrix[1], [75.0, 12.5, 0.0, 37.5])
    assert [(c.problem, c.criterion, c.target) for c in criteria] == [
        ("m/ppl", "cosine", "Δ calibration loss"), ("m/ppl", "cosine", "arc_easy accuracy drop")]
    assert criteria[1].spearman == pytest.approx(0.8) and criteria[1].misranked == pytest.approx(1 / 6)


def test_the_report_states_how_many_items_each_task_holds():
    from bench.study_report import _items_per_task

    assert _items_per_task({("m", ()): scores_with(0.5, items=100)}) == "100 per task"
    mixed = {("m", ()): scores_with(0.5, items=100), ("m", (1,)): scores_with(0.5, items=30)}
    assert _items_per_task(mixed) == ", ".join(f"{task} 30/100" for task in study.TASKS)
    assert _items_per_task({}) == "none stored"
