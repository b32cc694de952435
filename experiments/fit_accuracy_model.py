"""Fit and judge the calibrated accuracy model on a trained supernet, with a protocol that can be trusted.

    python experiments/fit_accuracy_model.py --checkpoint-dir checkpoints/mbconv-fmnist --out runs/accmodel
    python experiments/fit_accuracy_model.py ... --smoke          # tiny CI setting (seconds of work)

Protocol (every step cached in ``--out``, so an interrupted run resumes where it stopped):

1. **Splits.** ``--val-images`` images are held out of the *training* split (the teacher's split: same seed);
   BatchNorm statistics and activation ranges are calibrated on ``--calib-images`` of the remaining training
   images. Everything that is *fitted* uses the validation images; the test split is only used for reporting.
2. **Architecture terms** (``hao.proxy.arch_terms``): one validation measurement per architecture option of
   every unit and per depth, against the reference (the largest architecture at 8 bits).
3. **Fit** (``hao.proxy.CalibratedAccuracyModel``): ``--n-fit`` joint candidates from seed ``--fit-seed``, their
   validation accuracy, bounded least squares for the intercept and α ≥ 0; with ``--layer-bits`` /
   ``--arch-options`` also the ridge-penalized per-layer and per-block corrections, their ridge chosen by 10-fold
   cross-validation on the fit set alone (the report then also scores the model without them);
   ``--n-corner`` adds uniform-precision candidates to the fit set and ``--block-pairs`` the within-block pair
   groups (docs/accuracy_model.md, "Corners and within-block pairs": measured, not in the committed model). Written to
   ``--out`` with the files it needs (``accuracy_model.json``, ``arch_terms.json``, ``sensitivity.json``), so
   ``hao score --checkpoint OUT`` and ``hao.search(proxy="calibrated", checkpoint=OUT, objectives=["accuracy",
   ...])`` use it. With ``--loop-rounds R`` the fit **closes the loop**: R rounds of search (the exact front of
   predicted accuracy × latency on the first committed CPU table), ``--loop-picks`` front picks measured on the
   validation images and added to the fit set, refit (same groups and ridge) — docs/accuracy_model.md, "Closing
   the loop". Every loop writes its picks to ``OUT/loop_picks.jsonl``; ``--fit-also FILE`` adds such a list to
   the fit set without searching again (the loop's rounds depend on the front solver's choices, so a replay after
   a solver change would measure new picks). ``--loss pairwise`` refits the final model (after any loop, on the
   same fit set) with the pairwise ranking loss, its ridge chosen by the same cross-validation; the report then
   also scores the squared-loss model.
4. **Report** on candidates of seeds never used in fitting (``--test-seed``): ``--n-test`` joint, ``--n-sub``
   bits-only (largest architecture) and ``--n-sub`` arch-only (8/8 bits), measured on the test split. Kendall τ of
   the predicted against the measured accuracy, with bootstrap SE, next to the baselines (−BOPs, −MACs,
   −‖ΔW‖², −share of 2-bit layers, a count model fitted on the fit set, the Hessian ΔL proxy, random), the paired
   bootstrap of τ(model) − τ(best baseline), τ *within latency bins* (``--bins`` bins of predicted latency on the
   committed CPU table), and the **test–retest ceiling**: the first ``--n-ceiling`` joint candidates measured again
   with another calibration seed, τ between the two measurements. ``--judge-budgets`` adds the search's own picks
   at those latency budgets (ms), of the model and of the model before the loop, measured on the test split.

Writes ``report.json`` (every figure, settings, wall time, load) and ``candidates.csv``.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proxy_fidelity import make_candidates  # noqa: E402


def _cached_eval(space, net, cands, calib, batches, path: Path, tag: str, progress: bool,
                exact: bool = True) -> list[dict]:
    """hao evaluate's measurement, cached per candidate in a JSON-lines file keyed by ``tag``."""
    from hao.train.candidates import evaluate_candidates
    done: dict[int, dict] = {}
    keys = [c.to_json() for c in cands]
    if path.is_file():
        by_key = {}
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            if rec["tag"] == tag:
                by_key[rec["row"]["candidate"]] = rec["row"]
        done = {i: {**by_key[k], "index": i} for i, k in enumerate(keys) if k in by_key}

    def on_row(i: int, row: dict) -> None:
        with open(path, "a") as fh:
            fh.write(json.dumps({"tag": tag, "row": row}) + "\n")

    return evaluate_candidates(space, net, cands, calib, batches, done=done, on_row=on_row, progress=progress,
                               exact=exact)


