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
    with pytest.raises(ConfigError, match=r"Known latency backends: roofline, tvm"):
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


# ---- retime ---------------------------------------------------------------------------------------------------
def _retime_fixture(tmp_path):
    """A small measured table (roofline at 50 GMAC/s) and its rows by key."""
    from hao.latency.calibrate import plan_kernels

    plan = plan_kernels(KS)
    calibrate("hw", plan, RooflineBackend(), root=tmp_path, progress=False)
    return plan, (tmp_path / "hw" / "table.csv").read_text()


def _by_key(folder):
    t = LatencyTable.load(folder)
    return t, {k.key(): t.latency(k) for k in t.kernels()}


class _Interrupting(RooflineBackend):
    """Roofline at another speed that raises KeyboardInterrupt (a Ctrl-C / kill) after ``stop_after`` kernels."""

    def __init__(self, stop_after=None, **kw):
        super().__init__(**kw)
        self.stop_after, self.seen = stop_after, []

    def measure(self, kernel):
        if self.stop_after is not None and len(self.seen) >= self.stop_after:
            raise KeyboardInterrupt("simulated interruption")
        self.seen.append(kernel.key())
        return super().measure(kernel)


def test_retime_replaces_rows_and_keeps_keys(tmp_path):
    import json

    from hao.latency.calibrate import RETIME_FILE, retime

    plan, before_text = _retime_fixture(tmp_path)
    t0, lat0 = _by_key(tmp_path / "hw")
    res = retime("hw", RooflineBackend(peak_gmacs=5.0, overhead_us=50.0), root=tmp_path, progress=False)
    assert res["retimed"] == len(plan) and res["table_rewritten"] and res["failed"] == 0
    t1, lat1 = _by_key(tmp_path / "hw")  # load_table validates the rewritten file
    assert list(t1.df["op"]) == list(t0.df["op"]) and t1.keys() == t0.keys()  # same rows, same order
    assert all(lat1[k] > lat0[k] for k in lat0)  # every row replaced by the (slower) new measurement
    assert list(t1.df["tuning_trials"]) == list(t0.df["tuning_trials"])  # tuning facts kept
    assert not (tmp_path / "hw" / RETIME_FILE).exists()
    run = json.loads((tmp_path / "hw" / "meta.json").read_text())["calibration_runs"][-1]
    assert run["kind"] == "retime" and run["measured"] == len(plan) and run["table_rewritten"]
    assert len(run["loadavg_start"]) == 3 and len(run["loadavg_end"]) == 3 and run["wall_s"] >= 0
    assert "nice" in run["priority"] and run["backend"] == "roofline"
    assert run["new_over_old_latency"]["median"] > 1


def test_retime_only_the_planned_rows(tmp_path):
    from hao.latency.calibrate import retime

    plan, _ = _retime_fixture(tmp_path)
    _, lat0 = _by_key(tmp_path / "hw")
    subset = plan[:3] + [KernelSpec("conv2d", 3, 5, 9, 9)]  # the last one is not in the table: ignored
    res = retime("hw", RooflineBackend(peak_gmacs=5.0, overhead_us=50.0), subset, root=tmp_path, progress=False)
    assert res["retimed"] == 3 and res["selected"] == 3
    _, lat1 = _by_key(tmp_path / "hw")
    changed = {k for k in lat0 if lat1[k] != lat0[k]}
    assert changed == {k.key() for k in plan[:3]}


