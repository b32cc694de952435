"""Measure the accuracy cost of a lower input resolution: the resolution term of the accuracy model.

    python experiments/measure_resolution.py --space mbconv-fmnist-res [--n-candidates 6] [--test-images 5000]

For a resolution-searching space (a ``resolution`` decision, e.g. ``mbconv-fmnist-res``), every architecture and
bit choice is priced by the accuracy model of the space whose weights it shares; what the input resolution costs
is measured here: seeded candidates (the largest, the smallest, then random ones) are evaluated on the trained
supernet at every resolution — BatchNorm statistics and activation ranges recalibrated on training images at that
resolution, then tested on seeded test images subsampled the same way (``space.build``'s network subsamples its
input). The term of resolution ``r`` is the mean over candidates of (accuracy at the native resolution − accuracy
at ``r``) in points and of the cross-entropy increase; both carry their standard error over candidates.

Written to ``<checkpoint folder>/resolution_terms.json`` (``--out``; refused if it exists unless ``--force``),
where ``hao.search`` reads it (docs/search.md, "Input resolution"). Rows are cached in ``--work`` and the run
resumes from them.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--space", default="mbconv-fmnist-res")
    ap.add_argument("--checkpoint-dir", default=None, help="default: checkpoints/<the space's checkpoint name>/")
    ap.add_argument("--n-candidates", type=int, default=6, help="largest + smallest + random (>= 2)")
    ap.add_argument("--test-images", type=int, default=5000)
    ap.add_argument("--calib-images", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", default="runs/resolution_terms", help="cache of measured rows (resumable)")
    ap.add_argument("--out", default=None, help="default: <checkpoint folder>/resolution_terms.json")
    ap.add_argument("--force", action="store_true", help="overwrite an existing --out")
    a = ap.parse_args(argv)

    import torch

    from hao.data import fashion_mnist, loader
    from hao.proxy import default_checkpoint_dir
    from hao.proxy.resolution import RESOLUTION_FILE, ResolutionTerms
    from hao.space import get_space
    from hao.train import load_supernet
    from hao.train.candidates import evaluate_candidates

    space = get_space(a.space)
    if "resolution" not in space.context_decisions():
        print(f"space {a.space!r} has no resolution decision; use a resolution-searching space such as "
              "mbconv-fmnist-res", file=sys.stderr)
        return 2
    if a.n_candidates < 2:
        print(f"--n-candidates must be >= 2 (largest and smallest), got {a.n_candidates}", file=sys.stderr)
        return 2
    folder = Path(a.checkpoint_dir) if a.checkpoint_dir else default_checkpoint_dir(space.checkpoint_name)
    out = Path(a.out) if a.out else folder / RESOLUTION_FILE
    if out.exists() and not a.force:
        print(f"{out} exists (measured data); pass --force to overwrite it", file=sys.stderr)
        return 2
    torch.set_num_threads(a.threads)
    resolutions = sorted({c["resolution"] for c in space.contexts()})
    native = resolutions[-1]
    rng = np.random.default_rng(a.seed)
    base = [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(a.n_candidates - 2)]
    jobs = [(i, r, space.make(c.as_dict() | {"resolution": r})) for i, c in enumerate(base) for r in resolutions]

    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    cache = work / "rows.jsonl"
    settings = {"space": a.space, "checkpoint": str(folder), "test_images": a.test_images,
                "calib_images": a.calib_images, "seed": a.seed}
    done: dict[int, dict] = {}
    if cache.is_file():
        for line in cache.read_text().splitlines():
            row = json.loads(line)
            if row["settings"] == settings:
                done[row["job"]] = row
    net = load_supernet(space, folder / "supernet.pt")
    train, test = fashion_mnist("train"), fashion_mnist("test")
    calib = list(loader(train.subset(a.calib_images, seed=a.seed + 1), 250))
    test_b = list(loader(test.subset(a.test_images, seed=0), 1000))
    t0 = time.perf_counter()
    rows: dict[int, dict] = {}
    for j, (i, r, cand) in enumerate(jobs):
        if j in done:
            rows[j] = done[j]
            continue
        row = evaluate_candidates(space, net, [cand], calib, test_b, progress=False, exact=False)[0]
        row.update(job=j, base=i, resolution=r, settings=settings)
        rows[j] = row
        with cache.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"[{j + 1}/{len(jobs)}] candidate {i} at {r}px: {row['accuracy']:.2f}% "
              f"(loss {row['loss']:.4f}, {time.perf_counter() - t0:.0f} s)", flush=True)
    acc = {(rows[j]["base"], rows[j]["resolution"]): rows[j] for j in rows}
    def se(v: np.ndarray) -> float:
        return float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else 0.0

    terms = {}
    for r in resolutions:
        d_acc = np.array([acc[(i, native)]["accuracy"] - acc[(i, r)]["accuracy"] for i in range(len(base))])
        d_loss = np.array([acc[(i, r)]["loss"] - acc[(i, native)]["loss"] for i in range(len(base))])
        terms[r] = {"accuracy_drop": float(d_acc.mean()), "accuracy_drop_se": se(d_acc),
                    "loss_increase": float(d_loss.mean()), "loss_increase_se": se(d_loss)}
    rt = ResolutionTerms(space=space.checkpoint_name, native=native, terms=terms, provenance={
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *(argv or sys.argv[1:])]),
        "candidates": [c.to_json() for c in base], "n_test_images": a.test_images,
        "n_calib_images": a.calib_images, "protocol": "BN + activation ranges recalibrated per resolution on "
        "training images, float32 fake-quant evaluation on seeded test images; inputs subsampled bilinearly",
        "rows": [{k: rows[j][k] for k in ("base", "resolution", "accuracy", "accuracy_se", "loss")}
                 for j in sorted(rows)]})
    rt.save(out)
    print(json.dumps({"out": str(out), "terms": terms}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
