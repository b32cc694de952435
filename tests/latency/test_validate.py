"""Whole-network validation: BN folding, the float export model, scoring of network rows, and (with TVM) a
compiled network running the table kernels' schedules."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from hao.latency.validate import float_model, fold_batchnorm, score_rows


def test_fold_batchnorm_preserves_outputs():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
    with torch.no_grad():
        m[1].running_mean.uniform_(-1, 1)
        m[1].running_var.uniform_(0.5, 2)
        m[1].weight.uniform_(0.5, 1.5)
    m.eval()
    x = torch.randn(2, 3, 8, 8)
    ref = m(x)
    fold_batchnorm(m)
    assert isinstance(m[1], nn.Identity)
    torch.testing.assert_close(m(x), ref, rtol=1e-4, atol=1e-5)


def test_float_model_of_a_space_candidate():
    from hao.quant import quant_layers
    from hao.space import get_space

    sp = get_space("mbconv-fmnist")
    c = sp.sample(np.random.default_rng(0))
    m = float_model(sp, c)
    assert all(layer.w_bits == 32 and layer.a_bits == 32 for _, layer in quant_layers(m))
    assert not any(isinstance(x, (nn.BatchNorm2d, nn.ReLU6)) for x in m.modules())
    assert m(torch.randn(1, *sp.input_shape)).shape[-1] == 10


def _rows(scale, a, b, n_fit=3, n_val=10, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_fit + n_val):
        s, n = float(rng.uniform(1, 3)), int(rng.integers(40, 60))
        rows.append({"role": "overhead-fit" if i < n_fit else "validation", "ok": True, "sum_kernels_ms": s,
                     "n_kernels": n, "measured_ms": scale * s + a + b * n})
    return rows


def test_score_rows_recovers_additive_overhead():
    summary, (scale, a, b) = score_rows(_rows(1.0, 0.2, 0.01), network_scale=False)
    assert scale == 1.0 and a == pytest.approx(0.2, abs=1e-6) and b == pytest.approx(0.01, abs=1e-6)
    assert summary["share_within_10pct"] == 1.0 and summary["median_abs_err_pct"] < 1e-6
    assert summary["n_networks"] == 10


def test_score_rows_with_scale():
    summary, (scale, a, b) = score_rows(_rows(1.5, 0.1, 0.0, n_fit=4), network_scale=True)
    assert scale == pytest.approx(1.5, rel=1e-6)
    assert summary["kendall_tau"] == pytest.approx(1.0)


def test_score_rows_auto_chooses_on_calibration_networks_only():
    # the networks really are 0.6·Σ + 0.05 ms: leave-one-out on the calibration networks picks the scale model
    rows = _rows(0.6, 0.05, 0.0, n_fit=6)
    summary, (scale, a, b) = score_rows(rows, network_scale="auto")
    sel = summary["model_selection"]
    assert sel["chosen"] == "scale" and scale == pytest.approx(0.6, rel=1e-6)
    loo = sel["leave_one_out_on_calibration_networks"]
    assert loo["scale"]["mean_abs_err_pct"] < loo["additive"]["mean_abs_err_pct"]
    assert set(sel["alternatives"]) == {"additive", "scale"}
    assert sel["alternatives"]["scale"]["share_within_10pct"] == 1.0
    # additive truth: the additive model is at least as good out of sample -> kept (simpler on a tie)
    summary, (scale, a, b) = score_rows(_rows(1.0, 0.3, 0.0, n_fit=6), network_scale="auto")
    assert summary["model_selection"]["chosen"] == "additive" and scale == 1.0
    # changing only the validation networks cannot change the choice
    rows2 = _rows(0.6, 0.05, 0.0, n_fit=6)
    for r in rows2[6:]:
        r["measured_ms"] = r["sum_kernels_ms"] + 0.3
    assert score_rows(rows2, network_scale="auto")[0]["model_selection"]["chosen"] == "scale"
    with pytest.raises(Exception, match="network_scale must be"):
        score_rows(rows, network_scale="maybe")


class _Block(nn.Module):
    """stem conv+ReLU -> depthwise 3x3+ReLU -> 1x1 projection without ReLU (+ residual): the task kinds of
    an MBConv network (conv+bias+ReLU, depthwise, conv+bias, conv+bias+add)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.dw = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU())
        self.proj = nn.Conv2d(8, 8, 1)
        self.proj2 = nn.Conv2d(8, 8, 1)

    def forward(self, x):
        x = self.stem(x)
        y = self.proj(self.dw(x))
        return self.proj2(y) + y


