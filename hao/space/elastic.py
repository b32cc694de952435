"""Weight-sharing building blocks for supernets: elastic convolutions and batch norms.

An :class:`ElasticConv2d` holds the largest weight; a sub-network uses its first ``out`` filters, its first
``in`` input channels and the centre ``k x k`` taps, fake-quantized at the requested bits. ``to_static`` cuts
the slice out as a plain :class:`hao.quant.QConv2d` for a standalone sub-network.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hao.quant import ActQuant, QConv2d, QLinear, quantize_weight
from hao.quant.fake import exact_codes_op, integer_codes

__all__ = ["ElasticConv2d", "ElasticBatchNorm2d", "ElasticSE", "centre_slice"]


def centre_slice(max_k: int, k: int) -> slice:
    start = (max_k - k) // 2
    return slice(start, start + k)


class ElasticConv2d(nn.Module):
    """A convolution whose output channels, input channels and kernel size shrink at run time."""

    def __init__(self, max_in: int, max_out: int, max_k: int, stride: int = 1, depthwise: bool = False) -> None:
        super().__init__()
        self.max_in, self.max_out, self.max_k = max_in, max_out, max_k
        self.stride, self.depthwise = stride, depthwise
        w = torch.empty(max_out, 1 if depthwise else max_in, max_k, max_k)
        self.weight = nn.Parameter(w)
        self.act_quant = ActQuant(32)
        self.active_out, self.active_k, self.w_bits = max_out, max_k, 32

    def reset_parameters(self, generator: torch.Generator) -> None:
        fan_in = self.weight[0].numel()
        with torch.no_grad():
            self.weight.copy_(torch.randn(self.weight.shape, generator=generator) * (2.0 / fan_in) ** 0.5)

    def set_active(self, out: int, k: int, w_bits: int, a_bits: int) -> None:
        self.active_out, self.active_k, self.w_bits = out, k, w_bits
        self.act_quant.bits = a_bits

    def sliced_weight(self, in_c: int) -> torch.Tensor:
        ks = centre_slice(self.max_k, self.active_k)
        if self.depthwise:
            return self.weight[: self.active_out, :, ks, ks]
        return self.weight[: self.active_out, :in_c, ks, ks]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        groups = x.shape[1] if self.depthwise else 1
        sliced = self.sliced_weight(x.shape[1])
        c = integer_codes(self, x, sliced)
        if c is not None:  # eval: integer codes convolved exactly, as the extracted QConv2d does
            xc, wc, scale = c

            def conv(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
                return F.conv2d(a, b, None, self.stride, self.active_k // 2, 1, groups)
            if x.dtype == torch.float64:  # exact_copy of a supernet: exact accumulator, float64 element-wise
                y = exact_codes_op(conv, xc, wc, wc[0].numel(), 2 ** (self.w_bits - 1) - 1)
            else:
                y = conv(xc, wc)
            return y.mul_(scale.reshape(1, -1, 1, 1))
        w = quantize_weight(sliced, self.w_bits)
        return F.conv2d(self.act_quant(x), w, None, self.stride, self.active_k // 2, 1, groups)

    def to_static(self, in_c: int) -> QConv2d:
        out = self.active_out
        groups = out if self.depthwise else 1
        conv = QConv2d(in_c, out, self.active_k, self.stride, self.active_k // 2, groups=groups, bias=False,
                       w_bits=self.w_bits, a_bits=self.act_quant.bits)
        with torch.no_grad():
            conv.weight.copy_(self.sliced_weight(in_c))
        return conv


class ElasticBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the first ``C`` channels of its input (C read from the input)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        if c == self.num_features:
            return super().forward(x)
        use_batch = self.training or not self.track_running_stats
        return F.batch_norm(x, None if use_batch else self.running_mean[:c],
                            None if use_batch else self.running_var[:c], self.weight[:c], self.bias[:c],
                            use_batch, self.momentum if self.momentum is not None else 0.1, self.eps)

    def to_static(self, c: int) -> nn.BatchNorm2d:
        bn = nn.BatchNorm2d(c, eps=self.eps, momentum=self.momentum)
        with torch.no_grad():
            bn.weight.copy_(self.weight[:c])
            bn.bias.copy_(self.bias[:c])
            bn.running_mean.copy_(self.running_mean[:c])
            bn.running_var.copy_(self.running_var[:c])
            bn.num_batches_tracked.copy_(self.num_batches_tracked)
        return bn


class ElasticSE(nn.Module):
    """Squeeze-excite whose width follows its input: ``C`` channels in, :func:`hao.kernel.se_channels` (C)
    reduced channels, the first rows/columns of the largest ``reduce``/``expand`` layers (float32). Parameter
    names equal :class:`hao.layers.SqueezeExcite`'s, which :meth:`to_static` cuts out (a trained teacher's
    state dict loads into the supernet)."""

    def __init__(self, max_channels: int) -> None:
        super().__init__()
        from hao.kernel import se_channels

        self.max_channels, self.max_reduced = max_channels, se_channels(max_channels)
        self.reduce = nn.Conv2d(max_channels, self.max_reduced, 1, bias=True)
        self.expand = nn.Conv2d(self.max_reduced, max_channels, 1, bias=True)

    def reset_parameters(self, generator: torch.Generator) -> None:
        with torch.no_grad():
            for conv in (self.reduce, self.expand):
                w = conv.weight
                w.copy_(torch.randn(w.shape, generator=generator) * (1.0 / w[0].numel()) ** 0.5)
                conv.bias.zero_()

    def _slices(self, c: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        from hao.kernel import se_channels

        r = se_channels(c)
        return (self.reduce.weight[:r, :c], self.reduce.bias[:r], self.expand.weight[:c, :r], self.expand.bias[:c])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from hao.layers import squeeze_excite

        rw, rb, ew, eb = self._slices(x.shape[1])
        return squeeze_excite(x, lambda t: F.conv2d(t, rw, rb), lambda t: F.conv2d(t, ew, eb))

    def to_static(self, c: int) -> nn.Module:
        from hao.layers import SqueezeExcite

        rw, rb, ew, eb = self._slices(c)
        se = SqueezeExcite(c, rw.shape[0])
        with torch.no_grad():
            se.reduce.weight.copy_(rw)
            se.reduce.bias.copy_(rb)
            se.expand.weight.copy_(ew)
            se.expand.bias.copy_(eb)
        return se


def static_linear(lin: nn.Linear, w_bits: int, a_bits: int) -> QLinear:
    return QLinear.from_linear(lin, w_bits, a_bits)


def extract_subnet(space, candidate, supernet, seed: int, supernet_cls: type) -> nn.Module:
    """Shared ``build()`` of supernet spaces: activate ``candidate`` on ``supernet`` (or a fresh seeded one),
    cut out the standalone sub-network, and restore the supernet's previously active candidate."""
    from hao.errors import ConfigError
    space.validate(candidate)
    net = supernet if supernet is not None else space.supernet(seed)
    if not isinstance(net, supernet_cls):
        raise ConfigError(f"build() needs a {supernet_cls.__name__} of space {space.name!r}, "
                          f"got {type(net).__name__}.")
    previous = net.active
    net.set_active(candidate)
    try:
        return net.extract()
    finally:
        net.set_active(previous)
