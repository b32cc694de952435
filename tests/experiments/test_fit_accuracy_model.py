"""Smoke test of experiments/fit_accuracy_model.py on the committed end-to-end supernet: every step of the
protocol runs (architecture terms, fit, held-out report with baselines, latency bins, test-retest) and what it
writes loads back."""
import json

import pytest

from tests.experiments.conftest import REPO, load_script, require_fashion_mnist

E2E = REPO / "checkpoints" / "mbconv-fmnist"


@pytest.mark.slow
def test_fit_accuracy_model_smoke(tmp_path):
    require_fashion_mnist()
    if not (E2E / "supernet.pt").is_file():
        pytest.skip(f"no trained supernet in {E2E}")
    load_script("fit_accuracy_model").main(["--checkpoint-dir", str(E2E), "--out", str(tmp_path), "--smoke",
                                            "--float-eval", "--threads", "1", "--no-progress", "--layer-bits",
                                            "--arch-options", "--ridges", "10,100"])
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["tau_joint"]["model"]["n"] == 8 and "best_baseline" in report["tau_joint"]
    assert "model without detail terms" in report["tau_joint"]
    assert report["ridge_cv"]["ridge"] in (10.0, 100.0) and set(report["ridge_cv"]["cv_tau"]) == {"10.0", "100.0"}
    assert report["ceiling"]["n"] == 4 and len(report["tau_within_latency_bins"]["per_bin"]) == 2
    import hao
    from hao.proxy import CalibratedAccuracyModel
    space = hao.get_space("mbconv-fmnist")
    model = CalibratedAccuracyModel.from_checkpoint(space, tmp_path)
    assert model.ridge == report["ridge_cv"]["ridge"] and model.groups.penalized.sum() > 0
    pred, sd = model.predict([space.largest(), space.smallest()])
    assert pred.shape == (2,) and (sd > 0).all()
