"""Smoke test of experiments/image_noise.py on the committed supernet: per-image rows are the accuracy hao
evaluate measures, the report has every figure, and a second run reads the cache instead of measuring."""
import json

import numpy as np
import pytest

from tests.experiments.conftest import FMNIST_CKPT, load_script, require_fashion_mnist


@pytest.mark.slow
def test_image_noise_smoke(tmp_path):
    require_fashion_mnist()
    if not (FMNIST_CKPT / "supernet.pt").is_file() or not (FMNIST_CKPT / "accmodel").is_dir():
        pytest.skip(f"no trained supernet and accuracy model in {FMNIST_CKPT}")
    args = ["--checkpoint-dir", str(FMNIST_CKPT), "--out", str(tmp_path), "--smoke", "--threads", "1",
            "--no-progress", "--test-seeds", "5,6"]
    mod = load_script("image_noise")
    report = mod.main(args)
    for s in ("5", "6"):
        r = report["per_seed"][s]
        assert r["n"] == 6 and r["pair_sd"] > 0 and -1 <= r["ceiling_images"] <= 1
        assert set(r["model"]) == {"tau", "se_candidates", "sd_images"}
    assert report["extra_sd"] > 0  # the committed folder has test-retest pairs
    assert report["over_seeds"]["model"]["se"] is not None

    # the cached rows are what hao evaluate measures on the same images
    import hao
    from hao.data import fashion_mnist, loader
    from hao.train import load_supernet
    from hao.train.candidates import evaluate_candidates
    from hao.train.teacher import split_validation
    from hao.space import Candidate
    space = hao.get_space("mbconv-fmnist")
    z = np.load(tmp_path / "s5_002.npz")
    train, _ = split_validation(fashion_mnist("train"), 5000, 0)
    calib = list(loader(train.subset(32, seed=1), 250))
    test = list(loader(fashion_mnist("test").subset(64, seed=7), 500))
    (row,) = evaluate_candidates(space, load_supernet(space, FMNIST_CKPT / "supernet.pt"),
                                 [Candidate.from_json(str(z["candidate"]))], calib, test, progress=False,
                                 exact=False)
    assert 100 * np.unpackbits(z["correct"])[:64].mean() == pytest.approx(row["accuracy"])

    stamp = {f.name: f.stat().st_mtime_ns for f in tmp_path.glob("*.npz")}
    again = mod.main(args)
    assert {f.name: f.stat().st_mtime_ns for f in tmp_path.glob("*.npz")} == stamp
    assert again["per_seed"] == report["per_seed"]
    assert json.loads((tmp_path / "report.json").read_text())["per_seed"] == report["per_seed"]
