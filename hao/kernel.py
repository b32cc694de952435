"""`KernelSpec`: one fused unit of work as a compiler executes it.

This is the contract between search spaces (which list the kernels of a candidate) and latency models (which
time or predict them). It knows nothing of torch or TVM.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from hao.errors import ConfigError

__all__ = ["KernelSpec", "OPS", "CNN_OPS", "TOKEN_OPS", "LAYOUT_OPS", "BITS", "KEY_COLUMNS", "BLOCK_COLUMNS",
           "BLOCK_OPS", "se_channels", "se_kernels"]

#: Kernel kinds. ``conv2d`` is a dense (groups=1) convolution fused with BN and activation (1x1 included),
#: ``dwconv2d`` a depthwise convolution (groups = channels) fused with BN and activation, ``dense`` a fully
#: connected layer, ``avgpool`` a global average pool, ``add`` a residual element-wise add.
#: ``mbconv`` is a *composite* op — a whole inverted-residual block timed as one unit, as block-level tables
#: (OFA / ProxylessNAS lookup tables) time it: 1x1 expand (absent when ``mid_channels == in_channels``),
#: ``kernel``x``kernel`` depthwise at ``stride``, optional squeeze-excite, 1x1 project, optional identity add.
#:
#: Token ops (transformers; a sequence of ``in_h`` tokens, ``in_w = 1``): ``linear`` a dense layer applied to every
#: token (``in_channels -> out_channels``, plus bias); ``bmm`` the batched matmuls of
#: multi-head attention, ``groups`` = heads, each head an ``in_h x (in_channels/groups)`` by
#: ``(in_channels/groups) x (out_channels/groups)`` product of two activations (``Q Kᵀ``: ``in_channels`` =
#: heads·head_dim, ``out_channels`` = heads·tokens; ``A V``: ``in_channels`` = heads·tokens, ``out_channels`` =
#: heads·head_dim; ``w_bits`` is the second operand's precision); ``softmax`` over rows of
#: ``in_channels / groups`` (``in_channels = out_channels``), ``layernorm`` over the ``in_channels`` of every token,
#: ``gelu`` element-wise. A residual add and the mean over tokens are ``add`` and ``avgpool`` with ``in_w = 1``.
#: Attention's layout copies (``in_channels = out_channels`` = heads·head_dim, ``groups`` = heads), which a
#: compiled network runs as kernels of their own: ``split_heads`` token-major ``(tokens, C)`` to head-major
#: ``(heads, tokens, C/heads)`` (Q and V), ``split_heads_t`` to ``(heads, C/heads, tokens)`` (Kᵀ), ``merge_heads``
#: back to ``(tokens, C)``.
CNN_OPS = ("conv2d", "dwconv2d", "dense", "avgpool", "add")
#: token ops that only move data (attention's head layout copies)
LAYOUT_OPS = ("split_heads", "split_heads_t", "merge_heads")
TOKEN_OPS = ("linear", "bmm", "softmax", "layernorm", "gelu") + LAYOUT_OPS
OPS = CNN_OPS + ("mbconv",) + TOKEN_OPS
#: Composite ops (see :data:`BLOCK_COLUMNS`).
BLOCK_OPS = ("mbconv",)
#: Extra key columns of composite ops: expanded (mid) channels, squeeze-excite (0/1), h-swish activation (0/1),
#: identity skip (0/1). A block-level table declares them in ``meta.json["key_columns_extra"]``; every other op
#: leaves them at 0 and keeps the plain :data:`KEY_COLUMNS` key.
BLOCK_COLUMNS = ("mid_channels", "se", "hswish", "idskip")
#: Supported bit-widths; 32 means float32.
BITS = (2, 3, 4, 5, 6, 7, 8, 32)
#: Columns of a latency table that identify a kernel (see ``latency_models/README.md``).
KEY_COLUMNS = ("op", "in_channels", "out_channels", "in_h", "in_w", "kernel", "stride", "groups", "batch",
               "w_bits", "a_bits")


def se_channels(mid: int, divisor: int = 8) -> int:
    """Squeeze-excite width of a block with ``mid`` expanded channels: ``mid // 4`` rounded to the nearest
    multiple of ``divisor`` (never below ``divisor``, never more than 10% under ``mid // 4``) — MobileNetV3's rule
    as OFA and torchvision apply it."""
    v = mid // 4
    out = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if out < 0.9 * v:
        out += divisor
    return out


def se_kernels(mid: int, out_h: int, out_w: int, batch: int = 1) -> list["KernelSpec"]:
    """The float32 kernels of a squeeze-excite on ``mid`` channels at ``out_h`` x ``out_w``: global pool, reduce
    and expand dense layers (the channel scaling is element-wise and folded into the next layer's input)."""
    r = se_channels(mid)
    return [KernelSpec("avgpool", mid, mid, out_h, out_w, 1, 1, 1, 32, 32, batch),
            KernelSpec("dense", mid, r, 1, 1, 1, 1, 1, 32, 32, batch),
            KernelSpec("dense", r, mid, 1, 1, 1, 1, 1, 32, 32, batch)]


@dataclass(frozen=True, order=True)
class KernelSpec:
    """A fused kernel: shapes, bit-widths and layout.

    Convolutions use "same" padding (``kernel // 2``); the output size is ``ceil(in / stride)``.
    ``w_bits``/``a_bits`` are 32 for float32 kernels. ``avgpool`` and ``add`` carry ``kernel=1, stride=1``
    and ``w_bits = 32`` (no weights) with ``a_bits`` the activation precision.
    """

    op: str
    in_channels: int
    out_channels: int
    in_h: int
    in_w: int
    kernel: int = 1
    stride: int = 1
    groups: int = 1
    w_bits: int = 32
    a_bits: int = 32
    batch: int = 1
    layout: str = "NHWC"
    mid_channels: int = 0
    se: int = 0
    hswish: int = 0
    idskip: int = 0

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ConfigError(f"KernelSpec.op must be one of {OPS}, got {self.op!r}.")
        for name in ("in_channels", "out_channels", "in_h", "in_w", "kernel", "stride", "groups", "batch"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"KernelSpec.{name} must be a positive int, got {v!r}.")
        for name in ("w_bits", "a_bits"):
            v = getattr(self, name)
            if v not in BITS:
                raise ConfigError(f"KernelSpec.{name} must be one of {BITS}, got {v!r}.")
        if self.op in BLOCK_OPS:
            if not isinstance(self.mid_channels, int) or isinstance(self.mid_channels, bool) or self.mid_channels < 1:
                raise ConfigError(f"KernelSpec.mid_channels of an {self.op!r} block must be a positive int, got "
                                  f"{self.mid_channels!r}.")
            for name in ("se", "hswish", "idskip"):
                if getattr(self, name) not in (0, 1):
                    raise ConfigError(f"KernelSpec.{name} must be 0 or 1, got {getattr(self, name)!r}.")
            if self.groups != 1:
                raise ConfigError(f"KernelSpec.groups of an {self.op!r} block must be 1 (its depthwise layer is "
                                  f"implied), got {self.groups}.")
            if self.idskip and (self.stride != 1 or self.in_channels != self.out_channels):
                raise ConfigError(f"KernelSpec idskip=1 needs stride 1 and in_channels == out_channels, got stride "
                                  f"{self.stride}, {self.in_channels} -> {self.out_channels} channels.")
        elif any(getattr(self, c) for c in BLOCK_COLUMNS):
            raise ConfigError(f"KernelSpec fields {list(BLOCK_COLUMNS)} belong to composite ops {BLOCK_OPS}; "
                              f"op {self.op!r} must leave them at 0, got "
                              f"{ {c: getattr(self, c) for c in BLOCK_COLUMNS} }.")
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ConfigError(
                f"KernelSpec.groups={self.groups} must divide in_channels={self.in_channels} and "
                f"out_channels={self.out_channels}.")

    # ---- derived quantities -------------------------------------------------------------------------
    @property
    def out_h(self) -> int:
        return -(-self.in_h // self.stride) if self.op in ("conv2d", "dwconv2d", "mbconv") else (
            1 if self.op in ("avgpool", "dense") else self.in_h)

    @property
    def out_w(self) -> int:
        return -(-self.in_w // self.stride) if self.op in ("conv2d", "dwconv2d", "mbconv") else (
            1 if self.op in ("avgpool", "dense") else self.in_w)

    def block_parts(self) -> list["KernelSpec"]:
        """The plain kernels a composite block executes, in order (expand, depthwise, squeeze-excite pool and
        two dense layers, project, add); a plain kernel returns ``[self]``. MACs, parameters and bytes of a block
        are the sums over its parts."""
        if self.op not in BLOCK_OPS:
            return [self]
        cin, mid, cout = self.in_channels, self.mid_channels, self.out_channels
        h, w, b = self.in_h, self.in_w, self.batch
        wb, ab = self.w_bits, self.a_bits
        parts = []
        if mid != cin:
            parts.append(KernelSpec("conv2d", cin, mid, h, w, 1, 1, 1, wb, ab, b))
        parts.append(KernelSpec("dwconv2d", mid, mid, h, w, self.kernel, self.stride, mid, wb, ab, b))
        oh, ow = self.out_h, self.out_w
        if self.se:
            parts += se_kernels(mid, oh, ow, b)
        parts.append(KernelSpec("conv2d", mid, cout, oh, ow, 1, 1, 1, wb, ab, b))
        if self.idskip:
            parts.append(KernelSpec("add", cout, cout, oh, ow, 1, 1, 1, 32, 32 if ab == 32 else 8, b))
        return parts

    @property
    def macs(self) -> int:
        """Multiply-accumulates (0 for pooling and adds)."""
        if self.op in BLOCK_OPS:
            return sum(p.macs for p in self.block_parts())
        if self.op in ("conv2d", "dwconv2d"):
            return (self.batch * self.out_h * self.out_w * self.out_channels
                    * (self.in_channels // self.groups) * self.kernel * self.kernel)
        if self.op == "dense":
            return self.batch * self.in_channels * self.out_channels
        if self.op in ("linear", "bmm"):
            return self.batch * self.in_h * self.in_w * (self.in_channels // self.groups) * self.out_channels
        return 0

    @property
    def params(self) -> int:
        """Weight count (no bias)."""
        if self.op in BLOCK_OPS:
            return sum(p.params for p in self.block_parts())
        if self.op in ("conv2d", "dwconv2d"):
            return self.out_channels * (self.in_channels // self.groups) * self.kernel * self.kernel
        if self.op in ("dense", "linear"):
            return self.in_channels * self.out_channels
        return 0

    @property
    def elementwise_ops(self) -> int:
        """Element operations of pooling / add kernels (reads of the input)."""
        if self.op in BLOCK_OPS:
            return sum(p.elementwise_ops for p in self.block_parts())
        if self.op == "avgpool" or (self.op == "dense" and self.in_h * self.in_w > 1):  # a pooled dense reads HxW
            return self.batch * self.in_channels * self.in_h * self.in_w
        if self.op in ("add", "softmax", "layernorm", "gelu") + LAYOUT_OPS:
            return self.batch * self.in_channels * self.in_h * self.in_w
        return 0

    @property
    def bops(self) -> int:
        """Bit operations, MACs x w_bits x a_bits (HAWQ-V3's BOPs)."""
        if self.op in BLOCK_OPS:
            return sum(p.bops for p in self.block_parts())
        return self.macs * self.w_bits * self.a_bits

    @property
    def weight_bytes(self) -> float:
        if self.op in BLOCK_OPS:
            return sum(p.weight_bytes for p in self.block_parts())
        return self.params * self.w_bits / 8.0

    @property
    def input_bytes(self) -> float:
        """Bytes of the activations read; a ``bmm`` reads its second operand too (at ``w_bits``)."""
        n = self.batch * self.in_channels * self.in_h * self.in_w
        second = (self.batch * self.in_channels * self.out_channels // self.groups * self.w_bits / 8.0
                  if self.op == "bmm" else 0.0)
        return n * self.a_bits / 8.0 * (2 if self.op == "add" else 1) + second

    @property
    def output_bytes(self) -> float:
        return self.batch * self.out_channels * self.out_h * self.out_w * (4.0 if self.a_bits == 32 else 1.0)

    # ---- identity and serialisation ------------------------------------------------------------------
    def key(self) -> tuple:
        """The table key: ``KEY_COLUMNS``, followed by :data:`BLOCK_COLUMNS` for composite ops."""
        base = tuple(getattr(self, c) for c in KEY_COLUMNS)
        return base + tuple(getattr(self, c) for c in BLOCK_COLUMNS) if self.op in BLOCK_OPS else base

    def to_dict(self) -> dict[str, Any]:
        """All fields; the block fields only for composite ops (plain kernels serialise as they always have)."""
        d = dataclasses.asdict(self)
        if self.op not in BLOCK_OPS:
            for c in BLOCK_COLUMNS:
                del d[c]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "KernelSpec":
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - fields
        if unknown:
            raise ConfigError(f"Unknown KernelSpec field(s) {sorted(unknown)}; valid fields: {sorted(fields)}.")
        return cls(**{k: (int(v) if k not in ("op", "layout") else v) for k, v in d.items()})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, s: str) -> "KernelSpec":
        return cls.from_dict(json.loads(s))

    def short(self) -> str:
        """A compact readable string, e.g. ``conv2d_16x32_28x28_k3s1g1_w8a8``."""
        extra = (f"_m{self.mid_channels}" + "_se" * self.se + "_hs" * self.hswish + "_id" * self.idskip
                 if self.op in BLOCK_OPS else "")
        return (f"{self.op}_{self.in_channels}x{self.out_channels}_{self.in_h}x{self.in_w}_k{self.kernel}"
                f"s{self.stride}g{self.groups}_w{self.w_bits}a{self.a_bits}_b{self.batch}{extra}")
