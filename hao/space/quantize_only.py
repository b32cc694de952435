"""Quantize-only space over any user ``nn.Module`` (the HAWQ-V3 use case).

Every ``nn.Conv2d`` / ``nn.Linear`` (found by module path) is a layer. Pinned layers get fixed bits (by default
the first and the last at 8). Tie groups share one bit-width decision (e.g. a downsampling unit's first conv and
its shortcut conv, which read the same quantized input). With ``a_bits=None`` a layer's activation bits equal its
weight bits (HAWQ-V3's convention); otherwise weight and activation bits are separate decisions.

Kernels are the model's conv / linear layers (BN and activations fused) and its ``AdaptiveAvgPool2d`` modules;
element-wise ops that are not modules (residual adds) are not listed: a latency predictor's per-network overhead
covers them.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from hao.errors import ConfigError
from hao.kernel import KernelSpec
from hao.quant import QConv2d, QLinear, check_bits
from hao.space.base import Candidate, Decision, LayerPerturbation, SearchSpace, Unit

__all__ = ["QuantizeOnlySpace", "downsample_ties"]


def downsample_ties(model: nn.Module) -> list[tuple[str, str]]:
    """Tie each ``*.downsample.0`` conv with the ``*.conv1`` of the same block (torchvision ResNet layout)."""
    names = {n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    ties = []
    for n in sorted(names):
        if n.endswith(".downsample.0"):
            block = n[: -len(".downsample.0")]
            if f"{block}.conv1" in names:
                ties.append((f"{block}.conv1", n))
    return ties


def _set_module(root: nn.Module, path: str, new: nn.Module) -> None:
    parent, _, leaf = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, new)


class QuantizeOnlySpace(SearchSpace):
    """Per-layer bit-widths for a fixed model; see the module docstring."""

    family = "quantize-only"

    def __init__(self, name: str, model: nn.Module | Callable[[], nn.Module], input_shape: Sequence[int], *,
                 bits: Sequence[int] = (4, 8), a_bits: Sequence[int] | None = None,
                 ties: Iterable[Sequence[str]] = (), pinned: Mapping[str, int] | None = None,
                 pin_first_last: bool = True, pin_bits: int = 8) -> None:
        super().__init__(name)
        self._model = model() if callable(model) and not isinstance(model, nn.Module) else model
        if not isinstance(self._model, nn.Module):
            raise ConfigError(f"model must be an nn.Module or a factory returning one, got {type(model).__name__}.")
        self.input_shape = tuple(int(v) for v in input_shape)
        if len(self.input_shape) != 3:
            raise ConfigError(f"input_shape must be (channels, height, width), got {input_shape!r}.")
        self.bits = tuple(check_bits(b, "bits option") for b in bits)
        self.a_bits_options = None if a_bits is None else tuple(check_bits(b, "a_bits option") for b in a_bits)
        self.layer_paths = [n for n, m in self._model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        if not self.layer_paths:
            raise ConfigError("The model has no nn.Conv2d or nn.Linear layer to quantize.")
        last = self._model.get_submodule(self.layer_paths[-1])
        self.num_classes = last.out_features if isinstance(last, nn.Linear) else last.out_channels
        valid = set(self.layer_paths)
        pins = dict(pinned or {})
        if pin_first_last:
            pins.setdefault(self.layer_paths[0], pin_bits)
            pins.setdefault(self.layer_paths[-1], pin_bits)
        for p, b in pins.items():
            if p not in valid:
                raise ConfigError(f"pinned layer {p!r} is not a Conv2d/Linear of the model; valid paths include "
                                  f"{self.layer_paths[:6]}...")
            check_bits(b, f"pinned bits of {p!r}")
        self.pinned = pins
        parent = {p: p for p in self.layer_paths}

        def find(p: str) -> str:
            while parent[p] != p:
                p = parent[p]
            return p

        for group in ties:
            group = list(group)
            for p in group:
                if p not in valid:
                    raise ConfigError(f"tie group {group} names {p!r}, which is not a Conv2d/Linear of the model; "
                                      f"valid paths include {self.layer_paths[:6]}...")
                if p in pins:
                    raise ConfigError(f"layer {p!r} is both pinned and tied in {group}; unpin it or drop the tie.")
            for p in group[1:]:
                parent[find(p)] = find(group[0])
        order = {p: i for i, p in enumerate(self.layer_paths)}
        groups: dict[str, list[str]] = {}
        for p in self.layer_paths:
            if p not in pins:
                groups.setdefault(find(p), []).append(p)
        self.groups = sorted((sorted(g, key=order.get) for g in groups.values()), key=lambda g: order[g[0]])
        self._shapes_cache: dict[str, tuple[int, int]] | None = None

    @property
    def _shapes(self) -> dict[str, tuple[int, int]]:
        if self._shapes_cache is None:
            self._shapes_cache = self._trace_shapes()
        return self._shapes_cache

    @torch.no_grad()
    def _trace_shapes(self) -> dict[str, tuple[int, int]]:
        shapes: dict[str, tuple[int, int]] = {}
        hooks = []
        for n, m in self._model.named_modules():
            if isinstance(m, (nn.Conv2d, nn.Linear, nn.AdaptiveAvgPool2d)):
                hooks.append(m.register_forward_hook(
                    lambda mod, inp, out, n=n: shapes.__setitem__(n, tuple(inp[0].shape[2:4])
                                                                  if inp[0].dim() == 4 else (1, 1))))
        was = self._model.training
        self._model.eval()
        try:
            self._model(torch.zeros((1,) + self.input_shape))
        finally:
            self._model.train(was)
            for h in hooks:
                h.remove()
        return shapes

    # ---- structure ---------------------------------------------------------------------------------
    def decisions(self) -> tuple[Decision, ...]:
        out = []
        for g in self.groups:
            if self.a_bits_options is None:
                out.append(Decision(f"{g[0]}.bits", self.bits, "bits"))
            else:
                out.append(Decision(f"{g[0]}.w_bits", self.bits, "w_bits"))
                out.append(Decision(f"{g[0]}.a_bits", self.a_bits_options, "a_bits"))
        return tuple(out)

    def units(self) -> tuple[Unit, ...]:
        out = []
        for g in self.groups:
            decs = (f"{g[0]}.bits",) if self.a_bits_options is None else (f"{g[0]}.w_bits", f"{g[0]}.a_bits")
            out.append(Unit(g[0], decs))
        return tuple(out)

    def _group(self, unit: str) -> list[str]:
        for g in self.groups:
            if g[0] == unit:
                return g
        raise ConfigError(f"Unknown unit {unit!r} of space {self.name!r}.")

    def _unit_bits(self, unit: str, local: Mapping[str, int]) -> tuple[int, int]:
        if self.a_bits_options is None:
            b = local[f"{unit}.bits"]
            return b, b
        return local[f"{unit}.w_bits"], local[f"{unit}.a_bits"]

    def _kernel(self, path: str, w: int, a: int) -> KernelSpec:
        m = self._model.get_submodule(path)
        h, wd = self._shapes.get(path, (1, 1))
        if isinstance(m, nn.Linear):
            return KernelSpec("dense", m.in_features, m.out_features, 1, 1, 1, 1, 1, w, a)
        k, s = m.kernel_size[0], m.stride[0]
        dw = m.groups > 1 and m.groups == m.in_channels == m.out_channels
        spec = KernelSpec("dwconv2d" if dw else "conv2d", m.in_channels, m.out_channels, h, wd, k, s,
                          m.groups, w, a)
        return spec

    def unit_kernels(self, unit: str, local: Mapping[str, int] | None) -> list[KernelSpec]:
        w, a = self._unit_bits(unit, local)
        return [self._kernel(p, w, a) for p in self._group(unit)]

    def unit_layers(self, unit: str, local: Mapping[str, int] | None) -> list[LayerPerturbation]:
        w, a = self._unit_bits(unit, local)
        return [LayerPerturbation(p, w, a) for p in self._group(unit)]

    def fixed_kernels(self) -> tuple[list[KernelSpec], list[KernelSpec]]:
        pre, post = [], []
        first_unit_idx = min((self.layer_paths.index(g[0]) for g in self.groups), default=len(self.layer_paths))
        for p, b in self.pinned.items():
            (pre if self.layer_paths.index(p) < first_unit_idx else post).append(self._kernel(p, b, b))
        for n, m in self._model.named_modules():
            if isinstance(m, nn.AdaptiveAvgPool2d) and n in self._shapes:
                h, w = self._shapes[n]
                c = self._channels_into(n)
                if c:
                    post.insert(0, KernelSpec("avgpool", c, c, h, w, 1, 1, 1, 32, 8))
        return pre, post

    def _channels_into(self, pool_path: str) -> int:
        # channels of the last conv before the pool in module order
        c = 0
        for n, m in self._model.named_modules():
            if n == pool_path:
                break
            if isinstance(m, nn.Conv2d):
                c = m.out_channels
        return c

    def fixed_layers(self) -> list[LayerPerturbation]:
        return [LayerPerturbation(p, b, b) for p, b in self.pinned.items()]

    # ---- torch -------------------------------------------------------------------------------------
    def supernet(self, seed: int = 0) -> nn.Module:
        """The wrapped model itself (a deep copy; there is nothing to share)."""
        return copy.deepcopy(self._model)

    def activate(self, supernet: Any, candidate: Candidate) -> None:
        """Validate ``candidate``; there is nothing to select. Every candidate has the model's one architecture
        and the supernet is the plain float model (it has no ``set_active`` and no ``active``), so its forward
        runs that architecture in float whatever is activated; the candidate's bits take effect in
        :meth:`build`. This is all the proxy needs: its traces are those of the float largest network."""
        self.validate(candidate)
        if not isinstance(supernet, nn.Module):
            raise ConfigError(f"activate() needs the model returned by {self.name!r}.supernet(seed), got "
                              f"{type(supernet).__name__}.")

    def build(self, candidate: Candidate, supernet: Any = None, seed: int = 0) -> nn.Module:
        self.validate(candidate)
        model = copy.deepcopy(supernet if supernet is not None else self._model)
        for lp in self.perturbations(candidate):
            m = model.get_submodule(lp.path)
            new = (QLinear.from_linear(m, lp.w_bits, lp.a_bits) if isinstance(m, nn.Linear)
                   else QConv2d.from_conv(m, lp.w_bits, lp.a_bits))
            new.train(m.training)
            _set_module(model, lp.path, new)
        return model
