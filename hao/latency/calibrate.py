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

This module plans the kernels (:func:`space_kernels`, :func:`plan_kernels`), checks a folder before a run
(:func:`claim_calibration_folder`, :func:`plan_run`) and runs a calibration (:func:`calibrate`). Row I/O is in
:mod:`hao.latency.rows`, the run skeleton (signals, ``meta.json``, progress) in :mod:`hao.latency.runlog`,
re-timing an existing table (``hao calibrate --retime``) in :mod:`hao.latency.retime`; their public names are
re-exported here. Parallel calibration over RPC servers is :mod:`hao.latency.farm`.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from hao.errors import ConfigError
from hao.kernel import KEY_COLUMNS, KernelSpec
from hao.latency.backend import LatencyBackend, kernel_precision, replace_bits
from hao.latency.retime import RETIME_COLUMNS, RETIME_FILE, retime
from hao.latency.rows import (FAILED_COLUMNS, append_row, ensure_header, failed_row, measured_row, now,
                              read_keys, repair_tail)
from hao.latency.runlog import (CalibrationResult, Progress, RunLog, load_average, load_meta, measuring,
                                scheduling_priority, table_folder)
from hao.latency.coverage import space_kernels  # noqa: F401  (re-exported: the calibration plan starts from it)
from hao.latency.table import TABLE_COLUMNS

__all__ = ["space_kernels", "plan_kernels", "calibrate", "retime", "CalibrationResult", "append_row",
           "repair_tail", "measured_row", "FAILED_COLUMNS", "RETIME_FILE", "RETIME_COLUMNS",
           "claim_calibration_folder", "plan_run", "PlannedRun", "scheduling_priority", "load_average"]


def _existing_rows(path: Path, kernels: Sequence[KernelSpec]) -> dict[KernelSpec, float]:
    """Kernels of ``kernels`` that already have a row in ``path`` (table.csv: with their latency; failed.csv:
    NaN)."""
    import pandas as pd

    if not path.is_file() or path.stat().st_size == 0:
        return {}
    df = pd.read_csv(path)
    if df.empty:
        return {}
    by_key = {k.key(): k for k in kernels}
    cols = [c for c in KEY_COLUMNS if c in df.columns]
    lat = df["latency_ms"].to_numpy(float) if "latency_ms" in df.columns else np.full(len(df), np.nan)
    out: dict[KernelSpec, float] = {}
    for vals, v in zip(df[cols].itertuples(index=False, name=None), lat):
        k = by_key.get(tuple(vals))
        if k is not None:
            out[k] = float(v)
    return out


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



@dataclass
class PlannedRun:
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


def plan_run(hardware: str, kernels: Sequence[KernelSpec], root: str | os.PathLike | None, retry_failed: bool,
             max_kernels: int | None) -> PlannedRun:
    """Check the folder name, repair torn last lines, check the header, and list what is left to measure:
    keys already in ``table.csv`` (or in ``failed.csv``, unless ``retry_failed``) are skipped."""
    folder = table_folder(hardware, root)
    folder.mkdir(parents=True, exist_ok=True)
    table_p, failed_p, meta_p = folder / "table.csv", folder / "failed.csv", folder / "meta.json"
    repaired = repair_tail(table_p) + repair_tail(failed_p)
    header = ensure_header(table_p, TABLE_COLUMNS)
    missing_cols = [c for c in KEY_COLUMNS + ("latency_ms", "std_ms", "repeats") if c not in header]
    if missing_cols:
        raise ConfigError(f"{table_p}: existing header lacks {missing_cols}; it was not written by hao. Move it "
                          "away or choose another --hardware name.")
    fheader = ensure_header(failed_p, FAILED_COLUMNS)
    done = read_keys(table_p)
    failed_before = read_keys(failed_p)
    todo = [k for k in kernels if k.key() not in done and (retry_failed or k.key() not in failed_before)]
    if max_kernels is not None:
        todo = todo[:max_kernels]
    return PlannedRun(folder, table_p, failed_p, meta_p, header, fheader, todo, len(kernels) - len(todo), repaired)


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
        meta = load_meta(meta_p)
        if not meta:
            conflicts.append("it has no readable meta.json, so it was not written by `hao calibrate`")
        elif meta.get("importer"):
            conflicts.append(f"it holds a table imported with `hao latency import {meta['importer']}` from "
                             f"{meta.get('imported_from', '?')}")
        else:
            new = backend.describe()  # opens the backend if needed: the target it resolves is what is compared
            for key in ("backend", "target", "synthetic"):
                if key in meta or key in new:
                    if meta.get(key) != new.get(key):
                        conflicts.append(f"its table was measured with {key}={meta.get(key)!r}, this run would "
                                         f"use {key}={new.get(key)!r}")
    moved = claim_folder(folder, force=force, what=what, conflicts=conflicts, resumable=True)
    if moved is not None:
        print(f"{what}: moved the old {folder} to {moved}", file=sys.stderr)


