"""Importers: published latency tables -> our schema, each as its own hardware folder.

Extension point: subclass :class:`TableImporter`, set ``name``, ``default_hardware`` and ``default_file``,
implement :meth:`TableImporter.read` (source file -> rows + metadata), decorate with :func:`register_importer`.
``run()`` validates the rows with the same checks as every table and writes the folder atomically.

Shipped importers (the published files ship in ``reference_data/``; provenance, licences and caveats in
``reference_data/README.md``):

* ``apq``  — APQ's BitFusion LUT (JSON, keys ``"(c_in, c_out, input_size, kernel, stride, padding, groups)-WwAa"``,
  values ``{"latency", "energy"}``, presumably ms and mJ, batch 1). The ``head``/``tail`` fixed costs go into
  ``meta.json["fixed_costs_ms"]``.
* ``haq``  — HAQ's MobileNetV2 cost table (``.npy``, int64 ``[53 layers, w_bit-1, a_bit-1]``, undocumented units,
  batch 16). Rows are mapped to layers as the data README derives; 1-bit entries are dropped (hao's bits start
  at 2). Units are *relative costs*, not ms: ``meta.json["units"]`` says so.
* ``hawq`` — HAWQ-V3's per-layer T4 latencies (``latency_int8`` / ``latency_int4`` arrays of the ResNet18 and
  ResNet50 ILP layers in ``hawq_v3_ilp.json``; ms at batch 8, inferred). Identical layer shapes measured several
  times become one row: median latency, ``std_ms`` the spread, ``repeats`` the number of layers merged.
"""
from __future__ import annotations

import json
import os
import re
import sys
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from hao.errors import ConfigError, TableError
from hao.registry import Registry
from hao.kernel import BLOCK_COLUMNS, KEY_COLUMNS
from hao.latency.table import LatencyTable, default_write_root, shadowed_by

__all__ = ["TableImporter", "IMPORTERS", "register_importer", "get_importer", "list_importers", "shared_data_dir",
           "APQImporter", "HAQImporter", "HAWQImporter", "merge_duplicates"]


def shared_data_dir() -> Path:
    """The folder the importers read their default files from: :func:`hao.paths.reference_data_dir`
    (``$HAO_REFERENCE_DATA`` or the shipped ``reference_data/``)."""
    from hao.paths import reference_data_dir

    return reference_data_dir()


def merge_duplicates(df: pd.DataFrame) -> pd.DataFrame:
    """Rows with the same kernel key -> one row: median latency, std of the values, repeats = count."""
    agg = {"latency_ms": "median"}
    keys = list(KEY_COLUMNS) + [c for c in BLOCK_COLUMNS if c in df.columns]  # blocks differ in these too
    g = df.groupby(keys, sort=False, dropna=False)
    out = g.agg(**{"latency_ms": ("latency_ms", "median"), "std_ms": ("latency_ms", lambda s: float(np.std(s))),
                   "repeats": ("latency_ms", "size")}).reset_index()
    rest = [c for c in df.columns if c not in out.columns]
    if rest:
        firsts = g[rest].first().reset_index(drop=True)
        out = pd.concat([out, firsts], axis=1)
    del agg
    return out


