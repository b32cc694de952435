"""Sub-network preparation and evaluation: BatchNorm recalibration, activation calibration, accuracy.

Every function restores the model's train/eval mode (and BatchNorm momenta) afterwards.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hao.errors import ConfigError

__all__ = ["recalibrated_bn", "recalibrate_bn", "evaluate", "evaluate_full", "EvalResult", "prepare_subnet"]


def _inputs(batch) -> torch.Tensor:
    return batch[0] if isinstance(batch, (tuple, list)) else batch


@contextlib.contextmanager
def _mode(model: nn.Module, training: bool) -> Iterator[None]:
    modes = {m: m.training for m in model.modules()}
    model.train(training)
    try:
        yield
    finally:
        for m, t in modes.items():
            m.training = t


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable, *, max_batches: int | None = None) -> int:
    """Reset every BatchNorm's running statistics and re-estimate them on ``batches`` (exact average).

    ``batches`` yields inputs or ``(inputs, labels)``. Uses cumulative averaging (momentum=None) so the result
    does not depend on batch order; the model's mode and each BN's momentum are restored. Returns the number of
    images used. Raises :class:`ConfigError` if ``batches`` is empty.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    seen = 0
    cl = _channels_last(model)
    try:
        with _mode(model, True):
            for i, b in enumerate(batches):
                if max_batches is not None and i >= max_batches:
                    break
                x = _inputs(b)
                model(_layout(x, cl))
                seen += int(x.shape[0])
    finally:
        for bn, mom in zip(bns, momenta):
            bn.momentum = mom
    if seen == 0 and bns:
        raise ConfigError("recalibrate_bn got no batches; pass a non-empty iterable of inputs or (inputs, labels).")
    return seen


@contextlib.contextmanager
def recalibrated_bn(model: nn.Module, batches: Iterable | None) -> Iterator[int]:
    """Within the block, every BatchNorm of ``model`` holds statistics re-estimated on ``batches``
    (:func:`recalibrate_bn`: exact cumulative average); on exit the statistics the model had are restored, so
    the caller's model is left as it was. ``batches=None``: nothing is changed. Yields the images used (0 for
    ``None``).

    A weight-sharing supernet's stored statistics mix every sub-network sandwich training sampled; a
    sub-network's curvature, activation ranges or distilled inputs must be measured with its own statistics
    (stale ones made the largest sub-network's Hessian traces ~15x too large)."""
    if batches is None:
        yield 0
        return
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [{k: v.clone() for k, v in bn.state_dict().items()} for bn in bns]
    try:
        with torch.no_grad():
            n = recalibrate_bn(model, batches)
        yield n
    finally:
        for bn, sd in zip(bns, saved):
            bn.load_state_dict(sd)


def _channels_last(model: nn.Module) -> bool:
    """True when :func:`prepare_subnet` stored the model's weights channels-last; its 4-D inputs are then fed
    channels-last too."""
    return bool(getattr(model, "_hao_channels_last", False))


def _contiguous_weights(model: nn.Module) -> nn.Module:
    """Undo :func:`prepare_subnet`'s channels-last storage in place (the float64 exact path runs PyTorch's
    reference convolution, which gains nothing from it)."""
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 4:
                p.data = p.data.clone(memory_format=torch.contiguous_format)
    model._hao_channels_last = False
    return model


def _layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    if channels_last and isinstance(x, torch.Tensor) and x.dim() == 4 and x.is_floating_point():
        return x.contiguous(memory_format=torch.channels_last)
    return x


def prepare_subnet(model: nn.Module, batches: list, *, channels_last: bool = False) -> nn.Module:
    """Make a freshly built fake-quant sub-network ready for evaluation, in two passes over ``batches``:
    (1) BatchNorm statistics re-estimated while every activation quantizer records its range (min/max),
    (2) BatchNorm statistics re-estimated again, now behind the calibrated quantizers.
    ``batches`` is a list of inputs or ``(inputs, labels)`` (it is iterated twice).

    ``channels_last=True`` stores the weights channels-last, for speed (PyTorch's CPU convolutions run the
    MBConv sub-networks ~1.7x faster so: 2 threads, nothing else running, the two layouts interleaved 3 times,
    medians: 1,000 images through the largest mbconv-fmnist W8A8 sub-network 8.3 -> 4.8 s, through a W4A4
    kernel-5 ratio-4 depth-3 one 3.3 -> 2.0 s); :func:`evaluate_full` and
    :func:`recalibrate_bn` then feed it channels-last inputs. Float32 sums then run in another order, which moves
    a rare pre-activation across a rounding boundary: measured accuracies of the same candidate can differ by
    a few hundredths of a point (0.15 on one W2A4 candidate and 2,000 images; calibration-subset noise is
    larger). hao's evaluations (:func:`hao.train.candidates.evaluate_candidates`, the architecture terms) use
    it; the deployment checks keep the default."""
    if not isinstance(batches, (list, tuple)) or not batches:
        raise ConfigError(f"prepare_subnet needs a non-empty list of batches, got {type(batches).__name__}.")
    from hao.quant.fake import _calibrating
    if channels_last:
        model.to(memory_format=torch.channels_last)
        model._hao_channels_last = True
    with _calibrating(model):
        recalibrate_bn(model, batches)
    recalibrate_bn(model, batches)
    return model


