"""Shared building blocks (like timm's ``layers/``): every network family imports its blocks from here.

* :class:`ConvBNAct` — conv → BN → ReLU6 / h-swish (or none): one fused kernel on the hardware;
* :class:`SqueezeExcite` — MobileNetV3's squeeze-excite (float32);
* :class:`MBBlock` — the inverted residual of the MBConv spaces (optionally without expand, with squeeze-excite);
* :class:`ConvBNBasicBlock` — the residual block of the ResNet spaces (two ConvBNAct units + shortcut);
* :class:`BasicBlock`, :class:`Bottleneck` — torchvision's ResNet blocks, module for module (``hao.models``);
* :class:`BatchMatMul` — a matmul of two activations (attention's ``Q Kᵀ`` and ``A V``) as a module, so that
  MAC counters and hooks see it as they see convolutions and linear layers.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from hao.quant.fake import ActQuant

__all__ = ["ConvBNAct", "SqueezeExcite", "MBBlock", "follow_bits", "ConvBNBasicBlock", "BasicBlock", "Bottleneck",
           "BatchMatMul", "ACTIVATIONS", "activation", "squeeze_excite"]

#: activations of :class:`ConvBNAct` (``True`` means ``"relu6"``, ``False``/``None`` means none)
ACTIVATIONS = ("relu6", "hswish")


def activation(kind: str) -> nn.Module:
    """The module of an activation named in :data:`ACTIVATIONS`."""
    return {"relu6": nn.ReLU6, "hswish": nn.Hardswish}[kind]()


def squeeze_excite(x: torch.Tensor, reduce: Callable[[torch.Tensor], torch.Tensor],
                   expand: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``x * hsigmoid(expand(relu(reduce(mean_hw(x)))))``, ``reduce``/``expand`` the 1x1 layers (the one formula of
    :class:`SqueezeExcite`, which passes its modules so that module hooks see them, and of the supernet's elastic
    squeeze-excite, which passes sliced convolutions)."""
    return x * nn.functional.hardsigmoid(expand(torch.relu(reduce(x.mean((2, 3), keepdim=True)))))


class ConvBNAct(nn.Module):
    """conv → BN → activation (ReLU6, h-swish, or none): one fused kernel on the hardware."""

    def __init__(self, conv: nn.Module, bn: nn.Module, act: bool | str | None = True) -> None:
        super().__init__()
        self.conv, self.bn = conv, bn
        kind = "relu6" if act is True else (None if act in (False, None) else act)
        if kind is not None and kind not in ACTIVATIONS:
            raise ValueError(f"ConvBNAct act must be one of {ACTIVATIONS}, True, False or None; got {act!r}.")
        self.act_kind = kind
        self.act = activation(kind) if kind else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class SqueezeExcite(nn.Module):
    """MobileNetV3's squeeze-excite, in float32: ``x * hsigmoid(expand(relu(reduce(mean_hw(x)))))``, the
    reduce/expand layers 1x1 convolutions with bias."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1, bias=True)
        self.expand = nn.Conv2d(reduced, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return squeeze_excite(x, self.reduce, self.expand)


class MBBlock(nn.Module):
    """Inverted residual: 1x1 expand → kxk depthwise (stride) → [squeeze-excite] → 1x1 project (+ identity when
    shapes allow). ``expand=None`` is MobileNet's expansion-ratio-1 block (depthwise first).

    The residual add simulates the integer pipeline that deploys (``hao.deploy``): the identity is the block's
    input *as the first layer quantizes it* (one tensor feeds both), and the projection's output is quantized
    to ``out_quant`` (8 bits when the block is quantized, the int8 ``add`` kernel's input) before the add."""

    def __init__(self, expand: ConvBNAct | None, dw: ConvBNAct, project: ConvBNAct, residual: bool,
                 se: nn.Module | None = None) -> None:
        super().__init__()
        self.expand, self.dw, self.project = expand, dw, project
        self.se = se
        self.residual = residual
        if residual:
            self.out_quant = ActQuant(32, optional_state=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dw(x if self.expand is None else self.expand(x))
        if self.se is not None:
            y = self.se(y)
        y = self.project(y)
        if not self.residual:
            return y
        follow_bits(self.out_quant, self.project.conv.act_quant)
        first = self.dw if self.expand is None else self.expand
        return first.conv.act_quant(x) + self.out_quant(y)


def follow_bits(point: ActQuant, layer_input: ActQuant) -> None:
    """An extra quantization point of the integer pipeline (a residual output, the pooled head) is 8 bits while
    the layer it belongs to is quantized (``layer_input.bits != 32``), float otherwise — so ``set_bits`` and a
    float network (every layer at 32 bits) need not know about it."""
    point.bits = 32 if layer_input.bits == 32 else 8


class ConvBNBasicBlock(nn.Module):
    """Residual block of two :class:`ConvBNAct` units (+ an optional 1x1 shortcut unit): the block of the
    ``resnet-*`` spaces' supernets, whose convolutions are elastic."""

    def __init__(self, conv1: ConvBNAct, conv2: ConvBNAct, shortcut: ConvBNAct | None) -> None:
        super().__init__()
        self.conv1, self.conv2, self.shortcut = conv1, conv2, shortcut
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.shortcut is None else self.shortcut(x)
        return self.relu(self.conv2(self.conv1(x)) + idt)


class BasicBlock(nn.Module):
    """torchvision's ResNet basic block, module for module (``conv1, bn1, relu, conv2, bn2, downsample``)."""

    expansion = 1

    def __init__(self, cin: int, c: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, c, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=False)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + idt)


class Bottleneck(nn.Module):
    """torchvision's ResNet bottleneck block, module for module."""

    expansion = 4

    def __init__(self, cin: int, c: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, c, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.conv3 = nn.Conv2d(c, c * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c * 4)
        self.relu = nn.ReLU(inplace=False)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.relu(self.bn3(self.conv3(y)) + idt)


class BatchMatMul(nn.Module):
    """``torch.matmul(a, b)`` of two activations, batched over the leading dimensions (its MACs: the output's
    elements times ``a.shape[-1]``)."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.matmul(a, b)
