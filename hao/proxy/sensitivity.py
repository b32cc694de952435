"""Sensitivity table Ω(layer, choice, bits) and the additive accuracy proxy.

For a trained supernet with weights W and per-layer Hessian traces Tr(H_l),

    Ω_l(choice, bits) = Tr(H_l) / n_l · ‖ΔW_l‖²,   ΔW_l = (weights the choice removes) + (Q_b(kept) − kept)

plus, when the table carries activation statistics (format 2), the activation-quantization term

    Ω^A_l(choice, a_bits) = Tr(H^A_l) · f_l · e_l(a_bits),

where H^A_l is the Hessian of the batch-mean loss w.r.t. layer l's input activation (from
``hessian_traces(..., method="ggn", activations=True)``), e_l(b) the mean squared error per element of quantizing
that activation to b bits with its calibrated per-tensor range (:func:`activation_quant_mse`), and f_l the share
of its channels the candidate keeps. The predicted loss increase of a candidate is ½ Σ_l Ω_l. The two parts of
ΔW live on disjoint entries, so
‖ΔW_l‖² = ‖W_l‖² − ‖W_kept‖² + ‖Q_b(W_kept) − W_kept‖² with Q_b per-output-channel symmetric (as the
fake-quantized sub-network computes it). A removed layer (its block is skipped) has ‖ΔW_l‖² = ‖W_l‖².

Curvature is clamped at zero: a layer whose trace estimate is negative (negative curvature away from a minimum,
or Hutchinson noise larger than the trace) gets Tr(H_l)/n_l = 0, so every Ω is >= 0 and the proxy stays a
monotone cost. The raw estimates stay in ``table.traces``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hao.errors import ConfigError, HaoError
from hao.proxy.hutchinson import HessianTraces
from hao.quant.fake import ActQuant, quantize_weight
from hao.quant.groupwise import quantize_weight_grouped
from hao.space.base import LayerPerturbation, SearchSpace
from hao.space.elastic import centre_slice

__all__ = ["SensitivityTable", "SensitivityCacheError", "float_weights", "perturbation_sq_norm", "layer_weights",
           "activation_quant_mse", "SENSITIVITY_FILE", "FORMAT_VERSION", "ACT_BITS"]

SENSITIVITY_FILE = "sensitivity.json"
FORMAT_VERSION = 2          # 2 adds "activations"; version-1 files (weights only) are still read
ACT_BITS = (2, 3, 4, 5, 6, 7, 8)


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
    if p.w_bits == 32:
        q = 0.0
    elif p.w_groups is not None:
        q = float((quantize_weight_grouped(kept, p.w_bits, p.w_groups, p.w_axis) - kept).pow(2).sum())
    else:
        q = float((quantize_weight(kept, p.w_bits) - kept).pow(2).sum())
    return max(removed, 0.0) + q


@torch.no_grad()
def activation_quant_mse(model: nn.Module, batches: Sequence, paths: Sequence[str],
                         bits: Sequence[int] = ACT_BITS) -> dict[str, dict[str, Any]]:
    """Per layer (module path), the mean squared error per element of quantizing its *input* activation.

    Two passes over ``batches`` (inputs, or (inputs, targets) pairs) in eval mode: the first records each
    input's min/max (the calibrated per-tensor range, as :func:`hao.quant.calibrate_activations` does), the
    second quantizes with :class:`~hao.quant.ActQuant` at each of ``bits`` and averages the squared error.
    Returns ``{path: {"mse": {bits: e}, "channels": C, "numel": elements per sample, "depthwise": bool}}``.
    The caller's model mode is restored."""
    mods = dict(model.named_modules())
    lack = [p for p in paths if p not in mods]
    if lack:
        raise ConfigError(f"activation_quant_mse: {lack[:4]} are not module paths of the model; valid paths look "
                          f"like {list(mods)[1:5]}.")
    for b in bits:
        if not isinstance(b, int) or not 2 <= b <= 8:
            raise ConfigError(f"activation bits must be ints in [2, 8], got {b!r}.")
    xs = [b[0] if isinstance(b, (tuple, list)) else b for b in batches]
    if not xs:
        raise ConfigError("activation_quant_mse needs at least one batch.")
    lo: dict[str, torch.Tensor] = {}
    hi: dict[str, torch.Tensor] = {}
    sq: dict[str, dict[int, float]] = {p: {b: 0.0 for b in bits} for p in paths}
    count: dict[str, int] = {p: 0 for p in paths}
    info: dict[str, dict[str, Any]] = {}
    state = {"pass": 1}

    def hook(path: str):
        def f(mod: nn.Module, args: tuple) -> None:
            x = args[0].detach()
            if state["pass"] == 1:
                lo[path] = torch.minimum(lo[path], x.amin()) if path in lo else x.amin()
                hi[path] = torch.maximum(hi[path], x.amax()) if path in hi else x.amax()
                w = getattr(mod, "weight", None)
                linear = isinstance(w, torch.Tensor) and w.dim() == 2    # features last: (B, C) or (B, T, C)
                info[path] = {"channels": (int(x.shape[-1]) if linear else int(x.shape[1])) if x.dim() > 1 else 1,
                              "numel": int(x[0].numel()) if x.dim() > 0 else 1,
                              "depthwise": bool(getattr(mod, "depthwise", False) or getattr(mod, "groups", 1) > 1)}
                return
            for b in bits:
                q = ActQuant(b)
                q.lo.copy_(lo[path])
                q.hi.copy_(hi[path])
                q.calibrated.fill_(True)
                sq[path][b] += float((q(x) - x).double().pow(2).sum())
            count[path] += x.numel()
        return f

    was = model.training
    model.eval()
    handles = [mods[p].register_forward_pre_hook(hook(p)) for p in paths]
    try:
        with float_weights(model):
            for state["pass"] in (1, 2):
                for x in xs:
                    model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    out = {}
    for p in paths:
        if p not in info:
            raise ConfigError(f"Layer {p!r} did not run on the batches (inactive?); activate the largest candidate.")
        out[p] = {**info[p], "range": [float(lo[p]), float(hi[p])],
                  "mse": {b: sq[p][b] / max(count[p], 1) for b in bits}}
    return out


