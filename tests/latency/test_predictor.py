"""LatencyPredictor: sklearn contract, determinism, and accuracy on held-out rows of the committed CPU table."""
from __future__ import annotations

import json

import numpy as np
import pytest

from hao.errors import ConfigError, NotFittedError
from hao.kernel import KernelSpec
from hao.latency.predictor import FlopsBaseline, LatencyPredictor, error_stats, kernel_features, FEATURE_NAMES
from hao.latency.table import list_hardware, load_table

CPU_TABLE = "cpu-rocketlake-2t"


def _cpu_table():
    if CPU_TABLE not in list_hardware():
        pytest.skip(f"committed table latency_models/{CPU_TABLE} is absent")
    t = load_table(CPU_TABLE)
    if len(t) < 100:
        pytest.skip(f"{CPU_TABLE} has only {len(t)} rows (calibration incomplete)")
    return t


def test_not_fitted_and_params():
    p = LatencyPredictor()
    with pytest.raises(NotFittedError, match="not fitted"):
        p.predict([KernelSpec("conv2d", 8, 8, 8, 8)])
    with pytest.raises(ConfigError, match="n_estimators must be an int >= 1"):
        LatencyPredictor(n_estimators=0).fit([KernelSpec("conv2d", 8, 8, 8, 8)] * 5, [1.0] * 5)
    with pytest.raises(ConfigError, match="quantiles"):
        LatencyPredictor(quantiles=(0.9, 0.1)).fit([KernelSpec("conv2d", 8, 8, 8, 8)] * 5, [1.0] * 5)
    assert set(p.get_params()) >= {"n_estimators", "random_state", "quantiles"}


def test_features_are_finite_and_named():
    ks = [KernelSpec("conv2d", 3, 16, 28, 28, 3, 1), KernelSpec("add", 16, 16, 7, 7, a_bits=8),
          KernelSpec("dense", 256, 10, 1, 1, w_bits=4, a_bits=4), KernelSpec("avgpool", 64, 64, 4, 4)]
    X = kernel_features(ks)
    assert X.shape == (4, len(FEATURE_NAMES)) and np.isfinite(X).all()


def test_beats_flops_baseline_on_held_out_rows():
    t = _cpu_table()
    ks = t.kernels()
    y = t.df["latency_ms"].to_numpy()
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(ks))
    n_test = len(ks) // 5
    test, train = idx[:n_test], idx[n_test:]
    p = LatencyPredictor(quantiles=None).fit([ks[i] for i in train], y[train])
    b = FlopsBaseline().fit([ks[i] for i in train], y[train])
    sp = error_stats(p.predict([ks[i] for i in test]), y[test])
    sb = error_stats(b.predict([ks[i] for i in test]), y[test])
    assert sp["median_abs_err_pct"] < sb["median_abs_err_pct"]
    assert sp["kendall_tau"] > sb["kendall_tau"]


def test_deterministic_refit_and_json_state(tmp_path):
    t = _cpu_table()
    a = LatencyPredictor.from_table(t)
    b = LatencyPredictor.from_table(t)
    ks = t.kernels()[:50]
    np.testing.assert_array_equal(a.predict(ks), b.predict(ks))
    lo, hi = a.predict_interval(ks)
    assert np.all(lo <= hi)
    a.overhead_ms_ = 0.123
    p = a.save_overhead(tmp_path)
    assert json.loads(p.read_text())["overhead_ms"] == 0.123


def test_overhead_per_space_is_kept_apart(tmp_path):
    """Each space's networks get the overhead fitted on them; a space without an entry gets the top level."""
    import shutil
    t = _cpu_table()
    shutil.copytree(t.path, tmp_path / "hw", ignore=shutil.ignore_patterns("tuning_db", "predictor.json"))
    folder = tmp_path / "hw"
    a = LatencyPredictor.from_table(folder, quantiles=None)
    a.overhead_ms_, a.overhead_per_kernel_ms_ = 0.5, 0.01
    a.save_overhead(folder, space="mbconv-fmnist")
    a.overhead_ms_, a.overhead_per_kernel_ms_ = 0.2, 0.03
    a.save_overhead(folder, space="vit-fmnist")
    doc = json.loads((folder / "predictor.json").read_text())
    assert set(doc["by_space"]) == {"mbconv-fmnist", "vit-fmnist"}
    assert doc["overhead_ms"] == 0.5                          # the first fit is the default; later ones don't move it
    m = LatencyPredictor.from_table(folder, space="mbconv-fmnist", quantiles=None)
    v = LatencyPredictor.from_table(folder, space="vit-fmnist", quantiles=None)
    o = LatencyPredictor.from_table(folder, space="other", quantiles=None)
    assert (m.overhead_ms_, m.overhead_per_kernel_ms_) == (0.5, 0.01)
    assert (v.overhead_ms_, v.overhead_per_kernel_ms_) == (0.2, 0.03)
    assert (o.overhead_ms_, o.overhead_per_kernel_ms_) == (0.5, 0.01)
    a.overhead_ms_ = 0.7
    a.save_overhead(folder, space="mbconv-fmnist")        # refitting the first space moves the default with it
    assert json.loads((folder / "predictor.json").read_text())["overhead_ms"] == 0.7
    assert LatencyPredictor.from_table(folder, space="vit-fmnist", quantiles=None).overhead_ms_ == 0.2


