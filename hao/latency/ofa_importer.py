"""Importer of block-level lookup tables in the OFA / ProxylessNAS YAML format (``hao latency import ofa``).

Once-for-All and ProxylessNAS publish per-device latency lookup tables that time whole blocks, not kernels:
a YAML mapping from a key to ``{count, mean, std}`` (``mean``/``std`` in ms over ``count`` runs). Keys name the
layer type, then ``-``-separated ``field:value`` parts::

    Conv-input:224x224x3-output:112x112x16                                   first 3x3 convolution
    expanded_conv-input:112x112x16-output:56x56x24-expand:64-kernel:3-stride:2-idskip:0-se:0-hs:0
    Conv_1-input:7x7x160-output:7x7x960                                      final expand (1x1) / feature mix
    AvgPool2D-input:7x7x960-output:1x1x960                                   global pool
    Conv_2-input:1x1x960-output:1x1x1280                                     feature mix after the pool
    Logits-input:1x1x1280-output:1000                                        classifier (with the pool when
                                                                             its input is larger than 1x1)

Shapes are ``height x width x channels``. In the MobileNetV3 format (keys with ``se`` and ``hs``), ``expand`` is
the block's *mid channel count*; in the ProxylessNAS / MobileNetV2 format (no ``se``/``hs``) it is the
*expansion ratio* (mid = input channels x ratio). Blocks become composite ``mbconv`` rows with the extra key
columns ``mid_channels``, ``se``, ``hswish``, ``idskip`` (declared in ``meta.json``); the other layer types become
plain kernels (``Conv`` a 3x3 convolution — the format does not store its kernel size; ``Logits`` a ``dense``
row whose ``in_h``/``in_w`` is its input's size, i.e. global pooling included when that is larger than 1x1).
Every row is float32 at batch 1; ``std_ms`` is the published std and ``repeats`` the published count.
A search space prices its candidates on such a table through its block kernels (``SearchSpace.unit_blocks``;
see docs/table_schema.md, "Block-level tables").
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

from hao.errors import TableError
from hao.kernel import BLOCK_COLUMNS
from hao.latency.importers import TableImporter, register_importer

__all__ = ["OFAImporter", "parse_ofa_key", "ofa_key"]

_SHAPE = re.compile(r"^\d+(x\d+)*$")
_TYPES = ("Conv", "expanded_conv", "Conv_1", "AvgPool2D", "Conv_2", "Logits")
_BLOCK_FIELDS = ("expand", "kernel", "stride", "idskip")


def _shape(text: str, key: str, what: str) -> tuple[int, ...]:
    if not _SHAPE.match(text):
        raise TableError(f"key {key!r}: {what} {text!r} is not a shape like 112x112x24 (height x width x channels).")
    return tuple(int(v) for v in text.split("x"))


def parse_ofa_key(key: str) -> dict[str, Any]:
    """``"expanded_conv-input:56x56x24-..."`` → ``{"type": ..., "input": (56, 56, 24), "output": (...), ...}``
    with the integer fields of blocks. Raises :class:`TableError` naming the key and what is wrong."""
    parts = str(key).split("-")
    kind = parts[0]
    if kind not in _TYPES:
        raise TableError(f"key {key!r}: unknown layer type {kind!r}; the OFA/ProxylessNAS format has {list(_TYPES)}.")
    out: dict[str, Any] = {"type": kind}
    for p in parts[1:]:
        name, sep, val = p.partition(":")
        if not sep:
            raise TableError(f"key {key!r}: part {p!r} is not 'field:value'.")
        if name in ("input", "output"):
            out[name] = _shape(val, key, name)
        elif name in _BLOCK_FIELDS + ("se", "hs"):
            if not val.isdigit():
                raise TableError(f"key {key!r}: {name} must be a non-negative integer, got {val!r}.")
            out[name] = int(val)
        else:
            raise TableError(f"key {key!r}: unknown field {name!r}; known: input, output, "
                             f"{', '.join(_BLOCK_FIELDS)}, se, hs.")
    for need in ("input", "output"):
        if need not in out:
            raise TableError(f"key {key!r}: no {need}:HxWxC part.")
    if len(out["input"]) != 3:
        raise TableError(f"key {key!r}: input must be height x width x channels, got {out['input']}.")
    if kind == "expanded_conv":
        missing = [f for f in _BLOCK_FIELDS if f not in out]
        if missing:
            raise TableError(f"key {key!r}: an expanded_conv key needs {list(_BLOCK_FIELDS)} (missing {missing}).")
        if ("se" in out) != ("hs" in out):
            raise TableError(f"key {key!r}: se and hs come together (MobileNetV3 format) or not at all.")
    return out


def ofa_key(kernel: Any, style: str = "mbv3", layer_type: str | None = None) -> str:
    """The OFA/ProxylessNAS key of a hao kernel (the inverse of the importer, used to write tables in that
    format): ``mbconv`` → ``expanded_conv`` (``style`` ``"mbv3"``: expand = mid channels with se/hs;
    ``"proxyless"``: expand = ratio), a 3x3 ``conv2d`` → ``Conv``, a 1x1 ``conv2d`` → ``Conv_1``, ``avgpool`` →
    ``AvgPool2D``, ``dense`` → ``Logits`` unless ``layer_type="Conv_2"`` (the feature mix after the pool)."""
    k = kernel
    if layer_type == "Conv_2":
        return f"Conv_2-input:1x1x{k.in_channels}-output:1x1x{k.out_channels}"
    io = f"input:{k.in_h}x{k.in_w}x{k.in_channels}-output:{k.out_h}x{k.out_w}x{k.out_channels}"
    if k.op == "mbconv":
        if style == "mbv3":
            extra = (f"-expand:{k.mid_channels}-kernel:{k.kernel}-stride:{k.stride}-idskip:{k.idskip}"
                     f"-se:{k.se}-hs:{k.hswish}")
        else:
            if k.mid_channels % k.in_channels or k.se or k.hswish:
                raise ValueError(f"{k.short()} cannot be written in the ProxylessNAS format (ratio, no se/hs).")
            extra = f"-expand:{k.mid_channels // k.in_channels}-kernel:{k.kernel}-stride:{k.stride}-idskip:{k.idskip}"
        return "expanded_conv-" + io + extra
    if k.op == "conv2d":
        return ("Conv-" if k.kernel == 3 else "Conv_1-") + io
    if k.op == "avgpool":
        return f"AvgPool2D-input:{k.in_h}x{k.in_w}x{k.in_channels}-output:1x1x{k.out_channels}"
    if k.op == "dense":
        return f"Logits-input:{k.in_h}x{k.in_w}x{k.in_channels}-output:{k.out_channels}"
    raise ValueError(f"no OFA key for op {k.op!r}.")


def _row(p: dict[str, Any], key: str) -> dict[str, Any]:
    h, w, c = p["input"]
    out = p["output"]
    cout = out[-1]
    row: dict[str, Any] = {"in_channels": c, "out_channels": cout, "in_h": h, "in_w": w, "kernel": 1, "stride": 1,
                           "groups": 1, "batch": 1, "w_bits": 32, "a_bits": 32}
    kind = p["type"]
    if kind in ("Conv", "Conv_1", "expanded_conv"):
        if len(out) != 3:
            raise TableError(f"key {key!r}: output must be height x width x channels, got {out}.")
        stride = p.get("stride", 1 if out[0] == h else 2)
        if (-(-h // stride), -(-w // stride)) != out[:2]:
            raise TableError(f"key {key!r}: output {out[0]}x{out[1]} is not the input {h}x{w} at stride {stride} "
                             "('same' padding: ceil(size / stride)).")
        row.update(op="conv2d", kernel=3 if kind == "Conv" else 1, stride=stride)
        if kind == "Conv_1" and stride != 1:
            raise TableError(f"key {key!r}: a Conv_1 (1x1) layer keeps its resolution; got {h}x{w} -> "
                             f"{out[0]}x{out[1]}.")
        if kind == "expanded_conv":
            mbv3 = "se" in p
            mid = p["expand"] if mbv3 else c * p["expand"]
            row.update(op="mbconv", kernel=p["kernel"], mid_channels=mid, se=p.get("se", 0), hswish=p.get("hs", 0),
                       idskip=p["idskip"])
            if mid < 1:
                raise TableError(f"key {key!r}: expand {p['expand']} gives {mid} mid channels; it must be >= 1.")
        return row
    if kind == "AvgPool2D":
        row.update(op="avgpool", out_channels=c)
        return row
    # Conv_2 and Logits: dense (Logits over a spatial input pools it first)
    if kind == "Conv_2" and (h, w) != (1, 1):
        raise TableError(f"key {key!r}: Conv_2 (the feature mix after the pool) must have a 1x1 input, got {h}x{w}.")
    row.update(op="dense")
    return row


@register_importer("ofa")
class OFAImporter(TableImporter):
    """OFA / ProxylessNAS block-level latency lookup tables (YAML); see the module docstring."""

    default_hardware = "ofa-lut"
    default_file = ""  # tables are per device and not shipped: pass --source
    suffixes = (".yaml", ".yml")
    file_format = "an OFA/ProxylessNAS latency lookup table, YAML 'key: {count, mean, std}'"

    def read(self, source: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
        import yaml

        try:
            d = yaml.safe_load(Path(source).read_text())
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            raise TableError(f"{source}: not valid YAML{where}: {getattr(exc, 'problem', exc)}.") from None
        if not isinstance(d, dict) or not d:
            raise TableError(f"{source}: expected a non-empty YAML mapping of 'key: {{count, mean, std}}', got "
                             f"{type(d).__name__}.")
        rows = []
        styles = set()
        for key, v in d.items():
            try:
                p = parse_ofa_key(key)
                if not isinstance(v, dict) or "mean" not in v:
                    raise TableError(f"key {key!r}: the value must be a mapping with 'mean' (and 'std', 'count'), "
                                     f"got {v!r}.")
                row = _row(p, key)
                mean, std, count = float(v["mean"]), float(v.get("std", 0.0) or 0.0), int(v.get("count", 0) or 0)
            except (TypeError, ValueError) as exc:
                raise TableError(f"{source}: key {key!r}: {exc}") from None
            except TableError as exc:
                raise TableError(f"{source}: {exc}") from None
            if p["type"] == "expanded_conv":
                styles.add("mbv3" if "se" in p else "proxyless")
            rows.append({**row, "latency_ms": mean, "std_ms": max(std, 0.0), "repeats": max(count, 0),
                         "source_key": str(key)})
        if len(styles) > 1:
            raise TableError(f"{source}: mixes MobileNetV3 keys (with se/hs, expand = mid channels) and "
                             "ProxylessNAS keys (expand = ratio); one table must use one format.")
        df = pd.DataFrame(rows)
        for c in BLOCK_COLUMNS:
            df[c] = df[c].fillna(0).astype(int) if c in df.columns else 0
        df["layout"] = "NHWC"
        df["impl"] = "published"
        style = styles.pop() if styles else "none"
        meta = {
            "device": "as published (OFA / ProxylessNAS latency lookup table); name it with --hardware",
            "source": f"OFA/ProxylessNAS block-level latency lookup table ({Path(source).name})",
            "units": {"latency_ms": "ms (the format's 'mean'); std_ms its 'std'; repeats its 'count'"},
            "granularity": "block",
            "key_columns_extra": list(BLOCK_COLUMNS),
            "format": {"mbv3": "MobileNetV3 (expand = mid channels, se, hs)",
                       "proxyless": "ProxylessNAS / MobileNetV2 (expand = ratio)", "none": "no blocks"}[style],
            "batch": 1,
            "notes": "Blocks are composite 'mbconv' rows (expand 1x1 if mid != input channels, depthwise, optional "
                     "squeeze-excite, project 1x1, optional identity add). 'Conv' rows are taken as 3x3 "
                     "convolutions (the format does not store the kernel size); 'Logits' rows as a dense layer "
                     "whose in_h/in_w is its input's size (a global pool included when larger than 1x1). All rows "
                     "float32.",
        }
        return df, meta
