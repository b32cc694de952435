"""Fashion-MNIST: the exact front of the calibrated accuracy model, verified by fine-tuning and whole-network timing.

    python experiments/fmnist_front_finetuned.py --out runs/front_ft                # ~2 h on 2 cores
    python experiments/fmnist_front_finetuned.py --out /tmp/f --smoke               # CI-sized: minutes, no claims

1. **Front**: the exact Pareto front (``solver="front"``, ``--epsilon``) of the calibrated accuracy model's
   predicted accuracy (``CHECKPOINT/accmodel``, maximised) vs the predicted latency on ``--hardware``'s table
   (default: the table of this machine's CPU, ``cpu-<mcpu>-2t``); ``--n-verify`` latency budgets evenly spaced
   over it, each answered by lookup on the front.
2. **Baselines at equal evaluation counts** (``--n-verify`` networks each): ``random`` — seeded random candidates
   of the space (a random search that measures every network it draws); ``uniform`` — each front pick's own
   architecture with every layer at one bit-width, the widest of 8/4/2 whose predicted latency fits that pick's
   budget (the narrowest when none does; activations stay at 4 bits where the space has no 2-bit ones). A pick
   that is already uniform is its own baseline (``same_as_front``; not fine-tuned twice, never counted as
   dominated).
3. Every network is **fine-tuned** with one recipe (:class:`hao.train.finetuning.FinetuneConfig`,
   ``--finetune-steps``) from the supernet of ``--checkpoint-dir`` and evaluated as it deploys on the test
   split (before and after fine-tuning).
4. When this machine is the table's hardware, every network is compiled as it deploys (the integer network at
   its bit-widths) and all are **timed together** in interleaved passes (``experiments/_verify.py``).

Reported: per network the predicted and real accuracy, predicted and measured latency; Kendall τ and mean absolute
error of predicted vs real accuracy on the front; per baseline, how many of its networks the front **dominates**
(another front network at least as accurate and at most as slow, one strictly; on measured latency when timed,
else predicted) and the hypervolume of each set (accuracy ↑, latency ↓, same reference point). Resumable:
``OUT/rows.jsonl`` keeps finished networks, fine-tuning resumes per network. Writes ``OUT/front_finetuned.json``
and ``OUT/front_finetuned.png``.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments._common import kendall_tau, run_facts, write_json  # noqa: E402
from experiments._verify import (finetune_and_evaluate, fmnist_eval_data, this_cpu_table,  # noqa: E402
                                 time_candidates)

BIT_KINDS = ("w_bits", "a_bits", "bits")


def with_uniform_bits(space: Any, cand: Any, bits: int) -> Any:
    """``cand``'s architecture with every searchable layer at ``bits`` (weights and activations; a decision
    without that option takes its narrowest option above it, e.g. 4-bit activations in W2 networks)."""
    decs = {d.name: d for d in space.decisions() if d.kind in BIT_KINDS}
    d = cand.as_dict()
    for name in d:
        if name in decs:
            opts = sorted(decs[name].options)
            d[name] = next((o for o in opts if o >= bits), opts[-1])
    return space.make(d)


def _ft_dir(role: str, cand: Any) -> str:
    """A network's fine-tuning folder, named by what it holds (a run with another --n-verify resumes safely)."""
    import hashlib
    return f"ft_{role}_{hashlib.sha1(cand.to_json().encode()).hexdigest()[:12]}"


def dominated(points: np.ndarray, by: np.ndarray) -> np.ndarray:
    """Per row of ``points`` (accuracy, latency): whether a row of ``by`` is at least as accurate and at most as
    slow, and strictly better in one."""
    if not len(by):
        return np.zeros(len(points), dtype=bool)
    ge = (by[None, :, 0] >= points[:, None, 0]) & (by[None, :, 1] <= points[:, None, 1])
    gt = (by[None, :, 0] > points[:, None, 0]) | (by[None, :, 1] < points[:, None, 1])
    return np.any(ge & gt, axis=1)


