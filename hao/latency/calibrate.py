"""``hao calibrate``: measure a space's kernels on a backend and append them to a hardware table.

Guarantees:

* **Coverage**: :func:`space_kernels` enumerates every kernel any candidate of the space can contain (each
  additive unit's every local option plus the fixed stem/head), not a random sample; each distinct shape is
  measured at float32 and int8 and at every sub-8-bit pair the space produces (those run the int8 kernel and
  are flagged). ``limit`` keeps a seeded subset that covers all shapes first.
* **No half rows**: a row is appended with one ``write()`` on an ``O_APPEND`` descriptor and fsynced; a kill
  between rows leaves a valid table; a kill inside the write (power loss) leaves an unterminated last line,
  which the next run removes (and :func:`~hao.latency.table.read_table_csv` refuses to load until then).
  ``meta.json`` is replaced atomically.
* **Resume**: keys already in ``table.csv`` (or in ``failed.csv``, unless ``retry_failed``) are skipped.
* **Failures are data**: a kernel that fails to build, tune or match its reference is appended to
  ``failed.csv`` with the reason, and the run goes on.

:func:`retime` (``hao calibrate --retime``) re-measures rows a table already has, with the schedules already
in its tuning database (a table measured on a loaded machine is inflated; re-timing needs no new tuning).
Re-timed rows go to ``retime.csv`` (appended and fsynced like ``table.csv``); ``table.csv`` is rewritten
atomically only when every selected row is re-timed, and ``retime.csv`` is then removed. A killed retime
leaves ``table.csv`` untouched and resumes from ``retime.csv``.
"""
from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from hao.errors import ConfigError
from hao.kernel import KEY_COLUMNS, KernelSpec
from hao.latency.backend import LatencyBackend, kernel_precision, replace_bits
from hao.latency.table import TABLE_COLUMNS, atomic_write_text, default_write_root

__all__ = ["space_kernels", "plan_kernels", "calibrate", "retime", "CalibrationResult", "append_row",
           "repair_tail", "measured_row", "FAILED_COLUMNS", "RETIME_FILE"]

FAILED_COLUMNS = tuple(KEY_COLUMNS) + ("impl", "reason", "measured_at")


def space_kernels(space: Any) -> list[KernelSpec]:
    """Every distinct kernel that some candidate of ``space`` contains, sorted."""
    seen: set[KernelSpec] = set()
    pre, post = space.fixed_kernels()
    seen.update(pre)
    seen.update(post)
    for u in space.units():
        for local in space.unit_options(u):
            if local is None:
                continue
            seen.update(space.unit_kernels(u.name, local))
    return sorted(seen)


def _shape_key(k: KernelSpec) -> tuple:
    return k.key()[:9] + (k.layout,)


def plan_kernels(kernels: Iterable[KernelSpec], *, precisions: Sequence[tuple[int, int]] = ((32, 32), (8, 8)),
                 include_space_bits: bool = True, limit: int | None = None, seed: int = 0) -> list[KernelSpec]:
    """The measurement plan: each distinct shape at every pair in ``precisions`` (float32 and int8 by default)
    plus, if ``include_space_bits``, the bit pairs the kernels themselves use. Ordered so that the tuned
    kernels (fp32, int8) of every shape come before the cheap mapped sub-8-bit rows (they reuse the int8
    schedule). ``limit`` keeps the first ``limit`` kernels of a seeded shuffle of shapes."""
    by_shape: dict[tuple, set[tuple[int, int]]] = {}
    proto: dict[tuple, KernelSpec] = {}
    for k in kernels:
        s = _shape_key(k)
        proto.setdefault(s, k)
        bits = by_shape.setdefault(s, set())
        if include_space_bits:
            bits.add((k.w_bits, k.a_bits))
    shapes = sorted(by_shape)
    rng = np.random.default_rng(seed)
    order = list(rng.permutation(len(shapes))) if limit is not None else list(range(len(shapes)))
    tuned: list[KernelSpec] = []
    mapped: list[KernelSpec] = []
    for i in order:
        s = shapes[i]
        seen: set[KernelSpec] = set()
        for w, a in precisions:
            k = replace_bits(proto[s], w, a)
            if k not in seen:
                seen.add(k)
                tuned.append(k)
        for w, a in sorted(by_shape[s]):
            k = replace_bits(proto[s], w, a)
            if k not in seen:
                seen.add(k)
                (tuned if kernel_precision(k) in ("fp32", "int8") else mapped).append(k)
    plan = tuned + mapped
    return plan[:limit] if limit is not None else plan


