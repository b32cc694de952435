"""Exact Pareto fronts of additive objectives by dynamic programming over a space's units.

Every objective hao optimises is a constant plus one cost per unit (``hao/search/objectives.py``), and a space
is a product of independent *components*: each ungated unit on its own, and each gate decision (a stage's depth)
together with the units it switches on and off. The Pareto front of a sum of independent components is the
non-dominated part of the Minkowski sum of the components' own fronts, so the whole front is built by merging
one component at a time and discarding dominated partial sums after every merge (a multi-objective knapsack).
Nothing is sampled and nothing is approximated at ``epsilon=0``: :func:`pareto_dp` returns one candidate for
every distinct objective vector of the exact front.

With ``epsilon > 0`` every merge keeps one point per ε-box (Laumanns et al.'s ε-dominance archive) with a box
width of ``epsilon * range / n_prunes`` per objective, where ``range`` is the objective's exact range over the
space and ``n_prunes`` the number of pruning steps a point passes through. Each step moves a covered point by less
than one box, so every point of the exact front is weakly dominated by a returned point shifted by at most
``epsilon * range`` per objective (:attr:`FrontDP.eps_abs`). That gives a computable bound on what is lost:
``HV(exact) <= HV(returned - eps_abs)``, reported as :attr:`FrontDP.hv_ratio_lower_bound`.

**Ties.** Options of one unit with identical objective values are one point of the front; the one with the most
bits is kept (e.g. a table with int8 kernels only prices a 4-bit layer like an 8-bit one, and an accuracy model
may price both at the same loss: the front then holds the 8-bit layer).

Budgets on the front's objectives are exact filters (a Pareto point of the feasible region is a Pareto point of
the space), applied early: a partial sum that cannot meet a budget even with the cheapest choice of every
remaining component is dropped.
"""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from hao.errors import ConfigError
from hao.pareto import hypervolume
from hao.search._index import IndexedSpace
from hao.search.base import SearchProblem, Solver, register_solver
from hao.search.result import SearchResult

__all__ = ["FrontSolver", "FrontDP", "pareto_dp", "nd_first"]

# Merges whose product has more rows than this are split into chunks (memory: rows x objectives x 8 bytes).
_CHUNK_ROWS = 4_000_000


