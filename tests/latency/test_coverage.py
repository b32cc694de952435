"""hao latency check: measured vs predicted kernels of a space on a table, and the bit-width mismatch warning
(also raised by the search's latency objective)."""
from __future__ import annotations

import json

import pytest

import hao
from hao.latency.coverage import coverage, space_kernels
from hao.latency.predictor import LatencyPredictor
from hao.latency.table import LatencyTable, list_hardware, load_table
from hao.search.objectives import latency_objective

pytestmark = pytest.mark.skipif("cpu-rocketlake-2t" not in list_hardware(), reason="the committed CPU table")


def test_coverage_counts_against_a_direct_lookup():
    space, table = hao.get_space("mbconv-fmnist"), load_table("cpu-rocketlake-2t")
    rep = coverage(space, table)
    ks = space_kernels(space)
    direct = sum(table.latency(k) is not None for k in ks)
    assert rep["kernels"] == len(ks) == len(set(ks)) and rep["measured"] == direct
    assert rep["measured"] + rep["predicted"] == rep["kernels"]
    assert sum(d["kernels"] for d in rep["per_op"].values()) == rep["kernels"]
    # sub-8-bit kernels run the int8 program of their shape: the table answers them with its W8A8 rows
    assert all(b.startswith(("w2", "w4", "w8a4")) for b in rep["missing_bits"]) and rep["warnings"] == []


def test_an_fp32_table_warns_for_a_quantized_space(recwarn):
    full = load_table("cpu-rocketlake-2t")
    df = full.df[(full.df["w_bits"] == 32) & (full.df["a_bits"] == 32)].reset_index(drop=True)
    fp32 = LatencyTable(df, {**full.meta, "hardware": "fp32-only"}, source="test")
    space = hao.get_space("mbconv-fmnist")
    rep = coverage(space, fp32)
    assert "w2a4" in rep["missing_bits"] and rep["kernels_at_missing_bits"] > 0
    assert len(rep["warnings"]) == 1 and "extrapolated" in rep["warnings"][0]
    with pytest.warns(UserWarning, match="has no rows at w2a4"):
        latency_objective(space, LatencyPredictor(quantiles=None).fit(fp32))


def test_cli_check(capsys):
    from hao.cli import main
    assert main(["latency", "check", "--space", "mbconv-fmnist", "--hardware", "cpu-rocketlake-2t", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["space"] == "mbconv-fmnist" and rep["kernels"] > 0


def test_an_int8_table_without_mapped_rows_covers_sub8_kernels(recwarn):
    """Sub-8-bit kernels run the int8 program of their shape; a table with W8A8 rows and no mapped rows answers
    them with those rows (the predictor does exactly that), so neither the check nor the search warns."""
    full = load_table("cpu-rocketlake-2t")
    keep = ~full.df["impl"].astype(str).str.contains("-mapped")
    t = LatencyTable(full.df[keep].reset_index(drop=True), {**full.meta, "hardware": "int8-only"}, source="test")
    space = hao.get_space("mbconv-fmnist")
    rep = coverage(space, t)
    assert "w2a4" in rep["missing_bits"] and rep["warnings"] == []
    pred = LatencyPredictor(quantiles=None).fit(t)
    latency_objective(space, pred)
    assert not [w for w in recwarn if "has no rows" in str(w.message)]
    from hao.kernel import KernelSpec
    k8, k2 = KernelSpec("conv2d", 16, 32, 14, 14, 3, 1, 1, 8, 8), KernelSpec("conv2d", 16, 32, 14, 14, 3, 1, 1, 2, 4)
    assert pred.predict([k2], prefer_measured=True)[0] == pred.predict([k8], prefer_measured=True)[0]


def test_portable_depthwise_rows_on_a_dot_product_target_are_flagged():
    """A table whose int8 depthwise rows ran the portable program, for a target whose networks run the
    dot-product one, prices those layers too high: the check says so and gives the re-time command."""
    pytest.importorskip("tvm")
    full = load_table("cpu-rocketlake-2t")
    df = full.df.copy()
    dw8 = (df["op"] == "dwconv2d") & (df["w_bits"] == 8)
    df.loc[dw8, "vnni"] = 0
    t = LatencyTable(df, {**full.meta, "hardware": "old-dw"}, source="test")
    rep = coverage(hao.get_space("mbconv-fmnist"), t)
    assert any("portable program" in w and "--op dwconv2d" in w for w in rep["warnings"])
    t2 = LatencyTable(df, {**full.meta, "hardware": "old-dw", "target": {"kind": "llvm", "mcpu": "znver3"}},
                      source="test")
    assert not any("portable" in w for w in coverage(hao.get_space("mbconv-fmnist"), t2)["warnings"])
    assert not any("portable" in w for w in coverage(hao.get_space("mbconv-fmnist"), full)["warnings"])
