"""Whole-network validation: compile candidates end to end with TVM and compare with the predictor.

For each seeded random candidate of a space:

1. ``space.build(candidate)`` -> torch module; every fake-quant layer is set to float (32 bits) and each
   BatchNorm is folded into its preceding convolution (:func:`~hao.latency.surgery.fold_batchnorm`), as an
   inference compiler does, and ReLU6 becomes ReLU (same cost; see :func:`~hao.latency.surgery.relu6_to_relu`).
   **Precision**: the networks are compiled in float32 — Relax's PyTorch frontend has no path for our
   fake-quant int8 graphs — so they are compared with the predictor's float32 figure for the same
   architecture (every kernel at w32a32). The int8 rows are validated per kernel (output checked, timed).
2. ``torch.export.export`` -> ``tvm.relax.frontend.torch.from_exported_program`` -> ``ConvertLayout`` to
   NHWC (the calibrated float layout) -> ``relax.get_pipeline("zero")`` (legalize, fold constants, fuse).
3. Every fused convolution task runs its table kernel's schedule (the trace replayed on the task, see
   :class:`~hao.latency.tuner.Tuner`), so the network runs the code the table timed; any other task (transposes,
   the classifier, pooling) takes its best record in the hardware's tuning database (``tuning_db/``) or is tuned
   with MetaSchedule (same settings as calibration) and committed there.
4. build -> ``relax.VirtualMachine``, output checked against PyTorch; once every network is built they are
   timed in interleaved passes (``time_evaluator``, one session per network per pass, lowest median kept).
5. ``calib_networks`` networks fit the predictor's per-network overhead (a + b·kernels): the space's smallest
   and largest candidates (``source: "anchor"``; with ``calib_networks >= 2``), then seeded random ones. The
   anchors span the kernel count, so a and b are both determined: random draws can share one count (a ViT's
   random networks have 41, 59 or 77 kernels, one per depth), and four at one depth left a + b·n undetermined
   (one run fitted a = 0.09 ms, b ≈ 0 and missed every shallower network by 14-16%). The next ``n_networks``
   random networks are the held-out validation set: median |error| %, share within ±10 %, Kendall τ. The
   report is written as JSON next to the table.

This module holds the run (:func:`validate_networks`) and its scoring (:func:`score_rows`). Steps 1-4 live in
:mod:`hao.latency.surgery`, :mod:`hao.latency.tuner` and :mod:`hao.latency.compiler`; their names are
re-exported here.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from hao.errors import ConfigError
from hao.latency.backend import replace_bits
from hao.latency.compiler import CompiledNetwork, build_network, compile_network, time_interleaved
from hao.latency.predictor import LatencyPredictor, error_stats, fit_overhead_coefs
from hao.latency.runlog import load_average, scheduling_priority
from hao.latency.surgery import float_model, fold_batchnorm
from hao.latency.table import atomic_write_text, hardware_dir, load_table
from hao.latency.tuner import Tuner

__all__ = ["fold_batchnorm", "float_model", "build_network", "CompiledNetwork", "compile_network",
           "time_interleaved", "validate_networks", "score_rows", "Tuner", "build_candidate", "PRECISIONS"]


def _fit_coefs(fit: list[dict[str, Any]], network_scale: bool) -> tuple[float, float, float]:
    """The predictor's overhead fit (:func:`~hao.latency.predictor.fit_overhead_coefs`) on report rows."""
    return fit_overhead_coefs([r["sum_kernels_ms"] for r in fit], [r["n_kernels"] for r in fit],
                              [r["measured_ms"] for r in fit], network_scale)


def _loo_abs_err_pct(fit: list[dict[str, Any]], network_scale: bool) -> list[float]:
    """Leave-one-out |relative error| (%) of each calibration network under the model fitted on the others."""
    errs = []
    for i, r in enumerate(fit):
        scale, a, b = _fit_coefs(fit[:i] + fit[i + 1:], network_scale)
        pred = scale * r["sum_kernels_ms"] + a + b * r["n_kernels"]
        errs.append(abs(pred - r["measured_ms"]) / r["measured_ms"] * 100.0)
    return errs


