"""Gaussian mutual information between two sets of hidden-state vectors (MI-PRUN's block
importance). The paper does not publish its estimator; this is the default ALGORITHMS.md §4.7
proposes: reduce each side to its leading principal components, then
I = −½ Σ_c log(1 − ρ_c²) over the canonical correlations ρ_c of the reduced vectors — the exact
MI of jointly Gaussian variables, which is invariant to invertible linear maps of either side."""

import numpy as np


def gaussian_mutual_information(x: np.ndarray, y: np.ndarray, dims: int = 64) -> float:
    """MI in nats between paired rows of x [tokens, width] and y [tokens, width]."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must pair the same tokens, got {x.shape[0]} and {y.shape[0]}")
    return canonical_information(principal_basis(x, dims), principal_basis(y, dims))


def principal_basis(values: np.ndarray, dims: int = 64) -> np.ndarray:
    """Orthonormal [tokens, d] basis of the leading d ≤ dims principal components of `values`
    (d also at most a quarter of the tokens, so the correlations are not overfitted)."""
    dims = min(dims, values.shape[0] // 4, values.shape[1])
    centred = values.astype(np.float64) - values.mean(axis=0)
    left, _, _ = np.linalg.svd(centred, full_matrices=False)
    return left[:, :dims]


def canonical_information(basis_x: np.ndarray, basis_y: np.ndarray) -> float:
    """Gaussian MI of two token-paired orthonormal bases: for orthonormal bases of the two
    column spaces, the singular values of Qxᵀ Qy are the canonical correlations."""
    correlations = np.linalg.svd(basis_x.T @ basis_y, compute_uv=False)
    correlations = np.clip(correlations, 0.0, 1.0 - 1e-12)
    return float(-0.5 * np.sum(np.log1p(-(correlations**2))))
