"""Fashion-MNIST end to end: joint architecture + bit-width search on this CPU's TVM table, then verification.

    PYTHONPATH=. python experiments/fmnist_joint_search.py --out runs/fmnist            # full run (~15-30 min)
    PYTHONPATH=. python experiments/fmnist_joint_search.py --out /tmp/smoke --smoke     # CI setting, < 1 min

Pipeline:

1. **Inputs**: the trained weight-sharing supernet and its committed Hessian sensitivities
   (``checkpoints/mbconv-fmnist/{supernet.pt,sensitivity.json}``), and the latency predictor fitted on this
   CPU's calibrated TVM table (``latency_models/cpu-rocketlake-2t``).
2. **Search**: the whole Pareto front of (Hessian proxy, predicted latency) by the front solver (dynamic
   programming over the space's units; ``--epsilon`` of each objective's range, default 0.001, with its proven
   hypervolume bound), then ``--n-verify`` latency budgets spread evenly over the front, each answered by lookup
   on it (``SearchResult.query``). ``--solver ilp`` instead sweeps ``--n-points`` ILP budgets (HiGHS) and verifies
   candidates spread evenly over the sweep's front. A **random search** with ``--random-trials`` evaluations
   (default ``--n-points``) is the baseline front. The search uses the table's kernels as calibrated (plus the
   table's fitted network overhead if ``predictor.json`` exists; otherwise none).
3. **Per-network model**: by default the search and the verification use the network model that
   ``hao latency validate`` fitted on its own calibration networks and validated on held-out ones (the
   table's ``predictor.json``: measured ≈ scale·Σ kernels + a + b·kernels). ``--overhead-networks N`` instead
   compiles N seeded random candidates (seed+1000, disjoint from everything verified) with TVM and refits it
   here; predicted-vs-measured is reported with and without it.
4. **Verification** of up to ``--n-verify`` Pareto candidates spread evenly over latency (plus
   ``--verify-random`` candidates of the random front and the uniform baselines):

   * *accuracy*: the sub-network is extracted from the supernet, BatchNorm statistics and activation ranges are
     recalibrated on ``--calib-images`` training images (``hao.train.prepare_subnet``), and it is evaluated
     fake-quantized on the Fashion-MNIST test split (all 10k by default). **No QAT fine-tune** is done.
   * *latency*: the whole network is compiled with TVM end to end (``hao.latency.validate.build_network``:
     torch.export → Relax → every conv task replays its table kernel's schedule, other tasks from the tuning
     database → output checked against PyTorch), then all verified networks are timed together in
     ``--timing-rounds`` interleaved passes (VirtualMachine ``time_evaluator``, 7 repeats; each network keeps
     its lowest session median) with ``--threads`` threads. **Precision caveat** (from ``hao.latency.validate``):
     Relax's PyTorch frontend cannot compile hao's fake-quant graphs to integer code, so the network is
     compiled in **float32** and compared with the predictor's float32 figure for the *same architecture*
     (every kernel at w32a32). The mixed-precision latency the search optimised is the predictor's (table rows
     measured per kernel with TVM's int8 kernels); it is reported next to it, not measured whole.
     ``--no-tvm`` replaces the TVM timing by the predictor's float32 figure and says so in every output.

   The TVM tuning database is the hardware's own ``tuning_db`` (the table kernels' schedules; a task without
   a record is tuned with ``--tvm-trials`` MetaSchedule trials and committed there), or ``OUT/tuning_db``
   when the hardware folder has none (a fresh clone: the table's schedules are not in git).
5. **Report** on the verified front: share of candidates with predicted latency within ±10 % of measured,
   median |error|, Kendall τ (predicted vs measured latency; proxy vs verified accuracy drop).

``--phase accuracy`` / ``--phase latency`` run only one half (results cached in ``OUT/cache_accuracy.json`` and
``OUT/cache_latency.json``), so the CPU-bound accuracy evaluation and the TVM timing can run as two processes;
a final ``--phase all`` (or a plain run) reuses every cached value and writes the outputs.

Outputs in ``--out``: ``ilp/`` (the front or ILP sweep) and ``random/`` (``SearchResult.save``: results.csv, pareto.csv,
result.json), ``verified.csv`` (one row per verified candidate), ``summary.json`` (all numbers, settings, wall
times, thread counts, load), ``fmnist_front.png``. States its wall time.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from _common import (Stopwatch, jsonable, kendall_tau, latency_error_stats, pick_evenly,  # noqa: E402
                     run_facts, write_json)


# ---- helpers ------------------------------------------------------------------------------------------------
def _front_name(res) -> str:
    """How the plots name the searched front: the front solver's is exact, an ILP sweep's is budgets."""
    return "exact front" if res.meta.get("solver") == "front" else "ILP front"


def float_kernels(space: Any, cand: Any) -> list:
    from hao.latency.backend import replace_bits
    return [replace_bits(k, 32, 32) for k in space.kernels(cand)]


class LatencyMeter:
    """Whole-network TVM timing of float32 candidates (or, with ``use_tvm=False``, the predictor's figure)."""

    def __init__(self, space: Any, predictor: Any, use_tvm: bool, hardware: str, db_dir: Path, threads: int,
                 trials: int, seed: int, rounds: int, cache: "ResultCache | None" = None, retime: bool = False
                 ) -> None:
        self.space, self.predictor, self.use_tvm, self.rounds = space, predictor, use_tvm, rounds
        self.cache, self.retime = cache, retime
        self.tuner = None
        if use_tvm:
            from hao.latency.table import hardware_dir
            from hao.latency.tuner import Tuner  # its TVMBackend pins the thread count
            # the table's own tuning database: its kernels' schedules are what the networks' conv tasks replay
            # (hao.latency.tuner.Tuner); without it (a fresh clone) tasks are tuned into OUT/tuning_db
            src = hardware_dir(hardware) / "tuning_db"
            if src.is_dir():
                db_dir = src
            db_dir.mkdir(parents=True, exist_ok=True)
            self.tuner = Tuner(db_dir, threads, trials, seed)

    def measure_many(self, cands: list[Any], desc: str = "whole-network latency") -> list[dict[str, Any]]:
        """Latency facts per candidate. With TVM every uncached network is built and checked first, then all of
        them are timed in ``rounds`` interleaved passes (``hao.latency.validate.time_interleaved``: a load burst
        on this shared machine then rarely inflates every session of one network)."""
        keys = [f"lat|tvm={self.use_tvm}|{c.to_json()}" for c in cands]
        out: list[dict[str, Any] | None] = [None] * len(cands)
        if self.cache is not None and not self.retime:
            out = [self.cache.get(k) for k in keys]
        todo = [i for i, r in enumerate(out) if r is None]
        if not self.use_tvm:
            for i in todo:
                ms = self.predictor.network_latency(float_kernels(self.space, cands[i]))
                out[i] = {"measured_ms": ms, "latency_source": "predictor (TVM disabled by --no-tvm)", "ok": True}
            return out
        from tqdm import tqdm

        from hao.latency.validate import build_network, float_model, time_interleaved
        built: dict[int, Any] = {}
        for i in tqdm(todo, desc=f"{desc}: build", unit="net", dynamic_ncols=True, disable=not todo):
            try:
                built[i] = build_network(float_model(self.space, cands[i]), tuple(self.space.input_shape),
                                         self.tuner)
            except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
                out[i] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:400],
                          "latency_source": "TVM whole network, float32 (FAILED)"}
        idx = sorted(built)
        if idx:
            load0 = os.getloadavg()[0]
            # as `hao latency validate`: extra passes for networks without a fast-host-state session
            times = time_interleaved([built[i] for i in idx], passes=self.rounds, max_passes=4 * self.rounds)
            for i, t in zip(idx, times):
                if not t["ok"]:
                    out[i] = {**t, "latency_source": "TVM whole network, float32 (FAILED)"}
                    continue
                out[i] = {**t, **built[i].facts, "latency_source": "TVM whole network, float32",
                          "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                          "load_avg_1min": load0, "timed_with": len(idx)}
                if self.cache is not None:
                    self.cache.put(keys[i], out[i])
        built.clear()
        return out

    def close(self) -> None:
        if self.tuner is not None:
            self.tuner.close()


class ResultCache:
    """Finished measurements keyed by (what, settings, candidate JSON) in ``OUT/cache.json``: a re-run with the
    same ``--out`` skips them (``--retime`` re-measures latencies, e.g. when the machine is quieter)."""

    def __init__(self, path: Path) -> None:
        import json
        self.path = path
        self.d: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}

    def get(self, key: str) -> Any:
        return self.d.get(key)

    def put(self, key: str, value: Any) -> None:
        self.d[key] = value
        write_json(self.path, self.d)


