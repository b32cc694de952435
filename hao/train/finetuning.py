"""Quantization-aware fine-tuning of one candidate: the same recipe for every network a comparison verifies.

:func:`finetune` extracts the candidate's sub-network from the supernet, calibrates its BatchNorm statistics and
activation ranges (:func:`hao.train.prepare_subnet`), then trains it with its fake quantizers in the forward pass
(straight-through gradients; activation ranges stay the calibrated ones) on the training images: AdamW, linear
warm-up then cosine decay, label smoothing, light augmentation, and — when a teacher is given — a distillation
term (KL to the teacher's soft predictions at temperature ``cfg.temperature``, weight ``cfg.kd_weight``). At the
end BatchNorm statistics are re-estimated behind the trained quantizers. A comparison fine-tunes every network
with one :class:`FinetuneConfig`, so that no method gets more training than another.

Resumable per network: ``work_dir/finetune_state.pt`` (weights, optimizer, step, generator state, config,
candidate) is written every ``cfg.ckpt_every`` steps; a re-run with the same candidate and config continues.
Randomness comes only from generators seeded by ``cfg.seed``.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from hao.data import TensorDataset, resumable_batches
from hao.errors import ConfigError
from hao.train.config import JsonConfig, warmup_cosine
from hao.io import atomic_torch_save
from hao.space.base import Candidate, SearchSpace

__all__ = ["FinetuneConfig", "finetune"]


@dataclass(frozen=True)
class FinetuneConfig(JsonConfig):
    """Settings of :func:`finetune` (stored with the checkpoint; JSON round-trip)."""

    steps: int = 900                 # ~2 epochs of the 55k training images at batch 128
    batch_size: int = 128
    lr: float = 5e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 30
    label_smoothing: float = 0.1
    kd_weight: float = 0.5           # used only with a teacher
    temperature: float = 2.0
    augment: bool = True
    seed: int = 0
    ckpt_every: int = 50

    def __post_init__(self) -> None:
        for name, lo in (("steps", 1), ("batch_size", 1), ("warmup_steps", 0), ("ckpt_every", 1), ("seed", 0)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ConfigError(f"FinetuneConfig.{name} must be an int >= {lo}, got {v!r}.")
        for name in ("lr", "temperature"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"FinetuneConfig.{name} must be > 0, got {getattr(self, name)!r}.")
        if not 0 <= self.kd_weight <= 1 or not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"FinetuneConfig.kd_weight must be in [0, 1] and label_smoothing in [0, 1), got "
                              f"{self.kd_weight!r} and {self.label_smoothing!r}.")



def _lr(cfg: FinetuneConfig, step: int) -> float:
    return warmup_cosine(cfg.lr, step, cfg.warmup_steps, cfg.steps)


def finetune(space: SearchSpace, supernet: Any, candidate: Candidate, data: TensorDataset, cfg: FinetuneConfig,
             calib: list, *, teacher: torch.nn.Module | None = None, work_dir: str | Path | None = None,
             max_minutes: float | None = None, progress: bool = True) -> dict[str, Any]:
    """Fine-tune ``candidate`` (see the module docstring) on ``data``; ``calib`` are training batches for the
    BatchNorm statistics and activation ranges. Returns ``{"model", "steps_done", "finished", "wall_s",
    "loss_first", "loss_last"}``; the model is in eval mode, BatchNorm re-estimated when finished."""
    from tqdm import tqdm

    from hao.train.evaluate import prepare_subnet, recalibrate_bn
    from hao.train.teacher import augment

    cand = space.canonical(space.validate(candidate))
    model = prepare_subnet(space.build(cand, supernet), calib)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    step, wall_before, losses = 0, 0.0, []
    state_path = Path(work_dir) / "finetune_state.pt" if work_dir is not None else None
    if state_path is not None and state_path.exists():
        st = torch.load(state_path, map_location="cpu", weights_only=True)
        if st["config"] != asdict(cfg) or st["candidate"] != cand.to_json():
            raise ConfigError(f"{state_path} belongs to another candidate or config; use another work_dir or the "
                              "same candidate and settings to resume.")
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        gen.set_state(st["gen"])
        step, wall_before, losses = st["step"], st["wall_s"], st["losses"]
    t0 = time.perf_counter()

    def save() -> None:
        if state_path is not None:
            state_path.parent.mkdir(parents=True, exist_ok=True)
            atomic_torch_save({"config": asdict(cfg), "candidate": cand.to_json(), "model": model.state_dict(),
                               "optimizer": opt.state_dict(), "gen": gen.get_state(), "step": step,
                               "wall_s": wall_before + time.perf_counter() - t0, "losses": losses}, state_path)

    if teacher is not None:
        teacher.eval()
    batches = resumable_batches(data, cfg.batch_size, seed=cfg.seed, start_step=step)
    bar = tqdm(total=cfg.steps, initial=step, disable=not progress, desc="fine-tune", mininterval=10)
    model.train()
    while step < cfg.steps:
        if max_minutes is not None and time.perf_counter() - t0 > 60 * max_minutes:
            break
        x, y = next(batches)
        if cfg.augment:
            x = augment(x, gen)
        for g in opt.param_groups:
            g["lr"] = _lr(cfg, step)
        out = model(x)
        loss = F.cross_entropy(out, y, label_smoothing=cfg.label_smoothing)
        if teacher is not None and cfg.kd_weight > 0:
            with torch.no_grad():
                soft = F.softmax(teacher(x) / cfg.temperature, 1)
            kd = F.kl_div(F.log_softmax(out / cfg.temperature, 1), soft, reduction="batchmean") * cfg.temperature ** 2
            loss = (1 - cfg.kd_weight) * loss + cfg.kd_weight * kd
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        step += 1
        losses.append(float(loss.detach()))
        bar.update(1)
        if step % cfg.ckpt_every == 0:
            save()
    bar.close()
    save()
    finished = step >= cfg.steps
    if finished:
        recalibrate_bn(model, calib)
    model.eval()
    k = min(20, len(losses))
    return {"model": model, "steps_done": step, "finished": finished,
            "wall_s": wall_before + time.perf_counter() - t0,
            "loss_first": float(sum(losses[:k]) / k) if k else None,
            "loss_last": float(sum(losses[-k:]) / k) if k else None}
