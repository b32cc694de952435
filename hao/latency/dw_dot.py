"""Depthwise int8 with the VNNI dot product: the int8 ``dwconv2d`` program on CPUs with AVX-512 VNNI and VBMI.

A depthwise layer has no channel reduction, so the dot-product instruction ``vpdpbusd`` (4 adjacent u8 × i8
products summed into each of 16 int32 lanes) has to sum over **taps** instead: each lane needs 4 taps of one
channel side by side, while NCHW16c stores 16 channels of one pixel side by side. A 64-byte load at pixel ``x``
holds pixels ``x..x+3`` × 16 channels; one ``vpermb`` (AVX-512 VBMI) transposes it in a register into 16
channels × 4 taps, and one ``vpdpbusd`` adds those 4 taps of all 16 channels to the accumulator. A row of
``K`` taps takes ``ceil(K/4)`` such steps (weights zero beyond ``K``), so a ``K × K`` window takes
``K·ceil(K/4)`` dot products where float32 takes ``K²`` FMAs (3 vs 9 for ``K = 3``, 14 vs 49 for ``K = 7``).

The program is written by hand (TVMScript; nothing for MetaSchedule to tune): the input is padded with its
zero point into a buffer wide enough for every 4-pixel load, then each thread computes rows of output pixels,
``X`` adjacent pixels at a time (independent accumulators, so consecutive dot products do not wait on each
other; the accumulators are single expressions, kept in registers), and requantizes them exactly like
:func:`hao.latency.int8_ops.dwconv_int8` (same arguments and the same integer arithmetic, so the same NumPy
reference holds bit for bit). Only the weight layout differs: ``[C/16, K, ceil(K/4), 16, 4]``
(:func:`pack_dw_weight`).

CPUs without VNNI + VBMI keep the plain program. Which one a table row or a deployed layer runs is decided by
the target (:func:`uses_dot_depthwise`), so a table's int8 depthwise rows and the networks compiled for its
target run the same program.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from hao._imports import lazy_import

__all__ = ["uses_dot_depthwise", "pack_dw_weight", "dw_weight_shape", "dwconv_int8_dot", "HAND_SCHEDULED",
           "is_hand_scheduled", "portable_depthwise_rows"]

#: PrimFunc attribute of programs written already scheduled (tuning skips them; they compile as written).
HAND_SCHEDULED = "hao.hand_scheduled"
#: LLVM features the program needs.
_NEEDS = ("avx512vnni", "avx512vbmi")


def uses_dot_depthwise(target: Any) -> bool:
    """Whether int8 depthwise layers compiled for ``target`` (an LLVM target dict, JSON string or
    ``tvm.target.Target``; ``None``: no) run this program: an LLVM x86 target with AVX-512 VNNI and VBMI."""
    if target is None:
        return False
    tvm = lazy_import("tvm")
    from tvm.target import codegen

    t = target if isinstance(target, tvm.target.Target) else tvm.target.Target(target)
    if t.kind.name != "llvm":
        return False
    feats = set(codegen.llvm_get_cpu_features(t))
    return all(f in feats for f in _NEEDS)


def is_hand_scheduled(func: Any) -> bool:
    """Whether a PrimFunc is one of hao's hand-scheduled programs (no tuning record needed)."""
    attrs = getattr(func, "attrs", None)
    return bool(attrs is not None and HAND_SCHEDULED in attrs and int(attrs[HAND_SCHEDULED]))


def dw_weight_shape(channels: int, k: int) -> tuple[int, int, int, int, int]:
    """``(C/16, K, ceil(K/4), 16, 4)`` for ``channels`` (a multiple of 16) and a ``k × k`` window."""
    return (channels // 16, k, -(-k // 4), 16, 4)


def pack_dw_weight(w: np.ndarray) -> np.ndarray:
    """int8 depthwise weights ``(C, 1, K, K)`` (C a multiple of 16) -> ``[C/16, K, ceil(K/4), 16, 4]``, taps
    beyond ``K`` zero."""
    c, _, k, _ = w.shape
    q = -(-k // 4)
    full = np.zeros((c, k, 4 * q), np.int8)
    full[:, :, :k] = w[:, 0]
    return full.reshape(c // 16, 16, k, q, 4).transpose(0, 2, 3, 1, 4).copy()


def _x_block(ow: int, cap: int = 8) -> int:
    return max(d for d in range(1, min(cap, ow) + 1) if ow % d == 0)


def dwconv_int8_dot(channels: int, h: int, w: int, k: int, stride: int, pad: int) -> Any:
    """The PrimFunc ``main(data, weight, bias, mult, shift, qp, out)`` of one depthwise layer: ``data`` u8
    ``(1, C/16, H, W, 16)``, ``weight`` i8 :func:`dw_weight_shape`, ``bias`` i64 / ``mult`` i32 / ``shift`` i32
    ``(C/16, 16)``, ``qp`` i32 ``[pad_value, zero, lo, hi]``, ``out`` u8 ``(1, C/16, OH, OW, 16)``."""
    lazy_import("tvm")
    from hao.latency._dw_dot_tir import build

    oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    func = build(channels // 16, h, w, k, stride, pad, oh, ow, -(-k // 4), _x_block(ow))
    return func.with_attr(HAND_SCHEDULED, 1)


def portable_depthwise_rows(df: Any, target: Any) -> int:
    """How many integer depthwise rows of a table (its DataFrame) were timed with the portable program although
    networks compiled for ``target`` run the dot-product one (rows without ``vpdpbusd``: ``vnni`` false). Such
    rows predict the wrong program; re-time them on the hardware:
    ``hao calibrate --hardware H --retime --space S --op dwconv2d``."""
    if not uses_dot_depthwise(target) or "vnni" not in df.columns:
        return 0
    rows = df[(df["op"] == "dwconv2d") & (df["w_bits"] <= 8)]
    vnni = rows["vnni"].astype(str).str.lower().isin(("true", "1", "1.0"))
    return int((~vnni).sum())