@pytest.mark.tvm
@pytest.mark.slow
def test_compiled_network_runs_the_table_kernels_schedules(tmp_path):
    """Every convolution task of a compiled network (with and without ReLU, depthwise included) replays the
    schedule its table kernel was tuned and timed with; nothing is tuned for them, and the output is right."""
    pytest.importorskip("tvm")
    from hao.kernel import KernelSpec
    from hao.latency.validate import Tuner, compile_network

    tuner = Tuner(tmp_path / "db", threads=1, trials=2, seed=0)
    try:
        for k in (KernelSpec("conv2d", 3, 8, 8, 8, 3, 1), KernelSpec("dwconv2d", 8, 8, 8, 8, 3, 1, 8),
                  KernelSpec("conv2d", 8, 8, 8, 8, 1, 1)):
            m = tuner.backend.measure(k)  # tunes and commits the table kernel's schedule
            assert m.ok, m.reason
        torch.manual_seed(0)
        r = compile_network(_Block().eval(), (3, 8, 8), tuner, rounds=1, repeat=2, min_repeat_ms=1)
    finally:
        tuner.close()
    # stem, depthwise, the projection (conv + bias) and the residual projection (conv + bias + add)
    assert tuner.transferred_tasks == 4
    assert r["max_abs_err_vs_torch"] < 1e-3 and r["measured_ms"] > 0


class _NoTuner:
    """Stands in for the Tuner when nothing is compiled."""

    tuned_tasks = reused_tasks = transferred_tasks = 0

    def __init__(self, *a, **k):
        pass

    def close(self):
        pass


def test_validation_that_compiles_nothing_leaves_the_predictor_alone(tmp_path, monkeypatch):
    """A run where every network fails writes its report (with the errors) but fits nothing."""
    import hao.latency.validate as v
    from hao.errors import ConfigError
    from hao.latency import calibrate as cal
    from hao.latency.backend import get_backend
    from hao.latency.table import register_hardware
    from hao.space import get_space

    sp = get_space("mbconv-fmnist")
    plan = cal.plan_kernels(cal.space_kernels(sp), precisions=((32, 32),), include_space_bits=False)
    cal.calibrate("val-dry", plan, get_backend("roofline"), root=tmp_path, progress=False)
    register_hardware(tmp_path / "val-dry", "val-dry")

    def broken(*a, **k):
        raise RuntimeError("no compiler today")

    monkeypatch.setattr(v, "Tuner", _NoTuner)
    monkeypatch.setattr(v, "build_network", broken)
    with pytest.raises(ConfigError, match="only 0 of 3 validation networks.*unchanged.*no compiler today"):
        v.validate_networks("val-dry", "mbconv-fmnist", n_networks=3, calib_networks=1, progress=False)
    assert not (tmp_path / "val-dry" / "predictor.json").exists()
    report = json.loads((tmp_path / "val-dry" / "validation_mbconv-fmnist.json").read_text())
    assert [r["ok"] for r in report["networks"]] == [False] * 4


