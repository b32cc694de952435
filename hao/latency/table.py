"""Latency tables (``latency_models/<hardware>/table.csv`` + ``meta.json``) and the hardware registry.

Schema (``latency_models/README.md``): one row per measured kernel, identified by :data:`hao.kernel.KEY_COLUMNS`, with
``latency_ms`` (> 0), ``std_ms`` (>= 0) and ``repeats`` (>= 0; 0 = published value without repeat count),
plus optional columns (``energy_mj``, ``layout``, ``impl``, ``vnni``, ``tuning_trials``, ``measured_at``,
``other_cores``: cores other processes used while the row was timed...).
Every malformed input raises :class:`~hao.errors.TableError` naming the file, the row (1-based data row and its
line in the file) and the column.

Hardware folders are found in folders registered with :func:`register_hardware`, under every folder listed in
the ``HAO_LATENCY_MODELS`` environment variable (``os.pathsep``-separated), under the per-user folder (where
``hao calibrate`` and ``hao latency import`` write) and under the built-in ``latency_models/`` (see
:mod:`hao.paths`), in that order of precedence. A folder is hardware if it contains ``table.csv`` and
``meta.json``; :func:`list_invalid` names the folders that look like hardware but are not.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from hao.errors import ConfigError, TableError
from hao.io import atomic_write_text
from hao.kernel import BITS, BLOCK_COLUMNS, BLOCK_OPS, KEY_COLUMNS, OPS, KernelSpec

__all__ = ["LatencyTable", "REQUIRED_COLUMNS", "TABLE_COLUMNS", "validate_frame", "read_table_csv", "list_hardware",
           "list_invalid", "shadowed_by", "hardware_dir", "register_hardware", "load_table", "models_root",
           "default_write_root", "atomic_write_text", "REQUIRED_META_KEYS"]

INT_COLUMNS = ("in_channels", "out_channels", "in_h", "in_w", "kernel", "stride", "groups", "batch",
               "w_bits", "a_bits")
VALUE_COLUMNS = ("latency_ms", "std_ms", "repeats")
REQUIRED_COLUMNS = tuple(KEY_COLUMNS) + VALUE_COLUMNS
#: Column order used when hao writes a table.
TABLE_COLUMNS = REQUIRED_COLUMNS + ("layout", "impl", "vnni", "tuning_trials", "tune_s", "max_abs_err",
                                    "energy_mj", "measured_at", "other_cores")
REQUIRED_META_KEYS = ("hardware", "units", "source")


def models_root() -> Path:
    """The built-in ``latency_models/`` folder (read-only; see :mod:`hao.paths`)."""
    from hao.paths import builtin_dir

    return builtin_dir("latency_models")


def default_write_root() -> Path:
    """Where a new hardware folder is written when no ``root`` is given: the per-user folder
    (:func:`hao.paths.user_tables_dir`), never the installed package."""
    from hao.paths import user_tables_dir

    return user_tables_dir()


# atomic_write_text lives in hao.io (one home for safe writes); re-exported here for existing imports


def _where(file: str, row: int | None, column: str | None) -> str:
    parts = [f"{file}"]
    if row is not None:
        parts.append(f"row {row} (line {row + 1})")
    if column is not None:
        parts.append(f"column {column!r}")
    return ", ".join(parts)


def read_table_csv(path: str | os.PathLike) -> pd.DataFrame:
    """Read ``table.csv`` as strings (no type guessing), raising :class:`TableError` on unreadable CSV."""
    path = Path(path)
    if not path.is_file():
        raise TableError(f"{path}: no such table file. A hardware folder needs table.csv and meta.json; "
                         "create one with `hao calibrate` or an importer (`hao latency import ...`).")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise TableError(f"{path}: cannot read the table ({exc}). It must be a UTF-8 CSV file.") from exc
    if not text.strip():
        raise TableError(f"{path}: the table is empty; expected a header with columns {list(REQUIRED_COLUMNS)}.")
    if not text.endswith("\n"):
        last = len(text.splitlines())
        raise TableError(f"{_where(str(path), last - 1, None)}: the last row is not terminated by a newline "
                         "(a write was interrupted). `hao calibrate` repairs this on resume; or delete that line.")
    rows = list(csv.reader(io.StringIO(text)))
    header = rows[0]
    if len(set(header)) != len(header):
        dup = sorted({h for h in header if header.count(h) > 1})
        raise TableError(f"{_where(str(path), None, dup[0])}: duplicate column name(s) {dup} in the header.")
    for i, r in enumerate(rows[1:], start=1):
        if len(r) != len(header):
            raise TableError(f"{_where(str(path), i, None)}: has {len(r)} fields, the header has {len(header)}. "
                             "Fix or delete that line.")
    return pd.DataFrame(rows[1:], columns=header, dtype=str)


def validate_frame(df: pd.DataFrame, file: str = "<table>") -> pd.DataFrame:
    """Check and type a table. Returns a new frame with int/float columns; raises :class:`TableError`."""
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise TableError(f"{_where(file, None, missing[0])}: missing required column(s) {missing}; a table needs "
                         f"{list(REQUIRED_COLUMNS)} (see docs/table_schema.md).")
    out = df.copy()
    out["op"] = out["op"].astype(str)
    for i, v in enumerate(out["op"], start=1):
        if v not in OPS:
            raise TableError(f"{_where(file, i, 'op')}: unknown op {v!r}; valid ops: {list(OPS)}.")
    for c in INT_COLUMNS:
        vals = []
        for i, v in enumerate(out[c], start=1):
            try:
                fv = float(v)
            except (TypeError, ValueError):
                raise TableError(f"{_where(file, i, c)}: {v!r} is not a number; expected a positive int.") from None
            if math.isnan(fv):
                raise TableError(f"{_where(file, i, c)}: value is NaN/empty; expected a positive int.")
            if math.isinf(fv) or abs(fv) > 2 ** 31 - 1:
                raise TableError(f"{_where(file, i, c)}: {v!r} is out of range; expected a positive int "
                                 f"<= {2 ** 31 - 1}.")
            if fv != int(fv) or fv < 1:
                raise TableError(f"{_where(file, i, c)}: {v!r} is not a positive int.")
            if c in ("w_bits", "a_bits") and int(fv) not in BITS:
                raise TableError(f"{_where(file, i, c)}: {int(fv)} is not a supported bit-width; valid: {list(BITS)}.")
            vals.append(int(fv))
        out[c] = np.asarray(vals, dtype=np.int64)
    for c, lo, strict in (("latency_ms", 0.0, True), ("std_ms", 0.0, False), ("repeats", 0.0, False)):
        vals = []
        for i, v in enumerate(out[c], start=1):
            try:
                fv = float(v)
            except (TypeError, ValueError):
                raise TableError(f"{_where(file, i, c)}: {v!r} is not a number.") from None
            if math.isnan(fv) or math.isinf(fv):
                raise TableError(f"{_where(file, i, c)}: value is {v!r} (NaN/inf/empty); expected a finite number "
                                 f"{'>' if strict else '>='} {lo:g}. Re-measure the kernel or delete the row.")
            if (strict and fv <= lo) or (not strict and fv < lo):
                raise TableError(f"{_where(file, i, c)}: {fv:g} must be {'>' if strict else '>='} {lo:g}"
                                 f"{' (a latency cannot be zero or negative)' if c == 'latency_ms' else ''}.")
            if c == "repeats" and fv > 2 ** 31 - 1:
                raise TableError(f"{_where(file, i, c)}: {v!r} is out of range; expected a count <= {2 ** 31 - 1}.")
            vals.append(fv)
        out[c] = np.asarray(vals, dtype=np.float64)
    out["repeats"] = out["repeats"].astype(np.int64)
    is_block = out["op"].isin(BLOCK_OPS).to_numpy()
    if is_block.any():
        lacking = [c for c in BLOCK_COLUMNS if c not in out.columns]
        if lacking:
            i = int(np.flatnonzero(is_block)[0]) + 1
            raise TableError(f"{_where(file, i, lacking[0])}: a composite {out['op'].iloc[i - 1]!r} row needs the "
                             f"block key columns {list(BLOCK_COLUMNS)} (missing {lacking}); see "
                             "docs/table_schema.md, \"Block-level tables\".")
    for c in BLOCK_COLUMNS:
        if c not in out.columns or not is_block.any():  # a plain table may use these names for its own columns
            continue
        vals = []
        for i, (v, blk) in enumerate(zip(out[c], is_block), start=1):
            try:
                fv = float(v) if str(v).strip() else 0.0
            except (TypeError, ValueError):
                raise TableError(f"{_where(file, i, c)}: {v!r} is not a number; expected an int >= 0.") from None
            if math.isnan(fv) and not blk:
                fv = 0.0
            if math.isnan(fv) or math.isinf(fv) or fv != int(fv) or fv < 0 or fv > 2 ** 31 - 1:
                raise TableError(f"{_where(file, i, c)}: {v!r} is not an int >= 0"
                                 f"{' (0 or 1)' if c != 'mid_channels' else ''}.")
            vals.append(int(fv))
        out[c] = np.asarray(vals, dtype=np.int64)
    for c in ("vnni", "tuning_trials"):
        if c in out.columns:
            num = pd.to_numeric(out[c], errors="coerce").replace([np.inf, -np.inf], np.nan)
            out[c] = num.fillna(0).clip(-(2 ** 31), 2 ** 31 - 1).astype(np.int64)
    for c in ("tune_s", "max_abs_err", "energy_mj", "other_cores"):
        if c in out.columns:
            out[c] = pd.to_numeric(out[c], errors="coerce")
    if "layout" not in out.columns:
        out["layout"] = "NHWC"
    seen: dict[tuple, int] = {}
    for i, r in enumerate(out.itertuples(index=False), start=1):
        try:
            spec = _row_kernel(r)
        except Exception as exc:  # noqa: BLE001 - KernelSpec's ConfigError names the field
            raise TableError(f"{_where(file, i, None)}: not a valid kernel: {exc}") from None
        key = spec.key()
        if key in seen:
            cols = KEY_COLUMNS + (BLOCK_COLUMNS if spec.op in BLOCK_OPS else ())
            raise TableError(f"{_where(file, i, 'op')}: duplicate kernel key {dict(zip(cols, key))}; "
                             f"first seen in row {seen[key]}. Keep one of the two rows.")
        seen[key] = i
    return out.reset_index(drop=True)


def _row_kernel(r: Any) -> KernelSpec:
    """The :class:`KernelSpec` of a typed table row (a namedtuple of :func:`validate_frame`'s frame)."""
    layout = getattr(r, "layout", "NHWC")
    extra = {c: int(getattr(r, c)) for c in BLOCK_COLUMNS if r.op in BLOCK_OPS and hasattr(r, c)}
    return KernelSpec(r.op, int(r.in_channels), int(r.out_channels), int(r.in_h), int(r.in_w), int(r.kernel),
                      int(r.stride), int(r.groups), int(r.w_bits), int(r.a_bits), int(r.batch),
                      layout if isinstance(layout, str) and layout else "NHWC", **extra)


def _read_meta(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise TableError(f"{path}: no meta.json. Every hardware folder needs one with keys "
                         f"{list(REQUIRED_META_KEYS)} (see docs/table_schema.md).")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise TableError(f"{path}: cannot read meta.json ({exc}). It must be a UTF-8 JSON file.") from None
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TableError(f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}.") from None
    except RecursionError:
        raise TableError(f"{path}: meta.json is nested too deeply to parse.") from None
    if not isinstance(meta, dict):
        raise TableError(f"{path}: meta.json must hold a JSON object, got {type(meta).__name__}.")
    missing = [k for k in REQUIRED_META_KEYS if k not in meta]
    if missing:
        raise TableError(f"{path}: meta.json lacks key(s) {missing}; required: {list(REQUIRED_META_KEYS)}.")
    return meta


class LatencyTable:
    """A validated latency table with its metadata.

    ``df`` has the typed columns; ``meta`` the parsed meta.json; ``path`` the folder (or ``None``).
    """

    def __init__(self, df: pd.DataFrame, meta: dict[str, Any], path: Path | None = None,
                 source: str = "<memory>") -> None:
        self.df = validate_frame(df, source)
        self.meta = dict(meta)
        self.path = path
        self._index: dict[tuple, int] | None = None
        if self.df["op"].isin(BLOCK_OPS).any():
            declared = self.meta.get("key_columns_extra")
            if self.meta.get("granularity") != "block" or list(declared or []) != list(BLOCK_COLUMNS):
                raise TableError(f"{source}: the table holds composite block rows ({list(BLOCK_OPS)}), so its "
                                 f"meta.json must declare \"granularity\": \"block\" and \"key_columns_extra\": "
                                 f"{list(BLOCK_COLUMNS)} (got granularity={self.meta.get('granularity')!r}, "
                                 f"key_columns_extra={declared!r}); see docs/table_schema.md, \"Block-level tables\".")

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "LatencyTable":
        folder = Path(folder)
        if not folder.is_dir():
            raise TableError(f"{folder}: not a folder. Pass a hardware folder with table.csv and meta.json, "
                             f"or a hardware name from {list_hardware()}.")
        meta = _read_meta(folder / "meta.json")
        df = read_table_csv(folder / "table.csv")
        if len(df) == 0:
            raise TableError(f"{folder / 'table.csv'}: the table has a header but 0 rows; a latency table needs at "
                             "least one measured kernel. Measure some with `hao calibrate --hardware "
                             f"{folder.name} --space SPACE --root {folder.parent}`, or delete the folder "
                             "(see docs/table_schema.md).")
        return cls(df, meta, folder, str(folder / "table.csv"))

    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``table.csv`` and ``meta.json`` atomically into ``folder``."""
        folder = Path(folder)
        order = REQUIRED_COLUMNS + BLOCK_COLUMNS + TABLE_COLUMNS[len(REQUIRED_COLUMNS):]
        cols = [c for c in order if c in self.df.columns] + [c for c in self.df.columns if c not in order]
        atomic_write_text(folder / "table.csv", self.df[cols].to_csv(index=False, lineterminator="\n"))
        atomic_write_text(folder / "meta.json", json.dumps(self.meta, indent=2, sort_keys=False) + "\n")
        self.path = folder
        return folder

    # ---- lookups ---------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return str(self.meta.get("hardware", self.path.name if self.path else "?"))

    def __len__(self) -> int:
        return len(self.df)

    def _key_index(self) -> dict[tuple, int]:
        if self._index is None:
            self._index = {k.key(): i for i, k in enumerate(self.kernels())}
        return self._index

    def kernels(self) -> list[KernelSpec]:
        return [_row_kernel(r) for r in self.df.itertuples(index=False)]

    @property
    def granularity(self) -> str:
        """``"block"`` when the table times whole blocks (composite ops such as ``mbconv``, declared by
        ``meta.json["granularity"]``), else ``"kernel"``. Spaces then emit block kernels for it
        (:meth:`hao.space.SearchSpace.kernels` with ``granularity="block"``)."""
        return "block" if self.meta.get("granularity") == "block" else "kernel"

    def keys(self) -> set[tuple]:
        return set(self._key_index())

    def latency(self, kernel: KernelSpec) -> float | None:
        """Measured ``latency_ms`` of ``kernel`` or ``None`` if the table lacks it."""
        i = self._key_index().get(kernel.key())
        return None if i is None else float(self.df["latency_ms"].iloc[i])

    def supported_bits(self) -> list[tuple[int, int]]:
        return sorted({(int(w), int(a)) for w, a in zip(self.df["w_bits"], self.df["a_bits"])})

    def summary(self) -> dict[str, Any]:
        return {"hardware": self.name, "rows": len(self), "path": str(self.path) if self.path else None,
                "ops": dict(self.df["op"].value_counts().sort_index().astype(int)),
                "bits": [f"w{w}a{a}" for w, a in self.supported_bits()],
                "units": self.meta.get("units"), "source": self.meta.get("source"),
                "device": self.meta.get("device")}


# ---- registry ---------------------------------------------------------------------------------------------
_REGISTERED: dict[str, Path] = {}


def register_hardware(path: str | os.PathLike, name: str | None = None) -> str:
    """Make the hardware folder ``path`` available as ``name`` (default: the folder name). Validates it."""
    p = Path(path).expanduser().resolve()
    LatencyTable.load(p)  # raises TableError naming what is wrong
    nm = name or p.name
    _REGISTERED[nm] = p
    return nm


def _search_roots() -> list[Path]:
    """``HAO_LATENCY_MODELS`` folders, then the per-user folder, then the built-in one (first name wins)."""
    roots = [Path(part).expanduser() for part in os.environ.get("HAO_LATENCY_MODELS", "").split(os.pathsep)
             if part.strip()]
    return roots + [default_write_root(), models_root()]


def _discover() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for root in _search_roots():
        if root.is_dir():
            for d in sorted(root.iterdir()):
                if d.is_dir() and (d / "table.csv").is_file() and (d / "meta.json").is_file():
                    found.setdefault(d.name, d)
    found.update(_REGISTERED)
    return found


def shadowed_by(folder: str | os.PathLike) -> Path | None:
    """The known table that a new hardware folder ``folder`` would hide or be hidden by: another folder of the
    same name, when ``folder``'s parent is one of the search roots. ``None`` when there is no such clash."""
    folder = Path(folder).resolve()
    roots = {r.expanduser().resolve() for r in _search_roots()}
    if folder.parent not in roots:
        return None
    other = _discover().get(folder.name)
    return other if other is not None and other.resolve() != folder else None


def list_hardware() -> list[str]:
    """Names of every known hardware folder."""
    return sorted(_discover())


def list_invalid() -> list[dict[str, str]]:
    """Folders under the search roots that are not hardware folders, each with the reason (``name``, ``path``,
    ``reason``). Hidden folders (``.name``, e.g. tables moved aside by ``--force``) are not listed."""
    out = []
    seen = set(_discover())
    for root in _search_roots():
        if not root.is_dir():
            continue
        for d in sorted(root.iterdir()):
            if not d.is_dir() or d.name.startswith((".", "_")) or d.name in seen:
                continue
            missing = [f for f in ("table.csv", "meta.json") if not (d / f).is_file()]
            if missing:
                out.append({"name": d.name, "path": str(d),
                            "reason": f"no {' and no '.join(missing)} (a hardware folder needs table.csv and "
                                      "meta.json; see docs/table_schema.md)"})
    return out


def hardware_dir(name: str) -> Path:
    found = _discover()
    if name not in found:
        raise ConfigError(f"Unknown hardware {name!r}; known hardware: {sorted(found)}. Add one with "
                          "`hao calibrate --hardware NAME ...`, an importer, register_hardware(path), or "
                          "the HAO_LATENCY_MODELS environment variable.")
    return found[name]


def load_table(name_or_path: str | os.PathLike) -> LatencyTable:
    """Load a table by hardware name or folder path."""
    p = Path(name_or_path)
    if isinstance(name_or_path, str) and name_or_path in _discover():
        return LatencyTable.load(hardware_dir(name_or_path))
    if p.is_dir():
        return LatencyTable.load(p)
    return LatencyTable.load(hardware_dir(str(name_or_path)))


def rows_from_kernels(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """A DataFrame in table column order from dict rows (used by importers)."""
    df = pd.DataFrame(list(rows))
    cols = [c for c in TABLE_COLUMNS if c in df.columns] + [c for c in df.columns if c not in TABLE_COLUMNS]
    return df[cols]
