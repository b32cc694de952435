"""Elastic ResNet space (basic blocks): per-stage depth, per-block width ratio, per-layer bits.

A block is conv1 (3x3, stride) → conv2 (3x3) + shortcut (identity, or a 1x1 conv on the first block of a
stage when the shape changes). The width ratio keeps the first ``ratio%`` channels of conv1's output (conv2's
input). The shortcut conv shares conv1's bits (it reads the same quantized input; HAWQ-V3 ties them). The stem
and the classifier are pinned at 8 bits.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from hao.errors import ConfigError
from hao.kernel import KernelSpec
from hao.quant import QLinear
from hao.space.base import Candidate, Decision, LayerPerturbation
from hao.space.staged import StagedSpace
from hao.space.elastic import ElasticBatchNorm2d, ElasticConv2d, extract_subnet
from hao.layers import ConvBNAct, ConvBNBasicBlock

__all__ = ["ResNetSpace", "ResNetSupernet"]
PIN_BITS = 8


class ResNetNet(nn.Module):
    def __init__(self, stem: ConvBNAct, stages: nn.ModuleList, classifier: nn.Module) -> None:
        super().__init__()
        self.stem, self.stages, self.classifier = stem, stages, classifier
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            for block in stage:
                x = block(x)
        return self.classifier(torch.flatten(self.pool(x), 1))


def _cba(conv: ElasticConv2d, c: int, act: bool) -> ConvBNAct:
    m = ConvBNAct(conv, ElasticBatchNorm2d(c), act)
    if act:
        m.act = nn.ReLU()
    return m


class ResNetSupernet(ResNetNet):
    def __init__(self, space: "ResNetSpace", seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        stem = _cba(ElasticConv2d(space.input_shape[0], space.stem_channels, 3), space.stem_channels, True)
        stages = nn.ModuleList()
        c = space.stem_channels
        for cout, stride in space.stages:
            blocks = nn.ModuleList()
            for b in range(space.max_depth):
                cin, st = (c, stride) if b == 0 else (cout, 1)
                sc = None
                if st != 1 or cin != cout:
                    sc = _cba(ElasticConv2d(cin, cout, 1, st), cout, False)
                blocks.append(ConvBNBasicBlock(_cba(ElasticConv2d(cin, cout, 3, st), cout, True),
                                         _cba(ElasticConv2d(cout, cout, 3), cout, False), sc))
            stages.append(blocks)
            c = cout
        classifier = QLinear(c, space.num_classes, w_bits=PIN_BITS, a_bits=PIN_BITS)
        super().__init__(stem, stages, classifier)
        self._space = space
        for m in self.modules():
            if isinstance(m, ElasticConv2d):
                m.reset_parameters(g)
        with torch.no_grad():
            classifier.weight.copy_(torch.randn(classifier.weight.shape, generator=g) * 0.01)
            classifier.bias.zero_()
        self.stem.conv.set_active(space.stem_channels, 3, PIN_BITS, PIN_BITS)
        self.depths = [space.max_depth] * len(space.stages)
        self.set_active(space.make({f"s{s}.depth": space.max_depth for s in range(len(space.stages))}))

    def set_active(self, candidate: Candidate) -> None:
        self._space.validate(candidate)
        self.active = candidate
        d = candidate.as_dict()
        for s, stage in enumerate(self.stages):
            self.depths[s] = d[f"s{s}.depth"]
            for b, block in enumerate(stage):
                p = f"s{s}.b{b}"
                mid = max(1, block.conv1.conv.max_out * d[f"{p}.ratio"] // 100)
                w1, a1 = d[f"{p}.conv1.w_bits"], d[f"{p}.conv1.a_bits"]
                block.conv1.conv.set_active(mid, 3, w1, a1)
                block.conv2.conv.set_active(block.conv2.conv.max_out, 3, d[f"{p}.conv2.w_bits"],
                                            d[f"{p}.conv2.a_bits"])
                if block.shortcut is not None:
                    block.shortcut.conv.set_active(block.shortcut.conv.max_out, 1, w1, a1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for s, stage in enumerate(self.stages):
            for block in stage[: self.depths[s]]:
                x = block(x)
        return self.classifier(torch.flatten(self.pool(x), 1))

    def extract(self) -> ResNetNet:
        def cba(m: ConvBNAct, in_c: int) -> ConvBNAct:
            conv = m.conv.to_static(in_c)
            out = ConvBNAct(conv, m.bn.to_static(conv.out_channels), act=False)
            out.act = m.act.__class__()
            return out

        stem = cba(self.stem, self.stem.conv.max_in)
        c = stem.conv.out_channels
        stages = nn.ModuleList()
        for s, stage in enumerate(self.stages):
            blocks = nn.ModuleList()
            for block in stage[: self.depths[s]]:
                c1 = cba(block.conv1, c)
                c2 = cba(block.conv2, c1.conv.out_channels)
                sc = None if block.shortcut is None else cba(block.shortcut, c)
                blocks.append(ConvBNBasicBlock(c1, c2, sc))
                c = c2.conv.out_channels
            stages.append(blocks)
        net = ResNetNet(stem, stages, QLinear.from_linear(self.classifier, PIN_BITS, PIN_BITS))
        net.train(self.training)
        return net


class ResNetSpace(StagedSpace):
    """Elastic-depth, elastic-width ResNet with per-layer bits (see the module docstring)."""

    family = "resnet"

    def __init__(self, name: str = "resnet", *, input_shape: Sequence[int] = (3, 32, 32), num_classes: int = 10,
                 stem_channels: int = 32, stages: Sequence[Sequence[int]] = ((32, 1), (64, 2), (128, 2)),
                 depths: Sequence[int] = (1, 2, 3), ratios: Sequence[int] = (50, 75, 100),
                 w_bits: Sequence[int] = (2, 4, 8), a_bits: Sequence[int] = (4, 8)) -> None:
        super().__init__(name)
        self.init_stages(input_shape, stem_channels, 1, stages, depths, w_bits, a_bits)
        self.num_classes = int(num_classes)
        self.ratios = tuple(int(r) for r in ratios)
        if any(not 1 <= r <= 100 for r in self.ratios):
            raise ConfigError(f"ratios are percentages in [1, 100], got {ratios!r}.")
        self._final = (self.final_channels, *self.final_hw)

    block_layers = ("conv1", "conv2")

    def block_decisions(self, unit: str) -> list[Decision]:
        return [Decision(f"{unit}.ratio", self.ratios, "width")]

    def _mid(self, cout: int, ratio: int) -> int:
        return max(1, cout * ratio // 100)

    def unit_kernels(self, unit: str, local: Mapping[str, int] | None) -> list[KernelSpec]:
        if local is None:
            return []
        s, b = self.parse_block(unit)
        cin, cout, st, (h, w), (oh, ow) = self._blocks[(s, b)]
        mid = self._mid(cout, local[f"{unit}.ratio"])
        w1, a1 = local[f"{unit}.conv1.w_bits"], local[f"{unit}.conv1.a_bits"]
        w2, a2 = local[f"{unit}.conv2.w_bits"], local[f"{unit}.conv2.a_bits"]
        ks = [KernelSpec("conv2d", cin, mid, h, w, 3, st, 1, w1, a1),
              KernelSpec("conv2d", mid, cout, oh, ow, 3, 1, 1, w2, a2)]
        if st != 1 or cin != cout:
            ks.append(KernelSpec("conv2d", cin, cout, h, w, 1, st, 1, w1, a1))
        ks.append(KernelSpec("add", cout, cout, oh, ow, 1, 1, 1, 32, 32 if a2 == 32 else 8))
        return ks

    def unit_layers(self, unit: str, local: Mapping[str, int] | None) -> list[LayerPerturbation]:
        s, b = self.parse_block(unit)
        cin, cout, st, _, _ = self._blocks[(s, b)]
        p = f"stages.{s}.{b}"
        has_sc = st != 1 or cin != cout
        if local is None:
            return ([LayerPerturbation(f"{p}.conv1.conv", removed=True),
                     LayerPerturbation(f"{p}.conv2.conv", removed=True)]
                    + ([LayerPerturbation(f"{p}.shortcut.conv", removed=True)] if has_sc else []))
        mid = self._mid(cout, local[f"{unit}.ratio"])
        w1, a1 = local[f"{unit}.conv1.w_bits"], local[f"{unit}.conv1.a_bits"]
        out = [LayerPerturbation(f"{p}.conv1.conv", w1, a1, out_keep=mid),
               LayerPerturbation(f"{p}.conv2.conv", local[f"{unit}.conv2.w_bits"], local[f"{unit}.conv2.a_bits"],
                                 in_keep=mid)]
        if has_sc:
            out.append(LayerPerturbation(f"{p}.shortcut.conv", w1, a1))
        return out

    def fixed_kernels(self) -> tuple[list[KernelSpec], list[KernelSpec]]:
        c, h, w = self.input_shape
        fc, fh, fw = self._final
        return ([KernelSpec("conv2d", c, self.stem_channels, h, w, 3, 1, 1, PIN_BITS, PIN_BITS)],
                [KernelSpec("avgpool", fc, fc, fh, fw, 1, 1, 1, 32, PIN_BITS),
                 KernelSpec("dense", fc, self.num_classes, 1, 1, 1, 1, 1, PIN_BITS, PIN_BITS)])

    def fixed_layers(self) -> list[LayerPerturbation]:
        return [LayerPerturbation("stem.conv", PIN_BITS, PIN_BITS), LayerPerturbation("classifier", PIN_BITS,
                                                                                      PIN_BITS)]

    def supernet(self, seed: int = 0) -> ResNetSupernet:
        return ResNetSupernet(self, seed)

    def build(self, candidate: Candidate, supernet: Any = None, seed: int = 0) -> ResNetNet:
        return extract_subnet(self, candidate, supernet, seed, ResNetSupernet)