def hypervolume(points: np.ndarray, ref: tuple[float, float]) -> float:
    """Area dominated by ``points`` (accuracy ↑, latency ↓) and bounded by ``ref`` = (accuracy, latency)."""
    pts = points[(points[:, 0] > ref[0]) & (points[:, 1] < ref[1])]
    hv, best = 0.0, ref[0]
    for acc, lat in sorted(pts.tolist(), key=lambda p: p[1]):   # fastest first
        if acc > best:
            hv += (acc - best) * (ref[1] - lat)
            best = acc
    return float(hv)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--space", default="mbconv-fmnist")
    ap.add_argument("--hardware", default=None, help="latency table (default: cpu-<this CPU>-2t)")
    ap.add_argument("--checkpoint-dir", default=None,
                    help="supernet folder with its calibrated model (default: the space's checkpoint)")
    ap.add_argument("--epsilon", type=float, default=0.001, help="front solver's ε (share of each range)")
    ap.add_argument("--n-verify", type=int, default=8, help="front picks, and networks per baseline")
    ap.add_argument("--finetune-steps", type=int, default=300)
    ap.add_argument("--test-images", type=int, default=10000)
    ap.add_argument("--calib-images", type=int, default=2000)
    ap.add_argument("--timing-rounds", type=int, default=5, help="interleaved timing passes (0: do not time)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--smoke", action="store_true", help="tiny settings for CI; no conclusions")
    args = ap.parse_args(argv)
    if args.smoke:
        args.n_verify, args.finetune_steps, args.test_images, args.calib_images = 2, 2, 200, 200
        args.timing_rounds, args.epsilon = 0, 0.01
    if args.n_verify < 2:
        ap.error(f"--n-verify must be >= 2 (Kendall τ needs two), got {args.n_verify}.")

    import torch

    import hao
    from hao.proxy import default_checkpoint_dir, model_folder
    from hao.search.api import make_problem
    from hao.space import Candidate
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
    if accmodel is None:
        ap.error(f"{ckpt} has no calibrated accuracy model (accuracy_model.json, or accmodel/accuracy_model.json): "
                 "this experiment verifies one; fit it with python experiments/fit_accuracy_model.py "
                 "(docs/accuracy_model.md).")
    kw = {"objectives": ["accuracy", "latency_ms"], "proxy": "calibrated", "checkpoint": accmodel}
    res = hao.search(space=space, hardware=args.hardware, solver="front", epsilon=args.epsilon, **kw)
    front = res.pareto().sort_values("latency_ms").reset_index(drop=True)
    problem = make_problem(space, args.hardware, references=False, **kw)

    def predict(cands: list) -> np.ndarray:
        G, U = problem.index.from_candidates(cands)
        return problem.evaluate_indices(G, U)

    picks: list[tuple[str, Any, float]] = []           # (role, candidate, budget)
    seen: set[str] = set()
    for b in np.linspace(front["latency_ms"].min(), front["latency_ms"].max(), args.n_verify):
        c = Candidate.from_json(res.query({"latency_ms": float(b)})["config"])
        if c.to_json() not in seen:
            seen.add(c.to_json())
            picks.append(("front", c, float(b)))
    n = len(picks)
    for _, c, b in list(picks):
        opts = [with_uniform_bits(space, c, bits) for bits in (8, 4, 2)]
        lat = predict(opts)[:, 1]
        fit = [i for i in range(len(opts)) if lat[i] <= b * (1 + 1e-9)]
        picks.append(("uniform", opts[fit[0] if fit else -1], b))
    rng = np.random.default_rng(args.seed)
    while sum(r == "random" for r, _, _ in picks) < n:
        c = space.sample(rng)
        if c.to_json() not in seen:
            seen.add(c.to_json())
            picks.append(("random", c, float("nan")))

    supernet = load_supernet(space, ckpt / "supernet.pt")
    train, calib, test_batches = fmnist_eval_data(args.test_images, args.calib_images, args.seed)
    cfg = FinetuneConfig(steps=args.finetune_steps, seed=args.seed,
                         ckpt_every=max(1, min(50, args.finetune_steps)))
    rows_p = out / "rows.jsonl"
    done = {}
    if rows_p.is_file():
        for line in rows_p.read_text().splitlines():
            r = json.loads(line)
            done[(r["role"], r["candidate"])] = r
    rows = []
    for role, cand, budget in picks:
        key = (role, cand.to_json())
        if key in done:
            rows.append(done[key])
            continue
        twin = next((r for r in rows if r["role"] == "front" and r["candidate"] == key[1]), None)
        if role == "uniform" and twin is not None:
            # the pick is already uniform: the same network, recipe and seed; not fine-tuned twice
            row = {**twin, "role": "uniform", "same_as_front": True}
            rows.append(row)
            with rows_p.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            continue
        v = predict([cand])[0]
        row = {"role": role, "candidate": cand.to_json(), "budget_ms": None if np.isnan(budget) else budget,
               "predicted_accuracy": float(v[0]), "predicted_latency_ms": float(v[1]),
               **finetune_and_evaluate(space, supernet, cand, train, calib, test_batches, cfg,
                                       out / _ft_dir(role, cand))}
        rows.append(row)
        with rows_p.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(json.dumps({k: row[k] for k in ("role", "predicted_accuracy", "accuracy", "predicted_latency_ms")}),
              flush=True)

    timing = time_candidates(space, args.hardware, sorted({r["candidate"] for r in rows}), args.timing_rounds,
                             args.threads, args.seed, out / "timing.json")
    by = timing.get("by_candidate", {})
    for r in rows:
        r["measured_latency_ms"] = by.get(r["candidate"], {}).get("measured_ms")
    lat_key = "measured_latency_ms" if all(r["measured_latency_ms"] is not None for r in rows) else \
        "predicted_latency_ms"
    pts = {role: np.array([[r["accuracy"], r[lat_key]] for r in rows if r["role"] == role])
           for role in ("front", "uniform", "random")}
    allp = np.vstack(list(pts.values()))
    ref = (float(allp[:, 0].min()) - 1.0, float(allp[:, 1].max()) * 1.05)
    fr = [r for r in rows if r["role"] == "front"]
    summary = {
        "latency_axis": lat_key,
        "front_accuracy": {"kendall_tau_predicted_vs_real": kendall_tau([r["predicted_accuracy"] for r in fr],
                                                                       [r["accuracy"] for r in fr], seed=args.seed),
                           "mean_abs_err_points": float(np.mean([abs(r["predicted_accuracy"] - r["accuracy"])
                                                                 for r in fr])),
                           "mean_err_points_predicted_minus_real": float(np.mean(
                               [r["predicted_accuracy"] - r["accuracy"] for r in fr]))},
        "dominated_by_front": {role: {"n": int(len(pts[role])), "dominated": int(dominated(pts[role],
                                                                                           pts["front"]).sum())}
                               for role in ("uniform", "random")},
        "uniform_same_as_front": int(sum(bool(r.get("same_as_front")) for r in rows)),
        "front_points_dominated_by_baselines": int(dominated(pts["front"],
                                                             np.vstack([pts["uniform"], pts["random"]])).sum()),
        "hypervolume": {role: hypervolume(p, ref) for role, p in pts.items()}, "hypervolume_reference": ref,
    }
    write_json(out / "front_finetuned.json", {
        "facts": facts, "settings": vars(args), "accuracy_model": str(accmodel), "front_size": len(front),
        "finetune": asdict(cfg), "timing": {k: v for k, v in timing.items() if k != "by_candidate"},
        "summary": summary, "rows": rows})
    _plot(out / "front_finetuned.png", rows, lat_key)
    print(json.dumps(summary, indent=1))
    return 0


def _plot(path: Path, rows: list, lat_key: str) -> None:
    from hao._imports import lazy_import

    plt = lazy_import("matplotlib.pyplot")
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4.2))
    for role, mk in (("front", "o"), ("uniform", "s"), ("random", "^")):
        rs = [r for r in rows if r["role"] == role and not r.get("same_as_front")]  # drawn once, as front
        if not rs:
            continue
        a.scatter([r[lat_key] for r in rs], [r["accuracy"] for r in rs], marker=mk, label=role)
        b.scatter([r["predicted_accuracy"] for r in rs], [r["accuracy"] for r in rs], marker=mk, label=role)
    a.set_xlabel(lat_key.replace("_", " "))
    a.set_ylabel("test accuracy after fine-tuning (%)")
    a.legend()
    lo = min(min(r["predicted_accuracy"], r["accuracy"]) for r in rows)
    hi = max(max(r["predicted_accuracy"], r["accuracy"]) for r in rows)
    b.plot([lo, hi], [lo, hi], color="0.7", lw=0.8)
    b.set_xlabel("predicted accuracy (%)")
    b.set_ylabel("test accuracy after fine-tuning (%)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
