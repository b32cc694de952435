"""Compute the sensitivity table of a trained supernet: traces of its largest float sub-network → Ω table.

Before anything is measured on the sub-network — Hessian traces, activation statistics, ZeroQ distillation —
its BatchNorm statistics are re-estimated on real (training) images (:func:`hao.train.recalibrated_bn`): the
statistics a weight-sharing supernet stores mix every sub-network training sampled. The supernet's own
statistics are restored afterwards. ``calib_batches`` names the images (default: the trace batches)."""
from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from hao.proxy.eigen import eigen_traces, top_eigenvalues
from hao.proxy.hutchinson import HessianTraces, hessian_traces
from hao.proxy.sensitivity import SensitivityTable, activation_quant_mse, float_weights
from hao.proxy.zeroq import distill_batch
from hao.space.base import SearchSpace
from hao.train.evaluate import recalibrated_bn

__all__ = ["supernet_traces", "compute_sensitivity", "zeroq_traces", "zeroq_sensitivity", "eigen_sensitivity"]


def _distill(space: SearchSpace, supernet: torch.nn.Module, n: int, steps: int, seed: int,
             calib_batches: Sequence | None = None) -> tuple:
    """ZeroQ inputs distilled from the largest float sub-network's BN statistics (re-estimated on
    ``calib_batches`` first when given; without real images the stored statistics are the only targets)."""
    with space.activated(supernet, space.largest()), float_weights(supernet), \
            recalibrated_bn(supernet, calib_batches):
        return distill_batch(supernet, n, space.input_shape, steps=steps, seed=seed)


def supernet_traces(space: SearchSpace, supernet: torch.nn.Module, batches: Sequence, *, samples: int = 64,
                    tol: float | None = None, seed: int = 0, vectors_per_call: int = 8,
                    method: str = "ggn", progress: bool = False, activations: bool | None = None,
                    calib_batches: Sequence | None = None, recalibrate: bool = True) -> HessianTraces:
    """Per-layer traces of the supernet's largest sub-network with float weights and activations (eval mode).

    ``method="ggn"`` (default; for the convolutional spaces, piecewise linear, it is the Hessian trace; for the
    ViT family — GELU, softmax, LayerNorm — it is the Gauss-Newton part, use ``"double_backward"`` for the full
    Hessian) also gives the input-activation traces unless ``activations=False``. ``supernet`` is
    ``space.supernet()`` (possibly trained), activated with ``space.activated`` (``ConfigError`` for a module
    that is not one; call ``hessian_traces(model, ...)`` for a plain model). BatchNorm statistics are
    re-estimated for the sub-network on ``calib_batches`` (default: ``batches``) unless ``recalibrate=False``.
    The supernet's active candidate, bits and BatchNorm statistics are restored afterwards."""
    if activations is None:
        activations = method == "ggn"
    calib = (list(calib_batches) if calib_batches is not None else list(batches)) if recalibrate else None
    with space.activated(supernet, space.largest()), float_weights(supernet), recalibrated_bn(supernet, calib):
        return hessian_traces(supernet, F.cross_entropy, list(batches), samples=samples, tol=tol, seed=seed,
                              vectors_per_call=vectors_per_call, method=method, progress=progress,
                              activations=activations)


def zeroq_traces(space: SearchSpace, supernet: torch.nn.Module, *, n: int = 128, steps: int = 200,
                 seed: int = 0, calib_batches: Sequence | None = None, **kw: Any) -> tuple[HessianTraces, dict]:
    """Data-free traces: distill ``n`` inputs from the largest float sub-network's BN statistics, then trace.
    With ``calib_batches`` (real images) the statistics are re-estimated first, for distillation and tracing;
    without, the stored statistics are used as they are (distilled inputs cannot re-estimate them)."""
    x, y, info = _distill(space, supernet, n, steps, seed, calib_batches)
    tr = supernet_traces(space, supernet, [(x, y)], seed=seed, calib_batches=calib_batches,
                         recalibrate=calib_batches is not None, **kw)
    return tr, info


