"""Block-wise distillation of the supernet from the trained teacher (phase 2 of teacher-based supernet training).

    python experiments/distill_supernet.py --teacher checkpoints/mbconv-fmnist/teacher --out runs/distill \
        [--steps-per-stage 600] [--threads 2] [--max-minutes 60]

Reads ``TEACHER/teacher.pt`` (written by ``experiments/train_teacher.py``), copies it into a fresh supernet of the
same space, and trains every stage's configurations to reproduce the teacher's stage output from the teacher's
stage input (``hao.train.distill``), on the training images minus the teacher's validation split (same seed, so
neither phase ever sees those images). Resumable: re-run the same command. When every stage is done it writes
``--out/supernet.pt`` (fp16 state_dict, loadable with ``hao.train.load_supernet``) and ``--out/distill.json``
(settings, wall time, load, per-stage losses, and the validation accuracy of the largest and smallest
sub-networks at W8A8 after BatchNorm/activation recalibration on ``--calib-images`` training images).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import asdict
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", required=True, help="folder with teacher.pt and teacher.json")
    p.add_argument("--out", required=True, help="work folder (resumable)")
    p.add_argument("--data", default=None, help="Fashion-MNIST IDX folder (default: Debian's / $HAO_FMNIST_DIR)")
    p.add_argument("--steps-per-stage", type=int, default=600)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--n-random", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--calib-images", type=int, default=2000, help="training images for BN/activation recalibration")
    p.add_argument("--eval-images", type=int, default=None, help="validation images to evaluate (default: all)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-minutes", type=float, default=None, help="stop this call after so many minutes")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)

    import hao
    from hao.data import fashion_mnist, loader
    from hao.errors import ConfigError
    from hao.train import evaluate_full, prepare_subnet, save_supernet
    from hao.train.distill import DistillConfig, distill_stages
    from hao.train.teacher import build_teacher, split_validation

    torch.set_num_threads(a.threads)
    tdir = Path(a.teacher)
    if not (tdir / "teacher.pt").is_file() or not (tdir / "teacher.json").is_file():
        raise ConfigError(f"{tdir} has no teacher.pt/teacher.json; train the teacher first with "
                          f"`python experiments/train_teacher.py --out {tdir}` (it writes them when it finishes).")
    tmeta = json.loads((tdir / "teacher.json").read_text())
    space = hao.get_space(tmeta["space"])
    teacher = build_teacher(space, tmeta["config"]["seed"])
    teacher.load_state_dict({k: v.float() if v.is_floating_point() else v
                             for k, v in torch.load(tdir / "teacher.pt", weights_only=True).items()})
    teacher.eval()
    train, val = split_validation(fashion_mnist("train", a.data), tmeta["config"]["val_images"],
                                  tmeta["config"]["seed"])
    cfg = DistillConfig(steps_per_stage=a.steps_per_stage, batch_size=a.batch_size, lr=a.lr, n_random=a.n_random,
                        seed=a.seed)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    net = space.supernet(0)
    load0 = os.getloadavg()
    summary = distill_stages(space, net, teacher, train, cfg, work_dir=out, max_minutes=a.max_minutes,
                             progress=not a.no_progress)
    print(f"distillation: stage {summary['stage']}/{summary['n_stages']}, {summary['wall_s'] / 60:.1f} min wall in "
          f"all ({a.threads} threads); per-stage loss {summary['per_stage_loss']}")
    if not summary["finished"]:
        print("not finished (time limit); re-run the same command to resume")
        return summary
    t0 = time.perf_counter()
    calib = list(loader(train.subset(a.calib_images, seed=a.seed + 1), 250))
    if val is not None and a.eval_images is not None and a.eval_images < len(val):
        val = val.subset(a.eval_images, seed=a.seed + 2)
    val_batches = list(loader(val, 500)) if val is not None else []
    accs = {}
    for label, cand in (("largest_w8a8", space.uniform(8, 8)), ("smallest_w8a8", space.make(
            space.smallest().as_dict() | {d.name: 8 for d in space.decisions() if d.kind in ("w_bits", "a_bits")}))):
        space.activate(net, cand)
        sub = prepare_subnet(net.extract(), calib).eval()
        r = evaluate_full(sub, val_batches)
        accs[label] = {"accuracy": r.accuracy, "accuracy_se": r.accuracy_se, "n": r.n, "candidate": cand.to_json()}
        print(f"{label}: validation accuracy {100 * r.accuracy:.2f} ± {100 * r.accuracy_se:.2f} % ({r.n} images held "
              "out of the training split)")
    space.activate(net, space.largest())
    sha = save_supernet(net, out / "supernet.pt")
    meta = {"space": space.name, "what": "supernet after block-wise distillation from the teacher",
            "teacher": str(tdir), "teacher_test_accuracy": tmeta.get("test", {}).get("accuracy"),
            "config": asdict(cfg), "wall_s": summary["wall_s"], "threads": a.threads,
            "loadavg_at_start_of_last_call": load0, "cpu": platform.processor() or platform.machine(),
            "torch": torch.__version__, "per_stage_loss": summary["per_stage_loss"], "validation": accs,
            "eval_wall_s": time.perf_counter() - t0, "supernet_sha256": sha,
            "command": "python experiments/distill_supernet.py " + " ".join(
                argv if argv is not None else __import__("sys").argv[1:])}
    (out / "distill.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


if __name__ == "__main__":
    main()