# ---- atomic row I/O -----------------------------------------------------------------------------------------
def _csv_line(values: Sequence[Any]) -> str:
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


def _ensure_header(path: Path, columns: Sequence[str]) -> list[str]:
    if path.is_file() and path.stat().st_size > 0:
        with open(path, newline="") as fh:
            header = next(csv.reader(fh))
        return header
    atomic_write_text(path, _csv_line(columns))
    return list(columns)


def append_row(path: Path, header: Sequence[str], row: dict[str, Any]) -> None:
    """Append one row with a single ``write()`` on an ``O_APPEND`` descriptor, then fsync."""
    line = _csv_line([_fmt(row.get(c)) for c in header]).encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        n = os.write(fd, line)
        if n != len(line):  # pragma: no cover - regular files write fully or raise
            raise OSError(f"short write to {path}: {n} of {len(line)} bytes")
        os.fsync(fd)
    finally:
        os.close(fd)


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        if v != v:  # NaN
            return ""
        return f"{v:.6g}"
    if isinstance(v, (bool, np.bool_)):
        return int(v)
    return v


def _row_key(r: dict[str, str]) -> tuple:
    return tuple(r[c] if c == "op" else int(float(r[c])) for c in KEY_COLUMNS)


def _read_keys(path: Path) -> set[tuple]:
    if not path.is_file():
        return set()
    keys = set()
    with open(path, newline="") as fh:
        rd = csv.DictReader(fh)
        for r in rd:
            try:
                keys.add(tuple(r[c] if c == "op" else int(float(r[c])) for c in KEY_COLUMNS))
            except (KeyError, TypeError, ValueError):
                continue
    return keys


class CalibrationResult(dict):
    """Counts and paths of a calibration run (a dict, JSON-able)."""


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Run:
    """What a calibration run (sequential or farm) works on: the table folder's files, their headers, and the
    planned kernels the table lacks."""

    folder: Path
    table_p: Path
    failed_p: Path
    meta_p: Path
    header: list[str]
    fheader: list[str]
    todo: list[KernelSpec]
    skipped: int
    repaired: int


def _plan_run(hardware: str, kernels: Sequence[KernelSpec], root: str | os.PathLike | None, retry_failed: bool,
              max_kernels: int | None) -> _Run:
    """Check the folder name, repair torn last lines, check the header, and list what is left to measure:
    keys already in ``table.csv`` (or in ``failed.csv``, unless ``retry_failed``) are skipped."""
    if not hardware or any(c in hardware for c in "/\\") or hardware.startswith("."):
        raise ConfigError(f"--hardware must be a folder name without slashes, got {hardware!r}.")
    folder = Path(root if root is not None else default_write_root()) / hardware
    folder.mkdir(parents=True, exist_ok=True)
    table_p, failed_p, meta_p = folder / "table.csv", folder / "failed.csv", folder / "meta.json"
    repaired = repair_tail(table_p) + repair_tail(failed_p)
    header = _ensure_header(table_p, TABLE_COLUMNS)
    missing_cols = [c for c in KEY_COLUMNS + ("latency_ms", "std_ms", "repeats") if c not in header]
    if missing_cols:
        raise ConfigError(f"{table_p}: existing header lacks {missing_cols}; it was not written by hao. Move it "
                          "away or choose another --hardware name.")
    fheader = _ensure_header(failed_p, FAILED_COLUMNS)
    done = _read_keys(table_p)
    failed_before = _read_keys(failed_p)
    todo = [k for k in kernels if k.key() not in done and (retry_failed or k.key() not in failed_before)]
    if max_kernels is not None:
        todo = todo[:max_kernels]
    return _Run(folder, table_p, failed_p, meta_p, header, fheader, todo, len(kernels) - len(todo), repaired)