def _model_str(scale: float, a: float, b: float) -> str:
    return f"measured = {scale:.4g} * sum(kernels) + {a:.4g} ms + {b:.4g} ms * n_kernels"


def score_rows(rows: list[dict[str, Any]], network_scale: bool | str = True) -> tuple[dict[str, Any], tuple]:
    """Fit measured ≈ scale·Σkernels + a + b·n (nonnegative least squares on relative error; scale fixed to 1
    unless ``network_scale``) on the ``overhead-fit`` rows, then score the ``validation`` rows. Sets
    ``predicted_ms``/``err_pct`` on every row. Returns (summary, (scale, a, b)).

    ``network_scale="auto"`` picks between the two models on the calibration networks only: the one with the
    lower mean leave-one-out |relative error| (the additive model on a tie or with fewer than 3 calibration
    networks). ``summary["model_selection"]`` holds both LOO scores and, for the record, both models' scores on
    the validation networks (``alternatives``) — the validation networks never influence the choice."""
    if network_scale not in (True, False, "auto", "on", "off"):
        raise ConfigError(f"network_scale must be True, False or 'auto' (--network-scale on|off|auto), got "
                          f"{network_scale!r}.")
    fit = [r for r in rows if r["role"] == "overhead-fit" and r.get("ok")]
    val = [r for r in rows if r["role"] == "validation" and r.get("ok")]
    selection: dict[str, Any] = {"requested": {True: "on", False: "off"}.get(network_scale, network_scale)}
    loo = {}
    if len(fit) >= 3:
        for name, flag in (("additive", False), ("scale", True)):
            e = _loo_abs_err_pct(fit, flag)
            loo[name] = {"mean_abs_err_pct": float(np.mean(e)), "median_abs_err_pct": float(np.median(e)),
                         "share_within_10pct": float(np.mean(np.asarray(e) <= 10.0))}
        selection["leave_one_out_on_calibration_networks"] = loo
    if network_scale == "auto":
        use_scale = bool(loo) and loo["scale"]["mean_abs_err_pct"] < loo["additive"]["mean_abs_err_pct"]
        selection["chosen"] = "scale" if use_scale else "additive"
        selection["rule"] = ("lower mean leave-one-out |error| on the calibration networks (additive on a tie or "
                             "with < 3 calibration networks)")
    else:
        use_scale = network_scale in (True, "on")
        selection["chosen"] = "scale" if use_scale else "additive"
    alternatives = {}
    meas = np.array([r["measured_ms"] for r in val])
    for name, flag in (("additive", False), ("scale", True)):
        c = _fit_coefs(fit, flag)
        alt: dict[str, Any] = {"model": _model_str(*c), "coefficients": {"scale": c[0], "a_ms": c[1],
                                                                          "b_ms_per_kernel": c[2]}}
        if len(val) >= 2:
            alt.update(error_stats(np.array([c[0] * r["sum_kernels_ms"] + c[1] + c[2] * r["n_kernels"]
                                             for r in val]), meas))
        alternatives[name] = alt
    selection["alternatives"] = alternatives
    scale, a, b = _fit_coefs(fit, use_scale)
    for r in rows:
        r["predicted_ms"] = scale * r["sum_kernels_ms"] + a + b * r["n_kernels"]
        if r.get("ok"):
            r["err_pct"] = (r["predicted_ms"] - r["measured_ms"]) / r["measured_ms"] * 100.0
    summary: dict[str, Any] = {"n_networks": len(val), "failed": sum(not r.get("ok") for r in rows),
                               "model": _model_str(scale, a, b)}
    if len(val) >= 2:
        summary.update(error_stats(np.array([r["predicted_ms"] for r in val]), meas))
        summary["raw_sum_of_kernels"] = error_stats(np.array([r["sum_kernels_ms"] for r in val]), meas)
        summary["measured_over_sum_kernels"] = {
            "median": float(np.median(meas / np.array([r["sum_kernels_ms"] for r in val]))),
            "min": float(np.min(meas / np.array([r["sum_kernels_ms"] for r in val]))),
            "max": float(np.max(meas / np.array([r["sum_kernels_ms"] for r in val])))}
    summary["model_selection"] = selection
    return summary, (scale, a, b)