def evaluate_candidates(space: Any, net: Any, cands: list, calib: list, test_batches: list, float32: bool = False,
                        desc: str = "accuracy", cache: ResultCache | None = None, tag: str = ""
                        ) -> list[dict[str, Any]]:
    """BN-recalibrated, fake-quantized test accuracy of each candidate (``float32``: every layer at 32 bits)."""
    from tqdm import tqdm

    from hao.quant import quant_layers, set_bits
    from hao.train import evaluate_full, prepare_subnet
    out = []
    for c in tqdm(cands, desc=desc, unit="net", dynamic_ncols=True, disable=len(cands) < 2):
        key = f"acc|{tag}|f32={float32}|{c.to_json()}"
        if cache is not None and cache.get(key) is not None:
            out.append(cache.get(key))
            continue
        t0 = time.perf_counter()
        sub = space.build(c, net)
        if float32:
            set_bits(sub, {n: {"w_bits": 32, "a_bits": 32} for n, _ in quant_layers(sub)})
        prepare_subnet(sub, calib)
        r = evaluate_full(sub, test_batches)
        out.append({"accuracy": r.accuracy, "accuracy_se": r.accuracy_se, "test_loss": r.loss, "test_n": r.n,
                    "eval_s": round(time.perf_counter() - t0, 2)})
        if cache is not None:
            cache.put(key, out[-1])
    return out


