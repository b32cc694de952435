"""Block-level tables: the OFA/ProxylessNAS YAML importer, block rows in the schema, spaces pricing candidates
by their block kernels — imported, listed, checked and searched, on synthetic files in that format."""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from hao.errors import ConfigError, TableError
from hao.latency.coverage import coverage, space_kernels
from hao.latency.importers import get_importer
from hao.latency.ofa_importer import ofa_key, parse_ofa_key
from hao.latency.predictor import LatencyPredictor
from hao.latency.table import LatencyTable
from hao.space import get_space
from hao.testing.latency import check_importer, write_ofa_lut

MBV3_KEY = "expanded_conv-input:112x112x24-output:56x56x32-expand:144-kernel:3-stride:2-idskip:0-se:1-hs:1"


def test_parse_keys_of_both_formats():
    p = parse_ofa_key(MBV3_KEY)
    assert p == {"type": "expanded_conv", "input": (112, 112, 24), "output": (56, 56, 32), "expand": 144,
                 "kernel": 3, "stride": 2, "idskip": 0, "se": 1, "hs": 1}
    q = parse_ofa_key("expanded_conv-input:56x56x24-output:56x56x24-expand:6-kernel:5-stride:1-idskip:1")
    assert q["expand"] == 6 and "se" not in q
    assert parse_ofa_key("Logits-input:7x7x1280-output:1000")["output"] == (1000,)


@pytest.mark.parametrize("key,match", [
    ("Dense-input:1x1x8-output:4", "unknown layer type 'Dense'"),
    ("Conv-input:224x224-output:112x112x16", "height x width x channels"),
    ("Conv-input:2a4x224x3-output:112x112x16", "is not a shape"),
    ("expanded_conv-input:8x8x8-output:8x8x8-expand:6-kernel:3", r"missing \['stride', 'idskip'\]"),
    ("expanded_conv-input:8x8x8-output:8x8x8-expand:6-kernel:3-stride:1-idskip:1-se:0", "se and hs come together"),
    ("Conv-input:8x8x3-output:8x8x4-groups:2", "unknown field 'groups'"),
])
def test_bad_keys_name_the_key(key, match):
    with pytest.raises(TableError, match=match):
        parse_ofa_key(key)


def test_mbv3_rows_map_to_block_kernels(tmp_path):
    f = tmp_path / "lut.yaml"
    f.write_text(yaml.safe_dump({
        MBV3_KEY: {"count": 20, "mean": 1.5, "std": 0.1},
        "Conv-input:224x224x3-output:112x112x24": {"count": 20, "mean": 0.9, "std": 0.01},
        "Logits-input:7x7x1280-output:1000": {"count": 20, "mean": 0.3, "std": 0.01}}))
    df, meta = get_importer("ofa").read(f)
    assert meta["granularity"] == "block" and meta["format"].startswith("MobileNetV3")
    t = LatencyTable(df, meta)
    ks = {k.op: k for k in t.kernels()}
    b = ks["mbconv"]
    assert (b.in_channels, b.out_channels, b.in_h, b.mid_channels, b.kernel, b.stride, b.se, b.hswish, b.idskip) == (
        24, 32, 112, 144, 3, 2, 1, 1, 0)
    assert t.latency(b) == 1.5 and int(df.loc[df.op == "mbconv", "repeats"].iloc[0]) == 20
    assert (ks["conv2d"].kernel, ks["conv2d"].stride) == (3, 2)
    assert (ks["dense"].in_h, ks["dense"].in_channels, ks["dense"].out_channels) == (7, 1280, 1000)


def test_proxyless_expand_is_a_ratio_and_formats_do_not_mix(tmp_path):
    key = "expanded_conv-input:56x56x24-output:56x56x24-expand:6-kernel:5-stride:1-idskip:1"
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump({key: {"mean": 0.5}}))
    df, meta = get_importer("ofa").read(f)
    assert int(df.mid_channels.iloc[0]) == 144 and meta["format"].startswith("ProxylessNAS")
    f.write_text(yaml.safe_dump({key: {"mean": 0.5}, MBV3_KEY: {"mean": 1.0}}))
    with pytest.raises(TableError, match="mixes MobileNetV3 keys"):
        get_importer("ofa").read(f)
    f.write_text(yaml.safe_dump({key.replace("56x56x24-expand", "28x28x24-expand"): {"mean": 0.5}}))
    with pytest.raises(TableError, match="not the input 56x56 at stride 1"):
        get_importer("ofa").read(f)
    f.write_text("a: [unclosed")
    with pytest.raises(TableError, match="not valid YAML at line 1"):
        get_importer("ofa").read(f)
    with pytest.raises(ConfigError, match="pass --source"):
        get_importer("ofa").run(None, "x", root=tmp_path)