PRECISIONS = ("fp32", "int8", "mixed")


def _network_kernels(space: Any, candidate: Any, precision: str) -> list:
    kernels = space.kernels(candidate)
    if precision == "fp32":
        return [replace_bits(k, 32, 32) for k in kernels]
    if precision == "int8":
        return [replace_bits(k, 8, 8) if k.op in ("conv2d", "dwconv2d") else k for k in kernels]
    return kernels


def front_candidates(space_name: str, hardware: str, n: int, epsilon: float = 0.01) -> list[Any]:
    """``n`` candidates spread evenly (by latency) over the front of the accuracy proxy vs this table's latency
    (:class:`~hao.search.front.FrontSolver`, ``epsilon`` of each range; the space's committed sensitivities) —
    what ``hao search`` hands a user of this table."""
    from hao.search.api import resolve_space, search
    from hao.space import Candidate

    space = resolve_space(space_name)  # a space with a context decision (resolution): one front per value, merged
    front = search(space, hardware, solver="front", objectives=["proxy", "latency_ms"], epsilon=epsilon,
                   references=False).pareto()
    front = front.sort_values("latency_ms").reset_index(drop=True)
    idx = np.unique(np.linspace(0, len(front) - 1, n).round().astype(int))
    return [Candidate.from_json(front["config"].iloc[int(i)]) for i in idx]


def _by_op(kernels: list, latencies: np.ndarray) -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in zip(kernels, latencies):
        out[k.op] = out.get(k.op, 0.0) + float(v)
    return out


def build_candidate(space: Any, candidate: Any, precision: str, seed: int, tuner: Tuner,
                    portable: bool = False) -> Any:
    """The compiled network of one candidate: float (:func:`build_network`) or integer (:mod:`hao.deploy`, the
    table's own int8 programs; weights seeded, activation ranges from seeded random images — latency does not
    depend on the values). A candidate of a resolution-searching space compiles at its own resolution.
    ``portable``: integer layers use the portable programs even where the target has a hand-written one (for
    comparisons, e.g. ``benchmarks/network_int8_speedup.py``)."""
    space = space.resolve(candidate)
    if precision == "fp32":
        return build_network(float_model(space, candidate, seed=seed), tuple(space.input_shape), tuner)
    import torch

    from hao.deploy import integer_network
    from hao.deploy.tvm_module import IntegerModule, build, relax_module, schedules
    from hao.quant import quant_layers, set_bits
    from hao.train.evaluate import prepare_subnet

    model = space.build(candidate, seed=seed)
    if precision == "int8":
        set_bits(model, {name: {"w_bits": 8, "a_bits": 8} for name, _ in quant_layers(model)})
    g = torch.Generator().manual_seed(seed)
    model.train()
    prepare_subnet(model, [torch.randn(16, *space.input_shape, generator=g) for _ in range(2)])
    net = integer_network(model.eval(), tuple(space.input_shape))
    target = tuner.backend.target
    mod = relax_module(net, None if portable else target)
    db, counts = schedules(mod, target, None, tuner.backend)
    tuner.tuned_tasks += counts["tuned"]
    tuner.reused_tasks += counts["from_database"]
    exe = build(mod, target, db)
    sample = np.random.default_rng(seed).standard_normal((1, *space.input_shape)).astype(np.float32)
    im = IntegerModule(exe, sample=sample)
    got, ref = im.run(sample), net.run(sample)
    err = float(np.abs(got - ref).max())
    if not (err <= 4 * float(np.finfo(np.float32).eps) * float(np.abs(ref).max()) and got.argmax() == ref.argmax()):
        raise ConfigError(f"the integer module differs from the NumPy integer reference by {err:g}; not timing a "
                          "wrong network.")
    im.facts = {"schedules": counts, "max_abs_err_vs_integer_reference": err}
    return im


