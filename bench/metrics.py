"""Quantities the runner and its leaderboard compare solvers by: pure functions of results."""

import math
from collections.abc import Iterable, Sequence

from scipy.stats import spearmanr


def jaccard(a: Iterable[int], b: Iterable[int]) -> float:
    """|A ∩ B| / |A ∪ B| of two subsets of blocks; two empty subsets are identical (1.0)."""
    a, b = set(a), set(b)
    union = a | b
    return len(a & b) / len(union) if union else 1.0


def gap(delta: float, best_delta: float) -> float:
    """How much worse Δ is than the best-known Δ of the same (problem, k): Δ − Δ_best (≥ 0)."""
    return delta - best_delta


def normalised_score(delta: float, random_mean_delta: float, best_delta: float) -> float:
    """(Δ_random_mean − Δ) / (Δ_random_mean − Δ_best): 1 = the best known, 0 = random search's
    mean under the same budget, negative = worse than random. NaN when random already finds the
    best known (the scale has no width)."""
    width = random_mean_delta - best_delta
    if not math.isfinite(width) or width <= 0:
        return math.nan
    return (random_mean_delta - delta) / width


def best_so_far(points: Iterable[tuple[int, float]]) -> list[list]:
    """The anytime curve of a search: from (unique evaluations so far, Δ) of each k-subset it
    evaluated, in order, the [evaluations, best Δ] pairs at which the best Δ improved."""
    curve: list[list] = []
    for evaluations, delta in points:
        if math.isfinite(delta) and (not curve or delta < curve[-1][1]):
            curve.append([evaluations, delta])
    return curve


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation of two paired sequences (e.g. surrogate vs true Δ)."""
    if len(x) != len(y):
        raise ValueError(f"spearman needs paired values, got {len(x)} and {len(y)}")
    if len(set(x)) < 2 or len(set(y)) < 2:
        return math.nan  # a constant sequence has no ranking to correlate with
    return float(spearmanr(x, y).statistic)