def claim_calibration_folder(folder: str | os.PathLike, backend: LatencyBackend, *, force: bool = False) -> None:
    """Refuse (before anything is written) to calibrate into ``folder`` when it holds something other than an
    earlier calibration of the same backend and target: an imported table, another target, files hao did not
    write, or a name another known table already uses. Resuming one's own calibration is allowed. ``force``
    moves the old folder aside (``<root>/.replaced/<name>-<time>``) instead; the other table is never touched."""
    from hao.folders import claim_folder, refuse_package_folder
    from hao.latency.table import shadowed_by

    folder = Path(folder)
    what = f"hao calibrate --hardware {folder.name}"
    refuse_package_folder(folder, what)
    other = shadowed_by(folder)
    if other is not None and not force:
        raise ConfigError(f"{what}: the name {folder.name!r} is already used by the table at {other}, which a "
                          f"table in {folder.parent} would hide or be hidden by. Nothing was "
                          "changed. Choose another --hardware name, pass --root with that table's folder to extend "
                          "it, or --force to shadow it (see docs/data.md).")
    conflicts = []
    meta_p = folder / "meta.json"
    if folder.is_dir() and any(folder.iterdir()):
        meta = _load_meta(meta_p)
        if not meta:
            conflicts.append("it has no readable meta.json, so it was not written by `hao calibrate`")
        elif meta.get("importer"):
            conflicts.append(f"it holds a table imported with `hao latency import {meta['importer']}` from "
                             f"{meta.get('imported_from', '?')}")
        else:
            new = backend.describe()
            for key in ("backend", "target", "synthetic"):
                if key in meta or key in new:
                    if meta.get(key) != new.get(key):
                        conflicts.append(f"its table was measured with {key}={meta.get(key)!r}, this run would "
                                         f"use {key}={new.get(key)!r}")
    moved = claim_folder(folder, force=force, what=what, conflicts=conflicts, resumable=True)
    if moved is not None:
        print(f"{what}: moved the old {folder} to {moved}", file=sys.stderr)


def measured_row(m: Any, k: KernelSpec) -> dict[str, Any]:
    """The table row of a successful measurement: its columns, the program's layout, the time of measuring."""
    row = m.as_row()
    row["layout"] = m.extra.get("layout", k.layout)
    row["measured_at"] = _now()
    return row


def calibrate(hardware: str, kernels: Sequence[KernelSpec], backend: LatencyBackend, *,
              root: str | os.PathLike | None = None, retry_failed: bool = False, progress: bool = True,
              space_name: str | None = None, command: str | None = None,
              max_kernels: int | None = None) -> CalibrationResult:
    """Measure ``kernels`` (in order) that ``latency_models/<hardware>/`` does not have yet and append them.

    ``backend`` is opened and closed here. Returns counts: measured, failed, skipped, wall seconds.
    """
    run = _plan_run(hardware, kernels, root, retry_failed, max_kernels)
    folder, table_p, failed_p, meta_p = run.folder, run.table_p, run.failed_p, run.meta_p
    header, fheader, todo, skipped, repaired = run.header, run.fheader, run.todo, run.skipped, run.repaired
    n_ok = n_fail = 0
    t0 = time.perf_counter()
    meta = _load_meta(meta_p)
    run_info = {"started_at": _now(), "space": space_name, "command": command, "planned": len(kernels),
                "to_measure": len(todo), "skipped_existing": skipped, "repaired_bytes": repaired}
    # SIGTERM (kill, a farm's scheduler) ends the run like Ctrl-C: the current kernel is abandoned, rows
    # already appended stay, and meta.json is brought up to date in the finally block.
    old_handler = None
    if threading.current_thread() is threading.main_thread():
        def _on_term(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        old_handler = signal.signal(signal.SIGTERM, _on_term)
    backend.open()
    try:
        desc = backend.describe()
        _write_meta(meta_p, meta, hardware, desc, run_info, folder)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), desc=f"calibrate {hardware}", unit="kernel", dynamic_ncols=True)
        for k in todo:
            m = backend.measure(k)
            if m.ok:
                append_row(table_p, header, measured_row(m, k))
                n_ok += 1
            else:
                append_row(failed_p, fheader, {**k.to_dict(), "impl": m.impl, "reason": m.reason[:500],
                                               "measured_at": _now()})
                n_fail += 1
            if bar is not None:
                bar.set_postfix_str(f"{k.short()[:38]} {'%.4g ms' % m.latency_ms if m.ok else 'FAILED'}")
                bar.update(1)
        if bar is not None:
            bar.close()
    finally:
        if old_handler is not None:
            signal.signal(signal.SIGTERM, old_handler)
        backend.close()
        wall = time.perf_counter() - t0
        run_info.update(finished_at=_now(), measured=n_ok, failed=n_fail, wall_s=round(wall, 1),
                        wall_s_per_kernel=round(wall / max(1, n_ok + n_fail), 2))
        meta = _load_meta(meta_p)
        _write_meta(meta_p, meta, hardware, None, run_info, folder, final=True)
    return CalibrationResult(hardware=hardware, folder=str(folder), measured=n_ok, failed=n_fail,
                             skipped=skipped, wall_s=round(wall, 1))


