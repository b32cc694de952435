"""Host state on a shared virtual machine: do whole networks drift together, and does a compute-bound canary see it?

    echo -10 > /proc/self/autogroup
    python benchmarks/host_state.py --hardware cpu-znver4-2t --seconds 150 --out runs/host_state.json

Builds two networks of ``--space`` from the table's schedules (a seeded random candidate as an integer network
and as a float32 network) and a fixed canary (a 2-thread float32 256x256x256 matmul, hand-scheduled, held in
cache), then times them in turn for ``--seconds``: canary session (5 repeats), network sessions (7 repeats
each), over and over, with the load watch of every session. Reports the Spearman correlations between the three
series, their ranges (max/min) and the share of rounds in which the networks ran within 10% of their fastest.
Strong network-network correlation with a weak canary correlation means the slowdown is the host's memory
system, not the clock: see docs/measurement.md, "Host state", for what ``hao latency validate`` does about it.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def canary(target):
    """A cache-resident, compute-bound 2-thread matmul (fixed schedule: parallel rows, vectorised columns)."""
    import numpy as np
    import tvm
    from tvm import s_tir, te

    n = 256
    a = te.placeholder((n, n), name="A")
    b = te.placeholder((n, n), name="B")
    k = te.reduce_axis((0, n), "k")
    c = te.compute((n, n), lambda i, j: te.sum(a[i, k] * b[k, j], axis=k), name="C")
    sch = s_tir.Schedule(te.create_prim_func([a, b, c]))
    i, j, kk = sch.get_loops(sch.get_sblock("C"))
    jo, ji = sch.split(j, [None, 16])
    sch.reorder(i, jo, kk, ji)
    sch.parallel(i)
    sch.vectorize(ji)
    lib = tvm.compile(sch.mod, target=target)
    dev = tvm.cpu(0)
    rng = np.random.default_rng(0)
    args = [tvm.runtime.tensor(rng.random((n, n), dtype=np.float32), dev) for _ in range(2)]
    args.append(tvm.runtime.tensor(np.zeros((n, n), np.float32), dev))
    ev = lib.mod.time_evaluator("main", dev, number=1, repeat=5, min_repeat_ms=10)
    return lambda: float(np.median(ev(*args).results)) * 1e3


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--space", default="mbconv-fmnist")
    ap.add_argument("--hardware", required=True, help="a table under latency_models/ measured on this CPU")
    ap.add_argument("--seconds", type=float, default=150.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    os.environ.setdefault("TVM_NUM_THREADS", str(args.threads))

    import numpy as np
    import tvm
    from scipy.stats import spearmanr

    from hao.latency.interference import monitor
    from hao.latency.table import hardware_dir
    from hao.latency.target import default_target, pin_threads, refuse_foreign_target
    from hao.latency.tuner import Tuner
    from hao.latency.validate import build_candidate
    from hao.space import get_space

    pin_threads(args.threads)
    target = tvm.target.Target(default_target(args.threads))
    refuse_foreign_target(target, "benchmarks/host_state.py")
    space = get_space(args.space)
    tuner = Tuner(hardware_dir(args.hardware) / "tuning_db", args.threads, 8, 0)
    cand = space.sample(np.random.default_rng(args.seed))
    nets = {p: build_candidate(space, cand, p, 0, tuner) for p in ("int8", "fp32")}
    can = canary(target)
    rows = []
    t0 = time.time()
    load0 = os.getloadavg()
    while time.time() - t0 < args.seconds:
        with monitor() as got:
            r = {"t_s": round(time.time() - t0, 2), "canary_ms": can()}
            for p, n in nets.items():
                r[f"{p}_ms"] = float(np.median(n.time_session(7, 20)))
        r["other_cores"] = round(got[0].other_cores + got[0].steal_cores, 3) if got[0].available else None
        rows.append(r)
    tuner.close()
    keys = ["canary_ms", "int8_ms", "fp32_ms"]
    col = {k: np.array([r[k] for r in rows]) for k in keys}
    corr = {f"{a}~{b}": float(spearmanr(col[a], col[b]).statistic)
            for i, a in enumerate(keys) for b in keys[i + 1:]}
    rep = {"hardware": args.hardware, "space": args.space, "candidate": cand.to_dict(), "rounds": len(rows),
           "seconds": args.seconds, "threads": args.threads, "loadavg_start": load0, "loadavg_end": os.getloadavg(),
           "spearman": corr,
           "range_max_over_min": {k: float(v.max() / v.min()) for k, v in col.items()},
           "share_within_10pct_of_fastest": {k: float(np.mean(v <= 1.1 * v.min())) for k, v in col.items()},
           "max_other_cores": max((r["other_cores"] or 0.0) for r in rows), "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rep, indent=2) + "\n")
    print(json.dumps({k: rep[k] for k in ("rounds", "spearman", "range_max_over_min",
                                          "share_within_10pct_of_fastest", "max_other_cores")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
