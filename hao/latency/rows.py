"""Rows of a hardware folder's CSV files (``table.csv``, ``failed.csv``, ``retime.csv``) on disk.

* **No half rows**: :func:`append_row` appends one row with a single ``write()`` on an ``O_APPEND`` descriptor
  and fsyncs; a kill between rows leaves a valid file, a kill inside the write (power loss) leaves an
  unterminated last line, which :func:`repair_tail` removes.
* :func:`ensure_header` writes a new file's header atomically or returns an existing file's; :func:`read_rows`,
  :func:`read_keys` and :func:`row_key` read rows and their kernel keys back.
* :func:`measured_row` and :func:`failed_row` are the rows of a successful and a failed measurement.
"""
from __future__ import annotations

import csv
import datetime as _dt
import io
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hao.kernel import KEY_COLUMNS, KernelSpec
from hao.latency.table import atomic_write_text

__all__ = ["FAILED_COLUMNS", "now", "csv_line", "repair_tail", "ensure_header", "append_row", "fmt", "row_key",
           "read_keys", "read_rows", "measured_row", "failed_row"]

#: Columns of ``failed.csv``.
FAILED_COLUMNS = tuple(KEY_COLUMNS) + ("impl", "reason", "measured_at")


def now() -> str:
    """The current UTC time as ``YYYY-MM-DDTHH:MM:SSZ``."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def csv_line(values: Sequence[Any]) -> str:
    """One CSV line (``None`` as an empty field), newline-terminated."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(["" if v is None else v for v in values])
    return buf.getvalue()


def repair_tail(path: Path) -> int:
    """Remove an unterminated last line (an interrupted write). Returns the number of bytes removed."""
    if not path.is_file():
        return 0
    with open(path, "rb+") as fh:
        data = fh.read()
        if not data or data.endswith(b"\n"):
            return 0
        cut = data.rfind(b"\n") + 1
        fh.truncate(cut)
        fh.flush()
        os.fsync(fh.fileno())
        return len(data) - cut


def ensure_header(path: Path, columns: Sequence[str]) -> list[str]:
    """The header of the CSV file ``path``; a missing or empty file is first written with ``columns``."""
    if path.is_file() and path.stat().st_size > 0:
        with open(path, newline="") as fh:
            header = next(csv.reader(fh))
        return header
    atomic_write_text(path, csv_line(columns))
    return list(columns)


def append_row(path: Path, header: Sequence[str], row: dict[str, Any]) -> None:
    """Append one row with a single ``write()`` on an ``O_APPEND`` descriptor, then fsync."""
    line = csv_line([fmt(row.get(c)) for c in header]).encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        n = os.write(fd, line)
        if n != len(line):  # pragma: no cover - regular files write fully or raise
            raise OSError(f"short write to {path}: {n} of {len(line)} bytes")
        os.fsync(fd)
    finally:
        os.close(fd)


def fmt(v: Any) -> Any:
    """A cell as written: floats with 6 significant digits (NaN empty), booleans as 0/1."""
    if isinstance(v, float):
        if v != v:  # NaN
            return ""
        return f"{v:.6g}"
    if isinstance(v, (bool, np.bool_)):
        return int(v)
    return v


def row_key(r: dict[str, str]) -> tuple:
    """The kernel key (``KEY_COLUMNS``) of a row read from CSV."""
    return tuple(r[c] if c == "op" else int(float(r[c])) for c in KEY_COLUMNS)


def read_keys(path: Path) -> set[tuple]:
    """The kernel keys of the readable rows of ``path`` (none if it does not exist)."""
    keys = set()
    for r in read_rows(path):
        try:
            keys.add(row_key(r))
        except (KeyError, TypeError, ValueError):
            continue
    return keys


def read_rows(p: Path) -> list[dict[str, str]]:
    """The rows of the CSV file ``p`` as dicts (none if it does not exist)."""
    if not p.is_file():
        return []
    with open(p, newline="") as fh:
        return list(csv.DictReader(fh))


def measured_row(m: Any, k: KernelSpec) -> dict[str, Any]:
    """The table row of a successful measurement: its columns, the program's layout, the time of measuring."""
    row = m.as_row()
    row["layout"] = m.extra.get("layout", k.layout)
    row["measured_at"] = now()
    # cores other processes used while the kept timing session ran (hao.latency.interference); empty if unknown
    row["other_cores"] = m.extra.get("other_cores", "")
    return row


def failed_row(k: KernelSpec, impl: str, reason: str) -> dict[str, Any]:
    """The ``failed.csv`` row of a kernel that could not be measured (the reason cut to 500 characters)."""
    return {**k.to_dict(), "impl": impl, "reason": reason[:500], "measured_at": now()}
