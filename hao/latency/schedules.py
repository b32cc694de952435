"""A table's tuned schedules, committed beside it: ``latency_models/<name>/schedules.json.xz``.

A table's rows were timed with particular schedules, and whole networks replay them (:mod:`hao.latency.tuner`);
the MetaSchedule database that holds them (``tuning_db/``, tens of MB, every candidate of every tuning) is not
in git. This module keeps what reproducing the table needs — the **best record of each workload** and the
workload itself — xz-compressed in one file of the table folder (~1.5 KB per workload), and puts it back:

* :func:`pack_schedules` writes (or extends) the file from ``tuning_db/``; the TVM backend calls it when it
  closes a table's database (``hao calibrate``, ``--retime``, ``hao latency validate``, ``hao export --tvm``).
* :func:`restore_schedules` adds the file's records that ``tuning_db/`` lacks before the database is opened;
  a fresh clone on the same CPU model then validates the table without tuning.

Schedules are specific to the CPU they were tuned on (vector width, VNNI, cache sizes): the file records the
LLVM target (``mcpu``), and restoring into a backend whose target names another CPU is refused — on another
CPU, calibrate a table of its own (docs/measurement.md, "Schedules in the repository").

File format (JSON, xz): ``{"format": "hao-schedules-1", "target": {...}, "workloads": [[shash, module], ...],
"records": [[workload_index, record], ...]}`` — the lines of MetaSchedule's ``JSONDatabase`` files, unchanged.
"""
from __future__ import annotations

import hashlib
import json
import lzma
import os
from pathlib import Path
from typing import Any

from hao.errors import ConfigError

__all__ = ["SCHEDULES_FILE", "pack_schedules", "restore_schedules", "read_schedules", "FORMAT"]

SCHEDULES_FILE = "schedules.json.xz"
FORMAT = "hao-schedules-1"
_WORKLOADS = "database_workload.json"
_RECORDS = "database_tuning_record.json"
_MARKER = ".restored-from"
_FAILED = 1e9  # MetaSchedule stores failed candidates with run_secs 1e10


def _lines(p: Path) -> list[Any]:
    if not p.is_file():
        return []
    out = []
    for line in p.read_text().splitlines():
        line = line.strip()
        if line:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:  # a torn last line (killed mid-write): MetaSchedule skips it too
                continue
    return out


def _mean_secs(rec: Any) -> float:
    secs = [float(s) for s in (rec[1] or [])] if isinstance(rec, list) and len(rec) > 1 else []
    return sum(secs) / len(secs) if secs else float("inf")


def read_schedules(path: str | os.PathLike) -> dict[str, Any]:
    """The packed file as a dict (see the module docstring); a clear error when it is not one."""
    path = Path(path)
    try:
        data = json.loads(lzma.decompress(path.read_bytes()).decode())
    except (OSError, lzma.LZMAError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable schedules file ({exc}). Delete it to tune anew, or restore it "
                          "from git (`git checkout -- {path}`).") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ConfigError(f"{path}: format {data.get('format') if isinstance(data, dict) else '?'!r}, expected "
                          f"{FORMAT!r}; it was written by another hao version. Delete it to tune anew.")
    return data


def _best(workloads: list[Any], records: list[Any], into: dict[str, tuple[Any, Any]]) -> None:
    """Fold (workload lines, record lines) into ``into``: shash -> (workload line, best record)."""
    for widx, rec in records:
        if not (0 <= int(widx) < len(workloads)) or _mean_secs(rec) >= _FAILED:
            continue
        wl = workloads[int(widx)]
        old = into.get(wl[0])
        if old is None or _mean_secs(rec) < _mean_secs(old[1]):
            into[wl[0]] = (wl, rec)


def _target_of(records: list[Any]) -> dict[str, Any]:
    for _, rec in records:
        if isinstance(rec, list) and len(rec) > 2 and isinstance(rec[2], dict):
            return {k: rec[2][k] for k in ("kind", "mcpu") if k in rec[2]}
    return {}


