"""Smoke test of experiments/proxy_fidelity.py on a tiny setting (few candidates, 200 test images)."""
import json
import os
from pathlib import Path

import pandas as pd
import pytest

from tests.experiments.conftest import REPO, load_script, require_fashion_mnist

CKPT = Path(os.environ.get("HAO_FMNIST_CHECKPOINT", REPO / "checkpoints" / "mbconv-fmnist"))


@pytest.mark.slow
def test_proxy_fidelity_smoke(tmp_path):
    if not (CKPT / "sensitivity.json").is_file() or not (CKPT / "supernet.pt").is_file():
        pytest.skip(f"trained supernet + sensitivities not in {CKPT} (experiments/train_supernet.py makes them)")
    require_fashion_mnist()
    pf = load_script("proxy_fidelity")
    r = pf.main(["--out", str(tmp_path), "--checkpoint-dir", str(CKPT), "--n-joint", "4", "--n-bits", "3",
                 "--n-arch", "3", "--test-images", "200", "--calib-images", "100", "--zeroq-images", "8",
                 "--zeroq-steps", "2", "--trace-samples", "4", "--workers", "1", "--threads", "1"])
    d = json.loads((tmp_path / "fidelity.json").read_text())
    assert d == json.loads(json.dumps(r))
    assert d["n_candidates"] == 10 and d["test_images"] == 200
    assert set(d["kendall_tau"]) == {"joint", "bits", "arch", "all"}
    for kind, n in (("joint", 4), ("bits", 3), ("arch", 3), ("all", 10)):
        v = d["kendall_tau"][kind]
        assert v["n"] == n
        for s in ("proxy_hessian", "proxy_zeroq", "proxy_weight_norm", "neg_bops", "random"):
            tau = v["acc_drop"][s]["tau"]
            assert tau != tau or -1.0 <= tau <= 1.0          # nan allowed for constant scores (e.g. MACs)
    df = pd.read_csv(tmp_path / "candidates.csv")
    assert len(df) == 10 and set(df["set"]) == {"joint", "bits", "arch"}
    assert df["accuracy"].between(0, 1).all() and (df["proxy_hessian"] >= 0).all()
    if "proxy_hessian_weights_only" in df:            # a table with activation statistics
        assert (df["proxy_hessian"] >= df["proxy_hessian_weights_only"] - 1e-12).all()
        assert d["proxy_terms"] == "weights and activation bits"
    tr = pd.read_csv(tmp_path / "traces.csv")           # real-data vs ZeroQ traces, one row per layer
    assert len(tr) == tr["layer"].nunique() > 40 and (tr["numel"] > 0).all()
    assert (tr["trace_zeroq"] >= 0).all()                # Gauss-Newton traces are never negative
    assert d["wall_s"] > 0 and d["eval_s_per_candidate"] > 0
    # the proxy's parts add up to it
    parts = df["term_architecture"] + df["term_weight_bits"] + df["term_activation_bits"]
    assert (parts - df["proxy_hessian"]).abs().max() <= 1e-9 * df["proxy_hessian"].abs().max()

    # --arch-weight-from: a calibration run (other candidates) whose accuracy drop is, by construction, the
    # quantization part alone must select a small arch_weight (ties go to the weight nearest 1); the rescored run
    # then carries the fitted column
    import numpy as np

    import hao
    from hao.proxy import AccuracyProxy

    space = hao.get_space("mbconv-fmnist")
    proxy = AccuracyProxy.from_checkpoint(space, CKPT)
    rng = np.random.default_rng(123)
    cal = [space.sample(rng) for _ in range(8)]
    cal_dir = tmp_path / "calibration"
    cal_dir.mkdir()
    pd.DataFrame({"set": "joint", "candidate": [c.to_json() for c in cal],
                  "acc_drop": AccuracyProxy(space, proxy.table, arch_weight=0.0).score(cal)}).to_csv(
        cal_dir / "candidates.csv", index=False)
    r2 = pf.main(["--out", str(tmp_path), "--checkpoint-dir", str(CKPT), "--n-joint", "4", "--n-bits", "3",
                  "--n-arch", "3", "--test-images", "200", "--calib-images", "100", "--zeroq-images", "8",
                  "--zeroq-steps", "2", "--trace-samples", "4", "--workers", "1", "--threads", "1", "--rescore",
                  "--arch-weight-from", str(cal_dir)])
    fit = r2["arch_weight_fit"]
    assert fit["arch_weight"] < 0.1 and fit["calibration_joint_n"] == 8
    assert fit["calibration_tau_by_weight"]["0.0"] == pytest.approx(1.0)
    assert fit["calibration_tau_by_weight"][str(fit["arch_weight"])] == pytest.approx(1.0)
    assert fit["calibration_tau_by_weight"]["1.0"] < 1.0
    assert "proxy_hessian_fitted_arch_weight" in r2["kendall_tau"]["joint"]["acc_drop"]
