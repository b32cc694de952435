"""Load detection while timing: the CPU-time monitor sees another process, the calibration flags rows timed under
load, and the final re-check refuses a table whose machine changed speed during the run."""
from __future__ import annotations

import json
import math
import subprocess
import sys
import time

import pytest

from hao.kernel import KernelSpec
from hao.latency.backend import Measurement, RooflineBackend
from hao.latency.calibrate import DRIFT_LIMIT, calibrate, recheck_rows
from hao.latency.interference import QUIET_OTHER_CORES, Interference, cpu_counters, monitor
from hao.latency.table import LatencyTable

pytestmark = pytest.mark.skipif(cpu_counters() is None, reason="needs Linux /proc/stat")

KS = [KernelSpec("conv2d", 16, 32, 8, 8, 3, 1, 1, 32, 32), KernelSpec("conv2d", 32, 32, 8, 8, 1, 1, 1, 32, 32),
      KernelSpec("dwconv2d", 32, 32, 8, 8, 5, 1, 32, 32, 32), KernelSpec("conv2d", 32, 64, 8, 8, 3, 2, 1, 32, 32)]


def test_monitor_sees_a_busy_process_and_not_its_own_work():
    spin = subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t<20: pass"])
    try:
        time.sleep(0.3)
        with monitor() as got:
            time.sleep(0.6)  # we do nothing: the other process's busy core is all that is counted
        busy = got[0]
    finally:
        spin.kill()
        spin.wait()
    assert busy.available and busy.wall_s >= 0.55
    assert busy.other_cores >= 0.6, busy  # one spinning thread ~ 1 core
    assert not busy.quiet()
    # our own CPU work is not "other"
    with monitor() as got:
        t = time.perf_counter()
        while time.perf_counter() - t < 0.4:
            sum(range(1000))
    own = got[0]
    assert own.other_cores < busy.other_cores


def test_quiet_rule():
    assert Interference(0.1, 0.0, 1.0).quiet()
    assert not Interference(QUIET_OTHER_CORES + 0.01, 0.0, 1.0).quiet()
    assert not Interference(0.1, 0.2, 1.0).quiet()  # stolen time counts too
    assert Interference(5.0, 0.0, 1.0, available=False).quiet()  # nothing can be detected there
    assert Interference(0.5, 0.0, 1.0).quiet(limit=0.6)


class _Flagging(RooflineBackend):
    """Roofline whose measurements of ``loaded`` kernels report load, and whose speed changes by ``drift``
    after ``first`` measurements (the machine got slower between the run and its re-check)."""

    def __init__(self, loaded=(), drift=1.0, first=None, **kw):
        super().__init__(**kw)
        self.loaded, self.drift, self.first, self.n = set(loaded), drift, first, 0

    def measure(self, kernel):
        m = super().measure(kernel)
        self.n += 1
        f = self.drift if self.first is not None and self.n > self.first else 1.0
        return Measurement(kernel, ok=True, latency_ms=m.latency_ms * f, std_ms=0.0, repeats=1, impl=m.impl,
                           extra={"other_cores": 1.0 if kernel.key() in self.loaded else 0.0,
                                  "quiet": kernel.key() not in self.loaded})


def test_calibrate_flags_loaded_rows_and_records_them(tmp_path):
    b = _Flagging(loaded={KS[1].key()})
    res = calibrate("hw", KS, b, root=tmp_path, progress=False, recheck=0, defer_passes=2, defer_pause_s=0)
    assert res["measured"] == len(KS) and b.n == len(KS) + 2  # set aside, re-measured twice, then written
    assert res["loaded_rows"] == [KS[1].short()]
    t = LatencyTable.load(tmp_path / "hw")
    assert list(t.df["other_cores"]) == [0.0, 0.0, 0.0, 1.0]  # every row says how loaded its timing was
    run = json.loads((tmp_path / "hw" / "meta.json").read_text())["calibration_runs"][-1]
    assert run["n_loaded_rows"] == 1 and run["loaded_rows"] == [KS[1].short()]


@pytest.mark.parametrize("drift,drifted", [(1.0, False), (1.0 + 2 * DRIFT_LIMIT, True), (0.7, True)])
def test_final_recheck_detects_a_speed_change(tmp_path, drift, drifted):
    res = calibrate("hw", KS, _Flagging(drift=drift, first=len(KS)), root=tmp_path, progress=False, recheck=3)
    check = res["recheck"]
    assert check["n"] == 3 and check["drifted"] is drifted
    assert all(math.isclose(r["ratio"], drift, rel_tol=1e-3) for r in check["rows"])


def test_recheck_is_seeded():
    b = RooflineBackend()
    done = [(k, b.measure(k).latency_ms) for k in KS]
    a1 = [r["kernel"] for r in recheck_rows(b, done, 2, seed=3)["rows"]]
    a2 = [r["kernel"] for r in recheck_rows(b, done, 2, seed=3)["rows"]]
    assert a1 == a2 and len(a1) == 2


def test_cli_exits_nonzero_naming_loaded_rows(capsys):
    from hao.cli_latency import _load_verdict

    assert _load_verdict({"loaded_rows": [], "recheck": {"drifted": False}}, "hw") == 0
    assert _load_verdict({"loaded_rows": ["conv2d 16->32"], "recheck": None}, "hw") == 3
    err = capsys.readouterr().err
    assert "conv2d 16->32" in err and "--retime" in err and "docs/measurement.md" in err
    rows = [{"kernel": "k1", "old_ms": 1.0, "new_ms": 1.3, "ratio": 1.3}]
    assert _load_verdict({"recheck": {"drifted": True, "n": 1, "median_ratio": 1.3, "limit": 0.1, "rows": rows}},
                         "hw") == 3
    assert "k1 x1.3" in capsys.readouterr().err


def test_cli_quiet_limit_option():
    import argparse

    from hao.cli_latency import _quiet_limit

    assert _quiet_limit("none") is None and _quiet_limit("0.5") == 0.5 and _quiet_limit("0") == 0.0
    for bad in ("-1", "lots", "nan"):
        with pytest.raises(argparse.ArgumentTypeError, match="--quiet-limit"):
            _quiet_limit(bad)


class _LoadedAtFirst(_Flagging):
    """Every kernel's first measurement is loaded; later ones are quiet (a job that came and went)."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.seen = set()

    def measure(self, kernel):
        m = super().measure(kernel)
        first = kernel.key() not in self.seen
        self.seen.add(kernel.key())
        m.extra.update(quiet=not first, other_cores=1.0 if first else 0.0)
        return m


def test_loaded_rows_are_set_aside_and_retimed_when_quiet(tmp_path):
    res = calibrate("hw", KS, _LoadedAtFirst(), root=tmp_path, progress=False, recheck=0, defer_pause_s=0)
    assert res["measured"] == len(KS) and res["loaded_rows"] == []
    t = LatencyTable.load(tmp_path / "hw")
    assert list(t.df["other_cores"]) == [0.0] * len(KS)