def nd_first(F: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated rows of ``F`` (every column minimised), one per distinct vector (the first
    of equal rows), sorted by the first column. Two columns: O(n log n); three: a blocked sweep over a 2-D
    staircase."""
    n, m = F.shape
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if m == 2:
        # sort by the first column only (stable: timsort runs through the presorted blocks a merge produces),
        # keep rows whose second value is below every earlier one, then, among kept rows with an equal first
        # value, only the last (it has the smallest second value; the others are dominated by it)
        order = np.argsort(F[:, 0], kind="stable")
        S = F[order]
        prev = np.concatenate(([np.inf], np.minimum.accumulate(S[:-1, 1])))
        kept = order[S[:, 1] < prev]
        f1 = F[kept, 0]
        return kept[np.append(f1[1:] != f1[:-1], True)]
    # sort by the first column (stable: timsort runs through a merge's presorted blocks); only if that column has
    # ties (integer costs) the full lexicographic sort is needed for "dominators come first"
    order = np.argsort(F[:, 0], kind="stable")
    S = F[order]
    if np.any(S[1:, 0] == S[:-1, 0]):
        order = np.lexsort(F.T[::-1])
        S = F[order]
    if m == 1:
        return order[:1]
    if m != 3:
        raise ConfigError(f"Exact fronts are implemented for 1-3 objectives, got {m}.")
    # sorted by (f1, f2, f3): a row is dropped iff an earlier row has f2 <= and f3 <= (weak dominance, which
    # also drops later copies). Earlier kept rows form a 2-D staircase on (f2, f3) queried by binary search;
    # rows inside one block are compared directly.
    keep = np.zeros(n, dtype=bool)
    st = np.zeros((0, 2))  # the staircase of kept rows on (f2, f3): f2 ascending, f3 strictly descending

    def dominated_by_staircase(P: np.ndarray) -> np.ndarray:
        if not len(st):
            return np.zeros(len(P), dtype=bool)
        pos = np.searchsorted(st[:, 0], P[:, 1], side="right") - 1
        return (pos >= 0) & (st[np.maximum(pos, 0), 1] <= P[:, 2])

    for s in range(0, n, 4096):
        # a cheap vectorized pass against the staircase first; the survivors are then settled in chunks (each
        # against the staircase grown by the previous chunks, and pairwise inside the chunk: q before p with
        # q2 <= p2 and q3 <= p3). A row dominated by an eliminated row is dominated by whatever eliminated it.
        cand = s + np.flatnonzero(~dominated_by_staircase(S[s:s + 4096]))
        for c in range(0, len(cand), 256):
            idx = cand[c:c + 256]
            C = S[idx]
            ok = ~dominated_by_staircase(C)
            if ok.sum() > 1:
                le = (C[:, None, 1] <= C[None, :, 1]) & (C[:, None, 2] <= C[None, :, 2])
                le &= np.tri(len(C), k=-1, dtype=bool).T
                le &= ok[:, None]
                ok &= ~le.any(axis=0)
            if ok.any():
                keep[idx[ok]] = True
                P = np.concatenate([st, C[ok][:, 1:]])
                P = P[np.lexsort(P.T[::-1])]
                prev = np.concatenate(([np.inf], np.minimum.accumulate(P[:-1, 1])))
                st = P[P[:, 1] < prev]
    return order[keep]


def _box_filter(F: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """Indices of one row per non-dominated ε-box (``delta`` per column; 0 = exact in that column)."""
    box = np.where(delta > 0, np.floor(F / np.where(delta > 0, delta, 1.0)), F)
    order = np.lexsort(F.T[::-1])          # representative: the lexicographically smallest row of its box
    _, first = np.unique(box[order], axis=0, return_index=True)
    reps = order[first]
    return reps[nd_first(box[reps])]


class _Node:
    """A set of partial assignments with their (signed) objective sums; ``decode`` writes the assignment of the
    requested rows into ``G``/``U``."""

    def __init__(self, F: np.ndarray) -> None:
        self.F = F

    def decode(self, idx: np.ndarray, rows: np.ndarray, G: np.ndarray, U: np.ndarray) -> None:
        raise NotImplementedError


class _UnitLeaf(_Node):
    def __init__(self, F: np.ndarray, unit: int, options: np.ndarray) -> None:
        super().__init__(F)
        self.unit, self.options = unit, options

    def decode(self, idx, rows, G, U):  # type: ignore[no-untyped-def]
        U[rows, self.unit] = self.options[idx]


class _GateLeaf(_Node):
    def __init__(self, m: int, gate: int, value: int) -> None:
        super().__init__(np.zeros((1, m)))
        self.gate, self.value = gate, value

    def decode(self, idx, rows, G, U):  # type: ignore[no-untyped-def]
        G[rows, self.gate] = self.value


class _Nothing(_Node):
    """One empty partial assignment (sums 0): the start of a chain of merges; decodes to nothing."""

    def __init__(self, m: int) -> None:
        super().__init__(np.zeros((1, m)))

    def decode(self, idx, rows, G, U):  # type: ignore[no-untyped-def]
        pass


class _Merge(_Node):
    def __init__(self, F: np.ndarray, a: _Node, b: _Node, ia: np.ndarray, ib: np.ndarray) -> None:
        super().__init__(F)
        self.a, self.b, self.ia, self.ib = a, b, ia, ib

    def decode(self, idx, rows, G, U):  # type: ignore[no-untyped-def]
        self.a.decode(self.ia[idx], rows, G, U)
        self.b.decode(self.ib[idx], rows, G, U)


class _Union(_Node):
    def __init__(self, F: np.ndarray, children: list[_Node], which: np.ndarray, local: np.ndarray) -> None:
        super().__init__(F)
        self.children, self.which, self.local = children, which, local

    def decode(self, idx, rows, G, U):  # type: ignore[no-untyped-def]
        w, loc = self.which[idx], self.local[idx]
        for c, child in enumerate(self.children):
            sel = w == c
            if sel.any():
                child.decode(loc[sel], rows[sel], G, U)


@dataclass
class FrontDP:
    """The front computed by :func:`pareto_dp` (index rows; values in the objectives' own units and signs)."""

    objectives: list[str]
    directions: list[str]
    G: np.ndarray
    U: np.ndarray
    values: np.ndarray                   # (n, k) objective values of the front rows (unsigned)
    epsilon: list[float]                 # requested, as a fraction of each objective's range
    eps_abs: list[float]                 # proven additive cover, per objective, in its unit
    hv_ratio_lower_bound: float | None   # HV(returned) / HV(returned shifted by eps_abs) (1.0 when exact)
    stats: dict[str, float] = field(default_factory=dict)


def pareto_dp(problem: SearchProblem, objectives: Sequence[str], *,
              epsilon: float | Sequence[float] = 0.0, budgets: Mapping[str, float] | None = None,
              max_points: int = 2_000_000) -> FrontDP:
    """The exact (``epsilon=0``) or ε-bounded Pareto front of ``problem`` on 1-3 additive ``objectives``.

    Args:
        problem: a :class:`~hao.search.base.SearchProblem` whose ``objectives`` are additive.
        objectives: names of the objectives the front is taken on (directions as the objectives declare).
        epsilon: one fraction of the objective's range for all, or one per objective; ``0`` = exact.
        budgets: bounds on some of ``objectives`` (upper bounds when minimised, lower bounds when maximised).
        max_points: refuse (naming ``epsilon``) when an intermediate front grows past this many points.
    """
    t0 = time.perf_counter()
    names = list(dict.fromkeys(objectives))
    if not 1 <= len(names) <= 3:
        raise ConfigError(f"The front solver handles 1-3 objectives, got {names}; pick at most three with "
                          "objectives=[...] (budgets on others need solver='ilp').")
    objs = [problem.objective(n) for n in names]
    bad = [o.name for o in objs if not o.additive]
    if bad:
        raise ConfigError(f"The front solver needs additive objectives; {bad} are not (use solver='optuna').")
    eps = np.broadcast_to(np.asarray(epsilon, dtype=float), (len(names),)).copy() if np.ndim(epsilon) == 0 \
        else np.asarray(epsilon, dtype=float)
    if eps.shape != (len(names),) or not np.all(np.isfinite(eps)) or np.any(eps < 0) or np.any(eps >= 1):
        raise ConfigError(f"epsilon must be one number or one per objective {names}, each in [0, 1) (a fraction "
                          f"of the objective's range, e.g. 0.001), got {epsilon!r}.")
    m = len(names)
    sign = np.array([-1.0 if getattr(o, "direction", "minimize") == "maximize" else 1.0 for o in objs])
    ix: IndexedSpace = problem.index
    tables = [[sign[k] * np.asarray(o.tables[j], dtype=float) for k, o in enumerate(objs)] for j in range(ix.n_units)]
    const = np.array([sign[k] * o.constant for k, o in enumerate(objs)])
    bounds = [o.score_bounds() for o in objs]  # the solver sums additive scores (a link maps them after)
    rng = np.array([hi - lo for lo, hi in bounds])
    bud = np.full(m, np.inf)
    for name, b in (budgets or {}).items():
        if name not in names:
            raise ConfigError(f"Budget on {name!r}, which is not one of the front's objectives {names}.")
        bud[names.index(name)] = sign[names.index(name)] * objs[names.index(name)].to_score(float(b))

    def unit_leaf(j: int, opts: np.ndarray) -> _UnitLeaf:
        # options with identical objective values keep the one with the most bits (nd_first keeps the first of
        # equal rows): on a table without low-bit kernels a 4-bit layer costs what an 8-bit one does, and a
        # model that prices both alike has not shown the 4-bit one to be as good
        opts = opts[np.argsort(-ix.option_bits[j][opts], kind="stable")]
        V = np.column_stack([t[opts] for t in tables[j]])
        keep = nd_first(V)
        return _UnitLeaf(V[keep], j, opts[keep])

    # ---- components ---------------------------------------------------------------------------------
    comps: list[tuple[str, object]] = []
    for j in range(ix.n_units):
        if not ix.gated[j]:
            comps.append(("unit", j))
    for g in range(ix.n_gates):
        comps.append(("gate", g))
    n_gate_merges = max([int(np.sum(ix.gate_of == g)) for g in range(ix.n_gates)] or [0])
    n_prunes = max(1, len(comps) - 1 + n_gate_merges + 1)
    delta = eps * rng / n_prunes
    stats = {"merges": 0, "peak_points": 0, "pairs": 0}

    def merge(a: _Node, b: _Node, lo_rest: np.ndarray | None) -> _Merge:
        na, nb = len(a.F), len(b.F)
        stats["merges"] += 1
        stats["pairs"] += na * nb
        step = max(1, _CHUNK_ROWS // max(na, 1))
        Fs, IA, IB = [], [], []
        for s in range(0, nb, step):
            Bc = b.F[s:s + step]
            # b-major layout: every block of na rows is a.F + one row of b, already sorted like a.F
            S = (Bc[:, None, :] + a.F[None, :, :]).reshape(-1, m)
            ia = np.tile(np.arange(na), len(Bc))
            ib = np.repeat(np.arange(s, s + len(Bc)), na)
            if lo_rest is not None:
                ok = np.all(S + lo_rest <= bud + 1e-9 * np.maximum(1.0, np.abs(bud)), axis=1)
                S, ia, ib = S[ok], ia[ok], ib[ok]
            k = nd_first(S)
            Fs.append(S[k])
            IA.append(ia[k])
            IB.append(ib[k])
        S, ia, ib = np.concatenate(Fs), np.concatenate(IA), np.concatenate(IB)
        k = nd_first(S) if len(Fs) > 1 else np.arange(len(S))
        if np.any(delta > 0) and len(k):
            k = k[_box_filter(S[k], delta)]
        stats["peak_points"] = max(stats["peak_points"], len(k))
        if len(k) > max_points:
            raise ConfigError(f"The front grew past max_points={max_points} points ({len(k)}); give epsilon > 0 "
                              "(e.g. 0.001 = 0.1% of each objective's range, with a proven bound on the loss) "
                              "or raise max_points.")
        return _Merge(S[k], a, b, ia[k], ib[k])

    def gate_node(g: int) -> _Node:
        members = np.flatnonzero(ix.gate_of == g)
        children: list[_Node] = []
        for v in range(len(ix.gate_values[g])):
            node: _Node = _GateLeaf(m, g, v)
            for j in members:
                if ix.active[j][v]:
                    leaf = unit_leaf(int(j), np.arange(ix.n_on[j]))
                else:
                    leaf = unit_leaf(int(j), np.array([ix.off_index[j]]))
                node = merge(node, leaf, None)
            children.append(node)
        F = np.concatenate([c.F for c in children])
        which = np.concatenate([np.full(len(c.F), i) for i, c in enumerate(children)])
        local = np.concatenate([np.arange(len(c.F)) for c in children])
        k = nd_first(F)
        return _Union(F[k], children, which[k], local[k])

    nodes: list[_Node] = []
    for kind, ref in comps:
        nodes.append(unit_leaf(int(ref), np.arange(ix.n_opts[ref])) if kind == "unit" else gate_node(int(ref)))
    nodes.sort(key=lambda nd: len(nd.F))
    # cheapest possible remainder after each position, per objective (for the budget pruning)
    mins = np.array([nd.F.min(axis=0) for nd in nodes]) if nodes else np.zeros((0, m))
    rest = np.concatenate([np.cumsum(mins[::-1], axis=0)[::-1][1:], np.zeros((1, m))]) + const
    acc: _Node = _Nothing(m) if not nodes else nodes[0]
    if nodes and np.isfinite(bud).any():
        ok = np.all(acc.F + rest[0] <= bud + 1e-9 * np.maximum(1.0, np.abs(bud)), axis=1)
        acc = _Merge(acc.F[ok], acc, _Nothing(m), np.flatnonzero(ok), np.zeros(int(ok.sum()), int))
    for i in range(1, len(nodes)):
        acc = merge(acc, nodes[i], rest[i] if np.isfinite(bud).any() else None)
    F = acc.F + const
    if np.isfinite(bud).any():
        ok = np.all(F <= bud + 1e-9 * np.maximum(1.0, np.abs(bud)), axis=1)
        idx = np.flatnonzero(ok)
    else:
        idx = np.arange(len(F))
    G = np.zeros((len(idx), ix.n_gates), dtype=np.int64)
    U = np.zeros((len(idx), ix.n_units), dtype=np.int64)
    if nodes and len(idx):
        acc.decode(idx, np.arange(len(idx)), G, U)
    values = np.column_stack([o.evaluate_indices(U) for o in objs]) if len(idx) else np.zeros((0, m))
    eps_abs = (eps * rng).tolist()
    hv_lb: float | None = 1.0
    if np.any(eps > 0) and len(idx) and m in (2, 3) and (m == 2 or len(idx) <= 3000):
        S = np.column_stack([o.score_indices(U) for o in objs]) * sign
        ref = np.array([max(lo * s, hi * s) for (lo, hi), s in zip(bounds, sign)]) + np.maximum(rng, 1e-12) * 1e-3
        hv, hv_shift = hypervolume(S, ref), hypervolume(S - eps * rng, ref)
        hv_lb = hv / hv_shift if hv_shift > 0 else 1.0
    elif np.any(eps > 0):
        hv_lb = None
    stats["seconds"] = time.perf_counter() - t0
    stats["n_prunes"] = n_prunes
    return FrontDP(objectives=names, directions=["maximize" if s < 0 else "minimize" for s in sign], G=G, U=U,
                   values=values, epsilon=eps.tolist(), eps_abs=eps_abs, hv_ratio_lower_bound=hv_lb, stats=stats)


@register_solver("front")
class FrontSolver(Solver):
    """The exact (``epsilon=0``) or ε-bounded Pareto front of 1-3 additive objectives, by dynamic programming
    over the space's units (see the module docstring). Every returned row is a valid candidate; the result's
    ``meta`` holds ``epsilon``, ``eps_abs`` (the proven cover per objective, in its unit) and
    ``hv_ratio_lower_bound``. Any new budget on the front's objectives is then answered by
    :meth:`SearchResult.query` without solving again.

    Args:
        objectives: the objectives the front is taken on (default: the target and the budgeted objectives, or
            the target and the first other objective when nothing is budgeted). Budgeted objectives are always
            included.
        epsilon: fraction of each objective's range (one value, or one per objective); 0 = exact.
        max_points: refuse (with advice) when an intermediate front exceeds this many points.
    """

    requires_additive = True

    def __init__(self, objectives: Sequence[str] | None = None, epsilon: float | Sequence[float] = 0.0,
                 max_points: int = 2_000_000) -> None:
        if objectives is not None and (isinstance(objectives, str) or not all(isinstance(o, str) for o in objectives)):
            raise ConfigError(f"The 'objectives' parameter of FrontSolver must be a list of objective names, got "
                              f"{objectives!r}.")
        eps = np.asarray(epsilon, dtype=float) if not isinstance(epsilon, str) else np.array(np.nan)
        if eps.ndim > 1 or not np.all(np.isfinite(eps)) or np.any(eps < 0) or np.any(eps >= 1):
            raise ConfigError(f"The 'epsilon' parameter of FrontSolver must be in [0, 1) (a fraction of each "
                              f"objective's range, e.g. 0.001), or one such value per objective. Got {epsilon!r}.")
        if not isinstance(max_points, int) or isinstance(max_points, bool) or max_points < 1:
            raise ConfigError(f"The 'max_points' parameter of FrontSolver must be an int in [1, inf). Got "
                              f"{max_points!r} instead.")
        self.objectives = None if objectives is None else list(objectives)
        self.epsilon = epsilon if np.ndim(epsilon) == 0 else list(epsilon)
        self.max_points = max_points

    def front_objectives(self, problem: SearchProblem) -> list[str]:
        """The objectives the front is taken on for ``problem`` (see the class docstring)."""
        from hao.search.base import BUDGET_ALIASES
        if self.objectives is not None:
            names = [n if n in problem.names else BUDGET_ALIASES.get(n, n) for n in self.objectives]
            unknown = [n for n in names if n not in problem.names]
            if unknown:
                raise ConfigError(f"FrontSolver objectives {unknown} are not objectives of this problem "
                                  f"{problem.names}.")
        else:
            others = [n for n in problem.names if n != problem.target]
            names = [problem.target] + ([b for b in problem.budgets if b != problem.target] or others[:1])
        names = list(dict.fromkeys([*names, *problem.budgets]))
        if len(names) > 3:
            raise ConfigError(f"The front solver takes at most 3 objectives; this problem needs {names} (the "
                              "budgeted ones are always included). Use solver='ilp' for more budgets.")
        return names

    def solve(self, problem: SearchProblem, *, progress: bool = False) -> SearchResult:
        self.check_problem(problem)
        names = self.front_objectives(problem)
        fr = pareto_dp(problem, names, epsilon=self.epsilon, budgets=problem.budgets, max_points=self.max_points)
        if len(fr.U) == 0:
            raise ConfigError(f"No candidate meets the budgets {dict(problem.budgets)} together; relax them.")
        values = problem.evaluate_indices(fr.G, fr.U)
        meta = {"solver": "front", "front_on": names, "epsilon": fr.epsilon, "eps_abs": fr.eps_abs,
                "hv_ratio_lower_bound": fr.hv_ratio_lower_bound, "front_size": int(len(fr.U)),
                "solve_s": fr.stats["seconds"], "peak_points": int(fr.stats["peak_points"]),
                "merges": int(fr.stats["merges"]), "pairs_scored": int(fr.stats["pairs"])}
        label = "front" if not any(fr.epsilon) else f"front(eps={self.epsilon})"
        return problem.result(fr.G, fr.U, values, label, meta, pareto_on=names)
