"""MetaSchedule plumbing: tuning that leaves the host application's logging alone, an in-process builder, and
the look-up-or-tune step every TVM kernel and network task goes through.

* :func:`tune_tir` — ``tvm.s_tir.meta_schedule.tune_tir`` sets up its loggers with
  :func:`logging.config.dictConfig`, which

  * builds its handler list from ``handler.get_name()`` of every handler already on the
    ``tvm.s_tir.meta_schedule`` logger, and fails with ``AttributeError: 'NoneType' object has no attribute
    'format'`` as soon as one of them is unnamed (pytest >= 9.2 leaves an unnamed ``LogCaptureHandler`` there;
    Jupyter kernels and logging frameworks do the same), and
  * flushes and closes *every* handler of the process (``dictConfig`` clears the logging module's handler
    list), and adds a console handler that prints to stdout on every call.

  The :func:`tune_tir` here builds the same tuning contexts as TVM's ``tune_tir`` (one per PrimFunc, seeds
  forked the same way) but hands each task a plain ``logging.Logger`` of its own, a child of
  ``hao.latency.tuning`` that writes to a log file in the work folder and does not propagate, and then calls the
  public ``meta_schedule.tune_tasks``, which configures no logging. Nothing outside that child logger is
  touched, and the log file handler is removed and closed when the call returns.
* :func:`in_process_builder` — a builder that compiles candidates in this process's threads.
* :func:`schedule_or_tune` — a workload's schedule from a database, or tuned now and its best record committed.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any

__all__ = ["tune_tir", "in_process_builder", "schedule_or_tune"]

_LOGGER_PREFIX = "hao.latency.tuning.task"


def _task_logger(work_dir: str, index: int, name: str) -> tuple[logging.Logger, logging.Handler]:
    """A non-propagating logger for one tuning task, writing DEBUG and up to ``work_dir/logs``."""
    log_dir = os.path.join(work_dir, "logs")
    os.makedirs(log_dir, exist_ok=True)
    logger = logging.getLogger(f"{_LOGGER_PREFIX}.{os.getpid()}.{index}_{name[:100]}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    handler = logging.FileHandler(os.path.join(log_dir, f"task_{index}_{name[:100]}.log"), mode="a", delay=True)
    handler.setFormatter(logging.Formatter("%(asctime)s [%(levelname)s] %(message)s", "%Y-%m-%d %H:%M:%S"))
    handler.set_name(f"{logger.name}.file")
    logger.addHandler(handler)
    return logger, handler


def tune_tir(mod: Any, target: Any, work_dir: str, *, max_trials_global: int, num_trials_per_iter: int,
             builder: Any, runner: Any, database: Any, strategy: Any, cost_model: str = "random",
             seed: int | None = None, num_tuning_cores: int | str = "physical") -> Any:
    """Tune every PrimFunc of ``mod`` (an ``IRModule`` or a ``PrimFunc``) with MetaSchedule into ``database``.

    Same arguments and result as ``tvm.s_tir.meta_schedule.tune_tir`` (the subset hao uses), without its
    process-wide logging set-up (see the module docstring). Returns the database."""
    from tvm import tirx
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.tune_context import _normalize_mod
    from tvm.s_tir.meta_schedule.utils import fork_seed

    if isinstance(mod, tirx.PrimFunc):
        mod = _normalize_mod(mod)
    named = sorted(((gv.name_hint, f) for gv, f in mod.functions_items() if isinstance(f, tirx.PrimFunc)),
                   key=lambda x: x[0])
    handlers: list[tuple[logging.Logger, logging.Handler]] = []
    try:
        tasks = []
        for i, ((name, func), rand_state) in enumerate(zip(named, fork_seed(seed, n=len(named)))):
            logger, handler = _task_logger(work_dir, i, name)
            handlers.append((logger, handler))
            tasks.append(ms.TuneContext(mod=func, target=target, space_generator="post-order-apply",
                                        search_strategy=strategy, task_name=name, rand_state=rand_state,
                                        num_threads=num_tuning_cores, logger=logger).clone())
        return ms.tune_tasks(tasks=tasks, task_weights=[1.0] * len(tasks), work_dir=work_dir,
                             max_trials_global=max_trials_global, num_trials_per_iter=num_trials_per_iter,
                             builder=builder, runner=runner, database=database, cost_model=cost_model,
                             measure_callbacks="default", task_scheduler="gradient")
    finally:
        for logger, handler in handlers:
            logger.removeHandler(handler)
            handler.close()


def in_process_builder(threads: int) -> Any:
    """A MetaSchedule builder that builds in this process (thread pool) instead of a PopenPool.

    LocalBuilder recreates its worker pool for every batch; each worker imports tvm and the intrinsics (several
    seconds) before building candidates that take 0.03-0.45 s each. Building in-process made an 8-trial tuning
    of an int8 conv ~2.5x faster here. A crash inside LLVM would take this process down: calibration is
    resumable, so that costs one kernel.
    """
    from concurrent.futures import ThreadPoolExecutor

    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder
    from tvm.s_tir.meta_schedule.builder.local_builder import default_build, default_export

    @derived_object
    class InProcessBuilder(PyBuilder):
        def build(self, build_inputs: list) -> list:
            def one(bi: Any) -> Any:
                try:
                    return BuilderResult(default_export(default_build(bi.mod, bi.target, None)), None)
                except Exception as exc:  # noqa: BLE001 - recorded as a failed candidate
                    return BuilderResult(None, f"InProcessBuilder: {type(exc).__name__}: {exc}"[:2000])

            with ThreadPoolExecutor(max_workers=threads) as ex:
                return list(ex.map(one, build_inputs))

    return InProcessBuilder()


def schedule_or_tune(mod: Any, target: Any, database: Any, work_dir: str, *, trials: int, population: int,
                     builder: Any, runner: Any, cost_model: str, seed: int | None) -> tuple[Any, int, float]:
    """(schedule, trials spent now, seconds) for the workload ``mod``: its record in ``database``, or tuned now
    with ``trials`` trials (EvolutionarySearch with ``population``, one genetic iteration) and the best record
    committed to ``database``. The schedule is None when tuning found no valid candidate."""
    from tvm.s_tir import meta_schedule as ms

    sch = database.query_schedule(mod, target, workload_name="main")
    if sch is not None:
        return sch, 0, 0.0
    t0 = time.perf_counter()
    mem = ms.database.MemoryDatabase()
    tune_tir(mod, target, work_dir, max_trials_global=trials, num_trials_per_iter=trials, builder=builder,
             runner=runner, database=mem, cost_model=cost_model,
             strategy=ms.search_strategy.EvolutionarySearch(population_size=population, genetic_num_iters=1),
             seed=seed)
    wl = mem.commit_workload(mod)
    top = mem.get_top_k(wl, 1)
    if not top:
        return None, trials, time.perf_counter() - t0
    rec = top[0]
    pwl = database.commit_workload(mod)
    database.commit_tuning_record(ms.database.TuningRecord(rec.trace, pwl, rec.run_secs, target, rec.args_info))
    sch = database.query_schedule(mod, target, workload_name="main")
    return sch, trials, time.perf_counter() - t0
