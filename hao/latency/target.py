"""Where TVM code runs: the thread pool, the LLVM target of this CPU, and RPC sessions to other devices.

* :func:`pin_threads` sets TVM's CPU thread count (also after ``import tvm``); ``TVM_NUM_THREADS`` is what
  TVM reads when it creates its pool (default: half the cores).
* :func:`default_target` names this CPU as an LLVM target dict; :func:`missing_isa` and
  :func:`refuse_foreign_target` refuse code this CPU cannot run (it would die with SIGILL).
* :func:`parse_rpc` reads ``host:port:key``; :class:`Session` loads compiled modules and makes tensors on this
  CPU or on a device behind an RPC tracker.

Everything TVM is imported lazily (``hao._imports.lazy_import``).
"""
from __future__ import annotations

import os
import tempfile
import time
from typing import Any

import numpy as np

from hao._imports import lazy_import
from hao.errors import ConfigError

__all__ = ["DEFAULT_THREADS", "pin_threads", "default_target", "missing_isa", "refuse_foreign_target", "parse_rpc",
           "Session"]

#: threads TVM code runs on unless told otherwise
DEFAULT_THREADS = 2


def pin_threads(threads: int) -> int:
    """Make TVM's CPU thread pool use ``threads`` threads and return the count in effect.

    ``TVM_NUM_THREADS`` is set in any case (MetaSchedule's runner processes inherit it). TVM reads it when
    its thread pool is created, at the first parallel kernel. If ``tvm`` is already imported the pool is
    checked (``runtime.NumThreads``) and reconfigured if needed. Without this, TVM 0.27 on a 2-core machine
    ran every kernel on **one** thread (its default is half the hardware threads), which made the whole-network
    timings of a process that had imported tvm early 1.45x slower than the table. Returns -1 only if the
    pool, created earlier with fewer workers, cannot be widened (start a new process then)."""
    import sys

    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ConfigError(f"threads must be a positive int, got {threads!r}.")
    if "tvm" not in sys.modules:
        os.environ["TVM_NUM_THREADS"] = str(threads)
        return threads
    import tvm_ffi

    # If this thread's pool does not exist yet, NumThreads creates it with TVM_NUM_THREADS workers at most:
    # make that wide enough for a later, larger request, then narrow it to `threads`.
    os.environ["TVM_NUM_THREADS"] = str(max(threads, os.cpu_count() or 1))
    num = tvm_ffi.get_global_func("runtime.NumThreads")
    if int(num()) != threads:
        tvm_ffi.get_global_func("runtime.config_threadpool")(1, threads)  # 1: kBig (all cores alike here)
    os.environ["TVM_NUM_THREADS"] = str(threads)  # what MetaSchedule's runner processes inherit
    got = int(num())
    return got if got == threads else -1


def default_target(threads: int = DEFAULT_THREADS) -> dict[str, Any]:
    """``{"kind": "llvm", "mcpu": <LLVM's name for this CPU>, "num-cores": threads}`` (never ``native``)."""
    lazy_import("tvm")
    from tvm.target import codegen

    return {"kind": "llvm", "mcpu": str(codegen.llvm_get_system_cpu()), "num-cores": int(threads)}


#: LLVM feature names that are instruction sets (the rest, e.g. "fast-gather" or "prefer-256-bit", only tune code)
_ISA_PREFIXES = ("avx", "sse", "ssse", "fma", "f16c", "bmi", "amx", "gfni", "vaes", "vpclmulqdq", "sha", "aes",
                 "popcnt", "lzcnt", "movbe", "adx", "xop", "neon", "sve", "dotprod", "i8mm", "fp16", "bf16")


def missing_isa(target: Any) -> list[str]:
    """Instruction-set features that code compiled for ``target`` (an LLVM target dict or ``tvm.target.Target``)
    may use and this machine's CPU lacks; ``[]`` when this machine can run it (or for a non-LLVM target)."""
    tvm = lazy_import("tvm")
    from tvm.target import codegen

    t = target if isinstance(target, tvm.target.Target) else tvm.target.Target(dict(target))
    if t.kind.name != "llvm":
        return []
    host = tvm.target.Target({"kind": "llvm", "mcpu": str(codegen.llvm_get_system_cpu())})
    have = set(codegen.llvm_get_cpu_features(host))
    need = set(codegen.llvm_get_cpu_features(t))
    return sorted(f for f in need - have if f.startswith(_ISA_PREFIXES))


def refuse_foreign_target(target: Any, what: str) -> None:
    """Raise :class:`ConfigError` when this machine cannot run code compiled for ``target`` (running it would
    kill the process with SIGILL). A table is measured and validated on its own hardware only."""
    miss = missing_isa(target)
    if miss:
        from tvm.target import codegen

        raise ConfigError(f"{what}: the target {target} uses instructions this CPU "
                          f"({codegen.llvm_get_system_cpu()}) lacks: {', '.join(miss[:8])}"
                          f"{' ...' if len(miss) > 8 else ''}. Run it on the hardware the table was measured on "
                          "(or through --rpc to it), or calibrate a table for this machine with `hao calibrate` "
                          "(see latency_models/README.md).")


def parse_rpc(spec: str | None) -> tuple[str, int, str] | None:
    """``"host:port:key"`` -> ``(host, port, key)``."""
    if spec is None:
        return None
    parts = str(spec).rsplit(":", 2)
    if len(parts) != 3 or not parts[0] or not parts[2] or not parts[1].isdigit():
        raise ConfigError(f"--rpc must look like HOST:PORT:KEY (e.g. 127.0.0.1:9190:cpu), got {spec!r}.")
    port = int(parts[1])
    if not 1 <= port <= 65535:
        raise ConfigError(f"--rpc port must be in [1, 65535], got {port} in {spec!r}.")
    return parts[0], port, parts[2]


class Session:
    """Where compiled kernels run: this process's CPU or a device behind an RPC tracker."""

    def __init__(self, rpc: tuple[str, int, str] | None, session_timeout: int = 600) -> None:
        tvm = lazy_import("tvm")
        self.rpc = rpc
        self.remote = None
        self._tmp = None
        if rpc is None:
            self.dev = tvm.cpu(0)
        else:
            from tvm import rpc as tvm_rpc

            host, port, key = rpc
            try:
                tracker = tvm_rpc.connect_tracker(host, port)
                self.remote = tracker.request(key, session_timeout=session_timeout)
            except Exception as exc:  # noqa: BLE001
                raise ConfigError(f"Could not get an RPC session for key {key!r} from tracker {host}:{port} "
                                  f"({type(exc).__name__}: {exc}). Check that the tracker runs and a server "
                                  f"registered with --key {key}.") from exc
            self.dev = self.remote.cpu(0)
            self._tmp = tempfile.TemporaryDirectory(prefix="hao_rpc_")

    def load(self, exe: Any) -> Any:
        if self.remote is None:
            return exe.jit()
        path = os.path.join(self._tmp.name, f"k{time.monotonic_ns()}.so")
        exe.export_library(path)
        self.remote.upload(path)
        return self.remote.load_module(os.path.basename(path))

    def tensor(self, arr: np.ndarray) -> Any:
        tvm = lazy_import("tvm")
        return tvm.runtime.tensor(arr, self.dev)

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
        self.remote = None