def test_time_interleaved_keeps_each_networks_quietest_session():
    """Round-robin passes, rotated order; a burst that inflates one pass does not reach the result."""
    from hao.errors import ConfigError
    from hao.latency.validate import time_interleaved

    calls = []

    class Fake:
        def __init__(self, name, base):
            self.name, self.base = name, base

        def time_session(self, repeat, min_repeat_ms):
            calls.append(self.name)
            burst = 3.0 if len(calls) <= 3 else 1.0  # the whole first pass overlaps a burst
            return np.full(repeat, self.base * burst) + np.arange(repeat) * 1e-3

    nets = [Fake("a", 1.0), Fake("b", 2.0), Fake("c", 0.5)]
    res = time_interleaved(nets, passes=3, repeat=5, reference=None)
    assert calls == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert [r["measured_ms"] for r in res] == pytest.approx([1.002, 2.002, 0.502])
    assert res[0]["session_medians_ms"] == pytest.approx([3.002, 1.002, 1.002]) and res[0]["repeats"] == 5
    with pytest.raises(ConfigError, match="passes must be an int >= 1, got 0"):
        time_interleaved(nets, passes=0)

    class Broken:
        def time_session(self, repeat, min_repeat_ms):
            raise RuntimeError("device lost")

    calls.clear()
    res = time_interleaved([Fake("a", 1.0), Broken(), Fake("c", 0.5)], passes=2, repeat=3, reference=None)
    assert [r["ok"] for r in res] == [True, False, True] and "device lost" in res[1]["error"]
    assert calls == ["a", "c", "c", "a"]   # the broken network is not timed again; the others are kept


def test_time_interleaved_waits_out_a_slow_host_state(monkeypatch):
    """A slow host state (every network 1.6x slower for a while, nothing in /proc/stat) is seen through the
    reference network timed before each session; networks that had no fast-state session get extra passes."""
    from hao.errors import ConfigError
    from hao.latency import interference
    from hao.latency.validate import time_interleaved

    monkeypatch.setattr(interference, "cpu_counters", lambda: None)     # the load watch reads "unavailable": quiet

    log = []

    class Fake:
        def __init__(self, name, base):
            self.name, self.base = name, base

        def time_session(self, repeat, min_repeat_ms):
            log.append(self.name)
            slow = 1.6 if len(log) <= 8 else 1.0           # the host is slow for the first 8 sessions
            return np.full(repeat, self.base * slow) + np.arange(repeat) * 1e-3

    nets = [Fake("a", 1.0), Fake("b", 2.0), Fake("c", 0.5)]
    res = time_interleaved(nets, passes=2, max_passes=6, repeat=5)
    # pass 1: (ref a, a) (ref a, b) (ref a, c) all slow; pass 2 rotated: b still slow, then c, a fast;
    # pass 3: only b, which had no fast-state session
    assert log == ["a", "a", "a", "b", "a", "c", "a", "b", "a", "c", "a", "a", "a", "b"]
    assert [r["measured_ms"] for r in res] == pytest.approx([1.002, 2.002, 0.502])
    assert [r["sessions"] for r in res] == [2, 3, 2] and all(r["fast_state"] for r in res)
    assert res[1]["host_state_ratio"] == pytest.approx(1.0)
    assert res[1]["session_reference_ms"][0] == pytest.approx(1.601)

    log.clear()
    res = time_interleaved(nets, passes=2, repeat=5)      # no extra pass: b keeps a slow-state session, flagged
    assert res[1]["measured_ms"] == pytest.approx(3.202) and res[1]["fast_state"] is False
    assert res[1]["host_state_ratio"] == pytest.approx(1.601 / 1.001, rel=1e-4)
    with pytest.raises(ConfigError, match="max_passes must be an int >= passes"):
        time_interleaved(nets, passes=3, max_passes=2)