@dataclass(frozen=True)
class EvalResult:
    """Top-1 accuracy with its binomial standard error, mean cross-entropy loss, and the example count;
    ``correct`` (``evaluate_full(..., per_example=True)``): one bool per example, in loader order."""

    accuracy: float
    accuracy_se: float
    loss: float
    n: int
    correct: np.ndarray | None = field(default=None, compare=False, repr=False)


#: Loader batches larger than this are run in chunks of this many examples (bounded working set). Results are
#: unchanged: see :func:`evaluate_full`. Measured on the largest mbconv-fmnist W8A8 sub-network, 2 threads
#: (benchmarks/quant_eval_speed.py): chunks of 128/256/500 were all slower than whole batches of 1000.
EVAL_CHUNK = 1000


def _per_example(model: nn.Module) -> bool:
    """True when the eval-mode output of one example does not depend on the rest of its batch: every active
    activation quantizer has a calibrated range (an uncalibrated one uses the batch's own min/max)."""
    from hao.quant.fake import ActQuant
    return all(bool(m.calibrated) for m in model.modules() if isinstance(m, ActQuant) and m.bits != 32)


@torch.inference_mode()
def evaluate_full(model: nn.Module, loader: Iterable, *, chunk: int | None = EVAL_CHUNK,
                  exact: bool = False, per_example: bool = False) -> EvalResult:
    """Accuracy (± binomial standard error) and mean loss of ``model`` in eval mode over ``(x, y)`` batches.

    Runs under ``torch.inference_mode()``. A batch larger than ``chunk`` is fed to the model in pieces of
    ``chunk`` examples when the model is per-example in eval mode (BatchNorm uses running statistics; every
    active activation quantizer is calibrated) and the logits are concatenated before the loss, so loss and
    accuracy are computed exactly as for the whole batch. ``chunk=None`` feeds batches as they come.

    ``exact=True`` evaluates :func:`hao.quant.exact_copy` of a calibrated fake-quant model (``model`` itself is
    not changed): accumulators of integer codes exact, the element-wise part (scale, BatchNorm, the next
    quantizer's division) in float64 — what the integer deployment computes (docs/deployment.md). About 2x the
    float32 time; on low-bit candidates the float32 path flips predictions whose pre-activations sit within
    float32 error of a rounding boundary (measured: up to 8.7% of them on one 2/4-bit candidate).

    ``per_example=True`` also returns which examples were classified right (``EvalResult.correct``), for
    :func:`hao.stats.image_sampling`."""
    if exact:
        from hao.quant import exact_copy
        with torch.inference_mode(False):  # normal tensors: the copy's weight-code cache tracks versions
            model = _contiguous_weights(exact_copy(model))
    dtype = torch.float64 if exact else None
    cl = _channels_last(model)
    correct, total, loss_sum, hits = 0, 0, 0.0, []
    with _mode(model, False):
        split = chunk is not None and _per_example(model)
        for b in loader:
            if not isinstance(b, (tuple, list)) or len(b) < 2:
                raise ConfigError("evaluate needs a loader of (inputs, labels) batches.")
            x, y = b[0], b[1]
            if dtype is not None and isinstance(x, torch.Tensor) and x.is_floating_point():
                x = x.to(dtype)
            x = _layout(x, cl)
            if split and isinstance(x, torch.Tensor) and x.shape[0] > chunk:
                out = torch.cat([model(x[i:i + chunk]) for i in range(0, x.shape[0], chunk)])
            else:
                out = model(x)
            loss_sum += float(F.cross_entropy(out, y, reduction="sum"))
            hit = out.argmax(1) == y
            correct += int(hit.sum())
            total += int(y.shape[0])
            if per_example:
                hits.append(hit.cpu().numpy())
    if total == 0:
        raise ConfigError("evaluate got an empty loader.")
    acc = correct / total
    return EvalResult(acc, math.sqrt(max(acc * (1 - acc), 1e-12) / total), loss_sum / total, total,
                      np.concatenate(hits) if per_example else None)


def evaluate(model: nn.Module, loader: Iterable, *, exact: bool = False) -> float:
    """Top-1 accuracy in [0, 1] of ``model`` (eval mode, restored afterwards) on ``(x, y)`` batches
    (``exact``: see :func:`evaluate_full`)."""
    return evaluate_full(model, loader, exact=exact).accuracy
