"""Is anything else running while we time? CPU time used by other processes during a timing window.

A latency measured while another job shares the cores is wrong (by 1.4-1.7x for a whole table on a 2-core
machine), and the timings themselves cannot tell: a uniformly slowed table still looks self-consistent. The
kernel's own process cannot see the other jobs either — but the kernel can: ``/proc/stat`` counts every CPU's
busy time, and this process's own CPU time (all its threads) is known, so

    other_cores = (Δ busy time of all CPUs − Δ CPU time of this process) / Δ wall time

is how many cores' worth of work *something else* did during the window (``steal_cores``: time the hypervisor
gave to other virtual machines). On an otherwise idle machine it stays near 0 (kernel threads, the tick); a
second job running one busy thread reads ≈ 1.

Only the window of timing runs counts (TVM's ``time_evaluator`` runs in this process); tuning and compiling are
outside it. Linux only: elsewhere :func:`monitor` yields a result
with ``available=False`` and nothing is detected (the run records that).

Used by the TVM backend (each timing session is kept only if it was quiet; see
:class:`hao.latency.tvm_backend.TVMBackend`), by ``hao calibrate`` / ``--retime`` (rows measured under load are
re-timed, then reported; a final seeded re-check of rows refuses a drifted table) and by ``hao latency
validate``. See docs/measurement.md, "On a shared machine".
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Interference", "monitor", "keep_session", "QUIET_OTHER_CORES", "cpu_counters"]

#: A timing window is *quiet* when other processes used at most this many cores on average during it. On an idle
#: Linux machine the background (kernel threads, the tick, this tool's own shell) measured 0.00-0.05 cores; one
#: competing busy thread reads ~1.0.
QUIET_OTHER_CORES = 0.25

_STAT = Path("/proc/stat")


@dataclass(frozen=True)
class Interference:
    """What other processes did during one timing window (cores' worth, averaged over ``wall_s``)."""

    other_cores: float
    steal_cores: float
    wall_s: float
    available: bool = True

    def quiet(self, limit: float = QUIET_OTHER_CORES) -> bool:
        """True when other processes and the hypervisor took at most ``limit`` cores during the window (always
        True where the counters are unavailable: nothing can be detected there)."""
        return not self.available or (self.other_cores + self.steal_cores) <= limit



def keep_session(quiet: bool, median: float, kept_quiet: bool, kept_median: float | None) -> bool:
    """Whether a timing session replaces the one kept so far: a quiet session beats a loaded one; between two of
    the same kind, the lower median wins (nothing makes a kernel faster than it is). ``kept_median=None``: none
    kept yet."""
    if kept_median is None:
        return True
    if quiet != kept_quiet:
        return quiet
    return median < kept_median


def cpu_counters() -> tuple[float, float] | None:
    """(busy seconds of all CPUs, stolen seconds) since boot from ``/proc/stat``; None where unreadable."""
    try:
        with _STAT.open() as fh:
            first = fh.readline().split()
    except OSError:
        return None
    if not first or first[0] != "cpu" or len(first) < 5:
        return None
    v = [int(x) for x in first[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice; guest time is already in user/nice
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    steal = v[7] if len(v) > 7 else 0
    busy = sum(v[:8]) - idle - steal
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    return busy / tick, steal / tick


@contextmanager
def monitor() -> Iterator[list[Interference]]:
    """``with monitor() as got: ...`` — on exit, ``got[0]`` is the :class:`Interference` of the block.

    Resolution: the kernel's tick (10 ms on most Linux systems), so windows of at least ~0.2 s give a useful
    reading; shorter ones are noisy (the TVM backend's timing sessions are 0.2-1 s)."""
    out: list[Interference] = []
    c0 = cpu_counters()
    own0, w0 = time.process_time(), time.perf_counter()
    try:
        yield out
    finally:
        wall = max(time.perf_counter() - w0, 1e-9)
        c1 = cpu_counters()
        if c0 is None or c1 is None:
            out.append(Interference(0.0, 0.0, wall, available=False))
        else:
            own = time.process_time() - own0
            other = max(0.0, (c1[0] - c0[0]) - own) / wall
            out.append(Interference(other, max(0.0, c1[1] - c0[1]) / wall, wall))
