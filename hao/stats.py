"""Statistics every report uses, in one place: prediction errors and Kendall τ with a bootstrap error.

* :func:`error_stats` — predicted vs measured (latency, accuracy): |relative error| summaries, the share within
  ±10 % (nn-Meter's metric) and Kendall τ;
* :func:`kendall_tau` — τ-b, its p-value and a seeded bootstrap standard error.
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["error_stats", "kendall_tau"]


def kendall_tau(x: Any, y: Any, seed: int = 0, boot: int = 300) -> dict[str, float | int | None]:
    """Kendall τ-b of (x, y), its two-sided p-value and a bootstrap standard error (``boot`` resamples drawn by
    a generator seeded with ``seed``; 0 skips it). Fewer than two points give ``None``s."""
    from scipy.stats import kendalltau

    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.shape != y.shape:
        raise ValueError(f"kendall_tau needs x and y of one shape, got {x.shape} and {y.shape}.")
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


def error_stats(pred: Any, true: Any) -> dict[str, Any]:
    """``n``, median / mean / p90 / max |relative error| (%), the median signed error (%), the share within
    ±10 %, and Kendall τ (with two or more points) of ``pred`` against ``true`` (> 0)."""
    pred, true = np.asarray(pred, float), np.asarray(true, float)
    if pred.shape != true.shape or true.size == 0:
        raise ValueError(f"error_stats needs pred and true of one non-empty shape, got {pred.shape} and "
                         f"{true.shape}.")
    signed = (pred - true) / true * 100.0
    rel = np.abs(signed)
    out: dict[str, Any] = {"n": int(true.size), "median_abs_err_pct": float(np.median(rel)),
                           "mean_abs_err_pct": float(rel.mean()), "p90_abs_err_pct": float(np.percentile(rel, 90)),
                           "max_abs_err_pct": float(rel.max()), "median_signed_err_pct": float(np.median(signed)),
                           "share_within_10pct": float((rel <= 10.0).mean())}
    if true.size >= 2:
        out["kendall_tau"] = kendall_tau(pred, true, boot=0)["tau"]
    return out
