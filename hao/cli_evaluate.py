"""``hao evaluate`` and ``hao score``: the real accuracy of candidates listed in a JSON-lines file, and the
accuracy model's prediction for the same lines.

    hao evaluate --space mbconv-fmnist --candidates cands.jsonl --out acc.csv
    hao score    --space mbconv-fmnist --candidates cands.jsonl --out predicted.csv

``hao score`` writes ``line, predicted_accuracy, predicted_accuracy_sd`` (percent) and ``candidate``, from the
calibrated accuracy model of the checkpoint folder (``accuracy_model.json``; ``--checkpoint DIR`` for another).

Each line of ``--candidates`` is one ``Candidate.to_json()``. Each candidate is built from the space's committed
supernet (``--checkpoint`` for another), BatchNorm statistics and activation ranges are calibrated on
``--calib-images`` seeded training images, and the fake-quantized network is evaluated on the Fashion-MNIST
test split (10k images; ``--test-images N`` for a seeded subset) as the integer deployment computes it (exact
accumulators, float64 element-wise path; ``--fast`` for the ~2x faster float32 path, which can differ on low-bit
candidates: docs/deployment.md). ``--out`` gets one row per input line, in
order: ``line, accuracy, accuracy_se`` (percent), ``loss, n_images, candidate``. Progress is shown; an
interrupted run resumes from ``OUT.partial.jsonl`` when started again with the same settings.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path
from typing import Any

from hao.errors import ConfigError

__all__ = ["add_evaluate_commands", "cmd_evaluate", "cmd_score"]

COLUMNS = ("line", "accuracy", "accuracy_se", "loss", "n_images", "candidate")
SCORE_COLUMNS = ("line", "predicted_accuracy", "predicted_accuracy_sd", "candidate")


def _claim_csv(args: argparse.Namespace, what: str) -> Path:
    """``--out``, refused when it exists (measured data) unless ``--force``, or inside hao's own package."""
    from hao.folders import check_output_folder
    out = Path(args.out)
    check_output_folder(out.parent, what)
    if out.exists() and not args.force:
        raise ConfigError(f"{what}: --out {out} already exists (earlier results); pass another path, or --force to "
                          "replace it. Nothing was changed.")
    return out


def cmd_score(args: argparse.Namespace) -> int:
    from hao.io import atomic_write_text
    from hao.proxy.calibrated import CalibratedAccuracyModel
    from hao.space import get_space
    from hao.train.candidates import read_candidates

    out = _claim_csv(args, "hao score")
    space = get_space(args.space)
    cands = read_candidates(args.candidates, space)  # malformed lines fail with their line number
    model = CalibratedAccuracyModel.from_checkpoint(space, args.checkpoint)
    acc, sd = model.predict(cands)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(SCORE_COLUMNS)
    for i, (c, a, s) in enumerate(zip(cands, acc, sd)):
        w.writerow([i + 1, f"{a:.4f}", f"{s:.4f}", c.to_json()])
    atomic_write_text(out, buf.getvalue())
    print(f"hao score: {len(cands)} candidates of {space.name}, predicted by the calibrated model "
          f"(fitted on {model.n_fit_} measured candidates, residual SD {model.sigma_:.2f} points) -> {out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import torch

    from hao.data import fashion_mnist, loader
    from hao.io import atomic_write_text
    from hao.proxy import default_checkpoint_dir
    from hao.space import get_space
    from hao.train.candidates import evaluate_candidates, read_candidates, settings_key
    from hao.train.supernet import file_sha256, load_supernet

    out = _claim_csv(args, "hao evaluate")
    space = get_space(args.space)
    cands = read_candidates(args.candidates, space)  # malformed lines fail before any work
    ckpt = Path(args.checkpoint) if args.checkpoint else default_checkpoint_dir(space.checkpoint_name) / "supernet.pt"
    if ckpt.is_dir():
        ckpt = ckpt / "supernet.pt"
    supernet = load_supernet(space, ckpt)
    torch.set_num_threads(args.threads)
    train, test = fashion_mnist("train", args.data), fashion_mnist("test", args.data)
    if args.test_images < len(test):
        test = test.subset(args.test_images, seed=args.seed + 7)
    calib = list(loader(train.subset(args.calib_images, seed=args.seed + 1), 250))
    test_batches = list(loader(test, 500))
    key = settings_key(space=space.name, checkpoint=file_sha256(ckpt), calib_images=args.calib_images,
                       test_images=len(test), seed=args.seed, candidates=[c.to_json() for c in cands],
                       exact=not args.fast)
    partial = out.with_name(out.name + ".partial.jsonl")
    done: dict[int, dict[str, Any]] = {}
    if partial.is_file():
        for line in partial.read_text().splitlines():
            rec = json.loads(line)
            if rec.get("settings") == key:
                done[rec["row"]["index"]] = rec["row"]
        if done:
            print(f"hao evaluate: resuming, {len(done)} of {len(cands)} candidates already measured in {partial}")

    def on_row(i: int, row: dict[str, Any]) -> None:
        with open(partial, "a") as fh:
            fh.write(json.dumps({"settings": key, "row": row}) + "\n")

    rows = evaluate_candidates(space, supernet, cands, calib, test_batches, done=done, on_row=on_row,
                               progress=not args.no_progress, exact=not args.fast)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow([r["index"] + 1, f"{r['accuracy']:.4f}", f"{r['accuracy_se']:.4f}", f"{r['loss']:.6f}",
                    r["n_images"], r["candidate"]])
    atomic_write_text(out, buf.getvalue())
    partial.unlink(missing_ok=True)
    print(f"hao evaluate: {len(rows)} candidates of {space.name} on {len(test)} test images "
          f"(calibrated on {args.calib_images} training images) -> {out}")
    return 0


def add_evaluate_commands(subparsers: Any) -> None:
    p = subparsers.add_parser("evaluate", help="measure the real accuracy of candidates (JSON lines)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", required=True, help="registered space name (see `hao spaces`)")
    p.add_argument("--candidates", required=True, help="JSON-lines file, one Candidate.to_json() per line")
    p.add_argument("--out", required=True, help="CSV file to write (refused if it exists, unless --force)")
    p.add_argument("--checkpoint", help="supernet.pt or its folder (default: the space's committed checkpoint)")
    p.add_argument("--data", help="Fashion-MNIST IDX folder (default: Debian's / $HAO_FMNIST_DIR)")
    p.add_argument("--calib-images", type=int, default=2000, help="training images for BN and activation ranges")
    p.add_argument("--test-images", type=int, default=10000, help="seeded subset of the 10k test split if fewer")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--fast", action="store_true", help="float32 element-wise path (~2x faster; not bit-faithful to "
                   "the integer deployment on low-bit candidates, see docs/deployment.md)")
    p.set_defaults(func=cmd_evaluate)

    s = subparsers.add_parser("score", help="the accuracy model's predicted accuracy of candidates (JSON lines)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--space", required=True, help="registered space name (see `hao spaces`)")
    s.add_argument("--candidates", required=True, help="JSON-lines file, one Candidate.to_json() per line")
    s.add_argument("--out", required=True, help="CSV file to write (refused if it exists, unless --force)")
    s.add_argument("--checkpoint", help="folder with accuracy_model.json, sensitivity.json, arch_terms.json "
                                        "(default: the space's checkpoint folder)")
    s.add_argument("--force", action="store_true", help="replace an existing --out")
    s.set_defaults(func=cmd_score)
