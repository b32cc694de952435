"""Check a latency table against published whole-network latencies, without TVM.

    hao latency validate HARDWARE --published nets.csv [--network-scale on|off|auto]

``nets.csv`` has one row per network someone measured on that hardware: ``candidate`` (a ``Candidate.to_json()``
of any registered space) and ``measured_ms``; other columns are kept as labels. Each network's kernels are looked
up (or predicted) in the table and summed, and the per-network overhead ``measured ≈ scale·Σ + a + b·kernels``
(:func:`hao.latency.predictor.fit_overhead_coefs`) is fitted **leave-one-out**: every network's prediction uses
an overhead fitted on the others, so the reported errors are held-out figures. The report gives the share
within ±10%, the median and worst error and Kendall τ, with and without the overhead model, per network.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from hao.errors import ConfigError

__all__ = ["read_published", "validate_published"]


def read_published(path: str | Path) -> list[dict[str, Any]]:
    """Rows of ``path`` with a parsed ``candidate`` and a float ``measured_ms``; a bad row is refused with its
    line number."""
    from hao.space import get_space
    from hao.space.base import Candidate

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--published {p} does not exist; give a CSV with the columns candidate, measured_ms.")
    with p.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in ("candidate", "measured_ms") if c not in (reader.fieldnames or [])]
        if missing:
            raise ConfigError(f"{p} lacks the column(s) {missing}; it needs candidate (a Candidate JSON) and "
                              f"measured_ms (a whole-network latency in ms). Columns found: {reader.fieldnames}.")
        rows = []
        for i, r in enumerate(reader, start=2):
            try:
                cand = Candidate.from_json(r["candidate"])
                space = get_space(cand.space)
                cand = space.canonical(space.validate(cand))
                ms = float(r["measured_ms"])
                if not np.isfinite(ms) or ms <= 0:
                    raise ValueError(f"measured_ms must be a number > 0, got {r['measured_ms']!r}")
            except Exception as exc:  # noqa: BLE001 - every problem of a row is reported with its line
                raise ConfigError(f"{p}, line {i}: {exc}. Fix or remove that row.") from None
            rows.append({**r, "candidate": cand, "space": space, "measured_ms": ms})
    if len(rows) < 3:
        raise ConfigError(f"{p} has {len(rows)} networks; a leave-one-out overhead fit needs at least 3.")
    return rows


def validate_published(hardware: str, path: str | Path, *, network_scale: bool | str = False) -> dict[str, Any]:
    """The report described in the module docstring (``network_scale``: True, False or ``"auto"`` — the one
    with the lower leave-one-out median error)."""
    from hao.latency.predictor import LatencyPredictor, fit_overhead_coefs
    from hao.stats import error_stats

    rows = read_published(path)
    from hao.latency.table import load_table

    pred = LatencyPredictor(quantiles=None).fit(load_table(hardware))
    pred.overhead_ms_ = pred.overhead_per_kernel_ms_ = 0.0
    pred.network_scale_ = 1.0
    sums, counts, measured, hits = [], [], [], []
    for r in rows:
        ks = r["space"].kernels(r["candidate"])
        sums.append(float(pred.predict(ks, prefer_measured=True).sum()))
        counts.append(len(ks))
        hits.append(sum(k.key() in pred.measured_ for k in ks) / max(1, len(ks)))
        measured.append(r["measured_ms"])
    s, n, y = (np.asarray(v, float) for v in (sums, counts, measured))

    def loo(scale: bool) -> np.ndarray:
        out = np.empty_like(y)
        for i in range(len(y)):
            m = np.arange(len(y)) != i
            c, a, b = fit_overhead_coefs(s[m], n[m], y[m], network_scale=scale)
            out[i] = c * s[i] + a + b * n[i]
        return out

    options = {"off": loo(False), "on": loo(True)}
    if network_scale == "auto":
        choice = min(options, key=lambda k: float(np.median(np.abs(options[k] / y - 1))))
    elif isinstance(network_scale, bool):
        choice = "on" if network_scale else "off"
    else:
        raise ConfigError(f"network_scale must be True, False or 'auto', got {network_scale!r}.")
    final = options[choice]
    c, a, b = fit_overhead_coefs(s, n, y, network_scale=choice == "on")
    return {"hardware": hardware, "published": str(path), "n_networks": int(len(y)),
            "model": f"measured = {c:.4g}·Σkernels + {a:.4g} ms + {b:.4g} ms·kernels (all networks)",
            "network_scale": choice, "summary": error_stats(final, y),
            "sum_of_kernels_only": error_stats(s, y),
            "alternatives": {k: error_stats(v, y) for k, v in options.items()},
            "networks": [{**{k: v for k, v in r.items() if k not in ("candidate", "space")},
                          "candidate": r["candidate"].to_json(), "sum_kernels_ms": float(si),
                          "predicted_ms": float(fi), "table_hit_share": float(h)}
                         for r, si, fi, h in zip(rows, s, final, hits)]}
