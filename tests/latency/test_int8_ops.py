"""The int8 operators: dyadic multipliers, NumPy references against exact arithmetic, and every table int8
program (untuned TVM build) equal to its NumPy reference bit for bit."""
from __future__ import annotations

import numpy as np
import pytest

from hao.errors import ConfigError
from hao.kernel import KernelSpec
from hao.latency import int8_ops as ops


def test_dyadic_is_accurate_and_in_range():
    m = np.concatenate([np.geomspace(1e-9, 1e6, 200), [2.0 ** -5, 1.0, 0.5, 3.0]])
    M, sh = ops.dyadic(m)
    assert M.dtype == np.int32 and sh.dtype == np.int32
    assert np.all((sh >= 1) & (sh <= 62))
    approx = M.astype(np.float64) * np.exp2(-sh.astype(np.float64))
    ok = m >= 2.0 ** -32
    assert np.all(np.abs(approx[ok] / m[ok] - 1) <= 2.0 ** -30)
    assert np.all(M[ok] >= 2 ** 30)
    with pytest.raises(ConfigError, match="requantization multiplier"):
        ops.dyadic(np.array([1.0, np.nan]))
    with pytest.raises(ConfigError):
        ops.dyadic(-1.0)


def test_requant_rounds_half_up_exactly():
    # multiplier 1/4 exactly: acc = 2 -> 0.5 -> 1 (half up); acc = -2 -> -0.5 -> 0
    M, sh = ops.dyadic(0.25)
    acc = np.array([-6, -2, -1, 0, 1, 2, 6, 1000])
    got = ops.requant_np(acc, ops.rounding_bias(sh), M, sh, 10, 0, 255)
    assert got.tolist() == np.minimum(np.floor(acc / 4 + 0.5) + 10, 255).astype(int).tolist()


def test_conv_reference_is_exact_integer_convolution():
    import torch

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (1, 8, 7, 7), dtype=np.uint8)
    w = rng.integers(-127, 128, (12, 8, 3, 3), dtype=np.int8)
    got = ops.conv_acc_np(x, w, 2, 1, 5, 1)
    xp = torch.nn.functional.pad(torch.from_numpy(x.astype(np.float64)), (1, 1, 1, 1), value=5.0)
    ref = torch.nn.functional.conv2d(xp, torch.from_numpy(w.astype(np.float64)), stride=2).numpy()
    assert np.array_equal(got, ref.astype(np.int64))
    wd = rng.integers(-127, 128, (8, 1, 5, 5), dtype=np.int8)
    got = ops.conv_acc_np(x, wd, 1, 2, 0, 8)
    ref = torch.nn.functional.conv2d(torch.from_numpy(x.astype(np.float64)), torch.from_numpy(wd.astype(np.float64)),
                                     padding=2, groups=8).numpy()
    assert np.array_equal(got, ref.astype(np.int64))


def test_layout_round_trips():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (1, 24, 3, 5), dtype=np.uint8)
    assert np.array_equal(ops.from_nchwc(ops.to_nchwc(x, 16, fill=7), 24), x)
    assert ops.to_nchwc(x, 16, fill=7)[0, 1, :, :, 8:].min() == 7
    assert [ops.conv_block(c) for c in (1, 4, 8, 24, 32, 40)] == [4, 4, 8, 8, 16, 8]


tvm = pytest.importorskip("tvm", reason="apache-tvm is not installed")

KERNELS = [KernelSpec("conv2d", 1, 16, 12, 12, 3, 1, 1, 8, 8), KernelSpec("conv2d", 24, 40, 9, 9, 1, 2, 1, 4, 8),
           KernelSpec("conv2d", 32, 16, 6, 6, 3, 2, 1, 2, 4), KernelSpec("dwconv2d", 48, 48, 9, 9, 5, 2, 48, 8, 4),
           KernelSpec("dense", 32, 10, 1, 1, 1, 1, 1, 8, 8), KernelSpec("avgpool", 32, 32, 5, 5, 1, 1, 1, 32, 8),
           KernelSpec("add", 32, 32, 5, 5, 1, 1, 1, 32, 8)]


@pytest.mark.tvm
@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: k.short())
def test_table_int8_programs_equal_their_reference(kernel):
    from hao.latency.programs import build_kernel_func, check_output

    from tests.latency._programs import run_program

    prog = build_kernel_func(kernel)
    out, ref, _ = run_program(prog)
    ok, err, why = check_output(prog, out, ref)
    assert ok, why
    if prog.integer:
        assert np.array_equal(out, ref) and 0 < ref.mean() < 255   # exact, and not saturated
        bad = out.copy()
        bad.flat[0] ^= 1
        assert not check_output(prog, bad, ref)[0]                         # one LSB anywhere is a failure
