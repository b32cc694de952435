"""Conformance battery for solvers (like ``optuna/testing/pytest_storages.py``): every registered solver passes.

>>> from hao.search.testing import check_solver
>>> check_solver("random", {"n_samples": 50, "seed": 0})          # doctest: +SKIP

Checks, on small random additive instances with ties, pins and gates (:func:`random_problem`; odd seeds declare
the target maximised, so every solver is checked in both directions):

1. every row is a valid canonical candidate of the space, and its objective columns equal a recomputation;
2. ``feasible`` is exactly "every budget met", ``pareto`` rows are feasible and mutually non-dominated;
3. the same parameters give the same result twice (seeded, no global RNG: the global numpy/random states are
   unchanged by ``solve``);
4. the solver never reports a feasible value better than the true optimum (from enumeration), and an exact
   solver (``exact=True``) reaches it.
"""
from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from hao.errors import ConfigError
from hao.pareto import dominates
from hao.search.base import SearchProblem, get_solver
from hao.search.objectives import AdditiveObjective
from hao.search.tabular import TabularSpace
from hao.space import Decision, Gate, Unit

__all__ = ["random_problem", "check_solver"]


def random_problem(seed: int, n_units: int = 5, budget_quantile: float = 0.5, maximize: bool = False
                   ) -> SearchProblem:
    """A small random problem: a depth gate over the last two units, one two-decision unit, bits {2, 4, 8},
    objectives ``proxy`` (may be negative) and ``cost`` (budgeted at ``budget_quantile`` of its range).
    ``maximize=True`` turns the target into ``score = -proxy``, declared maximised (same optimum)."""
    rng = np.random.default_rng(seed)
    decisions = [Decision("depth", (0, 1, 2), "depth")]
    units = []
    for j in range(n_units):
        names = [f"u{j}.bits"]
        decisions.append(Decision(names[0], (2, 4, 8), "bits"))
        if j == 0:
            decisions.append(Decision("u0.kernel", (3, 5), "kernel"))
            names.append("u0.kernel")
        gate = Gate("depth", frozenset(v for v in (0, 1, 2) if v > j - (n_units - 2))) if j >= n_units - 2 else None
        units.append(Unit(f"u{j}", tuple(names), gate))
    space = TabularSpace(f"conformance-{seed}", decisions, units)
    objs = []
    for name in ("proxy", "cost"):
        tables = []
        for u in units:
            t = rng.random(len(space.unit_options(u))) - (0.3 if name == "proxy" else 0.0)
            if u.gate is not None:
                t[-1] = 0.0
            tables.append(t)
        objs.append(AdditiveObjective(space, name, tables, constant=float(rng.random())))
    if maximize:
        objs[0] = objs[0].scaled(-1.0, name="score", direction="maximize")
    lo, hi = objs[1].bounds()
    return SearchProblem(space, objs, budgets={"cost": lo + budget_quantile * (hi - lo)})


def check_solver(name: str, params: Mapping[str, Any] | None = None, seeds: tuple[int, ...] = (0, 1, 2),
                 exact: bool = False, problems: Callable[[int], SearchProblem] | None = None) -> None:
    """Run the battery on solver ``name`` with ``params``; raise ``AssertionError`` naming the failed check.

    ``problems(seed)`` replaces the random tabular instances for a solver that needs a particular space family
    (e.g. ``dmasking``: MBConv supernets); the true optimum then comes from the exhaustive solver when the space
    has at most 10^5 candidates, else from the ILP (exact on additive problems)."""
    params = dict(params or {})
    for seed in seeds:
        # odd seeds: a maximised target
        problem = problems(seed) if problems is not None else random_problem(seed, maximize=seed % 2 == 1)
        dirs = problem.directions
        np_state, py_state = np.random.get_state()[1].copy(), random.getstate()
        res = get_solver(name, **params).solve(problem)
        if not np.array_equal(np.random.get_state()[1], np_state) or random.getstate() != py_state:
            raise AssertionError(f"solver {name!r} changed a global RNG state")
        if len(res.df) == 0:
            raise AssertionError(f"solver {name!r} returned no rows on conformance instance {seed}")
        cands = res.candidates(pareto_only=False)
        for c in cands:
            problem.space.validate(c)
            if problem.space.canonical(c) != c:
                raise AssertionError(f"solver {name!r} returned a non-canonical candidate {c.to_json()}")
        V = problem.evaluate(cands)
        got = res.df[problem.names].to_numpy(dtype=float)
        if not np.allclose(V, got, rtol=1e-9, atol=1e-12):
            raise AssertionError(f"solver {name!r}: objective columns differ from a recomputation")
        feas = problem.feasible(V)
        if not np.array_equal(feas, res.df["feasible"].to_numpy()):
            raise AssertionError(f"solver {name!r}: 'feasible' flags are wrong")
        par = res.df["pareto"].to_numpy()
        if np.any(par & ~feas):
            raise AssertionError(f"solver {name!r}: an infeasible row is flagged Pareto")
        cols = [problem.names.index(n) for n in res.pareto_on]
        P = V[par][:, cols]
        pdirs = [dirs[c] for c in cols]
        for i in range(len(P)):
            for j in range(len(P)):
                if i != j and dominates(P[j], P[i], pdirs):
                    raise AssertionError(f"solver {name!r}: Pareto row {i} is dominated by row {j}")
        again = get_solver(name, **params).solve(problem)
        if not again.df[["config", *problem.names]].equals(res.df[["config", *problem.names]]):
            raise AssertionError(f"solver {name!r} is not deterministic with params {params}")
        if problem.space.size() <= 100_000:
            truth = get_solver("exhaustive", keep="all").solve(problem)
        else:
            truth = get_solver("ilp", n_points=1).solve(problem)
        sg = problem.objective(problem.target).sign  # compare sign * value: always "lower is better"
        best = float((sg * truth.df.loc[truth.df.feasible, problem.target]).min())
        mine = sg * res.df.loc[res.df.feasible, problem.target].to_numpy(dtype=float)
        if len(mine) and mine.min() < best - 1e-9:
            raise AssertionError(f"solver {name!r} reports {sg * mine.min()} better than the true optimum "
                                 f"{sg * best} ({dirs[0]}d)")
        if exact and (not len(mine) or abs(mine.min() - best) > 1e-9):
            raise AssertionError(f"exact solver {name!r} missed the optimum {sg * best} (got "
                                 f"{sg * mine.min() if len(mine) else 'no feasible row'}; {dirs[0]}d)")


def _selftest() -> None:  # pragma: no cover
    for n in ("random", "exhaustive", "ilp"):
        check_solver(n, {"seed": 0} if n == "random" else {}, exact=n != "random")
    raise SystemExit(0)


if __name__ == "__main__":  # pragma: no cover
    try:
        _selftest()
    except ConfigError as exc:
        raise SystemExit(str(exc)) from None
