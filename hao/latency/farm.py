"""A measurement farm: kernels measured in parallel on several RPC servers registered under one tracker key.

One worker thread per server slot; each worker owns its own backend (made by ``make_backend(worker_id)``), and
each backend requests its own session from the tracker per kernel, so the tracker spreads kernels over the free
servers. A kernel whose measurement fails (a server that dies mid-kernel shows up as a failed session) is put
back once for another worker and session; the retry is recorded in ``meta.json`` (``calibration_runs[-1]
["retries"]``) and in the result. Rows are appended with :func:`hao.latency.calibrate.append_row` (one
``write()`` per row, ``O_APPEND``, fsync, under a lock), so a kill at any instant leaves a valid table and a
resume measures only what is missing, exactly as :func:`hao.latency.calibrate.calibrate` does. The run shares
calibration's skeleton (:mod:`hao.latency.runlog`): folder checks, SIGTERM handled like Ctrl-C, the
``meta.json`` run entry.
"""
from __future__ import annotations

import os
import queue
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from hao.errors import ConfigError
from hao.kernel import KernelSpec
from hao.latency.backend import LatencyBackend
from hao.latency.calibrate import plan_run
from hao.latency.rows import append_row, failed_row, measured_row, now
from hao.latency.runlog import CalibrationResult, RunLog, sigterm_as_interrupt

__all__ = ["farm_calibrate", "free_servers", "tvm_backend_factory"]


def free_servers(host: str, port: int, key: str) -> int:
    """Number of servers registered under ``key`` at the tracker ``host:port`` (free or busy): the default
    number of farm workers."""
    from tvm import rpc as tvm_rpc

    try:
        summary = tvm_rpc.connect_tracker(host, port).summary()
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"Could not reach the RPC tracker {host}:{port} ({type(exc).__name__}: {exc}).") from exc
    return sum(1 for s in summary.get("server_info", []) if str(s.get("key", "")).split(":")[-1] == key)


def tvm_backend_factory(rpc: str, **kwargs: Any) -> Callable[[int], LatencyBackend]:
    """``make_backend`` for :func:`farm_calibrate`: one :class:`TVMBackend` per worker on the tracker ``rpc``.
    ``database_dir`` (if given) gets a sub-folder per worker (the JSON database is not shared across threads)."""
    from hao.latency.tvm_backend import TVMBackend

    def make(i: int) -> LatencyBackend:
        kw = dict(kwargs)
        if kw.get("database_dir") is not None:
            kw["database_dir"] = Path(kw["database_dir"]) / f"worker{i}"
        return TVMBackend(rpc=rpc, **kw)

    return make


def farm_calibrate(hardware: str, kernels: Sequence[KernelSpec], make_backend: Callable[[int], LatencyBackend],
                   n_workers: int, *, root: str | os.PathLike | None = None, retry_failed: bool = False,
                   space_name: str | None = None, command: str | None = None,
                   max_kernels: int | None = None) -> CalibrationResult:
    """Measure the kernels ``latency_models/<hardware>/`` lacks with ``n_workers`` parallel backends.

    Returns counts like :func:`~hao.latency.calibrate.calibrate` plus ``retries`` (list of dicts: kernel,
    worker, reason)."""
    if not isinstance(n_workers, int) or n_workers < 1:
        raise ConfigError(f"--rpc-workers must be an int >= 1, got {n_workers!r}.")
    run = plan_run(hardware, kernels, root, retry_failed, max_kernels)
    todo = run.todo
    log = RunLog(run.folder, hardware, {"started_at": now(), "space": space_name, "command": command,
                                        "planned": len(kernels), "to_measure": len(todo),
                                        "skipped_existing": run.skipped, "repaired_bytes": run.repaired,
                                        "farm_workers": n_workers})
    work: "queue.Queue[tuple[KernelSpec, int, int | None]]" = queue.Queue()
    for k in todo:
        work.put((k, 0, None))
    lock = threading.Lock()
    retries: list[dict[str, Any]] = []
    pending = [len(todo)]
    errors: list[BaseException] = []
    desc_box: list[dict[str, Any]] = []
    stop = threading.Event()

    def worker(i: int) -> None:
        backend = make_backend(i)
        try:
            backend.open()
            with lock:
                if not desc_box:
                    desc_box.append(backend.describe())
                    log.start(desc_box[0])
            while not stop.is_set():
                with lock:
                    if pending[0] == 0:
                        return
                try:
                    k, attempt, last_worker = work.get(timeout=0.2)
                except queue.Empty:
                    continue
                if attempt > 0 and last_worker == i and n_workers > 1 and not work.empty():
                    work.put((k, attempt, last_worker))  # prefer another worker for a retry
                    time.sleep(0.05)
                    continue
                try:
                    m = backend.measure(k)
                except Exception as exc:  # noqa: BLE001 - the backend says the whole session is gone
                    from hao.latency.backend import Measurement

                    m = Measurement(k, ok=False, reason=f"session: {type(exc).__name__}: {exc}"[:500])
                with lock:
                    if m.ok:
                        append_row(run.table_p, run.header, measured_row(m, k))
                        log.measured += 1
                        pending[0] -= 1
                    elif attempt == 0:
                        retries.append({"kernel": k.short(), "worker": i, "reason": m.reason[:300]})
                        work.put((k, 1, i))
                    else:
                        append_row(run.failed_p, run.fheader,
                                   failed_row(k, m.impl, f"after 1 retry: {m.reason}"))
                        log.failed += 1
                        pending[0] -= 1
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            with lock:
                errors.append(exc)
        finally:
            try:
                backend.close()
            except Exception:  # noqa: BLE001
                pass

    log.closing = lambda: {"retries": list(retries),
                           "worker_errors": [f"{type(e).__name__}: {e}"[:300] for e in errors]}
    threads = [threading.Thread(target=worker, args=(i,), name=f"hao-farm-{i}", daemon=True)
               for i in range(n_workers)]
    with sigterm_as_interrupt():
        try:
            for t in threads:
                t.start()
            while any(t.is_alive() for t in threads):
                for t in threads:
                    t.join(timeout=0.2)
                with lock:
                    if errors and len(errors) == n_workers:  # every worker is gone: give up
                        break
        finally:
            stop.set()
            log.finish()
    if errors and pending[0] > 0:
        raise errors[0]
    return CalibrationResult(hardware=hardware, folder=str(run.folder), measured=log.measured, failed=log.failed,
                             skipped=run.skipped, wall_s=log.wall_s, retries=retries)
