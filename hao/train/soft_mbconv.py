"""A differentiable relaxation of :class:`hao.space.mbconv.MBConvSupernet` (FBNetV2 DMasking + mixed-precision
DNAS), driven by one probability vector per decision (:class:`hao.search.soft.DecisionLogits`).

One max-width weight per layer; every choice is a mask or a mixture over it, never a separate branch:

* **expansion ratio** — the expand layer runs at the widest mid width; its output is multiplied by the soft
  channel mask ``Σ_r p_r · 1[c < c_in·r]`` (after the activation, and again after the depthwise layer, whose
  BatchNorm would otherwise turn zeros into constants); the projection's weight is masked the same way on its input
  channels, so its per-channel quantization scale is the one of the active slice;
* **kernel size** — the depthwise weight is ``Σ_k p_k · (W ⊙ centre_k)`` (the centre ``k x k`` taps), run with the
  widest kernel's padding: exactly the sliced kernel at one-hot probabilities;
* **bit-widths** — weights ``Σ_b p_b · Q_b(W)`` and activations ``Σ_b p_b · Q_b(x)`` (straight-through
  gradients), activation ranges from each batch's own min/max;
* **depth** — a stage's output is ``Σ_d p_d · x_d``, ``x_d`` the output after its first ``d`` blocks.

BatchNorm uses each batch's statistics (the running statistics of a weight-sharing supernet belong to no single
sub-network). At one-hot probabilities the result equals the sub-network's own training-mode forward with
uncalibrated quantizers (``tests/train/test_soft_mbconv.py``).
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from hao.errors import ConfigError
from hao.quant import ActQuant, quantize_weight
from hao.space.elastic import centre_slice

__all__ = ["SoftMBConv", "soft_act_quant"]


#: One uncalibrated quantizer per bit-width: an uncalibrated :class:`ActQuant` quantizes over each batch's own range
#: (0 included), with straight-through gradients — the sub-network's own quantizer, reused, not re-derived.
_BATCH_RANGE = {}


def _act_quant(x: torch.Tensor, bits: int) -> torch.Tensor:
    if bits not in _BATCH_RANGE:
        _BATCH_RANGE[bits] = ActQuant(bits)
    return _BATCH_RANGE[bits](x)


def soft_act_quant(x: torch.Tensor, options: tuple[int, ...], p: torch.Tensor) -> torch.Tensor:
    """``Σ_b p_b · Q_b(x)`` over the bit-widths ``options`` (one term at one-hot ``p``)."""
    return sum(p[i] * _act_quant(x, b) for i, b in enumerate(options) if _live(p[i]))


def _soft_weight(w: torch.Tensor, options: tuple[int, ...], p: torch.Tensor) -> torch.Tensor:
    return sum(p[i] * quantize_weight(w, b) for i, b in enumerate(options) if _live(p[i]))


def _live(p: torch.Tensor) -> bool:
    """Skip terms of exactly zero probability (one-hot choices): they add nothing and cost a quantization."""
    return bool(p.detach() != 0)


def _bn(x: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    c = x.shape[1]
    return F.batch_norm(x, None, None, bn.weight[:c], bn.bias[:c], True, 0.0, bn.eps)


class SoftMBConv(nn.Module):
    """Wraps a trained :class:`MBConvSupernet` (its weights are used, not copied) and runs the relaxed network.

    ``forward(x, probs)``: ``probs`` maps every decision name of the space to a probability vector over that
    decision's options (as :meth:`DecisionLogits.probs` returns)."""

    def __init__(self, supernet: nn.Module, space: object) -> None:
        super().__init__()
        if getattr(space, "family", None) != "mbconv":
            raise ConfigError(f"SoftMBConv relaxes MBConv supernets; space {getattr(space, 'name', space)!r} is of "
                              f"family {getattr(space, 'family', None)!r}. DMasking supports the mbconv family.")
        v3 = list(getattr(space, "mobilenet_v3_options", []))
        if v3:
            raise ConfigError(f"SoftMBConv relaxes the MobileNetV2 block only; space {space.name!r} uses the "
                              f"MobileNetV3 options {v3}. Search it with solver='ilp', 'front' or 'optuna' "
                              "(docs/search.md).")
        self.net = supernet
        self.space = space
        st = space._structure()
        self.options = {n: tuple(st["by_name"][n].options) for n in space.decision_names}

    def _opt(self, name: str) -> tuple[int, ...]:
        return self.options[name]

    def _block(self, blk: nn.Module, x: torch.Tensor, p: str, probs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        e, d, pr = blk.expand.conv, blk.dw.conv, blk.project.conv
        cin = x.shape[1]
        mid = e.max_out
        ratios, kernels = self._opt(f"{p}.ratio"), self._opt(f"{p}.kernel")
        p_r, p_k = probs[f"{p}.ratio"], probs[f"{p}.kernel"]
        ch = torch.arange(mid)
        mask = sum(p_r[i] * (ch < cin * r).to(x.dtype) for i, r in enumerate(ratios)).reshape(1, -1, 1, 1)
        # expand (1x1, widest), BN, ReLU6, channel mask
        ab = f"{p}.expand.a_bits"
        xq = soft_act_quant(x, self._opt(ab), probs[ab])
        w = _soft_weight(e.weight[:, :cin], self._opt(f"{p}.expand.w_bits"), probs[f"{p}.expand.w_bits"])
        h = F.relu6(_bn(F.conv2d(xq, w), blk.expand.bn)) * mask
        # depthwise: mixture over kernel sizes of the centre taps, then over bit-widths
        kmax = d.max_k
        wk = 0
        for i, k in enumerate(kernels):
            if not _live(p_k[i]):
                continue
            cm = torch.zeros(kmax, kmax, dtype=d.weight.dtype)
            cs = centre_slice(kmax, k)
            cm[cs, cs] = 1.0
            wk = wk + p_k[i] * _soft_weight(d.weight * cm, self._opt(f"{p}.dw.w_bits"), probs[f"{p}.dw.w_bits"])
        hq = soft_act_quant(h, self._opt(f"{p}.dw.a_bits"), probs[f"{p}.dw.a_bits"])
        h = F.relu6(_bn(F.conv2d(hq, wk, None, d.stride, kmax // 2, 1, mid), blk.dw.bn)) * mask
        # project: weight masked on its input channels, per ratio, so each slice has its own scales
        hq = soft_act_quant(h, self._opt(f"{p}.project.a_bits"), probs[f"{p}.project.a_bits"])
        wp = 0
        for i, r in enumerate(ratios):
            if not _live(p_r[i]):
                continue
            cmask = (ch < cin * r).to(pr.weight.dtype).reshape(1, -1, 1, 1)
            wp = wp + p_r[i] * _soft_weight(pr.weight * cmask, self._opt(f"{p}.project.w_bits"),
                                            probs[f"{p}.project.w_bits"])
        y = _bn(F.conv2d(hq, wp), blk.project.bn)
        if not blk.residual:
            return y
        # the integer pipeline's residual: the input as expand quantizes it + the projection at 8 bits (float
        # when the projection's input is float)
        pa = probs[f"{p}.project.a_bits"]
        p_float = sum(pa[i] for i, b in enumerate(self._opt(f"{p}.project.a_bits")) if b == 32)
        yq = (1 - p_float) * _act_quant(y, 8) + p_float * y if isinstance(p_float, torch.Tensor) else _act_quant(y, 8)
        return xq + yq

    def forward(self, x: torch.Tensor, probs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        net = self.net
        r = self.space.input_shape[1]  # a resolution-searching space's conditioned space: subsample the input
        if tuple(x.shape[-2:]) != (r, r):
            x = torch.nn.functional.interpolate(x, size=(r, r), mode="bilinear", align_corners=False, antialias=True)
        x = net.stem(x)
        for s, stage in enumerate(net.stages):
            depths = self._opt(f"s{s}.depth")
            p_d = probs[f"s{s}.depth"]
            deepest = max(dep for i, dep in enumerate(depths) if _live(p_d[i]))
            out = 0
            for b, blk in enumerate(stage[:deepest]):
                x = self._block(blk, x, f"s{s}.b{b}", probs)
                for i, dep in enumerate(depths):
                    if dep == b + 1 and _live(p_d[i]):
                        out = out + p_d[i] * x
            x = out
        return net.classifier(net.pooled(x))
