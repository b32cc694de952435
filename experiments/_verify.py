"""Helpers shared by the experiments that verify picks (not a public API): a candidate fine-tuned and evaluated as
it deploys, and candidates timed together as whole integer TVM networks on the table's own hardware."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from hao.io import write_json


def finetune_and_evaluate(space: Any, supernet: Any, cand: Any, train: Any, calib: list, test_batches: list,
                          cfg: Any, work_dir: Path) -> dict[str, Any]:
    """Real test accuracy (percent, as deployed: ``evaluate_full(exact=True)``) before and after fine-tuning
    ``cand`` from ``supernet`` with ``cfg`` (:class:`hao.train.finetuning.FinetuneConfig`); resumable in
    ``work_dir``."""
    from hao.train.evaluate import evaluate_full, prepare_subnet
    from hao.train.finetuning import finetune

    before = evaluate_full(prepare_subnet(space.build(cand, supernet), calib).eval(), test_batches, exact=True)
    ft = finetune(space, supernet, cand, train, cfg, calib, work_dir=work_dir, progress=True)
    after = evaluate_full(ft["model"].eval(), test_batches, exact=True)
    return {"accuracy_before_finetune": 100 * before.accuracy, "accuracy": 100 * after.accuracy,
            "accuracy_se": 100 * after.accuracy_se, "finetune_wall_s": ft["wall_s"]}


def time_candidates(space: Any, hardware: str, cands: list[str], rounds: int, threads: int, seed: int,
                    path: Path) -> dict[str, Any]:
    """Whole-network latency of every candidate (JSON strings) as it deploys: the integer network at its
    bit-widths (:func:`hao.latency.validate.build_candidate`, ``mixed``), all timed together in ``rounds``
    interleaved passes with the host-state extra passes (``time_interleaved``, up to ``4 · rounds``). Only when
    this machine is the table's hardware (its LLVM CPU name is the table's ``mcpu``); otherwise the result says
    why nothing was timed. Cached in ``path`` (reused when it holds every candidate)."""
    if path.is_file():
        cached = json.loads(path.read_text())
        if set(cands) <= set(cached.get("by_candidate", {})):
            return cached
    if not rounds or not cands:
        return {"timed": False, "why": "--timing-rounds 0" if not rounds else "no candidates"}
    from hao.latency.table import hardware_dir
    from hao.latency.target import default_target

    table_mcpu = json.loads((hardware_dir(hardware) / "meta.json").read_text()).get("mcpu")
    here = default_target()["mcpu"]
    if table_mcpu != here:
        return {"timed": False, "why": f"table {hardware} was measured on {table_mcpu}, this machine is {here}: a "
                                       "table is timed on its own hardware only"}
    from hao.latency.runlog import load_average
    from hao.latency.tuner import Tuner
    from hao.latency.validate import build_candidate, time_interleaved
    from hao.space import Candidate

    tuner = Tuner(hardware_dir(hardware) / "tuning_db", threads, 8, seed)
    try:
        built = [build_candidate(space, Candidate.from_json(c), "mixed", seed, tuner) for c in cands]
        load0 = load_average()
        times = time_interleaved(built, passes=rounds, max_passes=4 * rounds)
    finally:
        tuner.close()
    res = {"timed": True, "hardware": hardware, "mcpu": here, "precision": "mixed (integer network)",
           "passes": rounds, "max_passes": 4 * rounds, "load_average_start": load0,
           "load_average_end": load_average(), "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "by_candidate": {c: {k: t[k] for k in ("measured_ms", "std_ms", "timed_quiet", "host_state_ratio",
                                                   "fast_state") if k in t} for c, t in zip(cands, times)}}
    write_json(path, res)
    return res


def this_cpu_table() -> str:
    """``cpu-<mcpu>-2t``: the table naming of this repository, for the CPU LLVM reports here."""
    from hao.latency.target import default_target
    return f"cpu-{default_target()['mcpu']}-2t"


def fmnist_eval_data(test_images: int, calib_images: int, seed: int) -> tuple[Any, list, list]:
    """Fashion-MNIST as the verification experiments use it: the training split, ``calib_images`` seeded
    training images in batches of 250 (BatchNorm and activation ranges) and ``test_images`` seeded test images
    (all 10k by default) in batches of 500."""
    from hao.data import fashion_mnist, loader

    train, test = fashion_mnist("train"), fashion_mnist("test")
    if test_images < len(test):
        test = test.subset(test_images, seed=seed + 7)
    calib = list(loader(train.subset(calib_images, seed=seed + 1), 250))
    return train, calib, list(loader(test, 500))
