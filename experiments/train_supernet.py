"""Train the mbconv-fmnist weight-sharing supernet on Fashion-MNIST (sandwich rule + in-place distillation).

    PYTHONPATH=. python experiments/train_supernet.py --out runs/supernet [--steps 450] [--max-minutes 24]

Resumable: re-running with the same --out and settings continues from ``--out/train_state.pt``. Writes
``--out/supernet.pt`` (fp16 state_dict), ``--out/meta.json`` (settings, wall time, accuracies of the largest and
smallest sub-networks: BN recalibrated on 2k training images, fake-quantized evaluation on the 10k test split)
and, with ``--checkpoint-dir``, copies both there (the committed ``checkpoints/mbconv-fmnist``).
States its wall time on stdout and in meta.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output / work folder (resumable)")
    p.add_argument("--space", default="mbconv-fmnist")
    p.add_argument("--data", default=None, help="folder with the Fashion-MNIST IDX files (default: Debian's)")
    p.add_argument("--steps", type=int, default=450)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--n-random", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", default=None, metavar="SUPERNET_PT",
                   help="start from these weights (e.g. runs/distill/supernet.pt after block-wise distillation: "
                        "this run is then the short end-to-end phase)")
    p.add_argument("--random-bits-largest", action="store_true",
                   help="random bit-widths for the largest sub-network too (recommended after distillation)")
    p.add_argument("--val-images", type=int, default=0,
                   help="hold this many training images out (the teacher's split with the same seed); 0 = none")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-minutes", type=float, default=None, help="stop this call after so many minutes")
    p.add_argument("--calib-images", type=int, default=2000)
    p.add_argument("--test-images", type=int, default=10000, help="seeded subset of the 10k test split if fewer")
    p.add_argument("--finalize-partial", action="store_true",
                   help="evaluate and save even if --max-minutes stopped training before --steps (stated in meta)")
    p.add_argument("--sensitivity-only", action="store_true",
                   help="skip training: load --checkpoint-dir/supernet.pt (or --out) and compute sensitivity.json")
    p.add_argument("--trace-images", type=int, default=256, help="training images for the Hessian traces")
    p.add_argument("--trace-batch", type=int, default=128)
    p.add_argument("--trace-samples", type=int, default=48, help="Rademacher vectors (max)")
    p.add_argument("--trace-tol", type=float, default=None, help="relative standard error to stop at")
    p.add_argument("--checkpoint-dir", default=None, help="copy supernet.pt + meta.json here when finished")
    p.add_argument("--force", action="store_true",
                   help="replace supernet.pt / sensitivity.json that --checkpoint-dir already holds (measured data: "
                        "refused without it)")
    a = p.parse_args(argv)

    import hao
    from hao.data import fashion_mnist, loader
    from hao.train import (SandwichConfig, evaluate_full, load_supernet, prepare_subnet, save_supernet,
                           smallest_candidate, train_supernet)

    torch.set_num_threads(a.threads)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    _refuse_to_replace(a, out)  # before any work
    space = hao.get_space(a.space)
    train = fashion_mnist("train", a.data)
    test = fashion_mnist("test", a.data)
    if a.sensitivity_only:
        return _sensitivity(a, space, train, out)
    cfg = SandwichConfig(steps=a.steps, batch_size=a.batch_size, lr=a.lr, n_random=a.n_random, seed=a.seed,
                         random_bits_largest=a.random_bits_largest)
    if a.val_images:
        from hao.train.teacher import split_validation
        train, _ = split_validation(train, a.val_images, a.seed)
    net = load_supernet(space, a.init) if a.init else space.supernet(a.seed)
    net.train()
    summary = train_supernet(space, net, train, cfg, work_dir=out, max_minutes=a.max_minutes)
    print(f"training: {summary['steps_done']}/{cfg.steps} steps ({summary['epochs']:.2f} epochs) in "
          f"{summary['wall_s'] / 60:.1f} min wall ({a.threads} threads)")
    if not summary["finished"] and not a.finalize_partial:
        print("not finished (time limit); re-run the same command to resume")
        return summary
    sha = save_supernet(net, out / "supernet.pt")
    calib = list(loader(train.subset(a.calib_images, seed=a.seed + 1), 250))
    if a.test_images < len(test):
        test = test.subset(a.test_images, seed=a.seed + 7)
    test_batches = list(loader(test, 500))
    t0 = time.perf_counter()
    accs = {}
    small = smallest_candidate(space)
    for name, cand in [("largest_w8a8", space.largest()), ("largest_w4a4", space.uniform(4, 4)),
                       ("smallest_w8a8", small.replace(**{d: 8 for d, _ in small.choices if d.endswith("bits")})),
                       ("smallest_w2a4", small)]:
        sub = prepare_subnet(space.build(cand, net), calib)
        r = evaluate_full(sub, test_batches)
        accs[name] = {"accuracy": r.accuracy, "accuracy_se": r.accuracy_se, "loss": r.loss, "n": r.n,
                      "candidate": cand.to_dict()}
        print(f"{name}: test accuracy {100 * r.accuracy:.2f} ± {100 * r.accuracy_se:.2f} %")
    meta = {"space": space.name, "checkpoint": "supernet.pt", "sha256": sha, "format": "fp16 state_dict",
            "params": sum(p.numel() for p in net.parameters()), "training": asdict(cfg),
            "method": "sandwich rule: largest (" + ("random" if cfg.random_bits_largest else "max")
                      + " bits) on labels + smallest arch (random bits) + "
                      f"{cfg.n_random} random candidate(s) distilled in place (KL to the largest); AdamW, "
                      "cosine LR with warm-up, no augmentation",
            "init": a.init or f"fresh supernet (seed {a.seed})",
            "data": f"Fashion-MNIST train (60k{f' minus {a.val_images} held out' if a.val_images else ''}), "
                    "evaluation on the 10k test split",
            "steps": summary["steps_done"], "finished_schedule": summary["finished"], "epochs": summary["epochs"],
            "train_wall_s": summary["wall_s"], "threads": a.threads, "cpu": platform.processor() or platform.machine(),
            "torch": torch.__version__, "eval_protocol": f"BN recalibrated + activation ranges calibrated on "
                                                        f"{a.calib_images} train images, fake-quant eval on "
                                                        f"{len(test)} test images",
            "eval_wall_s": time.perf_counter() - t0, "accuracy": accs}
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    if a.checkpoint_dir:
        dst = Path(a.checkpoint_dir)
        dst.mkdir(parents=True, exist_ok=True)
        shutil.copy(out / "supernet.pt", dst / "supernet.pt")
        (dst / "meta.json").write_text(json.dumps(meta, indent=2))
    print(f"wall time: training {summary['wall_s'] / 60:.1f} min, evaluation {meta['eval_wall_s']:.0f} s")
    _sensitivity(a, space, train, out)
    return meta


def _refuse_to_replace(a: argparse.Namespace, out: Path) -> None:
    """A committed checkpoint and its traces are measured data: replacing them needs --force."""
    from hao.errors import ConfigError

    folder = Path(a.checkpoint_dir) if a.checkpoint_dir else None
    targets = []
    if folder is not None and not a.sensitivity_only:
        targets += [folder / "supernet.pt", folder / "meta.json"]
    if a.sensitivity_only:
        targets.append((folder or out) / "sensitivity.json")
    taken = [str(t) for t in targets if t.exists()]
    if taken and not a.force:
        raise ConfigError(f"train_supernet.py would replace {', '.join(taken)}; nothing was changed. Pass another "
                          "--checkpoint-dir / --out, or --force to replace them.")


def _sensitivity(a: argparse.Namespace, space, train, out: Path) -> dict:
    """Hessian traces of the trained supernet on real training images → sensitivity.json next to supernet.pt."""
    from hao.data import loader
    from hao.proxy import compute_sensitivity
    from hao.train import load_supernet

    folder = Path(a.checkpoint_dir) if a.checkpoint_dir else out
    ckpt = folder / "supernet.pt"
    net = load_supernet(space, ckpt)
    batches = list(loader(train.subset(a.trace_images, seed=a.seed + 2), a.trace_batch))
    t0 = time.perf_counter()
    table = compute_sensitivity(space, net, batches, checkpoint=ckpt, samples=a.trace_samples, tol=a.trace_tol,
                                seed=a.seed, progress=True, meta={"threads": a.threads})
    path = table.save(folder)
    tr = table.traces
    worst = max(tr, key=lambda lt: lt.rel_error)
    print(f"traces: {len(tr)} layers, {tr.samples} samples, total {tr.total:.4g} ± {tr.total_se:.2g}, worst relative "
          f"error {worst.rel_error:.1%} ({worst.path}); {time.perf_counter() - t0:.0f} s → {path}")
    if folder != out:
        table.save(out)
    return table.meta


if __name__ == "__main__":
    import sys

    from hao.errors import HaoError
    try:
        main()
    except HaoError as exc:
        print(f"train_supernet.py: error: {exc}", file=sys.stderr)
        sys.exit(2)
