"""Predictor vs the FLOPs-proportional baseline on held-out kernels of a table (5 seeded splits), side by side.

    python benchmarks/latency_predictor.py [--hardware cpu-rocketlake-2t] [--split shape|row]

``--split shape`` (default) holds out whole *shapes*: every row of a held-out kernel geometry (op, channels,
size, kernel, stride, groups, batch), at every bit-width, is unseen in training (scikit-learn's
GroupShuffleSplit) — the case of a search space's kernel the table never measured. ``--split row`` holds out
random rows (the same shape at other bits may be in training).

    python benchmarks/latency_predictor.py --hardware cpu-znver4-2t --train-first 243 --space mbconv-fmnist-res

``--train-first N`` fits on the table's first N rows and tests on the rest — the rows a later calibration appended
(e.g. a new input resolution's kernels: shapes the first rows never contained); with ``--space`` it also compares,
over 300 seeded networks of that space, the network sum predicted from the first N rows with the sum of the
measured rows.

    python benchmarks/latency_predictor.py --hardware runs/trials64/rl-trials64 --against cpu-rocketlake-2t

``--against T`` compares two tables of one CPU on the kernels they share (e.g. the same plan tuned with 64
MetaSchedule trials and with the default 8): the latency ratio, and the held-out-shape error of each table's own
predictor on identical splits — how much of that error is the schedule lottery of short tuning.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np


def _shape(k) -> str:
    """A kernel's geometry, whatever its bit-widths: the group a shape-wise split holds out whole."""
    return str((k.op, k.in_channels, k.out_channels, k.in_h, k.in_w, k.kernel, k.stride, k.groups, k.batch))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hardware", default="cpu-rocketlake-2t")
    ap.add_argument("--splits", type=int, default=5)
    ap.add_argument("--test-fraction", type=float, default=0.2)
    ap.add_argument("--split", choices=("shape", "row"), default="shape")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--train-first", type=int, default=None, help="fit on the first N rows, test on the rest")
    ap.add_argument("--space", default=None, help="with --train-first: also compare network sums of this space")
    ap.add_argument("--against", default=None, help="a second table of the same CPU: compare on shared kernels")
    args = ap.parse_args()
    if args.train_first is not None:
        return appended(args)
    if args.against is not None:
        return against(args)

    from hao.latency.predictor import FlopsBaseline, LatencyPredictor, error_stats
    from hao.latency.table import load_table

    t = load_table(args.hardware)
    ks, y = t.kernels(), t.df["latency_ms"].to_numpy()
    res = {"predictor": [], "baseline": [], "fit_s": [], "predict_us_per_kernel": []}
    from sklearn.model_selection import GroupShuffleSplit
    shape = [_shape(k) for k in ks]
    groups = np.unique(shape, return_inverse=True)[1] if args.split == "shape" else np.arange(len(ks))
    splitter = GroupShuffleSplit(n_splits=args.splits, test_size=args.test_fraction, random_state=0)
    for tr, te in splitter.split(np.zeros(len(ks)), y, groups):
        n = len(te)
        t0 = time.perf_counter()
        p = LatencyPredictor(quantiles=None).fit([ks[i] for i in tr], y[tr])
        res["fit_s"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        pp = p.predict([ks[i] for i in te])
        res["predict_us_per_kernel"].append((time.perf_counter() - t0) / n * 1e6)
        res["predictor"].append(error_stats(pp, y[te]))
        res["baseline"].append(error_stats(FlopsBaseline().fit([ks[i] for i in tr], y[tr]).predict(
            [ks[i] for i in te]), y[te]))
    summ = {m: {k: float(np.mean([r[k] for r in res[m]])) for k in res[m][0]} for m in ("predictor", "baseline")}
    out = {"hardware": args.hardware, "rows": len(ks), "shapes": int(len(set(shape))), "split": args.split,
           "splits": args.splits, "test_fraction": args.test_fraction,
           "mean_over_splits": summ, "fit_s": float(np.mean(res["fit_s"])),
           "predict_us_per_kernel": float(np.mean(res["predict_us_per_kernel"]))}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{args.hardware}: {len(ks)} rows ({out['shapes']} shapes), {args.splits} splits, "
          f"{args.test_fraction:.0%} of the {'shapes' if args.split == 'shape' else 'rows'} held out")
    print(f"{'':<11}{'median |err|%':>14}{'mean |err|%':>12}{'within 10%':>11}{'Kendall tau':>12}")
    for m in ("predictor", "baseline"):
        s = summ[m]
        print(f"{m:<11}{s['median_abs_err_pct']:>14.1f}{s['mean_abs_err_pct']:>12.1f}"
              f"{s['share_within_10pct']:>11.0%}{s['kendall_tau']:>12.3f}")
    print(f"ratio baseline/predictor median error: "
          f"{summ['baseline']['median_abs_err_pct'] / summ['predictor']['median_abs_err_pct']:.2f}x; "
          f"fit {out['fit_s']:.2f} s, predict {out['predict_us_per_kernel']:.1f} us/kernel")