class TableImporter(ABC):
    """Base class of importers (see the module docstring). ``read`` must not write anything."""

    name: str = ""
    default_hardware: str = ""
    default_file: str = ""
    #: file name endings this importer reads (lower case, e.g. ``(".json",)``); empty: any
    suffixes: tuple[str, ...] = ()
    #: a few words on the expected file, used in error messages
    file_format: str = ""

    @abstractmethod
    def read(self, source: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
        """Parse ``source`` into table rows (our columns) and meta.json content. Raise :class:`TableError`
        naming the file and entry for malformed input."""

    def run(self, source: str | os.PathLike | None = None, hardware: str | None = None,
            root: str | os.PathLike | None = None, *, force: bool = False) -> Path:
        """Read ``source`` (default: the shipped copy of :attr:`default_file`) and write it as the hardware
        folder ``root/hardware`` (default root: the per-user folder, :func:`hao.paths.user_tables_dir`).

        Refuses, before writing anything, a folder that already holds something and a name that another known
        table already uses; ``force`` moves an existing folder aside (``root/.replaced/NAME-<time>``) first."""
        from hao.folders import claim_folder, refuse_package_folder

        what = f"hao latency import {self.name}"
        if source is None and not self.default_file:
            raise ConfigError(f"{what}: this format has no shipped default file (its tables are per device); pass "
                              f"--source PATH ({self.file_format}; see docs/table_schema.md).")
        src = Path(source) if source is not None else shared_data_dir() / self.default_file
        if not src.is_file():
            raise ConfigError(f"{what}: source file {src} does not exist. Pass --source PATH (the published file "
                              f"{self.default_file}; see reference_data/README.md) or set HAO_REFERENCE_DATA to "
                              "the folder holding it.")
        if self.suffixes and src.suffix.lower() not in self.suffixes:
            raise TableError(f"{what}: {src} has the ending {src.suffix or '(none)'!r}, but this importer reads "
                             f"{self.file_format} ({', '.join(self.suffixes)}). Pass the right file, or pick the "
                             f"importer for this format (known: {', '.join(list_importers())}).")
        hw = hardware or self.default_hardware
        if not hw or any(c in hw for c in "/\\") or hw.startswith("."):
            raise ConfigError(f"{what}: --hardware must be a folder name without slashes, got {hw!r}.")
        folder = Path(root if root is not None else default_write_root()) / hw
        refuse_package_folder(folder, what)
        conflicts = []
        other = shadowed_by(folder)
        if other is not None:
            conflicts.append(f"the name {hw!r} is already used by the table at {other}, which this one would "
                             "hide or be hidden by")
        try:
            df, meta = self.read(src)
        except UnicodeDecodeError:
            raise TableError(f"{what}: {src} is not text; this importer reads {self.file_format}.") from None
        if conflicts and not force:
            raise ConfigError(f"{what}: {conflicts[0]}. Nothing was changed. Choose another --hardware name, or "
                              "pass --force to shadow it (see docs/data.md).")
        moved = claim_folder(folder, force=force, what=what)
        if moved is not None:
            print(f"{what}: moved the old {folder} to {moved}", file=sys.stderr)
        meta = {"hardware": hw, **meta, "imported_from": str(src), "importer": self.name, "rows": len(df)}
        table = LatencyTable(df, meta, source=str(src))
        return table.save(folder)


IMPORTERS: Registry = Registry("table importer", base=TableImporter, entry_points="hao.table_importers",
                               builtins=("hao.latency.ofa_importer",),
                               hint="Register your own with @hao.latency.register_importer('name') (see "
                                    "CONTRIBUTING.md).")


def register_importer(name: str) -> Callable[[type], type]:
    """Class decorator: make a :class:`TableImporter` subclass available as ``get_importer(name)``."""
    return IMPORTERS.register(name)


def list_importers() -> list[str]:
    return IMPORTERS.names()


def get_importer(name: str) -> TableImporter:
    return IMPORTERS.create(name)


def _row(op: str, cin: int, cout: int, hw: int, k: int, s: int, g: int, w: int, a: int, b: int,
         lat: float, **extra: Any) -> dict[str, Any]:
    return {"op": op, "in_channels": cin, "out_channels": cout, "in_h": hw, "in_w": hw, "kernel": k, "stride": s,
            "groups": g, "batch": b, "w_bits": w, "a_bits": a, "latency_ms": float(lat), **extra}


_APQ_KEY = re.compile(r"^\((\d+), (\d+), (\d+), (\d+), (\d+), (\d+), (\d+)\)-W(\d+)A(\d+)$")


@register_importer("apq")
class APQImporter(TableImporter):
    default_hardware = "apq-bitfusion"
    default_file = "apq_bitfusion_lut.json"
    suffixes = (".json", ".dict")
    file_format = "APQ's BitFusion LUT, a JSON object (lut/BitFusion_new.b1.dict)"

    def read(self, source: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
        try:
            d = json.loads(source.read_text())
        except json.JSONDecodeError as exc:
            raise TableError(f"{source}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}.") from None
        if not isinstance(d, dict):
            raise TableError(f"{source}: expected a JSON object of '(shape)-WwAa' keys, got {type(d).__name__}.")
        rows, fixed = [], {}
        for key, v in d.items():
            if not isinstance(v, dict) or "latency" not in v:
                raise TableError(f"{source}: entry {key!r} must be an object with 'latency' (and 'energy'), got {v!r}.")
            if key in ("head", "tail"):
                fixed[key] = {"latency_ms": float(v["latency"]), "energy_mj": float(v.get("energy", float("nan")))}
                continue
            m = _APQ_KEY.match(key)
            if not m:
                raise TableError(f"{source}: entry key {key!r} does not match "
                                 "'(c_in, c_out, input_size, kernel, stride, padding, groups)-W<w>A<a>'.")
            cin, cout, size, k, s, pad, g, w, a = (int(x) for x in m.groups())
            if pad != k // 2:
                raise TableError(f"{source}: entry {key!r}: padding {pad} is not kernel//2={k // 2}; hao kernels use "
                                 "'same' padding.")
            op = "dwconv2d" if g > 1 else "conv2d"
            rows.append(_row(op, cin, cout, size, k, s, g, w, a, 1, v["latency"], energy_mj=float(v.get("energy"))))
        df = merge_duplicates(pd.DataFrame(rows))
        df["std_ms"] = df["std_ms"].fillna(0.0)
        df["repeats"] = 0
        df["layout"] = "NCHW"
        df["impl"] = "published"
        meta = {
            "device": "BitFusion accelerator (simulated), from APQ (mit-han-lab/apq, lut/BitFusion_new.b1.dict)",
            "source": "APQ BitFusion LUT, commit 428190a6198a522ca8af8e1b509657eb5688b2b0 (BSD-2-Clause)",
            "units": {"latency_ms": "presumably ms (APQ README reports whole-model latency in ms; not stated "
                                    "in the file)", "energy_mj": "presumably mJ"},
            "batch": "1 (file name b1; a code comment says batch=16: ambiguous)",
            "fixed_costs_ms": fixed,
            "supported_bits": sorted({f"w{w}a{a}" for w, a in zip(df.w_bits, df.a_bits)}),
            "notes": "repeats=0: published values without a repeat count. head/tail are the fixed stem/final "
                     "layer costs that APQ adds once per network. 7x7 depthwise has no A4 entries.",
        }
        return df, meta


# HAQ MobileNetV2 (data README, table "Row -> layer mapping")
def _haq_layers() -> list[tuple]:
    """(op, c_in, c_out, in_hw, kernel, stride, groups) for the 53 rows."""
    L: list[tuple] = [("conv2d", 3, 32, 224, 3, 2, 1), ("dwconv2d", 32, 32, 112, 3, 1, 32),
                      ("conv2d", 32, 16, 112, 1, 1, 1)]
    cin, hw = 16, 112
    for cout, n, s in ((24, 2, 2), (32, 3, 2), (64, 4, 2), (96, 3, 1), (160, 3, 2), (320, 1, 1)):
        for i in range(n):
            st = s if i == 0 else 1
            mid = cin * 6
            L.append(("conv2d", cin, mid, hw, 1, 1, 1))
            L.append(("dwconv2d", mid, mid, hw, 3, st, mid))
            hw = -(-hw // st)
            L.append(("conv2d", mid, cout, hw, 1, 1, 1))
            cin = cout
    L.append(("conv2d", 320, 1280, 7, 1, 1, 1))
    L.append(("dense", 1280, 1000, 1, 1, 1, 1))
    return L


@register_importer("haq")
class HAQImporter(TableImporter):
    default_hardware = "haq-mobilenetv2"
    default_file = "haq_mobilenetv2_latency.npy"
    suffixes = (".npy",)
    file_format = "HAQ's latency table, a NumPy .npy int64 array [53, 8, 8]"

    def read(self, source: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
        try:
            t = np.load(source, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise TableError(f"{source}: not a readable .npy array without pickles ({exc}).") from None
        layers = _haq_layers()
        if t.ndim != 3 or t.shape[0] != len(layers) or t.shape[1:] != (8, 8):
            raise TableError(f"{source}: expected shape ({len(layers)}, 8, 8) indexed [layer, w_bit-1, a_bit-1], "
                             f"got {t.shape}.")
        rows = []
        for i, (op, cin, cout, hw, k, s, g) in enumerate(layers):
            for w in range(2, 9):
                for a in range(2, 9):
                    v = float(t[i, w - 1, a - 1])
                    if not v > 0:
                        raise TableError(f"{source}: entry [{i}, {w - 1}, {a - 1}] (layer {i}, w{w}a{a}) is {v}; "
                                         "costs must be > 0.")
                    rows.append(_row(op, cin, cout, hw, k, s, g, w, a, 16, v, source_row=i))
        df = merge_duplicates(pd.DataFrame(rows))
        df["layout"] = "NCHW"
        df["impl"] = "published"
        meta = {
            "device": "HAQ 'cloud_latency' hardware simulator (mit-han-lab/haq, "
                      "lib/simulator/lookup_tables/qmobilenetv2_imagenet100_batch16_latency_table.npy)",
            "source": "HAQ MobileNetV2 latency table, commit 8228d126c800446fdc1cc263555d1e5aed7d9dfd (MIT)",
            "units": {"latency_ms": "RELATIVE COST, undocumented integer units (NOT milliseconds); use ratios "
                                    "only, as HAQ does (cost / cost at w8a8)"},
            "batch": 16,
            "supported_bits": [f"w{w}a{a}" for w in range(2, 9) for a in range(2, 9)],
            "notes": "Rows mapped to MobileNetV2 layers as derived in reference_data/README.md (not by running the "
                     "model). 1-bit entries dropped. Identical repeated blocks merged (repeats = count, std_ms = "
                     "spread). Row 52 (FC) looks synthetic (~5000*w_bit).",
        }
        return df, meta


@register_importer("hawq")
class HAWQImporter(TableImporter):
    default_hardware = "hawq-t4"
    default_file = "hawq_v3_ilp.json"
    suffixes = (".json",)
    file_format = "the HAWQ-V3 ILP inputs, a JSON object with a 'models' mapping (hawq_v3_ilp.json)"

    def read(self, source: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
        try:
            d = json.loads(source.read_text())
        except json.JSONDecodeError as exc:
            raise TableError(f"{source}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}.") from None
        models = d.get("models") if isinstance(d, dict) else None
        if not isinstance(models, dict) or not models:
            raise TableError(f"{source}: expected an object with a non-empty 'models' mapping.")
        rows = []
        for mname, m in models.items():
            for field in ("layer_shapes", "latency_int8", "latency_int4"):
                if field not in m:
                    raise TableError(f"{source}: models.{mname} lacks {field!r}.")
            shapes = m["layer_shapes"]
            for field in ("latency_int8", "latency_int4"):
                if len(m[field]) != len(shapes):
                    raise TableError(f"{source}: models.{mname}.{field} has {len(m[field])} entries, "
                                     f"layer_shapes has {len(shapes)}.")
            for i, sh in enumerate(shapes):
                cin, cout, k, s, out_hw = (int(x) for x in sh)
                for bits, field in ((8, "latency_int8"), (4, "latency_int4")):
                    rows.append(_row("conv2d", cin, cout, out_hw * s, k, s, 1, bits, bits, 8, m[field][i],
                                     source_row=f"{mname}:{m['layer_names'][i] if 'layer_names' in m else i}"))
        df = merge_duplicates(pd.DataFrame(rows))
        df["layout"] = "NCHW"
        df["impl"] = "published"
        meta = {
            "device": "NVIDIA T4 (TVM int4/int8 kernels), from HAWQ-V3 (Zhen-Dong/HAWQ ILP.ipynb)",
            "source": "HAWQ-V3 per-layer latencies, snapshot 1616df69fdd99f100a8d8a6e78742e0a89292634 (MIT)",
            "units": {"latency_ms": "ms (inferred; the notebook does not state it)"},
            "batch": "8 (inferred from the README and tvm_benchmark)",
            "supported_bits": ["w4a4", "w8a8"],
            "notes": "Isolated per-layer timings: their sums exceed HAWQ's end-to-end figures (ResNet18 3.15/5.34 "
                     "vs 2.2/3.3 ms), so do not read them as additive network latency. First conv and fc are "
                     "not in the arrays. Identical shapes merged (median, std_ms, repeats = count).",
        }
        return df, meta
