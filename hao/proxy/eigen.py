"""Q-BERT's sensitivity: the top Hessian eigenvalue of every layer, per data batch, by power iteration.

Q-BERT (Shen et al., 2020) ranks layers by ``mean(λ_l) + std(λ_l)`` over data batches, where ``λ_l`` is the
largest eigenvalue of the Hessian block ``H_ll`` of layer ``l``'s weights: a layer whose curvature is large, or
varies a lot from batch to batch, gets more bits. hao's default (HAWQ-V2) uses the *trace* instead
(:mod:`hao.proxy.hutchinson`); this module is the second method, so the two can be compared on the same space.

Power iteration on ``H_ll`` (Hessian-vector products of the layer's own weights, double backward): ``v ← Hv /
‖Hv‖`` from a seeded Gaussian start, until the Rayleigh quotient ``vᵀHv`` changes by less than ``tol``
(relative) or ``iters`` products. It converges to the eigenvalue of largest *magnitude*; the returned value is
that signed Rayleigh quotient (a negative value means the block's most negative curvature dominates). The model is
evaluated in eval mode and left exactly as it was; nothing touches the global RNG.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from hao.errors import ConfigError
from hao.proxy.hutchinson import (_HVP, HessianTraces, LayerTrace, _as_batches, preserve_model_state,
                                  weight_layers)

__all__ = ["LayerEigen", "top_eigenvalues", "qbert_sensitivity", "eigen_traces"]


@dataclass(frozen=True)
class LayerEigen:
    """One layer's top Hessian eigenvalue on each batch, and Q-BERT's summary ``mean + std``."""

    path: str
    per_batch: tuple[float, ...]
    iterations: tuple[int, ...]
    numel: int

    @property
    def mean(self) -> float:
        return sum(self.per_batch) / len(self.per_batch)

    @property
    def std(self) -> float:
        """Population standard deviation over the batches (0 for one batch), as Q-BERT reports it."""
        m = self.mean
        return math.sqrt(sum((v - m) ** 2 for v in self.per_batch) / len(self.per_batch))

    @property
    def sensitivity(self) -> float:
        """Q-BERT's Ω = mean(λ) + std(λ)."""
        return self.mean + self.std


def top_eigenvalues(model: nn.Module, loss_fn: Callable[[Any, Any], torch.Tensor], data: Any, *,
                    layers: Sequence[str] | None = None, iters: int = 50, tol: float = 1e-4, seed: int = 0
                    ) -> dict[str, LayerEigen]:
    """The top eigenvalue of every layer's Hessian block on every batch of ``data``.

    Args:
        model: evaluated in eval mode; left exactly as it was.
        loss_fn: ``loss_fn(model(x), y)`` -> scalar.
        data: an ``(inputs, targets)`` batch or an iterable of them (each batch gives one eigenvalue per layer).
        layers: module paths (default: every conv/linear weight, :func:`~hao.proxy.hutchinson.weight_layers`).
        iters: most Hessian-vector products per layer and batch.
        tol: stop when the Rayleigh quotient changes by less than ``tol`` relative to it.
        seed: seed of the start vectors (a ``torch.Generator``; one stream, layer by layer, batch by batch).

    Returns:
        ``{path: LayerEigen}``.
    """
    if not isinstance(iters, int) or isinstance(iters, bool) or iters < 1:
        raise ConfigError(f"iters must be an int >= 1, got {iters!r}.")
    if not (isinstance(tol, (int, float)) and tol > 0):
        raise ConfigError(f"tol must be a number > 0, got {tol!r}.")
    batches = _as_batches(data)
    keys = weight_layers(model)
    paths = list(keys) if layers is None else list(layers)
    bad = [p for p in paths if p not in keys]
    if bad:
        raise ConfigError(f"layers {bad[:4]} are not conv/linear layers of the model; valid paths look like "
                          f"{list(keys)[:6]} (see hao.proxy.weight_layers).")
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, LayerEigen] = {}
    with preserve_model_state(model):
        model.eval()
        for path in paths:
            hvp = _HVP(model, loss_fn, [keys[path]], "double_backward")
            shape, dtype = hvp.primals[0].shape, hvp.primals[0].dtype
            vals, its = [], []
            for x, y in batches:
                hvp.set_batch(x, y)
                v = torch.randn(shape, generator=gen, dtype=torch.float64)
                v = v.to(device=hvp.primals[0].device, dtype=dtype)
                v = v / v.norm()
                lam, n = math.nan, 0
                for n in range(1, iters + 1):
                    hv = hvp([v.unsqueeze(0)])[0][0].detach()
                    new = float((v * hv).sum())
                    norm = float(hv.norm())
                    done = not math.isnan(lam) and abs(new - lam) <= tol * max(abs(new), 1e-30)
                    lam = new
                    if done or norm == 0.0:
                        break
                    v = hv / norm
                vals.append(lam)
                its.append(n)
            out[path] = LayerEigen(path, tuple(vals), tuple(its), int(torch.Size(shape).numel()))
    return out


def qbert_sensitivity(eigen: Mapping[str, LayerEigen]) -> dict[str, float]:
    """``{path: mean(λ) + std(λ)}`` — Q-BERT's per-layer sensitivity."""
    return {p: e.sensitivity for p, e in eigen.items()}


def eigen_traces(eigen: Mapping[str, LayerEigen]) -> HessianTraces:
    """Q-BERT's sensitivity in the shape of :class:`~hao.proxy.hutchinson.HessianTraces`, so that every Ω
    consumer (:class:`~hao.proxy.sensitivity.SensitivityTable`, the accuracy proxy) can use it unchanged.

    Each layer's "trace" is ``(mean(λ) + std(λ)) · numel``: its per-parameter curvature is then Q-BERT's Ω
    instead of HAWQ-V2's average ``Tr(H)/n``, and a layer's predicted loss increase becomes
    ``½ · Ω · ‖ΔW‖²`` (an upper estimate along the top eigenvector's direction). Weights only (no activation
    traces); ``std_error`` is the spread over batches divided by √batches."""
    if not eigen:
        raise ConfigError("eigen_traces needs at least one layer (the output of top_eigenvalues).")
    layers = []
    for path, e in eigen.items():
        n_b = len(e.per_batch)
        layers.append(LayerTrace(path, e.sensitivity * e.numel, e.std * e.numel / math.sqrt(n_b), n_b, e.numel))
    total = sum(lt.mean for lt in layers)
    se = math.sqrt(sum(lt.std_error ** 2 for lt in layers))
    n_batches = {len(e.per_batch) for e in eigen.values()}
    return HessianTraces(tuple(layers), total, se, max(n_batches),
                         info={"method": "qbert_top_eigenvalue", "summary": "mean + std over batches",
                               "batches": max(n_batches),
                               "iterations_max": max(max(e.iterations) for e in eigen.values())})
