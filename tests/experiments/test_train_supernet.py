"""Smoke test of experiments/train_supernet.py: a few sandwich steps, evaluation, traces → sensitivity.json."""
import json

import pytest

from hao.proxy import AccuracyProxy, SensitivityTable
from tests.experiments.conftest import load_script, require_fashion_mnist


@pytest.mark.slow
def test_train_supernet_smoke(tmp_path):
    require_fashion_mnist()
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


@pytest.mark.slow
def test_vit_recipe_smoke_teacher_weights_start_the_supernet(tmp_path):
    """The ViT recipe: the teacher (largest, float32) is saved with the supernet's own parameter names, so it
    starts the sandwich training directly (``--init teacher.pt``); evaluation and traces run on the ViT."""
    require_fashion_mnist()
    import torch

    import hao
    from hao.train.teacher import build_teacher
    space = hao.get_space("vit-fmnist")
    (tmp_path / "t").mkdir()
    teacher = build_teacher(space, seed=3)                    # what train_teacher.py trains and saves (fp16)
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in teacher.state_dict().items()},
               tmp_path / "t" / "teacher.pt")
    ts = load_script("train_supernet")
    ts.main(["--space", "vit-fmnist", "--out", str(tmp_path / "s"), "--init", str(tmp_path / "t" / "teacher.pt"),
             "--random-bits-largest", "--steps", "2", "--batch-size", "8", "--calib-images", "32",
             "--test-images", "64", "--trace-images", "32", "--trace-batch", "16", "--trace-samples", "4",
             "--threads", "1"])
    meta = json.loads((tmp_path / "s" / "meta.json").read_text())
    assert meta["steps"] == 2 and meta["init"].endswith("teacher.pt")
    t = SensitivityTable.load(tmp_path / "s", checkpoint=tmp_path / "s" / "supernet.pt", space=space)
    assert any(len(k) == 6 for k in t.entries)          # group-aware entries of the head-split matrices
