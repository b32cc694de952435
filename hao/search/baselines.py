"""Baseline solvers: uniform random sampling and exhaustive enumeration (ground truth on small spaces).

Both work in index space (see ``hao/search/_index.py``): with additive objectives scoring is a vectorized
gather, so the random solver scores >10^5 candidates per second; callable objectives are evaluated in batches.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from hao.errors import ConfigError
from hao.pareto import non_dominated
from hao.search.base import SearchProblem, Solver, register_solver
from hao.search.result import SearchResult

__all__ = ["RandomSolver", "ExhaustiveSolver"]


def _check_int(cls: str, name: str, v: Any, low: int) -> int:
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < low:
        raise ConfigError(f"The {name!r} parameter of {cls} must be an int in the range [{low}, inf). "
                          f"Got {v!r} instead.")
    return int(v)


def _keep_rows(problem: SearchProblem, values: np.ndarray, keep: str) -> np.ndarray:
    """Indices of the rows to keep: all, or the feasible Pareto rows on the problem's Pareto objectives."""
    if keep == "all":
        return np.arange(values.shape[0])
    feas = problem.feasible(values)
    idx = np.flatnonzero(feas)
    cols = [problem.names.index(n) for n in _pareto_on(problem)]
    dirs = [problem.objective(n).direction for n in _pareto_on(problem)]
    return idx[non_dominated(values[np.ix_(idx, cols)], directions=dirs)] if idx.size else idx


def _pareto_on(problem: SearchProblem) -> list[str]:
    if problem.budgets:
        return [problem.target, *[b for b in problem.budgets if b != problem.target]]
    return problem.names


@register_solver("random")
class RandomSolver(Solver):
    """Uniform random sampling (each decision uniform, like ``space.sample``), de-duplicated.

    Args:
        n_samples: candidates to draw (before de-duplication).
        seed: seed of the solver's own ``numpy.random.Generator``.
        batch: candidates drawn and scored per batch.
        keep: ``"all"`` rows in the result, or only the feasible ``"pareto"`` rows (for huge samples).
    """

    evaluation_budget = "n_samples"

    def __init__(self, n_samples: int = 1000, seed: int = 0, batch: int = 65536, keep: str = "all") -> None:
        self.n_samples = _check_int("RandomSolver", "n_samples", n_samples, 1)
        self.seed = _check_int("RandomSolver", "seed", seed, 0)
        self.batch = _check_int("RandomSolver", "batch", batch, 1)
        if keep not in ("all", "pareto"):
            raise ConfigError(f"The 'keep' parameter of RandomSolver must be 'all' or 'pareto'. Got {keep!r}.")
        self.keep = keep

    def solve(self, problem: SearchProblem, *, progress: bool = False) -> SearchResult:
        self.check_problem(problem)
        t0 = time.perf_counter()
        rng = np.random.default_rng(self.seed)
        ix = problem.index
        Gs, Us = [], []
        left = self.n_samples
        while left > 0:
            n = min(left, self.batch)
            G, U = ix.sample(rng, n)
            Gs.append(G)
            Us.append(U)
            left -= n
        G, U = np.concatenate(Gs), np.concatenate(Us)
        _, first = np.unique(ix.keys(G, U), axis=0, return_index=True)
        first.sort()
        G, U = G[first], U[first]
        values = problem.evaluate_indices(G, U)
        rows = _keep_rows(problem, values, self.keep)
        meta = {"solver": "random", "seed": self.seed, "n_samples": self.n_samples, "n_unique": int(len(first)),
                "solve_s": time.perf_counter() - t0}
        return problem.result(G[rows], U[rows], values[rows], [f"sample {i}" for i in rows], meta)


@register_solver("exhaustive")
class ExhaustiveSolver(Solver):
    """Every candidate of the space (refuses spaces larger than ``limit``).

    Args:
        limit: the largest space size accepted.
        keep: ``"all"`` rows, ``"pareto"`` (feasible Pareto rows only), or ``"auto"`` (all up to 10^5
            candidates, Pareto rows beyond).
    """

    def __init__(self, limit: int = 2_000_000, keep: str = "auto") -> None:
        self.limit = _check_int("ExhaustiveSolver", "limit", limit, 1)
        if keep not in ("all", "pareto", "auto"):
            raise ConfigError(f"The 'keep' parameter of ExhaustiveSolver must be 'all', 'pareto' or 'auto'. "
                              f"Got {keep!r}.")
        self.keep = keep

    def solve(self, problem: SearchProblem, *, progress: bool = False) -> SearchResult:
        self.check_problem(problem)
        t0 = time.perf_counter()
        size = problem.space.size()
        keep = self.keep if self.keep != "auto" else ("all" if size <= 100_000 else "pareto")
        Gk, Uk, Vk = [], [], []
        it = problem.index.enumerate(limit=self.limit)
        if progress:
            from tqdm.auto import tqdm
            it = tqdm(it, desc="exhaustive", leave=False)
        for G, U in it:
            V = problem.evaluate_indices(G, U)
            rows = _keep_rows(problem, V, keep)
            Gk.append(G[rows])
            Uk.append(U[rows])
            Vk.append(V[rows])
        G, U, V = np.concatenate(Gk), np.concatenate(Uk), np.concatenate(Vk)
        if keep == "pareto":
            rows = _keep_rows(problem, V, "pareto")
            G, U, V = G[rows], U[rows], V[rows]
        meta = {"solver": "exhaustive", "space_size": str(size), "kept": keep, "solve_s": time.perf_counter() - t0}
        return problem.result(G, U, V, "exhaustive", meta)
