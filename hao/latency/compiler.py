"""Whole float networks compiled with TVM Relax: torch.export -> Relax -> NHWC -> fused tasks, each scheduled
by a :class:`~hao.latency.tuner.Tuner`, built (weights pre-packed at compile time by default), checked
against PyTorch, and timed.

* :func:`build_network` -> :class:`CompiledNetwork` (checked, ready to time); :func:`build_prepacked` is its
  Relax build with each schedule's weight-layout rewrite folded on the constant weights.
* :func:`time_interleaved` times several compiled networks in round-robin passes; :func:`compile_network`
  builds and times one.

Used by ``hao latency validate`` (:mod:`hao.latency.validate`) and the experiments.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from hao._imports import lazy_import
from hao.errors import ConfigError
from hao.latency.tuner import Tuner

#: a session counts as taken in a fast host state when its reference session ran at most this much above the
#: reference's fastest of the run (see :func:`time_interleaved`)
STATE_SLACK = 0.10

__all__ = ["STATE_SLACK", "legalize", "lower_passes", "import_network", "build_network", "CompiledNetwork",
           "build_prepacked", "time_interleaved", "compile_network"]


def _legalize_gelu(bb: Any, call: Any) -> Any:
    from hao.latency.token_programs import gelu_te

    return bb.call_te(gelu_te, call.args[0], primfunc_name_hint="gelu")


def legalize(mod: Any) -> Any:
    """Relax's ``LegalizeOps`` with hao's own programs where they differ from TVM's: ``nn.gelu`` runs
    :func:`~hao.latency.token_programs.gelu_te` (``fast_erf``: vectorised, its cost independent of the data), the
    program the table's ``gelu`` rows time. Every network hao compiles goes through here before fusion."""
    from tvm import relax

    return relax.transform.LegalizeOps(customize_legalize_map={"relax.nn.gelu": _legalize_gelu})(mod)


def lower_passes(target: Any) -> list:
    """Relax's lowering passes for ``target`` (no legalization or fusion): its dataflow-lower + finalize
    passes, or the fallback list ``compile_relax`` uses for targets without a pipeline."""
    from tvm import relax
    from tvm.relax import pipeline as rp

    try:
        return rp.dataflow_lower_passes(target) + rp.finalize_passes(target)
    except (ValueError, AttributeError):
        return [relax.transform.RewriteDataflowReshape(), relax.transform.ToNonDataflow(),
                relax.transform.RemovePurityChecking(), relax.transform.CallTIRRewrite(),
                relax.transform.StaticPlanBlockMemory(), relax.transform.LowerAllocTensor(),
                relax.transform.KillAfterLastUse(), relax.transform.LowerRuntimeBuiltin(),
                relax.transform.ComputePrimValue(), relax.transform.VMShapeLower(),
                relax.transform.AttachGlobalSymbol()]


def build_prepacked(fused: Any, database: Any, target: Any) -> Any:
    """Build an already legalized + fused Relax module with its tuned schedules, splitting each schedule's
    weight-layout rewrite out of the task (``SplitLayoutRewritePreproc``) and folding it on the constant
    weights (``FoldConstant``), so the packed weights are computed once, at compile time."""
    import tvm
    from tvm import relax
    from tvm.ir.transform import PassContext

    lower = lower_passes(target)

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

    def __init__(self, vm: Any, inp: Any, dev: Any, facts: dict[str, Any], exe: Any = None) -> None:
        self.vm, self.inp, self.dev, self.facts, self.exe = vm, inp, dev, facts, exe

    def time_session(self, repeat: int = 7, min_repeat_ms: int = 20) -> np.ndarray:
        """One timing session: ``repeat`` times in ms (each the mean of runs filling ``min_repeat_ms``), after
        ``time_evaluator``'s own warm-up run."""
        timer = self.vm.time_evaluator("main", self.dev, number=1, repeat=repeat, min_repeat_ms=min_repeat_ms)
        return np.asarray(timer(self.inp).results, float) * 1e3


