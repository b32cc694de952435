"""DMasking vs the ILP vs random search at the same latency budgets, every pick fine-tuned with the same recipe.

    python experiments/dmasking_vs_ilp.py --out runs/dmask_vs_ilp                # 4 budgets, ~2 h on 2 cores
    python experiments/dmasking_vs_ilp.py --out /tmp/d --smoke                   # CI-sized: minutes, no targets

Per budget (``--targets`` fractions of the predicted-latency range between the space's smallest and largest
candidate, on ``--hardware``'s table; default: the table of this machine's CPU, ``cpu-<mcpu>-2t``):

* **ilp** — the exact optimum of the accuracy model under the latency budget (``solver="ilp"``): the calibrated
  model's predicted accuracy (``accuracy``) when ``--checkpoint-dir`` has one (``hao.proxy.model_folder``),
  else the Hessian proxy's ΔL (``proxy``);
* **dmasking** — ``solver="dmasking"`` (``--dm-steps`` steps over the same supernet, λ by dual ascent towards
  the budget), its final argmax candidate if it meets the budget, else the last argmax snapshot (every 10 steps)
  that does;
* **random** — ``--random-samples`` seeded random candidates, the best accuracy-model score among those within
  the budget (a random search given the same accuracy model).

Each pick is fine-tuned with one :class:`hao.train.finetuning.FinetuneConfig` (``--finetune-steps``; the same for
all) and evaluated as it deploys (``evaluate_full(exact=True)``) on the test split. Reported per row: the
candidate, its predicted latency (and whether it meets the budget), real accuracy before and after fine-tuning,
and the search cost in CPU-minutes (process time of the search alone). The DMasking search runs over the same
supernet (``--checkpoint-dir``) that every pick is fine-tuned from.

When this machine is the table's hardware (its LLVM CPU name is the table's ``mcpu``), every pick is then
compiled as it deploys (the integer network at its bit-widths: :func:`hao.latency.validate.build_candidate`,
``mixed``) and all picks are timed together in interleaved passes (``time_interleaved``, host-state extra
passes), so each row also has ``measured_latency_ms`` and ``meets_budget_measured``; elsewhere the rows say why
they were not timed. Resumable: finished rows are kept in ``OUT/rows.jsonl``; fine-tuning resumes per network.
Writes ``OUT/dmasking_vs_ilp.json`` and ``OUT/dmasking_vs_ilp.png``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments._common import run_facts, write_json  # noqa: E402
from experiments._verify import (finetune_and_evaluate, fmnist_eval_data, this_cpu_table,  # noqa: E402
                                 time_candidates)


def _pick_random(problem, n: int, budget: float, seed: int):
    rng = np.random.default_rng(seed)
    G, U = problem.index.sample(rng, n)
    V = problem.evaluate_indices(G, U)
    lat = V[:, problem.names.index("latency_ms")]
    tgt = problem.objective(problem.target)
    score = tgt.sign * V[:, problem.names.index(problem.target)]
    ok = np.flatnonzero(lat <= budget)
    if not len(ok):
        return None
    i = ok[np.argmin(score[ok])]
    return problem.index.to_candidates(G[i:i + 1], U[i:i + 1])[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--space", default="mbconv-fmnist")
    ap.add_argument("--hardware", default=None, help="latency table (default: cpu-<this CPU>-2t)")
    ap.add_argument("--checkpoint-dir", default=None,
                    help="supernet folder (default: the space's committed checkpoint); its calibrated "
                         "model, when present, is the accuracy model the ILP and random search maximise")
    ap.add_argument("--targets", default="0.25,0.4,0.55,0.7",
                    help="latency budgets as fractions of the predicted range smallest..largest")
    ap.add_argument("--dm-steps", type=int, default=300)
    ap.add_argument("--random-samples", type=int, default=2000)
    ap.add_argument("--finetune-steps", type=int, default=300)
    ap.add_argument("--test-images", type=int, default=10000)
    ap.add_argument("--calib-images", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timing-rounds", type=int, default=5, help="interleaved timing passes (0: do not time)")
    ap.add_argument("--smoke", action="store_true", help="tiny settings for CI; no conclusions")
    args = ap.parse_args(argv)
    if args.smoke:
        args.dm_steps, args.random_samples, args.finetune_steps = 2, 50, 2
        args.test_images, args.calib_images = 200, 200
        if args.targets == ap.get_default("targets"):
            args.targets = "0.5"
        args.timing_rounds = 0

    import torch

    import hao
    from hao.proxy import default_checkpoint_dir, model_folder
    from hao.search.api import make_problem
    from hao.search.base import make_solver
    from hao.train.finetuning import FinetuneConfig
    from hao.train.supernet import load_supernet

    torch.set_num_threads(args.threads)
    facts = run_facts(argv, args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    space = hao.get_space(args.space)
    if args.hardware is None:
        args.hardware = this_cpu_table()
    ckpt = Path(args.checkpoint_dir) if args.checkpoint_dir else default_checkpoint_dir(space.checkpoint_name)
    accmodel = model_folder(space.checkpoint_name, ckpt)
    if accmodel is not None:
        acc_kw = {"objectives": ["accuracy", "latency_ms"], "proxy": "calibrated", "checkpoint": accmodel}
    else:
        acc_kw = {"objectives": ["proxy", "latency_ms"], "checkpoint": ckpt}
    supernet = load_supernet(space, ckpt / "supernet.pt")
    train, calib, test_batches = fmnist_eval_data(args.test_images, args.calib_images, args.seed)
    cfg = FinetuneConfig(steps=args.finetune_steps, seed=args.seed, ckpt_every=max(1, min(50, args.finetune_steps)))

    base = make_problem(space, args.hardware, references=False, **acc_kw)
    # the model's score of a pick ("accuracy" would clash with the real, fine-tuned accuracy of the row)
    score_key = "predicted_accuracy" if base.target == "accuracy" else base.target
    lat = base.objective("latency_ms")
    lo, hi = (float(v) for v in lat.bounds())
    fracs = [float(f) for f in args.targets.split(",")]
    rows_p = out / "rows.jsonl"
    done = {}
    if rows_p.is_file():
        for line in rows_p.read_text().splitlines():
            r = json.loads(line)
            done[(r["fraction"], r["method"])] = r
    rows = []
    for f in fracs:
        budget = lo + f * (hi - lo)
        problem = make_problem(space, args.hardware, budgets={"latency_ms": budget}, references=False, **acc_kw)
        tgt = problem.objective(problem.target)
        for method in ("ilp", "dmasking", "random"):
            if (f, method) in done:
                rows.append(done[(f, method)])
                continue
            c0, cpu_note = time.process_time(), None
            if method == "ilp":
                res = make_solver("ilp", n_points=1).solve(problem)
                feas = res.df[res.df.feasible]
                best = int(np.argmin(tgt.sign * feas[problem.target].to_numpy()))
                cand = space.candidate_from_json(feas.iloc[best]["config"])
            elif method == "dmasking":
                res = make_solver("dmasking", steps=args.dm_steps, seed=args.seed, threads=args.threads,
                                  checkpoint=str(ckpt / "supernet.pt"), work_dir=str(out / f"dm_{f}"),
                                  snapshot_every=max(1, min(10, args.dm_steps))).solve(problem, progress=True)
                cand = space.candidate_from_json(_dmasking_pick(res.df, budget)["config"])
                # a resumed search: its CPU time over every run (the solver's state keeps it); a state from before
                # CPU time was recorded gives wall time × threads, an upper bound, and says so
                cpu_s = res.meta.get("cpu_s")
                if cpu_s is None:
                    cpu_s = res.meta["wall_s"] * args.threads
                    cpu_note = "resumed from a state without CPU time: wall time × threads (an upper bound)"
                c0 = time.process_time() - cpu_s
            else:
                cand = _pick_random(problem, args.random_samples, budget, args.seed)
            search_cpu_min = (time.process_time() - c0) / 60
            if cand is None:
                row = {"fraction": f, "method": method, "budget_ms": budget, "candidate": None,
                       "note": "no sampled candidate met the budget", "search_cpu_min": search_cpu_min}
            else:
                G, U = problem.index.from_candidates([cand])
                v = problem.evaluate_indices(G, U)[0]
                # the same network under another budget (random search often returns one): fine-tuning is
                # seeded, so its result is reused rather than recomputed
                same = next((r for r in rows if r.get("candidate") == cand.to_json() and "accuracy" in r), None)
                if same is not None:
                    acc = {k: same[k] for k in ("accuracy", "accuracy_before_finetune", "accuracy_se") if k in same}
                    acc.update(finetune_wall_s=0.0, finetune_reused_from=f"{same['fraction']}/{same['method']}")
                else:
                    acc = finetune_and_evaluate(space, supernet, cand, train, calib, test_batches, cfg,
                                                out / f"ft_{f}_{method}")
                row = {"fraction": f, "method": method, "budget_ms": budget, "candidate": cand.to_json(),
                       score_key: float(v[0]), "predicted_latency_ms": float(v[1]),
                       "meets_budget": bool(v[1] <= budget * (1 + 1e-9)),
                       **acc, "search_cpu_min": round(search_cpu_min, 3)}
                if cpu_note:
                    row["search_cpu_note"] = cpu_note
            rows.append(row)
            with rows_p.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(json.dumps({k: row.get(k) for k in ("fraction", "method", "predicted_latency_ms", "meets_budget",
                                                      "accuracy", "search_cpu_min")}), flush=True)
    for r in rows:  # rows written before the score had its own key
        if r.get("candidate") and score_key not in r:
            G, U = base.index.from_candidates([space.candidate_from_json(r["candidate"])])
            r[score_key] = float(base.evaluate_indices(G, U)[0, 0])
    timing = time_candidates(space, args.hardware, sorted({r["candidate"] for r in rows if r.get("candidate")}),
                             args.timing_rounds, args.threads, args.seed, out / "timing.json")
    for r in rows:
        t = timing.get("by_candidate", {}).get(r.get("candidate") or "")
        if t:
            r["measured_latency_ms"] = t["measured_ms"]
            r["meets_budget_measured"] = bool(t["measured_ms"] <= r["budget_ms"])
            r["host_state_ratio"] = t.get("host_state_ratio")
    summary = {}
    for f in fracs:
        by = {r["method"]: r for r in rows if r["fraction"] == f and r.get("candidate")}
        ok = {m: r for m, r in by.items() if r["meets_budget"]}
        summary[str(f)] = {"budget_ms": lo + f * (hi - lo),
                           "best_within_budget": max(ok, key=lambda m: ok[m]["accuracy"]) if ok else None,
                           "accuracy": {m: round(r["accuracy"], 2) for m, r in by.items()},
                           score_key: {m: round(r[score_key], 3) for m, r in by.items()},
                           "predicted_latency_ms": {m: round(r["predicted_latency_ms"], 4) for m, r in by.items()},
                           "meets_budget": {m: r["meets_budget"] for m, r in by.items()},
                           "measured_latency_ms": {m: r.get("measured_latency_ms") for m, r in by.items()},
                           "meets_budget_measured": {m: r.get("meets_budget_measured") for m, r in by.items()},
                           "search_cpu_min": {m: r["search_cpu_min"] for m, r in by.items()}}
    write_json(out / "dmasking_vs_ilp.json", {"facts": facts, "settings": vars(args), "latency": {
        "source": f"predictor of table {args.hardware}; measured_latency_ms: the picks compiled as integer TVM "
                  "networks and timed together on this machine, when it is the table's hardware (see timing)",
        "range_ms": [lo, hi]}, "finetune": asdict(cfg), "summary": summary,
        "timing": {k: v for k, v in timing.items() if k != "by_candidate"}, "rows": rows})
    _plot(out / "dmasking_vs_ilp.png", rows, fracs, lo, hi)
    print(json.dumps(summary, indent=1))
    return 0


def _dmasking_pick(df, budget: float):
    """The search's final candidate within the budget: the final argmax when it meets the budget, else the
    argmax moved within it (the solver adds that row), else (results of older versions) the last argmax snapshot
    that meets it, else the final one."""
    final = df[df["source"].str.contains(r"dmasking final \(")]
    final = final.iloc[-1] if len(final) else df.iloc[-1]
    if final["latency_ms"] <= budget * (1 + 1e-9):
        return final
    moved = df[df["source"].str.contains("moved within the budget")]
    if len(moved):
        return moved.iloc[-1]
    ok = df[df["latency_ms"] <= budget * (1 + 1e-9)]
    return ok.iloc[-1] if len(ok) else final


def _plot(path: Path, rows: list, fracs: list, lo: float, hi: float) -> None:
    """Real accuracy vs latency of every pick, the budgets as grey lines; with TVM timings a second panel on
    measured latency (a pick right of its budget's line missed it on the hardware)."""
    from hao._imports import lazy_import

    plt = lazy_import("matplotlib.pyplot")
    picked = [r for r in rows if r.get("candidate")]
    keys = ["predicted_latency_ms"] + (["measured_latency_ms"] if picked and all(
        r.get("measured_latency_ms") is not None for r in picked) else [])
    fig, axes = plt.subplots(1, len(keys), figsize=(6.4 * len(keys), 4.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for method, mk in (("ilp", "o"), ("dmasking", "s"), ("random", "^")):
            rs = [r for r in picked if r["method"] == method]
            ax.scatter([r[key] for r in rs], [r["accuracy"] for r in rs], marker=mk, label=method)
        for f in fracs:
            ax.axvline(lo + f * (hi - lo), color="0.8", lw=0.8, zorder=0)
        ax.set_xlabel(key.replace("_ms", " (ms)").replace("_", " "))
        ax.set_ylabel("test accuracy after fine-tuning (%)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
