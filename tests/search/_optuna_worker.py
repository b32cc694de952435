"""A search worker run as a subprocess by test_optuna.py (killed with SIGKILL mid-run, then restarted).

Usage: python -m tests.search._optuna_worker STORAGE_URL N_TRIALS LOG_FILE [SLEEP_S] [WORKER_ID]
Every objective evaluation appends one line "<config json>" to LOG_FILE before returning.
"""
from __future__ import annotations

import os
import sys
import time

from hao.search.base import SearchProblem
from hao.search.objectives import CallableObjective
from hao.search.optuna_solver import OptunaSolver
from tests.search._instances import random_instance


def make_problem(log_file: str, sleep_s: float) -> SearchProblem:
    base, _ = random_instance(11, n_costs=1, max_layers=7)
    proxy, cost = base.objectives

    def slow_proxy(cands):
        vals = proxy.evaluate(cands)
        time.sleep(sleep_s)
        with open(log_file, "a") as f:
            for c in cands:
                f.write(c.to_json() + "\n")
            f.flush()
            os.fsync(f.fileno())
        return vals

    return SearchProblem(base.space, [CallableObjective("proxy", slow_proxy), cost])


def main() -> None:
    url, n_trials, log_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    sleep_s = float(sys.argv[4]) if len(sys.argv) > 4 else 0.05
    worker = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    problem = make_problem(log_file, sleep_s)
    solver = OptunaSolver(sampler="nsga2", n_trials=n_trials, seed=3, storage=url, population_size=8,
                          study_name="kill-test", heartbeat_interval=1, grace_period=5, worker_id=worker)
    res = solver.solve(problem)
    print(f"done {len(res.df)}", flush=True)


if __name__ == "__main__":
    main()
