"""The datasheet generator: the third-order figure and the commands it prints."""

import itertools
import shutil

import numpy as np
import pytest

from bench.datasheet import render, third_order
from problems.table_directories import SHIPPED_TABLES

N = 6


def table_of(function, sizes):
    subsets = [s for size in sizes for s in itertools.combinations(range(N), size)]
    masks = np.zeros((len(subsets), N), dtype=bool)
    for row, subset in enumerate(subsets):
        masks[row, list(subset)] = True
    return masks, np.array([function(set(s)) for s in subsets])


def cubic(subset):
    """Second order everywhere plus one third-order term of −0.5 on {0, 1, 2}."""
    value = 2.0 + sum(0.1 * (i + 1) for i in subset) + sum(0.03 * i * j for i, j in itertools.combinations(sorted(subset), 2))
    return value - 0.5 * ({0, 1, 2} <= subset)


def test_third_order_finds_the_one_triple_interaction():
    third = third_order(*table_of(cubic, [0, 1, 2, 3]))
    assert third["triples"] == 20 and third["largest_subset"] == [0, 1, 2]
    assert third["largest"] == pytest.approx(-0.5) and third["mean_abs"] == pytest.approx(0.5 / 20)


def test_third_order_needs_every_single_and_pair():
    masks, losses = table_of(cubic, [0, 1, 2, 3])
    keep = ~((masks.sum(axis=1) == 2) & masks[:, 4] & masks[:, 5])
    assert third_order(masks[keep], losses[keep]) is None
    assert third_order(*table_of(cubic, [0, 1, 2])) is None  # no triple


def test_datasheet_of_a_directory_outside_the_repository_names_that_directory(tmp_path):
    table = sorted(SHIPPED_TABLES.glob("*.h5"))[0]
    shutil.copy(table, tmp_path)
    verify = [line.strip() for line in render(tmp_path).splitlines() if "bench table verify" in line]
    assert verify == [f"python -m bench table verify {tmp_path / table.name} --rows 10"]
