"""The teacher: the space's largest architecture trained alone, in float32 — the first phase of teacher-based
block-wise distillation (ETA / DNA / DONNA), whose block outputs the supernet's choices later learn to reproduce.

:func:`train_teacher` trains ``space.largest()`` extracted from a fresh ``space.supernet(seed)`` (so its
parameter names map back onto the supernet's) with AdamW, linear warm-up then cosine decay, label smoothing and
light augmentation (random 28×28 crop of the 2-pixel zero-padded image, horizontal flip). A validation split
is held out of the *training* images (seeded), so the test split is only ever used for reporting. Resumable:
``work_dir/teacher_state.pt`` (weights, optimizer, step, RNG state, config) is rewritten every
``ckpt_every`` steps and at the end of each call; re-running with the same config continues where it stopped.
Randomness comes only from generators seeded by ``cfg.seed``.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from hao.data import TensorDataset, loader, resumable_batches
from hao.errors import ConfigError
from hao.train.config import JsonConfig, warmup_cosine
from hao.io import atomic_torch_save
from hao.space.base import SearchSpace

__all__ = ["TeacherConfig", "split_validation", "augment", "build_teacher", "train_teacher"]


@dataclass(frozen=True)
class TeacherConfig(JsonConfig):
    """Settings of :func:`train_teacher` (stored with the checkpoint; JSON round-trip)."""

    epochs: int = 6
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_steps: int = 200
    label_smoothing: float = 0.1
    augment: bool = True
    val_images: int = 5000
    seed: int = 0
    ckpt_every: int = 50

    def __post_init__(self) -> None:
        for name, lo in (("epochs", 1), ("batch_size", 1), ("warmup_steps", 0), ("val_images", 0),
                         ("ckpt_every", 1)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ConfigError(f"TeacherConfig.{name} must be an int >= {lo}, got {v!r}.")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ConfigError(f"TeacherConfig.lr must be > 0, got {self.lr!r}.")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"TeacherConfig.label_smoothing must be in [0, 1), got {self.label_smoothing!r}.")



def split_validation(data: TensorDataset, n_val: int, seed: int) -> tuple[TensorDataset, TensorDataset | None]:
    """(train, validation): ``n_val`` images drawn by a generator seeded with ``seed`` (disjoint)."""
    if n_val == 0:
        return data, None
    if not 0 < n_val < len(data):
        raise ConfigError(f"val_images must be in [0, {len(data)}) for {data.name!r}, got {n_val}.")
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed + 7919))
    va, tr = perm[:n_val], perm[n_val:]
    return (TensorDataset(data.x[tr], data.y[tr], f"{data.name}-train{len(tr)}"),
            TensorDataset(data.x[va], data.y[va], f"{data.name}-val{n_val}"))


def augment(x: torch.Tensor, gen: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Random crop of the zero-padded batch (per image) and random horizontal flip, from ``gen`` only."""
    n, _, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad), value=float(x.min()))  # the background value after normalisation
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    crop = torch.stack([xp[i, :, int(dy[i]):int(dy[i]) + h, int(dx[i]):int(dx[i]) + w] for i in range(n)])
    flip = torch.rand(n, generator=gen) < 0.5
    crop[flip] = crop[flip].flip(-1)
    return crop


def build_teacher(space: SearchSpace, seed: int = 0) -> torch.nn.Module:
    """``space.largest()`` extracted from ``space.supernet(seed)``, every quantizer off (float32)."""
    from hao.quant import quant_layers, set_bits

    net = space.supernet(seed)
    net.set_active(space.largest())
    model = net.extract()
    set_bits(model, {name: {"w_bits": 32, "a_bits": 32} for name, _ in quant_layers(model)})
    return model


def _lr(cfg: TeacherConfig, step: int, total: int) -> float:
    return warmup_cosine(cfg.lr, step, cfg.warmup_steps, total)


def train_teacher(space: SearchSpace, data: TensorDataset, cfg: TeacherConfig, *, work_dir: str | Path,
                  max_minutes: float | None = None, progress: bool = True,
                  model: torch.nn.Module | None = None) -> dict[str, Any]:
    """Train the teacher on ``data`` (the training split; ``cfg.val_images`` of it are held out), resuming from
    ``work_dir/teacher_state.pt``. Stops after ``cfg.epochs`` or ``max_minutes`` of wall time in this call.

    Returns a summary: steps done and planned, cumulative wall seconds, the validation accuracy after each
    finished epoch (``val_acc``), ``finished``. The trained weights are in ``model`` (returned under
    ``"model"``) and in the state file."""
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    state_path = work / "teacher_state.pt"
    train, val = split_validation(data, cfg.val_images, cfg.seed)
    model = model if model is not None else build_teacher(space, cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    steps_per_epoch = len(train) // cfg.batch_size
    total = cfg.epochs * steps_per_epoch
    step, wall_before, val_acc, log = 0, 0.0, [], []
    if state_path.exists():
        st = torch.load(state_path, map_location="cpu", weights_only=True)
        if st["config"] != asdict(cfg) or st["space"] != space.name:
            raise ConfigError(f"{state_path} was written for space {st['space']!r} with config {st['config']}, "
                              f"not {space.name!r} with {asdict(cfg)}; use another work_dir or the same settings "
                              "to resume.")
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        gen.set_state(st["gen"])
        step, wall_before, val_acc, log = st["step"], st["wall_s"], st["val_acc"], st["log"]
    t0 = time.perf_counter()

    def save() -> None:
        atomic_torch_save({"config": asdict(cfg), "space": space.name, "model": model.state_dict(),
                           "optimizer": opt.state_dict(), "gen": gen.get_state(), "step": step,
                           "wall_s": wall_before + time.perf_counter() - t0, "val_acc": val_acc, "log": log},
                          state_path)

    def validate() -> float:
        from hao.train.evaluate import evaluate

        return float(evaluate(model, loader(val, 500))) if val is not None else float("nan")

    bar = tqdm(total=total, initial=step, disable=not progress, desc="teacher", mininterval=10)
    batches, run_loss = resumable_batches(train, cfg.batch_size, seed=cfg.seed, start_step=step), []
    model.train()
    while step < total:
        if max_minutes is not None and time.perf_counter() - t0 > 60 * max_minutes:
            break
        x, y = next(batches)
        if cfg.augment:
            x = augment(x, gen)
        for g in opt.param_groups:
            g["lr"] = _lr(cfg, step, total)
        loss = F.cross_entropy(model(x), y, label_smoothing=cfg.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        run_loss.append(float(loss.detach()))
        bar.update(1)
        if step % 20 == 0:
            bar.set_postfix(loss=f"{sum(run_loss[-20:]) / 20:.3f}", epoch=f"{step / steps_per_epoch:.2f}")
        if step % steps_per_epoch == 0:
            val_acc.append(validate())
            model.train()
            log.append({"epoch": step // steps_per_epoch, "loss": sum(run_loss) / max(1, len(run_loss)),
                        "val_acc": val_acc[-1], "wall_s": wall_before + time.perf_counter() - t0})
            run_loss = []
            print(f"teacher epoch {step // steps_per_epoch}/{cfg.epochs}: validation accuracy "
                  f"{100 * val_acc[-1]:.2f}% ({len(val) if val is not None else 0} held-out training images)",
                  flush=True)
            save()
        elif step % cfg.ckpt_every == 0:
            save()
    bar.close()
    save()
    model.eval()
    return {"steps_done": step, "steps_target": total, "epochs": step / steps_per_epoch,
            "wall_s": wall_before + time.perf_counter() - t0, "val_acc": val_acc, "finished": step >= total,
            "model": model}
