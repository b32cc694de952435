"""The integer operators of hao's int8 pipeline, each twice: as a TVM TE program (what the table's int8 rows time
and what a deployed network runs) and as a NumPy reference (the ground truth both are checked against).

Integer-only, as in HAWQ-V3: activations are unsigned 8-bit codes on a per-tensor grid ``real = s·(q − z)``
(codes ``0..2**a_bits − 1``, so sub-8-bit activations are u8 codes with a smaller range); weights are signed
codes in ``int8`` with a per-output-channel scale; accumulation is ``int32``. Between layers a **dyadic
requantization** maps an accumulator to the next grid with an integer multiply and an arithmetic shift:

    r = (i64(acc) · M + bias) >> shift;   out = u8(clip(r + z_out, lo, hi))

with ``M`` an int32 in ``[2**30, 2**31)``, ``M · 2**-shift`` the real multiplier (:func:`dyadic`) and ``bias`` an
int64 already on the ``2**-shift`` scale that also holds the rounding constant ``2**(shift − 1)`` (round half up)
and the input's zero-point correction. A bias added *after* the multiply keeps its precision when one accumulator
step is many output steps (2-bit weights × 4-bit activations into an 8-bit grid: an int32 bias in accumulator
units would be rounded by up to 8 output steps). No float anywhere between the input's quantization and the
classifier's dequantization. ReLU / ReLU6 are the
clip bounds (``lo = z_out``; ``hi = z_out + round(6/s_out)`` for ReLU6).

Layouts are the table's: NCHW16c activations (``(1, C/16, H, W, 16)``; a layer whose input channels are not a
multiple of 16 reads ``NCHW{icb}c`` with ``icb`` = 8 or 4), conv weights pre-packed ``[OC/16, IC/icb, K, K, icb/4,
16, 4]`` (the form VNNI's ``vpdpbusd`` tensorizes correctly), depthwise weights ``[C/16, K, K, 16]`` (on CPUs
with AVX-512 VNNI + VBMI the depthwise layers run the hand-written program of :mod:`hao.latency.dw_dot` instead,
weights ``[C/16, K, ceil(K/4), 16, 4]``, same arguments otherwise), dense weights ``[N/16, K/4, 16, 4]``.
:mod:`hao.latency.programs` builds the table's kernels from these; :mod:`hao.deploy`
builds whole networks from them.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from hao.errors import ConfigError

__all__ = ["prim_func", "dyadic", "dyadic_pair", "rounding_bias", "conv_block", "requant_np",
           "conv_int8", "dwconv_int8", "dense_int8", "dense_logits", "avgpool_int8", "add_int8", "quantize_input",
           "conv_acc_np", "conv_int8_np", "dwconv_int8_np", "dense_acc_np", "dense_logits_np", "avgpool_int8_np",
           "add_int8_np", "quantize_input_np", "pack_conv_weight", "pack_dense_weight", "to_nchwc", "from_nchwc"]


# ---- scales -------------------------------------------------------------------------------------------------
def dyadic(m: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """``(M, shift)`` int32 arrays with ``M · 2**-shift ≈ m`` (relative error ≤ 2**-31), ``M`` in ``[2**30,
    2**31)`` and ``1 <= shift <= 62`` so that ``i64(acc) · M`` cannot overflow for any int32 ``acc``. A multiplier
    below ``2**-32`` keeps ``shift = 62`` and loses precision (``M`` may be 0); ``m`` must be finite, ``>= 0``
    and below ``2**29``."""
    m = np.atleast_1d(np.asarray(m, dtype=np.float64))
    if not np.all(np.isfinite(m)) or np.any(m < 0) or np.any(m >= 2.0 ** 29):
        bad = m[~((m >= 0) & (m < 2.0 ** 29))][:3]
        raise ConfigError(f"a requantization multiplier must be finite and in [0, 2**29), got {bad}"
                          " — a zero or non-finite activation range or scale; recalibrate the activations "
                          "(docs/deployment.md).")
    with np.errstate(divide="ignore"):
        e = np.where(m > 0, np.floor(np.log2(np.where(m > 0, m, 1.0))), -64)
    shift = np.clip(30 - e, 1, 62).astype(np.int64)
    big = np.round(m * np.exp2(shift.astype(np.float64)))
    over = big >= 2.0 ** 31                       # log2 rounding at a power of two
    shift = np.where(over & (shift > 1), shift - 1, shift)
    big = np.round(m * np.exp2(shift.astype(np.float64)))
    return np.minimum(big, 2 ** 31 - 1).astype(np.int32), shift.astype(np.int32)


def dyadic_pair(ma: float, mb: float) -> tuple[np.ndarray, np.ndarray]:
    """Two multipliers on one shift (the residual add): ``(array([M_a, M_b]), array([shift]))``."""
    big, shift = dyadic(max(ma, mb))
    s = int(shift[0])
    pair = np.round(np.array([ma, mb], np.float64) * 2.0 ** s)
    return np.minimum(pair, 2 ** 31 - 1).astype(np.int32), shift


def requant_np(acc: np.ndarray, bias: np.ndarray, mult: np.ndarray, shift: np.ndarray, zero: int, lo: int,
               hi: int) -> np.ndarray:
    """NumPy reference of the requantization; ``bias`` (int64) / ``mult`` / ``shift`` broadcast against ``acc``."""
    r = (acc.astype(np.int64) * mult.astype(np.int64) + bias.astype(np.int64)) >> shift.astype(np.int64)
    return np.clip(r + zero, lo, hi).astype(np.uint8)


def rounding_bias(shift: np.ndarray) -> np.ndarray:
    """The int64 bias of a requantization with no bias of its own: ``2**(shift − 1)`` (round half up)."""
    return np.left_shift(np.int64(1), shift.astype(np.int64) - 1)


# ---- layouts ------------------------------------------------------------------------------------------------
def _ceil_to(x: int, m: int) -> int:
    return -(-x // m) * m


def conv_block(c: int) -> int:
    """The channel block ``icb`` of a conv's input (16, else 8, else 4) for ``c`` input channels."""
    cp = _ceil_to(c, 4)
    return 16 if cp % 16 == 0 else (8 if cp % 8 == 0 else 4)


