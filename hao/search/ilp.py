"""Exact solver for additive problems: a 0/1 integer program solved by HiGHS (``scipy.optimize.milp``).

Formulation (one binary per unit option and per gate value):

* every unit picks exactly one option: ``Σ_o x[u,o] = 1`` for an ungated unit;
* a gated unit (gate decision ``g``) is off exactly when ``g`` takes an inactive value:
  ``x[u,off] = Σ_{v inactive} z[g,v]`` and ``Σ_{o on} x[u,o] = Σ_{v active} z[g,v]``;
* every gate takes one value: ``Σ_v z[g,v] = 1``;
* budgets: ``const_k + Σ c_k[u,o] x[u,o] <= B_k`` for each budgeted objective;
* minimise the target objective ``Σ c_0[u,o] x[u,o]``, then (tie-break) the budgeted costs.

Ties and pins need no extra rows: a tie group is one unit of the space, a pinned layer is part of the
constant. Before solving, options of a unit that are dominated on (target, budgeted costs) by another option of
the same unit are dropped; this keeps at least one optimal solution (swap any dominated option for its
dominator) and shrinks e.g. a 1944-option MBConv block to its few dozen efficient options. Of options with
identical values the one with the most bits is kept, as in :mod:`hao.search.front`.

Sweeping a budget gives points of the exact front of the additive problem; ``exact_front=True`` enumerates the
whole front (target vs the swept cost) by the epsilon-constraint method.
"""
from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

from hao.errors import ConfigError, InfeasibleBudgetError
from hao.pareto import non_dominated
from hao.search._highs import _quiet_native_stdout
from hao.search.base import SearchProblem, Solver, register_solver
from hao.search.objectives import AdditiveObjective
from hao.search.result import SearchResult

__all__ = ["ILPSolver", "CompiledILP", "InfeasibleError"]


class InfeasibleError(InfeasibleBudgetError):
    """No candidate meets the budgets together."""


