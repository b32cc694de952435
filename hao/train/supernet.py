"""Weight-sharing supernet training: sandwich rule with in-place distillation (BigNAS / OFA style).

Each step trains, on one minibatch, the largest sub-network (max kernel/ratio/depth, max bits) on the labels,
then the smallest architecture and ``n_random`` random candidates (random bits, so the shared weights learn to
survive fake quantization) on the largest's soft predictions (in-place distillation, KL at temperature 1); the
gradients of all of them are summed before one optimizer step. Randomness comes only from seeded generators.
Training is resumable: a checkpoint (weights, optimizer, step, RNG state) is written every ``ckpt_every`` steps.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from hao.data import TensorDataset, resumable_batches
from hao.errors import ConfigError
from hao.train.config import warmup_cosine
from hao.io import atomic_torch_save
from hao.quant import optional_state_keys
from hao.space.base import QUANT_KINDS, Candidate, SearchSpace

__all__ = ["SandwichConfig", "train_supernet", "smallest_candidate", "save_supernet", "load_supernet",
           "file_sha256"]


@dataclass(frozen=True)
class SandwichConfig:
    """Settings of :func:`train_supernet` (all stored in the checkpoint's metadata)."""

    steps: int = 400
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-4
    n_random: int = 1
    warmup_steps: int = 20
    label_smoothing: float = 0.0
    seed: int = 0
    ckpt_every: int = 25
    #: random bit-widths for the largest architecture too (the end-to-end phase after block-wise distillation:
    #: every sampled sub-network, the largest included, learns to survive fake quantization)
    random_bits_largest: bool = False

    def __post_init__(self) -> None:
        for name, lo in (("steps", 1), ("batch_size", 1), ("n_random", 0), ("warmup_steps", 0), ("ckpt_every", 1)):
            v = getattr(self, name)
            if not isinstance(v, int) or v < lo:
                raise ConfigError(f"SandwichConfig.{name} must be an int >= {lo}, got {v!r}.")
        if not self.lr > 0:
            raise ConfigError(f"SandwichConfig.lr must be > 0, got {self.lr!r}.")


def smallest_candidate(space: SearchSpace, rng: np.random.Generator | None = None) -> Candidate:
    """The smallest architecture (``space.smallest()``); its bits are random from ``rng`` (one draw per bit
    decision, in decision order), or the smallest too when ``rng`` is None (then it is ``space.smallest()``)."""
    small = space.smallest()
    return small if rng is None else _with_random_bits(space, small, rng)


def _with_random_bits(space: SearchSpace, cand: Candidate, rng: np.random.Generator) -> Candidate:
    d = cand.as_dict()
    for dec in space.decisions():
        if dec.kind in QUANT_KINDS:         # bits, and quantization groups where a space has them
            d[dec.name] = int(dec.options[rng.integers(len(dec.options))])
    return space.make(d)


def _lr(cfg: SandwichConfig, step: int) -> float:
    return warmup_cosine(cfg.lr, step, cfg.warmup_steps, cfg.steps)


def file_sha256(path: str | Path) -> str:
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_supernet(net: torch.nn.Module, path: str | Path, *, half: bool = True) -> str:
    """Save the supernet's state_dict (float tensors as fp16 if ``half``); returns the file's sha256."""
    sd = {k: (v.half() if half and v.is_floating_point() else v) for k, v in net.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(sd, path)
    return file_sha256(path)


def load_supernet(space: SearchSpace, path: str | Path) -> torch.nn.Module:
    """A fresh ``space.supernet()`` with the weights of ``path`` (fp16 or fp32 state_dict), in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Supernet checkpoint {str(path)!r} does not exist; train one with "
                          "`python experiments/train_supernet.py --out DIR`.")
    sd = torch.load(path, map_location="cpu", weights_only=True)
    net = space.supernet(0)
    ref = net.state_dict()
    missing, extra = set(ref) - set(sd) - optional_state_keys(net), set(sd) - set(ref)
    if missing or extra:
        raise ConfigError(f"Checkpoint {str(path)!r} does not fit space {space.name!r}: missing "
                          f"{sorted(missing)[:4]}, unexpected {sorted(extra)[:4]}.")
    net.load_state_dict({k: v.to(ref[k].dtype) for k, v in sd.items()})
    net.eval()
    return net


def train_supernet(space: SearchSpace, net: torch.nn.Module, data: TensorDataset, cfg: SandwichConfig, *,
                   work_dir: str | Path, max_minutes: float | None = None, progress: bool = True) -> dict:
    """Train ``net`` (``space.supernet()``) with the sandwich rule; resume from ``work_dir/train_state.pt``.

    Stops after ``cfg.steps`` steps or ``max_minutes`` of wall time in this call (whichever first; a later call
    resumes). Returns a summary dict: steps done, wall seconds (cumulative over resumes), last losses.
    """
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    state_path = work / "train_state.pt"
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, wall_before = 0, 0.0
    rng = np.random.default_rng(cfg.seed)
    log: list[dict] = []
    if state_path.exists():
        st = torch.load(state_path, map_location="cpu", weights_only=True)  # tensors, numbers, strings only
        if st["config"] != asdict(cfg):
            raise ConfigError(f"{state_path} was written with config {st['config']}, not {asdict(cfg)}; use "
                              "another work_dir or the same settings to resume.")
        net.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        step, wall_before, log = st["step"], st["wall_s"], st["log"]
        rng.bit_generator.state = st["rng"]
    steps_per_epoch = len(data) // cfg.batch_size
    largest = space.largest()
    t0 = time.perf_counter()

    def save() -> None:
        atomic_torch_save({"config": asdict(cfg), "model": net.state_dict(), "optimizer": opt.state_dict(),
                           "step": step, "wall_s": wall_before + time.perf_counter() - t0, "log": log,
                           "rng": rng.bit_generator.state}, state_path)

    net.train()
    bar = tqdm(total=cfg.steps, initial=step, disable=not progress, desc="supernet", mininterval=10)
    batches = resumable_batches(data, cfg.batch_size, seed=cfg.seed, start_step=step)
    while step < cfg.steps:
        if max_minutes is not None and time.perf_counter() - t0 > 60 * max_minutes:
            break
        x, y = next(batches)
        for g in opt.param_groups:
            g["lr"] = _lr(cfg, step)
        opt.zero_grad(set_to_none=True)
        big = _with_random_bits(space, largest, rng) if cfg.random_bits_largest else largest
        space.activate(net, big)
        out = net(x)
        loss_big = F.cross_entropy(out, y, label_smoothing=cfg.label_smoothing)
        loss_big.backward()
        soft = F.softmax(out.detach(), 1)
        kd = []
        for cand in [smallest_candidate(space, rng)] + [space.sample(rng) for _ in range(cfg.n_random)]:
            space.activate(net, cand)
            o = net(x)
            loss = F.kl_div(F.log_softmax(o, 1), soft, reduction="batchmean")
            loss.backward()
            kd.append(float(loss.detach()))
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        step += 1
        acc = float((out.argmax(1) == y).float().mean())
        log.append({"step": step, "loss_largest": float(loss_big), "acc_largest": acc, "kd_smallest": kd[0],
                    "kd_random": float(np.mean(kd[1:])) if len(kd) > 1 else None})
        bar.update(1)
        bar.set_postfix(loss=f"{float(loss_big):.3f}", kd=f"{kd[0]:.3f}")
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            save()
    bar.close()
    save()
    space.activate(net, largest)
    net.eval()
    return {"steps_done": step, "steps_target": cfg.steps, "wall_s": wall_before + time.perf_counter() - t0,
            "epochs": step / steps_per_epoch, "last": log[-1] if log else None, "finished": step >= cfg.steps}
