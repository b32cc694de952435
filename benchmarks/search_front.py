"""Exact Pareto fronts by dynamic programming (``solver="front"``): time, front size, memory and hypervolume for
ε ∈ {0, 0.1%, 1%}, against exhaustive enumeration (HAWQ-V3 ResNet18) and an ILP budget sweep (mbconv-fmnist),
plus the time to answer a new budget by lookup on the front.

Goals (checked and printed as PASS/FAIL, exit code 1 on a miss):
* ResNet18 quantize-only (65,536 candidates): HV of the ε = 0 front = 1.000 of the exhaustive front;
* mbconv-fmnist (4.2e52 candidates, proxy vs latency_ms): the ε = 0 front in <= 10 s wall, the ε = 0.1% front at
  HV >= 0.999 of it, and the ε = 0 front's HV >= that of a 64-budget ILP sweep;
* a budget query <= 1 ms (median).
Hypervolumes use the reference point (worst value of each objective over the space) + 1% of its range.

    python benchmarks/search_front.py [--sweep 64] [--epsilons 0 0.001 0.01] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
from search_common import fmt_table, hawq_problem, mbconv_problem

from hao.pareto import hypervolume, pareto_front
from hao.search.base import SearchProblem
from hao.search.baselines import ExhaustiveSolver
from hao.search.front import FrontSolver
from hao.search.ilp import ILPSolver

COLS = ["proxy", "latency_ms"]


def _ref(problem: SearchProblem) -> np.ndarray:
    b = np.array([problem.objective(c).bounds() for c in COLS])
    return b[:, 1] + 0.01 * (b[:, 1] - b[:, 0])


def _rss_kib(field: str) -> int | None:
    try:
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _front(problem: SearchProblem, eps: float) -> tuple[object, float, float | None]:
    """(result, wall seconds, peak extra resident memory in MiB). Memory: the kernel's peak-RSS counter, reset
    just before the solve (``/proc/self/clear_refs``; tracemalloc would slow the solve ~9x); None where the
    counter cannot be reset."""
    base = _rss_kib("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        resettable = True
    except OSError:
        resettable = False
    t0 = time.perf_counter()
    res = FrontSolver(epsilon=eps).solve(problem)
    wall = time.perf_counter() - t0
    peak = _rss_kib("VmHWM")
    mem = (peak - base) / 1024 if resettable and peak is not None and base is not None else None
    return res, wall, mem


def _query_us(res: object, n: int = 2000, seed: int = 0) -> float:
    lat = res.df["latency_ms"]  # type: ignore[attr-defined]
    rng = np.random.default_rng(seed)
    budgets = rng.uniform(lat.min(), lat.max(), n)
    res.query({"latency_ms": float(lat.max())})  # type: ignore[attr-defined]
    times = []
    for b in budgets:
        t0 = time.perf_counter()
        res.query({"latency_ms": float(b)})  # type: ignore[attr-defined]
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sweep", type=int, default=64, help="budgets of the ILP sweep compared on mbconv-fmnist")
    ap.add_argument("--epsilons", type=float, nargs="+", default=[0.0, 0.001, 0.01])
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    load0 = os.getloadavg()
    out: dict[str, object] = {"loadavg_start": load0, "goals": {}}
    goals: dict[str, bool] = {}

    # ---- ResNet18: exhaustive truth ----------------------------------------------------------------
    base = hawq_problem("resnet18")
    r18 = SearchProblem(base.space, [base.objective(c) for c in COLS])
    ref = _ref(r18)
    t0 = time.perf_counter()
    truth = pareto_front(ExhaustiveSolver(keep="pareto").solve(r18).df[COLS].to_numpy())
    t_exh = time.perf_counter() - t0
    hv_true = hypervolume(truth, ref)
    rows = []
    for eps in args.epsilons:
        res, wall, mem = _front(r18, eps)
        F = res.df[COLS].to_numpy()
        rows.append({"eps": eps, "front": len(F), "seconds": f"{wall:.3f}",
                     "peak_MiB": "-" if mem is None else f"{mem:.1f}",
                     "hv_vs_exhaustive": f"{hypervolume(F, ref) / hv_true:.6f}",
                     "hv_bound": f"{res.meta['hv_ratio_lower_bound']:.6f}"})
    print(f"HAWQ-V3 ResNet18 (quantize-only, {r18.space.size()} candidates): exhaustive front {len(truth)} points "
          f"in {t_exh:.1f} s")
    print(fmt_table(rows))
    exact0 = next(r for r in rows if r["eps"] == 0.0)
    goals["resnet18 exact front HV == 1.000 of exhaustive"] = abs(float(exact0["hv_vs_exhaustive"]) - 1) < 1e-9
    out["resnet18"] = rows

    # ---- mbconv-fmnist -------------------------------------------------------------------------------
    mb, info = mbconv_problem()
    problem = SearchProblem(mb.space, [mb.objective(c) for c in COLS])
    ref = _ref(problem)
    print(f"\nmbconv-fmnist ({float(problem.space.size()):.3g} candidates); proxy: {info['proxy']}; latency: "
          f"{info['latency']}; load {load0[0]:.2f}")
    results, rows = {}, []
    for eps in sorted(args.epsilons):
        res, wall, mem = _front(problem, eps)
        results[eps] = res
        rows.append({"eps": eps, "front": len(res.df), "seconds": f"{wall:.2f}",
                     "peak_MiB": "-" if mem is None else f"{mem:.0f}",
                     "hv_bound": f"{res.meta['hv_ratio_lower_bound']:.6f}",
                     "query_us_median": f"{_query_us(res):.0f}"})
    hv0 = hypervolume(results[0.0].df[COLS].to_numpy(), ref) if 0.0 in results else None
    for r in rows:
        r["hv_vs_eps0"] = f"{hypervolume(results[r['eps']].df[COLS].to_numpy(), ref) / hv0:.6f}" if hv0 else "-"
    t0 = time.perf_counter()
    sweep = ILPSolver(sweep="latency_ms", n_points=args.sweep).solve(problem)
    t_sweep = time.perf_counter() - t0
    hv_sweep = hypervolume(sweep.df[COLS].to_numpy(), ref)
    rows.append({"eps": f"ILP sweep {args.sweep}", "front": int(sweep.df.pareto.sum()), "seconds": f"{t_sweep:.1f}",
                 "peak_MiB": "-", "hv_bound": "-", "query_us_median": "-",
                 "hv_vs_eps0": f"{hv_sweep / hv0:.6f}" if hv0 else "-"})
    print(fmt_table(rows))
    out["mbconv_fmnist"] = rows
    if 0.0 in results:
        goals["mbconv exact front <= 10 s"] = float(rows[0]["seconds"]) <= 10
        goals[f"mbconv exact front HV >= ILP sweep ({args.sweep})"] = hv0 >= hv_sweep * (1 - 1e-12)
        q = [r for r in rows if r["eps"] == 0.001]
        if q:
            goals["mbconv eps=0.1% HV >= 0.999 of exact"] = float(q[0]["hv_vs_eps0"]) >= 0.999
        goals["budget query <= 1 ms"] = float(rows[0]["query_us_median"]) <= 1000
    out["loadavg_end"] = os.getloadavg()
    out["goals"] = goals
    print(f"\nload average at start {load0[0]:.2f}, at end {out['loadavg_end'][0]:.2f}")
    for k, ok in goals.items():
        print(f"{'PASS' if ok else 'FAIL'}  {k}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2, default=str)
    return 0 if all(goals.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
