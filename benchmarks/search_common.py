"""Shared set-up of the search benchmarks: the joint MBConv problem with real or clearly-labelled synthetic costs.

Latency: the committed CPU table's predictor when one exists (``latency_models/cpu-*``), else a roofline model.
Proxy: the committed sensitivities (``checkpoints/mbconv-fmnist/sensitivity.json``) when present, else a synthetic
additive proxy built from the same LayerPerturbations (2^-2b quantization noise x kept weights + removed weights).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]

from hao.search.base import SearchProblem  # noqa: E402
from hao.search.objectives import (AdditiveObjective, bops_objective, kernel_objective,  # noqa: E402
                                   latency_objective, proxy_objective, size_objective)


def synthetic_proxy(space: Any) -> AdditiveObjective:
    """Deterministic stand-in for the Hessian proxy with the right structure (used only when no committed
    sensitivities exist; the benchmark output says which one ran)."""
    full: dict[str, int] = {}
    for u in space.units():
        for p in space.unit_layers(u.name, space.unit_options(u)[0]):
            full[p.path] = 1

    def fn(unit: str, local: Any) -> float:
        if local is None:
            return 0.05
        v = 0.0
        for p in space.unit_layers(unit, local):
            rank = 1.0 + 0.1 * (hash(p.path) % 7)
            k = p.kernel_keep or 7
            v += rank * (4.0 ** -min(p.w_bits, 16) + 0.5 * 4.0 ** -min(p.a_bits, 16)) + 0.002 * (7 - k)
        return v

    return AdditiveObjective.from_unit_fn(space, "proxy", fn, unit="synthetic")


def mbconv_problem(space_name: str = "mbconv-fmnist", checkpoint: str | None = None
                   ) -> tuple[SearchProblem, dict[str, str]]:
    from hao.space import get_space
    space = get_space(space_name)
    info: dict[str, str] = {}
    t0 = time.perf_counter()
    try:
        from hao.search.api import resolve_proxy
        proxy = proxy_objective(space, resolve_proxy(space, checkpoint=checkpoint))
        info["proxy"] = f"sensitivities in {checkpoint}" if checkpoint else "committed sensitivities"
    except Exception as exc:  # noqa: BLE001 - fall back, and say so
        proxy = synthetic_proxy(space)
        info["proxy"] = f"synthetic ({str(exc)[:60]}...)"
    hw = sorted(p.name for p in (REPO / "latency_models").glob("cpu-*") if (p / "table.csv").is_file())
    if hw:
        from hao.latency.predictor import LatencyPredictor
        lat = latency_objective(space, LatencyPredictor.from_table(hw[0]))
        info["latency"] = f"LatencyPredictor on latency_models/{hw[0]}"
    else:
        def roofline(ks: list) -> list[float]:
            return [k.macs / 2e8 + k.input_bytes / 5e9 + 0.003 for k in ks]
        lat = kernel_objective(space, "latency_ms", roofline, unit="ms")
        info["latency"] = "roofline stand-in"
    problem = SearchProblem(space, [proxy, lat, size_objective(space), bops_objective(space)])
    info["build_s"] = f"{time.perf_counter() - t0:.1f}"
    return problem, info


def hawq_problem(model: str = "resnet18") -> SearchProblem:
    import importlib.util
    spec = importlib.util.spec_from_file_location("hawq_v3_exp", REPO / "experiments" / "hawq_v3.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    data = mod.load(mod.DEFAULT_DATA)
    problem, _ = mod.build_problem(model, data["models"][model])
    return problem


def cpu_seconds() -> float:
    return time.process_time()


def fmt_table(rows: list[dict[str, Any]]) -> str:
    cols = list(rows[0])
    w = {c: max(len(c), *(len(f"{r[c]}") for r in rows)) for c in cols}
    lines = ["  ".join(f"{c:>{w[c]}}" for c in cols)]
    lines += ["  ".join(f"{r[c]!s:>{w[c]}}" for c in cols) for r in rows]
    return "\n".join(lines)


__all__ = ["mbconv_problem", "hawq_problem", "synthetic_proxy", "cpu_seconds", "fmt_table", "np"]
