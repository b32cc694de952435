"""Sensitivity table Ω(layer, choice, bits) and the additive accuracy proxy (DESIGN §4).

For a trained supernet with weights W and per-layer Hessian traces Tr(H_l),

    Ω_l(choice, bits) = Tr(H_l) / n_l · ‖ΔW_l‖²,   ΔW_l = (weights the choice removes) + (Q_b(kept) − kept)

and the predicted loss increase of a candidate is ½ Σ_l Ω_l. The two parts of ΔW live on disjoint entries, so
‖ΔW_l‖² = ‖W_l‖² − ‖W_kept‖² + ‖Q_b(W_kept) − W_kept‖² with Q_b per-output-channel symmetric (as the
fake-quantized sub-network computes it). A removed layer (its block is skipped) has ‖ΔW_l‖² = ‖W_l‖².

Curvature is clamped at zero: a layer whose trace estimate is negative (negative curvature away from a minimum,
or Hutchinson noise larger than the trace) gets Tr(H_l)/n_l = 0, so every Ω is >= 0 and the proxy stays a
monotone cost. The raw estimates stay in ``table.traces``.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hao.errors import ConfigError, HaoError
from hao.proxy.hutchinson import HessianTraces
from hao.quant.fake import ActQuant, quantize_weight
from hao.space.base import LayerPerturbation, SearchSpace
from hao.space.elastic import centre_slice

__all__ = ["SensitivityTable", "SensitivityCacheError", "float_weights", "perturbation_sq_norm", "layer_weights",
           "SENSITIVITY_FILE", "FORMAT_VERSION"]

SENSITIVITY_FILE = "sensitivity.json"
FORMAT_VERSION = 1


class SensitivityCacheError(HaoError):
    """A cached sensitivity table does not belong to the checkpoint (hash) or space it is loaded for."""


@contextlib.contextmanager
def float_weights(model: nn.Module) -> Iterator[nn.Module]:
    """Temporarily switch every fake-quantizer of ``model`` to 32 bits (float), restoring the bits on exit.

    Hessian traces are those of the float network: the straight-through estimator has no curvature."""
    saved: list[tuple[Any, str, int]] = []
    for m in model.modules():
        if isinstance(m, ActQuant):
            saved.append((m, "bits", m.bits))
            m.bits = 32
        elif isinstance(getattr(m, "w_bits", None), int):
            saved.append((m, "w_bits", m.w_bits))
            m.w_bits = 32
    try:
        yield model
    finally:
        for m, attr, v in saved:
            setattr(m, attr, v)


def layer_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """``{module path: full weight tensor}`` of the model's conv/linear layers (detached, float64)."""
    from hao.proxy.hutchinson import weight_layers
    named = dict(model.named_parameters())
    return {path: named[pname].detach().double() for path, pname in weight_layers(model).items()}


def _kept(w: torch.Tensor, p: LayerPerturbation) -> torch.Tensor:
    out = w[: p.out_keep] if p.out_keep is not None else w
    if p.in_keep is not None and w.dim() >= 2:
        out = out[:, : p.in_keep]
    if p.kernel_keep is not None and w.dim() == 4:
        ks = centre_slice(w.shape[-1], p.kernel_keep)
        out = out[..., ks, ks]
    return out


@torch.no_grad()
def perturbation_sq_norm(w: torch.Tensor, p: LayerPerturbation) -> float:
    """‖ΔW‖² of one layer under perturbation ``p``: removed weights plus the quantization error of the kept slice."""
    if p.removed:
        return float(w.pow(2).sum())
    kept = _kept(w, p)
    removed = float(w.pow(2).sum() - kept.pow(2).sum())
    q = float((quantize_weight(kept, p.w_bits) - kept).pow(2).sum()) if p.w_bits != 32 else 0.0
    return max(removed, 0.0) + q


def _key(p: LayerPerturbation) -> tuple:
    if p.removed:
        return (p.path, "removed")
    return (p.path, p.out_keep, p.in_keep, p.kernel_keep, p.w_bits)


def _key_str(k: tuple) -> str:
    return "|".join("-" if v is None else str(v) for v in k)


def _key_from_str(s: str) -> tuple:
    parts = s.split("|")
    if len(parts) == 2 and parts[1] == "removed":
        return (parts[0], "removed")
    if len(parts) != 5:
        raise HaoError(f"Malformed sensitivity entry key {s!r}; expected 'path|removed' or "
                       "'path|out_keep|in_keep|kernel_keep|w_bits'.")
    return (parts[0],) + tuple(None if v == "-" else int(v) for v in parts[1:])


