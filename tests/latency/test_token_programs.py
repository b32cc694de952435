"""TVM programs of the transformer (token) kernels against their NumPy references, and the ViT space's kernels
all have one."""
from __future__ import annotations

import numpy as np
import pytest

from hao.errors import ConfigError
from hao.kernel import TOKEN_OPS, KernelSpec
from tests.latency._programs import run_program

tvm = pytest.importorskip("tvm", reason="apache-tvm is not installed")

KERNELS = [KernelSpec("linear", 64, 48, 49, 1), KernelSpec("linear", 64, 40, 49, 1, w_bits=8, a_bits=8),
           KernelSpec("linear", 30, 20, 7, 1, w_bits=4, a_bits=8),           # padded to 32 x 32, int8-mapped
           KernelSpec("bmm", 32, 2 * 49, 49, 1, groups=2), KernelSpec("bmm", 2 * 49, 32, 49, 1, groups=2),
           KernelSpec("softmax", 4 * 49, 4 * 49, 49, 1, groups=4), KernelSpec("layernorm", 64, 64, 49, 1),
           KernelSpec("gelu", 128, 128, 49, 1), KernelSpec("split_heads", 64, 64, 49, 1, 1, 1, 4),
           KernelSpec("split_heads_t", 64, 64, 49, 1, 1, 1, 4), KernelSpec("merge_heads", 32, 32, 49, 1, 1, 1, 2)]


@pytest.mark.tvm
@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: k.short())
def test_token_programs_equal_their_reference(kernel):
    from hao.latency.programs import build_kernel_func, check_output

    prog = build_kernel_func(kernel)
    out, ref, _ = run_program(prog)
    ok, err, why = check_output(prog, out, ref)
    assert ok, why
    if prog.integer:
        assert np.array_equal(out, ref) and 0 < ref.mean() < 255   # exact, and not saturated


def test_vit_calibration_plan_has_a_correct_program_for_every_row():
    """The plan of ``hao calibrate --space vit-fmnist`` (fp32 + int8) keeps attention's matmuls, softmax,
    LayerNorm and GELU in float32, and every planned kernel's program compiles and equals its reference."""
    import hao
    from hao.latency.calibrate import plan_kernels, space_kernels
    from hao.latency.programs import build_kernel_func, check_output

    plan = plan_kernels(space_kernels(hao.get_space("vit-fmnist")), precisions=[(32, 32), (8, 8)])
    assert all(k.w_bits == k.a_bits == 32 for k in plan if k.op in TOKEN_OPS and k.op != "linear")
    assert {(k.op, k.w_bits) for k in plan} >= {("linear", 8), ("linear", 32), ("bmm", 32), ("gelu", 32),
                                                ("split_heads", 32), ("split_heads_t", 32), ("merge_heads", 32)}
    seen = set()
    for k in plan:
        if (k.op, k.w_bits) in seen:
            continue
        seen.add((k.op, k.w_bits))
        prog = build_kernel_func(k)
        out, ref, _ = run_program(prog)
        assert check_output(prog, out, ref)[0], k.short()
    with pytest.raises(ConfigError, match="only 'linear' token kernels have an int8 program"):
        build_kernel_func(KernelSpec("bmm", 32, 98, 49, 1, groups=2, w_bits=8, a_bits=8))


