"""Importers reproduce known entries of the published tables shipped in reference_data/."""
from __future__ import annotations

import json

import numpy as np
import pytest

from hao.errors import ConfigError, TableError
from hao.kernel import KernelSpec
from hao.latency.importers import get_importer, list_importers
from hao.latency.table import LatencyTable


def test_registry():
    assert list_importers() == ["apq", "haq", "hawq", "ofa"]
    with pytest.raises(ConfigError, match=r"Known table importers: apq, haq, hawq, ofa"):
        get_importer("nn-meter")


def test_apq_known_entries(shared_data, tmp_path):
    folder = get_importer("apq").run(shared_data / "apq_bitfusion_lut.json", root=tmp_path)
    t = LatencyTable.load(folder)
    raw = json.loads((shared_data / "apq_bitfusion_lut.json").read_text())
    assert len(t) == len(raw) - 2  # head and tail are fixed costs, not kernels
    # "(96, 456, 14, 1, 1, 0, 1)-W4A4" -> pointwise conv 96->456 at 14x14, w4a4
    k = KernelSpec("conv2d", 96, 456, 14, 14, 1, 1, 1, 4, 4)
    assert t.latency(k) == pytest.approx(raw["(96, 456, 14, 1, 1, 0, 1)-W4A4"]["latency"])
    def shape(key):
        return tuple(int(x) for x in key.split(")")[0].strip("(").split(", "))

    dw = [key for key in raw if key.endswith("-W8A8") and key.startswith("(") and shape(key)[6] > 1]
    c, _, s, kk, st, _, g = shape(dw[0])
    assert t.latency(KernelSpec("dwconv2d", c, c, s, s, kk, st, g, 8, 8)) == pytest.approx(raw[dw[0]]["latency"])
    assert t.meta["fixed_costs_ms"]["head"]["latency_ms"] == pytest.approx(raw["head"]["latency"])
    assert "energy_mj" in t.df.columns


def test_haq_known_entries(shared_data, tmp_path):
    folder = get_importer("haq").run(shared_data / "haq_mobilenetv2_latency.npy", root=tmp_path)
    t = LatencyTable.load(folder)
    raw = np.load(shared_data / "haq_mobilenetv2_latency.npy")
    # row 0: first conv 3->32, 3x3, stride 2 at 224, batch 16; index [layer, w-1, a-1]
    assert t.latency(KernelSpec("conv2d", 3, 32, 224, 224, 3, 2, 1, 8, 8, batch=16)) == raw[0, 7, 7]
    assert t.latency(KernelSpec("conv2d", 3, 32, 224, 224, 3, 2, 1, 4, 6, batch=16)) == raw[0, 3, 5]
    # row 52: classifier 1280 -> 1000
    assert t.latency(KernelSpec("dense", 1280, 1000, 1, 1, batch=16, w_bits=2, a_bits=8)) == raw[52, 1, 7]
    assert "NOT milliseconds" in json.dumps(t.meta["units"])


def test_hawq_known_entries(shared_data, tmp_path):
    folder = get_importer("hawq").run(shared_data / "hawq_v3_ilp.json", root=tmp_path)
    t = LatencyTable.load(folder)
    m = json.loads((shared_data / "hawq_v3_ilp.json").read_text())["models"]["resnet18"]
    shapes = [tuple(s) for s in m["layer_shapes"]]
    # a shape that occurs once keeps its value exactly; repeated shapes become their median
    for bits, field in ((8, "latency_int8"), (4, "latency_int4")):
        for shape in set(shapes):
            vals = [m[field][i] for i, s in enumerate(shapes) if s == shape]
            cin, cout, k, s, out_hw = shape
            got = t.latency(KernelSpec("conv2d", cin, cout, out_hw * s, out_hw * s, k, s, 1, bits, bits, batch=8))
            if shape in [tuple(x) for x in json.loads((shared_data / "hawq_v3_ilp.json").read_text())
                         ["models"]["resnet50"]["layer_shapes"]]:
                continue  # merged with ResNet50 layers of the same shape
            assert got == pytest.approx(float(np.median(vals))), shape


def test_importer_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        get_importer("apq").run(tmp_path / "missing.json", root=tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"(1, 2, 3)-W8A8": {"latency": 1.0}}))
    with pytest.raises(TableError, match=r"bad.json.*'\(1, 2, 3\)-W8A8'"):
        get_importer("apq").run(bad, root=tmp_path)
    neg = tmp_path / "neg.json"
    neg.write_text(json.dumps({"(16, 16, 8, 1, 1, 0, 1)-W8A8": {"latency": -1.0, "energy": 1.0}}))
    with pytest.raises(TableError, match="latency_ms"):
        get_importer("apq").run(neg, root=tmp_path)
    npy = tmp_path / "t.npy"
    np.save(npy, np.ones((3, 8, 8), dtype=np.int64))
    with pytest.raises(TableError, match=r"expected shape \(53, 8, 8\)"):
        get_importer("haq").run(npy, root=tmp_path)