def pack_schedules(database_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> Path | None:
    """Write the best record of every workload in ``database_dir`` (a MetaSchedule ``JSONDatabase`` folder) to
    ``out`` (default: ``<database_dir>/../schedules.json.xz``), keeping records of an existing file that are
    better or that the database lacks. Returns the path, or None when there is nothing to write."""
    db = Path(database_dir)
    out = Path(out) if out is not None else db.parent / SCHEDULES_FILE
    best: dict[str, tuple[Any, Any]] = {}
    target: dict[str, Any] = {}
    if out.is_file():
        old = read_schedules(out)
        _best(old["workloads"], old["records"], best)
        target = old.get("target") or {}
    workloads, records = _lines(db / _WORKLOADS), _lines(db / _RECORDS)
    _best(workloads, records, best)
    if not best:
        return None
    new_target = _target_of(records)
    if target and new_target and target.get("mcpu") != new_target.get("mcpu"):
        raise ConfigError(f"{out} holds schedules for mcpu={target.get('mcpu')!r}, the database {db} for "
                          f"{new_target.get('mcpu')!r}: one table folder is one CPU model. Nothing was written.")
    keys = sorted(best)
    data = {"format": FORMAT, "target": target or new_target,
            "workloads": [best[k][0] for k in keys], "records": [[i, best[k][1]] for i, k in enumerate(keys)]}
    blob = lzma.compress(json.dumps(data, separators=(",", ":")).encode(), preset=9)
    if out.is_file() and out.read_bytes() == blob:
        return out
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(blob)
    os.replace(tmp, out)
    return out


def restore_schedules(database_dir: str | os.PathLike, target: dict[str, Any] | None) -> int:
    """Append to ``database_dir`` the records of ``<database_dir>/../schedules.json.xz`` whose workloads it lacks
    (before MetaSchedule opens it). Returns how many were added (0 without a file, or when this file was
    restored already). Refuses (:class:`ConfigError`) a file tuned for another ``mcpu`` than ``target``'s."""
    db = Path(database_dir)
    pack = db.parent / SCHEDULES_FILE
    if not pack.is_file():
        return 0
    digest = hashlib.sha256(pack.read_bytes()).hexdigest()
    marker = db / _MARKER
    if marker.is_file() and marker.read_text().strip() == digest:
        return 0
    data = read_schedules(pack)
    want = (target or {}).get("mcpu")
    have = (data.get("target") or {}).get("mcpu")
    if want and have and want != have:
        raise ConfigError(f"{pack} holds schedules tuned for mcpu={have!r}; this backend targets {want!r}. "
                          f"Schedules are not reused across CPU models (vector width, VNNI and caches differ), "
                          f"and a table's latencies are only valid on its own CPU: calibrate a table for this CPU "
                          f"under another --hardware name (docs/measurement.md, 'Schedules in the repository').")
    db.mkdir(parents=True, exist_ok=True)
    workloads = _lines(db / _WORKLOADS)
    have_keys = {w[0]: i for i, w in enumerate(workloads)}
    with_record = {int(r[0]) for r in _lines(db / _RECORDS)}
    add_w, add_r = [], []
    n = len(workloads)
    for wl, (_, rec) in zip(data["workloads"], data["records"]):
        i = have_keys.get(wl[0])
        if i is not None and i in with_record:
            continue
        if i is None:
            i = n
            n += 1
            add_w.append(wl)
        add_r.append([i, rec])
    for name, rows in ((_WORKLOADS, add_w), (_RECORDS, add_r)):
        if rows:
            p = db / name
            lead = "\n" if p.is_file() and p.stat().st_size and not p.read_bytes().endswith(b"\n") else ""
            with p.open("a") as fh:
                fh.write(lead + "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows))
    marker.write_text(digest + "\n")
    return len(add_r)
