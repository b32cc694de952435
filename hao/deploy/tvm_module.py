"""An :class:`~hao.deploy.graph.IntegerNetwork` as a TVM Relax module whose layers are the latency table's own int8
TE programs (:mod:`hao.latency.int8_ops`), one ``call_tir`` per table kernel, never fused with each other.

* :func:`relax_module` — the Relax ``IRModule``: float32 image in, quantized once (``quantize_input``), then conv /
  depthwise / add / pool programs on u8 NCHW16c tensors with their constants (packed int8 weights, int64 biases,
  int32 multipliers and shifts, and the zero points and clip bounds as small int32 tensors, so that every layer
  of one shape is *the same program* as the table kernel of that shape), and the classifier's dequantization to
  float32 logits.
* :func:`build` — compile it: each program takes its schedule from a MetaSchedule database (the hardware's
  ``tuning_db``, where the table's int8 kernels were tuned: an exact structural match, so each layer runs the
  schedule its table row timed), or, without a database, TVM's default lowering (correct, slow: for tests).
* :class:`IntegerModule` — the built module: ``run(image)`` → logits, ``time_session`` like the float
  networks of :mod:`hao.latency.compiler`.

Depthwise layers compiled for a target with AVX-512 VNNI + VBMI run the hand-written dot-product program of
:mod:`hao.latency.dw_dot` (as that target's table rows do; ``relax_module(net, target)``), added to the module as
a PrimFunc and called with ``call_tir``; it needs no schedule.

Sub-8-bit layers run the int8 programs (codes of fewer bits in int8 / u8 storage): this CPU has no faster path
(``docs/tvm_notes.md``). A table whose int4 rows time a real int4 program would add an ``int4_ops`` with the same
signatures and a branch on the layer's bits in :func:`relax_module`; nothing else changes.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from hao._imports import lazy_import
from hao.deploy.graph import IntegerNetwork, Op
from hao.errors import ConfigError
from hao.latency import int8_ops as ops
from hao.latency.compiler import lower_passes
from hao.latency.dw_dot import dwconv_int8_dot, is_hand_scheduled, pack_dw_weight, uses_dot_depthwise

__all__ = ["relax_module", "build", "IntegerModule", "layer_arrays", "table_functions", "TABLE_PROGRAMS",
           "schedules"]


def _ceil16(c: int) -> int:
    return -(-c // 16) * 16


def _per_channel(a: np.ndarray, cp: int, fill: int, dtype: Any) -> np.ndarray:
    out = np.full(cp, fill, dtype)
    out[: a.shape[0]] = a
    return out.reshape(cp // 16, 16)


def layer_arrays(op: Op, in_channels_padded: int, dot_depthwise: bool = False) -> dict[str, np.ndarray]:
    """The constants of a conv/dwconv op in the table program's layouts, for input data with
    ``in_channels_padded`` channels (padded output channels: weight 0, multiplier 0 → they hold the zero point);
    ``dot_depthwise``: a depthwise weight in the dot-product program's layout (:mod:`hao.latency.dw_dot`)."""
    A, a = op.arrays, op.attrs
    w = A["weight"]
    oc = w.shape[0]
    cp = _ceil16(oc)
    shift = _per_channel(A["shift"], cp, 1, np.int32)
    out = {"bias": _per_channel(A["bias"], cp, 0, np.int64), "mult": _per_channel(A["mult"], cp, 0, np.int32),
           "shift": shift, "qp": np.array([a["pad_value"], a["zero"], a["lo"], a["hi"]], np.int32)}
    if op.kind == "conv":
        if w.shape[1] < in_channels_padded:  # the producer's padded channels carry its zero point: weight 0
            w = np.concatenate([w, np.zeros((oc, in_channels_padded - w.shape[1]) + w.shape[2:], np.int8)], 1)
        out["weight"] = ops.pack_conv_weight(w)
    else:
        k = w.shape[-1]
        full = np.zeros((cp, k, k), np.int8)
        full[:oc] = w[:, 0]
        out["weight"] = (pack_dw_weight(full[:, None]) if dot_depthwise else
                         full.reshape(cp // 16, 16, k, k).transpose(0, 2, 3, 1).copy())
    pad_bias = ops.rounding_bias(shift.reshape(-1)[oc:])
    out["bias"].reshape(-1)[oc:] = pad_bias
    return out


def relax_module(net: IntegerNetwork, target: Any = None) -> Any:
    """The Relax module of ``net`` (see the module docstring); ``main(x: float32 (1, C, H, W)) -> (1, classes)``.
    ``target`` (what the module will be compiled for) chooses the programs the target decides, as the table's
    rows of that target did: depthwise layers run the dot-product program on AVX-512 VNNI + VBMI CPUs."""
    lazy_import("tvm")
    from tvm import relax, topi

    c, h, w = net.input_shape
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, c, h, w), "float32"))

    def const(a: np.ndarray) -> Any:  # relax.const narrows int64 to int32 unless the dtype is given
        return relax.const(a, str(a.dtype))

    dot = uses_dot_depthwise(target)
    first = net.ops[0]
    block = ops.conv_block(c) if first.kind == "conv" else 16
    g = net.input_grid
    with bb.function("main", [x]):
        with bb.dataflow():
            vals = {"input": bb.emit_te(ops.quantize_input, x, scale=g.scale, zero=g.zero, levels=g.levels,
                                        block=block, primfunc_name_hint="quantize_input")}
            chans = {"input": -(-c // block) * block}
            out = None
            for op in net.ops:
                src = vals[op.inputs[0]]
                if op.kind in ("conv", "dwconv"):
                    dot_dw = dot and op.kind == "dwconv"
                    arr = layer_arrays(op, chans[op.inputs[0]], dot_depthwise=dot_dw)
                    consts = [const(arr[n]) for n in ("weight", "bias", "mult", "shift", "qp")]
                    if dot_dw:
                        v = _emit_dot_depthwise(bb, src, op, consts)
                    else:
                        f = ops.conv_int8 if op.kind == "conv" else ops.dwconv_int8
                        v = bb.emit_te(f, src, *consts, stride=op.attrs["stride"], pad=op.attrs["pad"],
                                       primfunc_name_hint=op.kind + "_int8")
                    chans[op.name] = _ceil16(op.arrays["weight"].shape[0])
                elif op.kind == "add":
                    a = op.attrs
                    qp = np.array([a["zero_a"], a["zero_b"], a["zero"], a["lo"], a["hi"]], np.int32)
                    v = bb.emit_te(ops.add_int8, src, vals[op.inputs[1]], const(op.arrays["mult"]),
                                   const(op.arrays["shift"]), const(qp), primfunc_name_hint="add_int8")
                    chans[op.name] = chans[op.inputs[0]]
                elif op.kind == "avgpool":
                    a = op.attrs
                    qp = np.array([a["in_zero"], a["zero"], a["lo"], a["hi"]], np.int32)
                    v = bb.emit_te(ops.avgpool_int8, src, const(op.arrays["mult"]), const(op.arrays["shift"]),
                                   const(qp), primfunc_name_hint="avgpool_int8")
                    chans[op.name] = chans[op.inputs[0]]
                    v = bb.emit(relax.op.reshape(v, (1, chans[op.name])))
                elif op.kind == "dense":
                    wt = op.arrays["weight"]
                    kp = chans[op.inputs[0]]
                    full = np.zeros((wt.shape[0], kp), np.int8)
                    full[:, : wt.shape[1]] = wt
                    n_p = _ceil16(wt.shape[0])
                    deq = np.zeros(n_p, np.float32)
                    deq[: wt.shape[0]] = op.arrays["dequant"]
                    bias = np.zeros(n_p, np.float32)
                    bias[: wt.shape[0]] = op.arrays["bias"]
                    v = bb.emit_te(ops.dense_logits, src, const(ops.pack_dense_weight(full)), const(deq),
                                   const(bias), primfunc_name_hint="dense_logits")
                    v = bb.emit_te(topi.strided_slice, v, [0, 0], [1, wt.shape[0]], primfunc_name_hint="logits")
                else:  # pragma: no cover
                    raise ConfigError(f"unknown integer op kind {op.kind!r}")
                vals[op.name] = out = v
            gv = bb.emit_output(out)
        bb.emit_func_output(gv)
    return bb.get()


def _emit_dot_depthwise(bb: Any, src: Any, op: Op, consts: list[Any]) -> Any:
    """A depthwise layer as a ``call_tir`` of the hand-written dot-product program (the table row's program)."""
    from tvm import relax

    _, cb, h, w, _ = (int(d) for d in src.ty.shape)
    k, s, p = int(op.arrays["weight"].shape[-1]), int(op.attrs["stride"]), int(op.attrs["pad"])
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    func = dwconv_int8_dot(cb * 16, h, w, k, s, p).without_attr("global_symbol")
    gv = bb.add_func(func, "dwconv_int8")
    return bb.emit(relax.call_tir(gv, [src, *consts], relax.TensorType((1, cb, oh, ow, 16), "uint8")))


TABLE_PROGRAMS = ("conv_int8", "dwconv_int8", "add_int8", "avgpool_int8", "dense_logits")


def _is_table_program(name: str) -> bool:
    return any(name == p or (name.startswith(p) and name[len(p):].isdigit()) for p in TABLE_PROGRAMS)


def table_functions(mod: Any) -> list[Any]:
    """The PrimFuncs of ``mod`` that are table kernels, in call order (one per entry of
    :meth:`IntegerNetwork.kernels`; a program shared by several layers appears once per layer)."""
    import tvm

    call_tir = tvm.ir.Op.get("relax.call_tir")
    out = []
    for blk in mod["main"].body.blocks:
        for bind in blk.bindings:
            v = bind.value
            if getattr(v, "op", None) is not None and v.op.same_as(call_tir):
                gv = v.args[0]
                if _is_table_program(gv.name_hint):
                    out.append(mod[gv])
    return out


def schedules(mod: Any, target: Any, database: Any = None, backend: Any = None,
              progress: bool = False) -> tuple[Any, dict[str, int]]:
    """A MetaSchedule database with one record per PrimFunc of ``mod``: its record in ``database`` (the
    hardware's ``tuning_db``: a table kernel's program is found there by construction), else tuned now by
    ``backend`` (a :class:`~hao.latency.tvm_backend.TVMBackend` of this machine) when one is given, else none
    (TVM's default lowering). Returns (database, counts of ``from_database`` / ``tuned`` / ``default``, and
    ``table_programs_not_in_database``: table kernels whose program the hardware database does not hold — their
    table rows were timed with another program, e.g. before the int8 programs changed; re-time the table), and
    ``hand_scheduled``: hand-written programs, which need no record and compile as they are)."""
    import tvm
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.tune_context import _normalize_mod

    chosen = ms.database.MemoryDatabase()
    counts = {"from_database": 0, "tuned": 0, "default": 0, "table_programs_not_in_database": 0,
              "hand_scheduled": 0}
    funcs = [(gv.name_hint, f) for gv, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc)]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(funcs), desc="schedules", unit="program", dynamic_ncols=True)
    for name, f in funcs:
        if is_hand_scheduled(f):   # written scheduled: compiled as it is, like its table row
            counts["hand_scheduled"] += 1
            if bar is not None:
                bar.update(1)
            continue
        tmod = _normalize_mod(f)
        rec = None
        if _is_table_program(name) and not (database is not None and database.has_workload(tmod)) and not (
                backend is not None and backend.database.has_workload(tmod)):
            # the table's row for this kernel was not timed with this program (or its schedule was not kept)
            counts["table_programs_not_in_database"] += 1
        for db, key in ((database, "from_database"), (getattr(backend, "database", None), "from_database")):
            if db is not None and db.has_workload(tmod):
                rec = db.query_tuning_record(tmod, target, workload_name="main")
                if rec is not None:
                    counts[key] += 1
                    break
        if rec is None and backend is not None:
            backend.schedule(tmod)
            rec = backend.database.query_tuning_record(tmod, target, workload_name="main")
            counts["tuned"] += rec is not None
        if rec is None:
            counts["default"] += 1
        else:
            chosen.commit_tuning_record(ms.database.TuningRecord(
                rec.trace, chosen.commit_workload(rec.workload.mod), rec.run_secs, target, rec.args_info))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return chosen, counts


