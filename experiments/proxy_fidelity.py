"""How well does the Hessian proxy rank real accuracy? Kendall τ on the trained mbconv-fmnist supernet.

    PYTHONPATH=. python experiments/proxy_fidelity.py --out runs/fidelity [--n-joint 60 --n-bits 24 --n-arch 24]

For seeded candidates of three kinds — *joint* (architecture and bits both random), *bits-only* (largest
architecture, random per-layer bits) and *arch-only* (random architecture, uniform 8/8 bits) — each sub-network is
built from the supernet, its BatchNorm statistics and activation ranges are recalibrated on ``--calib-images``
training images, and its fake-quantized accuracy is measured on the Fashion-MNIST test split (or a seeded
subset of it, ``--test-images``). The measured
accuracy drop (reference: the largest sub-network at 8/8 bits) is compared by Kendall τ (± bootstrap standard
error) with: the Hessian proxy (real-data traces), the same proxy with data-free ZeroQ traces, ‖ΔW‖² without the
Hessian, −FLOPs (MACs) and −BOPs (smaller networks are predicted to lose more), and a seeded random score.
Candidates draw each layer's bits with a per-candidate probability of low bits (uniform in [0, 1]) so that the
set spans mild to severe compression. Writes ``candidates.csv``, ``fidelity.json`` and ``traces.csv`` to --out
and states its wall time. The Hessian proxy has a weight term and, when the sensitivity table carries activation
statistics (format 2), an activation-bit term; its weights-only variant is scored too. ``--eigen-batches N``
adds Q-BERT's sensitivity (the top Hessian eigenvalue of each layer, mean + std over N batches, in place of the
trace; :func:`hao.proxy.eigen_sensitivity`) as ``proxy_eigen``; the count of 2-bit weight layers is a baseline.
Spaces with quantization groups (``vit-fmnist``) draw each matrix's groups uniformly in every candidate.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def _draw_bits(space, rng: np.random.Generator, d: dict) -> dict:
    """Per-candidate low-bit probability p ~ U(0, 1): each layer takes its lowest option with probability p,
    otherwise a uniformly random option."""
    p = rng.uniform(0, 1)
    for dec in space.decisions():
        if dec.kind in ("w_bits", "a_bits"):
            opts = sorted(dec.options)
            d[dec.name] = int(opts[0]) if rng.uniform() < p else int(opts[rng.integers(len(opts))])
        elif dec.kind == "groups":      # quantization groups (vit-fmnist): uniformly random
            d[dec.name] = int(dec.options[rng.integers(len(dec.options))])
    return d


def make_candidates(space, n_joint: int, n_bits: int, n_arch: int, seed: int) -> list[tuple[str, object]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_joint):
        d = space.sample(rng).as_dict()
        out.append(("joint", space.make(_draw_bits(space, rng, d))))
    big = space.largest().as_dict()
    for _ in range(n_bits):
        out.append(("bits", space.make(_draw_bits(space, rng, dict(big)))))
    for _ in range(n_arch):
        d = space.sample(rng).as_dict()
        for dec in space.decisions():
            if dec.kind in ("w_bits", "a_bits"):
                d[dec.name] = max(dec.options)
        out.append(("arch", space.make(d)))
    return out


ARCH_WEIGHT_GRID = (0.0, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


def fit_arch_weight(space, table, calib_dir: Path, exclude: set[str]) -> dict:
    """The ``arch_weight`` (from :data:`ARCH_WEIGHT_GRID`) whose proxy ranks the joint candidates evaluated in
    ``calib_dir/candidates.csv`` best (Kendall τ vs accuracy drop; ties go to the weight nearest 1, the
    unchanged proxy). Those candidates must not be the ones it is then judged on (``exclude``): a weight
    fitted on the candidates it is scored on would only report the fit."""
    import pandas as pd
    from scipy.stats import kendalltau

    from hao.proxy import AccuracyProxy

    path = calib_dir / "candidates.csv"
    if not path.is_file():
        raise SystemExit(f"--arch-weight-from: {path} does not exist; run this script with another --seed and "
                         f"--out {calib_dir} first.")
    meta = calib_dir / "fidelity.json"
    if meta.is_file():
        other = json.loads(meta.read_text()).get("space")
        if other != space.name:
            raise SystemExit(f"--arch-weight-from {calib_dir}: that run scored space {other!r}, this one "
                             f"{space.name!r}; calibrate on the same space and checkpoint.")
    cal = pd.read_csv(path)
    cal = cal[cal["set"] == "joint"]
    overlap = sum(c in exclude for c in cal["candidate"])
    if overlap or len(cal) < 5:
        raise SystemExit(f"--arch-weight-from {calib_dir}: needs >= 5 joint candidates none of which is scored "
                         f"here; it has {len(cal)}, {overlap} shared. Use another --seed for the calibration run.")
    cands = [space.candidate_from_json(c) for c in cal["candidate"]]
    taus = {w: float(kendalltau(AccuracyProxy(space, table, arch_weight=w).score(cands), cal["acc_drop"]).statistic)
            for w in ARCH_WEIGHT_GRID}
    best = max(ARCH_WEIGHT_GRID, key=lambda w: (taus[w] if np.isfinite(taus[w]) else -np.inf,  # nan: constant
                                                 -abs(np.log10(w + 1e-4))))
    return {"arch_weight": best, "calibration_dir": str(calib_dir), "calibration_joint_n": int(len(cal)),
            "calibration_tau_by_weight": {str(w): t for w, t in taus.items()}}


def kendall(x: np.ndarray, y: np.ndarray, seed: int = 0, boot: int = 300) -> tuple[float, float]:
    """Kendall τ-b and its bootstrap standard error (:func:`hao.stats.kendall_tau`)."""
    from hao.stats import kendall_tau
    r = kendall_tau(x, y, seed=seed, boot=boot)
    se = r["se_bootstrap"]
    return float(r["tau"]) if r["tau"] is not None else float("nan"), float(se) if se is not None else float("nan")


_W: dict = {}


def _init_worker(space, net, calib, test_batches, threads):
    torch.set_num_threads(threads)
    _W.update(space=space, net=net, calib=calib, test=test_batches)


def _eval_one(item):
    from hao.train import evaluate_full, prepare_subnet
    kind, c = item
    t0 = time.perf_counter()
    sub = prepare_subnet(_W["space"].build(c, _W["net"]), _W["calib"])
    r = evaluate_full(sub, _W["test"])
    return {"set": kind, "accuracy": r.accuracy, "accuracy_se": r.accuracy_se, "loss": r.loss,
            "eval_s": time.perf_counter() - t0, "candidate": c.to_json()}


def _interleave(items: list) -> list[int]:
    """Evaluation order: round-robin over the sets (joint, bits, arch), so that a run stopped early
    (``--max-minutes``) still holds every set in proportion."""
    by: dict[str, list[int]] = {}
    for i, (kind, _) in enumerate(items):
        by.setdefault(kind, []).append(i)
    order, queues = [], [list(v) for v in by.values()]
    total = len(items)
    while len(order) < total:
        for q in queues:
            # take from each set in proportion to its size
            share = max(1, round(len(q) / max(1, min(len(x) for x in queues if x)))) if q else 0
            for _ in range(share):
                if q:
                    order.append(q.pop(0))
    return order


def _evaluate_all(space, net, cands, calib, test_batches, progress=True, workers=1, threads=1,
                  cache: Path | None = None, deadline: float | None = None):
    """BN-recalibrated fake-quant accuracy of every candidate; ``workers`` processes (forked) share the work.

    With ``cache`` (a JSON-lines file) every finished evaluation is appended at once and a re-run evaluates
    only the missing candidates; with ``deadline`` (``time.time()``) no new candidate starts after it. Returns
    the rows in ``cands`` order, ``None`` for candidates not evaluated."""
    from tqdm import tqdm
    done: dict[tuple, dict] = {}
    if cache is not None and cache.is_file():
        for line in cache.read_text().splitlines():
            try:
                r = json.loads(line)
                done[(r["set"], r["candidate"])] = r
            except (json.JSONDecodeError, KeyError):
                continue    # a torn last line from a kill
    todo = [i for i in _interleave(cands) if (cands[i][0], cands[i][1].to_json()) not in done]
    bar = tqdm(total=len(todo), desc="evaluate", disable=not progress, mininterval=10)

    def record(r: dict) -> None:
        done[(r["set"], r["candidate"])] = r
        if cache is not None:
            with open(cache, "a") as f:
                f.write(json.dumps(r) + "\n")
        bar.update(1)

    try:
        if workers <= 1:
            _init_worker(space, net, calib, test_batches, threads)
            for i in todo:
                if deadline is not None and time.time() > deadline:
                    break
                record(_eval_one(cands[i]))
        else:
            import multiprocessing as mp
            from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
            with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"), initializer=_init_worker,
                                     initargs=(space, net, calib, test_batches, threads)) as ex:
                queue, running = list(todo), set()
                while queue or running:
                    while queue and len(running) < workers and (deadline is None or time.time() < deadline):
                        running.add(ex.submit(_eval_one, cands[queue.pop(0)]))
                    if not running:
                        break
                    fin, running = wait(running, return_when=FIRST_COMPLETED)
                    for f in fin:
                        record(f.result())
    finally:
        bar.close()
    return [done.get((k, c.to_json())) for k, c in cands]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--space", default="mbconv-fmnist")
    p.add_argument("--checkpoint-dir", default=None, help="default: checkpoints/<space>")
    p.add_argument("--data", default=None)
    p.add_argument("--n-joint", type=int, default=60)
    p.add_argument("--n-bits", type=int, default=24)
    p.add_argument("--n-arch", type=int, default=24)
    p.add_argument("--calib-images", type=int, default=500)
    p.add_argument("--test-images", type=int, default=10000, help="seeded subset of the 10k test split if fewer")
    p.add_argument("--zeroq-images", type=int, default=64)
    p.add_argument("--zeroq-steps", type=int, default=100)
    p.add_argument("--trace-samples", type=int, default=48)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="threads per worker")
    p.add_argument("--workers", type=int, default=2, help="evaluation processes")
    p.add_argument("--skip-zeroq", action="store_true")
    p.add_argument("--eigen-batches", type=int, default=0,
                   help="also score Q-BERT's sensitivity (top Hessian eigenvalue per layer, mean + std over this "
                        "many batches of --eigen-batch-size training images; 0 = skip)")
    p.add_argument("--eigen-batch-size", type=int, default=32)
    p.add_argument("--eigen-iters", type=int, default=30, help="most power-iteration products per layer and batch")
    p.add_argument("--rescore", action="store_true",
                   help="reuse --out/evaluations_raw.csv (same seed and counts) and only recompute the scores")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="start no new evaluation after so many minutes; score the candidates evaluated so far "
                        "(re-run the same command to resume: evaluations are cached in OUT/evaluations.jsonl)")
    p.add_argument("--arch-weight-from", default=None, metavar="DIR",
                   help="an earlier run's --out with *other* candidates (another --seed): pick the proxy's "
                        "arch_weight that ranks DIR's joint candidates best (grid, Kendall τ) and score this "
                        "run's candidates with it too (column proxy_hessian_fitted_arch_weight)")
    p.add_argument("--wait-sensitivity-min", type=float, default=0.0,
                   help="wait so long for checkpoint-dir/sensitivity.json to appear (computed concurrently)")
    a = p.parse_args(argv)

    import pandas as pd

    import hao
    from hao.data import fashion_mnist, loader
    from hao.proxy import (AccuracyProxy, SensitivityTable, WeightNormProxy, default_checkpoint_dir,
                           zeroq_sensitivity)
    from hao.train import load_supernet

    torch.set_num_threads(a.threads)
    t_start = time.perf_counter()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    space = hao.get_space(a.space)
    folder = Path(a.checkpoint_dir) if a.checkpoint_dir else default_checkpoint_dir(space.checkpoint_name)
    net = load_supernet(space, folder / "supernet.pt")

    train = fashion_mnist("train", a.data)
    test = fashion_mnist("test", a.data)
    if a.test_images < len(test):
        test = test.subset(a.test_images, seed=a.seed + 7)
    calib = list(loader(train.subset(a.calib_images, seed=a.seed + 1), 250))
    test_batches = list(loader(test, 500))

    cands = make_candidates(space, a.n_joint, a.n_bits, a.n_arch, a.seed)
    from hao.train import smallest_candidate
    small = smallest_candidate(space)
    refs = [("reference", space.largest()), ("largest_w4a4", space.uniform(4, 4)), ("smallest_w2a4", small),
            ("smallest_w8a8", small.replace(**{d: 8 for d, _ in small.choices if d.endswith("bits")}))]
    if a.rescore:
        raw = pd.read_csv(out / "evaluations_raw.csv").to_dict("records")
        ref_rows, rows = raw[:len(refs)], raw[len(refs):]
        byjson = {(k, c.to_json()): (k, c) for k, c in cands}
        if any((r["set"], r["candidate"]) not in byjson for r in rows):
            raise SystemExit("--rescore: evaluations_raw.csv holds other candidates; use the same seed and counts.")
        cands = [byjson[(r["set"], r["candidate"])] for r in rows]
        eval_wall = float(sum(r["eval_s"] for r in rows)) / max(1, a.workers)
    else:
        cache = out / "evaluations.jsonl"
        deadline = None if a.max_minutes is None else time.time() + 60 * a.max_minutes
        ref_rows = _evaluate_all(space, net, refs, calib, test_batches, progress=False, workers=a.workers,
                                 threads=a.threads, cache=cache)
        t0 = time.perf_counter()
        rows = _evaluate_all(space, net, cands, calib, test_batches, workers=a.workers, threads=a.threads,
                             cache=cache, deadline=deadline)
        eval_wall = time.perf_counter() - t0
        missing = sum(r is None for r in rows)
        if missing:
            print(f"--max-minutes: {missing} of {len(rows)} candidates not evaluated; scoring the "
                  f"{len(rows) - missing} that were (re-run the same command to evaluate the rest)", flush=True)
        keep = [i for i, r in enumerate(rows) if r is not None]
        cands, rows = [cands[i] for i in keep], [rows[i] for i in keep]
        pd.DataFrame(ref_rows + rows).to_csv(out / "evaluations_raw.csv", index=False)  # safe before scoring
    cs = [c for _, c in cands]
    # the proxies are read only now, so that evaluation can start while the sensitivity table is computed
    deadline = time.time() + 60 * a.wait_sensitivity_min
    while not (folder / "sensitivity.json").exists() and time.time() < deadline:
        time.sleep(10)
    proxy = AccuracyProxy.from_checkpoint(space, folder)
    table = proxy.table
    from hao.proxy.sensitivity import layer_weights
    table.weights = layer_weights(net)
    wn = WeightNormProxy(space, table)
    w_only = AccuracyProxy(space, table, activations=False) if proxy.activations else None
    # ZeroQ (data-free): traces and activation statistics on inputs distilled from BN statistics
    zq = None
    if not a.skip_zeroq:
        t0 = time.perf_counter()
        zpath = out / "zeroq_sensitivity.json"
        if a.rescore and zpath.exists():
            zd = json.loads(zpath.read_text())
            zt, zinfo = SensitivityTable.from_dict(zd["table"]), zd["info"]
            zt.weights = layer_weights(net)
        else:
            zt, zinfo = zeroq_sensitivity(space, net, n=a.zeroq_images, steps=a.zeroq_steps, seed=a.seed,
                                          samples=a.trace_samples, progress=True)
            zpath.write_text(json.dumps({"table": zt.to_dict(), "info": zinfo}))
        ztr = zt.traces
        zq = AccuracyProxy(space, zt)
        zinfo.setdefault("wall_s", time.perf_counter() - t0)
        tr_rows = []
        for lt in table.traces:
            z = ztr[lt.path]
            tr_rows.append({"layer": lt.path, "numel": lt.numel, "trace_real": lt.mean, "se_real": lt.std_error,
                            "trace_zeroq": z.mean, "se_zeroq": z.std_error})
        pd.DataFrame(tr_rows).to_csv(out / "traces.csv", index=False)

    eig = None
    if a.eigen_batches > 0:    # Q-BERT: top eigenvalue per layer and batch (weights only, as Q-BERT has no activations)
        from hao.proxy import eigen_sensitivity
        epath = out / "eigen_sensitivity.json"
        if epath.exists():
            et = SensitivityTable.from_dict(json.loads(epath.read_text()))
        else:
            ebatches = list(loader(train.subset(a.eigen_batches * a.eigen_batch_size, seed=a.seed + 3),
                                   a.eigen_batch_size))
            et = eigen_sensitivity(space, net, ebatches, iters=a.eigen_iters, seed=a.seed, calib_batches=calib)
            epath.write_text(json.dumps(et.to_dict()))
        et.weights = layer_weights(net)
        eig = AccuracyProxy(space, et)
    ref_acc, ref_loss = ref_rows[0]["accuracy"], ref_rows[0]["loss"]
    df = pd.DataFrame(rows)
    df["acc_drop"] = ref_acc - df["accuracy"]
    df["loss_increase"] = df["loss"] - ref_loss
    df["proxy_hessian"] = proxy.score(cs)
    # the proxy's parts, ranked on their own (AccuracyProxy.terms): which part carries the ranking
    for name, v in proxy.terms(cs).items():
        df[f"term_{name}"] = v
    if w_only is not None:
        df["proxy_hessian_weights_only"] = w_only.score(cs)
    df["proxy_weight_norm"] = wn.score(cs)
    fitted = None
    if a.arch_weight_from:
        fitted = fit_arch_weight(space, table, Path(a.arch_weight_from), exclude={c.to_json() for c in cs})
        df["proxy_hessian_fitted_arch_weight"] = AccuracyProxy(space, table,
                                                               arch_weight=fitted["arch_weight"]).score(cs)
    if zq is not None:
        df["proxy_zeroq"] = zq.score(cs)
    if eig is not None:
        df["proxy_eigen"] = eig.score(cs)
    kern = [space.kernels(c) for c in cs]
    df["neg_macs"] = [-float(sum(k.macs for k in ks)) for ks in kern]
    df["neg_bops"] = [-float(sum(k.bops for k in ks)) for ks in kern]
    df["random"] = np.random.default_rng(a.seed + 99).uniform(size=len(cs))
    df.to_csv(out / "candidates.csv", index=False)

    df["n_2bit_layers"] = [sum(1 for n, v in c.choices if n.endswith("w_bits") and v == 2) for c in cs]
    scores = [s for s in ("proxy_hessian", "proxy_hessian_fitted_arch_weight", "proxy_hessian_weights_only",
                          "proxy_eigen", "proxy_zeroq", "proxy_weight_norm",
                          "term_architecture", "term_weight_bits", "term_activation_bits",
                          "neg_macs", "neg_bops", "n_2bit_layers", "random") if s in df]
    taus: dict = {}
    for kind in ("joint", "bits", "arch", "all"):
        sub = df if kind == "all" else df[df["set"] == kind]
        if len(sub) < 3:
            continue
        taus[kind] = {"n": int(len(sub)), "acc_drop_range": [float(sub["acc_drop"].min()),
                                                             float(sub["acc_drop"].max())]}
        for target in ("acc_drop", "loss_increase"):
            taus[kind][target] = {}
            for s in scores:
                t, se = kendall(sub[s].to_numpy(), sub[target].to_numpy(), seed=a.seed)
                taus[kind][target][s] = {"tau": t, "se": se}
    result = {"space": space.name, "checkpoint_dir": str(folder), "reference": {"accuracy": ref_acc, "loss": ref_loss},
              "reference_subnets": {r["set"]: {k: r[k] for k in ("accuracy", "accuracy_se", "loss")} for r in ref_rows},
              "n_candidates": len(cands),
              "n_planned": {"joint": a.n_joint, "bits": a.n_bits, "arch": a.n_arch},
              "calib_images": a.calib_images, "test_images": len(test),
              "threads": a.threads, "workers": a.workers, "seed": a.seed, "kendall_tau": taus, "eval_wall_s": eval_wall,
              "eval_s_per_candidate": eval_wall / max(1, len(cands)),
              "proxy_terms": "weights and activation bits" if proxy.activations else "weights only (table has no "
                                                                                        "activation statistics)",
              "trace_method": table.traces.info.get("method"), "trace_samples": table.traces.samples,
              "wall_s": time.perf_counter() - t_start}
    if fitted is not None:
        result["arch_weight_fit"] = fitted
    if zq is not None:
        from scipy.stats import kendalltau, pearsonr
        tr = pd.read_csv(out / "traces.csv")
        lr, lz = np.log(tr["trace_real"].clip(lower=1e-12)), np.log(tr["trace_zeroq"].clip(lower=1e-12))
        result["zeroq"] = zinfo | {
            "layers": int(len(tr)), "kendall_tau_layer_traces": float(kendalltau(tr["trace_real"],
                                                                                   tr["trace_zeroq"]).statistic),
            "pearson_log_traces": float(pearsonr(lr, lz).statistic),
            "median_ratio_zeroq_over_real": float(np.median(tr["trace_zeroq"] / tr["trace_real"])),
            "kendall_tau_proxy_scores_vs_real": float(kendalltau(df["proxy_zeroq"], df["proxy_hessian"]).statistic)}
    (out / "fidelity.json").write_text(json.dumps(result, indent=2))
    for kind, v in taus.items():
        line = ", ".join(f"{s} {v['acc_drop'][s]['tau']:+.2f}±{v['acc_drop'][s]['se']:.2f}" for s in scores)
        print(f"[{kind:5s} n={v['n']:3d}] Kendall τ vs accuracy drop: {line}")
    print(f"wall time {result['wall_s'] / 60:.1f} min ({result['eval_s_per_candidate']:.1f} s per candidate, "
          f"{a.threads} thread(s))")
    return result


if __name__ == "__main__":
    main()
