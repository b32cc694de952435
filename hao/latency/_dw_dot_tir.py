"""TVMScript of the dot-product depthwise program (:mod:`hao.latency.dw_dot`); imported once tvm is known to be
importable."""
# flake8: noqa  (TVMScript dtype annotations)
from __future__ import annotations

from typing import Any

from tvm import tirx
from tvm.script import tirx as T

_PERMVAR = "llvm.x86.avx512.permvar.qi.512"
_VPDPBUSD = "llvm.x86.avx512.vpdpbusd.512"


def build(cb: int, h: int, w: int, k: int, s: int, p: int, oh: int, ow: int, q: int, xb: int) -> Any:
    """The PrimFunc for ``cb`` channel blocks, an ``h × w`` input, a ``k × k`` window, stride ``s``, padding
    ``p``; ``q = ceil(k/4)`` dot products per window row, ``xb`` output pixels per inner block."""
    hp = h + 2 * p
    wp = max(w + 2 * p, (ow - 1) * s + 4 * q)     # every 4-pixel load stays inside the padded buffer
    nx = ow // xb

    def acc(pad: Any, weight: Any, row: Any, bx: Any, xi: Any) -> Any:
        """The int32x16 accumulator of output pixel ``bx·xb + xi`` of output row ``row`` (= c·oh + y): one
        expression (a chain of vpdpbusd), so it lives in a register."""
        c, y = row // oh, row % oh
        lanes = tirx.Ramp(tirx.const(0, "int32"), tirx.const(1, "int32"), 64)
        transpose = ((lanes % 4) * 16 + lanes // 4).astype("int8x64")   # [pixel][channel] -> [channel][pixel]
        a = tirx.Broadcast(tirx.const(0, "int32"), 16)
        for kh in range(k):
            for j in range(q):
                quad = pad.vload([c, y * s + kh, (bx * xb + xi) * s + 4 * j, 0], "uint8x64")
                taps = tirx.call_llvm_pure_intrin("int8x64", _PERMVAR, tirx.reinterpret("int8x64", quad), transpose)
                a = tirx.call_llvm_pure_intrin("int32x16", _VPDPBUSD, a, taps,
                                               weight.vload([c, kh, j, 0, 0], "int8x64"))
        return a

    @T.prim_func(s_tir=True)
    def main(data: T.Buffer((1, cb, h, w, 16), "uint8"), weight: T.Buffer((cb, k, q, 16, 4), "int8"),
             bias: T.Buffer((cb, 16), "int64"), mult: T.Buffer((cb, 16), "int32"),
             shift: T.Buffer((cb, 16), "int32"), qp: T.Buffer((4,), "int32"),
             out: T.Buffer((1, cb, oh, ow, 16), "uint8")):
        T.func_attr({"global_symbol": "main", "tir.noalias": True})
        pad = T.alloc_buffer((cb, hp, wp, 16), "uint8")
        for cy in T.parallel(cb * hp):
            for x in range(wp):
                for v in T.vectorized(16):
                    pad[cy // hp, cy % hp, x, v] = T.if_then_else(
                        p <= cy % hp and cy % hp < h + p and p <= x and x < w + p,
                        data[0, cy // hp, cy % hp - p, x - p, v], T.Cast("uint8", qp[0]))
        for row in T.parallel(cb * oh):
            for bx in range(nx):
                for xi in T.unroll(xb):
                    out[0, row // oh, row % oh, bx * xb + xi, T.ramp(0, 1, 16)] = T.Cast("uint8x16", T.max(T.min(
                        T.shift_right(T.Cast("int64x16", acc(pad, weight, row, bx, xi))
                                      * T.Cast("int64x16", mult.vload([row // oh, 0], "int32x16"))
                                      + bias.vload([row // oh, 0], "int64x16"),
                                      T.Cast("int64x16", shift.vload([row // oh, 0], "int32x16")))
                        + T.Cast("int64x16", T.broadcast(qp[1], 16)),
                        T.Cast("int64x16", T.broadcast(qp[3], 16))), T.Cast("int64x16", T.broadcast(qp[2], 16))))
    return main
