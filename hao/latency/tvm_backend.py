"""TVM backend: KernelSpec -> TE compute -> MetaSchedule-tuned schedule -> checked output -> time_evaluator.

This module holds :class:`TVMBackend`, the ``tvm`` latency backend. Its parts live next to it: the kernel
programs and their references in :mod:`hao.latency.programs`, threads, targets and RPC sessions in
:mod:`hao.latency.target`, MetaSchedule plumbing in :mod:`hao.latency.tuning`; their public names are
re-exported here (``from hao.latency.tvm_backend import build_kernel_func, pin_threads`` keeps working).

Everything TVM is imported lazily (``hao._imports.lazy_import``). TVM sizes its thread pool from
``TVM_NUM_THREADS`` (default: half the cores); :func:`pin_threads` sets the count, also after ``import tvm``,
and :class:`TVMBackend` refuses to time with a count other than the one asked for.

Protocol per kernel: look the workload up in the hardware's tuning database (one ``JSONDatabase`` per
hardware, holding the best record per workload); if absent tune it with ``trials`` MetaSchedule trials
(small EvolutionarySearch population, random cost model for a one-round search) and commit the best record;
build; check the output against a NumPy/PyTorch reference (a wrong kernel is recorded as failed, never timed);
time with ``time_evaluator(number=1, repeat, min_repeat_ms)`` after its warm-up run; keep the median of repeats.
"""
from __future__ import annotations

import math
import os
import platform
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from hao._imports import lazy_import
from hao.errors import ConfigError
from hao.kernel import KernelSpec
from hao.latency.backend import LatencyBackend, Measurement, kernel_precision, register_backend, replace_bits
from hao.latency.interference import QUIET_OTHER_CORES
from hao.latency.programs import KernelProgram, build_kernel_func, check_output
from hao.latency.target import (DEFAULT_THREADS, Session, default_target, missing_isa, parse_rpc, pin_threads,
                                refuse_foreign_target)
from hao.latency.tuning import in_process_builder, schedule_or_tune

__all__ = ["TVMBackend", "pin_threads", "default_target", "missing_isa", "refuse_foreign_target", "parse_rpc",
           "build_kernel_func", "KernelProgram", "check_output", "Session", "DEFAULT_THREADS"]