def _key(p: LayerPerturbation) -> tuple:
    if p.removed:
        return (p.path, "removed")
    key = (p.path, p.out_keep, p.in_keep, p.kernel_keep, p.w_bits)
    # group-wise ranges: a sixth field "groups@axis" (keys of per-channel layers keep their five fields)
    return key if p.w_groups is None or p.w_bits == 32 else key + (f"{p.w_groups}@{p.w_axis}",)


def _key_str(k: tuple) -> str:
    return "|".join("-" if v is None else str(v) for v in k)


def _key_from_str(s: str) -> tuple:
    parts = s.split("|")
    if len(parts) == 2 and parts[1] == "removed":
        return (parts[0], "removed")
    if len(parts) not in (5, 6):
        raise HaoError(f"Malformed sensitivity entry key {s!r}; expected 'path|removed' or "
                       "'path|out_keep|in_keep|kernel_keep|w_bits' (then '|groups@axis' for group-wise ranges).")
    return (parts[0],) + tuple(None if v == "-" else int(v) for v in parts[1:5]) + tuple(parts[5:])


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
    #: per layer path: input-activation Hessian trace ("trace", "trace_se"), "numel" (per sample), "channels",
    #: "depthwise", calibrated "range" and "mse" {bits: per-element squared error}; None = weights only
    activations: dict[str, dict[str, Any]] | None = None

    # ---- construction -----------------------------------------------------------------------------------
    @classmethod
    def compute(cls, space: SearchSpace, supernet: nn.Module, traces: HessianTraces, *,
                checkpoint_sha256: str | None = None, meta: Mapping[str, Any] | None = None,
                activation_mse: Mapping[str, Mapping[str, Any]] | None = None) -> "SensitivityTable":
        """Ω for every distinct layer perturbation that any candidate of ``space`` can produce.

        With ``traces.activations`` (``hessian_traces(..., method="ggn", activations=True)``) and
        ``activation_mse`` (:func:`activation_quant_mse` on the same model), the table also carries the
        activation-quantization term; otherwise it is weights only."""
        weights = layer_weights(supernet)
        missing = [p for p in weights if p not in traces]
        acts = None
        if traces.activations and activation_mse is not None:
            acts = {}
            for lt in traces.activations:
                if lt.path not in activation_mse:
                    raise ConfigError(f"activation_mse lacks layer {lt.path!r}; compute it with "
                                      "activation_quant_mse(model, batches, [paths of traces.activations]).")
                st = activation_mse[lt.path]
                acts[lt.path] = {"trace": lt.mean, "trace_se": lt.std_error, "numel": lt.numel,
                                 "channels": int(st["channels"]), "depthwise": bool(st["depthwise"]),
                                 "range": list(st.get("range", [])),
                                 "mse": {int(b): float(e) for b, e in st["mse"].items()}}
        elif activation_mse is not None:
            raise ConfigError("activation_mse was given but the traces have no activation traces; compute them "
                              "with hessian_traces(..., method='ggn', activations=True).")
        t = cls(space.name, traces, {}, checkpoint_sha256, dict(meta or {}), weights, acts)
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
            t.omega_arch(p)  # the float version too: the architecture part alone (AccuracyProxy arch_weight)
        return t

    def omega(self, p: LayerPerturbation, activations: bool = True) -> float:
        """Ω of one layer perturbation: max(Tr(H_l), 0)/n_l · ‖ΔW_l‖², plus the activation term
        :meth:`omega_act` when the table has activation statistics and ``activations`` is true."""
        w = self.omega_weights(p)
        return w + self.omega_act(p) if activations and self.activations else w

    def omega_act(self, p: LayerPerturbation) -> float:
        """Activation term max(Tr(H^A_l), 0) · f_l · e_l(a_bits) (0 for float inputs, removed layers, or a
        weights-only table)."""
        if p.removed or p.a_bits == 32 or not self.activations:
            return 0.0
        st = self.activations.get(p.path)
        if st is None:
            raise ConfigError(f"No activation statistics for layer {p.path!r}; the table has "
                              f"{list(self.activations)[:4]}... Recompute it with compute_sensitivity(...).")
        e = st["mse"].get(int(p.a_bits))
        if e is None:
            raise ConfigError(f"No activation error for {p.a_bits} bits at {p.path!r}; the table has bits "
                              f"{sorted(st['mse'])}. Recompute it with those bits (activation_quant_mse(bits=...)).")
        c = st["channels"]
        keep = p.out_keep if st["depthwise"] else p.in_keep
        frac = 1.0 if keep is None else min(keep, c) / c
        return max(st["trace"], 0.0) * frac * e

    def omega_weights(self, p: LayerPerturbation) -> float:
        """Weight term of Ω: max(Tr(H_l), 0)/n_l · ‖ΔW_l‖²."""
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

    def omega_arch(self, p: LayerPerturbation) -> float:
        """The architecture part of :meth:`omega_weights`: Tr(H_l)/n_l · ‖weights the perturbation removes‖²
        (all of Ω for a removed layer; the kept weights left in float otherwise)."""
        if p.removed or p.w_bits == 32:
            return self.omega_weights(p)
        try:
            return self.omega_weights(dataclasses.replace(p, w_bits=32, a_bits=32))
        except ConfigError:
            raise ConfigError(f"The table has no float entry for {p.path!r} (tables computed before the "
                              "architecture part was stored lack them), and no supernet weights are attached. "
                              "Attach them (table.weights = hao.proxy.sensitivity.layer_weights(supernet)) or "
                              "recompute the table with SensitivityTable.compute.") from None

    def dw_sq(self, p: LayerPerturbation) -> float:
        """‖ΔW_l‖² of a perturbation (the Hessian-free baseline's term)."""
        self.omega_weights(p)
        return self.entries[_key(p)]["dw_sq"]

    # ---- persistence ------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"format": "hao-sensitivity", "version": FORMAT_VERSION, "space": self.space,
                "checkpoint_sha256": self.checkpoint_sha256, "meta": self.meta or {},
                "traces": self.traces.to_dict(),
                "activations": None if self.activations is None else {
                    p: {**st, "mse": {str(b): e for b, e in sorted(st["mse"].items())}}
                    for p, st in self.activations.items()},
                "entries": {_key_str(k): v for k, v in sorted(self.entries.items(), key=lambda kv: _key_str(kv[0]))}}

    def save(self, path: str | os.PathLike) -> Path:
        """Write JSON to ``path`` (a file, or a folder → ``folder/sensitivity.json``), atomically."""
        from hao.io import atomic_write_text

        path = Path(path)
        if path.is_dir():
            path = path / SENSITIVITY_FILE
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SensitivityTable":
        if not isinstance(d, Mapping) or d.get("format") != "hao-sensitivity":
            raise HaoError("Not a hao sensitivity table: expected a JSON object with format='hao-sensitivity'.")
        if d.get("version") not in (1, FORMAT_VERSION):
            raise HaoError(f"Sensitivity table version {d.get('version')!r} is not supported (this hao reads "
                           f"versions 1 and {FORMAT_VERSION}); recompute it with SensitivityTable.compute.")
        entries = {_key_from_str(k): {kk: float(vv) for kk, vv in v.items()} for k, v in d["entries"].items()}
        acts = None
        if d.get("activations") is not None:
            try:
                acts = {str(p): {"trace": float(st["trace"]), "trace_se": float(st["trace_se"]),
                                 "numel": int(st["numel"]), "channels": int(st["channels"]),
                                 "depthwise": bool(st["depthwise"]), "range": [float(v) for v in st.get("range", [])],
                                 "mse": {int(b): float(e) for b, e in st["mse"].items()}}
                        for p, st in d["activations"].items()}
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise HaoError(f"Malformed 'activations' in a sensitivity table ({type(exc).__name__}: {exc}); "
                               "expected {path: {trace, trace_se, numel, channels, depthwise, mse: {bits: e}}}. "
                               "Recompute it with compute_sensitivity(...).") from None
        return cls(str(d["space"]), HessianTraces.from_dict(d["traces"]), entries, d.get("checkpoint_sha256"),
                   dict(d.get("meta") or {}), activations=acts)

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
            names = {space} if isinstance(space, str) else {space.name, space.checkpoint_name}
            if t.space not in names:
                raise SensitivityCacheError(f"Sensitivity table {str(path)!r} belongs to space {t.space!r}, not "
                                            f"{sorted(names)}.")
        return t