def test_a_predictor_fitted_with_token_kernels_prices_the_vit_space():
    """Token kernels get their own one-hot features only in a predictor fitted on them; plain tables' feature
    matrix does not change (their predictions must not move)."""
    import hao
    from hao.latency.calibrate import space_kernels
    from hao.latency.predictor import FEATURE_NAMES, LatencyPredictor, kernel_features
    from hao.search.objectives import latency_objective

    sp = hao.get_space("vit-fmnist")
    ks = space_kernels(sp)[::7]
    y = np.array([1e-3 + 1e-7 * k.macs + 1e-8 * k.elementwise_ops for k in ks])
    pred = LatencyPredictor(quantiles=None).fit(ks, y)
    assert pred.token_features_ and pred.n_features_in_ == len(FEATURE_NAMES) + len(TOKEN_OPS)
    lat = latency_objective(sp, pred).evaluate([sp.largest(), sp.smallest()])
    assert np.all(np.isfinite(lat)) and lat[0] > lat[1] > 0
    conv = [KernelSpec("conv2d", 8, 8, 8, 8, 3), KernelSpec("dense", 8, 10, 1, 1)]
    assert kernel_features(conv).shape[1] == len(FEATURE_NAMES)
    plain = LatencyPredictor(quantiles=None).fit(conv * 3, np.arange(1, 7, dtype=float))
    with pytest.raises(ConfigError, match="fitted on a table without token kernels"):
        plain.predict([next(k for k in ks if k.op == "bmm")])


@pytest.mark.tvm
def test_compiled_networks_run_the_tables_gelu_program():
    """A network's GELU, legalized by hao's compiler, computes what the table row's program computes (the same
    blocks, Relax's 64-bit shapes aside), and both are vectorised: no call of libm's ``erff``, whose cost depends
    on the data."""
    import re

    from tvm import relax
    from tvm.script import relax as R

    from hao.latency.compiler import legalize
    from hao.latency.programs import build_kernel_func

    bb = relax.BlockBuilder()
    x = relax.Var("x", R.Tensor((49, 128), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(bb.emit(relax.op.nn.gelu(x)))
        bb.emit_func_output(out)
    mod = legalize(bb.get())
    (gv,) = [g for g in mod.get_global_vars() if g.name_hint != "main"]
    net = mod[gv].with_attr("global_symbol", "main")
    row = build_kernel_func(KernelSpec("gelu", 128, 128, 49, 1)).func

    def blocks(f):
        return [b for b in re.findall(r'T\.sblock\("(\w+)"\)', f.script()) if b != "root"]

    assert blocks(net) == blocks(row) == ["gelu_scaled", "T_fast_erf", "gelu"]
    for f in (net, row):
        exe = tvm.compile(tvm.IRModule({"main": f}), tvm.target.Target({"kind": "llvm"}))
        assert "erff" not in exe.mod.inspect_source("asm")


@pytest.mark.tvm
def test_a_compiled_vits_linear_and_layernorm_tasks_are_the_tables_programs():
    """Every token linear and LayerNorm task of a compiled ViT is structurally one of the table's programs, so the
    network looks its schedule up in the table's database (the row's schedule is what runs) instead of tuning a
    second schedule of its own, which ran up to 2x the row."""
    import tvm_ffi
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.tune_context import _normalize_mod

    import hao
    from hao.latency.backend import replace_bits
    from hao.latency.calibrate import space_kernels
    from hao.latency.compiler import import_network
    from hao.latency.programs import build_kernel_func
    from hao.latency.validate import float_model

    sp = hao.get_space("vit-fmnist")
    target = tvm.target.Target({"kind": "llvm"})
    _, _, _, fused = import_network(float_model(sp, sp.largest(), seed=0), tuple(sp.input_shape), target)
    rows = [tvm.IRModule({"main": build_kernel_func(k).func})
            for k in {replace_bits(k, 32, 32) for k in space_kernels(sp) if k.op in ("linear", "layernorm")}]
    checked = 0
    for task in ms.relax_integration.extract_tasks(fused, target):
        name = task.task_name
        tmod = _normalize_mod(task.dispatched[0])
        tokens = int(ms.arg_info.ArgInfo.from_prim_func(tmod["main"])[0].shape[0])
        if not (("matmul" in name and "add" in name) or name.startswith("layer_norm")) or tokens != sp.tokens:
            continue
        assert any(tvm_ffi.structural_equal(tmod, row) for row in rows), name
        checked += 1
    assert checked == 4    # distinct tasks: Q/K/V/O (64 -> 64), fc1 (64 -> 256), fc2 (256 -> 64), LayerNorm
