"""Train the teacher of a space: its largest architecture alone, in float32, on Fashion-MNIST.

    python experiments/train_teacher.py --out runs/teacher [--epochs 6] [--threads 2] [--max-minutes 60]

The first phase of teacher-based block-wise distillation (the supernet's block choices are later trained to
reproduce this network's block outputs). Resumable: re-running with the same --out and settings continues from
``--out/teacher_state.pt`` (progress bar, one line per finished epoch with the validation accuracy on images held
out of the *training* split). When the schedule is finished it writes ``--out/teacher.pt`` (fp16 state_dict of
the extracted network, parameter names as in ``space.build(space.largest())``) and ``--out/teacher.json``
(settings, wall time, load average, validation accuracy per epoch, test accuracy on the 10k test split).
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
    p.add_argument("--out", required=True, help="work folder (resumable)")
    p.add_argument("--space", default="mbconv-fmnist")
    p.add_argument("--data", default=None, help="Fashion-MNIST IDX folder (default: Debian's / $HAO_FMNIST_DIR)")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--val-images", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-minutes", type=float, default=None, help="stop this call after so many minutes")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)

    import hao
    from hao.data import fashion_mnist, loader
    from hao.train.evaluate import evaluate_full
    from hao.train.teacher import TeacherConfig, train_teacher

    torch.set_num_threads(a.threads)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    space = hao.get_space(a.space)
    cfg = TeacherConfig(epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, val_images=a.val_images, seed=a.seed)
    load0 = os.getloadavg()
    summary = train_teacher(space, fashion_mnist("train", a.data), cfg, work_dir=out, max_minutes=a.max_minutes,
                            progress=not a.no_progress)
    model = summary.pop("model")
    print(f"teacher: {summary['steps_done']}/{summary['steps_target']} steps ({summary['epochs']:.2f} epochs), "
          f"{summary['wall_s'] / 60:.1f} min wall in all ({a.threads} threads)")
    if not summary["finished"]:
        print("not finished (time limit); re-run the same command to resume")
        return summary
    t0 = time.perf_counter()
    test = evaluate_full(model, list(loader(fashion_mnist("test", a.data), 500)))
    sd = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    torch.save(sd, out / "teacher.pt")
    meta = {"space": space.name, "what": "largest architecture, float32, trained alone (teacher)",
            "config": asdict(cfg), "params": sum(q.numel() for q in model.parameters()),
            "train_wall_s": summary["wall_s"], "threads": a.threads, "loadavg_at_start_of_last_call": load0,
            "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
            "val_accuracy_per_epoch": summary["val_acc"],
            "test": {"accuracy": test.accuracy, "accuracy_se": test.accuracy_se, "loss": test.loss, "n": test.n},
            "eval_wall_s": time.perf_counter() - t0,
            "command": "python experiments/train_teacher.py " + " ".join(argv if argv is not None else
                                                                         __import__("sys").argv[1:])}
    (out / "teacher.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"teacher test accuracy {100 * test.accuracy:.2f} ± {100 * test.accuracy_se:.2f} % (10k test split)")
    return meta


if __name__ == "__main__":
    main()
