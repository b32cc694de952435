"""Reproduce HAWQ-V3's published mixed-precision bit configurations with hao's generic ILP solver.

Reads ``reference_data/hawq_v3_ilp.json`` (shipped; provenance in ``reference_data/README.md``), or a file in its
format given with ``--data``, and for every
model in it solves the model-size, BOPs and latency budgets at r in {0.25, 0.5, 0.75}:

    limit(r) = Σ cost4 + r (Σ cost8 − Σ cost4),   minimise Σ trace_i · ‖ΔW_i(b_i)‖²

with each tie group as one unit of a :class:`hao.search.tabular.TabularSpace` (the first conv and the fc are
pinned at 8 bit and carry no cost, as in the notebook). Writes

* ``OUT/configs.csv``: ``model, budget, r, found, published, matches`` (bits as strings like ``"8848..."``,
  ``matches`` = layers equal to the published config) plus objective/cost columns;
* ``OUT/pareto_<model>.png``: proxy vs size, BOPs and latency: the exact front of the additive problem
  (epsilon-constraint ILP), the published configurations and uniform 4/8-bit;
* ``OUT/front_<model>.csv``: the exact fronts' points.

Usage: ``python experiments/hawq_v3.py --out out/hawq`` (``--data FILE`` for another copy)
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]

from hao.errors import ConfigError  # noqa: E402
from hao.search.base import SearchProblem  # noqa: E402
from hao.search.ilp import CompiledILP, ILPSolver  # noqa: E402
from hao.search.objectives import AdditiveObjective  # noqa: E402
from hao.search.tabular import TabularSpace  # noqa: E402
from hao.space import Decision, Unit  # noqa: E402

from hao.paths import reference_data_dir  # noqa: E402

DEFAULT_DATA = reference_data_dir() / "hawq_v3_ilp.json"
BITS = (4, 8)
RATIOS = ("0.25", "0.5", "0.75")
#: budget name in the data file -> objective name in hao
BUDGETS = {"modelsize": "size_bytes", "bops": "bops", "latency": "latency_ms"}
_REQUIRED = ("layer_names", "hutchinson_trace", "delta_weights_8bit_square", "delta_weights_4bit_square",
             "parameters", "bops", "latency_int4", "latency_int8", "ties")


def load(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"HAWQ-V3 data file {str(p)!r} does not exist; pass --data PATH to a file in the "
                          "format of reference_data/hawq_v3_ilp.json (see reference_data/README.md).")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{p} is not valid JSON ({exc}).") from None
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict) or not data["models"]:
        raise ConfigError(f"{p} must hold an object with a non-empty 'models' mapping.")
    for name, m in data["models"].items():
        missing = [k for k in _REQUIRED if k not in m]
        if missing:
            raise ConfigError(f"{p}: model {name!r} lacks field(s) {missing}.")
        n = len(m["layer_names"])
        for k in _REQUIRED[1:-1]:
            if len(m[k]) != n:
                raise ConfigError(f"{p}: model {name!r} field {k!r} has {len(m[k])} values, expected {n} "
                                  "(one per layer_names entry).")
    return data


def layer_costs(m: dict[str, Any]) -> dict[str, np.ndarray]:
    """Per layer, per bit option (columns = BITS): the proxy and the three costs."""
    tr = np.asarray(m["hutchinson_trace"], dtype=float)
    d = {4: np.asarray(m["delta_weights_4bit_square"], dtype=float),
         8: np.asarray(m["delta_weights_8bit_square"], dtype=float)}
    params = np.asarray(m["parameters"], dtype=float)
    bops = np.asarray(m["bops"], dtype=float)
    lat = {4: np.asarray(m["latency_int4"], dtype=float), 8: np.asarray(m["latency_int8"], dtype=float)}
    return {
        "proxy": np.column_stack([tr * d[b] for b in BITS]),
        "size_bytes": np.column_stack([params * b / 8 for b in BITS]),
        "bops": np.column_stack([bops / (64 if b == 4 else 16) for b in BITS]),
        "latency_ms": np.column_stack([lat[b] for b in BITS]),
    }


def build_problem(name: str, m: dict[str, Any]) -> tuple[SearchProblem, list[list[int]]]:
    """A tabular space (one unit per tie group, bits {4, 8}) and the four additive objectives."""
    n = len(m["layer_names"])
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i
    for tie in m["ties"]:
        for j in tie[1:]:
            if not (0 <= j < n and 0 <= tie[0] < n):
                raise ConfigError(f"model {name!r}: tie {tie} names a layer outside [0, {n}).")
            parent[find(j)] = find(tie[0])
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    units_layers = sorted(groups.values(), key=lambda g: g[0])
    decisions, units = [], []
    for g in units_layers:
        dn = "bits:" + m["layer_names"][g[0]]
        decisions.append(Decision(dn, BITS, "bits"))
        units.append(Unit("unit:" + "+".join(m["layer_names"][i] for i in g), (dn,)))
    space = TabularSpace(f"hawq-v3-{name}", decisions, units)
    costs = layer_costs(m)
    unit_label = {"proxy": "", "size_bytes": "bytes", "bops": "MACs·b·b/1024", "latency_ms": "ms"}
    objs = [AdditiveObjective(space, k, [v[g].sum(axis=0) for g in units_layers], unit=unit_label[k])
            for k, v in costs.items()]
    return SearchProblem(space, objs, target="proxy"), units_layers


def bits_of(problem: SearchProblem, units_layers: list[list[int]], U: np.ndarray, n_layers: int) -> list[int]:
    out = [0] * n_layers
    for j, g in enumerate(units_layers):
        b = problem.index.options[j][int(U[j])]
        for i in g:
            out[i] = int(next(iter(b.values())))
    return out


def limit(m: dict[str, Any], budget: str, r: str) -> float:
    """The budget limit: from ``budget_limits`` when present, else Σcost4 + r (Σcost8 − Σcost4)."""
    lim = m.get("budget_limits", {}).get(budget, {}).get(r)
    if lim is not None:
        return float(lim)
    c = layer_costs(m)[BUDGETS[budget]]
    return float(c[:, 0].sum() + float(r) * (c[:, 1].sum() - c[:, 0].sum()))


def reproduce(name: str, m: dict[str, Any]) -> pd.DataFrame:
    """One row per (budget, r): the ILP's bits, the published bits and the number of matching layers."""
    problem, units_layers = build_problem(name, m)
    n = len(m["layer_names"])
    model = CompiledILP(problem, list(BUDGETS.values()))
    rows = []
    for budget, obj in BUDGETS.items():
        for r in RATIOS:
            lim = limit(m, budget, r)
            t0 = time.perf_counter()
            G, U = model.solve({obj: lim})
            dt = time.perf_counter() - t0
            found = bits_of(problem, units_layers, U, n)
            pub = m.get("published_configs", {}).get(f"{budget}_{r}")
            vals = problem.evaluate_indices(G[None], U[None])[0]
            row = {"model": name, "budget": budget, "r": float(r), "found": "".join(map(str, found)),
                   "published": "".join(map(str, pub)) if pub else "",
                   "matches": int(sum(a == b for a, b in zip(found, pub))) if pub else -1,
                   "n_layers": n, "limit": lim, "cost": float(vals[problem.names.index(obj)]),
                   "proxy": float(vals[0]), "solve_s": dt}
            if pub:
                pv = _evaluate_bits(problem, units_layers, pub)
                row["published_proxy"] = pv["proxy"]
                row["published_cost"] = pv[obj]
            rows.append(row)
    return pd.DataFrame(rows)