def test_block_rows_need_declared_key_columns(tmp_path):
    f = write_ofa_lut(get_space("ofa-mbv3-224"), tmp_path / "lut.yaml")
    df, meta = get_importer("ofa").read(f)
    with pytest.raises(TableError, match="must declare \"granularity\": \"block\""):
        LatencyTable(df, {k: v for k, v in meta.items() if k != "key_columns_extra"})
    with pytest.raises(TableError, match=r"needs the block key columns"):
        LatencyTable(df.drop(columns=["se"]), meta)


def test_conformance_battery(tmp_path):
    check_importer("ofa", source=write_ofa_lut(get_space("ofa-mbv3-224"), tmp_path / "lut.yaml"))


def _yaml_sum(space, cand, lut: dict) -> float:
    """Ground truth: the network's latency as OFA sums it, straight from the YAML file."""
    pre, post = space.fixed_blocks()
    total = 0.0
    for i, k in enumerate(space.kernels(cand, "block")):
        j = i - (len(space.kernels(cand, "block")) - len(post))
        conv2 = 0 <= j < len(post) - 1 and k.op == "dense" and post[j + 1].op == "dense"
        total += lut[ofa_key(k, "mbv3", "Conv_2" if conv2 else None)]["mean"]
    return total


def test_imported_table_is_listed_checked_and_searched(tmp_path, monkeypatch):
    import hao
    from hao.cli import main

    space = get_space("ofa-mbv3-224")
    f = write_ofa_lut(space, tmp_path / "note10.yaml", seed=3)
    root = tmp_path / "tables"
    monkeypatch.setenv("HAO_LATENCY_MODELS", str(root))
    assert main(["latency", "import", "ofa", "--source", str(f), "--hardware", "ofa-note10-synth",
                 "--root", str(root)]) == 0
    assert "ofa-note10-synth" in hao.latency.list_hardware()
    t = LatencyTable.load(root / "ofa-note10-synth")
    cv = coverage(space, t)
    assert cv["granularity"] == "block" and cv["predicted"] == 0 and cv["measured"] == cv["kernels"] > 50
    # another space (MobileNetV2 blocks, other widths) hits only the few blocks both share; the rest is predicted
    other = coverage(get_space("mbconv-apq224", w_bits=(32,), a_bits=(32,), pin_bits=32), t)
    assert other["share_measured"] < 0.2 and other["predicted"] > 0
    lut = yaml.safe_load(f.read_text())
    pred = LatencyPredictor.from_table(t)
    rng = np.random.default_rng(0)
    for c in [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(5)]:
        assert pred.network_latency(space.kernels(c, "block")) == pytest.approx(_yaml_sum(space, c, lut), rel=1e-12)
    res = hao.search(space="ofa-mbv3-224", hardware="ofa-note10-synth", objectives=["latency_ms", "macs_m"],
                     solver="ilp", budgets={"latency_ms": 0.8 * pred.network_latency(space.kernels(
                         space.largest(), "block"))}, references=False)
    for row in res.df.itertuples():
        c = space.candidate_from_json(row.config)
        assert row.latency_ms == pytest.approx(_yaml_sum(space, c, lut), rel=1e-9)
    assert main(["latency", "check", "--space", "ofa-mbv3-224", "--hardware", "ofa-note10-synth", "--json"]) == 0


