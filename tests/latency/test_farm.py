"""Measurement farm: a tracker and 2 RPC servers on 127.0.0.1 share a calibration; one server is killed mid-run;
the table ends complete (every kernel once), valid, and the retry is recorded."""
from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest

os.environ.setdefault("TVM_NUM_THREADS", "2")
tvm = pytest.importorskip("tvm", reason="apache-tvm is not installed; the measurement farm cannot be tested")

from hao.kernel import KernelSpec  # noqa: E402
from hao.latency.backend import LatencyBackend  # noqa: E402
from hao.latency.farm import farm_calibrate, free_servers, tvm_backend_factory  # noqa: E402
from hao.latency.table import LatencyTable  # noqa: E402

pytestmark = [pytest.mark.tvm, pytest.mark.slow]

KERNELS = [KernelSpec("add", 8, 8, 4, 4), KernelSpec("add", 16, 16, 4, 4), KernelSpec("add", 8, 8, 8, 8),
           KernelSpec("add", 16, 16, 8, 8), KernelSpec("add", 32, 32, 4, 4), KernelSpec("add", 8, 8, 2, 2)]
KEY = "hao-farm-test"


def _pid(obj) -> int | None:
    p = getattr(obj.proc, "_proc", None)
    return None if p is None else p.pid


def _tree(pid: int) -> list[int]:
    try:
        import psutil

        return [pid] + [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except Exception:  # noqa: BLE001
        return [pid]


def test_farm_survives_a_killed_server(tmp_path, monkeypatch):
    from tvm import rpc
    from tvm.rpc.server import Server
    from tvm.rpc.tracker import Tracker

    tracker = None
    servers: list = []
    spawned: list[int] = []
    try:
        tracker = Tracker(host="127.0.0.1", port=9490, port_end=9590, silent=True)
        for base in (9600, 9700):
            servers.append(Server(host="127.0.0.1", port=base, port_end=base + 90,
                                  tracker_addr=("127.0.0.1", tracker.port), key=KEY, silent=True))
        spawned = [p for p in (_pid(o) for o in [tracker, *servers]) if p is not None]
        for _ in range(100):
            n = free_servers("127.0.0.1", tracker.port, KEY)
            if n >= 2:
                break
            time.sleep(0.1)
        assert n == 2, rpc.connect_tracker("127.0.0.1", tracker.port).summary()

        make = tvm_backend_factory(f"127.0.0.1:{tracker.port}:{KEY}", trials=1, database_dir=tmp_path / "db",
                                   repeat=3, min_repeat_ms=300, rounds=1, population=8)
        victim = servers[1]
        victim_pids = _tree(_pid(victim))
        table = tmp_path / "hw" / "table.csv"


        # Count open measurement sessions (check + timing, >= 3 x 300 ms). A server serves one client at a time,
        # so when two are open at once, each server is mid-kernel: killing one then kills a session mid-kernel
        # (not a tuning run, whose RPCRunner waits out its own session timeout).
        from hao.latency import tvm_backend

        live = [0]
        both_busy = threading.Event()
        orig_init, orig_close = tvm_backend.Session.__init__, tvm_backend.Session.close

        def init(self, *a, **kw):
            orig_init(self, *a, **kw)
            if self.remote is not None:
                live[0] += 1
                if live[0] >= 2 and table.is_file():
                    both_busy.set()

        def close(self):
            if self.remote is not None:
                live[0] -= 1
            orig_close(self)

        monkeypatch.setattr(tvm_backend.Session, "__init__", init)
        monkeypatch.setattr(tvm_backend.Session, "close", close)

        def killer() -> None:
            both_busy.wait(timeout=60)
            time.sleep(0.2)
            for pid in sorted(set(_tree(_pid(victim))) | set(victim_pids)):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

        th = threading.Thread(target=killer, daemon=True)
        th.start()
        res = farm_calibrate("hw", KERNELS, make, n_workers=2, root=tmp_path)
        th.join(timeout=5)
        t = LatencyTable.load(tmp_path / "hw")
        assert len(t) == len(KERNELS) and t.keys() == {k.key() for k in KERNELS}
        assert res["measured"] == len(KERNELS) and res["failed"] == 0
        meta = json.loads((tmp_path / "hw" / "meta.json").read_text())
        assert meta["calibration_runs"][-1]["retries"] == res["retries"]
        assert both_busy.is_set()
        assert len(res["retries"]) >= 1, res
    finally:
        kids = [c for pid in spawned for c in _tree(pid)[1:]]
        for obj in (*servers, tracker):
            if obj is not None:
                try:
                    obj.terminate()
                except Exception:  # noqa: BLE001
                    pass
        for pid in kids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class _Flaky(LatencyBackend):
    """Fails the first kernel on worker 0 (a dead session), measures everything else."""

    def __init__(self, i: int, failed_once: list) -> None:
        self.i, self.failed_once = i, failed_once

    def measure(self, kernel):
        from hao.latency.backend import Measurement

        time.sleep(0.01)
        if self.i == 0 and not self.failed_once:
            self.failed_once.append(kernel)
            return Measurement(kernel, ok=False, reason="timing: RPCError: connection closed")
        return Measurement(kernel, ok=True, latency_ms=0.1, std_ms=0.0, repeats=3, impl="fake")

    def describe(self):
        return {"device": "fake"}


def test_farm_retry_logic_without_tvm_servers(tmp_path):
    failed_once: list = []
    res = farm_calibrate("hw", KERNELS, lambda i: _Flaky(i, failed_once), n_workers=2, root=tmp_path)
    t = LatencyTable.load(tmp_path / "hw")
    assert t.keys() == {k.key() for k in KERNELS} and len(res["retries"]) == 1
    res2 = farm_calibrate("hw", KERNELS, lambda i: _Flaky(i, [1]), n_workers=2, root=tmp_path)
    assert res2["measured"] == 0 and res2["skipped"] == len(KERNELS)