def test_network_latency_and_overhead_fit():
    ks = [KernelSpec("conv2d", c, 2 * c, 16, 16, 3, 1) for c in (4, 8, 16, 32, 64)] * 2
    y = [k.macs * 1e-8 + 0.01 for k in ks]
    p = LatencyPredictor(n_estimators=50, quantiles=None).fit(ks, y)
    nets = [ks[:3], ks[:5], ks[2:5]]
    sums = [p.predict(n, prefer_measured=True).sum() for n in nets]
    p.fit_overhead(nets, [s + 0.5 + 0.1 * len(n) for s, n in zip(sums, nets)])
    assert p.overhead_ms_ == pytest.approx(0.5, abs=1e-6)
    assert p.overhead_per_kernel_ms_ == pytest.approx(0.1, abs=1e-6)
    assert p.network_latency(nets[0]) == pytest.approx(sums[0] + 0.5 + 0.3, rel=1e-6)


def test_plain_tables_predict_as_before_block_features():
    """Block-level tables added feature columns for composite ops only: a kernel-level table's fit is the one it
    always was (pinned: predictions of the committed table, recorded before block tables existed — extra columns,
    even all-zero ones, change a subsampled boosted fit). Re-pinned when the table was recalibrated (2026-12-04) and
    when it gained the ViT's rows (the same day): fitted on its rows of plain ops (token rows switch their own
    columns on; the ViT added plain add/avgpool/dense rows at token shapes too)."""
    from hao.kernel import TOKEN_OPS
    from hao.latency.predictor import FEATURE_NAMES, LatencyPredictor
    from hao.latency.table import LatencyTable

    t = load_table("cpu-rocketlake-2t")
    plain = LatencyTable(t.df[~t.df["op"].isin(TOKEN_OPS)].reset_index(drop=True), t.meta)
    p = LatencyPredictor().fit(plain)
    assert p.block_features_ is False and p.n_features_in_ == len(FEATURE_NAMES) == 28
    ks = [KernelSpec("conv2d", 16, 96, 28, 28, 1, 1, 1, 8, 8), KernelSpec("dwconv2d", 96, 96, 28, 28, 5, 2, 96, 32, 32),
          KernelSpec("conv2d", 40, 120, 7, 7, 1, 1, 1, 32, 32)]
    assert p.predict(ks).tolist() == pytest.approx([0.019878440989062208, 0.027101208503223895, 0.008290379204962735],
                                                   rel=1e-6)
    with pytest.raises(ConfigError, match="composite block"):
        p.predict([KernelSpec("mbconv", 16, 16, 8, 8, 3, 1, mid_channels=48)])


def test_integer_overhead_is_kept_apart_and_chosen_for_integer_spaces(tmp_path):
    """int8/mixed validations store the integer networks' overhead beside the float one; a space whose every
    candidate deploys as an integer network gets it, a float request the float one."""
    import json
    import shutil

    from hao.latency.table import hardware_dir

    folder = tmp_path / "hw"
    shutil.copytree(hardware_dir(CPU_TABLE), folder, ignore=shutil.ignore_patterns("tuning_db", "*.json.xz"))
    (folder / "predictor.json").unlink(missing_ok=True)
    p = LatencyPredictor(quantiles=None).fit(load_table(folder))
    p.network_scale_, p.overhead_ms_, p.overhead_per_kernel_ms_ = 1.0, 0.0, 0.002
    p.save_overhead(folder, space="mbconv-fmnist")
    p.overhead_ms_, p.overhead_per_kernel_ms_ = 0.04, 0.0005
    p.save_overhead(folder, space="mbconv-fmnist", deploy="integer")
    p.overhead_ms_, p.overhead_per_kernel_ms_ = 0.0, 0.003      # a later float refit keeps the integer entry
    p.save_overhead(folder, space="mbconv-fmnist")
    doc = json.loads((folder / "predictor.json").read_text())
    assert doc["by_space"]["mbconv-fmnist"]["integer"]["overhead_ms"] == 0.04
    auto = LatencyPredictor.from_table(folder, space="mbconv-fmnist", quantiles=None)
    assert auto.deploy_ == "integer" and (auto.overhead_ms_, auto.overhead_per_kernel_ms_) == (0.04, 0.0005)
    flt = LatencyPredictor.from_table(folder, space="mbconv-fmnist", deploy="float", quantiles=None)
    assert flt.deploy_ == "float" and (flt.overhead_ms_, flt.overhead_per_kernel_ms_) == (0.0, 0.003)
    with pytest.raises(ConfigError, match="deploy"):
        p.save_overhead(folder, deploy="integer")
