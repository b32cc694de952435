"""Candidates scored per second: vectorized additive scoring (proxy + predicted latency + size + BOPs) vs
scoring each candidate through its kernels and layers, side by side on the joint MBConv space.

    python benchmarks/search_scoring.py [--n 1000000]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from search_common import fmt_table, mbconv_problem


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="candidates for the vectorized path")
    ap.add_argument("--n-slow", type=int, default=200, help="candidates for the per-candidate path")
    ap.add_argument("--checkpoint", help="folder with sensitivity.json (default: checkpoints/<space>/)")
    args = ap.parse_args(argv)
    problem, info = mbconv_problem(checkpoint=args.checkpoint)
    print(f"proxy: {info['proxy']}; latency: {info['latency']}; 4 objectives; tables built in {info['build_s']} s")
    ix = problem.index
    rng = np.random.default_rng(0)
    rows = []
    # 1) scoring only (index arrays already drawn)
    G, U = ix.sample(rng, args.n)
    t0 = time.perf_counter()
    V = problem.evaluate_indices(G, U)
    dt = time.perf_counter() - t0
    fast = args.n / dt
    rows.append({"path": "vectorized score (indices given)", "candidates": args.n, "seconds": f"{dt:.3f}",
                 "per_second": f"{fast:.3g}"})
    # 2) sample + score + Pareto filter on 2 objectives, as the random solver does
    from hao.pareto import non_dominated
    t0 = time.perf_counter()
    G, U = ix.sample(rng, args.n)
    V = problem.evaluate_indices(G, U)
    non_dominated(V[:, :2])
    dt = time.perf_counter() - t0
    rows.append({"path": "sample + score + 2-D Pareto filter", "candidates": args.n, "seconds": f"{dt:.3f}",
                 "per_second": f"{args.n / dt:.3g}"})
    # 3) per candidate: build the Candidate, list its kernels, sum per-kernel costs, score the layers
    cands = ix.to_candidates(*ix.sample(rng, args.n_slow))
    t0 = time.perf_counter()
    for c in cands:
        ks = problem.space.kernels(c)
        sum(k.bops for k in ks)
        sum(k.weight_bytes for k in ks)
        problem.space.perturbations(c)
        problem.evaluate([c])
    dt = time.perf_counter() - t0
    slow = args.n_slow / dt
    rows.append({"path": "per candidate (kernels + layers + lookup)", "candidates": args.n_slow,
                 "seconds": f"{dt:.3f}", "per_second": f"{slow:.3g}"})
    print(fmt_table(rows))
    print(f"vectorized / per-candidate: {fast / slow:.0f}x (aim: >= 1e5 candidates/s vectorized)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
