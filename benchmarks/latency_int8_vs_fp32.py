"""int8 vs float32 on a calibrated table: per-op speed-up ratios of the same shapes, side by side.

    python benchmarks/latency_int8_vs_fp32.py [--hardware cpu-rocketlake-2t] [--live N]

``--live N`` re-measures N conv shapes at both precisions in this run (TVM, schedules from the table's
tuning database) so that the ratio is taken under identical conditions.
"""
from __future__ import annotations

import argparse
import json

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hardware", default="cpu-rocketlake-2t")
    ap.add_argument("--live", type=int, default=0, help="also re-measure N conv shapes now (needs tvm)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from hao.latency.table import hardware_dir, load_table

    t = load_table(args.hardware)
    df = t.df
    key = ["op", "in_channels", "out_channels", "in_h", "in_w", "kernel", "stride", "groups", "batch"]
    fp = df[(df.w_bits == 32) & (df.a_bits == 32)].set_index(key)["latency_ms"]
    i8 = df[(df.w_bits == 8) & (df.a_bits == 8) | ((df.op.isin(["add", "avgpool"])) & (df.a_bits == 8))]
    i8 = i8.set_index(key)["latency_ms"]
    both = fp.to_frame("fp32").join(i8.to_frame("int8"), how="inner")
    both["speedup"] = both["fp32"] / both["int8"]
    out = {"hardware": args.hardware, "shapes_with_both": int(len(both)), "per_op": {}}
    for op, g in both.groupby(level="op"):
        out["per_op"][op] = {"n": int(len(g)), "geomean_speedup": float(np.exp(np.log(g.speedup).mean())),
                             "median_speedup": float(g.speedup.median()),
                             "sum_fp32_ms": float(g.fp32.sum()), "sum_int8_ms": float(g.int8.sum()),
                             "total_speedup": float(g.fp32.sum() / g.int8.sum())}
    conv = both.loc[["conv2d"]] if "conv2d" in both.index.get_level_values("op") else both.iloc[:0]
    if args.live and len(conv):
        from hao.kernel import KernelSpec
        from hao.latency.tvm_backend import TVMBackend, pin_threads

        pin_threads(2)
        shapes = conv.sort_values("fp32", ascending=False).index[: args.live]
        live = []
        with TVMBackend(database_dir=hardware_dir(args.hardware) / "tuning_db") as b:
            for s in shapes:
                d = dict(zip(key, s))
                kf = KernelSpec(**d, w_bits=32, a_bits=32)
                ki = KernelSpec(**d, w_bits=8, a_bits=8)
                mf, mi = b.measure(kf), b.measure(ki)
                live.append({"kernel": kf.short(), "fp32_ms": mf.latency_ms, "int8_ms": mi.latency_ms,
                             "speedup": mf.latency_ms / mi.latency_ms, "vnni": mi.vnni})
        out["live"] = live
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{args.hardware}: {out['shapes_with_both']} shapes measured at both fp32 and int8")
    print(f"{'op':<10}{'n':>5}{'geomean x':>11}{'median x':>10}{'sum fp32 ms':>13}{'sum int8 ms':>13}{'total x':>9}")
    for op, r in out["per_op"].items():
        print(f"{op:<10}{r['n']:>5}{r['geomean_speedup']:>11.2f}{r['median_speedup']:>10.2f}{r['sum_fp32_ms']:>13.3f}"
              f"{r['sum_int8_ms']:>13.3f}{r['total_speedup']:>9.2f}")
    for r in out.get("live", []):
        print(f"live {r['kernel']:<40} fp32 {r['fp32_ms']:.4f} ms  int8 {r['int8_ms']:.4f} ms  "
              f"x{r['speedup']:.2f} vnni={r['vnni']}")


if __name__ == "__main__":
    main()
