"""``hao calibrate --retime``: re-measure the rows a hardware table already has, with the schedules already in
its tuning database (a table measured on a loaded machine is inflated; re-timing needs no new tuning).

Re-timed rows go to ``retime.csv`` (appended and fsynced like ``table.csv``); ``table.csv`` is rewritten
atomically only when every selected row is re-timed, and ``retime.csv`` is then removed. A killed retime
leaves ``table.csv`` untouched and resumes from ``retime.csv``. The run shares calibration's skeleton
(:mod:`hao.latency.runlog`): SIGTERM handled like Ctrl-C, a ``meta.json`` run entry (``kind: "retime"``),
progress.
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hao.errors import ConfigError
from hao.kernel import KEY_COLUMNS, KernelSpec
from hao.latency.backend import LatencyBackend
from hao.latency.rows import (append_row, csv_line, ensure_header, fmt, measured_row, now, read_rows, repair_tail,
                              row_key)
from hao.latency.runlog import (CalibrationResult, Progress, RunLog, load_average, measuring, scheduling_priority,
                                table_folder)
from hao.latency.table import atomic_write_text

__all__ = ["retime", "RETIME_FILE", "RETIME_COLUMNS"]

#: Side file of a retime in progress (inside the hardware folder).
RETIME_FILE = "retime.csv"
#: Columns a retime takes from the new measurement; the others (tuning_trials, tune_s, energy_mj...) are kept
#: unless the schedule had to be tuned again (then tuning_trials/tune_s are the new ones).
RETIME_COLUMNS = ("latency_ms", "std_ms", "repeats", "layout", "impl", "vnni", "max_abs_err", "measured_at")


def _read_table(table_p: Path) -> tuple[list[str], list[dict[str, str]], dict[tuple, int]]:
    """``table.csv``'s header, rows and row index by kernel key; refuses a foreign, empty or ambiguous table."""
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
            key = row_key(r)
        except (KeyError, TypeError, ValueError):
            bad = {c: r.get(c) for c in KEY_COLUMNS}
            raise ConfigError(f"{table_p}, row {i} (line {i + 1}): unreadable kernel key {bad}; fix or delete "
                              "that line (`hao latency list` names what is wrong).") from None
        if key in by_key:
            raise ConfigError(f"{table_p}, row {i} (line {i + 1}): duplicate kernel key {key} (first in row "
                              f"{by_key[key] + 1}); keep one of the two rows, then re-time.")
        by_key[key] = i - 1
    return header, rows, by_key


def _select(table_p: Path, rows: list[dict[str, str]], by_key: dict[tuple, int],
            kernels: Sequence[KernelSpec] | None) -> tuple[list[KernelSpec], int]:
    """The table's kernels to re-time (those among ``kernels``, or all) and how many planned ones it lacks."""
    table_kernels = [KernelSpec.from_dict({**{c: r[c] for c in KEY_COLUMNS}, "layout": r.get("layout") or "NHWC"})
                     for r in rows]
    if kernels is None:
        return table_kernels, 0
    seen: set[tuple] = set()
    selected = []
    for k in kernels:
        key = k.key()
        if key in by_key and key not in seen:
            seen.add(key)
            selected.append(table_kernels[by_key[key]])
    if not selected:
        raise ConfigError(f"none of the {len(kernels)} planned kernels is in {table_p}; check the --space "
                          "flags (use the ones the table was calibrated with; see calibration_runs in "
                          "meta.json) or drop --space to re-time every row.")
    return selected, len({k.key() for k in kernels} - set(by_key))