def random_candidates(space: Any, n: int, seed: int, exclude: set[str]) -> list:
    rng = np.random.default_rng(seed)
    out, seen = [], set(exclude)
    while len(out) < n:
        c = space.sample(rng)
        if c.to_json() not in seen:
            seen.add(c.to_json())
            out.append(c)
    return out


# ---- plot -----------------------------------------------------------------------------------------------------
def plot(path: Path, ilp: Any, rnd: Any, rows: list[dict], baselines: dict[str, dict], summary: dict,
         tvm_label: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(15, 4.4))
    # (a) search view: proxy vs predicted latency
    a = ax[0]
    allp = ilp.df[["latency_ms", "proxy"]].to_numpy(float)
    pf = ilp.pareto().sort_values("latency_ms")
    a.step(pf["latency_ms"], pf["proxy"], where="post", c="C0", lw=1.2)
    a.scatter(pf["latency_ms"], pf["proxy"], s=22 if len(pf) <= 200 else 3, c="C0", zorder=3,
              label=f"{_front_name(ilp)} ({len(pf)} pts)")
    a.scatter(allp[:, 0], allp[:, 1], s=6, c="C0", alpha=0.3)
    rp = rnd.pareto().sort_values("latency_ms")
    a.scatter(rnd.df["latency_ms"], rnd.df["proxy"], s=8, c="0.6", alpha=0.6,
              label=f"random samples (n={len(rnd.df)})")
    a.step(rp["latency_ms"], rp["proxy"], where="post", c="C1", lw=1.2, label="random front")
    for i, (lab, b) in enumerate(baselines.items()):
        if b.get("proxy") is not None:
            a.scatter([b["predicted_ms"]], [b["proxy"]], marker="*^sD"[i % 4], s=110, c=f"C{i + 2}",
                      edgecolors="k", zorder=4, label=lab)
    a.set_xlabel("predicted latency [ms] (mixed precision, table)")
    a.set_ylabel("Hessian proxy ½ΣΩ [ΔL]")
    a.set_yscale("log" if (allp[:, 1] > 0).all() and (rnd.df["proxy"] > 0).all() else "symlog")
    a.set_title("search: proxy vs predicted latency")
    a.legend(fontsize=7)
    a.grid(alpha=0.3)
    # (b) verified accuracy vs predicted latency
    b = ax[1]
    for src, col, lab in (("ilp", "C0", f"{_front_name(ilp)}, verified"),
                          ("random", "C1", "random front, verified")):
        rr = sorted((r for r in rows if r["source"] == src), key=lambda r: r["predicted_ms"])
        if rr:
            b.plot([r["predicted_ms"] for r in rr], [100 * r["accuracy"] for r in rr], "o-", c=col, ms=5,
                   label=lab)
            b.errorbar([r["predicted_ms"] for r in rr], [100 * r["accuracy"] for r in rr],
                       yerr=[100 * r["accuracy_se"] for r in rr], fmt="none", c=col, alpha=0.5)
    for i, (lab, bl) in enumerate(baselines.items()):
        b.scatter([bl["predicted_ms"]], [100 * bl["accuracy"]], marker="*^sD"[i % 4], s=110, c=f"C{i + 2}",
                  edgecolors="k", zorder=4, label=f"{lab}: {100 * bl['accuracy']:.1f}%")
    b.set_xlabel("predicted latency [ms] (mixed precision, table)")
    b.set_ylabel(f"test accuracy [%] (fake-quant, n={summary['settings']['test_images']})")
    b.set_title("verified accuracy (BN recalibrated, no QAT)")
    b.legend(fontsize=7)
    b.grid(alpha=0.3)
    # (c) predicted vs measured whole-network latency (float32)
    c = ax[2]
    ver = [r for r in rows if r.get("measured_ms") is not None and r["source"] != "overhead-fit"]
    if ver:
        x = np.array([r["measured_ms"] for r in ver])
        y = np.array([r["predicted_fp32_ms"] for r in ver])
        lo, hi = 0.9 * min(x.min(), y.min()), 1.1 * max(x.max(), y.max())
        g = np.linspace(lo, hi, 10)
        c.plot(g, g, "k-", lw=0.8)
        c.fill_between(g, 0.9 * g, 1.1 * g, color="0.85", label="±10 %")
        for src, col, mk in (("ilp", "C0", "o"), ("random", "C1", "s"), ("baseline", "C2", "*")):
            m = [r["source"] == src for r in ver]
            if any(m):
                c.scatter(x[m], y[m], c=col, marker=mk, s=30 if mk != "*" else 110, zorder=3, label=src)
        st = summary["verified_front"]["latency"]
        c.set_title(f"latency: {100 * st['share_within_10pct']:.0f}% within ±10%, median |err| "
                    f"{st['median_abs_err_pct']:.1f}%", fontsize=10)
    c.set_xlabel(f"measured [ms] ({tvm_label})")
    c.set_ylabel("predicted [ms] (same architecture, float32)")
    c.legend(fontsize=7)
    c.grid(alpha=0.3)
    tau = summary["verified_front"]["kendall_tau_proxy_vs_acc_drop"]["tau"]
    fig.suptitle(f"{summary['settings']['space']} on {summary['settings']['hardware']}: Kendall τ(proxy, accuracy "
                 f"drop) on the verified {_front_name(ilp)} = {'n/a' if tau is None else f'{tau:.2f}'} "
                 f"(n={summary['verified_front']['n']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


# ---- main -----------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--space", default="mbconv-fmnist")
    p.add_argument("--hardware", default="cpu-rocketlake-2t", help="latency table under latency_models/")
    p.add_argument("--checkpoint-dir", default=None,
                   help="supernet.pt + sensitivity.json (default checkpoints/<space>)")
    p.add_argument("--data", default=None, help="Fashion-MNIST IDX folder (default: Debian's / $HAO_FMNIST_DIR)")
    p.add_argument("--solver", choices=("front", "ilp"), default="front",
                   help="front: the whole Pareto front, verified at budget queries (default); ilp: a budget sweep")
    p.add_argument("--epsilon", type=float, default=0.001,
                   help="front: epsilon-box width as a fraction of each objective's range (0 = exact)")
    p.add_argument("--n-points", type=int, default=24, help="ILP latency budgets in the sweep (--solver ilp)")
    p.add_argument("--n-verify", type=int, default=8, help="Pareto candidates to verify (>= 8 for the report)")
    p.add_argument("--verify-random", type=int, default=2, help="random-front candidates to verify too")
    p.add_argument("--random-trials", type=int, default=None,
                   help="random-search evaluations (default: as many as the ILP's budget solves)")
    p.add_argument("--calib-images", type=int, default=2000, help="train images for BN/activation recalibration")
    p.add_argument("--test-images", type=int, default=10000, help="seeded subset of the 10k test split if fewer")
    p.add_argument("--no-tvm", action="store_true",
                   help="replace the TVM whole-network timing by the predictor's float32 figure (stated in outputs)")
    p.add_argument("--tvm-trials", type=int, default=8, help="MetaSchedule trials for a task not in tuning_db")
    p.add_argument("--timing-rounds", type=int, default=5,
                   help="interleaved timing passes over the verified networks (lowest session median kept; default 5)")
    p.add_argument("--overhead-networks", type=int, default=0,
                   help="random networks compiled here to refit the per-network overhead (default 0: keep the "
                        "model `hao latency validate` fitted and validated, the table's predictor.json)")
    p.add_argument("--threads", type=int, default=2, help="TVM and torch threads (the table's are in its meta.json)")
    p.add_argument("--table-rows-before", default=None, metavar="ISO_UTC",
                   help="use only the table rows with measured_at <= this (e.g. 2026-11-23T13:11:00Z): a fixed "
                        "snapshot while a calibration run is still appending rows, so that every phase searches "
                        "the same front")
    p.add_argument("--phase", choices=("all", "accuracy", "latency"), default="all",
                   help="run only the accuracy or only the TVM part (cached in OUT/cache_*.json; two processes can "
                        "run them side by side), then 'all' assembles the outputs from the caches")
    p.add_argument("--retime", action="store_true",
                   help="re-measure whole-network latencies cached in OUT/cache.json (accuracies stay cached)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true",
                   help="tiny CI setting: 4 budgets, 2 verified, 64 calib / 128 test images, --no-tvm")
    a = p.parse_args(argv)
    if a.smoke:
        a.n_points, a.n_verify, a.verify_random = min(a.n_points, 4), min(a.n_verify, 2), min(a.verify_random, 1)
        a.calib_images, a.test_images, a.no_tvm, a.overhead_networks = 64, 128, True, 0
    if a.n_points < 2 or a.n_verify < 1:
        p.error(f"--n-points must be >= 2 and --n-verify >= 1, got {a.n_points} and {a.n_verify}.")

    import torch

    import hao
    from hao.data import fashion_mnist, loader
    from hao.latency.predictor import LatencyPredictor
    from hao.latency.table import hardware_dir, load_table
    from hao.proxy import AccuracyProxy, default_checkpoint_dir
    from hao.search.api import reference_candidates
    from hao.space.base import Candidate
    from hao.train import load_supernet

    torch.set_num_threads(a.threads)
    sw = Stopwatch()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    facts = run_facts(argv, a.threads)
    space = hao.get_space(a.space)
    folder = Path(a.checkpoint_dir) if a.checkpoint_dir else default_checkpoint_dir(space.checkpoint_name)
    use_tvm = not a.no_tvm
    if use_tvm:
        from hao import lazy_import
        lazy_import("tvm")  # a named error now rather than after the search
    with sw("load"):
        table = load_table(a.hardware)
        if a.table_rows_before:  # a fixed snapshot of a table that a calibration run is still appending to
            from hao.latency.table import LatencyTable
            keep = table.df["measured_at"].astype(str) <= a.table_rows_before
            table = LatencyTable(table.df[keep].reset_index(drop=True),
                                 {**table.meta, "snapshot": f"rows measured_at <= {a.table_rows_before}"},
                                 path=table.path, source=f"{a.hardware} (snapshot)")
        predictor = LatencyPredictor.from_table(table, space=space.name)
        # the overhead the search uses (the table's predictor.json, if any); step 4a refits it for verification
        search_overhead = (float(predictor.overhead_ms_), float(predictor.overhead_per_kernel_ms_),
                           float(getattr(predictor, "network_scale_", 1.0)))
        overhead_source = ("predictor.json of the table" if (hardware_dir(a.hardware) / "predictor.json").is_file()
                           else "none (0 ms)")
        proxy = AccuracyProxy.from_checkpoint(space, folder)
        net = load_supernet(space, folder / "supernet.pt")
        net.eval()
        train = fashion_mnist("train", a.data)
        test = fashion_mnist("test", a.data)
        if a.test_images < len(test):
            test = test.subset(a.test_images, seed=a.seed + 7)
        calib = list(loader(train.subset(a.calib_images, seed=a.seed + 1), 250))
        test_batches = list(loader(test, 500))
    n_table_rows = len(predictor.measured_)
    print(f"[load] {space.name}: predictor on {n_table_rows} rows of {a.hardware}; proxy from {folder}; "
          f"{len(calib)} calib batches, {len(test)} test images ({sw.phases['load']:.0f} s)", flush=True)

    cache = ResultCache(out / "cache_accuracy.json")
    meter = None
    acc_tag = f"{folder.resolve()}|calib={a.calib_images}|test={len(test)}|seed={a.seed}"
    rows: list[dict[str, Any]] = []
    try:
        # 1. search: ILP sweep and random search with the same number of evaluations
        with sw("search_ilp"):
            if a.solver == "front":
                ilp = hao.search(space=space, hardware=predictor, solver="front", objectives=["proxy", "latency_ms"],
                                 proxy=proxy, epsilon=a.epsilon)
            else:
                ilp = hao.search(space=space, hardware=predictor, solver="ilp", objectives=["proxy", "latency_ms"],
                                 proxy=proxy, n_points=a.n_points, progress=True, seed=a.seed)
        n_eval = a.random_trials or a.n_points
        with sw("search_random"):
            rnd = hao.search(space=space, hardware=predictor, solver="random", objectives=["proxy", "latency_ms"],
                             proxy=proxy, n_trials=n_eval, seed=a.seed)
        ilp.meta["title"] = f"{space.name}: " + ("Pareto front" if a.solver == "front" else "ILP sweep")
        ilp.save(out / "ilp")
        rnd.save(out / "random")
        front = ilp.pareto().sort_values("latency_ms").reset_index(drop=True)
        rfront = rnd.pareto().sort_values("latency_ms").reset_index(drop=True)
        print(f"[search] {a.solver}: {len(ilp.df)} rows, {len(front)} on the front ({sw.phases['search_ilp']:.1f} s); "
              f"random: {n_eval} samples, {len(rfront)} on its front", flush=True)

        # 2. what to verify
        todo: list[tuple[str, Any, dict]] = []
        if a.solver == "front":  # budget queries, evenly spaced in latency, answered by lookup on the front
            seen: set[str] = set()
            for b in np.linspace(front["latency_ms"].min(), front["latency_ms"].max(), a.n_verify):
                row = ilp.query({"latency_ms": float(b)})
                if row["config"] not in seen:
                    seen.add(row["config"])
                    todo.append(("ilp", Candidate.from_json(row["config"]), {**dict(row), "budget_ms": float(b)}))
        else:
            for i in pick_evenly(len(front), a.n_verify):
                todo.append(("ilp", Candidate.from_json(front.loc[i, "config"]), dict(front.loc[i])))
        for i in pick_evenly(len(rfront), a.verify_random) if a.verify_random > 0 else []:
            todo.append(("random", Candidate.from_json(rfront.loc[i, "config"]), dict(rfront.loc[i])))
        refs = reference_candidates(space)
        int8 = refs.get("uniform 8-bit, largest", space.largest())
        base_cands = {"uniform int8 (largest arch)": (int8, False), "float32 (largest arch)": (int8, True)}

        # 3. accuracy (torch, CPU)
        if a.phase == "latency":
            print("[phase latency] accuracy skipped", flush=True)
        else:
            with sw("accuracy"):
                accs = evaluate_candidates(space, net, [c for _, c, _ in todo], calib, test_batches, cache=cache,
                                           tag=acc_tag)
                base_acc = {lab: evaluate_candidates(space, net, [c], calib, test_batches, float32=f32,
                                                     cache=cache, tag=acc_tag)[0]
                            for lab, (c, f32) in base_cands.items()}
        if a.phase == "accuracy":
            print(f"[phase accuracy] done: {len(todo) + len(base_cands)} networks in {sw.report()['total_s']:.0f} s "
                  f"(cached in {out / 'cache_accuracy.json'})", flush=True)
            return {"phase": "accuracy", "wall_s": sw.report()}
        meter = LatencyMeter(space, predictor, use_tvm, a.hardware, out / "tuning_db", a.threads, a.tvm_trials,
                             a.seed, a.timing_rounds, cache=ResultCache(out / "cache_latency.json"),
                             retime=a.retime)
        # 4a. per-network overhead from random networks compiled end to end
        if use_tvm and a.overhead_networks > 0:
            with sw("overhead_fit"):
                fit = random_candidates(space, a.overhead_networks, a.seed + 1000, set())
                meas, nets = [], []
                for c, m in zip(fit, meter.measure_many(fit, desc="overhead-fit networks (TVM)")):
                    rows.append({"source": "overhead-fit", "config": c.to_json(), **m})
                    if m["ok"]:
                        meas.append(m["measured_ms"])
                        nets.append(float_kernels(space, c))
                if nets:
                    predictor.fit_overhead(nets, meas)
                    overhead_source = (f"fitted here on {len(nets)} seeded random float32 networks compiled with "
                                       "TVM (seed+1000), not on the verified candidates")
            print(f"[overhead] {predictor.overhead_ms_:.4f} ms + {predictor.overhead_per_kernel_ms_:.5f} ms/kernel "
                  f"({overhead_source}; {sw.phases['overhead_fit']:.0f} s)", flush=True)

        # 4b. latency (whole network, TVM float32), ILP front first
        with sw("latency"):
            # the ILP front and the float32 compile of the largest architecture (both baselines), timed together
            ilp_cands = [c for src, c, _ in todo if src == "ilp"]
            got = iter(meter.measure_many(ilp_cands + [int8]))
            lat = [next(got) if src == "ilp" else
                   {"ok": False, "latency_source": "not measured (random-front candidates: accuracy only)"}
                   for src, _, _ in todo]
            base_lat = next(got)
        if a.phase == "latency":
            print(f"[phase latency] done in {sw.report()['total_s']:.0f} s (cached in "
                  f"{out / 'cache_latency.json'})", flush=True)
            return {"phase": "latency", "wall_s": sw.report()}
    finally:
        if meter is not None:
            meter.close()

    ref_acc = base_acc["uniform int8 (largest arch)"]["accuracy"]
    for (src, c, row), acc, m in zip(todo, accs, lat):
        rows.append({"source": src, "config": c.to_json(), "proxy": float(row["proxy"]),
                     "predicted_ms": float(row["latency_ms"]),
                     "predicted_fp32_ms": predictor.network_latency(float_kernels(space, c)),
                     "predicted_fp32_sum_kernels_ms": float(predictor.predict(float_kernels(space, c),
                                                                              prefer_measured=True).sum()),
                     "n_kernels": len(space.kernels(c)),
                     "macs_m": sum(k.macs for k in space.kernels(c)) / 1e6,
                     **acc, "acc_drop_vs_int8_largest": ref_acc - acc["accuracy"], **m})
    baselines: dict[str, dict] = {}
    for lab, (c, f32) in base_cands.items():
        ks = space.kernels(c)
        baselines[lab] = {"config": c.to_json(), **base_acc[lab],
                          "proxy": None if f32 else float(proxy.score([c])[0]),
                          # as the search predicts it (same overhead as the front's predicted_ms)
                          "predicted_ms": search_overhead[2] * float(predictor.predict(
                              float_kernels(space, c) if f32 else ks, prefer_measured=True).sum())
                          + search_overhead[0] + search_overhead[1] * len(ks),
                          "predicted_fp32_ms": predictor.network_latency(float_kernels(space, c)),
                          "measured_fp32_ms": base_lat.get("measured_ms")}
        rows.append({"source": "baseline", "label": lab, **baselines[lab],
                     **{k: v for k, v in base_lat.items() if k != "measured_ms"},
                     "measured_ms": base_lat.get("measured_ms")})
    import pandas as pd
    df = pd.DataFrame(rows)
    df.to_csv(out / "verified.csv", index=False)

    ver = [r for r in rows if r["source"] == "ilp"]
    ok = [r for r in ver if r.get("ok") and r.get("measured_ms") is not None]
    lat_stats = latency_error_stats([r["predicted_fp32_ms"] for r in ok], [r["measured_ms"] for r in ok]) if ok \
        else {"n": 0}
    lat_stats_raw = latency_error_stats([r["predicted_fp32_sum_kernels_ms"] for r in ok],
                                        [r["measured_ms"] for r in ok]) if ok else {"n": 0}
    tau_drop = kendall_tau([r["proxy"] for r in ver], [r["acc_drop_vs_int8_largest"] for r in ver], seed=a.seed)
    tau_loss = kendall_tau([r["proxy"] for r in ver], [r["test_loss"] for r in ver], seed=a.seed)
    rver = [r for r in rows if r["source"] == "random"]
    latency_source = ("TVM whole network, float32 (see docstring: precision caveat)" if use_tvm else
                      "PREDICTOR, NOT MEASURED: --no-tvm replaced the TVM timing by the predictor's float32 figure")
    summary = {
        "experiment": "fmnist_joint_search", "run": facts,
        "settings": {"space": space.name, "hardware": a.hardware, "table_rows": n_table_rows,
                     "table_rows_before": a.table_rows_before,
                     "checkpoint_dir": str(folder), "solver": a.solver, "epsilon": a.epsilon,
                     "n_points": a.n_points, "n_verify": a.n_verify,
                     "verify_random": a.verify_random, "random_trials": n_eval, "calib_images": a.calib_images,
                     "test_images": len(test), "seed": a.seed, "threads": a.threads, "tvm": use_tvm,
                     "tvm_trials_per_new_task": a.tvm_trials, "timing_rounds": a.timing_rounds,
                     "qat_fine_tune": "none (BN statistics and activation ranges recalibrated only)",
                     "smoke": a.smoke},
        "latency_source": latency_source,
        "precision_caveat": "whole networks are compiled in float32 (Relax cannot compile the fake-quant int8 graphs);"
                            " predicted-vs-measured compares the predictor's float32 figure for the same architecture."
                            " The searched mixed-precision latency ('predicted_ms') is the table/predictor's.",
        "overhead": {"ms": predictor.overhead_ms_, "per_kernel_ms": predictor.overhead_per_kernel_ms_,
                     "network_scale": float(getattr(predictor, "network_scale_", 1.0)),
                     "source": overhead_source,
                     "used_by_the_search": {"ms": search_overhead[0], "per_kernel_ms": search_overhead[1],
                                            "network_scale": search_overhead[2],
                                            "source": "the table's predictor.json" if any(search_overhead)
                                            else "none"}},
        "search": {"ilp_answers": len(ilp.df), "ilp_front_size": len(front), "ilp_meta": jsonable(ilp.meta),
                   "random_samples": n_eval, "random_front_size": len(rfront)},
        "verified_front": {"n": len(ver), "latency": lat_stats, "latency_without_overhead": lat_stats_raw,
                           "kendall_tau_proxy_vs_acc_drop": tau_drop, "kendall_tau_proxy_vs_test_loss": tau_loss,
                           "accuracy_range": [min(r["accuracy"] for r in ver), max(r["accuracy"] for r in ver)],
                           "predicted_ms_range": [min(r["predicted_ms"] for r in ver),
                                                  max(r["predicted_ms"] for r in ver)],
                           "failed_latency": [r.get("error") for r in ver if not r.get("ok")]},
        "random_front_verified": {"n": len(rver), "accuracy": [r["accuracy"] for r in rver],
                                  "predicted_ms": [r["predicted_ms"] for r in rver]},
        "baselines": baselines,
        "candidates": [{k: r.get(k) for k in ("source", "proxy", "predicted_ms", "predicted_fp32_ms", "measured_ms",
                                              "accuracy", "accuracy_se", "test_loss", "macs_m", "config")}
                       for r in ver + rver],
    }
    if use_tvm and meter is not None and meter.tuner is not None:
        summary["tvm_tasks"] = {"tuned_new": meter.tuner.tuned_tasks, "reused_from_database": meter.tuner.reused_tasks,
                                "table_schedule_replayed": meter.tuner.transferred_tasks}
    summary["wall_s"] = sw.report()
    try:
        summary["run"]["load_avg_1_5_15_at_end"] = list(__import__("os").getloadavg())
    except OSError:
        pass
    with sw("plot"):
        plot(out / "fmnist_front.png", ilp, rnd, rows, baselines, summary,
             "TVM float32" if use_tvm else "PREDICTOR (--no-tvm)")
    summary["wall_s"] = sw.report()
    write_json(out / "summary.json", summary)
    st = lat_stats
    print(f"[verified front] n={len(ver)}; latency ({'TVM' if use_tvm else 'PREDICTOR, --no-tvm'}): "
          f"{100 * st.get('share_within_10pct', float('nan')):.0f}% within ±10%, median |err| "
          f"{st.get('median_abs_err_pct', float('nan')):.1f}%; Kendall τ(proxy, acc drop) = {tau_drop['tau']}")
    print(f"wall time {summary['wall_s']['total_s'] / 60:.1f} min ({a.threads} threads) -> {out}")
    return summary


if __name__ == "__main__":
    main()
