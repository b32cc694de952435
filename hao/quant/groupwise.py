"""Group-wise weight quantization (Q-BERT): a weight matrix split into groups along one axis, one symmetric
range per group.

Q-BERT (Shen et al., 2020) quantizes each matrix of multi-head attention in groups — one per head, or finer —
instead of one range for the whole matrix: heads differ in scale, and one head with large weights otherwise
takes the grid away from all the others. Here ``groups`` contiguous, equal slices along ``axis`` each get
``s_g = max|W_g| / qmax``:

* Q, K, V projections (``out_features = heads · head_dim``): ``axis=0`` (output rows), ``groups = heads`` is one
  range per head, ``2 · heads`` two per head …, ``groups = out_features`` is per-channel (hao's default for
  every other layer, :func:`hao.quant.fake.quantize_weight`);
* the output projection reads the heads along its input: ``axis=1``.

A group's integer codes are ``clamp(round(W / s_g), -qmax, qmax)``; a deployed kernel stores one scale per
group. Values equal :func:`~hao.quant.fake.quantize_weight` when ``groups`` equals the size of axis 0 (tested).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from hao.errors import ConfigError
from hao.quant.fake import QLinear, check_bits

__all__ = ["quantize_weight_grouped", "group_scales", "grouped_weight_error", "QGroupLinear"]


def _check(w: torch.Tensor, groups: int, axis: int) -> int:
    if w.dim() < 2:
        raise ConfigError(f"group-wise quantization needs a matrix (2 or more dims), got shape {tuple(w.shape)}.")
    if axis not in (0, 1):
        raise ConfigError(f"axis must be 0 (output rows: Q, K, V) or 1 (input columns: the output projection), got "
                          f"{axis!r}.")
    n = w.shape[axis]
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1 or n % groups:
        divisors = [d for d in range(1, n + 1) if n % d == 0]
        raise ConfigError(f"groups must divide the {n} {'rows' if axis == 0 else 'columns'} of the weight "
                          f"(valid: {divisors[:12]}{' …' if len(divisors) > 12 else ''}), got {groups!r}.")
    return n // groups


def group_scales(w: torch.Tensor, bits: int, groups: int, axis: int = 0) -> torch.Tensor:
    """The ``groups`` scales ``max|W_g| / qmax`` (shape ``(groups,)``)."""
    check_bits(bits, "w_bits")
    size = _check(w, groups, axis)
    qmax = 2 ** (bits - 1) - 1
    wt = w.detach().movedim(axis, 0).reshape(groups, size, -1)
    return wt.abs().amax(dim=(1, 2)).clamp_min(1e-12) / qmax


def quantize_weight_grouped(w: torch.Tensor, bits: int, groups: int, axis: int = 0) -> torch.Tensor:
    """``w`` fake-quantized with one symmetric range per group of ``axis`` (straight-through gradient)."""
    check_bits(bits, "w_bits")
    if bits == 32:
        return w
    size = _check(w, groups, axis)
    qmax = 2 ** (bits - 1) - 1
    scale = group_scales(w, bits, groups, axis).repeat_interleave(size)
    shape = [1] * w.dim()
    shape[axis] = w.shape[axis]
    scale = scale.reshape(shape)
    q = torch.clamp(torch.round(w.detach() / scale), -qmax, qmax) * scale
    return w + (q - w).detach() if torch.is_grad_enabled() and w.requires_grad else q


@torch.no_grad()
def grouped_weight_error(w: torch.Tensor, bits: int, groups: int, axis: int = 0) -> torch.Tensor:
    """‖Q(W) − W‖² with ``groups`` ranges along ``axis`` (a scalar tensor)."""
    return (quantize_weight_grouped(w, bits, groups, axis) - w).pow(2).sum()


class QGroupLinear(QLinear):
    """:class:`~hao.quant.QLinear` whose weight is quantized with ``w_groups`` ranges along ``w_axis`` (Q-BERT);
    ``w_groups=None`` keeps hao's per-output-channel ranges. (Named ``w_groups``, not ``groups``: a layer's
    ``groups`` means grouped convolution everywhere else.) It always computes the defining form
    ``linear(Q_a(x), Q_w(W))`` (no integer-code fast path: that path assumes per-output-channel scales)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, w_bits: int = 32,
                 a_bits: int = 32, w_groups: int | None = None, w_axis: int = 0) -> None:
        super().__init__(in_features, out_features, bias, w_bits=w_bits, a_bits=a_bits)
        if w_axis not in (0, 1):
            raise ConfigError(f"QGroupLinear w_axis must be 0 (output rows) or 1 (input columns), got {w_axis!r}.")
        self.w_axis = w_axis
        self.w_groups = w_groups
        if w_groups is not None:
            _check(self.weight, w_groups, w_axis)

    def _quantized_weight(self) -> torch.Tensor:
        if self.w_groups is None:
            return super()._quantized_weight()
        return quantize_weight_grouped(self.weight, self.w_bits, self.w_groups, self.w_axis)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.act_quant(x), self._quantized_weight(), self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", w_groups={self.w_groups}, w_axis={self.w_axis}"