def to_nchwc(x: np.ndarray, block: int, fill: int = 0) -> np.ndarray:
    """(1, C, H, W) -> (1, Cp/block, H, W, block), channels padded with ``fill`` to a multiple of ``block``."""
    n, c, h, w = x.shape
    cp = _ceil_to(c, block)
    if cp != c:
        x = np.concatenate([x, np.full((n, cp - c, h, w), fill, x.dtype)], axis=1)
    return x.reshape(n, cp // block, block, h, w).transpose(0, 1, 3, 4, 2).copy()


def from_nchwc(x: np.ndarray, c: int) -> np.ndarray:
    """(1, C/b, H, W, b) -> (1, c, H, W) (padding channels dropped)."""
    n, cb, h, w, b = x.shape
    return x.transpose(0, 1, 4, 2, 3).reshape(n, cb * b, h, w)[:, :c]


def pack_conv_weight(w: np.ndarray) -> np.ndarray:
    """int8 OIHW ``(O, I, K, K)`` -> ``[Op/16, Ip/icb, K, K, icb/4, 16, 4]`` (zero padded)."""
    o, i, k, _ = w.shape
    icb, ip, op = conv_block(i), _ceil_to(i, 4), _ceil_to(o, 16)
    full = np.zeros((op, ip, k, k), np.int8)
    full[:o, :i] = w
    return full.reshape(op // 16, 16, ip // icb, icb // 4, 4, k, k).transpose(0, 2, 5, 6, 3, 1, 4).copy()


def pack_dense_weight(w: np.ndarray) -> np.ndarray:
    """int8 ``(N, K)`` -> ``[Np/16, Kp/4, 16, 4]`` (zero padded)."""
    n, k = w.shape
    full = np.zeros((_ceil_to(n, 16), _ceil_to(k, 4)), np.int8)
    full[:n, :k] = w
    return full.reshape(full.shape[0] // 16, 16, full.shape[1] // 4, 4).transpose(0, 2, 1, 3).copy()


# ---- TE programs --------------------------------------------------------------------------------------------
def _te() -> tuple[Any, Any, Any]:
    from hao._imports import lazy_import

    tvm = lazy_import("tvm")
    from tvm import te, topi

    return tvm, te, topi


def _clip_u8(r: Any, qp: Any, lo_i: int, hi_i: int) -> Any:
    """``u8(clip(r + zero, lo, hi))`` for an int64 ``r``, with zero, lo, hi at positions ``lo_i - 1``, ``lo_i``,
    ``hi_i`` of the int32 tensor ``qp``."""
    tvm, _, _ = _te()
    i64 = "int64"
    r = r + qp[lo_i - 1].astype(i64)
    return tvm.tirx.max(tvm.tirx.min(r, qp[hi_i].astype(i64)), qp[lo_i].astype(i64)).astype("uint8")


def _requant_te(acc: Any, bias: Any, mult: Any, shift: Any, qp: Any, name: str) -> Any:
    """acc (1, C/16, H, W, 16) or (1, N) int32; bias (int64) / mult / shift (int32) per channel, shaped (C/16, 16)
    or (N,); ``qp`` = [pad_value, zero, lo, hi] (int32)."""
    _, te, _ = _te()

    def f(*idx: Any) -> Any:
        c = (idx[1], idx[-1]) if len(idx) == 5 else (idx[1],)
        r = (acc[idx].astype("int64") * mult[c].astype("int64") + bias[c]) >> shift[c].astype("int64")
        return _clip_u8(r, qp, 2, 3)

    return te.compute(acc.shape, f, name=name)


def _pad_te(data: Any, pad: int, value: Any) -> Any:
    """Spatial zero-point padding of NCHWc data; ``value`` a u8 expression."""
    tvm, te, _ = _te()
    b, cc, h, w, v = (int(s) for s in data.shape)

    def f(n: Any, c: Any, y: Any, x: Any, i: Any) -> Any:
        inside = tvm.tirx.all(y >= pad, y < h + pad, x >= pad, x < w + pad)
        return tvm.tirx.if_then_else(inside, data[n, c, y - pad, x - pad, i], value)

    return te.compute((b, cc, h + 2 * pad, w + 2 * pad, v), f, name="pad")


def conv_int8(data: Any, weight: Any, bias: Any, mult: Any, shift: Any, qp: Any, *, stride: int, pad: int) -> Any:
    """u8 NCHW{icb}c data × packed i8 weight -> i32 (``topi.nn.conv2d_NCHWc_int8``), requantized to u8 NCHW16c.

    Padding uses the input's zero point ``qp[0]``, so a padded tap is a real zero. Zero points and clip bounds are
    runtime arguments (``qp`` = [pad_value, zero, lo, hi]), so every layer of one shape is one program: the
    table kernel's, whose tuned schedule it then runs."""
    _, _, topi = _te()
    icb = int(data.shape[-1])
    if pad:
        data = _pad_te(data, pad, qp[0].astype("uint8"))
    acc = topi.nn.conv2d_NCHWc_int8(data, weight, (stride, stride), (0, 0), (1, 1), f"NCHW{icb}c", "NCHW16c",
                                    "int32")
    return _requant_te(acc, bias, mult, shift, qp, "requant")


def dwconv_int8(data: Any, weight: Any, bias: Any, mult: Any, shift: Any, qp: Any, *, stride: int,
                pad: int) -> Any:
    """Depthwise u8 NCHW16c × i8 ``[C/16, K, K, 16]`` -> i32 (plain code: no dot product to tensorize),
    requantized; ``qp`` as in :func:`conv_int8`."""
    _, te, _ = _te()
    b, cc, h, w, _ = (int(s) for s in data.shape)
    k = int(weight.shape[1])
    oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    padded = _pad_te(data, pad, qp[0].astype("uint8")) if pad else data
    rh, rw = te.reduce_axis((0, k), "rh"), te.reduce_axis((0, k), "rw")
    acc = te.compute((b, cc, oh, ow, 16), lambda n, c, y, x, v: te.sum(
        padded[n, c, y * stride + rh, x * stride + rw, v].astype("int32") * weight[c, rh, rw, v].astype("int32"),
        axis=[rh, rw]), name="dw_acc")
    return _requant_te(acc, bias, mult, shift, qp, "requant")


def _dense_acc_te(data: Any, weight: Any) -> Any:
    _, te, _ = _te()
    b, kp = (int(s) for s in data.shape)
    npad = int(weight.shape[0]) * 16
    r = te.reduce_axis((0, kp), "k")
    return te.compute((b, npad), lambda i, n: te.sum(
        data[i, r].astype("int32") * weight[n // 16, r // 4, n % 16, r % 4].astype("int32"), axis=r),
        name="dense_acc")


def dense_int8(data: Any, weight: Any, bias: Any, mult: Any, shift: Any, qp: Any) -> Any:
    """u8 ``(1, Kp)`` × i8 ``[N/16, K/4, 16, 4]`` -> i32, requantized to u8 (``bias`` int64, as in the module
    docstring; ``qp`` as in :func:`conv_int8`)."""
    return _requant_te(_dense_acc_te(data, weight), bias, mult, shift, qp, "requant")


def dense_logits(data: Any, weight: Any, dequant: Any, bias: Any) -> Any:
    """The classifier: u8 × i8 -> i32, dequantized to float32 logits ``f32(acc) · dequant + bias`` (float32
    ``(Np,)`` each) — the only float arithmetic after the input's quantization."""
    _, te, _ = _te()
    acc = _dense_acc_te(data, weight)
    return te.compute(acc.shape, lambda i, n: acc[i, n].astype("float32") * dequant[n] + bias[n], name="dequant")


def avgpool_int8(data: Any, mult: Any, shift: Any, qp: Any) -> Any:
    """Global average pool of u8 NCHW16c: ``Σ (q − z_in)`` requantized (``M ≈ s_in / (H·W·s_out)``) to u8
    ``(1, C/16, 16)``; ``mult``/``shift`` are (1,) (one scale per tensor); ``qp`` = [in_zero, zero, lo, hi]."""
    _, te, _ = _te()
    b, cc, h, w, _ = (int(s) for s in data.shape)
    rh, rw = te.reduce_axis((0, h), "rh"), te.reduce_axis((0, w), "rw")
    s = te.compute((b, cc, 16), lambda n, c, v: te.sum(data[n, c, rh, rw, v].astype("int32"), axis=[rh, rw]),
                   name="pool_sum")
    i64 = "int64"

    def f(n: Any, c: Any, v: Any) -> Any:
        sh = shift[0].astype(i64)
        acc = s[n, c, v].astype(i64) - qp[0].astype(i64) * (h * w)
        r = (acc * mult[0].astype(i64) + (te.const(1, i64) << (sh - 1))) >> sh
        return _clip_u8(r, qp, 2, 3)

    return te.compute((b, cc, 16), f, name="pool_requant")


def add_int8(a: Any, b: Any, mult: Any, shift: Any, qp: Any) -> Any:
    """Residual add of two u8 NCHW16c tensors on their own grids into a third: ``((a − z_a)·M_a + (b − z_b)·M_b
    + 2**(shift−1)) >> shift``; ``mult`` (2,) = (M_a, M_b), ``shift`` (1,) (one shift), ``qp`` = [z_a, z_b,
    zero, lo, hi]."""
    _, te, _ = _te()
    i64 = "int64"

    def f(*idx: Any) -> Any:
        sh = shift[0].astype(i64)
        va = (a[idx].astype(i64) - qp[0].astype(i64)) * mult[0].astype(i64)
        vb = (b[idx].astype(i64) - qp[1].astype(i64)) * mult[1].astype(i64)
        r = (va + vb + (te.const(1, i64) << (sh - 1))) >> sh
        return _clip_u8(r, qp, 3, 4)

    return te.compute(a.shape, f, name="add_requant")


def quantize_input(x: Any, *, scale: float, zero: int, levels: int, block: int) -> Any:
    """float32 NCHW image -> u8 NCHW{block}c codes ``clip(nearbyint(x / scale) + zero, 0, levels)`` (round half
    to even on the float32 quotient, as the fake-quant model rounds); padded channels hold ``zero``."""
    tvm, te, _ = _te()
    _, c, h, w = (int(s) for s in x.shape)
    cp = _ceil_to(c, block)
    f32 = "float32"

    def f(n: Any, cb: Any, y: Any, xx: Any, v: Any) -> Any:
        ch = cb * block + v
        val = x[n, tvm.tirx.min(ch, c - 1), y, xx] / tvm.tirx.const(scale, f32)
        q = tvm.tirx.nearbyint(val) + tvm.tirx.const(float(zero), f32)
        q = tvm.tirx.max(tvm.tirx.min(q, tvm.tirx.const(float(levels), f32)), tvm.tirx.const(0.0, f32))
        return tvm.tirx.Select(ch < c, q, tvm.tirx.const(float(zero), f32)).astype("uint8")

    return te.compute((1, cp // block, h, w, block), f, name="quantize_input")


def prim_func(fn: Any, args: list[tuple[tuple[int, ...], str]], **kwargs: Any) -> Any:
    """The PrimFunc of one operator exactly as a Relax network emits it (``BlockBuilder.emit_te`` of ``fn`` on
    tensors of these (shape, dtype)), named ``main``: the table's kernel and the network's layer are then one
    program, structurally equal, so a schedule tuned for one is found for the other."""
    from hao._imports import lazy_import

    lazy_import("tvm")
    from tvm import relax

    bb = relax.BlockBuilder()
    vs = [relax.Var(f"a{i}", relax.TensorType(shape, dtype)) for i, (shape, dtype) in enumerate(args)]
    with bb.function("main", vs):
        with bb.dataflow():
            out = bb.emit_output(bb.emit_te(fn, *vs, primfunc_name_hint="kernel", **kwargs))
        bb.emit_func_output(out)
    mod = bb.get()
    func = mod[mod.get_global_var("kernel")]
    return func.with_attr("global_symbol", "main")


# ---- NumPy references (NCHW, int64 arithmetic) --------------------------------------------------------------
def conv_acc_np(x: np.ndarray, w: np.ndarray, stride: int, pad: int, pad_value: int, groups: int) -> np.ndarray:
    """Exact integer convolution of u8 (1, C, H, W) codes with int8 (O, C/groups, K, K) weights (int64)."""
    xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=pad_value)
    o, cg, k, _ = w.shape
    n, c, hp, wp = xp.shape
    oh, ow = (hp - k) // stride + 1, (wp - k) // stride + 1
    cols = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::stride, ::stride][:, :, :oh, :ow]
    wl = w.astype(np.int64)
    if groups == 1:
        return np.einsum("nchwij,ocij->nohw", cols, wl, optimize=True)
    return np.einsum("nchwij,cij->nchw", cols, wl[:, 0], optimize=True)


def conv_int8_np(x: np.ndarray, w: np.ndarray, bias: np.ndarray, mult: np.ndarray, shift: np.ndarray, *,
                 stride: int, pad: int, pad_value: int, zero: int, lo: int, hi: int) -> np.ndarray:
    acc = conv_acc_np(x, w, stride, pad, pad_value, 1)
    return requant_np(acc, bias.reshape(1, -1, 1, 1), mult.reshape(1, -1, 1, 1), shift.reshape(1, -1, 1, 1), zero,
                      lo, hi)


def dwconv_int8_np(x: np.ndarray, w: np.ndarray, bias: np.ndarray, mult: np.ndarray, shift: np.ndarray, *,
                   stride: int, pad: int, pad_value: int, zero: int, lo: int, hi: int) -> np.ndarray:
    """``w``: (C, 1, K, K)."""
    acc = conv_acc_np(x, w, stride, pad, pad_value, x.shape[1])
    return requant_np(acc, bias.reshape(1, -1, 1, 1), mult.reshape(1, -1, 1, 1), shift.reshape(1, -1, 1, 1), zero,
                      lo, hi)


def dense_acc_np(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return x.astype(np.int64) @ w.astype(np.int64).T


def dense_logits_np(x: np.ndarray, w: np.ndarray, dequant: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """The classifier: ``f32(acc) · dequant + bias`` in float32, as the TE program computes it."""
    return dense_acc_np(x, w).astype(np.float32) * dequant.astype(np.float32) + bias.astype(np.float32)


def avgpool_int8_np(x: np.ndarray, mult: np.ndarray, shift: np.ndarray, *, in_zero: int, zero: int, lo: int,
                    hi: int) -> np.ndarray:
    s = x.astype(np.int64).sum(axis=(2, 3)) - in_zero * x.shape[2] * x.shape[3]
    return requant_np(s, rounding_bias(shift), mult, shift, zero, lo, hi)


def add_int8_np(a: np.ndarray, b: np.ndarray, mult: np.ndarray, shift: np.ndarray, *, zero_a: int, zero_b: int,
                zero: int, lo: int, hi: int) -> np.ndarray:
    sh = np.int64(shift.reshape(-1)[0])
    v = (a.astype(np.int64) - zero_a) * np.int64(mult[0]) + (b.astype(np.int64) - zero_b) * np.int64(mult[1])
    return np.clip(((v + (np.int64(1) << (sh - 1))) >> sh) + zero, lo, hi).astype(np.uint8)


def quantize_input_np(x: np.ndarray, *, scale: float, zero: int, levels: int) -> np.ndarray:
    q = np.rint(x.astype(np.float32) / np.float32(scale)) + np.float32(zero)
    return np.clip(q, 0, levels).astype(np.uint8)

