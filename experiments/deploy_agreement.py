"""Does the deployed integer network compute what hao's fake-quant model measured? TVM integer modules vs the
fake-quant PyTorch model on the Fashion-MNIST test split, for seeded mixed-precision candidates.

    python experiments/deploy_agreement.py --out runs/deploy_agreement          # 12 candidates x 10k images
    python experiments/deploy_agreement.py --out /tmp/a --candidates 2 --test-images 200 --smoke

Per candidate: the sub-network of the committed supernet, BatchNorm and activation ranges calibrated on
``--calib-images`` seeded training images (as ``hao evaluate`` does), then

* hao's fake-quant PyTorch model on the test images as ``hao evaluate`` computes it (exact accumulators, float64
  element-wise path: ``evaluate_full(exact=True)``),
* the TVM integer module (:mod:`hao.deploy`, the table's own int8 programs, built with TVM's default lowering —
  schedules change speed, never results; ``--native``: for this CPU, with the programs its tables run) on the same
  images, one image per call,
* the NumPy integer reference on the first ``--reference-images`` images, compared with the TVM module,
* the float32 fake-quant path (``hao evaluate --fast``, training-time evaluation) on the first ``--float32-images``
  images: how often float32 rounding alone flips a prediction.

Reported: top-1 agreement TVM vs fake-quant, both accuracies and their difference, the NumPy-vs-TVM check.
Targets (README): agreement >= 99.5% and |accuracy difference| <= 0.2 points on every candidate.
Resumable: finished candidates are kept in ``OUT/rows.jsonl``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments._common import run_facts, write_json  # noqa: E402


def candidates(space, n: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    out: list = []
    for c in (space.largest(), space.smallest(), space.uniform(8, 8), space.uniform(4, 4)):
        if len(out) < n and c.to_json() not in {o.to_json() for o in out}:   # largest may be uniform(8, 8)
            out.append(c)
    while len(out) < n:
        c = space.sample(rng)
        if c.to_json() not in {o.to_json() for o in out}:
            out.append(c)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--space", default="mbconv-fmnist")
    ap.add_argument("--checkpoint", help="supernet.pt (default: the space's committed checkpoint)")
    ap.add_argument("--candidates", type=int, default=12)
    ap.add_argument("--test-images", type=int, default=10000)
    ap.add_argument("--reference-images", type=int, default=32)
    ap.add_argument("--calib-images", type=int, default=2000)
    ap.add_argument("--float32-images", type=int, default=10000,
                    help="test images also run through the float32 fake-quant path (default 10000)")
    ap.add_argument("--indices", help="comma-separated candidate indices to run first (e.g. 4,2); the rest follow")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--smoke", action="store_true", help="CI setting: no targets enforced")
    ap.add_argument("--native", action="store_true",
                    help="compile for this CPU (the programs a table of this CPU runs, e.g. the dot-product "
                         "depthwise program on AVX-512 VNNI + VBMI) instead of a generic LLVM target")
    args = ap.parse_args(argv)

    import os
    os.environ.setdefault("TVM_NUM_THREADS", str(args.threads))
    import torch

    import hao
    from hao.data import fashion_mnist, loader
    from hao.deploy import integer_network
    from hao.deploy.tvm_module import IntegerModule, build, relax_module
    from hao.proxy import default_checkpoint_dir
    from hao.quant import exact_copy
    from hao.train.evaluate import prepare_subnet
    from hao.train.supernet import load_supernet

    torch.set_num_threads(args.threads)
    facts = run_facts(argv, args.threads)
    target = None
    if args.native:
        from hao.latency.target import default_target

        target = default_target(args.threads)
        facts["target"] = target
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    space = hao.get_space(args.space)
    ckpt = Path(args.checkpoint) if args.checkpoint else default_checkpoint_dir(space.checkpoint_name) / "supernet.pt"
    supernet = load_supernet(space, ckpt)
    train, test = fashion_mnist("train"), fashion_mnist("test")
    if args.test_images < len(test):
        test = test.subset(args.test_images, seed=args.seed + 7)
    calib = list(loader(train.subset(args.calib_images, seed=args.seed + 1), 250))
    xs, ys = test.x.numpy(), test.y.numpy()
    rows_path = out / "rows.jsonl"
    done = {}
    if rows_path.is_file():
        for line in rows_path.read_text().splitlines():
            r = json.loads(line)
            done[r["candidate"]] = r
    t_all = time.perf_counter()
    rows = []
    cands = list(enumerate(candidates(space, args.candidates, args.seed)))
    if args.indices:
        first = [int(v) for v in args.indices.split(",")]
        bad = [v for v in first if not 0 <= v < len(cands)]
        if bad:
            raise SystemExit(f"--indices {bad}: valid indices are 0..{len(cands) - 1}")
        cands = [cands[v] for v in first] + [c for c in cands if c[0] not in first]
    for i, cand in cands:
        if cand.to_json() in done:
            rows.append(done[cand.to_json()])
            continue
        t0 = time.perf_counter()
        model = prepare_subnet(space.build(cand, supernet), calib).eval()
        with torch.no_grad():
            # hao's number: the exact evaluation path (what `hao evaluate` reports)
            m64 = exact_copy(model)
            fake = torch.cat([m64(torch.from_numpy(xs[j: j + 500]).double())
                              for j in range(0, len(xs), 500)]).float().numpy()
            n32 = min(args.float32_images, len(xs))
            fake32 = torch.cat([model(torch.from_numpy(xs[j: j + 500])) for j in range(0, n32, 500)]).numpy()
        net = integer_network(model, tuple(space.input_shape))
        mod = IntegerModule(build(relax_module(net, target), target))
        tvm_logits = mod.run_batch(xs)
        k = min(args.reference_images, len(xs))
        ref = net.run(xs[:k])
        row = {"index": i, "candidate": cand.to_json(),
               "accuracy_fake_quant": float((fake.argmax(1) == ys).mean() * 100),
               "accuracy_tvm_integer": float((tvm_logits.argmax(1) == ys).mean() * 100),
               "top1_agreement_pct": float((fake.argmax(1) == tvm_logits.argmax(1)).mean() * 100),
               "float32_images": int(n32),
               "accuracy_float32_path": float((fake32.argmax(1) == ys[:n32]).mean() * 100),
               "top1_agreement_float32_path_pct": float((fake32.argmax(1) == tvm_logits[:n32].argmax(1)).mean()
                                                        * 100),
               "top1_agreement_float32_vs_exact_pct": float((fake32.argmax(1) == fake[:n32].argmax(1)).mean()
                                                            * 100),
               "max_abs_logit_diff_vs_fake": float(np.abs(fake - tvm_logits).max()),
               "reference_images": k,
               "tvm_vs_numpy_max_abs_diff": float(np.abs(tvm_logits[:k] - ref).max()),
               "tvm_vs_numpy_same_top1": bool(np.array_equal(tvm_logits[:k].argmax(1), ref.argmax(1))),
               "n_images": int(len(xs)), "seconds": round(time.perf_counter() - t0, 1)}
        row["accuracy_diff_points"] = row["accuracy_tvm_integer"] - row["accuracy_fake_quant"]
        rows.append(row)
        with rows_path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"[{i + 1}/{args.candidates}] fake {row['accuracy_fake_quant']:.2f}%  "
              f"tvm {row['accuracy_tvm_integer']:.2f}%  agree {row['top1_agreement_pct']:.2f}%  "
              f"(float32 path {row['top1_agreement_float32_path_pct']:.2f}%)  "
              f"({row['seconds']} s)", flush=True)
    agree = [r["top1_agreement_pct"] for r in rows]
    diffs = [abs(r["accuracy_diff_points"]) for r in rows]
    summary = {"candidates": len(rows), "min_agreement_pct": min(agree),
               "median_agreement_pct": float(np.median(agree)),
               "min_agreement_float32_path_pct": min(r["top1_agreement_float32_path_pct"] for r in rows),
               "max_abs_accuracy_diff_points": max(diffs),
               "meets_targets": bool(min(agree) >= 99.5 and max(diffs) <= 0.2),
               "tvm_matches_numpy_reference": all(r["tvm_vs_numpy_same_top1"] for r in rows)}
    write_json(out / "agreement.json", {"facts": facts, "checkpoint": str(ckpt), "summary": summary, "rows": rows,
                                        "wall_s": round(time.perf_counter() - t_all, 1)})
    print(json.dumps(summary, indent=1))
    return 0 if (args.smoke or summary["meets_targets"]) else 1


if __name__ == "__main__":
    sys.exit(main())