def _load_meta(p: Path) -> dict[str, Any]:
    if p.is_file():
        try:
            m = json.loads(p.read_text())
            if isinstance(m, dict):
                return m
        except json.JSONDecodeError:
            pass
    return {}


def _write_meta(p: Path, meta: dict[str, Any], hardware: str, desc: dict[str, Any] | None,
                run_info: dict[str, Any], folder: Path, final: bool = False) -> None:
    meta = dict(meta)
    meta.setdefault("hardware", hardware)
    meta["units"] = {"latency_ms": "milliseconds per call (batch as in the row)", "std_ms": "milliseconds",
                     "energy_mj": "not measured"}
    if desc is not None:
        meta.update({k: v for k, v in desc.items()})
        meta["source"] = ("measured with `hao calibrate` (this repository)" if not desc.get("synthetic")
                          else "SYNTHETIC roofline rows (not a measurement)")
    meta.setdefault("source", "measured with `hao calibrate`")
    runs = list(meta.get("calibration_runs", []))
    if final and runs and runs[-1].get("started_at") == run_info.get("started_at"):
        runs[-1] = run_info
    else:
        runs.append(run_info)
    meta["calibration_runs"] = runs
    # counts from the files themselves
    rows = _read_rows(folder / "table.csv")
    meta["rows"] = len(rows)
    meta["failed_rows"] = max(0, sum(1 for _ in open(folder / "failed.csv")) - 1) if (
        folder / "failed.csv").is_file() else 0
    meta["supported_bits"] = sorted({f"w{r['w_bits']}a{r['a_bits']}" for r in rows})
    impls: dict[str, int] = {}
    for r in rows:
        impls[r.get("impl", "")] = impls.get(r.get("impl", ""), 0) + 1
    meta["rows_by_impl"] = impls
    meta.setdefault("sub8_policy", "Bit-widths below 8 run the int8 kernel (impl=int8-mapped*): this CPU has no "
                    "faster path below 8 bits in TVM 0.27 (native int4 buffers gave wrong results, emulated "
                    "int4 was slower than int8), so sub-8-bit rows report what the hardware really does: "
                    "int8 speed. Bits save memory here, not time.")
    atomic_write_text(p, json.dumps(meta, indent=2, default=str) + "\n")


def _read_rows(p: Path) -> list[dict[str, str]]:
    if not p.is_file():
        return []
    with open(p, newline="") as fh:
        return list(csv.DictReader(fh))


# ---- retime -------------------------------------------------------------------------------------------------
#: Side file of a retime in progress (inside the hardware folder).
RETIME_FILE = "retime.csv"
#: Columns a retime takes from the new measurement; the others (tuning_trials, tune_s, energy_mj...) are kept
#: unless the schedule had to be tuned again (then tuning_trials/tune_s are the new ones).
RETIME_COLUMNS = ("latency_ms", "std_ms", "repeats", "layout", "impl", "vnni", "max_abs_err", "measured_at")


def scheduling_priority() -> dict[str, Any]:
    """This process's nice value and, where the kernel groups processes by session (autogroup), the group's
    nice: with autogroups a process nice only ranks processes of the same session, so a measurement that must
    not be slowed by other sessions' jobs needs the group's nice (``echo -10 > /proc/self/autogroup``)."""
    out: dict[str, Any] = {}
    try:
        out["nice"] = os.nice(0)
    except OSError:  # pragma: no cover
        pass
    try:
        out["autogroup"] = Path("/proc/self/autogroup").read_text().strip()
        out["autogroup_enabled"] = Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        pass
    return out


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):  # pragma: no cover - not on Unix
        return None