def _retimed_row(old: dict[str, str], m: Any, k: KernelSpec, header: list[str]) -> dict[str, Any]:
    """``old`` with the timing columns of the new measurement ``m`` (and its tuning columns if it was tuned)."""
    new = measured_row(m, k)
    row: dict[str, Any] = dict(old)
    for c in RETIME_COLUMNS:
        if c in header:
            row[c] = fmt(new.get(c))
    if m.tuning_trials:  # the schedule was missing and had to be tuned now
        for c in ("tuning_trials", "tune_s"):
            if c in header:
                row[c] = fmt(new.get(c))
    return row


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
    folder = table_folder(hardware, root)
    if max_kernels is not None and (not isinstance(max_kernels, int) or max_kernels < 0):
        raise ConfigError(f"max_kernels must be an int >= 0 or None, got {max_kernels!r}.")
    table_p, side_p = folder / "table.csv", folder / RETIME_FILE
    if not table_p.is_file():
        raise ConfigError(f"--retime re-measures an existing table, but {table_p} does not exist. Measure it "
                          f"first with `hao calibrate --hardware {hardware} --space ...` (without --retime).")
    meta_p = folder / "meta.json"
    if meta_p.is_file():
        meta = json.loads(meta_p.read_text())
        if meta.get("granularity") == "block" or meta.get("importer"):
            raise ConfigError(f"--retime re-measures rows hao measured itself, with their stored schedules; "
                              f"{folder} holds an imported table (importer {meta.get('importer')!r}, granularity "
                              f"{meta.get('granularity', 'kernel')!r}), which hao cannot re-time. Re-import it, or "
                              "measure your own table with `hao calibrate` (docs/table_schema.md).")
    repaired = repair_tail(table_p) + repair_tail(side_p)
    header, rows, by_key = _read_table(table_p)
    selected, not_in_table = _select(table_p, rows, by_key, kernels)
    # rows re-timed by an interrupted run
    side_header = ensure_header(side_p, header)
    if side_header != header:
        raise ConfigError(f"{side_p} has columns {side_header}, table.csv has {header}: it belongs to another "
                          f"table. Delete {side_p} and run the retime again.")
    done: dict[tuple, dict[str, str]] = {}
    for r in read_rows(side_p):
        try:
            done[row_key(r)] = r
        except (KeyError, TypeError, ValueError):
            continue
    sel_keys = {k.key() for k in selected}
    resumed = len(sel_keys & set(done))
    todo = [k for k in selected if k.key() not in done]
    if max_kernels is not None:
        todo = todo[:max_kernels]
    log = RunLog(folder, hardware, {
        "kind": "retime", "started_at": now(), "space": space_name, "command": command,
        "selected_rows": len(selected), "planned_not_in_table": not_in_table, "resumed_from_side_file": resumed,
        "to_measure": len(todo), "repaired_bytes": repaired, "loadavg_start": load_average(),
        "priority": scheduling_priority()})
    failures: list[dict[str, Any]] = []
    failed_keys: set[tuple] = set()
    merged = False
    desc: dict[str, Any] | None = None
    ratios: list[float] = []
    loaded: list[str] = []

    def closing() -> dict[str, Any]:
        facts: dict[str, Any] = {"failures": failures[:50], "table_rewritten": merged,
                                 "loadavg_end": load_average(), "loaded_rows": loaded[:50],
                                 "n_loaded_rows": len(loaded)}
        if ratios:
            q = np.quantile(ratios, [0.1, 0.5, 0.9])
            facts["new_over_old_latency"] = {"p10": round(float(q[0]), 3), "median": round(float(q[1]), 3),
                                             "p90": round(float(q[2]), 3), "n": len(ratios)}
        if not merged:
            facts["note"] = (f"interrupted or limited: {len(done)} re-timed rows wait in {RETIME_FILE}; "
                             "table.csv is unchanged. Run the same command again to resume.")
        # a retime of every row makes the backend's protocol (timing sessions...) the table's own
        whole = merged and len(selected) == len(rows) and desc is not None
        log.final_desc = desc if whole else None
        return facts

    log.closing = closing
    with measuring(backend, log):
        desc = backend.describe()
        if desc.get("synthetic") and "SYNTHETIC" not in str(log.meta.get("source", "")):
            log.info["warning"] = "synthetic backend used to re-time a measured table"
        for c in ("backend", "threads", "timing", "device"):
            if c in desc:
                log.info[c] = desc[c]
        log.start(None)
        bar = Progress(progress, len(selected), f"retime {hardware}", initial=resumed)
        try:
            for k in todo:
                m = backend.measure(k)
                old = rows[by_key[k.key()]]
                if m.ok:
                    row = _retimed_row(old, m, k, header)
                    append_row(side_p, header, row)
                    done[k.key()] = {c: str(row.get(c, "")) for c in header}
                    log.measured += 1
                    if m.extra.get("quiet") is False:
                        loaded.append(k.short())
                    try:
                        ratios.append(float(m.latency_ms) / float(old["latency_ms"]))
                    except (TypeError, ValueError, ZeroDivisionError):
                        pass
                else:
                    log.failed += 1
                    failed_keys.add(k.key())
                    failures.append({"kernel": k.short(), "reason": m.reason[:300]})
                bar.step(k, m)
        finally:
            bar.close()
        left = [k for k in selected if k.key() not in done and k.key() not in failed_keys]
        if not left:
            # every selected row re-timed (or failed and kept): rewrite table.csv in one atomic step
            new_rows = [done.get(key, r) if key in sel_keys else r
                        for key, r in zip((row_key(r) for r in rows), rows)]
            text = csv_line(header) + "".join(csv_line([r.get(c, "") for c in header]) for r in new_rows)
            atomic_write_text(table_p, text)
            merged = True
            side_p.unlink(missing_ok=True)
    return CalibrationResult(hardware=hardware, folder=str(folder), retimed=log.measured, failed=log.failed,
                             resumed=resumed, selected=len(selected), table_rewritten=merged,
                             wall_s=log.wall_s, loaded_rows=loaded)