def test_front_candidates_are_validated_and_every_row_has_its_per_op_breakdown(tmp_path, monkeypatch):
    """``front=N`` adds N candidates of the space's front on this table (held out, scored on their own too); the
    per-op breakdown of each row adds up to its Σ kernels. Compilation and timing are faked: measured = 1.03·Σ."""
    import hao.latency.validate as v
    from hao.latency import calibrate as cal
    from hao.latency.backend import get_backend
    from hao.latency.table import register_hardware
    from hao.space import get_space

    sp = get_space("mbconv-fmnist")
    plan = cal.plan_kernels(cal.space_kernels(sp), precisions=((32, 32), (8, 8)), include_space_bits=False)
    cal.calibrate("val-front", plan, get_backend("roofline"), root=tmp_path, progress=False, recheck=0)
    register_hardware(tmp_path / "val-front", "val-front")

    class _Net:
        def __init__(self, ms):
            self.ms, self.facts = ms, {}

    built = []

    def fake_build(space, cand, precision, seed, tuner):
        ks = v._network_kernels(space, cand, precision)
        built.append(cand)
        return _Net(1.03 * float(v.LatencyPredictor.from_table("val-front").predict(ks, prefer_measured=True).sum()))

    monkeypatch.setattr(v, "Tuner", _NoTuner)
    monkeypatch.setattr(v, "build_candidate", fake_build)
    monkeypatch.setattr(v, "time_interleaved",
                        lambda nets, passes, **kw: [{"ok": True, "measured_ms": n.ms} for n in nets])
    rep = v.validate_networks("val-front", "mbconv-fmnist", n_networks=3, calib_networks=2, progress=False,
                              precision="mixed", front=3, out=tmp_path / "r.json")
    sources = [r["source"] for r in rep["networks"]]
    assert sources[:2] == ["anchor", "anchor"] and sources.count("random") == 3 and sources.count("front") == 3
    assert [r["candidate"] for r in rep["networks"][:2]] == [sp.smallest().to_dict(), sp.largest().to_dict()]
    assert [r["role"] for r in rep["networks"][:3]] == ["overhead-fit", "overhead-fit", "validation"]
    front = [r for r in rep["networks"] if r["source"] == "front"]
    assert all(r["role"] == "validation" for r in front)
    want = v.front_candidates("mbconv-fmnist", "val-front", 3)
    assert [r["candidate"] for r in front] == [c.to_dict() for c in want]
    assert rep["summary"]["front"]["n"] == 3 and rep["summary"]["n"] == 6
    for r in rep["networks"]:
        assert sum(r["predicted_by_op_ms"].values()) == pytest.approx(r["sum_kernels_ms"])
        assert set(r["predicted_by_op_ms"]) <= {"conv2d", "dwconv2d", "dense", "avgpool", "add"}


def test_a_report_kept_elsewhere_leaves_the_table_predictor_unchanged(tmp_path, monkeypatch):
    """fp32 validation refits ``predictor.json``'s overhead only when its report lands in the table folder (the
    default ``out``); with ``out`` elsewhere the predictor keeps the fit its own report documents. Compilation
    and timing are faked: measured = 1.2·Σ + 0.05 ms."""
    import hao.latency.validate as v
    from hao.latency import calibrate as cal
    from hao.latency.backend import get_backend
    from hao.latency.table import register_hardware
    from hao.space import get_space

    sp = get_space("mbconv-fmnist")
    plan = cal.plan_kernels(cal.space_kernels(sp), precisions=((32, 32),), include_space_bits=False)
    cal.calibrate("val-out", plan, get_backend("roofline"), root=tmp_path, progress=False, recheck=0)
    register_hardware(tmp_path / "val-out", "val-out")

    class _Net:
        def __init__(self, ms):
            self.ms, self.facts = ms, {}

    def fake_build(space, cand, precision, seed, tuner):
        ks = v._network_kernels(space, cand, precision)
        return _Net(1.2 * float(v.LatencyPredictor.from_table("val-out").predict(ks, prefer_measured=True).sum())
                    + 0.05)

    monkeypatch.setattr(v, "Tuner", _NoTuner)
    monkeypatch.setattr(v, "build_candidate", fake_build)
    monkeypatch.setattr(v, "time_interleaved",
                        lambda nets, passes, **kw: [{"ok": True, "measured_ms": n.ms} for n in nets])
    pj = tmp_path / "val-out" / "predictor.json"
    before = pj.read_text() if pj.exists() else None
    rep = v.validate_networks("val-out", "mbconv-fmnist", n_networks=3, calib_networks=2, progress=False,
                              out=tmp_path / "elsewhere.json")
    assert rep["predictor_updated"] is False and (tmp_path / "elsewhere.json").is_file()
    assert (pj.read_text() if pj.exists() else None) == before
    rep = v.validate_networks("val-out", "mbconv-fmnist", n_networks=3, calib_networks=2, progress=False)
    assert rep["predictor_updated"] is True
    saved = json.loads(pj.read_text())
    assert "validation_report" in json.dumps(saved) and "validation_mbconv-fmnist.json" in json.dumps(saved)
