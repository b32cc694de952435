"""Smoke test of experiments/fmnist_joint_search.py on its tiny CI setting (--smoke: predictor, no TVM)."""
import json

import pytest

from tests.experiments.conftest import FMNIST_CKPT, load_script, require_fmnist_search_inputs

CKPT = FMNIST_CKPT


@pytest.mark.slow
def test_fmnist_smoke(tmp_path):
    require_fmnist_search_inputs(CKPT)
    fj = load_script("fmnist_joint_search")
    s = fj.main(["--out", str(tmp_path), "--smoke", "--verify-random", "0", "--checkpoint-dir", str(CKPT)])
    d = json.loads((tmp_path / "summary.json").read_text())
    assert d["settings"]["smoke"] and d["settings"]["tvm"] is False
    assert "PREDICTOR, NOT MEASURED" in d["latency_source"]            # --no-tvm says so
    v = d["verified_front"]
    assert v["n"] == 2 and v["latency"]["n"] == 2
    assert 0 <= v["latency"]["share_within_10pct"] <= 1
    assert v["kendall_tau_proxy_vs_acc_drop"]["n"] == 2
    for c in d["candidates"]:
        # Ω is clamped at zero curvature (noisy negative trace estimates), so the proxy is never negative
        assert 0.0 <= c["accuracy"] <= 1.0 and c["predicted_ms"] > 0 and c["proxy"] >= 0
    assert set(d["baselines"]) == {"uniform int8 (largest arch)", "float32 (largest arch)"}
    # random search at the same evaluation count as the ILP sweep
    assert d["search"]["random_samples"] == d["settings"]["n_points"]
    import pandas as pd
    df = pd.read_csv(tmp_path / "verified.csv")
    assert (df["source"] == "ilp").sum() == 2 and (df["source"] == "baseline").sum() == 2
    assert (tmp_path / "ilp" / "pareto.csv").is_file() and (tmp_path / "random" / "pareto.csv").is_file()
    assert (tmp_path / "fmnist_front.png").stat().st_size > 5000
    assert s["wall_s"]["total_s"] > 0
