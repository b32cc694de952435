"""Depthwise kernels, three programs side by side: float32, the portable int8 program and the dot-product int8
program (AVX-512 VNNI + VBMI; ``hao/latency/dw_dot.py``), timed in interleaved rounds in one run.

    echo -10 > /proc/self/autogroup
    python benchmarks/dw_int8_programs.py --hardware cpu-rocketlake-2t --shapes 12 --out out/dw_programs.json

Shapes: the ``--shapes`` depthwise shapes of the space with the largest float32 latency in the table. The float32
and portable int8 programs take their schedules from the table's tuning database (they are tuned if missing);
the dot-product program is written scheduled. Every output is checked against its reference before timing.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hardware", required=True, help="table folder (its tuning_db holds the schedules)")
    ap.add_argument("--space", default="mbconv-fmnist")
    ap.add_argument("--shapes", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median kept)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    os.environ.setdefault("TVM_NUM_THREADS", str(args.threads))

    import hao
    from hao.latency.backend import replace_bits
    from hao.latency.coverage import space_kernels
    from hao.latency.dw_dot import uses_dot_depthwise
    from hao.latency.runlog import load_average, scheduling_priority
    from hao.latency.table import hardware_dir, load_table
    from hao.latency.target import refuse_foreign_target
    from hao.latency.tvm_backend import TVMBackend

    table = load_table(args.hardware)
    target = table.meta.get("target") or {}
    refuse_foreign_target(target, f"timing {args.hardware}'s programs")
    if not uses_dot_depthwise(target):
        print(f"{args.hardware}: target {target} lacks AVX-512 VNNI + VBMI; only the portable int8 program runs "
              "there.", file=sys.stderr)
        return 2
    fp = list({replace_bits(k, 32, 32).key(): replace_bits(k, 32, 32)
               for k in space_kernels(hao.get_space(args.space)) if k.op == "dwconv2d"}.values())
    lat = {k.key(): table.latency(k) for k in fp}
    shapes = sorted(fp, key=lambda k: -(lat[k.key()] or 0))[: args.shapes]
    db = hardware_dir(args.hardware) / "tuning_db"
    common = dict(target=dict(target), database_dir=db, threads=args.threads, rounds=1)
    t0, load0 = time.time(), load_average()
    runs: dict[str, list[list[float]]] = {s.short(): [] for s in shapes}
    with TVMBackend(**common) as native, TVMBackend(**common, portable=True) as portable:
        for r in range(args.rounds):
            for k in shapes:
                row = []
                for backend, kk in ((native, k), (portable, replace_bits(k, 8, 8)), (native, replace_bits(k, 8, 8))):
                    m = backend.measure(kk)
                    if not m.ok:
                        raise SystemExit(f"{kk.short()}: {m.reason}")
                    row.append(m.latency_ms * 1e3)
                runs[k.short()].append(row)
            print(f"round {r + 1}/{args.rounds} done", flush=True)
    rows = []
    for k in shapes:
        med = np.median(np.array(runs[k.short()]), axis=0)
        rows.append({"kernel": k.short(), "fp32_us": round(float(med[0]), 2),
                     "int8_portable_us": round(float(med[1]), 2), "int8_dot_us": round(float(med[2]), 2),
                     "dot_vs_fp32": round(float(med[0] / med[2]), 3),
                     "dot_vs_portable": round(float(med[1] / med[2]), 3)})
    tot = {c: sum(r[c] for r in rows) for c in ("fp32_us", "int8_portable_us", "int8_dot_us")}
    out = {"hardware": args.hardware, "target": target, "space": args.space, "rounds": args.rounds,
           "threads": args.threads, "priority": scheduling_priority(), "load_average_start": load0,
           "load_average_end": load_average(), "wall_s": round(time.time() - t0, 1), "kernels": rows,
           "total_us": tot, "total_dot_vs_fp32": round(tot["fp32_us"] / tot["int8_dot_us"], 3),
           "total_portable_vs_fp32": round(tot["fp32_us"] / tot["int8_portable_us"], 3)}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(out, fh, indent=2)
    print(f"{'kernel':<44}{'fp32 µs':>9}{'int8 µs':>9}{'dot µs':>9}{'dot/fp32':>10}")
    for r in rows:
        print(f"{r['kernel']:<44}{r['fp32_us']:>9.1f}{r['int8_portable_us']:>9.1f}{r['int8_dot_us']:>9.1f}"
              f"{r['dot_vs_fp32']:>9.2f}x")
    print(f"total: fp32 {tot['fp32_us']:.1f} µs, portable int8 {tot['int8_portable_us']:.1f} µs, dot int8 "
          f"{tot['int8_dot_us']:.1f} µs -> dot {out['total_dot_vs_fp32']:.2f}x float32 speed "
          f"(portable {out['total_portable_vs_fp32']:.2f}x); load {load0} -> {out['load_average_end']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
