"""Statistics every report uses, in one place: prediction errors and Kendall τ with a bootstrap error.

* :func:`error_stats` — predicted vs measured (latency, accuracy): |relative error| summaries, the share within
  ±10 % (nn-Meter's metric) and Kendall τ;
* :func:`kendall_tau` — τ-b, its p-value and a seeded bootstrap standard error;
* :func:`image_sampling` — how much of a ranking of candidates measured on one set of images is that set: the
  per-pair noise, and the τ a perfect predictor would reach against the measurement (docs/accuracy_model.md,
  "Three more fresh seeds").
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["error_stats", "image_sampling", "kendall_tau"]


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


def image_sampling(correct: Any, predictions: Any = None, *, extra_sd: float = 0.0, boot: int = 200,
                   seed: int = 0) -> dict[str, Any]:
    """What the choice of images does to a ranking of candidates that were all measured on the same images.

    ``correct``: ``(n_candidates, n_images)``, 1 where a candidate classified an image right. Two candidates'
    accuracies share every image, so the noise that can swap them is in the images where they *disagree*:
    ``pair_sd`` is the median over pairs of ``100·sqrt(var_j(c_ij − c_kj) / n)``, the standard error (points) of
    one pair's accuracy difference from drawing ``n`` images.

    ``ceiling_tau``: the Kendall τ that a predictor knowing every candidate's accuracy on the whole image
    population would reach, on average, against one measurement on ``n`` images — by the bootstrap analogue:
    the accuracies on these images play the population, accuracies on ``boot`` resamples of the images (drawn
    with replacement by a generator seeded with ``seed``), plus Gaussian noise of ``extra_sd`` points per
    candidate (e.g. the calibration noise a test–retest measures), play the measurement. ``ceiling_tau_sd`` is
    its spread over resamples. With ``predictions``: ``tau`` of them against the measured accuracies, and
    ``tau_image_sd``, its spread over the same image resamples (the part of τ's uncertainty that more
    candidates cannot remove)."""
    from scipy.stats import kendalltau

    c = np.asarray(correct)
    if c.ndim != 2 or c.shape[0] < 2 or c.shape[1] < 2:
        raise ValueError(f"image_sampling needs correct of shape (n_candidates >= 2, n_images >= 2), got "
                         f"{c.shape}.")
    if not np.isin(c, (0, 1)).all():
        raise ValueError("image_sampling needs correct to hold 0/1 (or booleans): one entry per candidate and image.")
    if not (isinstance(extra_sd, (int, float)) and np.isfinite(extra_sd) and extra_sd >= 0):
        raise ValueError(f"image_sampling extra_sd must be a number >= 0 (points), got {extra_sd!r}.")
    c = c.astype(np.float64)
    n_c, n = c.shape
    acc = 100.0 * c.mean(axis=1)
    # var_j(c_i − c_k) = E[c_i] + E[c_k] − 2E[c_i c_k] − (E[c_i] − E[c_k])²: from the Gram matrix, no pair loop
    m, gram = c.mean(axis=1), c @ c.T / n
    var = m[:, None] + m[None, :] - 2.0 * gram - (m[:, None] - m[None, :]) ** 2
    iu = np.triu_indices(n_c, 1)
    pair_sd = 100.0 * np.sqrt(np.maximum(var[iu], 0.0) / n)
    pred = None if predictions is None else np.asarray(predictions, np.float64).reshape(-1)
    if pred is not None and pred.shape != (n_c,):
        raise ValueError(f"image_sampling needs one prediction per candidate ({n_c}), got {pred.shape}.")
    rng = np.random.default_rng(seed)
    ceil, taus = [], []
    for _ in range(boot):
        counts = np.bincount(rng.integers(0, n, n), minlength=n)
        again = 100.0 * (c @ counts) / n + rng.normal(0.0, extra_sd, n_c)
        ceil.append(kendalltau(acc, again).statistic)
        if pred is not None:
            taus.append(kendalltau(pred, again).statistic)
    out: dict[str, Any] = {"n_candidates": int(n_c), "n_images": int(n), "accuracy_sd": float(np.std(acc, ddof=1)),
                           "pair_sd": float(np.median(pair_sd)), "extra_sd": float(extra_sd),
                           "ceiling_tau": float(np.mean(ceil)) if ceil else None,
                           "ceiling_tau_sd": float(np.std(ceil, ddof=1)) if len(ceil) > 1 else None}
    if pred is not None:
        out["tau"] = float(kendalltau(pred, acc).statistic)
        out["tau_image_sd"] = float(np.std(taus, ddof=1)) if len(taus) > 1 else None
    return out
