"""Helpers shared by the experiment scripts (not a public API): repo path, run facts, JSON output, statistics.

Every script states its wall time, thread counts, seeds and the machine load in its JSON output; these helpers
keep that uniform.
"""
from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


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


def jsonable(o: Any) -> Any:
    """Plain JSON types (NaN/inf become null; numpy scalars become Python numbers)."""
    if isinstance(o, dict):
        return {str(k): jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return jsonable(o.tolist())
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating, float)):
        f = float(o)
        return f if math.isfinite(f) else None
    if isinstance(o, (np.bool_,)):
        return bool(o)
    if isinstance(o, (str, int, bool)) or o is None:
        return o
    return str(o)


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically (temp file + rename)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(json.dumps(jsonable(obj), indent=2) + "\n")
    tmp.replace(p)
    return p


def kendall_tau(x: Any, y: Any, seed: int = 0, boot: int = 300) -> dict[str, float | int | None]:
    """Kendall τ-b of (x, y), its two-sided p-value and a bootstrap standard error (seeded)."""
    from scipy.stats import kendalltau

    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.size < 2:
        return {"tau": None, "p_value": None, "se_bootstrap": None, "n": int(x.size)}
    r = kendalltau(x, y)
    rng = np.random.default_rng(seed)
    bs = []
    for _ in range(boot):
        i = rng.integers(0, x.size, x.size)
        t = kendalltau(x[i], y[i]).statistic
        if np.isfinite(t):
            bs.append(t)
    return {"tau": float(r.statistic), "p_value": float(r.pvalue), "n": int(x.size),
            "se_bootstrap": float(np.std(bs, ddof=1)) if len(bs) > 1 else None}


def latency_error_stats(pred: Any, meas: Any) -> dict[str, Any]:
    """nn-Meter's metrics: share of networks within ±10 %, median / max |relative error| (%), Kendall τ."""
    pred, meas = np.asarray(pred, float), np.asarray(meas, float)
    rel = (pred - meas) / meas * 100.0
    out: dict[str, Any] = {"n": int(meas.size), "share_within_10pct": float((np.abs(rel) <= 10.0).mean()),
                           "median_abs_err_pct": float(np.median(np.abs(rel))),
                           "max_abs_err_pct": float(np.abs(rel).max()),
                           "median_signed_err_pct": float(np.median(rel))}
    if meas.size >= 2:
        out["kendall_tau_pred_vs_measured"] = kendall_tau(pred, meas)["tau"]
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
