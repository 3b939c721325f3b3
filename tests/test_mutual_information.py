"""The Gaussian MI estimator against closed forms."""

import numpy as np
import pytest

from oracle.mutual_information import gaussian_mutual_information


def test_matches_the_closed_form_of_correlated_gaussians():
    rng = np.random.default_rng(0)
    rho, tokens = 0.8, 200_000
    x = rng.standard_normal((tokens, 1))
    y = rho * x + np.sqrt(1 - rho**2) * rng.standard_normal((tokens, 1))
    expected = -0.5 * np.log(1 - rho**2)
    assert gaussian_mutual_information(x, y, dims=1) == pytest.approx(expected, rel=0.02)


def test_is_invariant_to_linear_maps_and_near_zero_for_independent_vectors():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5000, 8))
    y = x @ rng.standard_normal((8, 8)) + 0.5 * rng.standard_normal((5000, 8))
    mixed = y @ rng.standard_normal((8, 8))
    assert gaussian_mutual_information(x, y, dims=8) == pytest.approx(gaussian_mutual_information(x, mixed, dims=8), rel=1e-6)
    independent = rng.standard_normal((5000, 8))
    assert gaussian_mutual_information(x, independent, dims=8) < 0.01
    assert gaussian_mutual_information(x, y, dims=8) > 1.0
