"""Kernel programs: each table kernel as a TVM TE/topi PrimFunc, with its input generator and NumPy/PyTorch
reference, and the check of a kernel's output against that reference.

Kernels (table schema: ``latency_models/README.md``):

* **float32** — NHWC. ``conv2d``: ``topi.nn.conv2d_nhwc`` (HWIO weights) + bias + ReLU; ``dwconv2d``:
  ``topi.nn.group_conv2d_nhwc`` with groups = channels (HWIO weights ``(K, K, 1, C)``, the form Relax lowers a
  depthwise ``nn.conv2d`` to, so a compiled network's task can replay the table kernel's schedule) + bias +
  ReLU; ``dense``: ``topi.nn.dense`` + bias; ``avgpool``: global mean; ``add``: element-wise add. (BatchNorm
  is folded into the bias, as an inference compiler does.)
* **int8** — the integer programs of :mod:`hao.latency.int8_ops`, the same programs a deployed network runs
  (:mod:`hao.deploy.tvm_module`): u8 activations x i8 weights -> i32 accumulators, then an integer-only dyadic
  requantization (``(i64(acc)·M + bias) >> shift``, zero point and clip bounds as runtime arguments, ReLU
  included by the clip). Layout NCHW16c throughout. ``conv2d``: ``topi.nn.conv2d_NCHWc_int8`` with weights
  pre-packed as ``[OC/16, IC/icb, K, K, icb/4, 16, 4]`` (the form VNNI's ``vpdpbusd`` tensorizes correctly; a
  plain (N, K) weight was tensorized into wrong results), input padded with its zero point. Channels are padded
  to multiples of 16 (output) and 4 (input). ``dense``: the classifier, weights ``[N/16, K/4, 16, 4]``,
  dequantized to float32 logits. ``dwconv2d``: on CPUs with AVX-512 VNNI + VBMI the hand-written dot-product
  program of :mod:`hao.latency.dw_dot` (weights ``[C/16, K, ceil(K/4), 16, 4]``), elsewhere plain integer code
  (weights ``[C/16, K, K, 16]``). ``avgpool``/``add``: plain integer code (nothing to tensorize).
  The int8 programs are exact: outputs must equal the NumPy reference bit for bit.
* **token kernels** (transformers: ``linear``, ``bmm``, ``softmax``, ``layernorm``, ``gelu``) —
  :mod:`hao.latency.token_programs`.
* **below 8 bits** — this CPU has no faster path than int8 (TVM_NOTES: native int4 buffers give wrong results,
  emulated int4 is slower than int8), so such kernels run the int8 kernel and are flagged ``impl=int8-mapped``.

:func:`build_kernel_func` returns a :class:`KernelProgram`; :func:`check_output` compares an output with the
reference (integers: bit for bit; floats: 1e-3 relative). TVM is imported lazily.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from hao._imports import lazy_import
from hao.errors import ConfigError
from hao.kernel import TOKEN_OPS, KernelSpec
from hao.latency import int8_ops as ops
from hao.latency.backend import kernel_precision
from hao.latency.dw_dot import dw_weight_shape, dwconv_int8_dot, pack_dw_weight, uses_dot_depthwise

__all__ = ["KernelProgram", "build_kernel_func", "check_output"]


@dataclass
class KernelProgram:
    """A kernel as TVM sees it: the PrimFunc, how to make inputs, and the reference output."""

    func: Any                                  # tvm PrimFunc with global_symbol "main"
    make_inputs: Callable[[np.random.Generator], list[np.ndarray]]
    reference: Callable[[list[np.ndarray]], np.ndarray]
    out_shape: tuple[int, ...]
    out_dtype: str
    layout: str
    integer: bool


def _ceil_to(x: int, m: int) -> int:
    return -(-x // m) * m


def _torch_conv(x: np.ndarray, w: np.ndarray, stride: int, pad: int, groups: int) -> np.ndarray:
    import torch

    return torch.nn.functional.conv2d(torch.from_numpy(x.astype(np.float64)), torch.from_numpy(
        w.astype(np.float64)), stride=stride, padding=pad, groups=groups).numpy()


def build_kernel_func(kernel: KernelSpec, target: Any = None) -> KernelProgram:
    """The TE/topi program for ``kernel`` (sub-8-bit kernels get the int8 program; token kernels come from
    :mod:`hao.latency.token_programs`). ``target`` (the LLVM target the program is compiled for) chooses between
    programs where the target decides: int8 depthwise runs the dot-product program (:mod:`hao.latency.dw_dot`)
    on CPUs with AVX-512 VNNI and VBMI, the plain one elsewhere (and without a target)."""
    prec = kernel_precision(kernel)
    if kernel.op in TOKEN_OPS:
        from hao.latency.token_programs import token_program

        return token_program(kernel, integer=not prec.startswith("fp32"))
    if kernel.op == "conv2d" and kernel.groups != 1:
        raise ConfigError(f"Grouped conv2d (groups={kernel.groups}) is not supported by the TVM backend; "
                          "use groups=1 or op='dwconv2d' (groups = channels).")
    if kernel.op == "dwconv2d" and not (kernel.groups == kernel.in_channels == kernel.out_channels):
        raise ConfigError(f"dwconv2d needs groups = in_channels = out_channels, got {kernel.short()}.")
    if prec.startswith("fp32"):
        return _fp32_program(kernel)
    return _int8_program(kernel, target)


def _finish(outs: list, te: Any) -> Any:
    f = te.create_prim_func(outs)
    return f.with_attr("global_symbol", "main")


def _fp32_program(k: KernelSpec) -> KernelProgram:
    tvm = lazy_import("tvm")
    from tvm import te, topi

    B, C, H, W, O, K, S = k.batch, k.in_channels, k.in_h, k.in_w, k.out_channels, k.kernel, k.stride  # noqa: E741
    P = K // 2
    f32 = "float32"
    if k.op in ("conv2d", "dwconv2d"):
        data = te.placeholder((B, H, W, C), f32, name="data")
        if k.op == "conv2d":
            wt = te.placeholder((K, K, C, O), f32, name="weight")
            conv = topi.nn.conv2d_nhwc(data, wt, S, P, 1, out_dtype=f32)
        else:
            # the form Relax legalizes a depthwise nn.conv2d (NHWC/HWIO, groups = C) into: a network's
            # depthwise task then has the same blocks and loops, and can run this kernel's tuned schedule
            wt = te.placeholder((K, K, 1, C), f32, name="weight")
            conv = topi.nn.group_conv2d_nhwc(data, wt, S, P, 1, C, out_dtype=f32)
        bias = te.placeholder((O,), f32, name="bias")
        out = topi.nn.relu(topi.add(conv, bias))
        func = _finish([data, wt, bias, out], te)
        OH, OW = k.out_h, k.out_w

        def make_inputs(rng: np.random.Generator) -> list[np.ndarray]:
            return [rng.standard_normal((B, H, W, C), dtype=np.float32),
                    rng.standard_normal(tuple(int(s) for s in wt.shape), dtype=np.float32) * 0.1,
                    rng.standard_normal((O,), dtype=np.float32)]

        def reference(x: list[np.ndarray]) -> np.ndarray:
            d, w, b = x
            if k.op == "conv2d":
                w_oihw = w.transpose(3, 2, 0, 1)
                y = _torch_conv(d.transpose(0, 3, 1, 2), w_oihw, S, P, 1)
            else:
                w_oihw = w.transpose(3, 2, 0, 1)  # (K, K, 1, C) -> (C, 1, K, K)
                y = _torch_conv(d.transpose(0, 3, 1, 2), w_oihw, S, P, C)
            return np.maximum(y.transpose(0, 2, 3, 1) + b, 0)

        return KernelProgram(func, make_inputs, reference, (B, OH, OW, O), f32, "NHWC", False)
    if k.op == "dense":
        data = te.placeholder((B, C), f32, name="data")
        wt = te.placeholder((O, C), f32, name="weight")
        bias = te.placeholder((O,), f32, name="bias")
        out = topi.add(topi.nn.dense(data, wt, out_dtype=f32), bias)
        func = _finish([data, wt, bias, out], te)

        def make_inputs(rng: np.random.Generator) -> list[np.ndarray]:
            return [rng.standard_normal((B, C), dtype=np.float32),
                    rng.standard_normal((O, C), dtype=np.float32) * 0.1,
                    rng.standard_normal((O,), dtype=np.float32)]

        return KernelProgram(func, make_inputs, lambda x: x[0].astype(np.float64) @ x[1].T.astype(np.float64)
                             + x[2], (B, O), f32, "NC", False)
    if k.op == "avgpool":
        data = te.placeholder((B, H, W, C), f32, name="data")
        rh, rw = te.reduce_axis((0, H), "rh"), te.reduce_axis((0, W), "rw")
        s = te.compute((B, C), lambda b, c: te.sum(data[b, rh, rw, c], axis=[rh, rw]), name="pool_sum")
        out = te.compute((B, C), lambda b, c: s[b, c] * tvm.tirx.const(1.0 / (H * W), f32), name="pool_avg")
        func = _finish([data, out], te)
        return KernelProgram(func, lambda rng: [rng.standard_normal((B, H, W, C), dtype=np.float32)],
                             lambda x: x[0].astype(np.float64).mean(axis=(1, 2)), (B, C), f32, "NHWC", False)
    if k.op == "add":
        a = te.placeholder((B, H, W, C), f32, name="lhs")
        b = te.placeholder((B, H, W, C), f32, name="rhs")
        out = topi.add(a, b)
        func = _finish([a, b, out], te)
        return KernelProgram(func, lambda rng: [rng.standard_normal((B, H, W, C), dtype=np.float32),
                                                rng.standard_normal((B, H, W, C), dtype=np.float32)],
                             lambda x: x[0].astype(np.float64) + x[1], (B, H, W, C), f32, "NHWC", False)
    raise ConfigError(f"Unknown op {k.op!r}")  # pragma: no cover - KernelSpec validates ops


def _int8_program(k: KernelSpec, target: Any = None) -> KernelProgram:
    """The int8 programs of :mod:`hao.latency.int8_ops` — the very programs a deployed integer network runs
    (:mod:`hao.deploy.tvm_module`) — with random codes, a representative requantization (multipliers from the
    accumulator's range, zero point 0, clip [0, 255]) and the exact NumPy reference."""
    B, C, H, W, O, K, S = k.batch, k.in_channels, k.in_h, k.in_w, k.out_channels, k.kernel, k.stride  # noqa: E741
    if B != 1:
        raise ConfigError(f"int8 kernels are batch 1 (the deployed networks' batch), got batch {B} in {k.short()}.")
    P = K // 2
    OH, OW = k.out_h, k.out_w
    qp = np.array([0, 0, 0, 255], np.int32)
    qp_t = ((4,), "int32")

    def requant_params(rng: np.random.Generator, acc_absmax: np.ndarray, cp: int) -> list[np.ndarray]:
        mult, shift = ops.dyadic(200.0 / (acc_absmax.astype(np.float64) + 1.0))
        bias = (rng.integers(-1000, 1000, acc_absmax.shape) * mult.astype(np.int64)) + ops.rounding_bias(shift)
        return [bias.reshape(cp // 16, 16), mult.reshape(cp // 16, 16), shift.reshape(cp // 16, 16)]

    def chan(a: np.ndarray) -> np.ndarray:
        return a.reshape(-1)

    if k.op in ("conv2d", "dwconv2d"):
        dw = k.op == "dwconv2d"
        icb = 16 if dw else ops.conv_block(C)
        icp = _ceil_to(C, 16) if dw else _ceil_to(C, 4)
        ocp = _ceil_to(O, 16)
        dot = dw and uses_dot_depthwise(target)
        per = [((ocp // 16, 16), dt) for dt in ("int64", "int32", "int32")]
        if dot:
            wshape: tuple[int, ...] = dw_weight_shape(ocp, K)
            func = dwconv_int8_dot(ocp, H, W, K, S, P)
        else:
            wshape = (ocp // 16, K, K, 16) if dw else (ocp // 16, icp // icb, K, K, icb // 4, 16, 4)
            func = ops.prim_func(ops.dwconv_int8 if dw else ops.conv_int8, [((B, icp // icb, H, W, icb), "uint8"),
                                                                             (wshape, "int8"), *per, qp_t],
                                 stride=S, pad=P)

        def natural(x: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
            d = ops.from_nchwc(x[0], icp)
            if dot:
                w = x[1].transpose(0, 3, 1, 2, 4).reshape(ocp, K, -1)[:, None, :, :K]
            elif dw:
                w = x[1].transpose(0, 3, 1, 2).reshape(ocp, 1, K, K)
            else:
                w = x[1].transpose(0, 5, 1, 4, 6, 2, 3).reshape(ocp, icp, K, K)
            return d, w

        def make_inputs(rng: np.random.Generator) -> list[np.ndarray]:
            d = rng.integers(0, 256, (B, icp // icb, H, W, icb), dtype=np.uint8)
            if dot:   # the taps beyond K are zero in every packed weight
                w = pack_dw_weight(rng.integers(-128, 128, (ocp, 1, K, K), dtype=np.int8))
            else:
                w = rng.integers(-128, 128, wshape, dtype=np.int8)
            acc = ops.conv_acc_np(*natural([d, w]), S, P, 0, icp if dw else 1)
            return [d, w, *requant_params(rng, np.abs(acc).max(axis=(0, 2, 3)), ocp), qp]

        def reference(x: list[np.ndarray]) -> np.ndarray:
            f = ops.dwconv_int8_np if dw else ops.conv_int8_np
            y = f(*natural(x), chan(x[2]), chan(x[3]), chan(x[4]), stride=S, pad=P, pad_value=int(x[5][0]),
                  zero=int(x[5][1]), lo=int(x[5][2]), hi=int(x[5][3]))
            return ops.to_nchwc(y, 16)

        return KernelProgram(func, make_inputs, reference, (B, ocp // 16, OH, OW, 16), "uint8", "NCHW16c", True)
    if k.op == "dense":
        # the classifier: u8 x i8 -> i32, dequantized to float32 logits (how every network here ends)
        kp, np_ = _ceil_to(C, 4), _ceil_to(O, 16)
        func = ops.prim_func(ops.dense_logits, [((B, kp), "uint8"), ((np_ // 16, kp // 4, 16, 4), "int8"),
                                                ((np_,), "float32"), ((np_,), "float32")])

        def w_nat(w: np.ndarray) -> np.ndarray:
            return w.transpose(0, 2, 1, 3).reshape(np_, kp)

        def make_inputs(rng: np.random.Generator) -> list[np.ndarray]:
            return [rng.integers(0, 256, (B, kp), dtype=np.uint8),
                    rng.integers(-128, 128, (np_ // 16, kp // 4, 16, 4), dtype=np.int8),
                    rng.uniform(1e-4, 1e-3, np_).astype(np.float32), rng.standard_normal(np_).astype(np.float32)]

        return KernelProgram(func, make_inputs, lambda x: ops.dense_logits_np(x[0], w_nat(x[1]), x[2], x[3]),
                             (B, np_), "float32", "NC", False)
    cp = _ceil_to(C, 16)
    cc = cp // 16
    shp = (B, cc, H, W, 16)
    if k.op == "avgpool":
        func = ops.prim_func(ops.avgpool_int8, [(shp, "uint8"), ((1,), "int32"), ((1,), "int32"), qp_t])
        m, sh = ops.dyadic(1.0 / (H * W))

        def reference(x: list[np.ndarray]) -> np.ndarray:
            y = ops.avgpool_int8_np(ops.from_nchwc(x[0], cp), x[1], x[2], in_zero=int(x[3][0]), zero=int(x[3][1]),
                                    lo=int(x[3][2]), hi=int(x[3][3]))
            return y.reshape(B, cc, 16)

        return KernelProgram(func, lambda rng: [rng.integers(0, 256, shp, dtype=np.uint8), m, sh, qp],
                             reference, (B, cc, 16), "uint8", "NCHW16c", True)
    if k.op == "add":
        func = ops.prim_func(ops.add_int8, [(shp, "uint8"), (shp, "uint8"), ((2,), "int32"), ((1,), "int32"),
                                            ((5,), "int32")])
        m2, sh = ops.dyadic_pair(0.625, 0.375)
        q5 = np.array([3, 5, 0, 0, 255], np.int32)

        def reference(x: list[np.ndarray]) -> np.ndarray:
            y = ops.add_int8_np(ops.from_nchwc(x[0], cp), ops.from_nchwc(x[1], cp), x[2], x[3], zero_a=int(x[4][0]),
                                zero_b=int(x[4][1]), zero=int(x[4][2]), lo=int(x[4][3]), hi=int(x[4][4]))
            return ops.to_nchwc(y, 16)

        return KernelProgram(func, lambda rng: [rng.integers(0, 256, shp, dtype=np.uint8),
                                                rng.integers(0, 256, shp, dtype=np.uint8), m2, sh, q5],
                             reference, shp, "uint8", "NCHW16c", True)
    raise ConfigError(f"Unknown op {k.op!r}")  # pragma: no cover


def check_output(prog: KernelProgram, got: np.ndarray, ref: np.ndarray) -> tuple[bool, float, str]:
    """Compare a kernel's output with its reference. Integers: equal bit for bit (the int8 programs are integer
    only); floats: |err| <= 1e-3 * (1 + max|ref|)."""
    if tuple(got.shape) != tuple(ref.shape):
        return False, math.inf, f"output shape {tuple(got.shape)} != reference {tuple(ref.shape)}"
    diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    err = float(diff.max()) if diff.size else 0.0
    if prog.integer:
        frac = float((diff > 0).mean()) if diff.size else 0.0
        ok = err == 0.0
        return ok, err, "" if ok else f"output differs from the reference: max |err| {err:g}, {frac:.2%} differ"
    tol = 1e-3 * (1.0 + float(np.abs(ref).max()))
    ok = err <= tol
    return ok, err, "" if ok else f"output differs from the reference: max |err| {err:g} > tolerance {tol:g}"