def compute_sensitivity(space: SearchSpace, supernet: torch.nn.Module, batches: Sequence, *,
                        checkpoint: str | Path | None = None, samples: int = 64, tol: float | None = None,
                        seed: int = 0, progress: bool = False, meta: dict | None = None, **kw: Any
                        ) -> SensitivityTable:
    """Traces on ``batches`` (real data) → :class:`SensitivityTable` carrying ``checkpoint``'s sha256."""
    t0 = time.perf_counter()
    calib = kw.pop("calib_batches", None)
    recalibrate = kw.pop("recalibrate", True)
    calib = (list(calib) if calib is not None else list(batches)) if recalibrate else None
    tr = supernet_traces(space, supernet, batches, samples=samples, tol=tol, seed=seed, progress=progress,
                         calib_batches=calib, recalibrate=recalibrate, **kw)
    act_mse = None
    if tr.activations:
        with space.activated(supernet, space.largest()), recalibrated_bn(supernet, calib):
            act_mse = activation_quant_mse(supernet, list(batches), [a.path for a in tr.activations])
    sha = None
    if checkpoint is not None:
        from hao.train.supernet import file_sha256
        sha = file_sha256(checkpoint)
    m = {"trace_data": f"{sum(int(b[0].shape[0]) for b in batches)} images in {len(batches)} batches",
         "trace_wall_s": time.perf_counter() - t0} | dict(meta or {})
    return SensitivityTable.compute(space, supernet, tr, checkpoint_sha256=sha, meta=m, activation_mse=act_mse)


def zeroq_sensitivity(space: SearchSpace, supernet: torch.nn.Module, *, n: int = 128, steps: int = 200,
                      seed: int = 0, **kw: Any) -> tuple[SensitivityTable, dict]:
    """Data-free sensitivity table: distill ``n`` inputs from the largest float sub-network's BN statistics
    (ZeroQ), then compute traces *and* activation statistics on them (:func:`compute_sensitivity`)."""
    calib = kw.pop("calib_batches", None)
    x, y, info = _distill(space, supernet, n, steps, seed, calib)
    table = compute_sensitivity(space, supernet, [(x, y)], seed=seed, meta={"data": "ZeroQ distilled"} | info,
                                calib_batches=calib, recalibrate=calib is not None, **kw)
    return table, info


def eigen_sensitivity(space: SearchSpace, supernet: torch.nn.Module, batches: Sequence, *, iters: int = 30,
                      tol: float = 1e-3, seed: int = 0, calib_batches: Sequence | None = None,
                      meta: dict | None = None) -> SensitivityTable:
    """Q-BERT's sensitivity as a (weights-only) :class:`SensitivityTable`: the top Hessian eigenvalue of every
    layer of the largest float sub-network, one per batch of ``batches`` (power iteration, at most ``iters``
    products), summarised as ``mean + std`` (:func:`~hao.proxy.eigen.eigen_traces`). BatchNorm statistics are
    re-estimated on ``calib_batches`` (default: ``batches``) first, as for the traces. Compare with
    :func:`compute_sensitivity` (HAWQ-V2 traces) on the same candidates: ``experiments/proxy_fidelity.py
    --eigen-batches N``."""
    t0 = time.perf_counter()
    calib = list(calib_batches) if calib_batches is not None else list(batches)
    with space.activated(supernet, space.largest()), float_weights(supernet), recalibrated_bn(supernet, calib):
        eig = top_eigenvalues(supernet, F.cross_entropy, list(batches), iters=iters, tol=tol, seed=seed)
    m = {"sensitivity": "Q-BERT top Hessian eigenvalue, mean + std over batches",
         "eigen_data": f"{sum(int(b[0].shape[0]) for b in batches)} images in {len(batches)} batches",
         "eigen_wall_s": time.perf_counter() - t0} | dict(meta or {})
    return SensitivityTable.compute(space, supernet, eigen_traces(eig), meta=m)
