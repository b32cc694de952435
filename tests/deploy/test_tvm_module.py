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


def _host() -> dict:
    from tvm.target import codegen

    return {"kind": "llvm", "mcpu": str(codegen.llvm_get_system_cpu()), "num-cores": 2}


#: no target: the plain programs; this CPU: the programs its table rows run (the dot-product depthwise program
#: where the CPU has AVX-512 VNNI + VBMI)
TARGETS = [None, "host"]


@pytest.mark.parametrize("target", TARGETS)
def test_module_equals_the_integer_reference_bit_for_bit(tiny_space, target):
    target = _host() if target == "host" else target
    rng = np.random.default_rng(11)
    for i, c in enumerate([tiny_space.sample(rng), tiny_space.smallest()]):
        net = integer_network(calibrated(tiny_space, c, seed=i), SHAPE)
        mod = IntegerModule(build(relax_module(net, target), target), sample=images(1))
        x = images(12, seed=i)
        got = mod.run_batch(x)
        assert got.shape == (12, 10)
        assert np.array_equal(got, net.run(x)), c.to_json()
        t = mod.time_session(repeat=2, min_repeat_ms=1)
        assert t.shape == (2,) and np.all(t > 0)


@pytest.mark.parametrize("target", TARGETS)
def test_every_layer_is_its_table_kernels_program(tiny_space, target):
    from tvm.s_tir.meta_schedule.tune_context import _normalize_mod

    from hao.latency.programs import build_kernel_func

    target = _host() if target == "host" else target
    c = tiny_space.sample(np.random.default_rng(5))
    net = integer_network(calibrated(tiny_space, c), SHAPE)
    funcs, kernels = table_functions(relax_module(net, target)), net.kernels()
    assert len(funcs) == len(kernels) == len(tiny_space.kernels(c))
    for f, k in zip(funcs, kernels):
        assert tvm_ffi.structural_equal(_normalize_mod(f), _normalize_mod(build_kernel_func(k, target).func)), \
            k.short()


@pytest.mark.slow
def test_mixed_precision_validation_compiles_integer_networks(tmp_path, tiny_space):
    """``hao latency validate --precision mixed`` end to end on a tiny space: integer networks of the table's
    int8 programs are built, checked and timed against the table's rows (a roofline table: the numbers are not
    the point, the pipeline is); the fitted overhead is stored as the space's *integer* networks' overhead, which
    searches of the space then use."""
    import json

    from hao.latency import calibrate as cal
    from hao.latency.backend import get_backend
    from hao.latency.table import register_hardware
    from hao.latency.validate import validate_networks
    from hao.space.registry import SPACES, register_space

    register_space("tiny-deploy", overwrite=True)(lambda **kw: tiny_space)
    try:
        plan = cal.plan_kernels(cal.space_kernels(tiny_space), precisions=((8, 8),))
        cal.calibrate("tiny-int", plan, get_backend("roofline"), root=tmp_path, progress=False)
        register_hardware(tmp_path / "tiny-int", "tiny-int")
        rep = validate_networks("tiny-int", "tiny-deploy", n_networks=2, calib_networks=1, trials_per_task=1,
                                threads=1, progress=False, rounds=1, precision="mixed")
    finally:
        SPACES.unregister("tiny-deploy")
    assert rep["precision"] == "mixed" and all(r["ok"] for r in rep["networks"]), rep["networks"]
    assert all(r["measured_ms"] > 0 and r["kernels_in_table"] == r["n_kernels"] for r in rep["networks"])
    assert rep["report_path"].endswith("validation_tiny-deploy_mixed.json")
    saved = json.loads((tmp_path / "tiny-int" / "validation_tiny-deploy_mixed.json").read_text())
    assert saved["summary"]["n_networks"] == 2
    pj = json.loads((tmp_path / "tiny-int" / "predictor.json").read_text())
    integer = pj["by_space"]["tiny-deploy"]["integer"]
    assert integer["overhead_ms"] == pytest.approx(rep["overhead"]["ms"]) and "--precision mixed" in integer[
        "fitted_by"]
    from hao.latency.predictor import LatencyPredictor

    for deploy, want in (("integer", "integer"), ("float", "float")):
        p = LatencyPredictor.from_table(tmp_path / "tiny-int", space="tiny-deploy", deploy=deploy)
        assert p.deploy_ == want
