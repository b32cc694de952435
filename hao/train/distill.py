"""Block-wise distillation of a supernet from its teacher (phase 2 of ETA / DNA / DONNA training).

The teacher (``hao.train.teacher``: the space's largest architecture trained alone) has the supernet's own
parameter names, so it is first copied into the supernet (:func:`init_from_teacher`: the largest sub-network *is*
the teacher). Then every stage is trained on its own: the teacher's features at the stage's input go into the
supernet's stage with a sampled configuration of that stage (depth, kernel, expand ratio, and random bit-widths
when ``cfg.quantize``), and the stage learns to reproduce the teacher's features at the stage's output (mean
squared error divided by the teacher output's variance). Each step runs the sandwich of the stage: its largest
configuration, its smallest, and ``cfg.n_random`` random ones. Stages are independent (each reads only the
teacher), so a stage costs a fraction of an end-to-end step, and stages could run in parallel processes.

Resumable: ``work_dir/distill_state.pt`` (supernet weights, optimizer, stage, step, RNG states, log) is written
every ``cfg.ckpt_every`` steps and at the end of each call; re-running with the same config continues. Randomness
comes only from generators seeded by ``cfg.seed``.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from hao.data import TensorDataset, resumable_batches
from hao.errors import ConfigError
from hao.train.config import JsonConfig, warmup_cosine
from hao.io import atomic_torch_save
from hao.quant import optional_state_keys
from hao.space.base import BIT_KINDS, Candidate, SearchSpace
from hao.train.supernet import _with_random_bits

__all__ = ["DistillConfig", "init_from_teacher", "stage_sandwich", "stage_forward", "distill_stages"]


@dataclass(frozen=True)
class DistillConfig(JsonConfig):
    """Settings of :func:`distill_stages` (stored with the checkpoint; JSON round-trip)."""

    steps_per_stage: int = 600
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-5
    warmup_steps: int = 20
    n_random: int = 2
    quantize: bool = True
    augment: bool = True
    seed: int = 0
    ckpt_every: int = 25

    def __post_init__(self) -> None:
        for name, lo in (("steps_per_stage", 1), ("batch_size", 1), ("warmup_steps", 0), ("n_random", 0),
                         ("ckpt_every", 1), ("seed", 0)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ConfigError(f"DistillConfig.{name} must be an int >= {lo}, got {v!r}.")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ConfigError(f"DistillConfig.lr must be > 0, got {self.lr!r}.")



def init_from_teacher(supernet: torch.nn.Module, teacher_state: dict[str, torch.Tensor]) -> None:
    """Copy the teacher's weights into the supernet (same names and shapes: the teacher is the largest
    sub-network extracted from a supernet of the same space). Refuses a teacher of another space."""
    ref = supernet.state_dict()
    missing = sorted(set(ref) - set(teacher_state) - optional_state_keys(supernet))
    extra = sorted(set(teacher_state) - set(ref))
    bad = [k for k in ref if k in teacher_state and tuple(ref[k].shape) != tuple(teacher_state[k].shape)]
    if missing or extra or bad:
        raise ConfigError(f"The teacher does not fit this supernet: missing {missing[:3]}, unexpected {extra[:3]}, "
                          f"shape mismatches {bad[:3]}. Train the teacher of this space with "
                          "experiments/train_teacher.py --space NAME.")
    supernet.load_state_dict({k: v.to(ref[k].dtype) for k, v in teacher_state.items()})


def stage_sandwich(space: SearchSpace, rng: np.random.Generator, n_random: int, quantize: bool) -> list[Candidate]:
    """The configurations one step trains: the largest architecture, the smallest, ``n_random`` random ones
    (bits random from ``rng`` when ``quantize``, else the largest's). Only the trained stage's part matters."""
    big, small = space.largest(), space.smallest()
    out = [big, small] + [space.sample(rng) for _ in range(n_random)]
    if quantize:
        return [_with_random_bits(space, c, rng) for c in out]
    bits = {d.name: big[d.name] for d in space.decisions() if d.kind in BIT_KINDS}
    return [space.make(c.as_dict() | bits) for c in out]


def stage_forward(net: torch.nn.Module, stage: int, x: torch.Tensor, depth: int | None = None) -> torch.Tensor:
    """Run stage ``stage`` of an MBConv-style network (``net.stages``) on ``x``; ``depth`` blocks (default: the
    supernet's active depth, or every block of an extracted network)."""
    blocks = net.stages[stage]
    n = depth if depth is not None else (net.depths[stage] if hasattr(net, "depths") else len(blocks))
    for block in blocks[:n]:
        x = block(x)
    return x


def _teacher_features(teacher: torch.nn.Module, x: torch.Tensor, stage: int) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        h = teacher.stem(x)
        if getattr(teacher, "first", None) is not None:  # a fixed first block (MobileNetV3 option) feeds stage 0
            h = teacher.first(h)
        for s in range(stage):
            h = stage_forward(teacher, s, h)
        return h, stage_forward(teacher, stage, h)


def _lr(cfg: DistillConfig, step: int) -> float:
    return warmup_cosine(cfg.lr, step, cfg.warmup_steps, cfg.steps_per_stage)


def distill_stages(space: SearchSpace, supernet: torch.nn.Module, teacher: torch.nn.Module, data: TensorDataset,
                   cfg: DistillConfig, *, work_dir: str | Path, max_minutes: float | None = None,
                   progress: bool = True) -> dict[str, Any]:
    """Distil every stage of ``supernet`` from ``teacher`` on ``data`` (training images), resuming from
    ``work_dir/distill_state.pt``. A fresh run first copies the teacher into the supernet.

    Returns a summary: ``stage`` and ``step`` reached, ``finished``, cumulative ``wall_s``, and per stage the
    mean normalised loss of the largest / smallest configuration over its last 50 steps."""
    from hao.train.teacher import augment

    n_stages = len(supernet.stages)
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    state_path = work / "distill_state.pt"
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    stage, step, wall_before, log = 0, 0, 0.0, []
    opt_state = None
    if state_path.exists():
        st = torch.load(state_path, map_location="cpu", weights_only=True)
        if st["config"] != asdict(cfg) or st["space"] != space.name:
            raise ConfigError(f"{state_path} was written for space {st['space']!r} with config {st['config']}, "
                              f"not {space.name!r} with {asdict(cfg)}; use another work_dir or the same settings "
                              "to resume.")
        supernet.load_state_dict(st["model"])
        stage, step, wall_before, log, opt_state = st["stage"], st["step"], st["wall_s"], st["log"], st["optimizer"]
        rng.bit_generator.state = json.loads(st["rng"])
        gen.set_state(st["gen"])
    else:
        init_from_teacher(supernet, teacher.state_dict())
    teacher.eval()
    t0 = time.perf_counter()
    opt: torch.optim.Optimizer | None = None

    def make_opt(s: int) -> torch.optim.Optimizer:
        return torch.optim.AdamW(supernet.stages[s].parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def save() -> None:
        atomic_torch_save({"config": asdict(cfg), "space": space.name, "model": supernet.state_dict(),
                           "optimizer": opt.state_dict() if opt is not None else opt_state, "stage": stage,
                           "step": step, "wall_s": wall_before + time.perf_counter() - t0, "log": log,
                           "rng": json.dumps(rng.bit_generator.state), "gen": gen.get_state()}, state_path)

    total = n_stages * cfg.steps_per_stage
    bar = tqdm(total=total, initial=stage * cfg.steps_per_stage + step, disable=not progress, desc="distil",
               mininterval=10)
    stopped = False
    while stage < n_stages and not stopped:
        opt = make_opt(stage)
        if opt_state is not None:
            opt.load_state_dict(opt_state)
            opt_state = None
        batches = resumable_batches(data, cfg.batch_size, seed=cfg.seed + 101 * stage, start_step=step)
        supernet.train()
        while step < cfg.steps_per_stage:
            if max_minutes is not None and time.perf_counter() - t0 > 60 * max_minutes:
                stopped = True
                break
            x, _ = next(batches)
            if cfg.augment:
                x = augment(x, gen)
            x_in, y = _teacher_features(teacher, x, stage)
            var = y.var().clamp_min(1e-8)
            for g in opt.param_groups:
                g["lr"] = _lr(cfg, step)
            opt.zero_grad(set_to_none=True)
            losses = []
            for cand in stage_sandwich(space, rng, cfg.n_random, cfg.quantize):
                space.activate(supernet, cand)
                loss = (stage_forward(supernet, stage, x_in) - y).pow(2).mean() / var
                loss.backward()
                losses.append(float(loss.detach()))
            torch.nn.utils.clip_grad_norm_(supernet.stages[stage].parameters(), 5.0)
            opt.step()
            step += 1
            log.append([stage, step, losses[0], losses[1], float(np.mean(losses[2:])) if len(losses) > 2 else None])
            bar.update(1)
            if step % 20 == 0:
                bar.set_postfix(stage=stage, largest=f"{losses[0]:.3f}", smallest=f"{losses[1]:.3f}")
            if step % cfg.ckpt_every == 0:
                save()
        if not stopped:
            stage, step, opt = stage + 1, 0, None
            save()
    bar.close()
    save()
    space.activate(supernet, space.largest())
    supernet.eval()
    per_stage = {}
    for s in range(n_stages):
        rows = [r for r in log if r[0] == s][-50:]
        if rows:
            per_stage[s] = {"largest": float(np.mean([r[2] for r in rows])),
                            "smallest": float(np.mean([r[3] for r in rows])), "steps": rows[-1][1]}
    return {"stage": stage, "step": step, "finished": stage >= n_stages, "n_stages": n_stages,
            "wall_s": wall_before + time.perf_counter() - t0, "per_stage_loss": per_stage}
