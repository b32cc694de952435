"""Smoke test of experiments/vit_search.py (--smoke: the trained ViT supernet, the znver4 table's token rows,
predictor instead of TVM)."""
import json

import pytest

from tests.experiments.conftest import REPO, load_script, require_fashion_mnist

CKPT = REPO / "checkpoints" / "vit-fmnist"


@pytest.mark.slow
def test_vit_search_smoke(tmp_path):
    if not (CKPT / "sensitivity.json").is_file() or not (CKPT / "supernet.pt").is_file():
        pytest.skip(f"the trained ViT supernet is not in {CKPT}")
    if not (REPO / "latency_models" / "cpu-znver4-2t" / "table.csv").is_file():
        pytest.skip("latency_models/cpu-znver4-2t (the table with token rows) is absent")
    require_fashion_mnist()
    vs = load_script("vit_search")
    vs.main(["--out", str(tmp_path), "--smoke", "--verify-random", "0", "--hardware", "cpu-znver4-2t"])
    d = json.loads((tmp_path / "summary.json").read_text())
    assert d["settings"]["space"] == "vit-fmnist" and d["settings"]["hardware"] == "cpu-znver4-2t"
    assert d["verified_front"]["n"] == 2
    for c in d["candidates"]:
        assert 0.0 <= c["accuracy"] <= 1.0 and c["predicted_ms"] > 0
        assert '"space": "vit-fmnist"' in c["config"] or "vit-fmnist" in c["config"]
    assert (tmp_path / "fmnist_front.png").is_file()
