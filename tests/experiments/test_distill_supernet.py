"""Smoke test of experiments/distill_supernet.py: from a teacher folder to a loadable distilled supernet."""
import json

import pytest
import torch

from hao.errors import ConfigError
from tests.experiments.conftest import load_script, require_fashion_mnist


def test_distill_supernet_smoke(tmp_path):
    require_fashion_mnist()
    import hao
    from hao.train import load_supernet
    from hao.train.teacher import TeacherConfig, build_teacher
    space = hao.get_space("mbconv-fmnist")
    tdir = tmp_path / "teacher"
    tdir.mkdir()
    cfg = TeacherConfig(val_images=500)
    teacher = build_teacher(space, cfg.seed)
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in teacher.state_dict().items()},
               tdir / "teacher.pt")
    (tdir / "teacher.json").write_text(json.dumps({"space": space.name, "config": json.loads(cfg.to_json())}))
    ds = load_script("distill_supernet")
    with pytest.raises(ConfigError, match="train the teacher first"):
        ds.main(["--teacher", str(tmp_path / "none"), "--out", str(tmp_path / "x")])
    out = tmp_path / "distill"
    args = ["--teacher", str(tdir), "--out", str(out), "--steps-per-stage", "2", "--batch-size", "8",
            "--n-random", "0", "--calib-images", "32", "--eval-images", "64", "--threads", "1", "--no-progress"]
    meta = ds.main(args)
    assert meta["per_stage_loss"].keys() == {0, 1, 2, 3}
    assert all(v["n"] == 64 and 0 <= v["accuracy"] <= 1 for v in meta["validation"].values())
    saved = json.loads((out / "distill.json").read_text())
    assert saved["config"]["steps_per_stage"] == 2 and saved["wall_s"] > 0
    net = load_supernet(space, out / "supernet.pt")  # loadable by the rest of hao
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in space.supernet(0).parameters())