def test_missing_blocks_are_predicted(tmp_path):
    space = get_space("ofa-mbv3-224")
    f = write_ofa_lut(space, tmp_path / "lut.yaml", drop=0.3, seed=1)
    folder = get_importer("ofa").run(f, "dropped", root=tmp_path)
    t = LatencyTable.load(folder)
    cv = coverage(space, t)
    assert 0 < cv["per_op"]["mbconv"]["predicted"] < cv["per_op"]["mbconv"]["kernels"]
    pred = LatencyPredictor.from_table(t)
    full = yaml.safe_load(write_ofa_lut(space, tmp_path / "full.yaml", seed=1).read_text())
    missing = [k for k in space.kernels(space.largest(), "block") if t.latency(k) is None]
    assert missing
    for k in missing:  # a block the table lacks is predicted from its neighbours, within 25% of the truth
        assert pred.predict([k])[0] == pytest.approx(full[ofa_key(k)]["mean"], rel=0.25)
    json.dumps(cv)


def test_literal_ofa_w12_keys_are_blocks_of_the_w12_space(tmp_path):
    """Keys written as OFA's MobileNetV3 (w1.2) tables write them, not generated by hao: each is a block kernel of
    ofa-mbv3-w12-224 (so such a table's rows are looked up, not predicted)."""
    keys = ["Conv-input:224x224x3-output:112x112x24",
            "expanded_conv-input:112x112x24-output:112x112x24-expand:24-kernel:3-stride:1-idskip:1-se:0-hs:0",
            "expanded_conv-input:112x112x24-output:56x56x32-expand:72-kernel:3-stride:2-idskip:0-se:0-hs:0",
            "expanded_conv-input:56x56x32-output:28x28x48-expand:192-kernel:5-stride:2-idskip:0-se:1-hs:0",
            "expanded_conv-input:14x14x96-output:14x14x136-expand:576-kernel:7-stride:1-idskip:0-se:1-hs:1",
            "Conv_1-input:7x7x192-output:7x7x1152", "AvgPool2D-input:7x7x1152-output:1x1x1152",
            "Conv_2-input:1x1x1152-output:1x1x1536", "Logits-input:1x1x1536-output:1000"]
    f = tmp_path / "224_lookup_table.yaml"
    f.write_text(yaml.safe_dump({k: {"count": 10, "mean": 0.1 + i, "std": 0.0} for i, k in enumerate(keys)}))
    t = LatencyTable(*get_importer("ofa").read(f))
    have = {k.key() for k in space_kernels(get_space("ofa-mbv3-w12-224"), "block")}
    assert [k.key() in have for k in t.kernels()] == [True] * len(keys)


def test_proxyless_tables_price_pool_and_classifier_as_logits(tmp_path):
    space = get_space("mbconv-apq224", w_bits=(32,), a_bits=(32,), pin_bits=32)
    f = write_ofa_lut(space, tmp_path / "proxyless.yaml", style="proxyless")
    text = f.read_text()
    assert "AvgPool2D" not in text and "Logits-input:7x7x1280-output:1000" in text
    t = LatencyTable(*get_importer("ofa").read(f))
    cv = coverage(space, t)
    assert cv["predicted"] == 0 and cv["per_op"]["dense"]["measured"] == 1
    c = space.largest()
    assert sum(k.macs for k in space.kernels(c, "block")) == sum(k.macs for k in space.kernels(c))


def test_block_tables_are_not_retimed(tmp_path):
    from hao.latency.retime import retime
    folder = get_importer("ofa").run(write_ofa_lut(get_space("ofa-mbv3-224"), tmp_path / "l.yaml"), "b",
                                     root=tmp_path)
    with pytest.raises(ConfigError, match="imported table"):
        retime("b", backend=None, root=tmp_path)
    assert LatencyTable.load(folder)  # unchanged and loadable


def test_plain_tables_may_have_columns_named_like_block_columns(tmp_path):
    t = LatencyTable.load(get_importer("ofa").run(write_ofa_lut(get_space("ofa-mbv3-224"), tmp_path / "l.yaml"),
                                                  "b", root=tmp_path))
    df = t.df[t.df.op != "mbconv"].drop(columns=["mid_channels", "hswish", "idskip"]).copy()
    df["se"] = [0.25] * len(df)  # e.g. a standard error column of the user's own
    plain = LatencyTable(df, {"hardware": "p", "units": {}, "source": "test"})
    assert plain.granularity == "kernel" and list(plain.df["se"]) == [0.25] * len(df)