def validate_networks(hardware: str, space_name: str, n_networks: int = 20, seed: int = 0,
                      trials_per_task: int = 8, calib_networks: int = 4, threads: int = 2, progress: bool = True,
                      out: str | os.PathLike | None = None, network_scale: bool | str = False,
                      rounds: int = 5, precision: str = "fp32", front: int = 0,
                      max_rounds: int | None = None) -> dict[str, Any]:
    """Run the validation described in the module docstring; returns (and writes) the report dict.

    ``network_scale``: False (default; measured = Σkernels + a + b·n), True (also a factor on Σkernels) or
    ``"auto"`` (chosen by leave-one-out error on the calibration networks, see :func:`score_rows`).
    ``precision``: ``fp32`` (float networks vs the float32 rows), ``int8`` (every layer W8A8, integer network
    of the table's int8 programs vs the int8 rows) or ``mixed`` (the sampled bit-widths; sub-8-bit layers run
    the int8 programs, as their ``int8-mapped`` rows say). Only ``fp32`` writes the overhead fit to
    ``predictor.json``, and only when the report is written in the table folder (the default ``out``): a report
    kept elsewhere leaves the predictor as its own report documents it (``report["predictor_updated"]``); the
    integer precisions report theirs. ``front``: also validate that many candidates of
    the space's front on this table (:func:`front_candidates`; held out, ``source: "front"``, scored with the
    random ones and on their own in ``summary["front"]``). Every row carries ``predicted_by_op_ms``, the
    per-op breakdown of its Σ kernels, to see which layer type a missed network got wrong. ``max_rounds``
    (default ``4 · rounds``): passes continue, for the networks without a quiet session taken in a fast host
    state, up to this many (:func:`~hao.latency.compiler.time_interleaved`); networks still without one are
    listed in ``networks_timed_in_slow_host_state``."""
    from hao.latency.tvm_backend import pin_threads
    from hao.space import get_space

    if not isinstance(n_networks, int) or n_networks < 2:
        raise ConfigError(f"--networks must be an int >= 2 (Kendall τ needs two), got {n_networks!r}.")
    if not isinstance(calib_networks, int) or calib_networks < 0:
        raise ConfigError(f"--calib-networks must be an int >= 0, got {calib_networks!r}.")
    if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1:
        raise ConfigError(f"--rounds must be an int >= 1, got {rounds!r}.")
    max_rounds = 4 * rounds if max_rounds is None else max_rounds
    if not isinstance(max_rounds, int) or isinstance(max_rounds, bool) or max_rounds < rounds:
        raise ConfigError(f"--max-rounds must be an int >= --rounds ({rounds}), got {max_rounds!r}.")
    if network_scale not in (True, False, "auto", "on", "off"):
        raise ConfigError(f"--network-scale must be on, off or auto, got {network_scale!r}.")
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}.")
    if network_scale == "auto" and calib_networks < 3:
        raise ConfigError(f"--network-scale auto chooses by leave-one-out error on the calibration networks and "
                          f"needs --calib-networks >= 3, got {calib_networks}.")
    pin_threads(threads)
    folder = hardware_dir(hardware)
    table = load_table(hardware)
    space = get_space(space_name)
    pred = LatencyPredictor.from_table(table, space=space_name)
    portable_dw = 0
    if precision != "fp32":
        from hao.latency.dw_dot import portable_depthwise_rows

        portable_dw = portable_depthwise_rows(table.df, table.meta.get("target"))
        if portable_dw:
            import warnings

            warnings.warn(f"{hardware}: {portable_dw} int8 depthwise rows were timed with the portable program, but "
                          "integer networks for this target run the dot-product program (hao/latency/dw_dot.py); "
                          f"re-time them first: hao calibrate --hardware {hardware} --retime --space {space_name} "
                          "--op dwconv2d --precisions w8a8 --no-space-bits (docs/deployment.md).", stacklevel=2)
    rng = np.random.default_rng(seed)
    cands = []
    seen = set()
    if calib_networks >= 2:
        for c in (space.smallest(), space.largest()):
            if c.to_json() not in seen:
                seen.add(c.to_json())
                cands.append(c)
    n_anchor = len(cands)
    while len(cands) < calib_networks + n_networks:
        c = space.sample(rng)
        if c.to_json() not in seen:
            seen.add(c.to_json())
            cands.append(c)
    n_random = len(cands)
    if front:
        cands += [c for c in front_candidates(space_name, hardware, front) if c.to_json() not in seen]
    tuner = Tuner(folder / "tuning_db", threads, trials_per_task, seed)
    rows: list[dict[str, Any]] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(cands), desc=f"validate {hardware}/{space_name}", unit="net", dynamic_ncols=True)
    t_start = time.perf_counter()
    loadavg_start = load_average()
    built: dict[int, CompiledNetwork] = {}
    kernel_lists: dict[int, list] = {}
    try:
        for i, c in enumerate(cands):
            kernels = _network_kernels(space, c, precision)
            kernel_lists[i] = kernels
            n_meas = sum(table.latency(k) is not None for k in kernels)
            try:
                built[i] = build_candidate(space, c, precision, seed, tuner)
                res = {"ok": True, **built[i].facts}
            except Exception as exc:  # noqa: BLE001 - recorded in the report
                res = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
            lat = pred.predict(kernels, prefer_measured=True)
            rows.append({"index": i, "role": "overhead-fit" if i < calib_networks else "validation",
                         "source": "anchor" if i < n_anchor else "random" if i < n_random else "front",
                         "candidate": c.to_dict(), "n_kernels": len(kernels), "kernels_in_table": n_meas,
                         "sum_kernels_ms": float(lat.sum()), "predicted_by_op_ms": _by_op(kernels, lat),
                         "sum_kernels_model_only_ms": float(pred.predict(kernels).sum()),
                         **res})
            if bar is not None:
                bar.set_postfix_str("built" if res["ok"] else "FAILED")
                bar.update(1)
        if bar is not None:
            bar.close()
            bar = None
        # every network is built first, then timed in interleaved passes (see time_interleaved)
        idx = sorted(built)
        for i, t in zip(idx, time_interleaved([built[i] for i in idx], passes=rounds,
                                                     max_passes=max_rounds)):
            rows[i].update(t)
    finally:
        if bar is not None:
            bar.close()
        built.clear()
        tuner.close()
    summary, coefs = score_rows(rows, network_scale=network_scale)
    front_rows = [r for r in rows if r["source"] == "front" and r.get("ok")]
    if len(front_rows) >= 2:
        summary["front"] = error_stats(np.array([r["predicted_ms"] for r in front_rows]),
                                       np.array([r["measured_ms"] for r in front_rows]))
    fit_rows = [r for r in rows if r["role"] == "overhead-fit" and r["ok"]]
    # the chosen model is a parameter; the overhead is fitted state, written by fit_overhead only
    pred.set_params(network_scale=summary["model_selection"]["chosen"] == "scale")
    pred.fit_overhead([kernel_lists[r["index"]] for r in fit_rows], [r["measured_ms"] for r in fit_rows])
    if fit_rows and not np.allclose((pred.network_scale_, pred.overhead_ms_, pred.overhead_per_kernel_ms_), coefs):
        raise ConfigError(f"internal: the predictor's overhead fit {pred.network_scale_, pred.overhead_ms_} differs "
                          f"from the report's {coefs}; please report this.")
    stale = sum(r.get("schedules", {}).get("table_programs_not_in_database", 0) for r in rows)
    if stale:
        import warnings

        warnings.warn(f"{stale} layers ran a program that {hardware}'s tuning_db does not hold: their table rows were "
                      f"timed with another program (the int8 programs changed on 2026-12-02) or the database is "
                      f"missing; re-time the table on its hardware (docs/deployment.md) before trusting this "
                      f"report.", stacklevel=2)
    report = {
        "hardware": hardware, "space": space_name, "seed": seed, "precision": precision,
        "table_programs_not_in_database": stale, "portable_depthwise_rows": portable_dw,
        "protocol": (("torch.export -> relax.frontend.torch.from_exported_program -> ConvertLayout(NHWC) -> "
                      "relax zero pipeline -> conv tasks run their table kernel's schedule (trace replayed), other "
                      f"tasks from tuning_db or tuned with MetaSchedule ({trials_per_task} trials/task); BN folded "
                      "in torch") if precision == "fp32" else
                     ("hao.deploy integer network (quantize input -> the table's int8 programs, one call_tir per "
                      "table kernel, unfused -> float32 logits); each program's schedule from tuning_db (a table "
                      f"kernel's record by construction) or tuned with MetaSchedule ({trials_per_task} trials)"))
        + f" -> build, output checked -> all networks timed in {rounds} interleaved passes, up to {max_rounds} "
          "for networks without a quiet fast-host-state session (VirtualMachine time_evaluator, 7 repeats, "
          "min_repeat_ms 20, each after a 3-repeat session of a reference network; lowest median among quiet "
          "fast-state sessions kept)",
        "networks_timed_under_load": [r["index"] for r in rows if r.get("ok") and r.get("timed_quiet") is False],
        "networks_timed_in_slow_host_state": [r["index"] for r in rows
                                              if r.get("ok") and r.get("fast_state") is False],
        "threads": threads, "loadavg_start": loadavg_start, "loadavg_end": load_average(),
        "priority": scheduling_priority(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "overhead": {"network_scale": pred.network_scale_, "ms": pred.overhead_ms_,
                                         "per_kernel_ms": pred.overhead_per_kernel_ms_,
                                         "fitted_on_networks": len(fit_rows)},
        "relax_tasks": {"tuned": tuner.tuned_tasks, "reused_from_database": tuner.reused_tasks,
                        "table_schedule_replayed": tuner.transferred_tasks},
        "wall_s": round(time.perf_counter() - t_start, 1), "summary": summary, "networks": rows,
    }
    suffix = "" if precision == "fp32" else f"_{precision}"
    path = Path(out) if out else folder / f"validation_{space_name}{suffix}.json"
    atomic_write_text(path, json.dumps(report, indent=2, default=str) + "\n")
    n_ok = sum(1 for r in rows if r["ok"] and r["role"] == "validation")
    if n_ok < 2 or (calib_networks and not fit_rows):
        first = next((r["error"] for r in rows if not r["ok"]), "none")
        raise ConfigError(f"only {n_ok} of {n_networks} validation networks and {len(fit_rows)} of {calib_networks} "
                          f"calibration networks were measured, so the overhead fit was not saved (predictor.json "
                          f"is unchanged). "
                          f"First error: {first[:300]}. Per-network errors are in {path}.")
    report["report_path"] = str(path)
    report["predictor_updated"] = False
    if path.resolve().parent != folder.resolve():
        # a report kept elsewhere (--out) is a side measurement: the table's predictor.json keeps the overhead
        # its own report in the table folder documents
        return report
    report["predictor_updated"] = True
    # float networks' overhead, or (int8 / mixed) the integer networks' — searches of spaces that deploy as
    # integer networks use the latter (LatencyPredictor.from_table(deploy="auto"))
    pred.save_overhead(folder, extra={"fitted_by": f"hao latency validate {hardware} --space {space_name} "
                                                    f"--precision {precision} "
                                                    f"--network-scale {summary['model_selection']['requested']}",
                                      "validation_report": path.name}, space=space_name,
                       deploy="float" if precision == "fp32" else "integer")
    return report