def calibrate(hardware: str, kernels: Sequence[KernelSpec], backend: LatencyBackend, *,
              root: str | os.PathLike | None = None, retry_failed: bool = False, progress: bool = True,
              space_name: str | None = None, command: str | None = None,
              max_kernels: int | None = None, recheck: int = 6, defer_passes: int = 3,
              defer_pause_s: float = 10.0, adaptive: Any = None, budget: int | None = None) -> CalibrationResult:
    """Measure ``kernels`` (in order) that ``latency_models/<hardware>/`` does not have yet and append them.

    ``backend`` is opened and closed here. Returns counts: measured, failed, skipped, wall seconds, and the load
    checks (docs/measurement.md, "On a shared machine"): a kernel whose every timing session had other processes
    on the cores is set aside and re-measured after the others, in up to ``defer_passes`` passes
    ``defer_pause_s`` apart; ``loaded_rows`` lists those still loaded in the last pass (written, flagged), and
    ``recheck`` is :func:`recheck_rows` on ``recheck`` seeded rows of this run (0 = skip). ``hao calibrate`` exits
    non-zero when either finds load.

    ``adaptive`` (an :class:`~hao.latency.adaptive.AdaptiveSampler` over ``kernels``) measures kernels in the
    order it proposes, refitting after each batch, until the table holds ``budget`` of the pool's kernels (rows
    already there count: a re-run resumes).
    """
    if adaptive is not None and (not isinstance(budget, int) or budget < 1):
        raise ConfigError(f"calibrate(adaptive=...) needs budget = the number of kernels to measure (an int >= 1), "
                          f"got {budget!r}.")
    run = plan_run(hardware, kernels, root, retry_failed, None if adaptive is not None else max_kernels)
    log = RunLog(run.folder, hardware, {"started_at": now(), "space": space_name, "command": command,
                                        "planned": len(kernels), "to_measure": len(run.todo),
                                        "skipped_existing": run.skipped, "repaired_bytes": run.repaired})
    done: list[tuple[KernelSpec, float]] = []
    known = _existing_rows(run.table_p, kernels) if adaptive is not None else {}
    failed_now: list[KernelSpec] = []
    loaded: list[str] = []
    check: dict[str, Any] = {}
    deferred: list[KernelSpec] = []
    # set_aside_unmeasured: kernels set aside under load and not yet written when the run ended (interrupted);
    # a re-run measures them again (their schedules are in tuning_db/)
    log.closing = lambda: {"loaded_rows": loaded[:50], "n_loaded_rows": len(loaded), "recheck": check or None,
                           "set_aside_unmeasured": len(deferred),
                           "adaptive": None if adaptive is None else
                           {"budget": budget, "pool": len(kernels), "start": adaptive.start, "batch": adaptive.batch,
                            "seed": adaptive.seed, "rounds": adaptive.rounds}}
    with measuring(backend, log):
        log.start(backend.describe())
        total = len(run.todo) if adaptive is None else max(budget - len(known), 0)
        bar = Progress(progress, total, f"calibrate {hardware}")

        def write(k: KernelSpec, m: Any) -> None:
            if m.ok:
                append_row(run.table_p, run.header, measured_row(m, k))
                log.measured += 1
                done.append((k, float(m.latency_ms)))
                known[k] = float(m.latency_ms)
                if m.extra.get("quiet") is False:
                    loaded.append(k.short())
            else:
                append_row(run.failed_p, run.fheader, failed_row(k, m.impl, m.reason))
                log.failed += 1
                failed_now.append(k)

        def stream() -> Iterable[KernelSpec]:
            if adaptive is None:
                yield from run.todo
                return
            before = _existing_rows(run.failed_p, kernels) if not retry_failed else {}
            while len(known) + len(deferred) < budget:
                batch = adaptive.next(known, failed=[*before, *failed_now, *deferred])
                if not batch:
                    return
                yield from batch[: budget - len(known) - len(deferred)]

        try:
            for k in stream():
                m = backend.measure(k)
                if m.ok and m.extra.get("quiet") is False and defer_passes > 0:
                    deferred.append(k)  # timed under load: try again later (its schedule is kept, so it is quick)
                else:
                    write(k, m)
                bar.step(k, m)
            for p in range(defer_passes):
                if not deferred:
                    break
                time.sleep(defer_pause_s)
                still = []
                for k in deferred:
                    m = backend.measure(k)
                    if m.ok and m.extra.get("quiet") is False and p < defer_passes - 1:
                        still.append(k)
                    else:
                        write(k, m)  # quiet now, or the last pass: written, flagged if still loaded
                deferred[:] = still
        finally:
            bar.close()
        if recheck and done:
            check.update(recheck_rows(backend, done, recheck, seed=0))
    return CalibrationResult(hardware=hardware, folder=str(run.folder), measured=log.measured, failed=log.failed,
                             skipped=run.skipped, wall_s=log.wall_s, loaded_rows=loaded, recheck=check or None)


#: The final re-check refuses a table when re-timed rows moved by more than this (median of new/old - 1).
DRIFT_LIMIT = 0.10


def recheck_rows(backend: LatencyBackend, done: Sequence[tuple[KernelSpec, float]], n: int, seed: int = 0
                 ) -> dict[str, Any]:
    """Re-time a seeded sample of ``n`` rows just measured (``(kernel, latency_ms)``), after the whole run, and
    compare: interference the per-session check cannot see (another job that started and stopped between rows,
    a clock that changed, a neighbour on a virtual machine without steal accounting) makes the two disagree.
    ``drifted`` is True when the median of new/old is off 1 by more than :data:`DRIFT_LIMIT`; ``rows`` names each
    re-timed kernel with its ratio."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(done), size=min(n, len(done)), replace=False)
    rows = []
    for i in sorted(int(j) for j in pick):
        k, old = done[i]
        m = backend.measure(k)
        if m.ok and old > 0:
            rows.append({"kernel": k.short(), "old_ms": round(old, 6), "new_ms": round(float(m.latency_ms), 6),
                         "ratio": round(float(m.latency_ms) / old, 4)})
    if not rows:
        return {"n": 0, "drifted": False, "rows": []}
    med = float(np.median([r["ratio"] for r in rows]))
    return {"n": len(rows), "median_ratio": round(med, 4), "limit": DRIFT_LIMIT,
            "drifted": bool(abs(med - 1.0) > DRIFT_LIMIT), "rows": rows}