def import_network(model: Any, input_shape: tuple[int, ...], target: Any,
                   prepack_weights: bool = True) -> tuple[Any, np.ndarray, Any, Any]:
    """``(x, reference output, mod, fused)`` of a float network: ``torch.export`` on a seeded input -> Relax ->
    NHWC convolutions -> :func:`legalize`; ``fused`` is that module through Relax's fusion (the tasks to
    schedule), with the weights marked layout-free when ``prepack_weights``."""
    import torch

    lazy_import("tvm")
    from tvm import relax
    from tvm.relax.frontend.torch import from_exported_program

    x = torch.randn(1, *input_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(x).numpy()
        ep = torch.export.export(model, (x,))
    mod = from_exported_program(ep, keep_params_as_input=False)
    with target:
        mod = relax.transform.DecomposeOpsForInference()(mod)
        mod = relax.transform.ConvertLayout({"relax.nn.conv2d": ["NHWC", "HWIO"]})(mod)
        mod = legalize(mod)
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
    return x, ref, mod, fused


def build_network(model: Any, input_shape: tuple[int, ...], tuner: Tuner,
                  prepack_weights: bool = True) -> CompiledNetwork:
    """Export, give every task a schedule (:meth:`Tuner.ensure`), compile, and check the output of one float
    network against PyTorch (a wrong network raises ``ConfigError``, it is never timed).

    ``prepack_weights`` (default): tasks see their weights as layout-free constants, as the table's kernels
    do, and the schedules' weight packing is folded at compile time (see :func:`build_prepacked`);
    ``False`` is the earlier build (no packing; every task tuned without it)."""
    tvm = lazy_import("tvm")
    from tvm import relax
    from tvm.s_tir import meta_schedule as ms

    target = tuner.backend.target
    x, ref, mod, fused = import_network(model, input_shape, target, prepack_weights)
    t0 = time.perf_counter()
    before = tuner.tuned_tasks
    chosen = tuner.ensure(fused)
    tune_s = time.perf_counter() - t0
    with target:
        if prepack_weights:
            exe = build_prepacked(fused, chosen, target)
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
                                          "tune_s": round(tune_s, 1)}, exe)


