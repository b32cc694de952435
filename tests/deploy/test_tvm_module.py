"""The integer network as a TVM module: equal to the NumPy integer reference bit for bit, and made of the table's
own int8 programs (each layer structurally equal to its table kernel's program, so it finds that kernel's
tuned schedule)."""
from __future__ import annotations

import numpy as np
import pytest

tvm = pytest.importorskip("tvm", reason="apache-tvm is not installed")
tvm_ffi = pytest.importorskip("tvm_ffi")

from hao.deploy import integer_network  # noqa: E402
from hao.deploy.tvm_module import IntegerModule, build, relax_module, table_functions  # noqa: E402
from tests.deploy.conftest import SHAPE, calibrated, images  # noqa: E402

pytestmark = [pytest.mark.tvm]


def test_module_equals_the_integer_reference_bit_for_bit(tiny_space):
    rng = np.random.default_rng(11)
    for i, c in enumerate([tiny_space.sample(rng), tiny_space.smallest()]):
        net = integer_network(calibrated(tiny_space, c, seed=i), SHAPE)
        mod = IntegerModule(build(relax_module(net)), sample=images(1))
        x = images(12, seed=i)
        got = mod.run_batch(x)
        assert got.shape == (12, 10)
        assert np.array_equal(got, net.run(x)), c.to_json()
        t = mod.time_session(repeat=2, min_repeat_ms=1)
        assert t.shape == (2,) and np.all(t > 0)


def test_every_layer_is_its_table_kernels_program(tiny_space):
    from tvm.s_tir.meta_schedule.tune_context import _normalize_mod

    from hao.latency.programs import build_kernel_func

    c = tiny_space.sample(np.random.default_rng(5))
    net = integer_network(calibrated(tiny_space, c), SHAPE)
    funcs, kernels = table_functions(relax_module(net)), net.kernels()
    assert len(funcs) == len(kernels) == len(tiny_space.kernels(c))
    for f, k in zip(funcs, kernels):
        assert tvm_ffi.structural_equal(_normalize_mod(f), _normalize_mod(build_kernel_func(k).func)), k.short()