def _evaluate_bits(problem: SearchProblem, units_layers: list[list[int]], bits: list[int]) -> dict[str, float]:
    choices = {}
    for g in units_layers:
        dn = problem.index.units[units_layers.index(g)].decisions[0]
        choices[dn] = int(bits[g[0]])
    cand = problem.space.make(choices)
    return dict(zip(problem.names, problem.evaluate([cand])[0].tolist()))


def fronts(name: str, m: dict[str, Any], max_points: int = 3000) -> pd.DataFrame:
    """The exact front of proxy vs each cost (epsilon-constraint ILP)."""
    problem, _ = build_problem(name, m)
    out = []
    for obj in BUDGETS.values():
        res = ILPSolver(sweep=obj, exact_front=True, max_points=max_points).solve(problem)
        df = res.df[["proxy", "size_bytes", "bops", "latency_ms"]].copy()
        df["front"] = obj
        out.append(df)
    return pd.concat(out, ignore_index=True)


def plot_model(name: str, m: dict[str, Any], front: pd.DataFrame, path: Path) -> None:
    from hao import lazy_import
    mpl = lazy_import("matplotlib")
    mpl.use("Agg", force=False)
    plt = lazy_import("matplotlib.pyplot")
    problem, units_layers = build_problem(name, m)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    pubs = m.get("published_configs", {})
    for ax, (budget, obj) in zip(axes, BUDGETS.items()):
        f = front[front["front"] == obj].sort_values(obj)
        ax.step(f[obj], f["proxy"], where="post", c="C0", lw=1)
        ax.scatter(f[obj], f["proxy"], s=6, c="C0", label=f"exact front ({len(f)} points)")
        for k, (label, bits) in enumerate(pubs.items()):
            v = _evaluate_bits(problem, units_layers, bits)
            if label.startswith("uniform"):
                ax.scatter([v[obj]], [v["proxy"]], marker="*", s=140, c="C3" if label == "uniform8" else "C2",
                           edgecolors="k", zorder=5, label=label)
            elif label.startswith(budget):
                ax.scatter([v[obj]], [v["proxy"]], marker="o", s=50, facecolors="none", edgecolors="C1",
                           lw=1.5, zorder=4, label="published (this budget)" if "published" not in
                           [t.get_label() for t in ax.collections] else None)
        ax.set_xlabel(f"{obj}")
        ax.set_ylabel("proxy Σ trace·‖ΔW‖²")
        ax.set_title(f"{name}: proxy vs {budget}")
        ax.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        seen, hh, ll = set(), [], []
        for h, lab in zip(handles, labels):
            if lab not in seen:
                seen.add(lab)
                hh.append(h)
                ll.append(lab)
        ax.legend(hh, ll, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="file in the format of hawq_v3_ilp.json")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--no-plots", action="store_true", help="skip the exact fronts and plots")
    args = ap.parse_args(argv)
    data = load(args.data)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tables = []
    for name, m in data["models"].items():
        df = reproduce(name, m)
        tables.append(df)
        ok = df[df.matches == df.n_layers]
        print(f"{name}: {len(ok)}/{len(df)} published configs reproduced exactly; "
              f"mean solve {df.solve_s.mean() * 1e3:.1f} ms")
        for _, r in df[df.matches != df.n_layers].iterrows():
            print(f"  {r.budget} r={r.r}: {r.matches}/{r.n_layers} layers match; ILP proxy {r.proxy:.6g} vs "
                  f"published {r.get('published_proxy', float('nan')):.6g} (lower is better)")
        if not args.no_plots:
            fr = fronts(name, m)
            fr.to_csv(out / f"front_{name}.csv", index=False)
            plot_model(name, m, fr, out / f"pareto_{name}.png")
    pd.concat(tables, ignore_index=True).to_csv(out / "configs.csv", index=False)
    print(f"wrote {out / 'configs.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
