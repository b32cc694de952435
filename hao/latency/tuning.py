"""MetaSchedule tuning that leaves the host application's logging alone.

``tvm.s_tir.meta_schedule.tune_tir`` sets up its loggers with :func:`logging.config.dictConfig`, which

* builds its handler list from ``handler.get_name()`` of every handler already on the
  ``tvm.s_tir.meta_schedule`` logger, and fails with ``AttributeError: 'NoneType' object has no attribute
  'format'`` as soon as one of them is unnamed (pytest >= 9.2 leaves an unnamed ``LogCaptureHandler`` there;
  Jupyter kernels and logging frameworks do the same), and
* flushes and closes *every* handler of the process (``dictConfig`` clears the logging module's handler list),
  and adds a console handler that prints to stdout on every call.

:func:`tune_tir` here builds the same tuning contexts as TVM's ``tune_tir`` (one per PrimFunc, seeds forked the
same way) but hands each task a plain ``logging.Logger`` of its own, a child of ``hao.latency.tuning`` that
writes to a log file in the work folder and does not propagate, and then calls the public
``meta_schedule.tune_tasks``, which configures no logging. Nothing outside that child logger is touched, and
the log file handler is removed and closed when the call returns.
"""
from __future__ import annotations

import logging
import os
from typing import Any

__all__ = ["tune_tir"]

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
