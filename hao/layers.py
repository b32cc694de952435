"""Shared building blocks (like timm's ``layers/``): every network family imports its blocks from here.

* :class:`ConvBNAct` — conv → BN → ReLU6 (or none): one fused kernel on the hardware;
* :class:`MBBlock` — the inverted residual of the MBConv spaces;
* :class:`ConvBNBasicBlock` — the residual block of the ResNet spaces (two ConvBNAct units + shortcut);
* :class:`BasicBlock`, :class:`Bottleneck` — torchvision's ResNet blocks, module for module (``hao.models``).
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["ConvBNAct", "MBBlock", "ConvBNBasicBlock", "BasicBlock", "Bottleneck"]


class ConvBNAct(nn.Module):
    """conv → BN → ReLU6 (or no activation): one fused kernel on the hardware."""

    def __init__(self, conv: nn.Module, bn: nn.Module, act: bool = True) -> None:
        super().__init__()
        self.conv, self.bn = conv, bn
        self.act = nn.ReLU6() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class MBBlock(nn.Module):
    """Inverted residual: 1x1 expand → kxk depthwise (stride) → 1x1 project (+ identity when shapes allow)."""

    def __init__(self, expand: ConvBNAct, dw: ConvBNAct, project: ConvBNAct, residual: bool) -> None:
        super().__init__()
        self.expand, self.dw, self.project = expand, dw, project
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.dw(self.expand(x)))
        return x + y if self.residual else y


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