def retime(hardware: str, backend: LatencyBackend, kernels: Sequence[KernelSpec] | None = None, *,
           root: str | os.PathLike | None = None, progress: bool = True, space_name: str | None = None,
           command: str | None = None, max_kernels: int | None = None) -> CalibrationResult:
    """Re-measure rows already in ``latency_models/<hardware>/table.csv`` and replace their timings.

    ``kernels``: re-time the table rows among these (a space's plan); ``None``: every row. The backend's
    schedules come from the hardware's tuning database (the TVM backend tunes only a kernel whose record is
    missing). Each re-timed row is appended (one fsynced ``write()``) to ``retime.csv``; a resumed retime skips
    the keys already there. When every selected row is re-timed, ``table.csv`` is rewritten atomically (same
    rows, same order, same key set; timing columns :data:`RETIME_COLUMNS` replaced) and ``retime.csv`` removed.
    A kernel that fails to re-measure keeps its old row and is listed in the run entry of ``meta.json``
    (``kind: "retime"``, with load averages at start and end and the wall time). ``max_kernels`` stops after
    that many measurements (the table is then rewritten only if nothing is left).
    """
    if not hardware or any(c in hardware for c in "/\\") or hardware.startswith("."):
        raise ConfigError(f"--hardware must be a folder name without slashes, got {hardware!r}.")
    if max_kernels is not None and (not isinstance(max_kernels, int) or max_kernels < 0):
        raise ConfigError(f"max_kernels must be an int >= 0 or None, got {max_kernels!r}.")
    folder = Path(root if root is not None else default_write_root()) / hardware
    table_p, side_p, meta_p = folder / "table.csv", folder / RETIME_FILE, folder / "meta.json"
    if not table_p.is_file():
        raise ConfigError(f"--retime re-measures an existing table, but {table_p} does not exist. Measure it "
                          f"first with `hao calibrate --hardware {hardware} --space ...` (without --retime).")
    repaired = repair_tail(table_p) + repair_tail(side_p)
    with open(table_p, newline="") as fh:
        rd = csv.DictReader(fh)
        header = list(rd.fieldnames or [])
        rows = list(rd)
    missing_cols = [c for c in KEY_COLUMNS + ("latency_ms", "std_ms", "repeats") if c not in header]
    if missing_cols:
        raise ConfigError(f"{table_p}: header lacks {missing_cols}; it was not written by hao, so it cannot be "
                          "re-timed. Move it away or choose another --hardware name.")
    if not rows:
        raise ConfigError(f"{table_p} has no rows to re-time; run `hao calibrate` without --retime first.")
    by_key: dict[tuple, int] = {}
    for i, r in enumerate(rows, start=1):
        try:
            key = _row_key(r)
        except (KeyError, TypeError, ValueError):
            bad = {c: r.get(c) for c in KEY_COLUMNS}
            raise ConfigError(f"{table_p}, row {i} (line {i + 1}): unreadable kernel key {bad}; fix or delete that line "
                              "(`hao latency list` names what is wrong).") from None
        if key in by_key:
            raise ConfigError(f"{table_p}, row {i} (line {i + 1}): duplicate kernel key {key} (first in row "
                              f"{by_key[key] + 1}); keep one of the two rows, then re-time.")
        by_key[key] = i - 1
    table_kernels = [KernelSpec(r["op"], int(r["in_channels"]), int(r["out_channels"]), int(r["in_h"]),
                                int(r["in_w"]), kernel=int(r["kernel"]), stride=int(r["stride"]),
                                groups=int(r["groups"]), batch=int(r["batch"]), w_bits=int(r["w_bits"]),
                                a_bits=int(r["a_bits"]), layout=r.get("layout") or "NHWC") for r in rows]
    if kernels is None:
        selected = table_kernels
        not_in_table = 0
    else:
        seen: set[tuple] = set()
        selected = []
        for k in kernels:
            key = k.key()
            if key in by_key and key not in seen:
                seen.add(key)
                selected.append(table_kernels[by_key[key]])
        not_in_table = len({k.key() for k in kernels} - set(by_key))
        if not selected:
            raise ConfigError(f"none of the {len(kernels)} planned kernels is in {table_p}; check the --space "
                              "flags (use the ones the table was calibrated with; see calibration_runs in "
                              "meta.json) or drop --space to re-time every row.")
    # rows re-timed by an interrupted run
    side_header = _ensure_header(side_p, header)
    if side_header != header:
        raise ConfigError(f"{side_p} has columns {side_header}, table.csv has {header}: it belongs to another "
                          f"table. Delete {side_p} and run the retime again.")
    done: dict[tuple, dict[str, str]] = {}
    for r in _read_rows(side_p):
        try:
            done[_row_key(r)] = r
        except (KeyError, TypeError, ValueError):
            continue
    sel_keys = {k.key() for k in selected}
    resumed = len(sel_keys & set(done))
    todo = [k for k in selected if k.key() not in done]
    if max_kernels is not None:
        todo = todo[:max_kernels]
    n_ok = n_fail = 0
    failures: list[dict[str, Any]] = []
    failed_keys: set[tuple] = set()
    t0 = time.perf_counter()
    meta = _load_meta(meta_p)
    run_info: dict[str, Any] = {
        "kind": "retime", "started_at": _now(), "space": space_name, "command": command,
        "selected_rows": len(selected), "planned_not_in_table": not_in_table, "resumed_from_side_file": resumed,
        "to_measure": len(todo), "repaired_bytes": repaired, "loadavg_start": load_average(),
        "priority": scheduling_priority()}
    old_handler = None
    if threading.current_thread() is threading.main_thread():
        def _on_term(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        old_handler = signal.signal(signal.SIGTERM, _on_term)
    merged = False
    desc: dict[str, Any] | None = None
    ratios: list[float] = []
    backend.open()
    try:
        desc = backend.describe()
        if desc.get("synthetic") and "SYNTHETIC" not in str(meta.get("source", "")):
            run_info["warning"] = "synthetic backend used to re-time a measured table"
        for c in ("backend", "threads", "timing", "device"):
            if c in desc:
                run_info[c] = desc[c]
        _write_meta(meta_p, meta, hardware, None, run_info, folder)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(selected), initial=resumed, desc=f"retime {hardware}", unit="kernel",
                       dynamic_ncols=True)
        for k in todo:
            m = backend.measure(k)
            old = rows[by_key[k.key()]]
            if m.ok:
                new = measured_row(m, k)
                row = dict(old)
                for c in RETIME_COLUMNS:
                    if c in header:
                        row[c] = _fmt(new.get(c))
                if m.tuning_trials:  # the schedule was missing and had to be tuned now
                    for c in ("tuning_trials", "tune_s"):
                        if c in header:
                            row[c] = _fmt(new.get(c))
                append_row(side_p, header, row)
                done[k.key()] = {c: str(row.get(c, "")) for c in header}
                n_ok += 1
                try:
                    ratios.append(float(m.latency_ms) / float(old["latency_ms"]))
                except (TypeError, ValueError, ZeroDivisionError):
                    pass
            else:
                n_fail += 1
                failed_keys.add(k.key())
                failures.append({"kernel": k.short(), "reason": m.reason[:300]})
            if bar is not None:
                bar.set_postfix_str(f"{k.short()[:38]} {'%.4g ms' % m.latency_ms if m.ok else 'FAILED'}")
                bar.update(1)
        if bar is not None:
            bar.close()
        left = [k for k in selected if k.key() not in done and k.key() not in failed_keys]
        if not left:
            # every selected row re-timed (or failed and kept): rewrite table.csv in one atomic step
            new_rows = [done.get(key, r) if key in sel_keys else r
                        for key, r in zip((_row_key(r) for r in rows), rows)]
            text = _csv_line(header) + "".join(_csv_line([r.get(c, "") for c in header]) for r in new_rows)
            atomic_write_text(table_p, text)
            merged = True
            side_p.unlink(missing_ok=True)
    finally:
        if old_handler is not None:
            signal.signal(signal.SIGTERM, old_handler)
        backend.close()
        wall = time.perf_counter() - t0
        run_info.update(finished_at=_now(), measured=n_ok, failed=n_fail, failures=failures[:50],
                        table_rewritten=merged, loadavg_end=load_average(), wall_s=round(wall, 1),
                        wall_s_per_kernel=round(wall / max(1, n_ok + n_fail), 2))
        if ratios:
            q = np.quantile(ratios, [0.1, 0.5, 0.9])
            run_info["new_over_old_latency"] = {"p10": round(float(q[0]), 3), "median": round(float(q[1]), 3),
                                                "p90": round(float(q[2]), 3), "n": len(ratios)}
        if not merged:
            run_info["note"] = (f"interrupted or limited: {len(done)} re-timed rows wait in {RETIME_FILE}; "
                                "table.csv is unchanged. Run the same command again to resume.")
        meta = _load_meta(meta_p)
        # a retime of every row makes the backend's protocol (timing sessions...) the table's own
        whole = merged and len(selected) == len(rows) and desc is not None
        _write_meta(meta_p, meta, hardware, desc if whole else None, run_info, folder, final=True)
    return CalibrationResult(hardware=hardware, folder=str(folder), retimed=n_ok, failed=n_fail,
                             resumed=resumed, selected=len(selected), table_rewritten=merged,
                             wall_s=round(wall, 1))
