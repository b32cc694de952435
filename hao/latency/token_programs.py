"""TVM programs of the transformer (token) kernels, with their inputs and NumPy references.

A token kernel works on ``in_h`` tokens (``in_w = 1``, batch 1 per image; ``batch`` images are stacked along the
tokens). Programs (TE / topi; ``hao.latency.programs`` dispatches here):

* ``linear`` float32 — the ``(tokens, in) × (in, out)`` matmul plus bias, as Relax makes it of a PyTorch
  ``Linear`` (:func:`relax_task`: the very task a compiled network runs, so the network finds this row's
  schedule in the table's database instead of tuning its own); **int8** — :func:`hao.latency.int8_ops.dense_int8`
  over the token rows: u8 activations × i8 weights packed ``[out/16, in/4, 16, 4]`` → i32, integer-only dyadic
  requantization to u8 (exact: bit for bit against NumPy).
  Sub-8-bit weights or activations run the int8 program, as the convolutions do;
* ``bmm`` float32 — ``topi.nn.batch_matmul`` of ``(heads, tokens, in/heads)`` by ``(heads, in/heads, out/heads)``
  (attention's ``Q Kᵀ`` and ``A V``; the space runs them in float32);
* ``softmax`` — ``topi.nn.softmax`` over the last axis of ``(heads, tokens, in/heads)``;
* ``layernorm`` — LayerNorm over the channels of ``(tokens, channels)`` with scale and shift (Relax's task too);
* ``split_heads`` / ``split_heads_t`` / ``merge_heads`` — attention's layout copies, ``(tokens, C)`` to
  ``(heads, tokens, C/heads)``, to ``(heads, C/heads, tokens)``, and back: a compiled network runs each as a
  kernel of its own (Relax does not fuse a transpose into the matmul before or after it);
* ``gelu`` — ``0.5 x (1 + erf(x / √2))`` element-wise (PyTorch's default GELU) with ``topi.fast_erf``
  (:func:`gelu_te`), the program compiled networks run too (:func:`hao.latency.compiler.legalize`).

Why ``fast_erf``: TVM lowers ``erf`` to a scalar call of libm's ``erff``, whose cost depends on the data — on
``rocketlake``, 1.7 ns per element for |x| ≲ 0.5, 6.4 ns at |x| ~ 4 — so a row timed on one input distribution
mispriced networks run on another (the table's GELU rows were 2.8× the networks' own). ``fast_erf`` is a clamped
rational polynomial: vectorised, the same cost for every input (0.5 ns per element), within 1e-6 of ``erf``.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from hao._imports import lazy_import
from hao.errors import ConfigError
from hao.kernel import LAYOUT_OPS, KernelSpec

__all__ = ["token_program", "gelu_te", "relax_task"]


def _rows(k: KernelSpec) -> int:
    return k.batch * k.in_h * k.in_w


def gelu_te(x: Any) -> Any:
    """GELU of a TE tensor, ``x · (0.5 + 0.5 · erf(x / √2))`` with ``topi.fast_erf`` — the one GELU program of
    hao's tables and compiled networks."""
    from tvm import te, topi

    scaled = te.compute(x.shape, lambda *i: x(*i) * np.float32(1.0 / math.sqrt(2.0)), name="gelu_scaled")
    erf = topi.fast_erf(scaled)
    return te.compute(x.shape, lambda *i: x(*i) * (np.float32(0.5) + np.float32(0.5) * erf(*i)), name="gelu")


def relax_task(inputs: list[tuple[tuple[int, ...], str]], body: Any, layout_free: tuple[int, ...] = ()) -> Any:
    """The one fused task (a PrimFunc named ``main``) that Relax's pipeline — :func:`hao.latency.compiler.legalize`,
    then fusion — makes of ``body(*inputs)``, with the argument positions ``layout_free`` marked as weights (a
    compiled network's constants are). Equal to the task of the same op in a compiled network, so both share one
    record of the tuning database."""
    import tvm
    from tvm import relax
    from tvm.script import relax as R  # noqa: N812

    from hao.latency.compiler import legalize

    bb = relax.BlockBuilder()
    args = [relax.Var(f"arg{i}", R.Tensor(shape, dtype)) for i, (shape, dtype) in enumerate(inputs)]
    with bb.function("main", args):
        with bb.dataflow():
            out = bb.emit_output(body(*args))
        bb.emit_func_output(out)
    mod = relax.get_pipeline("zero")(legalize(bb.get()))
    funcs = [f for f in mod.functions.values() if isinstance(f, tvm.tirx.PrimFunc)]
    if len(funcs) != 1:  # pragma: no cover - a programming error in the caller's body
        raise ConfigError(f"relax_task: expected one fused task, Relax made {len(funcs)}.")
    func = funcs[0].with_attr("global_symbol", "main")
    return func.with_attr("layout_free_buffers", list(layout_free)) if layout_free else func