@register_backend("tvm")
class TVMBackend(LatencyBackend):
    """Measure kernels with TVM on the local CPU or on a device behind an RPC tracker.

    Parameters
    ----------
    target: TVM JSON target dict, e.g. ``{"kind": "llvm", "mcpu": "znver4", "num-cores": 2}``
        (``None``: this CPU as LLVM names it, ``threads`` cores). String targets are refused (TVM 0.27).
    trials: MetaSchedule trials per kernel (>= 1).
    database_dir: folder of the hardware's JSONDatabase (best record per workload); ``None``: in memory.
    threads: thread count (sets ``TVM_NUM_THREADS`` if tvm is not imported yet).
    rpc: ``"host:port:key"`` of a TVM RPC tracker, or ``None`` for the local CPU.
    repeat, min_repeat_ms: ``time_evaluator`` rounds and the minimum duration of one round.
    population: EvolutionarySearch population size. seed: tuning and input seed.
    rpc_timeout_s: seconds an RPC session may last (tuning a kernel's candidates, or checking and timing it);
        raise it for slow boards.
    quiet_limit: a timing session counts only if other processes took at most this many cores during it
        (:mod:`hao.latency.interference`; ``None``: no check). Local CPU only.
    max_loaded_sessions: loaded sessions tolerated per kernel before the quietest one is kept and the row is
        flagged (``extra["quiet"] = False``, the table's ``other_cores`` column).
    portable: time the portable programs even where the target has a hand-written one (the plain int8
        depthwise program on a VNNI + VBMI CPU); for comparisons only — a table's rows are the programs its
        networks run.
    """

    def __init__(self, target: dict[str, Any] | None = None, trials: int = 8,
                 database_dir: str | os.PathLike | None = None, threads: int = DEFAULT_THREADS,
                 rpc: str | None = None, repeat: int = 7, min_repeat_ms: int = 15, population: int = 64,
                 seed: int = 0, check: bool = True, rounds: int = 3, rpc_timeout_s: int = 120,
                 quiet_limit: float | None = QUIET_OTHER_CORES, max_loaded_sessions: int = 5,
                 portable: bool = False) -> None:
        if target is not None and not isinstance(target, dict):
            raise ConfigError(f"target must be a TVM JSON target dict like {{'kind': 'llvm', 'mcpu': 'znver4', "
                              f"'num-cores': 2}}, got {target!r} ({type(target).__name__}).")
        if target is not None and "kind" not in target:
            raise ConfigError(f"target dict needs a 'kind' key (e.g. 'llvm'), got {target!r}.")
        for pname, v, lo in (("trials", trials, 1), ("repeat", repeat, 1), ("min_repeat_ms", min_repeat_ms, 0),
                             ("population", population, 2), ("threads", threads, 1), ("rounds", rounds, 1),
                             ("rpc_timeout_s", rpc_timeout_s, 1), ("max_loaded_sessions", max_loaded_sessions, 1)):
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ConfigError(f"TVMBackend {pname} must be an int >= {lo}, got {v!r}.")
        self.target_dict = dict(target) if target else None
        self.trials = trials
        self.database_dir = Path(database_dir) if database_dir is not None else None
        self.threads = threads
        self.rpc = parse_rpc(rpc)
        self.repeat = repeat
        self.min_repeat_ms = min_repeat_ms
        self.population = population
        self.seed = seed
        self.check = check
        self.rounds = rounds
        self.rpc_timeout_s = rpc_timeout_s
        if quiet_limit is not None and not (isinstance(quiet_limit, (int, float)) and quiet_limit >= 0):
            raise ConfigError(f"TVMBackend quiet_limit must be a number of cores >= 0 or None (no load check), got "
                              f"{quiet_limit!r}; the default is {QUIET_OTHER_CORES}.")
        self.quiet_limit = quiet_limit
        self.max_loaded_sessions = max_loaded_sessions
        #: time the portable programs even where the target has a hand-written one (comparisons only: a table's
        #: rows must be the programs its networks run, i.e. portable=False)
        self.portable = bool(portable)
        self.threads_in_effect = pin_threads(threads)
        if self.threads_in_effect != threads and self.rpc is None:  # remote kernels run on the board's pool
            raise ConfigError(f"TVM's thread pool in this process has fewer workers than the {threads} threads "
                              f"asked for (it was created earlier with TVM_NUM_THREADS or TVM's default, half "
                              f"the cores), so timings would use the wrong thread count. Set "
                              f"TVM_NUM_THREADS={threads} (or more) before starting Python.")
        self._opened = False
        self._checked: dict[tuple, float] = {}

    # ---- lifecycle --------------------------------------------------------------------------------------
    def open(self) -> None:
        if self._opened:
            return
        tvm = lazy_import("tvm")
        from tvm.s_tir import meta_schedule as ms

        from hao.latency._intrin import load_x86_intrinsics

        load_x86_intrinsics()
        if self.target_dict is None:
            self.target_dict = default_target(self.threads)
        if "num-cores" not in self.target_dict and self.target_dict.get("kind") == "llvm":
            self.target_dict["num-cores"] = self.threads
        try:
            self.target = tvm.target.Target(self.target_dict)
        except Exception as exc:  # noqa: BLE001
            raise ConfigError(f"TVM refused target {self.target_dict!r}: {exc}. Use a JSON dict such as "
                              f"{{\"kind\": \"llvm\", \"mcpu\": \"znver4\", \"num-cores\": 2}}.") from exc
        if self.rpc is None:
            refuse_foreign_target(self.target_dict, "TVM latency backend")
        if self.database_dir is not None:
            self.database_dir.mkdir(parents=True, exist_ok=True)
            if self._table_database:
                from hao.latency.schedules import restore_schedules

                restore_schedules(self.database_dir, self.target_dict)  # the table's committed schedules
            self.database = ms.database.JSONDatabase(work_dir=str(self.database_dir))
        else:
            self.database = ms.database.MemoryDatabase()
        # Local: one session for the run. RPC: a session per kernel, requested only after tuning — a server
        # serves one client at a time, and the tuner's RPCRunner needs it while we tune.
        self.session = Session(None) if self.rpc is None else None
        self._work = tempfile.TemporaryDirectory(prefix="hao_ms_")
        evaluator = ms.runner.EvaluatorConfig(number=1, repeat=3, min_repeat_ms=5)
        if self.rpc is None:
            self.runner = ms.runner.LocalRunner(evaluator_config=evaluator)
        else:
            host, port, key = self.rpc
            self.runner = ms.runner.RPCRunner(
                rpc_config=ms.runner.RPCConfig(tracker_host=host, tracker_port=port, tracker_key=key,
                                               session_timeout_sec=self.rpc_timeout_s),
                evaluator_config=evaluator)
        self.builder = in_process_builder(self.threads)
        self._opened = True

    def close(self) -> None:
        if not self._opened:
            return
        if self.session is not None:
            self.session.close()
        self._work.cleanup()
        self._opened = False
        if self._table_database:
            from hao.latency.schedules import pack_schedules

            pack_schedules(self.database_dir)  # keep the table's schedules committable (hao.latency.schedules)

    @property
    def _table_database(self) -> bool:
        """Whether the database is a table folder's ``tuning_db/`` (its schedules are packed beside the table)."""
        return self.database_dir is not None and self.database_dir.name == "tuning_db"

    # ---- tuning -----------------------------------------------------------------------------------------
    def schedule(self, mod: Any) -> tuple[Any, int, float]:
        """(schedule, trials spent now, seconds) — from the database, or tuned and committed to it; a
        hand-scheduled program (:func:`hao.latency.dw_dot.is_hand_scheduled`) is its own schedule."""
        from hao.latency.dw_dot import is_hand_scheduled

        if is_hand_scheduled(mod["main"]):
            import tvm

            return tvm.s_tir.Schedule(mod), 0, 0.0
        # hao's own tune_tir: TVM's sets up logging process-wide and fails on unnamed host handlers
        return schedule_or_tune(mod, self.target, self.database, os.path.join(self._work.name, "tune"),
                                trials=self.trials, population=self.population, builder=self.builder,
                                runner=self.runner, cost_model="random", seed=self.seed)

    # ---- measurement -------------------------------------------------------------------------------------
    def measure(self, kernel: KernelSpec) -> Measurement:
        if not self._opened:
            self.open()
        prec = kernel_precision(kernel)
        run_kernel = kernel
        if prec == "int8-mapped":
            run_kernel = replace_bits(kernel, 8, 8)
        elif prec == "fp32-mapped":
            run_kernel = replace_bits(kernel, 32, 32)
        stage = "building the TE program"
        try:
            tvm = lazy_import("tvm")
            from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

            prog = build_kernel_func(run_kernel, None if self.portable else self.target)
            mod = tvm.IRModule({"main": prog.func})
            stage = "tuning"
            sch, spent, tune_s = self.schedule(mod)
            if sch is None:
                return Measurement(kernel, ok=False, tuning_trials=spent, tune_s=tune_s, impl=prec,
                                   reason=f"MetaSchedule found no valid schedule in {self.trials} trials")
            stage = "compiling"
            exe_check = tvm.compile(sch.mod, self.target)
            timed_mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(sch.mod)
            exe_time = tvm.compile(timed_mod, self.target)
            asm = ""
            try:
                asm = exe_time.mod.inspect_source("asm")
            except Exception:  # noqa: BLE001 - only used for the VNNI flag
                asm = ""
            vnni = "vpdpbusd" in asm
            rng = np.random.default_rng(self.seed)
            inputs = prog.make_inputs(rng)
            if self.rpc is not None:
                stage = "opening the RPC session"
                self.session = Session(self.rpc, session_timeout=self.rpc_timeout_s)
            err = math.nan
            if self.check and run_kernel.key() not in self._checked:
                stage = "checking the output"
                f = self.session.load(exe_check)
                args = [self.session.tensor(x) for x in inputs]
                out = self.session.tensor(np.zeros(prog.out_shape, dtype=prog.out_dtype))
                f["main"](*args, out)
                ok, err, why = check_output(prog, out.numpy(), prog.reference(inputs))
                if not ok:
                    return Measurement(kernel, ok=False, tuning_trials=spent, tune_s=tune_s, impl=prec,
                                       vnni=vnni, max_abs_err=err, reason=why)
                # the same schedule from the same database compiles to the same code: a mapped sub-8-bit
                # kernel reuses its int8 kernel's check
                self._checked[run_kernel.key()] = err
            elif self.check:
                err = self._checked[run_kernel.key()]
            stage = "timing"
            f = self.session.load(exe_time)
            from tvm.s_tir.meta_schedule.arg_info import ArgInfo

            targs = []
            for i, info in enumerate(ArgInfo.from_prim_func(timed_mod["main"])):
                shape = tuple(int(s) for s in info.shape)
                if i < len(inputs) and tuple(inputs[i].shape) == shape:
                    targs.append(self.session.tensor(inputs[i]))
                else:  # packed weight (layout rewritten at compile time) or the output buffer
                    targs.append(self.session.tensor(np.zeros(shape, dtype=str(info.dtype))))
            timer = f.time_evaluator("main", self.session.dev, number=1, repeat=self.repeat,
                                     min_repeat_ms=self.min_repeat_ms)
            # Several sessions, keep the one with the lowest median: a host hiccup or another process on
            # these 2 cores inflates a whole session (TVM's spinning thread pool makes contention
            # catastrophic), while nothing makes a kernel faster than it is.
            time.sleep(0.05)
            res, inter, loaded = self._timed_sessions(timer, targs)
            impl = prec if prec != "int8" else ("int8-vnni" if vnni else "int8")
            if prec == "int8-mapped" and vnni:
                impl = "int8-mapped-vnni"
            extra = {"layout": prog.layout, "loaded_sessions": loaded}
            if inter is not None and inter.available:
                extra["other_cores"] = round(inter.other_cores + inter.steal_cores, 3)
                extra["quiet"] = inter.quiet(self.quiet_limit)
            return Measurement(kernel, ok=True, latency_ms=float(np.median(res)), std_ms=float(res.std()),
                               repeats=int(res.size), impl=impl, vnni=vnni, tuning_trials=spent,
                               tune_s=tune_s, max_abs_err=err, extra=extra)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - a kernel's failure is data, not a crash
            tb = traceback.format_exc(limit=3).strip().splitlines()
            return Measurement(kernel, ok=False, impl=prec, reason=f"{stage}: {type(exc).__name__}: "
                               f"{str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''} "
                               f"[{tb[-1][:200] if tb else ''}]")
        finally:
            if self.rpc is not None and self.session is not None:
                self.session.close()
                self.session = None

    def _timed_sessions(self, timer: Any, targs: list) -> tuple[np.ndarray, Any, int]:
        """``rounds`` quiet timing sessions (:mod:`hao.latency.interference`): a session during which other
        processes took more than ``quiet_limit`` cores is not counted; it is retried after a growing pause (0.25 s,
        0.5 s, ... 4 s), at most ``max_loaded_sessions`` times. Returns (the kept session's repeats in ms, its
        interference reading, the number of loaded sessions). Kept: the lowest median among quiet sessions, else
        (never quiet) the lowest median of all — then ``extra["quiet"]`` is False and the row is reported."""
        from hao.latency.interference import keep_session, monitor

        watch = self.rpc is None and self.quiet_limit is not None  # a remote board's load is not visible here
        best = best_int = None
        best_q = False
        quiet_n = loaded_n = 0
        while quiet_n < self.rounds:
            with monitor() as got:
                r = np.asarray(timer(*targs).results, dtype=np.float64) * 1e3
            it = got[0] if watch else None
            q = it is None or it.quiet(self.quiet_limit)
            if keep_session(q, float(np.median(r)), best_q, None if best is None else float(np.median(best))):
                best, best_q, best_int = r, q, it
            if q:
                quiet_n += 1
                continue
            loaded_n += 1
            if loaded_n >= self.max_loaded_sessions:
                break
            time.sleep(min(0.25 * 2 ** (loaded_n - 1), 4.0))
        return best, best_int, loaded_n

    # ---- metadata -----------------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        tvm = lazy_import("tvm")
        from tvm.target import codegen

        if not self._opened:
            self.open()
        feats = {}
        for feat in ("avx512f", "avx512bw", "avx512vnni", "avxvnni", "amx-int8", "neon", "dotprod"):
            try:
                feats[feat] = bool(codegen.llvm_cpu_has_features(feat, self.target))
            except Exception:  # noqa: BLE001 - feature unknown to this LLVM
                pass
        cpu_model = platform.processor() or ""
        try:
            with open("/proc/cpuinfo") as fh:
                for line in fh:
                    if line.startswith("model name"):
                        cpu_model = line.split(":", 1)[1].strip()
                        break
        except OSError:
            pass
        return {
            "backend": "tvm",
            "device": "remote via RPC" if self.rpc else f"local CPU: {cpu_model}",
            "cpu_model": cpu_model if not self.rpc else None,
            "llvm_system_cpu": str(codegen.llvm_get_system_cpu()),
            "mcpu": self.target_dict.get("mcpu"),
            "features": feats,
            "tvm_version": tvm.__version__,
            "target": self.target_dict,
            "target_json": str(self.target),
            "threads": self.threads_in_effect,
            "rpc": None if not self.rpc else {"host": self.rpc[0], "port": self.rpc[1], "key": self.rpc[2],
                                              "session_timeout_s": self.rpc_timeout_s},
            "tuning": {"tool": "MetaSchedule (tvm.s_tir.meta_schedule.tune_tir)", "trials_per_kernel": self.trials,
                       "strategy": f"EvolutionarySearch(population_size={self.population}, genetic_num_iters=1)",
                       "cost_model": "random (one search round per kernel)", "seed": self.seed,
                       "database": "JSONDatabase, best record per workload (tuning_db/)",
                       "builder": "in-process (thread pool)", "runner": "RPCRunner" if self.rpc else "LocalRunner"},
            "timing": {"api": "time_evaluator", "number": 1, "repeat": self.repeat,
                       "min_repeat_ms": self.min_repeat_ms, "sessions": self.rounds,
                       "warmup": "1 run per session (time_evaluator's own)",
                       "statistic": "median of repeats of the session with the lowest median (latency_ms); "
                                    "std of that session's repeats (std_ms); repeats = its repeat count",
                       "load_check": None if self.quiet_limit is None or self.rpc else
                       {"quiet_limit_other_cores": self.quiet_limit, "max_loaded_sessions": self.max_loaded_sessions,
                        "source": "/proc/stat busy time minus this process's CPU time, per session"}},
            "protocol": (f"per kernel: TE/topi compute (fp32 NHWC; int8 u8xi8->i32 + requantize, NCHW16c, packed "
                         f"weights) -> best schedule from tuning_db or MetaSchedule tuning with {self.trials} "
                         f"trials -> build -> output checked against a NumPy/PyTorch reference -> "
                         f"{self.rounds} x time_evaluator(number=1, repeat={self.repeat}, "
                         f"min_repeat_ms={self.min_repeat_ms}) "
                         "each after one warm-up run -> lowest median of the sessions; threads pinned via "
                         "TVM_NUM_THREADS; "
                         "weight-layout rewrite blocks removed (weights pre-packed, as in a compiled network)"),
            "correctness": "every kernel's output checked against a NumPy/PyTorch reference before timing "
                           "(int: <= 1 LSB on <= 0.1% of elements; float: 1e-3 relative)" if self.check else "off",
        }
