"""Time to answer one new budget on the joint MBConv space with the exact ILP (aim: <= 10 CPU-s).

Builds the problem once (objective tables), compiles the ILP once (per-unit option reduction), then answers
budgets it has not seen: latency alone, latency + size, latency + size + BOPs. Prints CPU seconds per answer.

    python benchmarks/search_ilp_budget.py [--budgets 8]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from search_common import cpu_seconds, fmt_table, mbconv_problem

from hao.search.ilp import CompiledILP


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budgets", type=int, default=8, help="new budgets per constraint set")
    ap.add_argument("--space", default="mbconv-fmnist")
    ap.add_argument("--checkpoint", help="folder with sensitivity.json (default: checkpoints/<space>/)")
    args = ap.parse_args(argv)
    problem, info = mbconv_problem(args.space, args.checkpoint)
    print(f"space {args.space}: size {float(problem.space.size()):.3e}, units {problem.index.n_units}, "
          f"options/unit {int(problem.index.n_opts.max())}; proxy: {info['proxy']}; latency: {info['latency']}; "
          f"objective tables built in {info['build_s']} s")
    rows = []
    for cons in (["latency_ms"], ["latency_ms", "size_mb"], ["latency_ms", "size_mb", "bops_g"]):
        c0 = cpu_seconds()
        model = CompiledILP(problem, cons)
        compile_cpu = cpu_seconds() - c0
        bounds = {n: problem.objective(n).bounds() for n in cons}
        rng = np.random.default_rng(0)
        times, walls = [], []
        for _ in range(args.budgets):
            f = rng.uniform(0.15, 0.85)
            b = {n: lo + f * (hi - lo) * (1.0 if i == 0 else 1.3) for i, (n, (lo, hi)) in enumerate(bounds.items())}
            c0, w0 = cpu_seconds(), time.perf_counter()
            try:
                model.solve(b)
            except Exception as exc:  # noqa: BLE001 - jointly infeasible draws are reported, not fatal
                print(f"  {b}: {exc}")
                continue
            times.append(cpu_seconds() - c0)
            walls.append(time.perf_counter() - w0)
        rows.append({"constraints": "+".join(cons), "vars_after_reduction": model.n_var,
                     "vars_before": int(problem.index.n_opts.sum()),
                     "compile_cpu_s": f"{compile_cpu:.2f}", "answers": len(times),
                     "median_cpu_s": f"{np.median(times):.3f}", "max_cpu_s": f"{np.max(times):.3f}",
                     "median_wall_s": f"{np.median(walls):.3f}", "target_s": 10})
    print(fmt_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
