"""Pareto dominance and exact hypervolume, in one place.

Every function here works on an ``(n_points, n_objectives)`` array and **minimises every column** unless
``directions`` says otherwise (one ``"minimize"``/``"maximize"`` per column, as objectives declare it). Ties are
handled explicitly: identical rows are all non-dominated (``keep="all"``) or only their first occurrence is kept
(``keep="first"``), the latter is what a solver wants when it reduces a unit's options.

>>> import numpy as np
>>> F = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 3.0]])
>>> non_dominated(F).tolist()
[True, True, False]
>>> hypervolume(F, ref=[4.0, 4.0])
5.0
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hao.errors import ConfigError

__all__ = ["non_dominated", "pareto_front", "hypervolume", "dominates", "DIRECTIONS", "signs"]

#: The two directions an objective can have.
DIRECTIONS = ("minimize", "maximize")


def signs(directions: Sequence[str] | None, n: int) -> np.ndarray:
    """``+1`` per minimised and ``-1`` per maximised column (all ``+1`` when ``directions`` is None); multiply a
    column by its sign to turn every problem into minimisation."""
    if directions is None:
        return np.ones(n)
    d = list(directions)
    if len(d) != n or any(x not in DIRECTIONS for x in d):
        raise ConfigError(f"directions must list one of {DIRECTIONS} per objective ({n}), got {d!r}.")
    return np.array([1.0 if x == "minimize" else -1.0 for x in d])


def _as_matrix(points: Sequence[Sequence[float]] | np.ndarray, what: str = "points") -> np.ndarray:
    F = np.asarray(points, dtype=np.float64)
    if F.ndim == 1 and F.size == 0:
        return F.reshape(0, 0)
    if F.ndim != 2:
        raise ConfigError(f"{what} must be a 2-D array (n_points, n_objectives), got shape {F.shape}.")
    if np.isnan(F).any():
        bad = int(np.argwhere(np.isnan(F))[0, 0])
        raise ConfigError(f"{what} row {bad} contains NaN ({F[bad].tolist()}); drop or fix it before a "
                          "Pareto computation.")
    return F


def dominates(a: Sequence[float], b: Sequence[float], directions: Sequence[str] | None = None) -> bool:
    """``True`` iff ``a`` is no worse than ``b`` everywhere and strictly better somewhere (minimisation, unless
    ``directions`` says ``"maximize"`` for a column)."""
    a_, b_ = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if directions is not None:
        sg = signs(directions, a_.shape[0])
        a_, b_ = a_ * sg, b_ * sg
    return bool(np.all(a_ <= b_) and np.any(a_ < b_))


def non_dominated(points: Sequence[Sequence[float]] | np.ndarray, keep: str = "all",
                  directions: Sequence[str] | None = None) -> np.ndarray:
    """Boolean mask of the non-dominated rows of ``points`` (columns minimised unless ``directions`` says
    ``"maximize"``).

    ``keep="all"`` keeps every copy of a non-dominated row; ``keep="first"`` keeps only the first copy.
    Runs in O(n log n) for two columns and O(n * front) otherwise.
    """
    if keep not in ("all", "first"):
        raise ConfigError(f"keep must be 'all' or 'first', got {keep!r}.")
    F = _as_matrix(points)
    n = F.shape[0]
    if n == 0:
        return np.zeros(0, dtype=bool)
    if directions is not None:
        F = F * signs(directions, F.shape[1])
    # Sort lexicographically: a point can only be dominated by one that comes before it (or an equal copy).
    order = np.lexsort(F.T[::-1])
    S = F[order]
    mask_sorted = np.zeros(n, dtype=bool)
    if F.shape[1] == 1:
        best = S[0, 0]
        mask_sorted = S[:, 0] == best
    elif F.shape[1] == 2:
        # sorted by x then y: a row is non-dominated iff its y is below every earlier y, or it is an exact
        # copy of such a row (vectorized: running minimum + groups of identical rows)
        prev_min = np.concatenate(([np.inf], np.minimum.accumulate(S[:-1, 1])))
        strict = S[:, 1] < prev_min
        new_group = np.concatenate(([True], np.any(S[1:] != S[:-1], axis=1)))
        gid = np.cumsum(new_group) - 1
        mask_sorted = strict[np.flatnonzero(new_group)][gid]
    else:
        front: list[int] = []
        for i in range(n):
            p = S[i]
            if front:
                Q = S[front]
                le = np.all(Q <= p, axis=1)
                lt = np.any(Q < p, axis=1)
                if np.any(le & lt):
                    continue
            front.append(i)
            mask_sorted[i] = True
    mask = np.zeros(n, dtype=bool)
    mask[order] = mask_sorted
    if keep == "first" and mask.any():
        idx = np.flatnonzero(mask)
        _, first = np.unique(F[idx], axis=0, return_index=True)
        keep_mask = np.zeros(n, dtype=bool)
        keep_mask[idx[first]] = True
        mask = keep_mask
    return mask


def pareto_front(points: Sequence[Sequence[float]] | np.ndarray,
                 directions: Sequence[str] | None = None) -> np.ndarray:
    """The distinct non-dominated rows, sorted by the first column."""
    F = _as_matrix(points)
    if F.shape[0] == 0:
        return F
    P = np.unique(F[non_dominated(F, directions=directions)], axis=0)
    return P[np.lexsort(P.T[::-1])]


def _hv2(P: np.ndarray, ref: np.ndarray) -> float:
    # P: points strictly better than ref in both columns.
    if P.shape[0] == 0:
        return 0.0
    # Staircase sum over the front sorted by x.
    front = P[non_dominated(P, keep="first")]
    front = front[np.argsort(front[:, 0], kind="stable")]
    xs = np.append(front[1:, 0], ref[0])
    return float(np.sum((xs - front[:, 0]) * (ref[1] - front[:, 1])))


def hypervolume(points: Sequence[Sequence[float]] | np.ndarray, ref: Sequence[float],
                directions: Sequence[str] | None = None) -> float:
    """Exact hypervolume dominated by ``points`` and bounded by the reference point ``ref`` (each column
    minimised unless ``directions`` says ``"maximize"``; ``ref`` is then the worst value to count from).

    Points that do not strictly dominate ``ref`` contribute nothing. Two columns: O(n log n) staircase;
    three columns: a sweep over the third column with a 2-D staircase per slab, O(n^2 log n).
    """
    F = _as_matrix(points)
    r = np.asarray(ref, dtype=np.float64)
    if F.shape[0] == 0:
        return 0.0
    if r.shape != (F.shape[1],):
        raise ConfigError(f"ref must have one value per objective ({F.shape[1]}), got {r.tolist()}.")
    if directions is not None:
        sg = signs(directions, F.shape[1])
        F, r = F * sg, r * sg
    if F.shape[1] not in (2, 3):
        raise ConfigError(f"hypervolume is implemented exactly for 2 or 3 objectives, got {F.shape[1]}; "
                          "select 2 or 3 objective columns.")
    P = F[np.all(F < r, axis=1)]
    if P.shape[0] == 0:
        return 0.0
    if F.shape[1] == 2:
        return _hv2(P, r)
    P = P[non_dominated(P, keep="first")]
    P = P[np.argsort(P[:, 2], kind="stable")]
    zs = np.append(P[1:, 2], r[2])
    hv = 0.0
    for i in range(P.shape[0]):
        dz = zs[i] - P[i, 2]
        if dz > 0:
            hv += dz * _hv2(P[: i + 1, :2], r[:2])
    return float(hv)