def make_corner_candidates(space, n: int, seed: int) -> list:
    """Uniform-precision candidates for the fit set: the largest and the smallest architecture at every uniform
    (weight, activation) bit-width pair, then random architectures, each at one uniformly drawn pair. Random joint
    candidates almost never have every layer at the same width, so without these the model's percent is
    extrapolated at the corners the search ends on (all-8-bit networks, the smallest network)."""
    if n <= 0:
        return []
    decs = space.decisions()
    w_opts = sorted({int(o) for d in decs if d.kind == "w_bits" for o in d.options})
    a_opts = sorted({int(o) for d in decs if d.kind == "a_bits" for o in d.options})
    pairs = [(w, x) for w in w_opts for x in a_opts]

    bit_names = {d.name for d in decs if d.kind in ("w_bits", "a_bits", "bits")}

    def at(arch: dict, w: int, x: int):  # arch's architecture, the bits of space.uniform(w, x)
        return space.make({**arch, **{k: v for k, v in space.uniform(w, x).as_dict().items() if k in bit_names}})

    out = [at(base.as_dict(), w, x) for base in (space.largest(), space.smallest()) for w, x in pairs]
    rng = np.random.default_rng([seed, 1])
    while len(out) < n:
        w, x = pairs[rng.integers(len(pairs))]
        out.append(at(space.sample(rng).as_dict(), w, x))
    return out[:n]


def front_picks(space, model, hardware: str, budgets=None, k: int = 0, exclude=(),
                unique: bool = True) -> tuple[list, np.ndarray]:
    """The candidates the search returns with ``model``: the exact front of predicted accuracy against latency on
    ``hardware``, queried at each latency budget (ms) — ``budgets``, or ``k`` budgets at the front's own latency
    quantiles 0.1 … 0.9. Returns ``(picks, budgets)`` in budget order; with ``unique`` duplicates and candidates
    whose JSON is in ``exclude`` are dropped (else one pick per budget)."""
    import hao
    from hao.space.base import Candidate
    front = hao.search(space, hardware, solver="front", objectives=["accuracy", "latency_ms"], proxy=model)
    if budgets is None:
        budgets = np.quantile(front.df["latency_ms"], np.linspace(0.1, 0.9, k))
    seen, picks = set(exclude), []
    for b in budgets:
        c = Candidate.from_json(front.query({"latency_ms": float(b)})["config"])
        if not unique or c.to_json() not in seen:
            seen.add(c.to_json())
            picks.append(c)
    return picks, np.asarray(budgets, dtype=float)


def paired_tau_gap(a: np.ndarray, b: np.ndarray, y: np.ndarray, boot: int = 500, seed: int = 0) -> dict[str, float]:
    """τ(a, y) − τ(b, y) and its bootstrap SE over the same resamples (paired)."""
    from scipy.stats import kendalltau
    rng = np.random.default_rng(seed)
    d0 = kendalltau(a, y).statistic - kendalltau(b, y).statistic
    ds = []
    for _ in range(boot):
        i = rng.integers(0, len(y), len(y))
        d = kendalltau(a[i], y[i]).statistic - kendalltau(b[i], y[i]).statistic
        if np.isfinite(d):
            ds.append(d)
    return {"gap": float(d0), "se": float(np.std(ds, ddof=1)) if len(ds) > 1 else float("nan")}


