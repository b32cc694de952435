"""Joint ViT space: depth, heads, MLP ratio, per-matrix bits and Q-BERT quantization groups, as one supernet.

A small vision transformer (``hao.space.vit_net``): ``patch`` x ``patch`` patches, embedding width ``embed``
(fixed: a searchable width would need LayerNorm over sliced features, not a clean weight-sharing slice), heads
of ``head_dim`` channels. Per transformer layer ``i`` two units, both switched on while ``depth > i``:

* ``L{i}.attn`` — ``L{i}.heads``; the Q/K/V projections' weight and activation bits (``L{i}.qkv.w_bits``,
  ``.a_bits``: the three read one activation, so they share its quantizer) and their quantization groups
  ``L{i}.qkv.groups``; the output projection's ``L{i}.o.w_bits``, ``.a_bits`` and ``.groups``;
* ``L{i}.mlp`` — ``L{i}.mlp_ratio`` (hidden units = ratio · embed) and the bits of ``fc1`` and ``fc2``.

**Groups** (Q-BERT's group-wise quantization): ``0`` means one range for the whole matrix, ``g >= 1`` means
``g`` ranges per head (Q/K/V along their output rows, the output projection along its input columns, where the
heads are). The MLP matrices use hao's default per-output-channel ranges. The patch embedding and the classifier
are pinned at ``pin_bits``; attention's two matmuls, softmax, LayerNorm and GELU run in float32 (a table prices
them as float32 kernels). Group counts change accuracy only: a deployed kernel stores one scale per group, which
costs no measurable time and a few bytes (counted in no objective).

The Hessian proxy's layer perturbations (``unit_layers``) describe the sliced weights, their bits and their groups,
so ‖ΔW‖² (and HAWQ-V2's Ω) is that of the group-wise quantizer the network runs.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hao.errors import ConfigError
from hao.kernel import KernelSpec
from hao.space.base import Candidate, Decision, Gate, LayerPerturbation, SearchSpace, Unit
from hao.space.elastic import extract_subnet
from hao.space.vit_net import ViTNet, ViTSupernet

__all__ = ["ViTSpace"]


class ViTSpace(SearchSpace):
    """Joint vision-transformer architecture + per-matrix bits + quantization groups (see the module docstring).

    Parameters
    ----------
    input_shape: (channels, height, width); height and width must be multiples of ``patch``.
    patch: patch size (tokens = (height/patch) · (width/patch)).
    embed, head_dim: embedding width and channels per head (both fixed).
    depths: allowed numbers of transformer layers.
    heads, mlp_ratios: options per layer.
    w_bits, a_bits: bits options of every searchable matrix (32 = float).
    groups: options of ``L{i}.qkv.groups`` / ``L{i}.o.groups`` (0 = per matrix, g = g per head).
    pin_bits: bits of the patch embedding and the classifier.
    """

    family = "vit"

    def __init__(self, name: str = "vit", *, input_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10,
                 patch: int = 4, embed: int = 64, head_dim: int = 16, depths: Sequence[int] = (2, 3, 4),
                 heads: Sequence[int] = (1, 2, 4), mlp_ratios: Sequence[int] = (1, 2, 4),
                 w_bits: Sequence[int] = (2, 4, 8), a_bits: Sequence[int] = (4, 8), groups: Sequence[int] = (0, 1, 2),
                 pin_bits: int = 8) -> None:
        super().__init__(name)
        from hao.quant import check_bits

        if len(input_shape) != 3 or any(int(v) < 1 for v in input_shape):
            raise ConfigError(f"input_shape must be (channels, height, width) of positive ints, got {input_shape!r}.")
        self.input_shape = tuple(int(v) for v in input_shape)
        self.patch = int(patch)
        if self.patch < 1 or self.input_shape[1] % self.patch or self.input_shape[2] % self.patch:
            raise ConfigError(f"patch={patch!r} must be a positive divisor of the input's height and width "
                              f"{self.input_shape[1:]} (e.g. 4 for 28x28: 49 tokens).")
        self.tokens = (self.input_shape[1] // self.patch) * (self.input_shape[2] // self.patch)
        self.num_classes, self.embed, self.head_dim = int(num_classes), int(embed), int(head_dim)
        if min(self.num_classes, self.embed, self.head_dim) < 1:
            raise ConfigError(f"num_classes, embed and head_dim must be positive, got {num_classes!r}, {embed!r}, "
                              f"{head_dim!r}.")

        def ints(v: Sequence[int], what: str, lo: int) -> tuple[int, ...]:
            out = tuple(sorted(int(x) for x in v))
            if not out or out[0] < lo or len(set(out)) != len(out):
                raise ConfigError(f"{what} must be distinct ints >= {lo}, got {v!r}.")
            return out

        self.depths = ints(depths, "depths", 1)
        self.heads = ints(heads, "heads", 1)
        self.mlp_ratios = ints(mlp_ratios, "mlp_ratios", 1)
        self.groups = ints(groups, "groups", 0)
        bad = [g for g in self.groups if g and self.head_dim % g]
        if bad:
            ok = [g for g in range(1, self.head_dim + 1) if self.head_dim % g == 0]
            raise ConfigError(f"groups {bad} (ranges per head) must divide head_dim={self.head_dim}: valid values "
                              f"are 0 (one range per matrix) and {ok}.")
        self.w_bits = tuple(check_bits(b, "w_bits option") for b in w_bits)
        self.a_bits = tuple(check_bits(b, "a_bits option") for b in a_bits)
        self.pin_bits = check_bits(pin_bits, "pin_bits")

    def groups_of(self, heads: int, code: int) -> int | None:
        """The number of ranges of a head-split matrix: ``code`` 0 -> 1 (the whole matrix), g -> g per head."""
        return 1 if code == 0 else heads * code

    # ---- structure -------------------------------------------------------------------------------
    def _attn_decisions(self, i: int) -> list[Decision]:
        p = f"L{i}"
        return [Decision(f"{p}.heads", self.heads, "width"),
                Decision(f"{p}.qkv.w_bits", self.w_bits, "w_bits"), Decision(f"{p}.qkv.a_bits", self.a_bits, "a_bits"),
                Decision(f"{p}.qkv.groups", self.groups, "groups"),
                Decision(f"{p}.o.w_bits", self.w_bits, "w_bits"), Decision(f"{p}.o.a_bits", self.a_bits, "a_bits"),
                Decision(f"{p}.o.groups", self.groups, "groups")]

    def _mlp_decisions(self, i: int) -> list[Decision]:
        p = f"L{i}"
        return [Decision(f"{p}.mlp_ratio", self.mlp_ratios, "expand"),
                Decision(f"{p}.fc1.w_bits", self.w_bits, "w_bits"), Decision(f"{p}.fc1.a_bits", self.a_bits, "a_bits"),
                Decision(f"{p}.fc2.w_bits", self.w_bits, "w_bits"), Decision(f"{p}.fc2.a_bits", self.a_bits, "a_bits")]

    def decisions(self) -> tuple[Decision, ...]:
        out = [Decision("depth", self.depths, "depth")]
        for i in range(self.depths[-1]):
            out += self._attn_decisions(i) + self._mlp_decisions(i)
        return tuple(out)

    def units(self) -> tuple[Unit, ...]:
        out = []
        for i in range(self.depths[-1]):
            active = frozenset(d for d in self.depths if d > i)
            gate = None if len(active) == len(self.depths) else Gate("depth", active)
            out.append(Unit(f"L{i}.attn", tuple(d.name for d in self._attn_decisions(i)), gate))
            out.append(Unit(f"L{i}.mlp", tuple(d.name for d in self._mlp_decisions(i)), gate))
        return tuple(out)

    @staticmethod
    def _parse(unit: str) -> tuple[int, str]:
        layer, part = unit.split(".")
        return int(layer[1:]), part

    def unit_kernels(self, unit: str, local: Mapping[str, int] | None) -> list[KernelSpec]:
        if local is None:
            return []
        i, part = self._parse(unit)
        t, e, p = self.tokens, self.embed, f"L{i}"
        if part == "attn":
            h = local[f"{p}.heads"]
            width = h * self.head_dim
            qkv = (local[f"{p}.qkv.w_bits"], local[f"{p}.qkv.a_bits"])
            return [KernelSpec("layernorm", e, e, t, 1),
                    *[KernelSpec("linear", e, width, t, 1, 1, 1, 1, *qkv) for _ in range(3)],
                    *[KernelSpec("split_heads", width, width, t, 1, 1, 1, h) for _ in range(2)],  # Q, V
                    KernelSpec("split_heads_t", width, width, t, 1, 1, 1, h),  # Kᵀ
                    KernelSpec("bmm", width, h * t, t, 1, 1, 1, h),           # Q Kᵀ
                    KernelSpec("softmax", h * t, h * t, t, 1, 1, 1, h),
                    KernelSpec("bmm", h * t, width, t, 1, 1, 1, h),           # A V
                    KernelSpec("merge_heads", width, width, t, 1, 1, 1, h),
                    KernelSpec("linear", width, e, t, 1, 1, 1, 1, local[f"{p}.o.w_bits"], local[f"{p}.o.a_bits"]),
                    KernelSpec("add", e, e, t, 1)]
        hidden = local[f"{p}.mlp_ratio"] * e
        return [KernelSpec("layernorm", e, e, t, 1),
                KernelSpec("linear", e, hidden, t, 1, 1, 1, 1, local[f"{p}.fc1.w_bits"], local[f"{p}.fc1.a_bits"]),
                KernelSpec("gelu", hidden, hidden, t, 1),
                KernelSpec("linear", hidden, e, t, 1, 1, 1, 1, local[f"{p}.fc2.w_bits"], local[f"{p}.fc2.a_bits"]),
                KernelSpec("add", e, e, t, 1)]

    def unit_layers(self, unit: str, local: Mapping[str, int] | None) -> list[LayerPerturbation]:
        i, part = self._parse(unit)
        p, path = f"L{i}", f"blocks.{i}"
        if part == "attn":
            paths = [f"{path}.attn.{m}" for m in ("q", "k", "v", "o")]
            if local is None:
                return [LayerPerturbation(x, removed=True) for x in paths]
            width = local[f"{p}.heads"] * self.head_dim
            h = local[f"{p}.heads"]
            qkv = {"w_bits": local[f"{p}.qkv.w_bits"], "a_bits": local[f"{p}.qkv.a_bits"],
                   "w_groups": self.groups_of(h, local[f"{p}.qkv.groups"]), "w_axis": 0}
            return [*[LayerPerturbation(x, out_keep=width, **qkv) for x in paths[:3]],
                    LayerPerturbation(paths[3], in_keep=width, w_bits=local[f"{p}.o.w_bits"],
                                      a_bits=local[f"{p}.o.a_bits"], w_groups=self.groups_of(h, local[f"{p}.o.groups"]),
                                      w_axis=1)]
        paths = [f"{path}.mlp.fc1", f"{path}.mlp.fc2"]
        if local is None:
            return [LayerPerturbation(x, removed=True) for x in paths]
        hidden = local[f"{p}.mlp_ratio"] * self.embed
        return [LayerPerturbation(paths[0], out_keep=hidden, w_bits=local[f"{p}.fc1.w_bits"],
                                  a_bits=local[f"{p}.fc1.a_bits"]),
                LayerPerturbation(paths[1], in_keep=hidden, w_bits=local[f"{p}.fc2.w_bits"],
                                  a_bits=local[f"{p}.fc2.a_bits"])]

    def fixed_kernels(self) -> tuple[list[KernelSpec], list[KernelSpec]]:
        c, t, e, pin = self.input_shape[0], self.tokens, self.embed, self.pin_bits
        pre = [KernelSpec("linear", c * self.patch ** 2, e, t, 1, 1, 1, 1, pin, pin),
               KernelSpec("add", e, e, t, 1)]                                    # + position embedding
        post = [KernelSpec("layernorm", e, e, t, 1), KernelSpec("avgpool", e, e, t, 1),
                KernelSpec("dense", e, self.num_classes, 1, 1, 1, 1, 1, pin, pin)]
        return pre, post

    def fixed_layers(self) -> list[LayerPerturbation]:
        return [LayerPerturbation("patch_embed", self.pin_bits, self.pin_bits),
                LayerPerturbation("classifier", self.pin_bits, self.pin_bits)]

    # ---- torch -------------------------------------------------------------------------------------
    def supernet(self, seed: int = 0) -> ViTSupernet:
        return ViTSupernet(self, seed)

    def build(self, candidate: Candidate, supernet: Any = None, seed: int = 0) -> ViTNet:
        return extract_subnet(self, candidate, supernet, seed, ViTSupernet)
