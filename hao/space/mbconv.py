"""Joint MBConv space (MobileNetV2 / FBNet / OFA family) as a weight-sharing supernet.

Per stage an elastic depth; per block a depthwise kernel size and an expansion ratio; per layer (expand,
depthwise, project) a weight and an activation bit-width. The stem, the head 1x1 conv and the classifier are
pinned at ``pin_bits`` (8). All candidates are sub-networks of one :class:`MBConvSupernet`.

MobileNetV3 / OFA-MobileNetV3 options (all off by default): squeeze-excite per stage (``se_stages``), h-swish
per stage (``hswish_stages``) and in the stem (``stem_act``), a fixed expansion-ratio-1 block after the stem
(``first_block`` channels) and a feature-mix layer after the pool (``feature_mix`` channels; the head 1x1 conv
is then OFA's "final expand" layer). Squeeze-excite runs in float32. Spaces using them are searched with any
latency table (block-level tables price them natively); the integer TVM deployment and the differentiable
solver support the plain MobileNetV2 block only and refuse them.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from hao.errors import ConfigError
from hao.kernel import KernelSpec, se_kernels
from hao.layers import ConvBNAct, MBBlock, activation, follow_bits
from hao.quant import ActQuant, QLinear
from hao.space.base import Candidate, Decision, LayerPerturbation
from hao.space.staged import StagedSpace
from hao.space.elastic import ElasticBatchNorm2d, ElasticConv2d, ElasticSE, extract_subnet

__all__ = ["MBConvSpace", "MBConvSupernet", "ConvBNAct", "MBBlock"]  # blocks: from hao.layers

LAYERS = ("expand", "dw", "project")
PIN_BITS = 8



class MBConvNet(nn.Module):
    """stem → [first block] → stages of MBBlocks → head 1x1 → global average pool → [feature mix] → classifier."""

    def __init__(self, stem: ConvBNAct, stages: nn.ModuleList, head: ConvBNAct, classifier: nn.Module,
                 first: MBBlock | None = None, feature_mix: nn.Module | None = None,
                 feature_act: str | None = None) -> None:
        super().__init__()
        self.stem, self.stages, self.head, self.classifier = stem, stages, head, classifier
        self.first, self.feature_mix = first, feature_mix
        self.feature_act = activation(feature_act) if feature_mix is not None else None
        self.pool = nn.AdaptiveAvgPool2d(1)
        #: input resolution of a resolution-searching space's candidate: inputs of another size are subsampled
        #: to it first (None: the input is used as given)
        self.resolution: int | None = None
        # the head's output as the integer pipeline stores it (u8) before the int8 average pool (see MBBlock)
        self.pool_quant = ActQuant(32, optional_state=True)

    def blocks(self) -> list[MBBlock]:
        """The active blocks, in order."""
        return [b for stage in self.stages for b in stage]

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        follow_bits(self.pool_quant, (self.classifier if self.feature_mix is None else self.feature_mix).act_quant)
        return torch.flatten(self.pool(self.pool_quant(self.head(x))), 1)

    def logits(self, pooled: torch.Tensor) -> torch.Tensor:
        if self.feature_mix is not None:
            pooled = self.feature_act(self.feature_mix(pooled))
        return self.classifier(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.resolution
        if r is not None and tuple(x.shape[-2:]) != (r, r):
            x = nn.functional.interpolate(x, size=(r, r), mode="bilinear", align_corners=False, antialias=True)
        x = self.stem(x)
        if self.first is not None:
            x = self.first(x)
        for block in self.blocks():
            x = block(x)
        return self.logits(self.pooled(x))


class MBConvSupernet(MBConvNet):
    """The weight-sharing supernet. ``set_active(candidate)`` selects the sub-network that ``forward`` runs."""

    def __init__(self, space: "MBConvSpace", seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        cin, pin = space.input_shape[0], space.pin_bits
        stem = ConvBNAct(ElasticConv2d(cin, space.stem_channels, 3, space.stem_stride),
                         ElasticBatchNorm2d(space.stem_channels), act=space.stem_act)
        first = None
        c = space.stem_channels
        if space.first_block:
            fb = space.first_block
            first = MBBlock(None, ConvBNAct(ElasticConv2d(c, c, 3, 1, depthwise=True), ElasticBatchNorm2d(c)),
                            ConvBNAct(ElasticConv2d(c, fb, 1), ElasticBatchNorm2d(fb), act=False), residual=(c == fb))
            c = fb
        stages = nn.ModuleList()
        for s, (cout, stride) in enumerate(space.stages):
            blocks = nn.ModuleList()
            act = space.stage_act(s)
            for b in range(space.max_depth):
                bin_, st = (c, stride) if b == 0 else (cout, 1)
                mid = bin_ * max(space.ratios)
                blocks.append(MBBlock(
                    ConvBNAct(ElasticConv2d(bin_, mid, 1), ElasticBatchNorm2d(mid), act=act),
                    ConvBNAct(ElasticConv2d(mid, mid, max(space.kernel_sizes), st, depthwise=True),
                              ElasticBatchNorm2d(mid), act=act),
                    ConvBNAct(ElasticConv2d(mid, cout, 1), ElasticBatchNorm2d(cout), act=False),
                    residual=(st == 1 and bin_ == cout), se=ElasticSE(mid) if space.se_stages[s] else None))
            stages.append(blocks)
            c = cout
        head = ConvBNAct(ElasticConv2d(c, space.head_channels, 1), ElasticBatchNorm2d(space.head_channels),
                         act=space.stage_act(len(space.stages) - 1) if space.feature_mix else True)
        feature_mix = None
        last = space.head_channels
        if space.feature_mix:
            feature_mix = QLinear(space.head_channels, space.feature_mix, w_bits=pin, a_bits=pin)
            last = space.feature_mix
        classifier = QLinear(last, space.num_classes, w_bits=pin, a_bits=pin)
        super().__init__(stem, stages, head, classifier, first, feature_mix, space.feature_act)
        self.space_name = space.name
        self._space = space
        for m in self.modules():
            if isinstance(m, (ElasticConv2d, ElasticSE)):
                m.reset_parameters(g)
        with torch.no_grad():
            for lin in (feature_mix, classifier):
                if lin is not None:
                    lin.weight.copy_(torch.randn(lin.weight.shape, generator=g) * (0.01 if lin is classifier else
                                                                                   (1.0 / lin.in_features) ** 0.5))
                    lin.bias.zero_()
        self.depths = [space.max_depth] * len(space.stages)
        self.stem.conv.set_active(space.stem_channels, 3, pin, pin)
        if first is not None:
            first.dw.conv.set_active(space.stem_channels, 3, pin, pin)
            first.project.conv.set_active(space.first_block, 1, pin, pin)
        self.head.conv.set_active(space.head_channels, 1, pin, pin)
        self.set_active(space.largest())

    def set_active(self, candidate: Candidate) -> None:
        sp = self._space
        sp.validate(candidate)
        self.active = candidate
        d = candidate.as_dict()
        self.resolution = d.get("resolution")
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

    def blocks(self) -> list[MBBlock]:
        return [b for s, stage in enumerate(self.stages) for b in stage[: self.depths[s]]]

    def extract(self) -> MBConvNet:
        """A standalone copy of the active sub-network (static fake-quantized layers, sliced weights)."""
        def cba(m: ConvBNAct, in_c: int) -> ConvBNAct:
            conv = m.conv.to_static(in_c)
            return ConvBNAct(conv, m.bn.to_static(conv.out_channels), act=m.act_kind)

        def block(blk: MBBlock, c: int) -> MBBlock:
            e = None if blk.expand is None else cba(blk.expand, c)
            dw = cba(blk.dw, c if e is None else e.conv.out_channels)
            se = None if blk.se is None else blk.se.to_static(dw.conv.out_channels)
            nb = MBBlock(e, dw, cba(blk.project, dw.conv.out_channels), blk.residual, se)
            if blk.residual:
                nb.out_quant.load_state_dict(blk.out_quant.state_dict())
            return nb

        pin = self._space.pin_bits
        stem = cba(self.stem, self.stem.conv.max_in)
        c = stem.conv.out_channels
        first = None
        if self.first is not None:
            first = block(self.first, c)
            c = first.project.conv.out_channels
        stages = nn.ModuleList()
        for s, stage in enumerate(self.stages):
            blocks = nn.ModuleList()
            for blk in stage[: self.depths[s]]:
                blocks.append(block(blk, c))
                c = blocks[-1].project.conv.out_channels
            stages.append(blocks)
        head = cba(self.head, c)
        fm = None if self.feature_mix is None else QLinear.from_linear(self.feature_mix, pin, pin)
        cls = QLinear.from_linear(self.classifier, pin, pin)
        net = MBConvNet(stem, stages, head, cls, first, fm, self._space.feature_act)
        net.pool_quant.load_state_dict(self.pool_quant.state_dict())
        net.resolution = self.resolution
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
    pin_bits: bits of the pinned layers (stem, first block, head, feature mix, classifier; 32 = float).
    se_stages, hswish_stages: per stage (or one bool for all): squeeze-excite in its blocks; h-swish instead of
        ReLU6 as its activation.
    stem_act: ``"relu6"`` or ``"hswish"``.
    first_block: output channels of a fixed expansion-ratio-1 block (3x3 depthwise + 1x1 project) after the
        stem; 0 for none.
    feature_mix: channels of a feature-mix layer between the pool and the classifier (OFA-MobileNetV3's head;
        h-swish if any stage uses it, else ReLU6); 0 for none.
    resolutions: input resolutions to search (square, in pixels; the largest must be ``input_shape``'s, the
        resolution of the data). With two or more, the space gains a ``resolution`` decision that conditions
        every block's kernels (:meth:`condition` gives the space at one resolution); the network subsamples its
        input to the candidate's resolution (bilinear, antialiased, as FBNetV2 searches resolution), and the
        deployed network takes inputs of that size. ``None``: no resolution decision.
    checkpoint_name: the checkpoint folder whose weights and accuracy models this space uses (default: its own
        name); a resolution-searching variant shares the weights of the space it extends.
    """

    family = "mbconv"

    def __init__(self, name: str = "mbconv", *, input_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10,
                 stem_channels: int = 16, stages: Sequence[Sequence[int]] = ((32, 2), (48, 2), (64, 1), (96, 2)),
                 depths: Sequence[int] = (2, 3, 4), kernel_sizes: Sequence[int] = (3, 5, 7),
                 ratios: Sequence[int] = (3, 4, 6), w_bits: Sequence[int] = (2, 4, 8),
                 a_bits: Sequence[int] = (4, 8), head_channels: int = 256, stem_stride: int = 1,
                 pin_bits: int = PIN_BITS, se_stages: bool | Sequence[bool] = False,
                 hswish_stages: bool | Sequence[bool] = False, stem_act: str = "relu6", first_block: int = 0,
                 feature_mix: int = 0, resolutions: Sequence[int] | None = None,
                 checkpoint_name: str | None = None) -> None:
        super().__init__(name)
        self._init_kwargs = dict(input_shape=input_shape, num_classes=num_classes, stem_channels=stem_channels,
                                 stages=stages, depths=depths, kernel_sizes=kernel_sizes, ratios=ratios,
                                 w_bits=w_bits, a_bits=a_bits, head_channels=head_channels, stem_stride=stem_stride,
                                 pin_bits=pin_bits, se_stages=se_stages, hswish_stages=hswish_stages,
                                 stem_act=stem_act, first_block=first_block, feature_mix=feature_mix,
                                 checkpoint_name=checkpoint_name)
        self._checkpoint_name = checkpoint_name
        from hao.quant import check_bits

        self.pin_bits = check_bits(pin_bits, "pin_bits")
        self.first_block, self.feature_mix = int(first_block), int(feature_mix)
        if self.first_block < 0 or self.feature_mix < 0:
            raise ConfigError(f"first_block and feature_mix are channel counts (0 = none), got {first_block!r} and "
                              f"{feature_mix!r}.")
        self.init_stages(input_shape, stem_channels, stem_stride, stages, depths, w_bits, a_bits,
                         entry_channels=self.first_block or None)
        n = len(self.stages)
        self.se_stages = self._per_stage(se_stages, n, "se_stages")
        self.hswish_stages = self._per_stage(hswish_stages, n, "hswish_stages")
        if stem_act not in ("relu6", "hswish"):
            raise ConfigError(f"stem_act must be 'relu6' or 'hswish', got {stem_act!r}.")
        self.stem_act = stem_act
        self.feature_act = ("hswish" if any(self.hswish_stages) else "relu6") if self.feature_mix else None
        self.num_classes, self.head_channels = int(num_classes), int(head_channels)
        self.kernel_sizes = tuple(int(k) for k in kernel_sizes)
        if any(k % 2 == 0 or k < 1 for k in self.kernel_sizes):
            raise ConfigError(f"kernel_sizes must be odd positive ints, got {kernel_sizes!r}.")
        self.ratios = tuple(int(r) for r in ratios)
        self._final_hw = self.final_hw
        self.resolutions = None if resolutions is None else tuple(sorted({int(r) for r in resolutions}))
        if self.resolutions is not None:
            c, h, w = self.input_shape
            if h != w or self.resolutions[-1] != h or self.resolutions[0] < 2 * self.stem_stride:
                raise ConfigError(f"resolutions {tuple(resolutions)!r}: the largest must be the data's resolution "
                                  f"(input_shape {self.input_shape}, square), and every one at least "
                                  f"{2 * self.stem_stride} pixels; e.g. resolutions=(20, 24, {h}). See "
                                  "docs/search.md, 'Input resolution'.")

    def decisions(self) -> tuple[Decision, ...]:
        out = super().decisions()
        if self.resolutions is None:
            return out
        return out + (Decision("resolution", self.resolutions, "resolution"),)

    def _condition(self, context: dict[str, int]) -> "MBConvSpace":
        r = context["resolution"]
        kw = dict(self._init_kwargs, input_shape=(self.input_shape[0], r, r), resolutions=(r,))
        sub = MBConvSpace(self.name, **kw)
        sub.native_resolution = self.input_shape[1]
        return sub

    @property
    def resolution(self) -> int:
        """The input resolution of this space's networks (height = width)."""
        return self.input_shape[1]

    @staticmethod
    def _per_stage(v: bool | Sequence[bool], n: int, what: str) -> tuple[bool, ...]:
        if isinstance(v, bool):
            return (v,) * n
        out = tuple(bool(x) for x in v)
        if len(out) != n:
            raise ConfigError(f"{what} needs one bool per stage ({n} stages), got {len(out)}: {v!r}.")
        return out

    @property
    def mobilenet_v3_options(self) -> list[str]:
        """The MobileNetV3 / OFA options this space uses (empty for the plain MobileNetV2 block). The integer TVM
        deployment and the differentiable solver refuse spaces that use any."""
        return [name for name, on in (("se_stages", any(self.se_stages)), ("hswish_stages", any(self.hswish_stages)),
                                      ("stem_act", self.stem_act != "relu6"), ("first_block", self.first_block),
                                      ("feature_mix", self.feature_mix)) if on]

    def stage_act(self, s: int) -> str:
        return "hswish" if self.hswish_stages[s] else "relu6"

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

    def unit_block(self, unit: str, local: Mapping[str, int]) -> KernelSpec:
        """Block ``unit`` as one composite ``mbconv`` kernel (what a block-level table times). A block-level table
        has one precision per block: the widest weight and activation bits of its three layers."""
        s, b = self.parse_block(unit)
        cin, cout, st, (h, w), _ = self._blocks[(s, b)]
        wb = max(local[f"{unit}.{layer}.w_bits"] for layer in LAYERS)
        ab = max(local[f"{unit}.{layer}.a_bits"] for layer in LAYERS)
        return KernelSpec("mbconv", cin, cout, h, w, local[f"{unit}.kernel"], st, 1, wb, ab,
                          mid_channels=cin * local[f"{unit}.ratio"], se=int(self.se_stages[s]),
                          hswish=int(self.hswish_stages[s]), idskip=int(st == 1 and cin == cout))

    def unit_blocks(self, unit: str, local: Mapping[str, int] | None) -> list[KernelSpec]:
        if local is None:
            return []
        if local[f"{unit}.ratio"] == 1:
            raise ConfigError(f"block {unit} at ratio 1 keeps its 1x1 expand convolution in this space, which a "
                              "block-level table cannot express (its convention: mid == input channels means no "
                              "expand layer). Price this space with a kernel-level table, or drop ratio 1 (a fixed "
                              "expand-free block is `first_block`); see docs/table_schema.md.")
        return [self.unit_block(unit, local)]

    def unit_kernels(self, unit: str, local: Mapping[str, int] | None) -> list[KernelSpec]:
        if local is None:
            return []
        s, b = self.parse_block(unit)
        cin, cout, st, (h, w), (oh, ow) = self._blocks[(s, b)]
        k, mid = local[f"{unit}.kernel"], cin * local[f"{unit}.ratio"]
        bits = {layer: (local[f"{unit}.{layer}.w_bits"], local[f"{unit}.{layer}.a_bits"]) for layer in LAYERS}
        ks = [KernelSpec("conv2d", cin, mid, h, w, 1, 1, 1, *bits["expand"]),
              KernelSpec("dwconv2d", mid, mid, h, w, k, st, mid, *bits["dw"])]
        if self.se_stages[s]:
            ks += se_kernels(mid, oh, ow)
        ks.append(KernelSpec("conv2d", mid, cout, oh, ow, 1, 1, 1, *bits["project"]))
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

    def _first_block(self) -> KernelSpec | None:
        if not self.first_block:
            return None
        c, h, w = self.stem_channels, *(-(-v // self.stem_stride) for v in self.input_shape[1:])
        return KernelSpec("mbconv", c, self.first_block, h, w, 3, 1, 1, self.pin_bits, self.pin_bits,
                          mid_channels=c, idskip=int(c == self.first_block))

    def _fixed(self, block: bool) -> tuple[list[KernelSpec], list[KernelSpec]]:
        c, h, w = self.input_shape
        fh, fw = self._final_hw
        last, pin = self.stages[-1][0], self.pin_bits
        pre = [KernelSpec("conv2d", c, self.stem_channels, h, w, 3, self.stem_stride, 1, pin, pin)]
        fb = self._first_block()
        if fb is not None:
            pre += [fb] if block else fb.block_parts()
        feat = self.feature_mix or self.head_channels
        post = [KernelSpec("conv2d", last, self.head_channels, fh, fw, 1, 1, 1, pin, pin)]
        if block and not self.feature_mix:  # block tables (ProxylessNAS's "Logits") time pool + classifier as one
            return pre, post + [KernelSpec("dense", feat, self.num_classes, fh, fw, 1, 1, 1, pin, pin)]
        post.append(KernelSpec("avgpool", self.head_channels, self.head_channels, fh, fw, 1, 1, 1, 32, pin))
        if self.feature_mix:
            post.append(KernelSpec("dense", self.head_channels, self.feature_mix, 1, 1, 1, 1, 1, pin, pin))
        post.append(KernelSpec("dense", feat, self.num_classes, 1, 1, 1, 1, 1, pin, pin))
        return pre, post

    def fixed_kernels(self) -> tuple[list[KernelSpec], list[KernelSpec]]:
        return self._fixed(block=False)

    def fixed_blocks(self) -> tuple[list[KernelSpec], list[KernelSpec]]:
        return self._fixed(block=True)

    def fixed_layers(self) -> list[LayerPerturbation]:
        pin = self.pin_bits
        paths = ["stem.conv"] + (["first.dw.conv", "first.project.conv"] if self.first_block else []) + [
            "head.conv"] + (["feature_mix"] if self.feature_mix else []) + ["classifier"]
        return [LayerPerturbation(p, pin, pin) for p in paths]

    # ---- torch -------------------------------------------------------------------------------------
    def supernet(self, seed: int = 0) -> MBConvSupernet:
        return MBConvSupernet(self, seed)

    def build(self, candidate: Candidate, supernet: Any = None, seed: int = 0) -> MBConvNet:
        return extract_subnet(self, candidate, supernet, seed, MBConvSupernet)
