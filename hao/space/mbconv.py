"""Joint MBConv space (MobileNetV2 / FBNet / OFA family) as a weight-sharing supernet.

Per stage an elastic depth; per block a depthwise kernel size and an expansion ratio; per layer (expand,
depthwise, project) a weight and an activation bit-width. The stem, the head 1x1 conv and the classifier are
pinned at 8 bits. All candidates are sub-networks of one :class:`MBConvSupernet`.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from hao.errors import ConfigError
from hao.kernel import KernelSpec
from hao.layers import ConvBNAct, MBBlock, follow_bits
from hao.quant import ActQuant, QLinear
from hao.space.base import Candidate, Decision, LayerPerturbation
from hao.space.staged import StagedSpace
from hao.space.elastic import ElasticBatchNorm2d, ElasticConv2d, extract_subnet

__all__ = ["MBConvSpace", "MBConvSupernet", "ConvBNAct", "MBBlock"]  # blocks: from hao.layers

LAYERS = ("expand", "dw", "project")
PIN_BITS = 8



class MBConvNet(nn.Module):
    """stem → stages of MBBlocks → head 1x1 → global average pool → classifier."""

    def __init__(self, stem: ConvBNAct, stages: nn.ModuleList, head: ConvBNAct, classifier: nn.Module) -> None:
        super().__init__()
        self.stem, self.stages, self.head, self.classifier = stem, stages, head, classifier
        self.pool = nn.AdaptiveAvgPool2d(1)
        # the head's output as the integer pipeline stores it (u8) before the int8 average pool (see MBBlock)
        self.pool_quant = ActQuant(32, optional_state=True)

    def blocks(self) -> list[MBBlock]:
        """The active blocks, in order."""
        return [b for stage in self.stages for b in stage]

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        follow_bits(self.pool_quant, self.classifier.act_quant)
        return torch.flatten(self.pool(self.pool_quant(self.head(x))), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks():
            x = block(x)
        return self.classifier(self.pooled(x))


class MBConvSupernet(MBConvNet):
    """The weight-sharing supernet. ``set_active(candidate)`` selects the sub-network that ``forward`` runs."""

    def __init__(self, space: "MBConvSpace", seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        cin = space.input_shape[0]
        stem = ConvBNAct(ElasticConv2d(cin, space.stem_channels, 3, space.stem_stride),
                         ElasticBatchNorm2d(space.stem_channels))
        stages = nn.ModuleList()
        c = space.stem_channels
        for s, (cout, stride) in enumerate(space.stages):
            blocks = nn.ModuleList()
            for b in range(space.max_depth):
                bin_, st = (c, stride) if b == 0 else (cout, 1)
                mid = bin_ * max(space.ratios)
                blocks.append(MBBlock(
                    ConvBNAct(ElasticConv2d(bin_, mid, 1), ElasticBatchNorm2d(mid)),
                    ConvBNAct(ElasticConv2d(mid, mid, max(space.kernel_sizes), st, depthwise=True),
                              ElasticBatchNorm2d(mid)),
                    ConvBNAct(ElasticConv2d(mid, cout, 1), ElasticBatchNorm2d(cout), act=False),
                    residual=(st == 1 and bin_ == cout)))
            stages.append(blocks)
            c = cout
        head = ConvBNAct(ElasticConv2d(c, space.head_channels, 1), ElasticBatchNorm2d(space.head_channels))
        classifier = QLinear(space.head_channels, space.num_classes, w_bits=PIN_BITS, a_bits=PIN_BITS)
        super().__init__(stem, stages, head, classifier)
        self.space_name = space.name
        self._space = space
        for m in self.modules():
            if isinstance(m, ElasticConv2d):
                m.reset_parameters(g)
        with torch.no_grad():
            classifier.weight.copy_(torch.randn(classifier.weight.shape, generator=g) * 0.01)
            classifier.bias.zero_()
        self.depths = [space.max_depth] * len(space.stages)
        self.stem.conv.set_active(space.stem_channels, 3, PIN_BITS, PIN_BITS)
        self.head.conv.set_active(space.head_channels, 1, PIN_BITS, PIN_BITS)
        self.set_active(space.largest())

    def set_active(self, candidate: Candidate) -> None:
        sp = self._space
        sp.validate(candidate)
        self.active = candidate
        d = candidate.as_dict()
        for s, stage in enumerate(self.stages):
            self.depths[s] = d[f"s{s}.depth"]
            for b, block in enumerate(stage):
                p = f"s{s}.b{b}"
                k, r = d[f"{p}.kernel"], d[f"{p}.ratio"]
                mid = block.expand.conv.max_in * r
                block.expand.conv.set_active(mid, 1, d[f"{p}.expand.w_bits"], d[f"{p}.expand.a_bits"])
                block.dw.conv.set_active(mid, k, d[f"{p}.dw.w_bits"], d[f"{p}.dw.a_bits"])
                block.project.conv.set_active(block.project.conv.max_out, 1, d[f"{p}.project.w_bits"],
                                              d[f"{p}.project.a_bits"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks():
            x = block(x)
        return self.classifier(self.pooled(x))

    def blocks(self) -> list[MBBlock]:
        return [b for s, stage in enumerate(self.stages) for b in stage[: self.depths[s]]]

    def extract(self) -> MBConvNet:
        """A standalone copy of the active sub-network (static fake-quantized layers, sliced weights)."""
        def cba(m: ConvBNAct, in_c: int) -> ConvBNAct:
            conv = m.conv.to_static(in_c)
            return ConvBNAct(conv, m.bn.to_static(conv.out_channels), act=isinstance(m.act, nn.ReLU6))

        stem = cba(self.stem, self.stem.conv.max_in)
        c = stem.conv.out_channels
        stages = nn.ModuleList()
        for s, stage in enumerate(self.stages):
            blocks = nn.ModuleList()
            for block in stage[: self.depths[s]]:
                e = cba(block.expand, c)
                dw = cba(block.dw, e.conv.out_channels)
                pr = cba(block.project, dw.conv.out_channels)
                nb = MBBlock(e, dw, pr, block.residual)
                if block.residual:
                    nb.out_quant.load_state_dict(block.out_quant.state_dict())
                blocks.append(nb)
                c = pr.conv.out_channels
            stages.append(blocks)
        head = cba(self.head, c)
        cls = QLinear.from_linear(self.classifier, PIN_BITS, PIN_BITS)
        net = MBConvNet(stem, stages, head, cls)
        net.pool_quant.load_state_dict(self.pool_quant.state_dict())
        net.train(self.training)
        return net


class MBConvSpace(StagedSpace):
    """Joint MBConv architecture + per-layer bit-width space (see the module docstring).

    Parameters
    ----------
    stages: ``(out_channels, stride)`` per stage.
    depths: allowed depths of every stage (the deepest sets the supernet's block count).
    kernel_sizes, ratios: depthwise kernel sizes and expansion ratios per block.
    w_bits, a_bits: allowed weight / activation bits per layer (32 = float).
    """

    family = "mbconv"

    def __init__(self, name: str = "mbconv", *, input_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10,
                 stem_channels: int = 16, stages: Sequence[Sequence[int]] = ((32, 2), (48, 2), (64, 1), (96, 2)),
                 depths: Sequence[int] = (2, 3, 4), kernel_sizes: Sequence[int] = (3, 5, 7),
                 ratios: Sequence[int] = (3, 4, 6), w_bits: Sequence[int] = (2, 4, 8),
                 a_bits: Sequence[int] = (4, 8), head_channels: int = 256, stem_stride: int = 1) -> None:
        super().__init__(name)
        self.init_stages(input_shape, stem_channels, stem_stride, stages, depths, w_bits, a_bits)
        self.num_classes, self.head_channels = int(num_classes), int(head_channels)
        self.kernel_sizes = tuple(int(k) for k in kernel_sizes)
        if any(k % 2 == 0 or k < 1 for k in self.kernel_sizes):
            raise ConfigError(f"kernel_sizes must be odd positive ints, got {kernel_sizes!r}.")
        self.ratios = tuple(int(r) for r in ratios)
        self._final_hw = self.final_hw

    # ---- structure -------------------------------------------------------------------------------
    block_layers = LAYERS

    def block_decisions(self, unit: str) -> list[Decision]:
        return [Decision(f"{unit}.kernel", self.kernel_sizes, "kernel"),
                Decision(f"{unit}.ratio", self.ratios, "expand")]

    # largest() / smallest() are the base class's (every decision at its max / min option).

    def uniform(self, w_bits: int, a_bits: int, *, kernel: int | None = None, ratio: int | None = None,
                depth: int | None = None) -> Candidate:
        """:meth:`SearchSpace.uniform` (the largest architecture, every layer at ``w_bits``/``a_bits``), with
        optionally every block at the same ``kernel`` / ``ratio`` and every stage at the same ``depth``."""
        d = super().uniform(w_bits, a_bits).as_dict()
        for suffix, v in ((".kernel", kernel), (".ratio", ratio), (".depth", depth)):
            if v is not None:
                d.update({name: v for name in d if name.endswith(suffix)})
        return self.make(d)

    def unit_kernels(self, unit: str, local: Mapping[str, int] | None) -> list[KernelSpec]:
        if local is None:
            return []
        s, b = self.parse_block(unit)
        cin, cout, st, (h, w), (oh, ow) = self._blocks[(s, b)]
        k, r = local[f"{unit}.kernel"], local[f"{unit}.ratio"]
        mid = cin * r
        bits = {layer: (local[f"{unit}.{layer}.w_bits"], local[f"{unit}.{layer}.a_bits"]) for layer in LAYERS}
        ks = [
            KernelSpec("conv2d", cin, mid, h, w, 1, 1, 1, *bits["expand"]),
            KernelSpec("dwconv2d", mid, mid, h, w, k, st, mid, *bits["dw"]),
            KernelSpec("conv2d", mid, cout, oh, ow, 1, 1, 1, *bits["project"]),
        ]
        if st == 1 and cin == cout:
            ks.append(KernelSpec("add", cout, cout, oh, ow, 1, 1, 1, 32, 32 if bits["project"][1] == 32 else 8))
        return ks

    def unit_layers(self, unit: str, local: Mapping[str, int] | None) -> list[LayerPerturbation]:
        s, b = self.parse_block(unit)
        p = f"stages.{s}.{b}"
        if local is None:
            return [LayerPerturbation(f"{p}.{layer}.conv", removed=True) for layer in LAYERS]
        cin = self._blocks[(s, b)][0]
        mid = cin * local[f"{unit}.ratio"]
        k = local[f"{unit}.kernel"]

        def bits(layer: str) -> dict[str, int]:
            return {"w_bits": local[f"{unit}.{layer}.w_bits"], "a_bits": local[f"{unit}.{layer}.a_bits"]}

        return [LayerPerturbation(f"{p}.expand.conv", out_keep=mid, **bits("expand")),
                LayerPerturbation(f"{p}.dw.conv", out_keep=mid, kernel_keep=k, **bits("dw")),
                LayerPerturbation(f"{p}.project.conv", in_keep=mid, **bits("project"))]

    def fixed_kernels(self) -> tuple[list[KernelSpec], list[KernelSpec]]:
        c, h, w = self.input_shape
        fh, fw = self._final_hw
        last = self.stages[-1][0]
        pre = [KernelSpec("conv2d", c, self.stem_channels, h, w, 3, self.stem_stride, 1, PIN_BITS, PIN_BITS)]
        post = [KernelSpec("conv2d", last, self.head_channels, fh, fw, 1, 1, 1, PIN_BITS, PIN_BITS),
                KernelSpec("avgpool", self.head_channels, self.head_channels, fh, fw, 1, 1, 1, 32, PIN_BITS),
                KernelSpec("dense", self.head_channels, self.num_classes, 1, 1, 1, 1, 1, PIN_BITS, PIN_BITS)]
        return pre, post

    def fixed_layers(self) -> list[LayerPerturbation]:
        return [LayerPerturbation(p, PIN_BITS, PIN_BITS) for p in ("stem.conv", "head.conv", "classifier")]

    # ---- torch -------------------------------------------------------------------------------------
    def supernet(self, seed: int = 0) -> MBConvSupernet:
        return MBConvSupernet(self, seed)

    def build(self, candidate: Candidate, supernet: Any = None, seed: int = 0) -> MBConvNet:
        return extract_subnet(self, candidate, supernet, seed, MBConvSupernet)
