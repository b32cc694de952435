"""How many measured kernels does a table need? Replays adaptive calibration on a complete table.

    python benchmarks/adaptive_calibration.py --hardware cpu-znver5-2t --out runs/adaptive.json \
        [--reports latency_models/cpu-znver5-2t/validation_mbconv-fmnist*.json] [--budgets 40,60,...]

The table must hold every float32 and int8 kernel of the space (``hao calibrate --space S --no-space-bits``);
its validation reports (``hao latency validate --precision fp32|int8|mixed``) hold whole networks measured on
the same hardware. For each budget B the kernels are chosen as ``hao calibrate --adaptive B`` would choose
them (:class:`hao.latency.adaptive.AdaptiveSampler`, same seed), the measured latency of a chosen kernel is its
row in the table (the measurement it would have got), a predictor is fitted on those B rows only, and every
validation network of every report is predicted as ``hao latency validate`` scores it: Σ kernels (measured rows
looked up, the others predicted) plus the overhead fitted on that report's calibration networks. Reported per
budget: share of held-out networks within ±10%, median |error|, Kendall τ — for the adaptive order and for a
seeded random order of the same pool (mean of ``--random-orders`` orders), so the curve says what the choice is
worth. Measuring B kernels costs the table's mean wall time per kernel times B (also reported).
"""
from __future__ import annotations

import argparse
import glob
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _score(pred_fn, reports, space):
    from hao.latency.validate import _network_kernels, score_rows
    from hao.space import Candidate
    from hao.stats import error_stats

    allp, allm = [], []
    per = {}
    for rep in reports:
        rows = []
        for r in rep["networks"]:
            if not r.get("ok"):
                continue
            ks = _network_kernels(space, Candidate.from_dict(r["candidate"]), rep["precision"])
            rows.append({**r, "sum_kernels_ms": pred_fn(ks), "n_kernels": len(ks)})
        summary, _ = score_rows(rows, network_scale=False)
        val = [r for r in rows if r["role"] == "validation"]
        per[rep["precision"]] = {k: summary.get(k) for k in ("share_within_10pct", "median_abs_err_pct",
                                                              "kendall_tau")}
        allp += [r["predicted_ms"] for r in val]
        allm += [r["measured_ms"] for r in val]
    tot = error_stats(np.array(allp), np.array(allm))
    return {"all": {k: tot[k] for k in ("n", "share_within_10pct", "median_abs_err_pct", "kendall_tau")},
            "by_precision": per}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hardware", required=True)
    ap.add_argument("--space", default="mbconv-fmnist")
    ap.add_argument("--reports", nargs="*", default=None,
                    help="validation reports (default: the table folder's validation_<space>*.json)")
    ap.add_argument("--budgets", default="40,60,80,100,120,150,180,all")
    ap.add_argument("--random-orders", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    from hao.errors import ConfigError
    from hao.latency.adaptive import AdaptiveSampler, usage_weights
    from hao.latency.backend import kernel_precision
    from hao.latency.predictor import LatencyPredictor
    from hao.latency.runlog import load_meta
    from hao.latency.table import hardware_dir, load_table
    from hao.space import get_space

    t0 = time.perf_counter()
    space = get_space(args.space)
    table = load_table(args.hardware)
    folder = hardware_dir(args.hardware)
    paths = args.reports or sorted(glob.glob(str(folder / f"validation_{args.space}*.json")))
    reports = [json.loads(Path(p).read_text()) for p in paths]
    for rep, p in zip(reports, paths):
        rep["precision"] = rep.get("precision", "fp32").split()[0]
        if rep["precision"].startswith("float32"):
            rep["precision"] = "fp32"
    if not reports:
        raise ConfigError(f"no validation reports for {args.space} in {folder}; run `hao latency validate "
                          f"{args.hardware} --space {args.space} --precision fp32|int8|mixed` first.")
    # keyed by the table key (the layout a row records is the program's, e.g. NCHW16c for int8)
    truth = {k.key(): float(v) for k, v in zip(table.kernels(), table.df["latency_ms"].to_numpy(float))
             if kernel_precision(k) in ("fp32", "int8")}
    weights = usage_weights(space, seed=args.seed)
    pool = sorted(k for k in weights if k.key() in truth)
    missing = [k for k in weights if k.key() not in truth]
    if missing:
        raise ConfigError(f"{args.hardware} lacks {len(missing)} float32/int8 kernels of {args.space} (e.g. "
                          f"{missing[0].short()}); the replay needs the complete table (`hao calibrate --space "
                          f"{args.space} --no-space-bits`).")
    budgets = [len(pool) if b == "all" else int(b) for b in args.budgets.split(",")]
    budgets = sorted({min(b, len(pool)) for b in budgets})

    def fit_on(chosen):
        est = LatencyPredictor().fit(chosen, [truth[k.key()] for k in chosen])
        return lambda ks: float(est.predict(ks, prefer_measured=True).sum())

    # adaptive order: the sampler's proposals, measured from the table, until the largest budget
    sampler = AdaptiveSampler(pool, weights, seed=args.seed)
    order: list = []
    known: dict = {}
    while len(order) < budgets[-1]:
        batch = sampler.next(known)
        if not batch:
            break
        for k in batch:
            if len(order) < budgets[-1]:
                order.append(k)
                known[k] = truth[k.key()]
    rows = []
    for b in budgets:
        row = {"kernels": b, "adaptive": _score(fit_on(order[:b]), reports, space)}
        rnd = []
        for r in range(args.random_orders):
            perm = np.random.default_rng(args.seed + 1 + r).permutation(len(pool))
            rnd.append(_score(fit_on([pool[i] for i in perm[:b]]), reports, space)["all"])
        row["random_mean"] = {k: float(np.mean([x[k] for x in rnd])) for k in rnd[0]}
        rows.append(row)
        print(f"{b:4d} kernels: adaptive {row['adaptive']['all']['share_within_10pct']:.2f} within ±10% "
              f"(median {row['adaptive']['all']['median_abs_err_pct']:.1f}%), random "
              f"{row['random_mean']['share_within_10pct']:.2f}", flush=True)
    meta = load_meta(folder / "meta.json")
    runs = meta.get("calibration_runs", [])
    measured = sum(int(r.get("measured", 0)) for r in runs)
    wall = sum(float(r.get("wall_s", 0.0)) for r in runs)
    res = {"hardware": args.hardware, "space": args.space, "pool": len(pool), "reports": [Path(p).name for p in paths],
           "validation_networks": {r["precision"]: sum(n["role"] == "validation" and n.get("ok")
                                                       for n in r["networks"]) for r in reports},
           "seconds_per_measured_kernel": wall / measured if measured else None, "curve": rows,
           "wall_s": round(time.perf_counter() - t0, 1)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