def test_retime_resumes_after_interruption(tmp_path):
    from hao.latency.calibrate import RETIME_FILE, retime

    plan, before_text = _retime_fixture(tmp_path)
    _, lat0 = _by_key(tmp_path / "hw")
    first = _Interrupting(stop_after=4, peak_gmacs=5.0, overhead_us=50.0)
    with pytest.raises(KeyboardInterrupt):
        retime("hw", first, root=tmp_path, progress=False)
    # table.csv untouched, the 4 re-timed rows wait in the side file
    assert (tmp_path / "hw" / "table.csv").read_text() == before_text
    side = read_table_csv(tmp_path / "hw" / RETIME_FILE)
    assert len(side) == 4
    with open(tmp_path / "hw" / RETIME_FILE, "a") as fh:  # a torn write of a 5th row
        fh.write("conv2d,16,32,8")
    second = _Interrupting(peak_gmacs=5.0, overhead_us=50.0)
    res = retime("hw", second, root=tmp_path, progress=False)
    assert res["resumed"] == 4 and res["retimed"] == len(plan) - 4 and res["table_rewritten"]
    assert not set(first.seen) & set(second.seen)  # nothing measured twice
    assert set(first.seen) | set(second.seen) == set(lat0)
    t1, lat1 = _by_key(tmp_path / "hw")
    assert len(t1) == len(plan) and all(lat1[k] > lat0[k] for k in lat0)
    assert not (tmp_path / "hw" / RETIME_FILE).exists()


def test_retime_failure_keeps_the_old_row(tmp_path):
    import json

    from hao.latency.calibrate import retime

    plan, _ = _retime_fixture(tmp_path)
    _, lat0 = _by_key(tmp_path / "hw")
    res = retime("hw", RooflineBackend(peak_gmacs=5.0, overhead_us=50.0, fail_ops=("dwconv2d",)), root=tmp_path,
                 progress=False)
    assert res["failed"] == 3 and res["table_rewritten"]
    _, lat1 = _by_key(tmp_path / "hw")
    for k in lat0:
        assert (lat1[k] == lat0[k]) == (k[0] == "dwconv2d")
    run = json.loads((tmp_path / "hw" / "meta.json").read_text())["calibration_runs"][-1]
    assert len(run["failures"]) == 3 and "fail_ops" in run["failures"][0]["reason"]


def test_retime_errors_name_the_fix(tmp_path):
    from hao.latency.calibrate import RETIME_FILE, retime

    with pytest.raises(ConfigError, match=r"does not exist.*without --retime"):
        retime("nothing", RooflineBackend(), root=tmp_path, progress=False)
    with pytest.raises(ConfigError, match="without slashes"):
        retime("../x", RooflineBackend(), root=tmp_path, progress=False)
    _retime_fixture(tmp_path)
    with pytest.raises(ConfigError, match=r"none of the 1 planned kernels.*--space"):
        retime("hw", RooflineBackend(), [KernelSpec("conv2d", 3, 5, 9, 9)], root=tmp_path, progress=False)
    (tmp_path / "hw" / RETIME_FILE).write_text("op,latency_ms\n")
    with pytest.raises(ConfigError, match=f"Delete .*{RETIME_FILE}"):
        retime("hw", RooflineBackend(), root=tmp_path, progress=False)


@pytest.mark.tvm
def test_tvm_calibration_resumes_its_own_target_and_refuses_another(tmp_path):
    """The folder check compares the target the TVM backend resolves (this CPU by default) with the one the
    table was measured for: resuming the same calibration goes on, another target is refused, nothing written."""
    pytest.importorskip("tvm")
    import json

    from hao.latency.calibrate import claim_calibration_folder
    from hao.latency.tvm_backend import TVMBackend, default_target

    folder = tmp_path / "cpu"
    folder.mkdir()
    (folder / "table.csv").write_text("op\n")
    (folder / "meta.json").write_text(json.dumps({"hardware": "cpu", "backend": "tvm",
                                                  "target": default_target(2)}))
    with TVMBackend(threads=2) as b:  # no --target: this CPU, as the table was measured
        claim_calibration_folder(folder, b)
    other = TVMBackend(threads=2, target={"kind": "llvm", "mcpu": "x86-64", "num-cores": 2})
    with pytest.raises(ConfigError, match="measured with target="):
        claim_calibration_folder(folder, other)
    other.close()
    assert (folder / "table.csv").read_text() == "op\n"
