"""Kernel programs: each table kernel as a TVM TE/topi PrimFunc, with its input generator and NumPy/PyTorch
reference, and the check of a kernel's output against that reference.

Kernels (table schema: ``latency_models/README.md``):

* **float32** — NHWC. ``conv2d``: ``topi.nn.conv2d_nhwc`` (HWIO weights) + bias + ReLU; ``dwconv2d``:
  ``topi.nn.group_conv2d_nhwc`` with groups = channels (HWIO weights ``(K, K, 1, C)``, the form Relax lowers a
  depthwise ``nn.conv2d`` to, so a compiled network's task can replay the table kernel's schedule) + bias +
  ReLU; ``dense``: ``topi.nn.dense`` + bias; ``avgpool``: global mean; ``add``: element-wise add. (BatchNorm
  is folded into the bias, as an inference compiler does.)
* **int8** — u8 activations x i8 weights -> i32 accumulators, then bias and requantization
  (``u8(clip(round(f32(acc + bias) * scale[c]), 0, 255))``, ReLU included by the clip). Layout NCHW16c
  throughout so that consecutive kernels need no layout transforms. ``conv2d``: ``topi.nn.conv2d_NCHWc_int8``
  with weights pre-packed as ``[OC/16, IC/icb, K, K, icb/4, 16, 4]``: this form tensorizes onto VNNI's
  ``vpdpbusd`` correctly (a plain (N, K) weight was tensorized into wrong results). Channels are padded to
  multiples of 16 (output) and 4 (input), as the compiled network would pad them. ``dense``: weights packed as
  ``[N/16, K/4, 16, 4]``. ``dwconv2d``/``avgpool``/``add`` have no dot product to tensorize: plain i32 code.
* **below 8 bits** — this CPU has no faster path than int8 (TVM_NOTES: native int4 buffers give wrong results,
  emulated int4 is slower than int8), so such kernels run the int8 kernel and are flagged ``impl=int8-mapped``.

:func:`build_kernel_func` returns a :class:`KernelProgram`; :func:`check_output` compares an output with the
reference (integers: <= 1 LSB on <= 0.1% of elements; floats: 1e-3 relative). TVM is imported lazily.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from hao._imports import lazy_import
from hao.errors import ConfigError
from hao.kernel import KernelSpec
from hao.latency.backend import kernel_precision

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


def _requant_ref(acc: np.ndarray, scale: np.ndarray) -> np.ndarray:
    q = acc.astype(np.float32) * scale.astype(np.float32)
    return np.clip(np.floor(q + np.float32(0.5)), 0, 255)


def _scale_for(acc_abs_max: np.ndarray) -> np.ndarray:
    return (200.0 / (acc_abs_max.astype(np.float64) + 1.0)).astype(np.float32)


def build_kernel_func(kernel: KernelSpec) -> KernelProgram:
    """The TE/topi program for ``kernel`` (sub-8-bit kernels get the int8 program)."""
    prec = kernel_precision(kernel)
    if kernel.op == "conv2d" and kernel.groups != 1:
        raise ConfigError(f"Grouped conv2d (groups={kernel.groups}) is not supported by the TVM backend; "
                          "use groups=1 or op='dwconv2d' (groups = channels).")
    if kernel.op == "dwconv2d" and not (kernel.groups == kernel.in_channels == kernel.out_channels):
        raise ConfigError(f"dwconv2d needs groups = in_channels = out_channels, got {kernel.short()}.")
    if prec.startswith("fp32"):
        return _fp32_program(kernel)
    return _int8_program(kernel)


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


def _requant_te(acc: Any, bias: Any, scale: Any, topi: Any) -> Any:
    q = topi.multiply(topi.cast(topi.add(acc, bias), "float32"), scale)
    q = topi.floor(topi.add(q, 0.5))
    return topi.cast(topi.clip(q, 0.0, 255.0), "uint8")


def _int8_program(k: KernelSpec) -> KernelProgram:
    lazy_import("tvm")
    from tvm import te, topi

    B, C, H, W, O, K, S = k.batch, k.in_channels, k.in_h, k.in_w, k.out_channels, k.kernel, k.stride  # noqa: E741
    P = K // 2
    OH, OW = k.out_h, k.out_w
    if k.op == "conv2d":
        icp = _ceil_to(C, 4)
        icb = 16 if icp % 16 == 0 else (8 if icp % 8 == 0 else 4)
        ocp = _ceil_to(O, 16)
        data = te.placeholder((B, icp // icb, H, W, icb), "uint8", name="data")
        wt = te.placeholder((ocp // 16, icp // icb, K, K, icb // 4, 16, 4), "int8", name="weight")
        bias = te.placeholder((1, ocp // 16, 1, 1, 16), "int32", name="bias")
        scale = te.placeholder((1, ocp // 16, 1, 1, 16), "float32", name="scale")
        acc = topi.nn.conv2d_NCHWc_int8(data, wt, (S, S), (P, P), (1, 1), f"NCHW{icb}c", "NCHW16c", "int32")
        out = _requant_te(acc, bias, scale, topi)
        func = _finish([data, wt, bias, scale, out], te)

        def unpack(x: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
            d = x[0].transpose(0, 1, 4, 2, 3).reshape(B, icp, H, W)
            w = x[1].transpose(0, 5, 1, 4, 6, 2, 3).reshape(ocp, icp, K, K)
            return d, w

        def make_inputs(rng: np.random.Generator) -> list[np.ndarray]:
            d = rng.integers(0, 256, (B, icp // icb, H, W, icb), dtype=np.uint8)
            w = rng.integers(-128, 128, (ocp // 16, icp // icb, K, K, icb // 4, 16, 4), dtype=np.int8)
            b = rng.integers(-1000, 1000, (1, ocp // 16, 1, 1, 16), dtype=np.int32)
            acc = _torch_conv(*unpack([d, w]), S, P, 1)
            amax = np.abs(acc).max(axis=(0, 2, 3)).reshape(1, ocp // 16, 1, 1, 16)
            return [d, w, b, _scale_for(amax)]

        def reference(x: list[np.ndarray]) -> np.ndarray:
            acc = _torch_conv(*unpack(x), S, P, 1)  # (B, ocp, OH, OW)
            acc = acc.reshape(B, ocp // 16, 16, OH, OW).transpose(0, 1, 3, 4, 2)
            return _requant_ref(acc + x[2], x[3])

        return KernelProgram(func, make_inputs, reference, (B, ocp // 16, OH, OW, 16), "uint8", "NCHW16c", True)
    if k.op == "dwconv2d":
        cp = _ceil_to(C, 16)
        cc = cp // 16
        data = te.placeholder((B, cc, H, W, 16), "uint8", name="data")
        wt = te.placeholder((cc, K, K, 16), "int8", name="weight")
        bias = te.placeholder((1, cc, 1, 1, 16), "int32", name="bias")
        scale = te.placeholder((1, cc, 1, 1, 16), "float32", name="scale")
        pad = topi.nn.pad(data, [0, 0, P, P, 0], [0, 0, P, P, 0], pad_value=0, name="pad")
        rh, rw = te.reduce_axis((0, K), "rh"), te.reduce_axis((0, K), "rw")
        acc = te.compute((B, cc, OH, OW, 16), lambda b, c, h, w, v: te.sum(
            pad[b, c, h * S + rh, w * S + rw, v].astype("int32") * wt[c, rh, rw, v].astype("int32"),
            axis=[rh, rw]), name="dw_acc")
        out = _requant_te(acc, bias, scale, topi)
        func = _finish([data, wt, bias, scale, out], te)

        def unpack_dw(x: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
            d = x[0].transpose(0, 1, 4, 2, 3).reshape(B, cp, H, W)
            w = x[1].transpose(0, 3, 1, 2).reshape(cp, 1, K, K)
            return d, w

        def make_inputs(rng: np.random.Generator) -> list[np.ndarray]:
            d = rng.integers(0, 256, (B, cc, H, W, 16), dtype=np.uint8)
            w = rng.integers(-128, 128, (cc, K, K, 16), dtype=np.int8)
            b = rng.integers(-1000, 1000, (1, cc, 1, 1, 16), dtype=np.int32)
            acc = _torch_conv(*unpack_dw([d, w]), S, P, cp)
            return [d, w, b, _scale_for(np.abs(acc).max(axis=(0, 2, 3)).reshape(1, cc, 1, 1, 16))]

        def reference(x: list[np.ndarray]) -> np.ndarray:
            acc = _torch_conv(*unpack_dw(x), S, P, cp).reshape(B, cc, 16, OH, OW).transpose(0, 1, 3, 4, 2)
            return _requant_ref(acc + x[2], x[3])

        return KernelProgram(func, make_inputs, reference, (B, cc, OH, OW, 16), "uint8", "NCHW16c", True)
    if k.op == "dense":
        kp, np_ = _ceil_to(C, 4), _ceil_to(O, 16)
        data = te.placeholder((B, kp), "uint8", name="data")
        wt = te.placeholder((np_ // 16, kp // 4, 16, 4), "int8", name="weight")
        bias = te.placeholder((np_,), "int32", name="bias")
        scale = te.placeholder((np_,), "float32", name="scale")
        r = te.reduce_axis((0, kp), "k")
        acc = te.compute((B, np_), lambda b, n: te.sum(
            data[b, r].astype("int32") * wt[n // 16, r // 4, n % 16, r % 4].astype("int32"), axis=r),
            name="dense_acc")
        out = _requant_te(acc, bias, scale, topi)
        func = _finish([data, wt, bias, scale, out], te)

        def w_nat(w: np.ndarray) -> np.ndarray:
            return w.transpose(0, 2, 1, 3).reshape(np_, kp)

        def make_inputs(rng: np.random.Generator) -> list[np.ndarray]:
            d = rng.integers(0, 256, (B, kp), dtype=np.uint8)
            w = rng.integers(-128, 128, (np_ // 16, kp // 4, 16, 4), dtype=np.int8)
            b = rng.integers(-1000, 1000, (np_,), dtype=np.int32)
            acc = d.astype(np.int64) @ w_nat(w).T.astype(np.int64)
            return [d, w, b, _scale_for(np.abs(acc).max(axis=0))]

        def reference(x: list[np.ndarray]) -> np.ndarray:
            acc = x[0].astype(np.int64) @ w_nat(x[1]).T.astype(np.int64)
            return _requant_ref(acc + x[2], x[3])

        return KernelProgram(func, make_inputs, reference, (B, np_), "uint8", "NC", True)
    if k.op == "avgpool":
        cp = _ceil_to(C, 16)
        cc = cp // 16
        data = te.placeholder((B, cc, H, W, 16), "uint8", name="data")
        rh, rw = te.reduce_axis((0, H), "rh"), te.reduce_axis((0, W), "rw")
        s = te.compute((B, cc, 16), lambda b, c, v: te.sum(data[b, c, rh, rw, v].astype("int32"),
                                                             axis=[rh, rw]), name="pool_sum")
        q = topi.floor(topi.add(topi.multiply(topi.cast(s, "float32"), 1.0 / (H * W)), 0.5))
        out = topi.cast(topi.clip(q, 0.0, 255.0), "uint8")
        func = _finish([data, out], te)

        def reference(x: list[np.ndarray]) -> np.ndarray:
            sm = x[0].astype(np.int64).sum(axis=(2, 3)).astype(np.float32)
            return np.clip(np.floor(sm * np.float32(1.0 / (H * W)) + np.float32(0.5)), 0, 255)

        return KernelProgram(func, lambda rng: [rng.integers(0, 256, (B, cc, H, W, 16), dtype=np.uint8)],
                             reference, (B, cc, 16), "uint8", "NCHW16c", True)
    if k.op == "add":
        cp = _ceil_to(C, 16)
        cc = cp // 16
        shp = (B, cc, H, W, 16)
        a = te.placeholder(shp, "uint8", name="lhs")
        b = te.placeholder(shp, "uint8", name="rhs")
        q = topi.add(topi.multiply(topi.cast(a, "float32"), 0.625), topi.multiply(topi.cast(b, "float32"), 0.375))
        out = topi.cast(topi.clip(topi.floor(topi.add(q, 0.5)), 0.0, 255.0), "uint8")
        func = _finish([a, b, out], te)

        def reference(x: list[np.ndarray]) -> np.ndarray:
            qq = x[0].astype(np.float32) * np.float32(0.625) + x[1].astype(np.float32) * np.float32(0.375)
            return np.clip(np.floor(qq + np.float32(0.5)), 0, 255)

        return KernelProgram(func, lambda rng: [rng.integers(0, 256, shp, dtype=np.uint8),
                                                rng.integers(0, 256, shp, dtype=np.uint8)],
                             reference, shp, "uint8", "NCHW16c", True)
    raise ConfigError(f"Unknown op {k.op!r}")  # pragma: no cover


def check_output(prog: KernelProgram, got: np.ndarray, ref: np.ndarray) -> tuple[bool, float, str]:
    """Compare a kernel's output with its reference. Integers: at most 1 LSB off (rounding of x.5 in float32)
    on at most 0.1% of elements; floats: |err| <= 1e-3 * (1 + max|ref|)."""
    if tuple(got.shape) != tuple(ref.shape):
        return False, math.inf, f"output shape {tuple(got.shape)} != reference {tuple(ref.shape)}"
    diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    err = float(diff.max()) if diff.size else 0.0
    if prog.integer:
        frac = float((diff > 0).mean()) if diff.size else 0.0
        ok = err <= 1.0 and frac <= 1e-3
        return ok, err, "" if ok else f"output differs from the reference: max |err| {err:g}, {frac:.2%} differ"
    tol = 1e-3 * (1.0 + float(np.abs(ref).max()))
    ok = err <= tol
    return ok, err, "" if ok else f"output differs from the reference: max |err| {err:g} > tolerance {tol:g}"
