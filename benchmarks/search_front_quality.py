"""Front quality: hypervolume of each solver's front as a fraction of the exact front's, on an enumerable
instance, and NSGA-II vs TPE vs random at equal evaluation counts.

Instance: HAWQ-V3 ResNet18 (real published traces and T4 latencies; 16 tie-group units x {4, 8} bits =
65,536 candidates), objectives (proxy, latency_ms); exact front by enumeration. Reference point: the worst value
of each objective over the space plus 1% of its range.

    python benchmarks/search_front_quality.py [--evals 100 300] [--seeds 3]
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
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args(argv)
    base = hawq_problem("resnet18")
    problem = SearchProblem(base.space, [base.objective("proxy"), base.objective("latency_ms")])
    cols = ["proxy", "latency_ms"]
    b = np.array([problem.objective(c).bounds() for c in cols])
    ref = b[:, 1] + 0.01 * (b[:, 1] - b[:, 0])
    t0 = time.perf_counter()
    exact = ExhaustiveSolver(keep="pareto").solve(problem)
    truth = pareto_front(exact.df[cols].to_numpy())
    hv_true = hypervolume(truth, ref)
    print(f"instance: HAWQ-V3 ResNet18, {problem.space.size()} candidates, exact front {len(truth)} points "
          f"(enumerated in {time.perf_counter() - t0:.1f} s)")

    def frac(df) -> float:
        return hypervolume(df[cols].to_numpy(), ref) / hv_true

    rows = []
    for n_points in (8, 16):
        t0 = time.perf_counter()
        r = ILPSolver(sweep="latency_ms", n_points=n_points).solve(problem)
        rows.append({"solver": f"ilp sweep ({n_points} budgets)", "evals": len(r.df), "hv_fraction":
                     f"{frac(r.df):.4f}", "std": "-", "seconds": f"{time.perf_counter() - t0:.2f}"})
    t0 = time.perf_counter()
    r = ILPSolver(sweep="latency_ms", exact_front=True, max_points=1000).solve(problem)
    rows.append({"solver": "ilp exact front", "evals": len(r.df), "hv_fraction": f"{frac(r.df):.4f}", "std": "-",
                 "seconds": f"{time.perf_counter() - t0:.2f}"})
    for n in args.evals:
        for name in ("random", "nsga2", "tpe"):
            fr, secs = [], []
            for seed in range(args.seeds):
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
