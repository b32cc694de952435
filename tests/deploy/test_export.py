"""``hao export --tvm native``: the integer library of a candidate of the committed supernet, its deploy.json, and
its example run in a fresh interpreter where torch and hao cannot be imported."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

tvm = pytest.importorskip("tvm", reason="apache-tvm is not installed")

REPO = Path(__file__).resolve().parents[2]
NO_TORCH = """import runpy, sys
sys.modules["torch"] = None   # importing torch (or hao) now fails
sys.modules["hao"] = None
runpy.run_path(sys.argv[1], run_name="__main__")
"""

pytestmark = [pytest.mark.tvm, pytest.mark.slow]


def test_export_native_integer_library_runs_without_torch(tmp_path):
    from hao.cli import main
    from hao.space import get_space

    ckpt = REPO / "checkpoints" / "mbconv-fmnist" / "supernet.pt"
    if not ckpt.is_file():
        pytest.skip("no committed mbconv-fmnist supernet")
    sp = get_space("mbconv-fmnist")
    cand = sp.sample(np.random.default_rng(2))
    (tmp_path / "c.json").write_text(cand.to_json())
    out = tmp_path / "e"
    assert main(["export", str(tmp_path / "c.json"), "--tvm", "native", "--trials", "0", "--calib-images", "250",
                 "--threads", "1", "--no-progress", "--out", str(out)]) == 0
    d = json.loads((out / "deploy.json").read_text())
    assert d["input"]["shape"] == [1, 1, 28, 28] and d["output"]["shape"] == [1, 10]
    assert 0 < d["input"]["quantization"]["scale"] and 0 <= d["input"]["quantization"]["zero_point"] <= 255
    assert d["check"]["same_top1"] and d["check"]["max_abs_diff"] <= d["check"]["tolerance"]
    assert d["kernels"] == [k.short() for k in sp.kernels(cand)]
    assert d["schedules"]["default"] > 0 and d["timing"]["measured_ms"] > 0 and d["timing"]["loadavg_start"]
    assert len(d["timing"]["session_other_cores"]) == len(d["timing"]["session_medians_ms"])  # the load watch
    assert d["timing"]["timed_quiet"] in (True, False)
    assert (out / "model.so").stat().st_size > 0 and (out / "integer_network" / "integer_network.npz").is_file()
    assert json.loads((out / "export.json").read_text())["calibrated_on"].startswith("250 Fashion-MNIST")
    example = (out / "run_example.py").read_text()
    assert len(example.splitlines()) <= 25 and "torch" not in example.replace("no torch", "")
    (tmp_path / "no_torch.py").write_text(NO_TORCH)
    r = subprocess.run([sys.executable, str(tmp_path / "no_torch.py"), str(out / "run_example.py")],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "top-1 class" in r.stdout and "latency" in r.stdout
