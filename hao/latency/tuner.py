"""The tuner of compiled networks: every task of a Relax module gets a schedule — its table kernel's schedule
replayed where the task is a table kernel, else the task's best record in the hardware's tuning database, else
a schedule tuned now with MetaSchedule (the calibration's settings) and committed there.

:class:`Tuner` is shared by whatever compiles networks against a table (``hao latency validate``, experiments):
see :func:`hao.latency.compiler.build_network`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from hao.errors import ConfigError

__all__ = ["Tuner"]


class Tuner:
    """Tunes Relax tasks that the hardware database lacks (same MetaSchedule settings as calibration)."""

    def __init__(self, database_dir: Path, threads: int, trials: int, seed: int,
                 reuse_table_schedules: bool = True) -> None:
        from hao.latency.tvm_backend import TVMBackend

        self.backend = TVMBackend(trials=trials, database_dir=database_dir, threads=threads, seed=seed)
        self.backend.open()
        self.tuned_tasks = 0
        self.reused_tasks = 0
        self.transferred_tasks = 0
        self.reuse_table_schedules = reuse_table_schedules

    @staticmethod
    def task_kernel(tmod: Any) -> Any:
        """The table kernel (fp32 ``KernelSpec``) a fused conv task computes, from its buffer shapes: data
        (1, H, W, C), weight HWIO (K, K, C/groups, O), …, output (1, OH, OW, O); None for other tasks."""
        from hao.kernel import KernelSpec

        from tvm.s_tir.meta_schedule.arg_info import ArgInfo

        try:
            shapes = [tuple(int(d) for d in a.shape) for a in ArgInfo.from_prim_func(tmod["main"])]
        except Exception:  # noqa: BLE001 - dynamic shapes, non-tensor args: not a table kernel
            return None
        if len(shapes) < 3 or len(shapes[0]) != 4 or len(shapes[1]) != 4 or len(shapes[-1]) != 4:
            return None
        (n, h, w, c), (kh, kw, cpg, o), (_, oh, ow, o2) = shapes[0], shapes[1], shapes[-1]
        if n != 1 or kh != kw or o != o2 or kh % 2 == 0:
            return None
        stride = -(-h // oh)
        if -(-h // stride) != oh or -(-w // stride) != ow:
            return None
        if cpg == c:
            return KernelSpec("conv2d", c, o, h, w, kh, stride, 1, 32, 32)
        if cpg == 1 and o == c:
            return KernelSpec("dwconv2d", c, o, h, w, kh, stride, c, 32, 32)
        return None

    @staticmethod
    def _replay(trace: Any, tmod: Any, target: Any) -> Any:
        """Apply a table kernel's trace to a task; a ``compute_inline`` the task cannot take is skipped.

        The table kernel is conv + bias + ReLU and its trace inlines the bias block into the ReLU; a projection
        task (conv + bias, or conv + bias + residual) has no ReLU, so its bias block is the output and cannot be
        inlined; it stays the convolution's consumer, where the trace's ``reverse_compute_at`` places it. Any
        other failing instruction makes the replay fail (returns None). Schedule primitives keep the program's
        meaning, and the result is compiled once as a check."""
        import tvm
        from tvm.s_tir.schedule import Trace

        decisions = dict(trace.decisions)

        def attempt(insts: list) -> Any:
            sch = tvm.s_tir.Schedule(tmod)
            keep = set(insts)  # TVM objects hash and compare by identity
            Trace(insts, {i: d for i, d in decisions.items() if i in keep}).apply_to_schedule(
                sch, remove_postproc=False)
            return sch

        try:
            sch = attempt(list(trace.insts))
        except Exception:  # noqa: BLE001 - retry instruction by instruction
            kept: list = []
            for inst in trace.insts:
                try:
                    attempt(kept + [inst])
                    kept.append(inst)
                except Exception:  # noqa: BLE001
                    if inst.kind.name != "ComputeInline":
                        return None
            try:
                sch = attempt(kept)
            except Exception:  # noqa: BLE001
                return None
        try:
            tvm.compile(sch.mod, target)  # the trace may apply yet leave an invalid program
        except Exception:  # noqa: BLE001
            return None
        return sch

    def _from_table_kernel(self, tmod: Any) -> Any:
        """The schedule of a fused conv task's table kernel (the same convolution + bias + ReLU, timed for
        the table), replayed on the task (see :meth:`_replay`); None if the task has no table kernel or the
        trace does not apply. The table's Σ then describes the schedules the network really runs, instead of
        each network task getting its own separately tuned 8-trial schedule (0.3–5x the table kernel's time)."""
        import tvm

        from hao.latency.programs import build_kernel_func

        k = self.task_kernel(tmod)
        if k is None:
            return None
        db, target = self.backend.database, self.backend.target
        kmod = tvm.IRModule({"main": build_kernel_func(k).func})
        rec = db.query_tuning_record(kmod, target, workload_name="main") if db.has_workload(kmod) else None
        if rec is None:
            return None
        sch = self._replay(rec.trace, tmod, target)
        return None if sch is None else (sch, rec.run_secs)

    def ensure(self, mod: Any) -> Any:
        """Give every task of ``mod`` (legalized + fused) a schedule and return a database holding exactly one
        record per task, the one the build must use: the table kernel's schedule where it replays
        (``reuse_table_schedules``), else the task's best record in the hardware database, else a schedule
        tuned now (and committed to the hardware database). Transferred schedules are not written to the
        hardware database (they are recomputed in about a second), so an older, separately tuned record of
        the same task can never win over them."""
        from tvm.s_tir import meta_schedule as ms

        from tvm.s_tir.meta_schedule.tune_context import _normalize_mod

        db, target = self.backend.database, self.backend.target
        chosen = ms.database.MemoryDatabase()
        tasks = ms.relax_integration.extract_tasks(mod, target)
        for task in tasks:
            # compile_relax looks records up under the normalized module (its function named "main")
            tmod = _normalize_mod(task.dispatched[0])
            args = ms.arg_info.ArgInfo.from_prim_func(tmod["main"])
            if self.reuse_table_schedules:
                got = self._from_table_kernel(tmod)
                if got is not None:
                    sch, run_secs = got
                    chosen.commit_tuning_record(ms.database.TuningRecord(
                        sch.trace, chosen.commit_workload(tmod), run_secs, target, args))
                    self.transferred_tasks += 1
                    continue
            rec = db.query_tuning_record(tmod, target, workload_name="main") if db.has_workload(tmod) else None
            if rec is not None:
                self.reused_tasks += 1
            else:
                sch, _, _ = self.backend.schedule(tmod)
                self.tuned_tasks += 1
                if sch is None:
                    raise ConfigError(f"MetaSchedule found no valid schedule for Relax task {task.task_name!r}.")
                rec = db.query_tuning_record(tmod, target, workload_name="main")
            # the record's own workload: its trace names that module's blocks, which may be named differently
            # in this (structurally equal) task; a database applies a trace to the workload it stores
            chosen.commit_tuning_record(ms.database.TuningRecord(
                rec.trace, chosen.commit_workload(rec.workload.mod), rec.run_secs, target, rec.args_info))
        return chosen

    def close(self) -> None:
        self.backend.close()
