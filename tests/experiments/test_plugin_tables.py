"""Smoke tests of experiments/plugin_tables.py: kernel mapping onto foreign tables, a tiny HAQ search."""
import json

import numpy as np
import pytest

from tests.experiments.conftest import REPO, load_script

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _table_or_skip(name):
    from hao.latency.table import load_table
    if not (REPO / "latency_models" / name / "table.csv").is_file():
        pytest.skip(f"latency_models/{name} is absent (import it with `hao latency import ...`)")
    return load_table(name)


def test_apq_mapping_exact_predicted_fixed_not_modelled():
    """Every kernel of an APQ-space candidate gets a category and a cost; missing keys are predicted."""
    import hao
    from hao.latency.predictor import LatencyPredictor
    pt = load_script("plugin_tables")
    table = _table_or_skip("apq-bitfusion")
    space = hao.get_space("mbconv-apq224")
    pred = LatencyPredictor(n_estimators=20, quantiles=(0.1, 0.9)).fit(table)
    m = pt.APQMapping(space, table, pred)
    cand = space.uniform(8, 4)  # largest architecture: 7x7 depthwise at A4, which APQ's table lacks
    ks, costs = m.candidate_costs(cand)
    assert len(costs) == len(ks)
    cats = {c[0] for c in costs}
    assert cats == {"exact", "predicted", "fixed", "not-modelled"}
    for k, (cat, v, lo, hi) in zip(ks, costs):
        if cat == "exact":
            assert v == table.latency(k) and lo == hi == v
        elif cat == "predicted":
            assert table.latency(k) is None and v > 0 and lo <= v <= hi
        elif cat == "fixed":
            assert k in space.fixed_kernels()[0] + space.fixed_kernels()[1] and v == 0.0
        else:
            assert k.op in ("add", "avgpool") and v == 0.0
    dw7a4 = [c for k, c in zip(ks, costs) if k.op == "dwconv2d" and k.kernel == 7 and k.a_bits == 4]
    assert dw7a4 and all(c[0] == "predicted" for c in dw7a4)
    pre, post = space.fixed_kernels()
    assert [c[0] for c in costs[:len(pre)]] == ["fixed"] * len(pre)
    # head conv, pool, classifier = APQ tail
    assert [c[0] for c in costs[-len(post):]] == ["fixed"] * len(post)
    fc = table.meta["fixed_costs_ms"]
    assert np.isclose(m.fixed_cost(), fc["head"]["latency_ms"] + fc["tail"]["latency_ms"])


def test_haq_smoke_run(tmp_path):
    """A tiny HAQ run: batch rewrite makes every conv/FC an exact hit, HAQ's preserve ratios are respected."""
    _table_or_skip("haq-mobilenetv2")
    pt = load_script("plugin_tables")
    res = pt.main(["--out", str(tmp_path), "--smoke", "--tables", "haq"])
    d = json.loads((tmp_path / "plugin_tables.json").read_text())
    assert d["settings"]["smoke"] is True
    s = d["tables"]["haq-mobilenetv2"]
    assert res["tables"]["haq-mobilenetv2"]["search"]["front_size"] == s["search"]["front_size"]
    assert "random-init" in s["proxy"]["proxy"]          # the proxy is labelled as such
    fk = s["front_kernels"]
    n_front = s["search"]["front_size"]
    assert n_front >= 2
    assert fk["total"] == fk["exact"] + fk["predicted"] + fk["fixed"] + fk["not-modelled"]
    assert fk["exact"] == fk["total"] - n_front         # every conv + the FC hits once batch is 16 ...
    # ... the global pool does not
    assert fk["not-modelled"] == n_front and fk["not_modelled_ops"] == {"avgpool": n_front}
    assert fk["naive_exact_hits_without_mapping"] == 0  # hao's batch-1 keys alone hit nothing
    for pr, v in s["haq_preserve_ratio"].items():
        assert v["cost_ratio"] <= float(pr) + 1e-9
        assert v["w_bits"] == v["a_bits"]               # activation bits tied to weight bits
    assert s["haq_preserve_ratio"]["0.6"]["proxy"] <= s["haq_preserve_ratio"]["0.556"]["proxy"]
    import pandas as pd
    f = pd.read_csv(tmp_path / "haq-mobilenetv2_front.csv")
    assert len(f) == n_front and (f["n_predicted"] == 0).all() and (f["cost_ratio"] <= 1.0 + 1e-9).all()
    assert (tmp_path / "plugin_haq-mobilenetv2.png").stat().st_size > 5000


def _tiny_spaces():
    from hao.space.mbconv import MBConvSpace
    from hao.space.quantize_only import QuantizeOnlySpace
    from tests.proxy.conftest import TinyNet
    return [MBConvSpace("mb-zq", input_shape=(1, 8, 8), stem_channels=4, stages=((4, 1),), depths=(1, 2),
                        kernel_sizes=(3,), ratios=(2,), w_bits=(4, 8), a_bits=(8,), head_channels=8, num_classes=3),
            QuantizeOnlySpace("q-zq", TinyNet(0), (1, 8, 8), bits=(4, 8), pin_first_last=False)]


@pytest.mark.parametrize("space", _tiny_spaces(), ids=lambda s: s.family)
def test_zeroq_proxy_runs_hao_proxy_on_supernets_and_plain_models(space):
    """--proxy zeroq goes through hao.proxy.zeroq_traces, for a weight-sharing supernet and a plain model."""
    pt = load_script("plugin_tables")
    proxy, info = pt.zeroq_proxy(space, 0, 4, 3, 2)
    assert info["zeroq_images"] == 4 and info["trace_samples"] == 2 and "random-init" in info["proxy"]
    big, small = proxy.score([space.largest(), space.smallest()])
    assert np.isfinite([big, small]).all() and 0 <= big <= small
