"""Front quality: hypervolume of each solver's front as a fraction of the exact front's, on an enumerable
instance, and NSGA-II vs TPE vs random at equal evaluation counts.

Instance 1: HAWQ-V3 ResNet18 (real published traces and T4 latencies; 16 tie-group units x {4, 8} bits =
65,536 candidates), objectives (proxy, latency_ms); exact front by enumeration.
Instance 2: the joint MBConv space (~4e52 candidates; see search_common.py for which proxy/latency ran). Its exact
front of (proxy, latency_ms) can hold thousands of points, so its hypervolume is bracketed by a dense ILP budget
sweep (every answer exact; see bracket_exact_hv) and fractions are given against the lower end.
Reference point: the worst value of each objective over the space plus 1% of its range.

    python benchmarks/search_front_quality.py [--evals 100 300] [--mbconv-evals 300] [--seeds 3]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from search_common import fmt_table, hawq_problem

from hao.pareto import hypervolume, pareto_front
from hao.search.base import SearchProblem
from hao.search.baselines import ExhaustiveSolver, RandomSolver
from hao.search.ilp import ILPSolver
from hao.search.optuna_solver import OptunaSolver


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--evals", type=int, nargs="+", default=[100, 300])
    ap.add_argument("--mbconv-evals", type=int, nargs="*", default=[300])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--checkpoint", help="folder with sensitivity.json for the MBConv proxy")
    args = ap.parse_args(argv)
    base = hawq_problem("resnet18")
    compare(SearchProblem(base.space, [base.objective("proxy"), base.objective("latency_ms")]), args.evals,
            args.seeds, "HAWQ-V3 ResNet18", enumerate_front=True)
    if args.mbconv_evals:
        from search_common import mbconv_problem
        mb, info = mbconv_problem(checkpoint=args.checkpoint)
        print(f"\nMBConv: proxy {info['proxy']}; latency {info['latency']}")
        compare(SearchProblem(mb.space, [mb.objective("proxy"), mb.objective("latency_ms")]), args.mbconv_evals,
                args.seeds, "joint MBConv (mbconv-fmnist)", enumerate_front=False)
    return 0


def bracket_exact_hv(problem: SearchProblem, ref: np.ndarray, n_budgets: int) -> tuple[float, float, int]:
    """Lower and upper bounds on the exact front's hypervolume (proxy, latency_ms) from an ILP budget sweep.

    Every sweep answer (c_i, p_i) at budget b_i is Pareto-optimal (lower bound). No candidate with cost <= b_{i+1}
    beats p_{i+1}, so adding the optimistic corners (b_i, p_{i+1}) gives a region containing the exact front's
    (upper bound)."""
    model = ILPSolver().compile(problem, extra=["latency_ms"])
    lat, prox = problem.objective("latency_ms"), problem.objective("proxy")
    lo, _ = lat.bounds()
    G, U = model.solve({})
    hi = float(lat.evaluate_indices(U[None])[0])
    pts, corners = [], []
    budgets = np.linspace(lo, hi, n_budgets)
    for b in budgets:
        G, U = model.solve({"latency_ms": float(b)})
        pts.append((float(prox.evaluate_indices(U[None])[0]), float(lat.evaluate_indices(U[None])[0])))
    for i in range(len(budgets) - 1):
        corners.append((pts[i + 1][0], float(budgets[i])))
    P = np.array(pts)
    return hypervolume(P, ref), hypervolume(np.vstack([P, np.array(corners)]), ref), len(np.unique(P, axis=0))


def compare(problem: SearchProblem, evals: list[int], seeds: int, title: str, enumerate_front: bool,
            dense: int = 256) -> None:
    cols = ["proxy", "latency_ms"]
    b = np.array([problem.objective(c).bounds() for c in cols])
    ref = b[:, 1] + 0.01 * (b[:, 1] - b[:, 0])
    t0 = time.perf_counter()
    if enumerate_front:
        exact = ExhaustiveSolver(keep="pareto").solve(problem)
        truth = pareto_front(exact.df[cols].to_numpy())
        hv_true = hv_hi = hypervolume(truth, ref)
        print(f"instance: {title}, {float(problem.space.size()):.4g} candidates, exact front {len(truth)} points "
              f"(enumerated in {time.perf_counter() - t0:.1f} s)")
    else:
        hv_true, hv_hi, n_pts = bracket_exact_hv(problem, ref, dense)
        print(f"instance: {title}, {float(problem.space.size()):.4g} candidates; exact-front hypervolume bracketed "
              f"by a {dense}-budget ILP sweep ({n_pts} distinct optima): [{hv_true:.6g}, {hv_hi:.6g}] "
              f"(width {100 * (hv_hi / hv_true - 1):.2f}%, {time.perf_counter() - t0:.1f} s). Fractions below are "
              "of the lower end (true fraction within that width).")

    def frac(df) -> float:
        return hypervolume(df[cols].to_numpy(), ref) / hv_true

    rows = []
    for n_points in (8, 16):
        t0 = time.perf_counter()
        r = ILPSolver(sweep="latency_ms", n_points=n_points).solve(problem)
        rows.append({"solver": f"ilp sweep ({n_points} budgets)", "evals": len(r.df), "hv_fraction":
                     f"{frac(r.df):.4f}", "std": "-", "seconds": f"{time.perf_counter() - t0:.2f}"})
    if enumerate_front:
        t0 = time.perf_counter()
        r = ILPSolver(sweep="latency_ms", exact_front=True, max_points=1000).solve(problem)
        rows.append({"solver": "ilp exact front", "evals": len(r.df), "hv_fraction": f"{frac(r.df):.4f}",
                     "std": "-", "seconds": f"{time.perf_counter() - t0:.2f}"})
    for n in evals:
        for name in ("random", "nsga2", "tpe"):
            fr, secs = [], []
            for seed in range(seeds):
                t0 = time.perf_counter()
                if name == "random":
                    r = RandomSolver(n_samples=n, seed=seed).solve(problem)
                    # sampling with replacement: top up to n distinct evaluations like Optuna's n trials
                else:
                    r = OptunaSolver(sampler=name, n_trials=n, seed=seed, storage=":memory:",
                                     population_size=max(10, n // 10)).solve(problem)
                secs.append(time.perf_counter() - t0)
                fr.append(frac(r.df))
            rows.append({"solver": name, "evals": n, "hv_fraction": f"{np.mean(fr):.4f}", "std": f"{np.std(fr):.4f}",
                         "seconds": f"{np.mean(secs):.2f}"})
    print(fmt_table(rows))


if __name__ == "__main__":
    raise SystemExit(main())