def appended(args: argparse.Namespace) -> None:
    from hao.latency.predictor import FlopsBaseline, LatencyPredictor, error_stats
    from hao.latency.table import load_table

    t = load_table(args.hardware)
    ks, y = t.kernels(), t.df["latency_ms"].to_numpy()
    n = args.train_first
    if not 5 <= n < len(ks):
        raise SystemExit(f"--train-first must be in [5, {len(ks) - 1}] for {args.hardware} ({len(ks)} rows)")
    first = LatencyPredictor(quantiles=None).fit(ks[:n], y[:n])
    out = {"hardware": args.hardware, "train_rows": n, "test_rows": len(ks) - n,
           "predictor": error_stats(first.predict(ks[n:]), y[n:]),
           "baseline": error_stats(FlopsBaseline().fit(ks[:n], y[:n]).predict(ks[n:]), y[n:])}
    if args.space:
        from hao.space import get_space

        space, full = get_space(args.space), LatencyPredictor(quantiles=None).fit(ks, y)
        rng = np.random.default_rng(5)
        ratios: dict[str, list[float]] = {}
        for _ in range(300):
            c = space.sample(rng)
            k = space.kernels(c)
            ctx = ",".join(f"{a}={c[a]}" for a in space.context_decisions()) or "all"
            ratios.setdefault(ctx, []).append(float(first.predict(k, prefer_measured=True).sum()
                                                    / full.predict(k, prefer_measured=True).sum()))
        out["networks"] = {ctx: {"n": len(v), "median_ratio": float(np.median(v)),
                                 "share_within_10pct": float(np.mean(np.abs(np.array(v) - 1) < 0.1))}
                           for ctx, v in sorted(ratios.items())}
    print(json.dumps(out, indent=2))


def against(args: argparse.Namespace) -> None:
    from sklearn.model_selection import GroupShuffleSplit

    from hao.latency.predictor import FlopsBaseline, LatencyPredictor, error_stats
    from hao.latency.table import load_table

    a, b = load_table(args.hardware), load_table(args.against)
    yb = dict(zip(b.kernels(), b.df["latency_ms"].to_numpy()))
    pairs = [(k, v, yb[k]) for k, v in zip(a.kernels(), a.df["latency_ms"].to_numpy()) if k in yb]
    if len(pairs) < 10:
        raise SystemExit(f"{args.hardware} and {args.against} share {len(pairs)} kernels; need at least 10")
    ks = [p[0] for p in pairs]
    ys = {args.hardware: np.array([p[1] for p in pairs]), args.against: np.array([p[2] for p in pairs])}
    groups = np.unique([_shape(k) for k in ks], return_inverse=True)[1]
    ratio = ys[args.hardware] / ys[args.against]
    out: dict = {"shared_kernels": len(ks), "shapes": int(groups.max() + 1),
                 "latency_ratio": {"median": float(np.median(ratio)), "p10": float(np.quantile(ratio, 0.1)),
                                   "p90": float(np.quantile(ratio, 0.9))}, "held_out_shapes": {}}
    for name, y in ys.items():
        err: dict[str, list[np.ndarray]] = {"predictor": [], "baseline": []}
        ref: list[np.ndarray] = []
        splitter = GroupShuffleSplit(n_splits=args.splits * 5, test_size=args.test_fraction, random_state=0)
        for tr, te in splitter.split(np.zeros(len(ks)), y, groups):
            trk, tek = [ks[i] for i in tr], [ks[i] for i in te]
            err["predictor"].append(LatencyPredictor(quantiles=None).fit(trk, y[tr]).predict(tek))
            err["baseline"].append(FlopsBaseline().fit(trk, y[tr]).predict(tek))
            ref.append(y[te])
        out["held_out_shapes"][name] = {m: error_stats(np.concatenate(v), np.concatenate(ref)) for m, v in err.items()}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
