"""Random small additive instances with ties, pins and gates (shared by the search tests)."""
from __future__ import annotations

import numpy as np

from hao.search.base import SearchProblem
from hao.search.objectives import AdditiveObjective
from hao.search.tabular import TabularSpace
from hao.space import Decision, Gate, Unit


def random_instance(seed: int, n_costs: int = 1, gates: bool = True, ints: bool = False,
                    max_layers: int = 7) -> tuple[SearchProblem, dict]:
    """A random space: layers with bits in {2,4,8} (some tied into one unit, some pinned), optionally a
    depth gate switching trailing units off and a unit with two decisions (kernel x bits)."""
    rng = np.random.default_rng(seed)
    n_layers = int(rng.integers(3, max_layers + 1))
    bits = (4, 8) if rng.random() < 0.5 else (2, 4, 8)
    perm = rng.permutation(n_layers)
    n_pinned = int(rng.integers(0, 2))
    pinned = set(perm[:n_pinned].tolist())
    free = [i for i in range(n_layers) if i not in pinned]
    # tie groups: random partition of the free layers into groups of size 1-2
    groups, i = [], 0
    rng.shuffle(free)
    while i < len(free):
        k = 2 if (i + 1 < len(free) and rng.random() < 0.35) else 1
        groups.append(sorted(free[i:i + k]))
        i += k
    decisions, units = [], []
    n_gated = int(rng.integers(1, min(3, len(groups)) + 1)) if gates and len(groups) > 1 else 0
    if n_gated:
        decisions.append(Decision("depth", (0, 1, 2)[: n_gated + 1], "depth"))
    for gi, g in enumerate(groups):
        name = f"u{gi}"
        dn = [f"{name}_bits"]
        decisions.append(Decision(dn[0], bits, "bits"))
        if gi == 0 and rng.random() < 0.5:
            decisions.append(Decision(f"{name}_k", (3, 5), "kernel"))
            dn.append(f"{name}_k")
        gate = None
        pos = gi - (len(groups) - n_gated)
        if n_gated and pos >= 0:  # trailing units: on iff depth > pos
            gate = Gate("depth", frozenset(v for v in range(n_gated + 1) if v > pos))
        units.append(Unit(name, tuple(dn), gate))
    space = TabularSpace(f"rand{seed}", decisions, units)
    objs = []
    for k in range(1 + n_costs):
        tables = []
        for u in units:
            n_opt = len(space.unit_options(u))
            t = rng.integers(0, 20, n_opt).astype(float) if ints else rng.random(n_opt)
            if k == 0:
                t = t - 0.5 * (not ints)  # target may be negative (like HAWQ's)
            if u.gate is not None:
                t[-1] = 0.0  # off costs nothing
            tables.append(t)
        name = "proxy" if k == 0 else f"cost{k}"
        objs.append(AdditiveObjective(space, name, tables, constant=float(rng.random()) * (k > 0) * n_pinned))
    info = {"groups": groups, "pinned": sorted(pinned), "n_gated": n_gated}
    return SearchProblem(space, objs), info


def tie_low_bits(problem: SearchProblem) -> SearchProblem:
    """``problem`` with every all-4-bit option given the values of its all-8-bit twin on every objective (what an
    int8-only latency table and a model that prices both alike give a search)."""
    ix = problem.index
    objs = []
    for o in problem.objectives:
        tables = []
        for j, t in enumerate(o.tables):
            t = np.array(t, dtype=float)
            for i, opt in enumerate(ix.options[j]):
                if opt is not None and ix.option_bits[j][i] == 4 * sum(d.endswith("_bits") for d in opt):
                    twin = {d: (8 if d.endswith("_bits") else v) for d, v in opt.items()}
                    t[i] = t[ix.local_index(j, twin)]
            tables.append(t)
        objs.append(AdditiveObjective(problem.space, o.name, tables, constant=o.constant))
    return SearchProblem(problem.space, objs)


def has_tied_low_bits(problem: SearchProblem, candidates) -> bool:
    """Whether any of ``candidates`` keeps a unit (with bit decisions) at the all-4-bit option."""
    ix = problem.index
    _, U = ix.from_candidates(candidates)
    n_bits = [sum(d.endswith("_bits") for d in ix.units[j].decisions) for j in range(ix.n_units)]
    return any(k > 0 and np.any(ix.option_bits[j][U[:, j]] == 4 * k) for j, k in enumerate(n_bits))