class CompiledILP:
    """The integer program of ``problem`` with the budget right-hand sides left open.

    Build once (option reduction, matrix assembly), then call :meth:`solve` for each new set of budgets;
    that is the "answer one new budget" operation.

    Args:
        problem: an all-additive :class:`SearchProblem`.
        constrained: names of the objectives that may carry budgets in :meth:`solve`.
        reduce: drop dominated options per unit (exact; see the module docstring).
    """

    def __init__(self, problem: SearchProblem, constrained: Sequence[str], reduce: bool = True) -> None:
        if not problem.all_additive:
            raise ConfigError("The ILP solver needs additive objectives; use solver='optuna' for the others.")
        self.problem = problem
        ix = problem.index
        self.ix = ix
        tgt = problem.objective(problem.target)
        assert isinstance(tgt, AdditiveObjective)
        self.target = tgt
        self.constrained = [n for n in dict.fromkeys(constrained)]
        cons: list[AdditiveObjective] = [problem.objective(n) for n in self.constrained]  # type: ignore[misc]
        self.cons = cons
        var_unit: list[int] = []
        var_opt: list[int] = []
        self.n_kept = []
        # every objective enters as sign * value, so the program always minimises and budgets are "<=" rows
        self.tsign = tgt.sign
        self.csign = np.array([c.sign for c in cons])
        T = [tgt.sign * t for t in tgt.tables]
        CT = [[c.sign * t for t in c.tables] for c in cons]
        for j in range(ix.n_units):
            n_on = int(ix.n_on[j])
            if reduce:
                # of options with identical values, the one with the most bits stays (the front solver's rule:
                # on a table without low-bit kernels a 4-bit layer costs what an 8-bit one does)
                order = np.argsort(-ix.option_bits[j][:n_on], kind="stable")
                C = np.column_stack([T[j][order]] + [ct[j][order] for ct in CT])
                keep = np.sort(order[np.flatnonzero(non_dominated(C, keep="first"))])
            else:
                keep = np.arange(n_on)
            opts = [int(o) for o in keep] + ([int(ix.off_index[j])] if ix.gated[j] else [])
            self.n_kept.append(len(keep))
            var_unit.extend([j] * len(opts))
            var_opt.extend(opts)
        self.var_unit = np.asarray(var_unit, dtype=np.int64)
        self.var_opt = np.asarray(var_opt, dtype=np.int64)
        n_x = len(var_unit)
        gate_var: list[tuple[int, int]] = [(g, v) for g in range(ix.n_gates) for v in range(len(ix.gate_values[g]))]
        self.gate_var = gate_var
        self.n_x, self.n_var = n_x, n_x + len(gate_var)
        gstart = {}
        for k, (g, v) in enumerate(gate_var):
            gstart.setdefault(g, n_x + k)

        rows: list[int] = []
        cols: list[int] = []
        vals: list[float] = []
        rhs: list[float] = []

        def add_row(terms: list[tuple[int, float]], b: float) -> None:
            for col, v in terms:
                rows.append(len(rhs))
                cols.append(int(col))
                vals.append(v)
            rhs.append(b)

        for j in range(ix.n_units):
            idx = np.flatnonzero(self.var_unit == j)
            if not ix.gated[j]:
                add_row([(i, 1.0) for i in idx], 1.0)  # exactly one option
                continue
            g = int(ix.gate_of[j])
            act = ix.active[j]
            off = idx[self.var_opt[idx] == ix.off_index[j]]
            on = idx[self.var_opt[idx] != ix.off_index[j]]
            # off  <=>  the gate takes an inactive value;  one "on" option  <=>  an active value
            add_row([(i, 1.0) for i in off] + [(gstart[g] + int(v), -1.0) for v in np.flatnonzero(~act)], 0.0)
            add_row([(i, 1.0) for i in on] + [(gstart[g] + int(v), -1.0) for v in np.flatnonzero(act)], 0.0)
        for g in range(ix.n_gates):
            add_row([(gstart[g] + v, 1.0) for v in range(len(ix.gate_values[g]))], 1.0)  # one value per gate
        r = len(rhs)
        self.A_eq = sparse.csr_matrix((vals, (rows, cols)), shape=(r, self.n_var))
        self.b_eq = np.asarray(rhs)
        # budget rows, scaled so the largest coefficient is 1
        self.cost_rows = np.zeros((len(cons), self.n_var))
        self.row_scale = np.ones(len(cons))
        for k, c in enumerate(cons):
            coef = np.array([CT[k][j][o] for j, o in zip(var_unit, var_opt)])
            s = float(np.max(np.abs(coef))) if coef.size else 1.0
            self.row_scale[k] = s if s > 0 else 1.0
            self.cost_rows[k, :n_x] = coef / self.row_scale[k]
        self.n_not_proven = 0
        c0 = np.zeros(self.n_var)
        c0[:n_x] = [T[j][o] for j, o in zip(var_unit, var_opt)]
        self.obj_scale = 1e3 / max(float(np.max(np.abs(c0))), 1e-300) if np.any(c0) else 1.0
        self.c0 = c0 * self.obj_scale

    # --------------------------------------------------------------------------------------------------
    def _milp(self, c: np.ndarray, A_ub: np.ndarray | None, b_ub: np.ndarray | None,
              time_limit: float | None, cols: np.ndarray | None = None, cutoff: float | None = None) -> Any:
        """HiGHS on the program restricted to the columns ``cols`` (default: all); the returned ``x`` is always
        full length (dropped columns are 0). ``cutoff``: the value of a known solution; HiGHS prunes every node
        whose bound is above it (the result may then be infeasible: nothing better than the known solution)."""
        keep = np.arange(self.n_var) if cols is None else np.asarray(cols)
        A_eq = self.A_eq[:, keep]
        cons = [LinearConstraint(A_eq, self.b_eq, self.b_eq)]
        if A_ub is not None and len(A_ub):
            cons.append(LinearConstraint(sparse.csr_matrix(A_ub[:, keep]), -np.inf, b_ub))
        opts: dict[str, Any] = {"mip_rel_gap": 0.0, "presolve": True}
        if cols is not None:
            # On a restricted program (reduced-cost fixing done) the RENS/RINS sub-MIPs cost more than they find.
            # Presolve stays on: turning it off (as hao did) made the worst of 64 three-budget answers 1.9-7.1
            # CPU-s instead of 0.5-1.8 on three draw seeds and two latency tables (docs/search.md).
            opts.update(mip_heuristic_run_rens=False, mip_heuristic_run_rins=False)
        if cutoff is not None:
            opts["objective_bound"] = float(cutoff)
        if time_limit is not None:
            opts["time_limit"] = float(time_limit)
        n = len(keep)
        with _quiet_native_stdout(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Unrecognized options", category=RuntimeWarning)
            res = milp(c[keep], integrality=np.ones(n), bounds=Bounds(0, 1), constraints=cons, options=opts)
            if res.status == 4:  # HiGHS presolve can flag a solution at the tolerance edge; solve without it
                opts["presolve"] = False
                res = milp(c[keep], integrality=np.ones(n), bounds=Bounds(0, 1), constraints=cons, options=opts)
        if res.status == 1 and res.x is None:   # time limit, and no solution (better than the cutoff) found
            self.n_not_proven += 1
            warnings.warn(f"HiGHS stopped at time_limit={time_limit}s without a solution better than the best "
                          "known one; the answer is not proven optimal. Raise time_limit for an exact answer.",
                          stacklevel=3)
        if res.status == 1 and res.x is not None:
            self.n_not_proven += 1
            warnings.warn(f"HiGHS stopped at time_limit={time_limit}s with a feasible but unproven solution "
                          f"(gap {getattr(res, 'mip_gap', float('nan')):.2e}); raise time_limit for an exact answer.",
                          stacklevel=3)
        if res.x is not None and cols is not None:
            x = np.zeros(self.n_var)
            x[keep] = res.x
            res.x = x
        return res

    def _milp_fixed(self, c: np.ndarray, A_ub: np.ndarray | None, b_ub: np.ndarray | None,
                    time_limit: float | None, base: np.ndarray | None = None, cutoff: float | None = None) -> Any:
        """The same optimum as :meth:`_milp` over the columns ``base`` (default: all), usually 10-100x faster, by
        **reduced-cost fixing**.

        The LP relaxation (HiGHS, ~0.05 s) gives the bound ``z_LP`` and each option's reduced cost ``d_j``: any
        solution that uses option ``j`` costs at least ``z_LP + d_j``. A restricted program over the options with
        small ``d_j`` gives a feasible incumbent ``z_inc``; every option with ``d_j > z_inc - z_LP`` then cannot be
        in an optimal solution and is dropped, and the program over the rest is solved exactly. (HiGHS does the
        same internally, but only after a ~2 s presolve of the full 7,000-column program.)

        ``cutoff``: the value of a solution found elsewhere; only strictly better solutions are looked for, and
        a result without ``x`` then means "nothing better here"."""
        base = np.arange(self.n_var) if base is None else np.asarray(base)
        A = None if A_ub is None or not len(A_ub) else A_ub[:, base]
        with _quiet_native_stdout():
            lp = linprog(c[base], A_ub=A, b_ub=b_ub if A is not None else None, A_eq=self.A_eq[:, base],
                         b_eq=self.b_eq, bounds=(0, 1), method="highs")
        if lp.status == 2 or (lp.status == 0 and cutoff is not None and lp.fun >= cutoff):
            return _NoSolution(2, "infeasible" if lp.status == 2 else "no solution better than the cutoff")
        if lp.status != 0 or getattr(lp, "lower", None) is None:
            return self._milp(c, A_ub, b_ub, time_limit, None if len(base) == self.n_var else base, cutoff)
        scale = max(1.0, abs(float(lp.fun)))
        d = np.full(self.n_var, np.inf)
        d[base] = np.maximum(np.asarray(lp.lower.marginals, dtype=float), 0.0)
        always = np.zeros(self.n_var, dtype=bool)
        always[base[base >= self.n_x]] = True         # gate variables are few: never fixed
        always[base[lp.x > 1e-9]] = True              # the LP's own support
        tau = 1e-3 * scale
        best = None

        def better(r: Any, z: float | None) -> bool:
            return r.x is not None and (z is None or float(c @ r.x) < z - 1e-9 * scale)

        for _ in range(12):
            cols = np.flatnonzero(always | (d <= tau))
            if len(cols) == len(base):
                break
            z_best = cutoff if best is None else float(c @ best.x)
            res = self._milp(c, A_ub, b_ub, time_limit, cols, cutoff=z_best)
            if better(res, z_best):
                best = res
            if best is None and cutoff is None:       # restriction infeasible: widen it
                tau *= 8
                continue
            z_best = cutoff if best is None else float(c @ best.x)
            gap = z_best - float(lp.fun)
            need = d <= gap + 1e-9 * scale
            if np.all(~need | always | (d <= tau)):   # every column a better solution can use was in it
                return best if best is not None else _NoSolution(2, "no solution better than the cutoff")
            # widen geometrically rather than straight to the incumbent's gap: each step's optimum is a better
            # incumbent, so the proving restriction stays near the optimum's gap (HiGHS time grows fast with
            # columns: 5,492 columns took 2.5 s where the optimum's gap needed 773)
            tau = min(gap + 1e-9 * scale, 4 * tau)
        z_best = cutoff if best is None else float(c @ best.x)
        whole = None if len(base) == self.n_var else base       # the whole program keeps HiGHS's presolve
        res = self._milp(c, A_ub, b_ub, time_limit, whole, cutoff=z_best)
        if better(res, z_best):
            return res
        return best if best is not None else (res if cutoff is None else _NoSolution(2, "nothing better"))

    def _tie_columns(self, x: np.ndarray) -> np.ndarray:
        """Columns of the chosen options, of the chosen gate values, and of every option of the same unit whose
        target coefficient equals the chosen one's."""
        on = x > 0.5
        keep = on.copy()
        chosen = np.flatnonzero(on[: self.n_x])
        for i in chosen:
            j = self.var_unit[i]
            same = np.flatnonzero(self.var_unit == j)
            keep[same[np.abs(self.c0[same] - self.c0[i]) <= 1e-12 * max(1.0, abs(self.c0[i]))]] = True
        return np.flatnonzero(keep)

    def _decode(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        on = x > 0.5
        U = np.empty(self.ix.n_units, dtype=np.int64)
        U[self.var_unit[on[: self.n_x]]] = self.var_opt[on[: self.n_x]]
        G = np.zeros(self.ix.n_gates, dtype=np.int64)
        for k, (g, v) in enumerate(self.gate_var):
            if on[self.n_x + k]:
                G[g] = v
        return G, U

    def solve(self, budgets: Mapping[str, float], tiebreak: bool = True, time_limit: float | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
        """Optimal ``(gate_idx, unit_idx)`` under ``budgets`` (names among ``constrained``).

        Raises :class:`InfeasibleError` naming the budgets when no candidate meets them together.
        """
        unknown = [k for k in budgets if k not in self.constrained]
        if unknown:
            raise ConfigError(f"Budgets {unknown} were not declared when the ILP was compiled "
                              f"(constrained={self.constrained}).")
        ks = [self.constrained.index(k) for k in budgets]
        b = np.array([self.csign[k] * (self.cons[k].to_score(budgets[self.constrained[k]])
                                       - self.cons[k].constant)
                      / self.row_scale[k] for k in ks])
        A = self.cost_rows[ks] if ks else None
        for _attempt in range(6):
            res = self._milp_fixed(self.c0, A, b, time_limit)
            if res.x is None:
                if res.status == 2:
                    raise InfeasibleError(
                        f"No candidate meets the budgets {dict(budgets)} together (HiGHS: {res.message}). "
                        "Each budget alone is achievable; relax at least one of them.")
                raise ConfigError(f"The ILP solver stopped without a solution ({res.message}); raise "
                                  "time_limit or relax the budgets.")
            x = res.x
            if tiebreak and ks:
                # among the optimal candidates, take the cheapest (so every answer is Pareto-optimal): swap, within
                # each unit, to options of exactly the same target value (gates fixed); the cheapest such swap
                # under the budgets is a small program. (Equal target *sums* across different units are
                # coincidences of floating-point data, not handled.)
                cols = self._tie_columns(x)
                if len(cols) > int(np.sum(x > 0.5)):
                    c2 = np.zeros(self.n_var)
                    for k in ks:
                        c2 += self.cost_rows[k]
                    res2 = self._milp(c2, A, b, time_limit, cols)
                    if res2.x is not None:
                        x = res2.x
            G, U = self._decode(x)
            # exact feasibility check in the objectives' own units
            viol = []
            for i, k in enumerate(ks):
                val = self.csign[k] * self.cons[k].evaluate_indices(U[None, :])[0]
                lim = self.csign[k] * float(budgets[self.constrained[k]])
                if val > lim + 1e-12 * max(1.0, abs(lim)):
                    viol.append((i, val - lim))
            if not viol:
                return G, U
            for i, excess in viol:  # HiGHS tolerance let a solution slip over; tighten and retry
                b[i] -= 2 * excess / self.row_scale[ks[i]] + 1e-12
        raise ConfigError(f"Could not find a solution that meets {dict(budgets)} within numerical tolerance.")

    def front(self, sweep: str, budgets: Mapping[str, float] | None = None, max_points: int = 500,
              time_limit: float | None = None, progress: bool = False) -> list[tuple[np.ndarray, np.ndarray]]:
        """Every point of the exact front (target vs ``sweep``), most expensive first, by the
        epsilon-constraint method: solve, then require ``sweep`` strictly below the last answer."""
        fixed = dict(budgets or {})
        k = self.constrained.index(sweep)
        sg = float(self.csign[k])
        lo = min(sg * v for v in self.cons[k].bounds())  # the best value of sign * sweep
        pts = []
        bud = sg * fixed[sweep] if sweep in fixed else np.inf
        bar = _progress(progress, max_points, "exact front")
        while len(pts) < max_points:
            cur = dict(fixed)
            if np.isfinite(bud):
                cur[sweep] = sg * bud
            try:
                # no tie-break here: a weakly dominated answer is followed by its dominator at the next,
                # tighter budget and filtered out below (halves the HiGHS calls)
                G, U = self.solve(cur, tiebreak=False, time_limit=time_limit)
            except InfeasibleError:
                break
            pts.append((G, U))
            bar.update(1)
            c = sg * float(self.cons[k].evaluate_indices(U[None, :])[0])
            if c <= lo + 1e-12 * max(1.0, abs(lo)):
                break
            bud = c - max(1e-5 * self.row_scale[k], 1e-12 * abs(c))
        bar.close()
        if not pts:
            return pts
        U_all = np.stack([u for _, u in pts])
        F = np.column_stack([self.tsign * self.target.evaluate_indices(U_all),
                             sg * self.cons[k].evaluate_indices(U_all)])
        keep = non_dominated(F, keep="first")
        return [p for p, m in zip(pts, keep) if m]


class _NoSolution:
    """A HiGHS-like result without a solution (``status`` 2: infeasible, or nothing better than a cutoff)."""

    x = None

    def __init__(self, status: int, message: str) -> None:
        self.status, self.message = status, message


def _progress(enabled: bool, total: int, desc: str) -> Any:
    if enabled:
        from tqdm.auto import tqdm
        return tqdm(total=total, desc=desc, leave=False)

    class _Null:
        def update(self, n: int = 1) -> None: ...
        def close(self) -> None: ...
    return _Null()


@register_solver("ilp")
class ILPSolver(Solver):
    """Exact mixed-integer solver (HiGHS) for additive objectives.

    Args:
        sweep: objective whose budget is swept to trace the front. Default: the first budgeted objective
            (swept from its minimum up to its budget), else the first non-target objective.
        n_points: budgets in the sweep (evenly spaced between the cheapest candidate and the budget / the
            cost of the unconstrained optimum). Ignored when ``exact_front``.
        exact_front: enumerate every point of the front (epsilon-constraint), up to ``max_points``.
        max_points: cap on the points of an exact front.
        time_limit: seconds per HiGHS call (``None`` = no limit).
        reduce: drop dominated options per unit before solving (exact; default on).
    """

    requires_additive = True

    def __init__(self, sweep: str | None = None, n_points: int = 16, exact_front: bool = False,
                 max_points: int = 500, time_limit: float | None = None, reduce: bool = True) -> None:
        if not isinstance(n_points, int) or isinstance(n_points, bool) or n_points < 1:
            raise ConfigError(f"The 'n_points' parameter of ILPSolver must be an int in [1, inf). Got "
                              f"{n_points!r} instead.")
        if not isinstance(max_points, int) or max_points < 1:
            raise ConfigError(f"The 'max_points' parameter of ILPSolver must be an int in [1, inf). Got "
                              f"{max_points!r} instead.")
        if time_limit is not None and not (float(time_limit) > 0):
            raise ConfigError(f"The 'time_limit' parameter of ILPSolver must be > 0 seconds or None. Got "
                              f"{time_limit!r} instead.")
        self.sweep, self.n_points, self.exact_front = sweep, n_points, exact_front
        self.max_points, self.time_limit, self.reduce = max_points, time_limit, reduce

    def compile(self, problem: SearchProblem, extra: Sequence[str] = ()) -> CompiledILP:
        """The reusable integer program (see :class:`CompiledILP`)."""
        self.check_problem(problem)
        return CompiledILP(problem, [*problem.budgets, *extra], reduce=self.reduce)

    def _sweep_name(self, problem: SearchProblem) -> str | None:
        if self.sweep is not None:
            from hao.search.base import BUDGET_ALIASES
            name = self.sweep if self.sweep in problem.names else BUDGET_ALIASES.get(self.sweep, self.sweep)
            if name not in problem.names or name == problem.target:
                raise ConfigError(f"sweep={self.sweep!r} must name a non-target objective; choose from "
                                  f"{[n for n in problem.names if n != problem.target]}.")
            return name
        budgeted = [b for b in problem.budgets if b != problem.target]
        if budgeted:
            return budgeted[0]
        others = [n for n in problem.names if n != problem.target]
        return others[0] if others else None

    def solve(self, problem: SearchProblem, *, progress: bool = False) -> SearchResult:
        self.check_problem(problem)
        t0 = time.perf_counter()
        sweep = self._sweep_name(problem)
        model = self.compile(problem, extra=[sweep] if sweep else [])
        t_compile = time.perf_counter() - t0
        budgets = dict(problem.budgets)
        points: list[tuple[np.ndarray, np.ndarray]] = []
        sources: list[str] = []
        if sweep is None:
            points.append(model.solve(budgets, time_limit=self.time_limit))
            sources.append("unconstrained")
        elif self.exact_front:
            pts = model.front(sweep, budgets, self.max_points, self.time_limit, progress)
            points += pts
            sources += ["exact-front"] * len(pts)
        else:
            sw = problem.objective(sweep)
            lo = sw.bounds()[0 if sw.direction == "minimize" else 1]  # type: ignore[attr-defined]
            if sweep in budgets:
                hi = budgets[sweep]
            else:
                G, U = model.solve(budgets, time_limit=self.time_limit)
                hi = float(problem.objective(sweep).evaluate_indices(U[None, :])[0])  # type: ignore
            grid = np.linspace(lo, hi, self.n_points) if self.n_points > 1 else np.array([hi])
            bar = _progress(progress, len(grid), "ilp sweep")
            for b in grid[::-1]:
                cur = dict(budgets)
                cur[sweep] = float(b)
                try:
                    points.append(model.solve(cur, time_limit=self.time_limit))
                    sources.append(f"{sweep}<={b:.6g}")
                except InfeasibleError:
                    if not points and sweep in budgets:
                        raise
                bar.update(1)
            bar.close()
        if not points:
            raise InfeasibleError(f"No candidate meets the budgets {budgets}; relax them.")
        G = np.stack([p[0] for p in points])
        U = np.stack([p[1] for p in points])
        # several budgets can have the same answer: keep one row per candidate, listing its budgets
        keys = problem.index.keys(G, U)
        _, first, inv = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        inv = np.asarray(inv).reshape(-1)
        order = np.sort(first)
        merged = {int(f): [] for f in order}
        for i, k in enumerate(inv):
            merged[int(first[k])].append(sources[i])
        G, U = G[order], U[order]
        sources = ["; ".join(merged[int(f)]) for f in order]
        values = problem.evaluate_indices(G, U)
        meta = {"solver": "ilp", "sweep": sweep, "compile_s": t_compile, "solve_s": time.perf_counter() - t0,
                "n_variables": model.n_var, "options_kept": int(sum(model.n_kept)),
                "all_proven_optimal": model.n_not_proven == 0}
        pareto_on = [problem.target] + ([sweep] if sweep else []) + [b for b in problem.budgets if b != sweep]
        return problem.result(G, U, values, sources, meta, pareto_on=pareto_on)
