"""The dot-product depthwise program: bit for bit equal to the NumPy integer reference (on CPUs that run it)."""
from __future__ import annotations

import numpy as np
import pytest

from hao.latency import int8_ops as ops
from hao.latency.dw_dot import dw_weight_shape, is_hand_scheduled, pack_dw_weight, uses_dot_depthwise


def test_weight_packing_puts_4_taps_of_a_channel_side_by_side():
    rng = np.random.default_rng(0)
    w = rng.integers(-128, 128, (32, 1, 5, 5)).astype(np.int8)
    p = pack_dw_weight(w)
    assert p.shape == dw_weight_shape(32, 5) == (2, 5, 2, 16, 4)
    for c, kh, kw in [(0, 0, 0), (17, 3, 4), (31, 4, 2), (5, 2, 3)]:
        assert p[c // 16, kh, kw // 4, c % 16, kw % 4] == w[c, 0, kh, kw]
    assert not p[:, :, 1, :, 1:].any()      # taps 5..7 of the second quad are zero


def test_targets_without_vnni_and_vbmi_keep_the_plain_program():
    pytest.importorskip("tvm")
    assert not uses_dot_depthwise(None)
    assert not uses_dot_depthwise({"kind": "llvm", "mcpu": "znver3"})        # AVX2, no AVX-512
    assert not uses_dot_depthwise({"kind": "llvm", "mcpu": "skylake-avx512"})  # AVX-512 without VNNI
    assert uses_dot_depthwise({"kind": "llvm", "mcpu": "icelake-server"})
    assert uses_dot_depthwise({"kind": "llvm", "mcpu": "znver4", "num-cores": 2})


def _host_runs_it() -> bool:
    try:
        from tvm.target import codegen
    except ImportError:
        return False
    return uses_dot_depthwise({"kind": "llvm", "mcpu": str(codegen.llvm_get_system_cpu())})


@pytest.mark.skipif(not _host_runs_it(), reason="this CPU lacks AVX-512 VNNI + VBMI")
@pytest.mark.parametrize("c,h,k,s", [(16, 7, 3, 1), (32, 14, 5, 1), (48, 9, 7, 2), (64, 8, 3, 2), (16, 4, 7, 1),
                                     (32, 6, 5, 2)])
def test_equals_the_integer_reference_bit_for_bit(c, h, k, s):
    import tvm
    from tvm.target import codegen

    from hao.latency.dw_dot import dwconv_int8_dot

    p = k // 2
    func = dwconv_int8_dot(c, h, h, k, s, p)
    assert is_hand_scheduled(func)
    lib = tvm.compile(func, target={"kind": "llvm", "mcpu": str(codegen.llvm_get_system_cpu()), "num-cores": 2})
    rng = np.random.default_rng(c + h + k + s)
    x = rng.integers(0, 256, (1, c, h, h)).astype(np.uint8)
    x[0, 0] = 255                                   # extreme codes and weights
    w = rng.integers(-128, 128, (c, 1, k, k)).astype(np.int8)
    w[0] = -128
    acc = ops.conv_acc_np(x, w, s, p, 7, c)
    mult, shift = ops.dyadic(rng.uniform(100, 400, c) / (np.abs(acc).max(axis=(0, 2, 3)) + 1))
    bias = ops.rounding_bias(shift) + rng.integers(-2 ** 12, 2 ** 12, c) * mult.astype(np.int64)
    zp, zero, lo, hi = 7, 3, 3, 200
    ref = ops.dwconv_int8_np(x, w, bias, mult, shift, stride=s, pad=p, pad_value=zp, zero=zero, lo=lo, hi=hi)
    dev = tvm.cpu()
    oh = (h + 2 * p - k) // s + 1
    args = [tvm.runtime.tensor(a, dev) for a in (
        ops.to_nchwc(x, 16), pack_dw_weight(w), bias.reshape(-1, 16).astype(np.int64), mult.reshape(-1, 16),
        shift.reshape(-1, 16), np.array([zp, zero, lo, hi], np.int32), np.zeros((1, c // 16, oh, oh, 16), np.uint8))]
    lib["main"](*args)
    got = ops.from_nchwc(args[-1].numpy(), c)
    assert np.array_equal(got, ref)
    assert len(np.unique(got)) > 20                 # not a clipped constant


def test_rows_of_the_portable_program_are_counted_on_a_dot_target():
    pytest.importorskip("tvm")
    import pandas as pd

    from hao.latency.dw_dot import portable_depthwise_rows

    df = pd.DataFrame({"op": ["dwconv2d", "dwconv2d", "dwconv2d", "conv2d"], "w_bits": [8, 8, 32, 8],
                       "vnni": [False, True, False, False]})
    assert portable_depthwise_rows(df, {"kind": "llvm", "mcpu": "znver4"}) == 1
    assert portable_depthwise_rows(df, {"kind": "llvm", "mcpu": "znver3"}) == 0   # the portable program is right
