"""Fake quantization: per-channel symmetric weights, per-tensor activations with calibrated ranges.

Bits are any integer in [2, 8], or 32 for float (no quantization). Gradients pass straight through (STE).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch
from torch import nn
import torch.nn.functional as F

from hao.errors import ConfigError

__all__ = ["check_bits", "quantize_weight", "quantize_weight_error", "ActQuant", "QConv2d", "QLinear",
           "calibrate_activations", "set_bits", "quant_layers"]

VALID_BITS = (2, 3, 4, 5, 6, 7, 8, 32)


def check_bits(bits: int, what: str = "bits") -> int:
    if not isinstance(bits, int) or isinstance(bits, bool) or bits not in VALID_BITS:
        raise ConfigError(f"{what} must be an int in [2, 8] or 32 (float), got {bits!r}.")
    return bits


def _ste(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    return x + (q - x).detach()


def quantize_weight(w: torch.Tensor, bits: int) -> torch.Tensor:
    """Symmetric uniform per-output-channel quantization (axis 0), straight-through gradient."""
    check_bits(bits, "w_bits")
    if bits == 32:
        return w
    qmax = 2 ** (bits - 1) - 1
    flat = w.detach().reshape(w.shape[0], -1)
    scale = flat.abs().amax(dim=1).clamp_min(1e-12) / qmax
    scale = scale.reshape((-1,) + (1,) * (w.dim() - 1))
    q = torch.clamp(torch.round(w / scale), -qmax, qmax) * scale
    return _ste(w, q)


@torch.no_grad()
def quantize_weight_error(w: torch.Tensor, bits: int) -> torch.Tensor:
    """‖Q_b(W) − W‖² (a scalar tensor)."""
    if bits == 32:
        return torch.zeros((), dtype=w.dtype)
    return (quantize_weight(w, bits) - w).pow(2).sum()


class ActQuant(nn.Module):
    """Per-tensor asymmetric uniform activation quantizer.

    The range comes from calibration (:func:`calibrate_activations`: min/max over calibration batches);
    before calibration it uses each batch's own min/max. ``bits=32`` is the identity.
    """

    def __init__(self, bits: int = 32) -> None:
        super().__init__()
        self.bits = check_bits(bits, "a_bits")
        self.register_buffer("lo", torch.zeros(()))
        self.register_buffer("hi", torch.zeros(()))
        self.register_buffer("calibrated", torch.zeros((), dtype=torch.bool))
        self.calibrating = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.calibrating:
            lo, hi = x.detach().amin(), x.detach().amax()
            if bool(self.calibrated):
                self.lo.copy_(torch.minimum(self.lo, lo))
                self.hi.copy_(torch.maximum(self.hi, hi))
            else:
                self.lo.copy_(lo)
                self.hi.copy_(hi)
                self.calibrated.fill_(True)
        if self.bits == 32:
            return x
        if bool(self.calibrated):
            lo, hi = self.lo, self.hi
        else:
            lo, hi = x.detach().amin(), x.detach().amax()
        lo = torch.minimum(lo, torch.zeros_like(lo))
        hi = torch.maximum(hi, torch.zeros_like(hi))
        levels = 2 ** self.bits - 1
        scale = (hi - lo).clamp_min(1e-8) / levels
        zero = torch.round(-lo / scale)
        q = (torch.clamp(torch.round(x / scale) + zero, 0, levels) - zero) * scale
        return _ste(x, q)

    def extra_repr(self) -> str:
        return f"bits={self.bits}"


class QConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose input is fake-quantized to ``a_bits`` and weight to ``w_bits``."""

    def __init__(self, *args, w_bits: int = 32, a_bits: int = 32, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.w_bits = check_bits(w_bits, "w_bits")
        self.act_quant = ActQuant(a_bits)

    @property
    def a_bits(self) -> int:
        return self.act_quant.bits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(self.act_quant(x), quantize_weight(self.weight, self.w_bits), self.bias)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, w_bits: int = 32, a_bits: int = 32) -> "QConv2d":
        q = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                conv.groups, conv.bias is not None, conv.padding_mode, w_bits=w_bits, a_bits=a_bits)
        q.weight = nn.Parameter(conv.weight.detach().clone(), requires_grad=conv.weight.requires_grad)
        if conv.bias is not None:
            q.bias = nn.Parameter(conv.bias.detach().clone(), requires_grad=conv.bias.requires_grad)
        return q

    def extra_repr(self) -> str:
        return super().extra_repr() + f", w_bits={self.w_bits}, a_bits={self.a_bits}"


class QLinear(nn.Linear):
    """``nn.Linear`` with fake-quantized input (``a_bits``) and weight (``w_bits``)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, w_bits: int = 32,
                 a_bits: int = 32) -> None:
        super().__init__(in_features, out_features, bias)
        self.w_bits = check_bits(w_bits, "w_bits")
        self.act_quant = ActQuant(a_bits)

    @property
    def a_bits(self) -> int:
        return self.act_quant.bits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.act_quant(x), quantize_weight(self.weight, self.w_bits), self.bias)

    @classmethod
    def from_linear(cls, lin: nn.Linear, w_bits: int = 32, a_bits: int = 32) -> "QLinear":
        q = cls(lin.in_features, lin.out_features, lin.bias is not None, w_bits=w_bits, a_bits=a_bits)
        q.weight = nn.Parameter(lin.weight.detach().clone())
        if lin.bias is not None:
            q.bias = nn.Parameter(lin.bias.detach().clone())
        return q

    def extra_repr(self) -> str:
        return super().extra_repr() + f", w_bits={self.w_bits}, a_bits={self.a_bits}"


def quant_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    for name, m in model.named_modules():
        if isinstance(m, (QConv2d, QLinear)):
            yield name, m


def set_bits(model: nn.Module, config: dict[str, dict[str, int]]) -> None:
    """Set ``w_bits``/``a_bits`` of the quantized layers named in ``config`` (``{path: {"w_bits":..}}``)."""
    layers = dict(quant_layers(model))
    for path, bits in config.items():
        if path not in layers:
            raise ConfigError(f"set_bits: no quantized layer at {path!r}; layers are {list(layers)[:8]}...")
        if "w_bits" in bits:
            layers[path].w_bits = check_bits(bits["w_bits"], f"{path}.w_bits")
        if "a_bits" in bits:
            layers[path].act_quant.bits = check_bits(bits["a_bits"], f"{path}.a_bits")


@contextlib.contextmanager
def _calibrating(model: nn.Module) -> Iterator[None]:
    qs = [m for m in model.modules() if isinstance(m, ActQuant)]
    for q in qs:
        q.calibrated.fill_(False)
        q.calibrating = True
    try:
        yield
    finally:
        for q in qs:
            q.calibrating = False


@torch.no_grad()
def calibrate_activations(model: nn.Module, batches: Iterable[torch.Tensor], max_batches: int = 8) -> None:
    """Record per-tensor activation ranges (min/max) of every :class:`ActQuant` in ``model`` on ``batches``.

    The model's train/eval mode is restored afterwards; BatchNorm statistics are not changed (eval mode)."""
    was_training = model.training
    model.eval()
    try:
        with _calibrating(model):
            for i, x in enumerate(batches):
                if i >= max_batches:
                    break
                if isinstance(x, (tuple, list)):
                    x = x[0]
                model(x)
    finally:
        model.train(was_training)