def token_program(k: KernelSpec, integer: bool) -> Any:
    """The :class:`~hao.latency.programs.KernelProgram` of token kernel ``k`` (``integer``: the int8 program)."""
    if integer:
        if k.op != "linear":
            raise ConfigError(f"{k.short()}: only 'linear' token kernels have an int8 program; attention's matmuls, "
                              "softmax, LayerNorm and GELU run in float32 (w_bits = a_bits = 32).")
        return _linear_int8(k)
    return _fp32(k)


def _fp32(k: KernelSpec) -> Any:
    lazy_import("tvm")
    from tvm import te, topi

    from hao.latency.programs import KernelProgram, _finish

    f32 = "float32"
    T, C, O, G = _rows(k), k.in_channels, k.out_channels, k.groups  # noqa: N806, E741
    if k.op == "linear":
        from tvm import relax

        func = relax_task([((T, C), f32), ((C, O), f32), ((O,), f32)],
                          lambda x, w, b: relax.op.add(b, relax.op.matmul(x, w)), layout_free=(1, 2))

        def make(rng: np.random.Generator) -> list[np.ndarray]:
            return [rng.standard_normal((T, C), dtype=np.float32),
                    rng.standard_normal((C, O), dtype=np.float32) * 0.1, rng.standard_normal(O, dtype=np.float32)]

        return KernelProgram(func, make, lambda x: x[0].astype(np.float64) @ x[1].astype(np.float64) + x[2], (T, O),
                             f32, "NC", False)
    if k.op == "bmm":
        a = te.placeholder((G, T, C // G), f32, "lhs")
        b = te.placeholder((G, C // G, O // G), f32, "rhs")
        out = topi.nn.batch_matmul(a, b, out_dtype=f32, transpose_b=False)

        def make(rng: np.random.Generator) -> list[np.ndarray]:
            return [rng.standard_normal((G, T, C // G), dtype=np.float32),
                    rng.standard_normal((G, C // G, O // G), dtype=np.float32)]

        return KernelProgram(_finish([a, b, out], te), make, lambda x: x[0].astype(np.float64) @ x[1],
                             (G, T, O // G), f32, "GTC", False)
    if k.op == "softmax":
        x = te.placeholder((G, T, C // G), f32, "data")
        out = topi.nn.softmax(x, axis=-1)

        def ref(xs: list[np.ndarray]) -> np.ndarray:
            z = xs[0].astype(np.float64)
            e = np.exp(z - z.max(axis=-1, keepdims=True))
            return e / e.sum(axis=-1, keepdims=True)

        return KernelProgram(_finish([x, out], te), lambda rng: [rng.standard_normal((G, T, C // G),
                                                                                     dtype=np.float32) * 3],
                             ref, (G, T, C // G), f32, "GTC", False)
    if k.op == "layernorm":
        from tvm import relax

        func = relax_task([((T, C), f32), ((C,), f32), ((C,), f32)],
                          lambda x, g, b: relax.op.nn.layer_norm(x, g, b, axes=[-1], epsilon=1e-5), layout_free=(1, 2))

        def ref(xs: list[np.ndarray]) -> np.ndarray:
            z = xs[0].astype(np.float64)
            mu, var = z.mean(-1, keepdims=True), z.var(-1, keepdims=True)
            return (z - mu) / np.sqrt(var + 1e-5) * xs[1] + xs[2]

        def make(rng: np.random.Generator) -> list[np.ndarray]:
            return [rng.standard_normal((T, C), dtype=np.float32) * 2 + 1, rng.standard_normal(C, dtype=np.float32),
                    rng.standard_normal(C, dtype=np.float32)]

        return KernelProgram(func, make, ref, (T, C), f32, "NC", False)
    if k.op in LAYOUT_OPS:
        return _layout(k, te)
    if k.op == "gelu":
        x = te.placeholder((T, C), f32, "data")
        out = gelu_te(x)

        def ref(xs: list[np.ndarray]) -> np.ndarray:
            from scipy.special import erf

            z = xs[0].astype(np.float64)
            return 0.5 * z * (1.0 + erf(z / math.sqrt(2.0)))

        return KernelProgram(_finish([x, out], te), lambda rng: [rng.standard_normal((T, C), dtype=np.float32) * 2],
                             ref, (T, C), f32, "NC", False)
    raise ConfigError(f"{k.short()} is not a token kernel.")  # pragma: no cover - the dispatcher checks


def _layout(k: KernelSpec, te: Any) -> Any:
    from hao.latency.programs import KernelProgram, _finish

    T, C, G = _rows(k), k.in_channels, k.groups  # noqa: N806
    D = C // G  # noqa: N806
    if k.op == "merge_heads":
        x = te.placeholder((G, T, D), "float32", "data")
        out = te.compute((T, C), lambda t, c: x[c // D, t, c % D], name="merge_heads")
        return KernelProgram(_finish([x, out], te), lambda rng: [rng.standard_normal((G, T, D), dtype=np.float32)],
                             lambda xs: xs[0].transpose(1, 0, 2).reshape(T, C), (T, C), "float32", "NC", False)
    x = te.placeholder((T, C), "float32", "data")
    if k.op == "split_heads":
        out = te.compute((G, T, D), lambda g, t, d: x[t, g * D + d], name="split_heads")
        ref, shape = (lambda xs: xs[0].reshape(T, G, D).transpose(1, 0, 2)), (G, T, D)
    else:
        out = te.compute((G, D, T), lambda g, d, t: x[t, g * D + d], name="split_heads_t")
        ref, shape = (lambda xs: xs[0].reshape(T, G, D).transpose(1, 2, 0)), (G, D, T)
    return KernelProgram(_finish([x, out], te), lambda rng: [rng.standard_normal((T, C), dtype=np.float32)],
                         ref, shape, "float32", "GTC", False)


def _linear_int8(k: KernelSpec) -> Any:
    from hao.latency import int8_ops as ops
    from hao.latency.programs import KernelProgram, _ceil_to

    T, C, O = _rows(k), k.in_channels, k.out_channels  # noqa: N806, E741
    kp, np_ = _ceil_to(C, 4), _ceil_to(O, 16)
    qp = np.array([0, 0, 0, 255], np.int32)
    func = ops.prim_func(ops.dense_int8, [((T, kp), "uint8"), ((np_ // 16, kp // 4, 16, 4), "int8"),
                                          ((np_,), "int64"), ((np_,), "int32"), ((np_,), "int32"), ((4,), "int32")])

    def w_nat(w: np.ndarray) -> np.ndarray:
        return w.transpose(0, 2, 1, 3).reshape(np_, kp)

    def make(rng: np.random.Generator) -> list[np.ndarray]:
        d = rng.integers(0, 256, (T, kp), dtype=np.uint8)
        w = rng.integers(-128, 128, (np_ // 16, kp // 4, 16, 4), dtype=np.int8)
        acc = d.astype(np.int64) @ w_nat(w).T.astype(np.int64)
        mult, shift = ops.dyadic(200.0 / (np.abs(acc).max(axis=0).astype(np.float64) + 1.0))
        bias = rng.integers(-1000, 1000, np_) * mult.astype(np.int64) + ops.rounding_bias(shift)
        return [d, w, bias.astype(np.int64), mult.astype(np.int32), shift.astype(np.int32), qp]

    def ref(x: list[np.ndarray]) -> np.ndarray:
        acc = x[0].astype(np.int64) @ w_nat(x[1]).T.astype(np.int64)
        return ops.requant_np(acc, x[2], x[3], x[4], zero=int(x[5][1]), lo=int(x[5][2]), hi=int(x[5][3]))

    return KernelProgram(func, make, ref, (T, np_), "uint8", "NC", True)
