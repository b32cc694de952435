"""hao.pareto: dominance with ties, exact hypervolume against a brute-force cell count."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from hao.errors import ConfigError
from hao.pareto import dominates, hypervolume, non_dominated, pareto_front


def brute_non_dominated(F: np.ndarray) -> np.ndarray:
    return np.array([not any(dominates(F[j], F[i]) for j in range(len(F)) if j != i) for i in range(len(F))])


def brute_hypervolume(F: np.ndarray, ref: np.ndarray) -> float:
    """Sum of the grid cells (on the points' own coordinates) dominated by some point."""
    F = F[np.all(F < ref, axis=1)]
    if len(F) == 0:
        return 0.0
    axes = [np.unique(np.append(F[:, d], ref[d])) for d in range(F.shape[1])]
    total = 0.0
    for cell in itertools.product(*(range(len(a) - 1) for a in axes)):
        lo = np.array([axes[d][c] for d, c in enumerate(cell)])
        hi = np.array([axes[d][c + 1] for d, c in enumerate(cell)])
        if np.any(np.all(F <= lo, axis=1)):
            total += float(np.prod(hi - lo))
    return total


@pytest.mark.parametrize("dim", [2, 3, 4])
@pytest.mark.parametrize("seed", range(15))
def test_non_dominated_matches_brute_force(dim: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    F = rng.integers(0, 5, size=(int(rng.integers(1, 40)), dim)).astype(float)  # many ties
    assert np.array_equal(non_dominated(F), brute_non_dominated(F))
    first = non_dominated(F, keep="first")
    assert first.sum() == len(np.unique(F[brute_non_dominated(F)], axis=0))


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("seed", range(20))
def test_hypervolume_matches_brute_force(dim: int, seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(1, 12 if dim == 3 else 30))
    F = rng.random((n, dim)) if seed % 2 else rng.integers(0, 6, size=(n, dim)).astype(float)
    ref = np.full(dim, 1.1 if seed % 2 else 5.5)
    assert hypervolume(F, ref) == pytest.approx(brute_hypervolume(F, ref), rel=1e-12, abs=1e-12)


def test_hypervolume_edge_cases() -> None:
    assert hypervolume(np.zeros((0, 2)), [1, 1]) == 0.0
    assert hypervolume([[2.0, 2.0]], [1.0, 1.0]) == 0.0          # does not dominate the reference
    assert hypervolume([[0.0, 0.0]], [1.0, 2.0]) == pytest.approx(2.0)
    with pytest.raises(ConfigError, match="2 or 3 objectives"):
        hypervolume(np.zeros((2, 4)), [1, 1, 1, 1])
    with pytest.raises(ConfigError, match="one value per objective"):
        hypervolume([[0.0, 0.0]], [1.0])
    with pytest.raises(ConfigError, match="NaN"):
        non_dominated([[0.0, np.nan]])


def test_pareto_front_sorted_distinct() -> None:
    F = np.array([[3, 1], [1, 3], [1, 3], [2, 2], [3, 3]], dtype=float)
    assert pareto_front(F).tolist() == [[1, 3], [2, 2], [3, 1]]


def test_directions_flip_columns_everywhere() -> None:
    """A maximised column behaves exactly like its negation minimised."""
    rng = np.random.default_rng(0)
    F = rng.integers(0, 8, size=(200, 2)).astype(float)
    dirs = ["maximize", "minimize"]
    neg = F * [-1.0, 1.0]
    np.testing.assert_array_equal(non_dominated(F, directions=dirs), non_dominated(neg))
    front = pareto_front(F, directions=dirs)
    np.testing.assert_array_equal(np.unique(front * [-1.0, 1.0], axis=0), np.unique(pareto_front(neg), axis=0))
    assert hypervolume(F, ref=[-1.0, 9.0], directions=dirs) == pytest.approx(hypervolume(neg, ref=[1.0, 9.0]))
    assert dominates([5, 1], [4, 2], dirs) and not dominates([4, 2], [5, 1], dirs)
    with pytest.raises(ConfigError, match="directions"):
        non_dominated(F, directions=["up", "minimize"])
