"""The networks of the ViT family: a weight-sharing supernet and the standalone sub-networks cut out of it.

Patches (``patch`` x ``patch``, flattened) → linear patch embedding + learned position embedding → pre-norm
transformer blocks (multi-head attention, MLP with GELU; each with its residual) → LayerNorm → mean over the
tokens → linear classifier. Q, K, V, the output projection and both MLP matrices are fake-quantized
(:class:`~hao.quant.groupwise.QGroupLinear`; Q/K/V and the output projection with group-wise ranges); the
attention matmuls, softmax, LayerNorm and GELU run in float32.

Weight sharing: the supernet holds every matrix at its largest size. A candidate with ``h`` heads uses the first
``h`` heads (rows ``[:h·head_dim]`` of Q, K, V, columns of the output projection), an MLP ratio ``r`` the first
``r·embed`` hidden units; a depth ``d`` runs the first ``d`` blocks.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hao.layers import BatchMatMul
from hao.quant.fake import ActQuant, QLinear, quantize_weight
from hao.quant.groupwise import QGroupLinear, quantize_weight_grouped

__all__ = ["ElasticLinear", "Attention", "MLP", "ViTBlock", "ViTNet", "ViTSupernet"]


class ElasticLinear(nn.Module):
    """A linear layer of the supernet: the full weight, of which ``set_active`` selects ``[:out, :in]``, its bits
    and its quantization groups (``None`` = per output channel)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.max_in, self.max_out = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.act_quant = ActQuant(32)
        self.set_active(out_features, in_features, 32, 32)

    def reset_parameters(self, g: torch.Generator, std: float = 0.02) -> None:
        with torch.no_grad():
            self.weight.copy_(torch.randn(self.weight.shape, generator=g).clamp_(-2, 2) * std)
            self.bias.zero_()

    def set_active(self, out: int, inp: int, w_bits: int, a_bits: int, groups: int | None = None,
                   axis: int = 0) -> None:
        self.out, self.inp, self.w_bits, self.w_groups, self.w_axis = out, inp, w_bits, groups, axis
        self.act_quant.bits = a_bits

    def _weight(self) -> torch.Tensor:
        w = self.weight[: self.out, : self.inp]
        if self.w_bits == 32:
            return w
        if self.w_groups is None:
            return quantize_weight(w, self.w_bits)
        return quantize_weight_grouped(w, self.w_bits, self.w_groups, self.w_axis)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.act_quant(x), self._weight(), self.bias[: self.out])

    def to_static(self) -> QGroupLinear:
        q = QGroupLinear(self.inp, self.out, w_bits=self.w_bits, a_bits=self.act_quant.bits, w_groups=self.w_groups,
                         w_axis=self.w_axis)
        with torch.no_grad():
            q.weight.copy_(self.weight[: self.out, : self.inp])
            q.bias.copy_(self.bias[: self.out])
        q.act_quant.load_state_dict(self.act_quant.state_dict())
        return q

    def extra_repr(self) -> str:
        return (f"max {self.max_in}->{self.max_out}, active {self.inp}->{self.out}, w_bits={self.w_bits}, "
                f"a_bits={self.act_quant.bits}, w_groups={self.w_groups}")


class Attention(nn.Module):
    """Pre-norm multi-head self-attention with its residual: ``x + O(softmax(Q Kᵀ / √d) V)``."""

    def __init__(self, embed: int, q: nn.Module, k: nn.Module, v: nn.Module, o: nn.Module, heads: int,
                 head_dim: int, norm: nn.LayerNorm | None = None) -> None:
        super().__init__()
        self.norm = norm if norm is not None else nn.LayerNorm(embed)
        self.q, self.k, self.v, self.o = q, k, v, o
        self.heads, self.head_dim = heads, head_dim
        self.scores, self.context = BatchMatMul(), BatchMatMul()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        h, d = self.heads, self.head_dim
        y = self.norm(x)

        def split(z: torch.Tensor) -> torch.Tensor:
            return z.reshape(b, t, h, d).transpose(1, 2)

        # 1/√d applied to Q rather than to the scores: the same numbers (exactly so when d is a power of 4, as the
        # default 16: the scale is then a power of two), and a compiled network folds it into Q's head split instead
        # of running an (h, t, t) kernel of its own
        q, k, v = split(self.q(y) * d ** -0.5), split(self.k(y)), split(self.v(y))
        a = torch.softmax(self.scores(q, k.transpose(-2, -1)), dim=-1)
        return x + self.o(self.context(a, v).transpose(1, 2).reshape(b, t, h * d))


class MLP(nn.Module):
    """Pre-norm MLP with its residual: ``x + fc2(GELU(fc1(LN(x))))``."""

    def __init__(self, embed: int, fc1: nn.Module, fc2: nn.Module, norm: nn.LayerNorm | None = None) -> None:
        super().__init__()
        self.norm = norm if norm is not None else nn.LayerNorm(embed)
        self.fc1, self.fc2 = fc1, fc2
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(self.act(self.fc1(self.norm(x))))


class ViTBlock(nn.Module):
    def __init__(self, attn: Attention, mlp: MLP) -> None:
        super().__init__()
        self.attn, self.mlp = attn, mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.attn(x))