@dataclass
class SensitivityTable:
    """Ω(layer, choice, bits) for one space and one trained supernet, with its provenance.

    Build with :meth:`compute` (from a supernet and its :class:`HessianTraces`), persist with :meth:`save` /
    :meth:`load` (JSON next to the checkpoint, carrying the checkpoint's sha256), query with :meth:`omega`.
    ``omega`` of a perturbation not precomputed is computed on the fly if the weights are attached
    (``table.weights``), otherwise it raises naming the entry.
    """

    space: str
    traces: HessianTraces
    entries: dict[tuple, dict[str, float]]
    checkpoint_sha256: str | None = None
    meta: dict[str, Any] | None = None
    weights: dict[str, torch.Tensor] | None = None

    # ---- construction -----------------------------------------------------------------------------------
    @classmethod
    def compute(cls, space: SearchSpace, supernet: nn.Module, traces: HessianTraces, *,
                checkpoint_sha256: str | None = None, meta: Mapping[str, Any] | None = None) -> "SensitivityTable":
        """Ω for every distinct layer perturbation that any candidate of ``space`` can produce."""
        weights = layer_weights(supernet)
        missing = [p for p in weights if p not in traces]
        t = cls(space.name, traces, {}, checkpoint_sha256, dict(meta or {}), weights)
        perts: list[LayerPerturbation] = list(space.fixed_layers())
        for u in space.units():
            for opt in space.unit_options(u):
                perts.extend(space.unit_layers(u.name, opt))
        needed = {p.path for p in perts}
        lack = sorted(needed - set(traces.paths))
        if lack:
            raise ConfigError(f"The traces lack layers {lack[:4]} used by space {space.name!r}; compute traces "
                              f"on the space's supernet (hessian_traces(supernet, ...)). Traces have "
                              f"{list(traces.paths)[:4]}...; unused supernet layers: {missing[:4]}.")
        for p in perts:
            t.omega(p)
        return t

    def omega(self, p: LayerPerturbation) -> float:
        """Ω of one layer perturbation: max(Tr(H_l), 0)/n_l · ‖ΔW_l‖²."""
        k = _key(p)
        e = self.entries.get(k)
        if e is None:
            if self.weights is None or p.path not in self.weights:
                raise ConfigError(f"No sensitivity entry for {p} and no supernet weights attached to compute it; "
                                  "rebuild the table with SensitivityTable.compute(space, supernet, traces).")
            lt = self.traces[p.path]
            dw2 = perturbation_sq_norm(self.weights[p.path], p)
            e = {"omega": max(lt.per_param, 0.0) * dw2, "omega_se": lt.per_param_se * dw2, "dw_sq": dw2}
            self.entries[k] = e
        # Entries cached by older versions may hold a negative Ω (negative trace); ‖ΔW‖² ≥ 0, so clamping the
        # product equals clamping the curvature.
        return max(e["omega"], 0.0)

    def dw_sq(self, p: LayerPerturbation) -> float:
        """‖ΔW_l‖² of a perturbation (the Hessian-free baseline's term)."""
        self.omega(p)
        return self.entries[_key(p)]["dw_sq"]

    # ---- persistence ------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"format": "hao-sensitivity", "version": FORMAT_VERSION, "space": self.space,
                "checkpoint_sha256": self.checkpoint_sha256, "meta": self.meta or {},
                "traces": self.traces.to_dict(),
                "entries": {_key_str(k): v for k, v in sorted(self.entries.items(), key=lambda kv: _key_str(kv[0]))}}

    def save(self, path: str | os.PathLike) -> Path:
        """Write JSON to ``path`` (a file, or a folder → ``folder/sensitivity.json``)."""
        path = Path(path)
        if path.is_dir():
            path = path / SENSITIVITY_FILE
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SensitivityTable":
        if not isinstance(d, Mapping) or d.get("format") != "hao-sensitivity":
            raise HaoError("Not a hao sensitivity table: expected a JSON object with format='hao-sensitivity'.")
        if d.get("version") != FORMAT_VERSION:
            raise HaoError(f"Sensitivity table version {d.get('version')!r} is not supported (this hao reads "
                           f"version {FORMAT_VERSION}); recompute it with SensitivityTable.compute.")
        entries = {_key_from_str(k): {kk: float(vv) for kk, vv in v.items()} for k, v in d["entries"].items()}
        return cls(str(d["space"]), HessianTraces.from_dict(d["traces"]), entries, d.get("checkpoint_sha256"),
                   dict(d.get("meta") or {}))

    @classmethod
    def load(cls, path: str | os.PathLike, *, checkpoint: str | os.PathLike | None = None,
             space: SearchSpace | str | None = None) -> "SensitivityTable":
        """Read a table; with ``checkpoint`` verify its sha256, with ``space`` verify the space name.

        Raises :class:`SensitivityCacheError` on a mismatch, naming both values and how to recompute."""
        path = Path(path)
        if path.is_dir():
            path = path / SENSITIVITY_FILE
        if not path.is_file():
            raise ConfigError(f"Sensitivity table {str(path)!r} does not exist; compute it with "
                              "SensitivityTable.compute(space, supernet, traces).save(folder) or "
                              "`python experiments/train_supernet.py --sensitivity-only --out DIR`.")
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise HaoError(f"Sensitivity table {str(path)!r} is not valid JSON ({exc}).") from None
        t = cls.from_dict(d)
        if checkpoint is not None:
            from hao.train.supernet import file_sha256
            sha = file_sha256(checkpoint)
            if sha != t.checkpoint_sha256:
                raise SensitivityCacheError(
                    f"Sensitivity table {str(path)!r} was computed for a checkpoint with sha256 "
                    f"{str(t.checkpoint_sha256)[:16]}..., but {str(checkpoint)!r} has sha256 {sha[:16]}...; the "
                    "weights changed. Recompute it (SensitivityTable.compute(...).save(...)) or delete the file.")
        if space is not None:
            name = space if isinstance(space, str) else space.name
            if name != t.space:
                raise SensitivityCacheError(f"Sensitivity table {str(path)!r} belongs to space {t.space!r}, not "
                                            f"{name!r}.")
        return t
