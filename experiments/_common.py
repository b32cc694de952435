"""Helpers shared by the experiment scripts (not a public API): repo path, run facts, JSON output, statistics.

Every script states its wall time, thread counts, seeds and the machine load in its JSON output; these helpers
keep that uniform.
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def run_facts(argv: list[str] | None, threads: int | None = None) -> dict[str, Any]:
    """What a reader needs to reproduce a run: command line, git commit, CPU, load, threads, versions."""
    import torch

    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    try:
        load = list(os.getloadavg())
    except OSError:
        load = []
    return {"command": " ".join([Path(sys.argv[0]).name if argv is None else "main()",
                                 *(sys.argv[1:] if argv is None else argv)]),
            "git_commit": commit, "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "load_avg_1_5_15_at_start": load, "threads": threads, "python": platform.python_version(),
            "torch": torch.__version__}


from hao.io import jsonable, write_json  # noqa: E402,F401  (re-exported for the experiments)


from hao.stats import error_stats, kendall_tau  # noqa: E402,F401  (re-exported for the experiments)


def latency_error_stats(pred: Any, meas: Any) -> dict[str, Any]:
    """nn-Meter's metrics (:func:`hao.stats.error_stats`), with τ also under its older report key."""
    out = error_stats(pred, meas)
    out["kendall_tau_pred_vs_measured"] = out.get("kendall_tau")
    return out


def pick_evenly(n_total: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(n_total)`` (ends included), all of them if ``k >= n_total``."""
    if k >= n_total:
        return list(range(n_total))
    if k <= 1:
        return [0]
    return sorted({int(round(i)) for i in np.linspace(0, n_total - 1, k)})


class Stopwatch:
    """Named wall-clock phases: ``with sw("search"): ...``; ``sw.report()`` -> {phase: seconds, total}."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.phases: dict[str, float] = {}

    def __call__(self, name: str) -> "_Phase":
        return _Phase(self, name)

    def report(self) -> dict[str, float]:
        return {**{k: round(v, 2) for k, v in self.phases.items()},
                "total_s": round(time.perf_counter() - self.t0, 2)}


class _Phase:
    def __init__(self, sw: Stopwatch, name: str) -> None:
        self.sw, self.name = sw, name

    def __enter__(self) -> "_Phase":
        self.t = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.sw.phases[self.name] = self.sw.phases.get(self.name, 0.0) + time.perf_counter() - self.t