class ViTNet(nn.Module):
    """patches → patch embedding + position embedding → blocks → LayerNorm → token mean → classifier."""

    def __init__(self, patch: int, patch_embed: nn.Module, pos: torch.Tensor, blocks: nn.ModuleList,
                 norm: nn.LayerNorm, classifier: nn.Module) -> None:
        super().__init__()
        self.patch = patch
        self.patch_embed, self.blocks, self.norm, self.classifier = patch_embed, blocks, norm, classifier
        self.pos = nn.Parameter(pos.detach().clone())

    def active_blocks(self) -> list[ViTBlock]:
        return list(self.blocks)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, tokens, C·patch²), row-major over the patch grid."""
        b, c, h, w = x.shape
        p = self.patch
        # reshape + permute (not Tensor.unfold, which TVM's PyTorch frontend cannot import)
        t = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)   # B, H/p, W/p, C, p, p
        return t.reshape(b, (h // p) * (w // p), c * p * p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(self.tokens(x)) + self.pos
        for blk in self.active_blocks():
            x = blk(x)
        return self.classifier(self.norm(x).mean(dim=1))


class ViTSupernet(ViTNet):
    """The weight-sharing supernet of a :class:`~hao.space.vit.ViTSpace`; ``set_active(candidate)`` selects the
    sub-network ``forward`` runs."""

    def __init__(self, space: Any, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        e, hd, pin = space.embed, space.head_dim, space.pin_bits
        width, hidden = max(space.heads) * hd, max(space.mlp_ratios) * e
        blocks = nn.ModuleList()
        for _ in range(max(space.depths)):
            attn = Attention(e, ElasticLinear(e, width), ElasticLinear(e, width), ElasticLinear(e, width),
                             ElasticLinear(width, e), max(space.heads), hd)
            blocks.append(ViTBlock(attn, MLP(e, ElasticLinear(e, hidden), ElasticLinear(hidden, e))))
        c, p = space.input_shape[0], space.patch
        patch_embed = QLinear(c * p * p, e, w_bits=pin, a_bits=pin)
        classifier = QLinear(e, space.num_classes, w_bits=pin, a_bits=pin)
        pos = torch.randn((1, space.tokens, e), generator=g) * 0.02
        super().__init__(p, patch_embed, pos, blocks, nn.LayerNorm(e), classifier)
        self.space_name, self._space = space.name, space
        for m in self.modules():
            if isinstance(m, ElasticLinear):
                m.reset_parameters(g)
        with torch.no_grad():
            patch_embed.weight.copy_(torch.randn(patch_embed.weight.shape, generator=g) * (1.0 / (c * p * p)) ** 0.5)
            classifier.weight.copy_(torch.randn(classifier.weight.shape, generator=g) * 0.01)
            patch_embed.bias.zero_()
            classifier.bias.zero_()
        self.depth = max(space.depths)
        self.set_active(space.largest())

    def set_active(self, candidate: Any) -> None:
        sp = self._space
        sp.validate(candidate)
        self.active = candidate
        d = candidate.as_dict()
        self.depth = d["depth"]
        e, hd = sp.embed, sp.head_dim
        for i, blk in enumerate(self.blocks):
            p = f"L{i}"
            h = d[f"{p}.heads"]
            blk.attn.heads = h
            for name in ("q", "k", "v"):
                getattr(blk.attn, name).set_active(h * hd, e, d[f"{p}.qkv.w_bits"], d[f"{p}.qkv.a_bits"],
                                                   sp.groups_of(h, d[f"{p}.qkv.groups"]), 0)
            blk.attn.o.set_active(e, h * hd, d[f"{p}.o.w_bits"], d[f"{p}.o.a_bits"],
                                  sp.groups_of(h, d[f"{p}.o.groups"]), 1)
            hidden = d[f"{p}.mlp_ratio"] * e
            blk.mlp.fc1.set_active(hidden, e, d[f"{p}.fc1.w_bits"], d[f"{p}.fc1.a_bits"])
            blk.mlp.fc2.set_active(e, hidden, d[f"{p}.fc2.w_bits"], d[f"{p}.fc2.a_bits"])

    def active_blocks(self) -> list[ViTBlock]:
        return list(self.blocks[: self.depth])

    def extract(self) -> ViTNet:
        """A standalone copy of the active sub-network (static fake-quantized layers, sliced weights)."""
        import copy

        pin = self._space.pin_bits
        blocks = nn.ModuleList()
        for blk in self.active_blocks():
            a, m = blk.attn, blk.mlp
            attn = Attention(a.norm.normalized_shape[0], a.q.to_static(), a.k.to_static(), a.v.to_static(),
                             a.o.to_static(), a.heads, a.head_dim, copy.deepcopy(a.norm))
            mlp = MLP(m.norm.normalized_shape[0], m.fc1.to_static(), m.fc2.to_static(), copy.deepcopy(m.norm))
            blocks.append(ViTBlock(attn, mlp))
        net = ViTNet(self.patch, QLinear.from_linear(self.patch_embed, pin, pin), self.pos, blocks,
                     copy.deepcopy(self.norm), QLinear.from_linear(self.classifier, pin, pin))
        net.patch_embed.act_quant.load_state_dict(self.patch_embed.act_quant.state_dict())
        net.classifier.act_quant.load_state_dict(self.classifier.act_quant.state_dict())
        net.train(self.training)
        return net
