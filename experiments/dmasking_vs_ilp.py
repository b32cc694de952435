"""DMasking vs the ILP vs random search at the same latency budgets, every pick fine-tuned with the same recipe.

    python experiments/dmasking_vs_ilp.py --out runs/dmask_vs_ilp                # 4 budgets, ~4-6 h on 2 cores
    python experiments/dmasking_vs_ilp.py --out /tmp/d --smoke                   # CI-sized: minutes, no targets

Per budget (``--targets`` fractions of the predicted-latency range between the space's smallest and largest
candidate, on ``--hardware``'s table):

* **ilp** — the exact optimum of the accuracy model (``proxy``) under the latency budget (``solver="ilp"``);
* **dmasking** — ``solver="dmasking"`` (``--dm-steps`` steps, λ by dual ascent towards the budget), its final
  argmax candidate;
* **random** — ``--random-samples`` seeded random candidates, the best accuracy-model score among those within
  the budget (a random search given the same accuracy model).

Each pick is fine-tuned with one :class:`hao.train.finetuning.FinetuneConfig` (``--finetune-steps``; the same for
all) and evaluated as it deploys (``evaluate_full(exact=True)``) on the test split. Reported per row: the
candidate, its predicted latency (and whether it meets the budget), real accuracy before and after fine-tuning,
and the search cost in CPU-minutes (process time of the search alone). TVM timing of the picks is
``hao latency validate``'s job on the table's own hardware (this script refuses nothing: it reports the
predictor's latency and says so). Resumable: finished rows are kept in ``OUT/rows.jsonl``; fine-tuning resumes
per network. Writes ``OUT/dmasking_vs_ilp.json`` and ``OUT/dmasking_vs_ilp.png``.
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
    ap.add_argument("--hardware", default="cpu-rocketlake-2t")
    ap.add_argument("--targets", default="0.25,0.4,0.55,0.7",
                    help="latency budgets as fractions of the predicted range smallest..largest")
    ap.add_argument("--dm-steps", type=int, default=300)
    ap.add_argument("--random-samples", type=int, default=2000)
    ap.add_argument("--finetune-steps", type=int, default=300)
    ap.add_argument("--test-images", type=int, default=10000)
    ap.add_argument("--calib-images", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--smoke", action="store_true", help="tiny settings for CI; no conclusions")
    args = ap.parse_args(argv)
    if args.smoke:
        args.dm_steps, args.random_samples, args.finetune_steps = 2, 50, 2
        args.test_images, args.calib_images, args.targets = 200, 200, "0.5"

    import torch

    import hao
    from hao.data import fashion_mnist, loader
    from hao.proxy import default_checkpoint_dir
    from hao.search.api import make_problem
    from hao.search.base import make_solver
    from hao.train.evaluate import evaluate_full, prepare_subnet
    from hao.train.finetuning import FinetuneConfig, finetune
    from hao.train.supernet import load_supernet

    torch.set_num_threads(args.threads)
    facts = run_facts(argv, args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    space = hao.get_space(args.space)
    ckpt = default_checkpoint_dir(space.name)
    supernet = load_supernet(space, ckpt / "supernet.pt")
    train, test = fashion_mnist("train"), fashion_mnist("test")
    if args.test_images < len(test):
        test = test.subset(args.test_images, seed=args.seed + 7)
    calib = list(loader(train.subset(args.calib_images, seed=args.seed + 1), 250))
    test_batches = list(loader(test, 500))
    cfg = FinetuneConfig(steps=args.finetune_steps, seed=args.seed, ckpt_every=max(1, min(50, args.finetune_steps)))

    base = make_problem(space, args.hardware, objectives=["proxy", "latency_ms"], references=False)
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
        problem = make_problem(space, args.hardware, objectives=["proxy", "latency_ms"],
                               budgets={"latency_ms": budget}, references=False)
        for method in ("ilp", "dmasking", "random"):
            if (f, method) in done:
                rows.append(done[(f, method)])
                continue
            c0 = time.process_time()
            if method == "ilp":
                res = make_solver("ilp", n_points=1).solve(problem)
                feas = res.df[res.df.feasible]
                cand = space.candidate_from_json(feas.sort_values("proxy").iloc[0]["config"])
            elif method == "dmasking":
                res = make_solver("dmasking", steps=args.dm_steps, seed=args.seed, threads=args.threads,
                                  work_dir=str(out / f"dm_{f}"), snapshot_every=max(1, args.dm_steps)).solve(
                    problem, progress=True)
                cand = space.candidate_from_json(res.df.iloc[-1]["config"])
            else:
                cand = _pick_random(problem, args.random_samples, budget, args.seed)
            search_cpu_min = (time.process_time() - c0) / 60
            if cand is None:
                row = {"fraction": f, "method": method, "budget_ms": budget, "candidate": None,
                       "note": "no sampled candidate met the budget", "search_cpu_min": search_cpu_min}
            else:
                G, U = problem.index.from_candidates([cand])
                v = problem.evaluate_indices(G, U)[0]
                before = evaluate_full(prepare_subnet(space.build(cand, supernet), calib).eval(), test_batches,
                                       exact=True)
                ft = finetune(space, supernet, cand, train, cfg, calib, work_dir=out / f"ft_{f}_{method}",
                              progress=True)
                after = evaluate_full(ft["model"].eval(), test_batches, exact=True)
                row = {"fraction": f, "method": method, "budget_ms": budget, "candidate": cand.to_json(),
                       "proxy": float(v[0]), "predicted_latency_ms": float(v[1]),
                       "meets_budget": bool(v[1] <= budget * (1 + 1e-9)),
                       "accuracy_before_finetune": 100 * before.accuracy, "accuracy": 100 * after.accuracy,
                       "accuracy_se": 100 * after.accuracy_se, "search_cpu_min": round(search_cpu_min, 3),
                       "finetune_wall_s": ft["wall_s"]}
            rows.append(row)
            with rows_p.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(json.dumps({k: row.get(k) for k in ("fraction", "method", "predicted_latency_ms", "meets_budget",
                                                      "accuracy", "search_cpu_min")}), flush=True)
    summary = {}
    for f in fracs:
        by = {r["method"]: r for r in rows if r["fraction"] == f and r.get("candidate")}
        ok = {m: r for m, r in by.items() if r["meets_budget"]}
        summary[str(f)] = {"budget_ms": lo + f * (hi - lo),
                           "best_within_budget": max(ok, key=lambda m: ok[m]["accuracy"]) if ok else None,
                           "accuracy": {m: round(r["accuracy"], 2) for m, r in by.items()},
                           "meets_budget": {m: r["meets_budget"] for m, r in by.items()}}
    write_json(out / "dmasking_vs_ilp.json", {"facts": facts, "settings": vars(args), "latency": {
        "source": f"predictor of table {args.hardware} (whole-network TVM timing: hao latency validate on that "
                  "table's hardware)", "range_ms": [lo, hi]}, "finetune": asdict(cfg), "summary": summary,
        "rows": rows})
    _plot(out / "dmasking_vs_ilp.png", rows, fracs, lo, hi)
    print(json.dumps(summary, indent=1))
    return 0


def _plot(path: Path, rows: list, fracs: list, lo: float, hi: float) -> None:
    from hao._imports import lazy_import

    plt = lazy_import("matplotlib.pyplot")
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for method, mk in (("ilp", "o"), ("dmasking", "s"), ("random", "^")):
        rs = [r for r in rows if r["method"] == method and r.get("candidate")]
        ax.scatter([r["predicted_latency_ms"] for r in rs], [r["accuracy"] for r in rs], marker=mk, label=method)
    for f in fracs:
        ax.axvline(lo + f * (hi - lo), color="0.8", lw=0.8, zorder=0)
    ax.set_xlabel("predicted latency (ms)")
    ax.set_ylabel("test accuracy after fine-tuning (%)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
