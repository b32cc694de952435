"""Data-free mode (ZeroQ, Cai et al. 2020): distill a batch of inputs from the model's BatchNorm statistics.

Starting from seeded Gaussian noise, the inputs are optimised (Adam) so that, at every BatchNorm layer, the
per-channel mean and standard deviation of the batch match the layer's running statistics. Labels for the
Hessian are the model's own predictions on the distilled batch.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from tqdm import tqdm

from hao.errors import ConfigError
from hao.proxy.hutchinson import preserve_model_state

__all__ = ["distill_batch"]


def distill_batch(model: nn.Module, n: int, input_shape: Sequence[int], *, steps: int = 200, lr: float = 0.1,
                  seed: int = 0, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Return ``(x, y, info)``: ``n`` distilled inputs of shape ``input_shape``, the model's predicted labels,
    and ``info`` (initial/final BN-statistics loss, steps). The model is left unchanged (mode, grads)."""
    if not isinstance(n, int) or n < 2:
        raise ConfigError(f"distill_batch needs n >= 2 inputs (batch statistics), got n={n!r}.")
    if not isinstance(steps, int) or steps < 0:
        raise ConfigError(f"steps must be an int >= 0, got {steps!r}.")
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        raise ConfigError("ZeroQ distillation needs BatchNorm layers with running statistics; the model has none.")
    gen = torch.Generator().manual_seed(seed)
    dev = next(model.parameters()).device
    x = torch.randn((n, *input_shape), generator=gen).to(dev).requires_grad_(True)
    terms: list[torch.Tensor] = []

    def hook(m: nn.Module, inp: tuple, out: torch.Tensor) -> None:
        a = inp[0]
        c = a.shape[1]
        mu = a.mean(dim=(0, 2, 3)) if a.dim() == 4 else a.mean(0)
        var = a.var(dim=(0, 2, 3), unbiased=False) if a.dim() == 4 else a.var(0, unbiased=False)
        terms.append((mu - m.running_mean[:c]).norm() + (var.add(m.eps).sqrt() -
                                                         m.running_var[:c].add(m.eps).sqrt()).norm())

    handles = [bn.register_forward_hook(hook) for bn in bns]
    opt = torch.optim.Adam([x], lr=lr)
    first = last = float("nan")
    try:
        with preserve_model_state(model):
            model.eval()
            for p in model.parameters():
                p.requires_grad_(False)
            for i in tqdm(range(steps + 1), disable=not progress, desc="zeroq", mininterval=5):
                terms.clear()
                with torch.enable_grad():
                    model(x)
                    if not terms:
                        raise ConfigError("No BatchNorm layer ran in the forward pass; ZeroQ needs active BN layers.")
                    loss = torch.stack(terms).sum()
                    last = float(loss.detach())
                    if i == 0:
                        first = last
                    if i == steps:
                        break
                    (gx,) = torch.autograd.grad(loss, [x])
                x.grad = gx
                opt.step()
            with torch.no_grad():
                y = model(x.detach()).argmax(1)
    finally:
        for h in handles:
            h.remove()
    return x.detach(), y, {"bn_loss_initial": first, "bn_loss_final": last, "steps": steps, "n": n, "seed": seed}