def counts(space, cands) -> np.ndarray:
    """Per candidate: layers at the lowest weight bits, at 4 weight bits, at the lowest activation bits, blocks."""
    out = []
    for c in cands:
        ps = [p for p in space.perturbations(c) if not p.removed]
        out.append([sum(p.w_bits == 2 for p in ps), sum(p.w_bits == 4 for p in ps), sum(p.a_bits == 4 for p in ps),
                    sum(c[d.name] for d in space.decisions() if d.kind == "depth")])
    return np.asarray(out, dtype=float)


def share_2bit(space, cands) -> np.ndarray:
    """Per candidate: the share of its kept layers at 2-bit weights (the strongest counting baseline here)."""
    return np.array([np.mean([p.w_bits == 2 for p in space.perturbations(c) if not p.removed]) for c in cands])


def held_out_splits(a):
    """``(train, val, test, calib)`` of the protocol: ``a.val_images`` held out of the training split, the test
    split (a seeded subset when ``a.test_images`` is smaller), ``a.calib_images`` training images in batches."""
    from hao.data import fashion_mnist, loader
    from hao.train.teacher import split_validation

    train, val = split_validation(fashion_mnist("train", a.data), a.val_images, a.seed)
    test = fashion_mnist("test", a.data)
    if a.test_images < len(test):
        test = test.subset(a.test_images, seed=a.seed + 7)
    return train, val, test, list(loader(train.subset(a.calib_images, seed=a.seed + 1), 250))


def baselines(space, table, fit_c, fit_y, test_c, seed: int) -> dict[str, np.ndarray]:
    """Scores where higher = predicted more accurate."""
    from sklearn.linear_model import Ridge

    from hao.proxy import AccuracyProxy, WeightNormProxy
    from hao.search.objectives import bops_objective, macs_objective
    ridge = Ridge(alpha=1.0).fit(counts(space, fit_c), fit_y)
    return {"-BOPs": -bops_objective(space).evaluate(test_c), "-MACs": -macs_objective(space).evaluate(test_c),
            "-||dW||^2": -WeightNormProxy(space, table).score(test_c),
            "-share of 2-bit layers": -share_2bit(space, test_c),
            "count model (ridge, fit set)": ridge.predict(counts(space, test_c)),
            "-Hessian proxy (dL)": -AccuracyProxy(space, table).score(test_c),
            "random": np.random.default_rng(seed).random(len(test_c))}


_RIDGES = {"squared": "1,3,10,30,100,300,1000", "pairwise": "0.0003,0.001,0.003,0.01,0.03"}


