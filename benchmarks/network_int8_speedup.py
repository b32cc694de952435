"""Whole-network integer speed-up: one architecture as a float32 network and as the integer network of the table's
int8 programs, built here and timed side by side in one run (interleaved sessions).

    echo -10 > /proc/self/autogroup     # priority for the timing on a shared machine
    python benchmarks/network_int8_speedup.py --out runs/speedup.json                      # this CPU, 8 trials
    python benchmarks/network_int8_speedup.py --hardware cpu-rocketlake-2t --out r.json    # on that table's CPU

Both networks get their schedules the same way: from the hardware's ``tuning_db`` (``--hardware``; a table
kernel's schedule by construction) or tuned now with ``--trials`` MetaSchedule trials per program (``native``:
into ``--db``). Reports both medians, the ratio, the load at start and end, and a per-op breakdown of the
table's prediction when a table is given. The target is the issue's: largest architecture, uniform int8 >= 2x
float32 — on a CPU with AVX-512 VNNI; without it (e.g. AMD ``znver3``) the same int8 programs run without the
dot-product instruction and the ratio says what that costs.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--space", default="mbconv-fmnist")
    ap.add_argument("--hardware", default="native", help="a table under latency_models/, or native (this CPU)")
    ap.add_argument("--db", default="runs/native_tuning_db", help="tuning database for --hardware native")
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    os.environ.setdefault("TVM_NUM_THREADS", str(args.threads))

    import hao
    from hao.latency.runlog import load_average, scheduling_priority
    from hao.latency.table import hardware_dir
    from hao.latency.tvm_backend import pin_threads
    from hao.latency.validate import Tuner, build_candidate, time_interleaved

    pin_threads(args.threads)
    space = hao.get_space(args.space)
    db = Path(args.db) if args.hardware == "native" else hardware_dir(args.hardware) / "tuning_db"
    tuner = Tuner(db, args.threads, args.trials, args.seed)
    t0 = time.perf_counter()
    try:
        fp32 = build_candidate(space, space.largest(), "fp32", args.seed, tuner)
        int8 = build_candidate(space, space.largest(), "int8", args.seed, tuner)
        nets = [fp32, int8]
        from hao.latency.dw_dot import uses_dot_depthwise

        if uses_dot_depthwise(tuner.backend.target):   # also the portable depthwise program, for comparison
            nets.append(build_candidate(space, space.largest(), "int8", args.seed, tuner, portable=True))
        build_s = time.perf_counter() - t0
        load0 = load_average()
        timed = time_interleaved(nets, passes=args.rounds)
        fp, i8 = timed[0], timed[1]
    finally:
        tuner.close()
    res = {"space": args.space, "architecture": "largest", "hardware": args.hardware, "threads": args.threads,
           "trials": args.trials, "rounds": args.rounds, "build_and_tune_s": round(build_s, 1),
           "loadavg_start": load0, "loadavg_end": load_average(), "priority": scheduling_priority(),
           "fp32": fp, "int8": i8, "int8_schedules": int8.facts.get("schedules"),
           "speedup_int8_over_fp32": fp["measured_ms"] / i8["measured_ms"] if fp["ok"] and i8["ok"] else None,
           "int8_depthwise_program": "dot-product (hao/latency/dw_dot.py)" if len(nets) == 3 else "portable",
           "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if args.hardware != "native":
        from hao.latency.predictor import LatencyPredictor
        from hao.latency.table import load_table
        from hao.latency.validate import _network_kernels

        pred = LatencyPredictor.from_table(load_table(args.hardware))
        for prec in ("fp32", "int8"):
            ks = _network_kernels(space, space.largest(), prec)
            per = pred.predict(ks, prefer_measured=True)
            res[f"predicted_{prec}_by_op_ms"] = {op: float(sum(p for k, p in zip(ks, per) if k.op == op))
                                                 for op in sorted({k.op for k in ks})}
    if len(timed) == 3:
        res["int8_portable_depthwise"] = timed[2]
        if timed[2]["ok"] and fp["ok"]:
            res["speedup_int8_portable_depthwise_over_fp32"] = fp["measured_ms"] / timed[2]["measured_ms"]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2, default=str) + "\n")
    extra = (f", int8 with the portable depthwise program {timed[2].get('measured_ms')} ms"
             if len(timed) == 3 else "")
    print(f"fp32 {fp.get('measured_ms')} ms, int8 {i8.get('measured_ms')} ms{extra}, speed-up "
          f"{res['speedup_int8_over_fp32']}; load {load0} -> {res['loadavg_end']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
