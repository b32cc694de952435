"""Calibration runner: coverage of a space, failures recorded, atomic rows, resume after a kill."""
from __future__ import annotations


import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hao.kernel import KernelSpec
from hao.latency.backend import RooflineBackend, get_backend, kernel_precision, list_backends
from hao.latency.calibrate import calibrate, plan_kernels, repair_tail, space_kernels
from hao.latency.table import LatencyTable, read_table_csv
from hao.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]

KS = [KernelSpec("conv2d", 16, 32, 8, 8, 3, 1, 1, 4, 8), KernelSpec("conv2d", 16, 32, 8, 8, 3, 1, 1, 8, 8),
      KernelSpec("dwconv2d", 32, 32, 8, 8, 5, 2, 32, 2, 4), KernelSpec("add", 32, 32, 4, 4, a_bits=8)]


def test_plan_covers_every_shape_at_fp32_int8_and_space_bits():
    plan = plan_kernels(KS)
    keys = {k.key() for k in plan}
    assert len(keys) == len(plan)  # no duplicates
    for k in KS:
        assert k.key() in keys
        for w, a in ((32, 32), (8, 8)):
            kk = KernelSpec(k.op, k.in_channels, k.out_channels, k.in_h, k.in_w, k.kernel, k.stride, k.groups,
                            w if k.op not in ("add", "avgpool") else 32, a)
            assert kk.key() in keys
    # tuned (fp32/int8) kernels come before the mapped sub-8-bit ones
    precs = [kernel_precision(k) for k in plan]
    first_mapped = precs.index("int8-mapped")
    assert all(p == "int8-mapped" for p in precs[first_mapped:])
    assert len(plan_kernels(KS, limit=3)) == 3


def test_space_kernels_cover_sampled_candidates():
    import numpy as np

    from hao.space import get_space

    sp = get_space("resnet-cifar")
    allk = set(space_kernels(sp))
    rng = np.random.default_rng(1)
    for _ in range(20):
        assert set(sp.kernels(sp.sample(rng))) <= allk


def test_backend_registry():
    assert {"roofline", "tvm"} <= set(list_backends())
    with pytest.raises(ConfigError, match=r"registered backends: \[.*'roofline'.*'tvm'"):
        get_backend("gpu-magic")


def test_failures_are_recorded_and_run_goes_on(tmp_path):
    res = calibrate("hw", plan_kernels(KS), RooflineBackend(fail_ops=("dwconv2d",)), root=tmp_path,
                    progress=False)
    assert res["failed"] == 3 and res["measured"] == len(plan_kernels(KS)) - 3
    failed = read_table_csv(tmp_path / "hw" / "failed.csv")
    assert set(failed["op"]) == {"dwconv2d"} and all("fail_ops" in r for r in failed["reason"])
    t = LatencyTable.load(tmp_path / "hw")
    assert t.meta["failed_rows"] == 3 and "calibration_runs" in t.meta
    # resume: nothing left to do; failed kernels are skipped unless retried
    res2 = calibrate("hw", plan_kernels(KS), RooflineBackend(), root=tmp_path, progress=False)
    assert res2["measured"] == 0 and res2["skipped"] == len(plan_kernels(KS))
    res3 = calibrate("hw", plan_kernels(KS), RooflineBackend(), root=tmp_path, progress=False, retry_failed=True)
    assert res3["measured"] == 3


def test_bad_hardware_name(tmp_path):
    with pytest.raises(ConfigError, match="without slashes"):
        calibrate("../evil", KS, RooflineBackend(), root=tmp_path, progress=False)


def test_repair_tail(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("a,b\n1,2\n3,")
    assert repair_tail(p) == 2
    assert p.read_text() == "a,b\n1,2\n"
    assert repair_tail(p) == 0


def test_resume_after_kill_loses_no_rows(tmp_path):
    """SIGKILL a calibration mid-run, corrupt the tail as a torn write would, resume: complete, valid, unique."""
    script = f"""
import sys
sys.path.insert(0, {str(REPO)!r})
from hao.space import get_space
from hao.latency.backend import RooflineBackend
from hao.latency.calibrate import calibrate, plan_kernels, space_kernels
plan = plan_kernels(space_kernels(get_space("resnet-cifar")))
calibrate("hw", plan, RooflineBackend(delay_s=float(sys.argv[1])), root={str(tmp_path)!r}, progress=False)
"""
    proc = subprocess.Popen([sys.executable, "-c", script, "0.01"], cwd=REPO)
    table = tmp_path / "hw" / "table.csv"
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            if table.is_file() and table.read_text().count("\n") > 30:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    n_before = table.read_text().count("\n") - 1
    assert n_before >= 30
    LatencyTable.load(tmp_path / "hw")  # valid after the kill: no half rows
    with open(table, "a") as fh:  # what a power loss inside write() could leave
        fh.write("conv2d,16,32,8")
    subprocess.run([sys.executable, "-c", script, "0"], cwd=REPO, check=True, timeout=300)
    t = LatencyTable.load(tmp_path / "hw")
    from hao.latency.calibrate import plan_kernels, space_kernels
    from hao.space import get_space

    plan = plan_kernels(space_kernels(get_space("resnet-cifar")))
    assert len(t) == len(plan)
    assert t.keys() == {k.key() for k in plan}


def test_sigterm_keeps_rows_and_updates_meta(tmp_path):
    """SIGTERM ends a run cleanly: meta.json's row count matches the table and the run is marked finished."""
    import json

    script = f"""
import sys
sys.path.insert(0, {str(REPO)!r})
from hao.space import get_space
from hao.latency.backend import RooflineBackend
from hao.latency.calibrate import calibrate, plan_kernels, space_kernels
plan = plan_kernels(space_kernels(get_space("resnet-cifar")))
calibrate("hw", plan, RooflineBackend(delay_s=0.01), root={str(tmp_path)!r}, progress=False)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stderr=subprocess.DEVNULL)
    table = tmp_path / "hw" / "table.csv"
    try:
        deadline = time.time() + 180
        while time.time() < deadline and not (table.is_file() and table.read_text().count("\n") > 20):
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    t = LatencyTable.load(tmp_path / "hw")
    meta = json.loads((tmp_path / "hw" / "meta.json").read_text())
    assert meta["rows"] == len(t) >= 20
    assert "finished_at" in meta["calibration_runs"][-1]