def choose_ridge(space, groups, cands, y: np.ndarray, grid: list[float], seed: int, folds: int = 10,
                 loss: str = "squared", target: str = "accuracy") -> dict:
    """The ridge of the per-layer corrections with the best Kendall τ of out-of-fold predictions on the fit set
    (``folds``-fold, seeded); the fit set only, so the held-out report stays untouched."""
    from hao.proxy.calibrated import CalibratedAccuracyModel
    from hao.stats import kendall_tau
    fold = np.random.default_rng(seed).permutation(len(y)) % folds
    taus = {}
    for r in grid:
        oof = np.zeros(len(y))
        for k in range(folds):
            tr = np.flatnonzero(fold != k)
            m = CalibratedAccuracyModel(space, groups, ridge=r, loss=loss, target=target)
            m.fit([cands[i] for i in tr], y[tr])
            oof[fold == k] = m.predict([cands[i] for i in np.flatnonzero(fold == k)])[0]
        taus[r] = kendall_tau(oof, y, boot=0)["tau"]
    best = max(grid, key=lambda r: (taus[r], r))  # ties: the stiffer model
    return {"ridge": best, "cv_tau": {str(r): t for r, t in taus.items()}, "folds": folds}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint-dir", default=None, help="supernet.pt + sensitivity.json (default: the space's)")
    p.add_argument("--out", required=True)
    p.add_argument("--space", default="mbconv-fmnist")
    p.add_argument("--data", default=None)
    p.add_argument("--val-images", type=int, default=5000)
    p.add_argument("--calib-images", type=int, default=2000)
    p.add_argument("--test-images", type=int, default=10000)
    p.add_argument("--n-fit", type=int, default=80)
    p.add_argument("--n-test", type=int, default=60)
    p.add_argument("--n-sub", type=int, default=20, help="bits-only and arch-only test candidates (each)")
    p.add_argument("--n-ceiling", type=int, default=20)
    p.add_argument("--bins", type=int, default=4)
    p.add_argument("--n-corner", type=int, default=0,
                   help="uniform-precision fit candidates (largest, smallest, random architectures) added to the "
                        "--n-fit joint ones, so the percent is not extrapolated at the all-8-bit corner")
    p.add_argument("--loop-rounds", type=int, default=0,
                   help="closed loop: after the fit, this many rounds of search → measure the picks → refit")
    p.add_argument("--loop-picks", type=int, default=6, help="front picks measured per loop round")
    p.add_argument("--fit-also", default=None,
                   help="JSON lines, one Candidate.to_json() each (e.g. an earlier loop's OUT/loop_picks.jsonl): "
                        "measured on the validation images and added to the fit set after the ridge is chosen, "
                        "as the loop adds its picks")
    p.add_argument("--judge-budgets", default="",
                   help="latency budgets (ms, comma-separated): the picks of the model (and of the model before the "
                        "loop) at each, measured on the test split")
    p.add_argument("--fit-seed", type=int, default=100)
    p.add_argument("--test-seed", type=int, default=200)
    p.add_argument("--seed", type=int, default=0, help="split and calibration seed")
    p.add_argument("--hardware", default=None, help="latency table for the bins (default: the first cpu-* table)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--float-eval", action="store_true",
                   help="measure accuracies on the float32 fake-quant path (~2x faster) instead of the exact integer "
                        "arithmetic of the deployment (top-1 agreement of the two: 99.75-100%%, docs/deployment.md)")
    p.add_argument("--layer-bits", action="store_true",
                   help="add a ridge-penalized correction per layer and bit-width (docs/accuracy_model.md, "
                        "\"Per-layer corrections\"); the ridge is chosen by 10-fold cross-validation on the fit set")
    p.add_argument("--arch-options", action="store_true",
                   help="add a ridge-penalized correction per block and architecture value (kernel, expand ratio, "
                        "switched off), alone or with --layer-bits")
    p.add_argument("--block-pairs", action="store_true",
                   help="add the within-block interaction groups (pairs of lowest-width layers in one block)")
    p.add_argument("--ridges", default=None,
                   help="the ridge grid of --layer-bits / --arch-options (default 1,3,...,1000 for the squared loss, "
                        "0.0003,0.001,...,0.03 for the pairwise loss)")
    p.add_argument("--loss", choices=("squared", "pairwise"), default="squared",
                   help="the final fit's loss (docs/accuracy_model.md, \"Fitting α\"); the loop's rounds always refit "
                        "with the squared loss, so the final loss does not change the loop's picks")
    p.add_argument("--target", choices=("accuracy", "log_error"), default="accuracy",
                   help="what the additive form is fitted on (docs/accuracy_model.md, \"The log-error target\"): "
                        "the accuracy, or the log of the error rate (each term multiplies the error rate)")
    p.add_argument("--smoke", action="store_true", help="tiny settings for CI")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    if a.smoke:
        a.val_images, a.calib_images, a.test_images = 64, 32, 64
        a.n_fit, a.n_test, a.n_sub, a.n_ceiling, a.bins = 16, 8, 2, 4, 2
        a.loop_picks = min(a.loop_picks, 2)
    t0, load0 = time.perf_counter(), os.getloadavg()
    import torch

    import hao
    import hao.paths
    from hao.data import loader
    from hao.proxy import SensitivityTable, build_term_groups, default_checkpoint_dir
    from hao.proxy.arch_terms import measure_arch_terms
    from hao.proxy.calibrated import CalibratedAccuracyModel
    from hao.stats import kendall_tau
    from hao.train import load_supernet

    torch.set_num_threads(a.threads)
    progress = not a.no_progress
    space = hao.get_space(a.space)
    folder = Path(a.checkpoint_dir) if a.checkpoint_dir else default_checkpoint_dir(space.checkpoint_name)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    net = load_supernet(space, folder / "supernet.pt")
    table = SensitivityTable.load(folder / "sensitivity.json", space=space)
    train, val, test, calib = held_out_splits(a)
    calib2 = list(loader(train.subset(a.calib_images, seed=a.seed + 2), 250))
    val_b, test_b = list(loader(val, 500)), list(loader(test, 500))
    tag = f"{(folder / 'supernet.pt').stat().st_size}|{a.seed}|{a.calib_images}|{a.val_images}"
    exact = not a.float_eval

    # 2. architecture terms on the validation images
    cache = out / "arch_terms.partial.jsonl"
    done = {}
    if cache.is_file():
        for line in cache.read_text().splitlines():
            rec = json.loads(line)
            if rec["tag"] == tag:
                done[rec["key"]] = rec["row"]

    def on_arch(key: str, row: dict) -> None:
        with open(cache, "a") as fh:
            fh.write(json.dumps({"tag": tag, "key": key, "row": row}) + "\n")

    arch = measure_arch_terms(space, net, calib, val_b, done=done, on_row=on_arch, progress=progress, exact=exact)
    arch.save(out / "arch_terms.json")
    # 3. fit on validation accuracies of the fit seeds
    fit_c = [c for _, c in make_candidates(space, a.n_fit, 0, 0, a.fit_seed)]
    fit_c += make_corner_candidates(space, a.n_corner, a.fit_seed)
    etag = tag + ("|float" if a.float_eval else "")  # architecture terms are always float32 (loss differences)
    fit_rows = _cached_eval(space, net, fit_c, calib, val_b, out / "fit_val.jsonl", etag, progress, exact)
    fit_y = np.array([r["accuracy"] for r in fit_rows])
    groups = build_term_groups(space, table, arch, layer_bits=a.layer_bits, arch_options=a.arch_options,
                               block_pairs=a.block_pairs)
    ridge_cv = None
    model = CalibratedAccuracyModel(space, groups, target=a.target)
    if groups.penalized.any():
        ridge_cv = choose_ridge(space, groups, fit_c, fit_y, [float(r) for r in (a.ridges or
                                _RIDGES["squared"]).split(",")], a.seed, target=a.target)
        model = CalibratedAccuracyModel(space, groups, ridge=ridge_cv["ridge"], target=a.target)
    model.fit(fit_c, fit_y)
    hw = a.hardware or next((p.name for p in sorted(Path(hao.paths.builtin_dir("latency_models")).glob("cpu-*"))
                             if (p / "table.csv").is_file()), None)
    # 3b. closed loop: the search's own picks, measured on the validation images, join the fit set
    if (a.loop_rounds or a.judge_budgets.strip()) and not hw:
        raise SystemExit("--loop-rounds and --judge-budgets search on a CPU latency table and found none: pass "
                         "--hardware NAME (a folder of latency_models/ with a table.csv; `hao latency list` "
                         "lists them). See docs/accuracy_model.md, \"Closing the loop\".")
    if a.fit_also:
        from hao.space import Candidate
        extra = [Candidate.from_json(x) for x in Path(a.fit_also).read_text().splitlines() if x.strip()]
        ye = np.array([x["accuracy"] for x in _cached_eval(space, net, extra, calib, val_b, out / "fit_val.jsonl",
                                                             etag, progress, exact)])
        fit_c, fit_y = fit_c + extra, np.r_[fit_y, ye]
        model = CalibratedAccuracyModel(space, groups, ridge=model.ridge, target=a.target).fit(fit_c, fit_y)
    initial, loop = model, []
    for r in range(a.loop_rounds):
        picks, budgets = front_picks(space, model, hw, k=a.loop_picks, exclude={c.to_json() for c in fit_c})
        if not picks:
            break
        ym = np.array([x["accuracy"] for x in _cached_eval(space, net, picks, calib, val_b, out / "fit_val.jsonl",
                                                             etag, progress, exact)])
        yp = model.predict(picks)[0]
        loop.append({"round": r, "budgets_ms": budgets.tolist(), "predicted": yp.tolist(), "measured": ym.tolist(),
                     "mean_optimism_points": float(np.mean(yp - ym))})
        print(f"loop round {r}: {len(picks)} picks, predicted − measured {np.mean(yp - ym):+.2f} points", flush=True)
        fit_c, fit_y = fit_c + picks, np.r_[fit_y, ym]
        with open(out / "loop_picks.jsonl", "w" if r == 0 else "a") as fh:
            fh.writelines(c.to_json() + "\n" for c in picks)
        model = CalibratedAccuracyModel(space, groups, ridge=model.ridge, target=a.target).fit(fit_c, fit_y)
    squared, loss_cv = model, None
    if a.loss != "squared":  # the final fit with another loss, on the same fit set (loop picks included)
        grid = [float(r) for r in (a.ridges or _RIDGES[a.loss]).split(",")]
        loss_cv = choose_ridge(space, groups, fit_c, fit_y, grid, a.seed, loss=a.loss, target=a.target)
        model = CalibratedAccuracyModel(space, groups, ridge=loss_cv["ridge"], loss=a.loss,
                                        target=a.target).fit(fit_c, fit_y)
    model.info = {"target": a.target, "fit_seed": a.fit_seed, "n_fit": a.n_fit, "n_corner": a.n_corner,
                  "loop_rounds": len(loop), "fit_also": a.fit_also,
                  "n_fit_total": len(fit_c), "fitted_on": f"{len(val)} validation images held out "
                  "of the training split", "checkpoint": str(folder), "ridge_cv": ridge_cv,
                  "loss": a.loss, "loss_ridge_cv": loss_cv}
    shutil.copy(folder / "sensitivity.json", out / "sensitivity.json")
    model.save(out)
    # 4. report on held-out seeds, test split
    sets = make_candidates(space, a.n_test, a.n_sub, a.n_sub, a.test_seed)
    test_c = [c for _, c in sets]
    kinds = np.array([k for k, _ in sets])
    rows = _cached_eval(space, net, test_c, calib, test_b, out / "test.jsonl", etag, progress, exact)
    y = np.array([r["accuracy"] for r in rows])
    pred, sd = model.predict(test_c)
    base = baselines(space, table, fit_c, fit_y, test_c, a.seed)
    report: dict[str, Any] = {"settings": vars(a), "groups": groups.names, "alpha": model.alpha_.tolist(),
                              "intercept": model.intercept_, "sigma": model.sigma_, "ridge_cv": ridge_cv}
    coarse = None
    if groups.penalized.any():  # what the detail terms add: the same fit without them
        coarse_m = CalibratedAccuracyModel(space, build_term_groups(space, table, arch), target=a.target)
        coarse = coarse_m.fit(fit_c, fit_y).predict(test_c)[0]
    for kind in ("joint", "bits", "arch"):
        m = kinds == kind
        if m.sum() < 3:
            continue
        r = {"model": kendall_tau(pred[m], y[m], seed=a.seed)}
        if loop:
            r["model before loop"] = kendall_tau(initial.predict(test_c)[0][m], y[m], seed=a.seed)
        if squared is not model:
            r["model, squared loss"] = kendall_tau(squared.predict(test_c)[0][m], y[m], seed=a.seed)
        if coarse is not None:
            r["model without detail terms"] = kendall_tau(coarse[m], y[m], seed=a.seed)
        for name, s in base.items():
            r[name] = kendall_tau(s[m], y[m], seed=a.seed)
        best = max((n for n in base if n != "random"), key=lambda n: r[n]["tau"] if r[n]["tau"] is not None else -2)
        r["best_baseline"] = best
        r["gap_to_best_baseline"] = paired_tau_gap(pred[m], base[best][m], y[m], seed=a.seed)
        report[f"tau_{kind}"] = r
    # τ within latency bins (the choice the search makes): joint candidates, bins of predicted latency
    report["loop"] = loop
    if hw:
        from hao.latency.predictor import LatencyPredictor
        from hao.search.objectives import latency_objective
        lat_model = LatencyPredictor.from_table(hw, space=space.name, quantiles=None)
        lat = latency_objective(space, lat_model).evaluate(test_c)
        m = kinds == "joint"
        edges = np.quantile(lat[m], np.linspace(0, 1, a.bins + 1))
        b = np.clip(np.searchsorted(edges, lat[m], side="right") - 1, 0, a.bins - 1)
        taus = [kendall_tau(pred[m][b == i], y[m][b == i], boot=0)["tau"] for i in range(a.bins)]
        ws = [int(np.sum(b == i)) for i in range(a.bins)]
        ok = [(t, w) for t, w in zip(taus, ws) if t is not None and np.isfinite(t)]
        report["tau_within_latency_bins"] = {"hardware": hw, "per_bin": taus, "sizes": ws,
                                             "weighted_mean": float(sum(t * w for t, w in ok) / sum(w for _, w in ok))
                                             if ok else None}
    # test-retest ceiling: the same candidates, another calibration subset
    ceil_c = test_c[: a.n_ceiling]
    again = _cached_eval(space, net, ceil_c, calib2, test_b, out / "retest.jsonl", etag + "|calib2", progress, exact)
    report["ceiling"] = kendall_tau(y[: a.n_ceiling], np.array([r["accuracy"] for r in again]), seed=a.seed)
    # the search's own picks at fixed budgets, measured on the test split: what a user of the front gets
    judge = [float(b) for b in a.judge_budgets.split(",") if b.strip()]
    if judge and hw:
        report["front_picks"] = []
        judged = [("model", model)] + ([("squared loss", squared)] if squared is not model else []) + \
            ([("before loop", initial)] if loop else [])
        for name, m in judged:
            picks, _ = front_picks(space, m, hw, budgets=judge, unique=False)
            ym = _cached_eval(space, net, picks, calib, test_b, out / "test.jsonl", etag, progress, exact)
            for b, c, pp, mm in zip(judge, picks, m.predict(picks)[0], ym):
                report["front_picks"].append({"model": name, "budget_ms": b, "predicted": float(pp),
                                              "measured": mm["accuracy"], "candidate": c.to_json()})
    report["prediction_error"] = {"mae_points": float(np.mean(np.abs(pred - y))),
                                  "share_within_1_sigma": float(np.mean(np.abs(pred - y) <= sd))}
    report["wall_s"], report["loadavg"] = time.perf_counter() - t0, [load0, os.getloadavg()]
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    with open(out / "candidates.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["kind", "measured_accuracy", "predicted_accuracy", "predicted_sd", "candidate"])
        for k, c, yy, pp, ss in zip(kinds, test_c, y, pred, sd):
            w.writerow([k, f"{yy:.3f}", f"{pp:.3f}", f"{ss:.3f}", c.to_json()])
    j = report.get("tau_joint", {})
    print(f"joint τ {j.get('model', {}).get('tau')} (best baseline {j.get('best_baseline')}: "
          f"{j.get(j.get('best_baseline', ''), {}).get('tau')}); ceiling {report['ceiling']['tau']}; "
          f"{report['wall_s'] / 60:.1f} min -> {out / 'report.json'}")
    return report


if __name__ == "__main__":
    main()