def time_interleaved(nets: list[CompiledNetwork], passes: int = 3, repeat: int = 7,
                     min_repeat_ms: int = 20, *, max_passes: int | None = None, state_slack: float = STATE_SLACK,
                     reference: int | None = 0) -> list[dict[str, Any]]:
    """Time several compiled networks in round-robin passes (one session per network per pass, the order
    rotated each pass) and keep each network's best session.

    Two things make a session slow that are not the network: other processes on these cores (each session is
    watched, :mod:`hao.latency.interference`) and the **host state**: on a shared virtual machine every network
    can run 1.3-1.8x slower for tens of seconds at a time while ``/proc/stat`` shows nothing (other tenants'
    memory traffic; a compute-bound canary kernel barely notices, measured in docs/measurement.md, "Host
    state"). So before each session a short session (3 repeats) of a **reference** network (``nets[reference]``;
    ``None``: none) is timed; a session whose reference ran more than ``state_slack`` above the reference's
    fastest of the whole run was taken in a slow host state. A network keeps its lowest-median session among
    the quiet fast-state ones (else among the fast-state ones, else among the quiet ones, else any). After
    ``passes`` passes, networks without a quiet fast-state session get further passes, up to ``max_passes``
    in all (default: ``passes``, no extra pass).

    Returns per network ``measured_ms`` (that median), ``std_ms``, ``repeats``, ``sessions``,
    ``session_medians_ms``, ``session_other_cores`` (cores other processes used during each session),
    ``session_reference_ms``, ``timed_quiet`` (False: every session was loaded), ``host_state_ratio`` (the kept
    session's reference over the run's fastest reference) and ``fast_state``."""
    if not isinstance(passes, int) or isinstance(passes, bool) or passes < 1:
        raise ConfigError(f"timing passes must be an int >= 1, got {passes!r}.")
    max_passes = passes if max_passes is None else max_passes
    if not isinstance(max_passes, int) or isinstance(max_passes, bool) or max_passes < passes:
        raise ConfigError(f"max_passes must be an int >= passes ({passes}), got {max_passes!r}.")
    if not (isinstance(state_slack, (int, float)) and state_slack > 0):
        raise ConfigError(f"state_slack must be a number > 0 (e.g. 0.1 = 10%), got {state_slack!r}.")
    from hao.latency.interference import monitor

    ref = None if reference is None or len(nets) < 2 else nets[reference]
    sessions: list[list[dict[str, Any]]] = [[] for _ in nets]
    errors: dict[int, str] = {}
    refs: list[float] = []

    def fast(sess: dict[str, Any], r_min: float) -> bool:
        return sess["ref"] is None or sess["ref"] <= r_min * (1 + state_slack)

    def done(i: int, r_min: float) -> bool:
        return i in errors or any(x["quiet"] and fast(x, r_min) for x in sessions[i])

    time.sleep(0.05)
    p = 0
    while p < max_passes:
        r_min = min(refs) if refs else np.inf
        todo = [i for i in range(len(nets)) if p < passes or not done(i, r_min)]
        if not todo:
            break
        k = p % len(todo)
        for i in todo[k:] + todo[:k]:
            if i in errors:
                continue
            try:
                r = float(np.median(ref.time_session(3, 10))) if ref is not None else None
                with monitor() as got:
                    t = nets[i].time_session(repeat, min_repeat_ms)
            except Exception as exc:  # noqa: BLE001 - one network's failure must not lose the others
                errors[i] = f"timing: {type(exc).__name__}: {exc}"[:500]
                continue
            if r is not None:
                refs.append(r)
            it = got[0]
            sessions[i].append({"t": t, "median": float(np.median(t)), "quiet": it.quiet(), "ref": r,
                                "other": round(it.other_cores + it.steal_cores, 3) if it.available else None})
        p += 1
    r_min = min(refs) if refs else np.inf
    out: list[dict[str, Any]] = []
    for i, ss in enumerate(sessions):
        med = [round(x["median"], 5) for x in ss]
        if i in errors or not ss:
            out.append({"ok": False, "error": errors.get(i, "no session timed"), "session_medians_ms": med})
            continue
        best = min(ss, key=lambda x: (not (x["quiet"] and fast(x, r_min)), not fast(x, r_min), not x["quiet"],
                                      x["median"]))
        out.append({"ok": True, "measured_ms": best["median"], "std_ms": float(best["t"].std()),
                    "repeats": int(best["t"].size), "sessions": len(ss), "session_medians_ms": med,
                    "session_other_cores": [x["other"] for x in ss],
                    "session_reference_ms": [None if x["ref"] is None else round(x["ref"], 5) for x in ss],
                    "timed_quiet": bool(best["quiet"]),
                    "host_state_ratio": None if best["ref"] is None else round(best["ref"] / r_min, 4),
                    "fast_state": fast(best, r_min)})
    return out


def compile_network(model: Any, input_shape: tuple[int, ...], tuner: Tuner, rounds: int = 3,
                    repeat: int = 7, min_repeat_ms: int = 20, prepack_weights: bool = True) -> dict[str, Any]:
    """:func:`build_network`, then ``rounds`` back-to-back timing sessions (lowest median kept). Returns the
    timing facts and the build's facts. To time several networks, :func:`time_interleaved` resists load
    bursts better."""
    net = build_network(model, input_shape, tuner, prepack_weights=prepack_weights)
    t = time_interleaved([net], passes=rounds, repeat=repeat, min_repeat_ms=min_repeat_ms)[0]
    if not t["ok"]:
        raise ConfigError(f"timing the compiled network failed ({t['error']}).")
    return {"measured_ms": t["measured_ms"], "std_ms": t["std_ms"], "repeats": t["repeats"], **net.facts}

