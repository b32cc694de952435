"""Smoke test of experiments/train_supernet.py: a few sandwich steps, evaluation, traces → sensitivity.json."""
import json

import pytest

from hao.proxy import AccuracyProxy, SensitivityTable
from tests.experiments.conftest import load_script


@pytest.mark.slow
def test_train_supernet_smoke(tmp_path):
    from hao.data import DatasetNotFoundError, find_fashion_mnist
    try:
        find_fashion_mnist()
    except DatasetNotFoundError as exc:
        pytest.skip(f"Fashion-MNIST is not installed: {exc}")
    ts = load_script("train_supernet")
    args = ["--out", str(tmp_path), "--steps", "2", "--batch-size", "8", "--calib-images", "32",
            "--test-images", "64", "--trace-images", "32", "--trace-batch", "16", "--trace-samples", "4",
            "--threads", "1"]
    ts.main(args)
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["steps"] == 2 and meta["finished_schedule"]
    assert set(meta["accuracy"]) == {"largest_w8a8", "largest_w4a4", "smallest_w8a8", "smallest_w2a4"}
    assert all(v["n"] == 64 and 0 <= v["accuracy"] <= 1 for v in meta["accuracy"].values())
    # the sensitivity table belongs to this checkpoint (sha256) and carries the activation term
    import hao
    space = hao.get_space("mbconv-fmnist")
    t = SensitivityTable.load(tmp_path, checkpoint=tmp_path / "supernet.pt", space=space)
    assert t.traces.samples == 4 and t.traces.info["method"] == "ggn"
    assert t.activations and all(st["trace"] >= 0 for st in t.activations.values())
    proxy = AccuracyProxy.from_checkpoint(space, tmp_path)
    lo, hi = proxy.score([space.largest(), space.uniform(2, 4)])
    assert proxy.activations and 0 <= lo < hi


def test_refuses_to_replace_a_checkpoint(tmp_path):
    """The committed checkpoint and its traces are measured data: replacing them needs --force, and the refusal
    comes before any work."""
    import subprocess
    import sys

    from tests.experiments.conftest import REPO

    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / "supernet.pt").write_bytes(b"trained weights")
    (ck / "sensitivity.json").write_text("{}")
    for extra in ([], ["--sensitivity-only"]):
        r = subprocess.run([sys.executable, str(REPO / "experiments" / "train_supernet.py"), "--out",
                            str(tmp_path / "run"), "--checkpoint-dir", str(ck), "--steps", "1", *extra],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 2, r.stderr
        assert "nothing was changed" in r.stderr and "--force" in r.stderr and "Traceback" not in r.stderr
    assert (ck / "supernet.pt").read_bytes() == b"trained weights" and (ck / "sensitivity.json").read_text() == "{}"
