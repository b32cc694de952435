"""The skeleton every measurement run into a hardware folder shares (``hao calibrate``, its ``--retime`` and the
RPC farm): the folder name check, SIGTERM handled like Ctrl-C, the run's entry in ``meta.json`` (written when
the run starts, completed however it ends), and the progress bar.

``meta.json`` is replaced atomically; its row counts are recounted from the files on every write.
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from hao.errors import ConfigError
from hao.latency.rows import now, read_rows
from hao.latency.table import atomic_write_text, default_write_root

__all__ = ["table_folder", "load_meta", "write_meta", "scheduling_priority", "load_average",
           "sigterm_as_interrupt", "CalibrationResult", "RunLog", "measuring", "Progress"]


def table_folder(hardware: str, root: str | os.PathLike | None) -> Path:
    """``<root>/<hardware>`` (root: the default write root); the name must be a plain folder name."""
    if not hardware or any(c in hardware for c in "/\\") or hardware.startswith("."):
        raise ConfigError(f"--hardware must be a folder name without slashes, got {hardware!r}.")
    return Path(root if root is not None else default_write_root()) / hardware


def load_meta(p: Path) -> dict[str, Any]:
    """``meta.json`` as a dict; ``{}`` when missing or unreadable."""
    if p.is_file():
        try:
            m = json.loads(p.read_text())
            if isinstance(m, dict):
                return m
        except json.JSONDecodeError:
            pass
    return {}


def write_meta(p: Path, meta: dict[str, Any], hardware: str, desc: dict[str, Any] | None,
               run_info: dict[str, Any], folder: Path, final: bool = False) -> None:
    """Write ``meta`` with the backend's description ``desc`` (if given) and the run entry ``run_info``
    (appended, or replacing the last entry with the same ``started_at`` when ``final``), and the counts of
    ``table.csv`` and ``failed.csv``."""
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
    rows = read_rows(folder / "table.csv")
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
    """The 1, 5 and 15 minute load averages (None where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):  # pragma: no cover - not on Unix
        return None


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Inside, SIGTERM (kill, a farm's scheduler) raises ``KeyboardInterrupt`` like Ctrl-C, so a run ends through
    its ``finally`` blocks: the current kernel is abandoned, rows already appended stay, and ``meta.json`` is
    brought up to date. Only in the main thread (elsewhere signals cannot be handled); restored on exit."""
    old_handler = None
    if threading.current_thread() is threading.main_thread():
        def _on_term(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        old_handler = signal.signal(signal.SIGTERM, _on_term)
    try:
        yield
    finally:
        if old_handler is not None:
            signal.signal(signal.SIGTERM, old_handler)


class CalibrationResult(dict):
    """Counts and paths of a calibration run (a dict, JSON-able)."""


class RunLog:
    """One run's entry in ``folder/meta.json`` (``calibration_runs[-1]``): :meth:`start` writes it, :meth:`finish`
    completes it with the end time, the ``measured``/``failed`` counts, the wall time per kernel and the facts
    of ``closing`` (a callable the run may set; its ``final_desc``, if set, is then written as the table's
    backend description)."""

    def __init__(self, folder: Path, hardware: str, info: dict[str, Any]) -> None:
        self.folder, self.hardware, self.info = folder, hardware, info
        self.meta_p = folder / "meta.json"
        self.t0 = time.perf_counter()
        self.meta = load_meta(self.meta_p)
        self.measured = self.failed = 0
        self.closing: Callable[[], dict[str, Any]] | None = None
        self.final_desc: dict[str, Any] | None = None
        self.wall_s = 0.0

    def start(self, desc: dict[str, Any] | None) -> None:
        write_meta(self.meta_p, self.meta, self.hardware, desc, self.info, self.folder)

    def finish(self) -> None:
        wall = time.perf_counter() - self.t0
        self.wall_s = round(wall, 1)
        self.info.update(finished_at=now(), measured=self.measured, failed=self.failed,
                         **(self.closing() if self.closing is not None else {}), wall_s=self.wall_s,
                         wall_s_per_kernel=round(wall / max(1, self.measured + self.failed), 2))
        write_meta(self.meta_p, load_meta(self.meta_p), self.hardware, self.final_desc, self.info, self.folder,
                   final=True)


@contextmanager
def measuring(backend: Any, log: RunLog) -> Iterator[Any]:
    """A sequential run's frame: SIGTERM ends it like Ctrl-C, ``backend`` is open inside (yielded), and on the way
    out — finished, failed or interrupted — the handler is restored, the backend closed and ``log`` finished.
    A backend that fails to open leaves ``meta.json`` untouched."""
    with sigterm_as_interrupt():
        backend.open()
        try:
            yield backend
        finally:
            try:
                backend.close()
            finally:
                log.finish()


class Progress:
    """A tqdm bar over kernels (nothing when ``enabled`` is false): :meth:`step` shows a kernel and its result."""

    def __init__(self, enabled: bool, total: int, desc: str, initial: int = 0) -> None:
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit="kernel", dynamic_ncols=True)

    def step(self, k: Any, m: Any) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"{k.short()[:38]} {'%.4g ms' % m.latency_ms if m.ok else 'FAILED'}")
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
