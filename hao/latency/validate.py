"""Whole-network validation: compile candidates end to end with TVM and compare with the predictor.

For each seeded random candidate of a space:

1. ``space.build(candidate)`` -> torch module; every fake-quant layer is set to float (32 bits) and each
   BatchNorm is folded into its preceding convolution (:func:`fold_batchnorm`), as an inference compiler does,
   and ReLU6 becomes ReLU (same cost; see :func:`_relu6_to_relu` for why).
   **Precision**: the networks are compiled in float32 — Relax's PyTorch frontend has no path for our
   fake-quant int8 graphs — so they are compared with the predictor's float32 figure for the same
   architecture (every kernel at w32a32). The int8 rows are validated per kernel (output checked, timed).
2. ``torch.export.export`` -> ``tvm.relax.frontend.torch.from_exported_program`` -> ``ConvertLayout`` to
   NHWC (the calibrated float layout) -> ``relax.get_pipeline("zero")`` (legalize, fold constants, fuse).
3. Every fused convolution task runs its table kernel's schedule (the trace replayed on the task, see
   ``_Tuner._replay``), so the network runs the code the table timed; any other task (transposes, the
   classifier, pooling) takes its best record in the hardware's tuning database (``tuning_db/``) or is tuned
   with MetaSchedule (same settings as calibration) and committed there.
4. build -> ``relax.VirtualMachine``, output checked against PyTorch; once every network is built they are
   timed in interleaved passes (``time_evaluator``, one session per network per pass, lowest median kept).
5. The first ``calib_networks`` networks (their own seeds) fit the predictor's per-network overhead
   (a + b·kernels); the next ``n_networks`` are the held-out validation set: median |error| %, share within
   ±10 %, Kendall τ. The report is written as JSON next to the table.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from hao._imports import lazy_import
from hao.errors import ConfigError
from hao.latency.backend import replace_bits
from hao.latency.calibrate import load_average, scheduling_priority
from hao.latency.predictor import LatencyPredictor, error_stats
from hao.latency.table import atomic_write_text, hardware_dir, load_table

__all__ = ["fold_batchnorm", "float_model", "build_network", "CompiledNetwork", "compile_network",
           "time_interleaved", "validate_networks"]


def fold_batchnorm(model: Any) -> Any:
    """Fold every BatchNorm2d into the convolution before it (modules with ``conv``/``bn`` attributes, and
    consecutive Conv2d -> BatchNorm2d children of ``nn.Sequential``). In place; returns ``model``."""
    import torch
    from torch import nn

    def fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
        with torch.no_grad():
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps) if bn.affine else \
                1.0 / torch.sqrt(bn.running_var + bn.eps)
            shift = (bn.bias if bn.affine else 0.0) - bn.running_mean * scale
            conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
            if conv.bias is None:
                conv.bias = nn.Parameter(shift.clone())
            else:
                conv.bias.mul_(scale).add_(shift)

    for mod in list(model.modules()):
        conv, bn = getattr(mod, "conv", None), getattr(mod, "bn", None)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            fold(conv, bn)
            mod.bn = nn.Identity()
        if isinstance(mod, nn.Sequential):
            keys = list(mod._modules)
            for a, b in zip(keys, keys[1:]):
                if isinstance(mod._modules[a], nn.Conv2d) and isinstance(mod._modules[b], nn.BatchNorm2d):
                    fold(mod._modules[a], mod._modules[b])
                    mod._modules[b] = nn.Identity()
    return model


def float_model(space: Any, candidate: Any, seed: int = 0) -> Any:
    """The candidate as a float32 eval-mode torch module with BatchNorm folded."""
    from hao.quant import quant_layers, set_bits

    model = space.build(candidate, seed=seed)
    set_bits(model, {name: {"w_bits": 32, "a_bits": 32} for name, _ in quant_layers(model)})
    model.eval()
    _relu6_to_relu(model)
    return fold_batchnorm(model)


def _relu6_to_relu(model: Any) -> None:
    """Replace ReLU6 by ReLU (same cost). TVM 0.27's PyTorch frontend lowers ReLU6 to a ``call_tir`` clip that
    ``ConvertLayout`` cannot move to NHWC: every clip then ran as transpose -> clip -> transpose, separate
    from the convolution, which more than doubled the network's time. ReLU is a Relax op that converts and
    fuses into the convolution, as a deployment compiler fuses ReLU6."""
    from torch import nn

    for mod in list(model.modules()):
        for name, child in list(mod.named_children()):
            if isinstance(child, nn.ReLU6):
                setattr(mod, name, nn.ReLU(inplace=False))


class _Tuner:
    """Tunes Relax tasks that the hardware database lacks (same MetaSchedule settings as calibration)."""

    def __init__(self, database_dir: Path, threads: int, trials: int, seed: int,
                 reuse_table_schedules: bool = True) -> None:
        from hao.latency.tvm_backend import TVMBackend

        self.backend = TVMBackend(trials=trials, database_dir=database_dir, threads=threads, seed=seed)
        self.backend.open()
        self.tuned_tasks = 0
        self.reused_tasks = 0
        self.transferred_tasks = 0
        self.reuse_table_schedules = reuse_table_schedules

    @staticmethod
    def task_kernel(tmod: Any) -> Any:
        """The table kernel (fp32 ``KernelSpec``) a fused conv task computes, from its buffer shapes: data
        (1, H, W, C), weight HWIO (K, K, C/groups, O), …, output (1, OH, OW, O); None for other tasks."""
        from hao.kernel import KernelSpec

        from tvm.s_tir.meta_schedule.arg_info import ArgInfo

        try:
            shapes = [tuple(int(d) for d in a.shape) for a in ArgInfo.from_prim_func(tmod["main"])]
        except Exception:  # noqa: BLE001 - dynamic shapes, non-tensor args: not a table kernel
            return None
        if len(shapes) < 3 or len(shapes[0]) != 4 or len(shapes[1]) != 4 or len(shapes[-1]) != 4:
            return None
        (n, h, w, c), (kh, kw, cpg, o), (_, oh, ow, o2) = shapes[0], shapes[1], shapes[-1]
        if n != 1 or kh != kw or o != o2 or kh % 2 == 0:
            return None
        stride = -(-h // oh)
        if -(-h // stride) != oh or -(-w // stride) != ow:
            return None
        if cpg == c:
            return KernelSpec("conv2d", c, o, h, w, kh, stride, 1, 32, 32)
        if cpg == 1 and o == c:
            return KernelSpec("dwconv2d", c, o, h, w, kh, stride, c, 32, 32)
        return None

    @staticmethod
    def _replay(trace: Any, tmod: Any, target: Any) -> Any:
        """Apply a table kernel's trace to a task; a ``compute_inline`` the task cannot take is skipped.

        The table kernel is conv + bias + ReLU and its trace inlines the bias block into the ReLU; a projection
        task (conv + bias, or conv + bias + residual) has no ReLU, so its bias block is the output and cannot be
        inlined; it stays the convolution's consumer, where the trace's ``reverse_compute_at`` places it. Any
        other failing instruction makes the replay fail (returns None). Schedule primitives keep the program's
        meaning, and the result is compiled once as a check."""
        import tvm
        from tvm.s_tir.schedule import Trace

        decisions = dict(trace.decisions)

        def attempt(insts: list) -> Any:
            sch = tvm.s_tir.Schedule(tmod)
            keep = set(insts)  # TVM objects hash and compare by identity
            Trace(insts, {i: d for i, d in decisions.items() if i in keep}).apply_to_schedule(
                sch, remove_postproc=False)
            return sch

        try:
            sch = attempt(list(trace.insts))
        except Exception:  # noqa: BLE001 - retry instruction by instruction
            kept: list = []
            for inst in trace.insts:
                try:
                    attempt(kept + [inst])
                    kept.append(inst)
                except Exception:  # noqa: BLE001
                    if inst.kind.name != "ComputeInline":
                        return None
            try:
                sch = attempt(kept)
            except Exception:  # noqa: BLE001
                return None
        try:
            tvm.compile(sch.mod, target)  # the trace may apply yet leave an invalid program
        except Exception:  # noqa: BLE001
            return None
        return sch

    def _from_table_kernel(self, tmod: Any) -> Any:
        """The schedule of a fused conv task's table kernel (the same convolution + bias + ReLU, timed for
        the table), replayed on the task (see :meth:`_replay`); None if the task has no table kernel or the
        trace does not apply. The table's Σ then describes the schedules the network really runs, instead of
        each network task getting its own separately tuned 8-trial schedule (0.3–5x the table kernel's time)."""
        import tvm

        from hao.latency.tvm_backend import build_kernel_func

        k = self.task_kernel(tmod)
        if k is None:
            return None
        db, target = self.backend.database, self.backend.target
        kmod = tvm.IRModule({"main": build_kernel_func(k).func})
        rec = db.query_tuning_record(kmod, target, workload_name="main") if db.has_workload(kmod) else None
        if rec is None:
            return None
        sch = self._replay(rec.trace, tmod, target)
        return None if sch is None else (sch, rec.run_secs)

    def ensure(self, mod: Any) -> Any:
        """Give every task of ``mod`` (legalized + fused) a schedule and return a database holding exactly one
        record per task, the one the build must use: the table kernel's schedule where it replays
        (``reuse_table_schedules``), else the task's best record in the hardware database, else a schedule
        tuned now (and committed to the hardware database). Transferred schedules are not written to the
        hardware database (they are recomputed in about a second), so an older, separately tuned record of
        the same task can never win over them."""
        from tvm.s_tir import meta_schedule as ms

        from tvm.s_tir.meta_schedule.tune_context import _normalize_mod

        db, target = self.backend.database, self.backend.target
        chosen = ms.database.MemoryDatabase()
        tasks = ms.relax_integration.extract_tasks(mod, target)
        for task in tasks:
            # compile_relax looks records up under the normalized module (its function named "main")
            tmod = _normalize_mod(task.dispatched[0])
            args = ms.arg_info.ArgInfo.from_prim_func(tmod["main"])
            if self.reuse_table_schedules:
                got = self._from_table_kernel(tmod)
                if got is not None:
                    sch, run_secs = got
                    chosen.commit_tuning_record(ms.database.TuningRecord(
                        sch.trace, chosen.commit_workload(tmod), run_secs, target, args))
                    self.transferred_tasks += 1
                    continue
            rec = db.query_tuning_record(tmod, target, workload_name="main") if db.has_workload(tmod) else None
            if rec is not None:
                self.reused_tasks += 1
            else:
                sch, _, _ = self.backend._schedule(tmod)
                self.tuned_tasks += 1
                if sch is None:
                    raise ConfigError(f"MetaSchedule found no valid schedule for Relax task {task.task_name!r}.")
                rec = db.query_tuning_record(tmod, target, workload_name="main")
            # the record's own workload: its trace names that module's blocks, which may be named differently
            # in this (structurally equal) task; a database applies a trace to the workload it stores
            chosen.commit_tuning_record(ms.database.TuningRecord(
                rec.trace, chosen.commit_workload(rec.workload.mod), rec.run_secs, target, rec.args_info))
        return chosen

    def close(self) -> None:
        self.backend.close()


def _build_prepacked(fused: Any, database: Any, target: Any) -> Any:
    """Build an already legalized + fused Relax module with its tuned schedules, splitting each schedule's
    weight-layout rewrite out of the task (``SplitLayoutRewritePreproc``) and folding it on the constant
    weights (``FoldConstant``), so the packed weights are computed once, at compile time."""
    import tvm
    from tvm import relax
    from tvm.relax import pipeline as rp
    from tvm.ir.transform import PassContext

    try:
        lower = rp.dataflow_lower_passes(target) + rp.finalize_passes(target)
    except (ValueError, AttributeError):  # the fallback compile_relax uses for targets without a pipeline
        lower = [relax.transform.RewriteDataflowReshape(), relax.transform.ToNonDataflow(),
                 relax.transform.RemovePurityChecking(), relax.transform.CallTIRRewrite(),
                 relax.transform.StaticPlanBlockMemory(), relax.transform.LowerAllocTensor(),
                 relax.transform.KillAfterLastUse(), relax.transform.LowerRuntimeBuiltin(),
                 relax.transform.ComputePrimValue(), relax.transform.VMShapeLower(),
                 relax.transform.AttachGlobalSymbol()]

    @tvm.transform.module_pass(opt_level=3)
    def _pipeline(mod: Any, _ctx: Any) -> Any:
        mod = relax.transform.MetaScheduleApplyDatabase(enable_warning=False)(mod)
        mod = relax.transform.SplitLayoutRewritePreproc()(mod)
        mod = relax.transform.FoldConstant()(mod)
        return tvm.transform.Sequential(lower)(mod)

    with target, database, PassContext(opt_level=3):
        return relax.build(fused, target=target, relax_pipeline=_pipeline)


class CompiledNetwork:
    """A float network compiled with TVM and checked against PyTorch, ready to be timed.

    ``facts``: ``max_abs_err_vs_torch``, ``tasks_tuned`` (tasks tuned for this build), ``tune_s``."""

    def __init__(self, vm: Any, inp: Any, dev: Any, facts: dict[str, Any]) -> None:
        self.vm, self.inp, self.dev, self.facts = vm, inp, dev, facts

    def time_session(self, repeat: int = 7, min_repeat_ms: int = 20) -> np.ndarray:
        """One timing session: ``repeat`` times in ms (each the mean of runs filling ``min_repeat_ms``), after
        ``time_evaluator``'s own warm-up run."""
        timer = self.vm.time_evaluator("main", self.dev, number=1, repeat=repeat, min_repeat_ms=min_repeat_ms)
        return np.asarray(timer(self.inp).results, float) * 1e3


def build_network(model: Any, input_shape: tuple[int, ...], tuner: _Tuner,
                  prepack_weights: bool = True) -> CompiledNetwork:
    """Export, give every task a schedule (:meth:`_Tuner.ensure`), compile, and check the output of one float
    network against PyTorch (a wrong network raises ``ConfigError``, it is never timed).

    ``prepack_weights`` (default): tasks see their weights as layout-free constants, as the table's kernels
    do, and the schedules' weight packing is folded at compile time (see :func:`_build_prepacked`);
    ``False`` is the earlier build (no packing; every task tuned without it)."""
    import torch

    tvm = lazy_import("tvm")
    from tvm import relax
    from tvm.relax.frontend.torch import from_exported_program
    from tvm.s_tir import meta_schedule as ms

    x = torch.randn(1, *input_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(x).numpy()
        ep = torch.export.export(model, (x,))
    mod = from_exported_program(ep, keep_params_as_input=False)
    target = tuner.backend.target
    with target:
        mod = relax.transform.DecomposeOpsForInference()(mod)
        mod = relax.transform.ConvertLayout({"relax.nn.conv2d": ["NHWC", "HWIO"]})(mod)
        # extract_tasks wants the legalized + fused module (it finds no task in an unfused one), while
        # compile_relax legalizes and fuses itself: handing it the fused module makes every database lookup
        # miss and the network runs untuned — so tasks come from `fused`, the build from `mod`.
        fused = relax.get_pipeline("zero")(mod)
        if prepack_weights:
            # Mark the weights (constants) as layout-free, as the table's TE kernels are (topi's
            # ``layout_free_placeholders``): MetaSchedule may then pack them (RewriteLayout), and the packing
            # runs once at compile time instead of on every inference. Without this the network's tasks were
            # tuned in a smaller space than the table's kernels (no weight packing) and ran 1.7x the table's Σ.
            fused = relax.transform.AttachAttrLayoutFreeBuffers()(fused)
    t0 = time.perf_counter()
    before = tuner.tuned_tasks
    chosen = tuner.ensure(fused)
    tune_s = time.perf_counter() - t0
    with target:
        if prepack_weights:
            exe = _build_prepacked(fused, chosen, target)
        else:
            exe = ms.relax_integration.compile_relax(chosen, mod, target, params=None)
    dev = tvm.cpu(0)
    vm = relax.VirtualMachine(exe, dev)
    inp = tvm.runtime.tensor(x.numpy(), dev)
    out = vm["main"](inp)
    got = out.numpy() if hasattr(out, "numpy") else out[0].numpy()
    err = float(np.abs(got - ref).max())
    tol = 1e-3 * (1 + float(np.abs(ref).max()))
    if not err <= tol:
        raise ConfigError(f"TVM's output differs from PyTorch's by {err:g} (> {tol:g}); not timing a wrong network.")
    return CompiledNetwork(vm, inp, dev, {"max_abs_err_vs_torch": err, "tasks_tuned": tuner.tuned_tasks - before,
                                          "tune_s": round(tune_s, 1)})


def time_interleaved(nets: list[CompiledNetwork], passes: int = 3, repeat: int = 7,
                     min_repeat_ms: int = 20) -> list[dict[str, Any]]:
    """Time several compiled networks in ``passes`` round-robin passes (one session per network per pass, the
    order rotated each pass) and keep each network's session with the lowest median.

    A burst of other work on a shared machine inflates every session that overlaps it; sessions of one network
    spread over the whole run (instead of back to back) rarely all overlap one burst, and nothing makes a
    network faster than it is. Returns per network ``measured_ms`` (that median), ``std_ms``, ``repeats``,
    ``sessions`` and ``session_medians_ms``."""
    if not isinstance(passes, int) or isinstance(passes, bool) or passes < 1:
        raise ConfigError(f"timing passes must be an int >= 1, got {passes!r}.")
    best: list[np.ndarray | None] = [None] * len(nets)
    medians: list[list[float]] = [[] for _ in nets]
    errors: dict[int, str] = {}
    time.sleep(0.05)
    for p in range(passes):
        order = list(range(len(nets)))
        order = order[p % max(1, len(nets)):] + order[:p % max(1, len(nets))]
        for i in order:
            if i in errors:
                continue
            try:
                r = nets[i].time_session(repeat, min_repeat_ms)
            except Exception as exc:  # noqa: BLE001 - one network's failure must not lose the others
                errors[i] = f"timing: {type(exc).__name__}: {exc}"[:500]
                continue
            medians[i].append(round(float(np.median(r)), 5))
            if best[i] is None or np.median(r) < np.median(best[i]):
                best[i] = r
    return [{"ok": False, "error": errors[i], "session_medians_ms": m} if i in errors else
            {"ok": True, "measured_ms": float(np.median(b)), "std_ms": float(b.std()), "repeats": int(b.size),
             "sessions": passes, "session_medians_ms": m}
            for i, (b, m) in enumerate(zip(best, medians))]


def compile_network(model: Any, input_shape: tuple[int, ...], tuner: _Tuner, rounds: int = 3,
                    repeat: int = 7, min_repeat_ms: int = 20, prepack_weights: bool = True) -> dict[str, Any]:
    """:func:`build_network`, then ``rounds`` back-to-back timing sessions (lowest median kept). Returns the
    timing facts and the build's facts. To time several networks, :func:`time_interleaved` resists load
    bursts better."""
    net = build_network(model, input_shape, tuner, prepack_weights=prepack_weights)
    t = time_interleaved([net], passes=rounds, repeat=repeat, min_repeat_ms=min_repeat_ms)[0]
    if not t["ok"]:
        raise ConfigError(f"timing the compiled network failed ({t['error']}).")
    return {"measured_ms": t["measured_ms"], "std_ms": t["std_ms"], "repeats": t["repeats"], **net.facts}


def _fit_coefs(fit: list[dict[str, Any]], network_scale: bool) -> tuple[float, float, float]:
    """NNLS on relative error: measured ≈ scale·Σ + a + b·n (scale fixed to 1 unless ``network_scale``)."""
    from scipy.optimize import nnls

    if not fit:
        return 1.0, 0.0, 0.0
    y = np.array([r["measured_ms"] for r in fit])
    s = np.array([r["sum_kernels_ms"] for r in fit])
    n = np.array([r["n_kernels"] for r in fit], float)
    if network_scale and len(fit) >= 2:
        coef, _ = nnls(np.stack([s, np.ones_like(n), n], 1) / y[:, None], np.ones_like(y))
        return float(coef[0]), float(coef[1]), float(coef[2])
    coef, _ = nnls(np.stack([np.ones_like(n), n], 1) / y[:, None], (y - s) / y)
    return 1.0, float(coef[0]), float(coef[1])


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


def validate_networks(hardware: str, space_name: str, n_networks: int = 20, seed: int = 0,
                      trials_per_task: int = 8, calib_networks: int = 4, threads: int = 2, progress: bool = True,
                      out: str | os.PathLike | None = None, network_scale: bool | str = False,
                      rounds: int = 5) -> dict[str, Any]:
    """Run the validation described in the module docstring; returns (and writes) the report dict.

    ``network_scale``: False (default; measured = Σkernels + a + b·n), True (also a factor on Σkernels) or
    ``"auto"`` (chosen by leave-one-out error on the calibration networks, see :func:`score_rows`)."""
    from hao.latency.tvm_backend import pin_threads
    from hao.space import get_space

    if not isinstance(n_networks, int) or n_networks < 2:
        raise ConfigError(f"--networks must be an int >= 2 (Kendall τ needs two), got {n_networks!r}.")
    if not isinstance(calib_networks, int) or calib_networks < 0:
        raise ConfigError(f"--calib-networks must be an int >= 0, got {calib_networks!r}.")
    if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1:
        raise ConfigError(f"--rounds must be an int >= 1, got {rounds!r}.")
    if network_scale not in (True, False, "auto", "on", "off"):
        raise ConfigError(f"--network-scale must be on, off or auto, got {network_scale!r}.")
    if network_scale == "auto" and calib_networks < 3:
        raise ConfigError(f"--network-scale auto chooses by leave-one-out error on the calibration networks and "
                          f"needs --calib-networks >= 3, got {calib_networks}.")
    pin_threads(threads)
    folder = hardware_dir(hardware)
    table = load_table(hardware)
    space = get_space(space_name)
    pred = LatencyPredictor.from_table(table)
    pred.overhead_ms_ = pred.overhead_per_kernel_ms_ = 0.0
    rng = np.random.default_rng(seed)
    cands = []
    seen = set()
    while len(cands) < calib_networks + n_networks:
        c = space.sample(rng)
        if c.to_json() not in seen:
            seen.add(c.to_json())
            cands.append(c)
    tuner = _Tuner(folder / "tuning_db", threads, trials_per_task, seed)
    rows: list[dict[str, Any]] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(cands), desc=f"validate {hardware}/{space_name}", unit="net", dynamic_ncols=True)
    t_start = time.perf_counter()
    loadavg_start = load_average()
    built: dict[int, CompiledNetwork] = {}
    try:
        for i, c in enumerate(cands):
            kernels = [replace_bits(k, 32, 32) for k in space.kernels(c)]
            n_meas = sum(table.latency(k) is not None for k in kernels)
            model = float_model(space, c, seed=seed)
            try:
                built[i] = build_network(model, tuple(space.input_shape), tuner)
                res = {"ok": True, **built[i].facts}
            except Exception as exc:  # noqa: BLE001 - recorded in the report
                res = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
            rows.append({"index": i, "role": "overhead-fit" if i < calib_networks else "validation",
                         "candidate": c.to_dict(), "n_kernels": len(kernels), "kernels_in_table": n_meas,
                         "sum_kernels_ms": float(pred.predict(kernels, prefer_measured=True).sum()),
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
        for i, t in zip(idx, time_interleaved([built[i] for i in idx], passes=rounds)):
            rows[i].update(t)
    finally:
        if bar is not None:
            bar.close()
        built.clear()
        tuner.close()
    summary, coefs = score_rows(rows, network_scale=network_scale)
    pred.network_scale_, pred.overhead_ms_, pred.overhead_per_kernel_ms_ = coefs
    pred.network_scale = summary["model_selection"]["chosen"] == "scale"
    fit_rows = [r for r in rows if r["role"] == "overhead-fit" and r["ok"]]
    report = {
        "hardware": hardware, "space": space_name, "seed": seed, "precision": "float32 (see hao.latency.validate)",
        "protocol": "torch.export -> relax.frontend.torch.from_exported_program -> ConvertLayout(NHWC) -> "
                    "relax zero pipeline -> conv tasks run their table kernel's schedule (trace replayed), other "
                    f"tasks from tuning_db or tuned with MetaSchedule ({trials_per_task} trials/task) -> build, output "
                    f"checked -> all networks timed in {rounds} interleaved passes (VirtualMachine time_evaluator, "
                    "7 repeats, min_repeat_ms 20; lowest session median kept); BN folded in torch",
        "threads": threads, "loadavg_start": loadavg_start, "loadavg_end": load_average(),
        "priority": scheduling_priority(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "overhead": {"network_scale": pred.network_scale_, "ms": pred.overhead_ms_,
                                         "per_kernel_ms": pred.overhead_per_kernel_ms_,
                                         "fitted_on_networks": len(fit_rows)},
        "relax_tasks": {"tuned": tuner.tuned_tasks, "reused_from_database": tuner.reused_tasks,
                        "table_schedule_replayed": tuner.transferred_tasks},
        "wall_s": round(time.perf_counter() - t_start, 1), "summary": summary, "networks": rows,
    }
    path = Path(out) if out else folder / f"validation_{space_name}.json"
    atomic_write_text(path, json.dumps(report, indent=2, default=str) + "\n")
    n_ok = sum(1 for r in rows if r["ok"] and r["role"] == "validation")
    if n_ok < 2 or (calib_networks and not fit_rows):
        first = next((r["error"] for r in rows if not r["ok"]), "none")
        raise ConfigError(f"only {n_ok} of {n_networks} validation networks and {len(fit_rows)} of {calib_networks} "
                          f"calibration networks were measured, so the overhead fit was not saved (predictor.json "
                          f"is unchanged). "
                          f"First error: {first[:300]}. Per-network errors are in {path}.")
    pred.save_overhead(folder, extra={"fitted_by": f"hao latency validate {hardware} --space {space_name} "
                                                    f"--network-scale {summary['model_selection']['requested']}",
                                      "validation_report": path.name})
    report["report_path"] = str(path)
    return report