def build(mod: Any, target: Any = None, database: Any = None) -> Any:
    """Compile ``mod`` (from :func:`relax_module`) without fusing its programs: with ``database``, each PrimFunc
    takes its schedule from it (``MetaScheduleApplyDatabase``); without, TVM's default lowering."""
    tvm = lazy_import("tvm")
    from tvm import relax
    from tvm.ir.transform import PassContext

    if target is None:
        target = tvm.target.Target({"kind": "llvm"})
    elif isinstance(target, dict):
        target = tvm.target.Target(target)
    with target, PassContext(opt_level=3):
        if database is None:
            return relax.build(mod, target=target, relax_pipeline=tvm.transform.Sequential(lower_passes(target)))
        with database:
            seq = tvm.transform.Sequential([relax.transform.MetaScheduleApplyDatabase(enable_warning=False)]
                                           + lower_passes(target))
            return relax.build(mod, target=target, relax_pipeline=seq)


class IntegerModule:
    """A built integer network: ``run(x)`` → float32 logits of one float32 image ``(1, C, H, W)``;
    ``time_session`` times it on ``sample`` (the interface of :func:`hao.latency.compiler.time_interleaved`)."""

    def __init__(self, exe: Any, sample: np.ndarray | None = None, device: Any = None) -> None:
        tvm = lazy_import("tvm")
        from tvm import relax

        self.dev = device if device is not None else tvm.cpu(0)
        self.vm = relax.VirtualMachine(exe, self.dev)
        self.inp = None if sample is None else tvm.runtime.tensor(np.ascontiguousarray(sample, np.float32), self.dev)

    def run(self, x: np.ndarray) -> np.ndarray:
        tvm = lazy_import("tvm")
        out = self.vm["main"](tvm.runtime.tensor(np.ascontiguousarray(x, np.float32), self.dev))
        return out.numpy()

    def run_batch(self, xs: np.ndarray) -> np.ndarray:
        """Logits of images ``(N, C, H, W)``, one call per image (the module has batch 1)."""
        return np.concatenate([self.run(xs[i: i + 1]) for i in range(xs.shape[0])])

    def time_session(self, repeat: int = 7, min_repeat_ms: int = 20) -> np.ndarray:
        """``repeat`` times in ms (each the mean of runs filling ``min_repeat_ms``) on ``sample``, after a
        warm-up run."""
        if self.inp is None:
            raise ConfigError("IntegerModule.time_session needs the module built with a sample image.")
        timer = self.vm.time_evaluator("main", self.dev, number=1, repeat=repeat, min_repeat_ms=min_repeat_ms)
        return np.asarray(timer(self.inp).results) * 1e3
