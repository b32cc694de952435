"""Search: solvers (ilp, optuna, random, exhaustive), objectives, results.

``hao.search(...)`` is the user entry point (see :func:`hao.search.api.search`). This package is itself
callable, so ``hao.search(space=..., ...)`` works whether or not a submodule has been imported (importing
``hao.search.ilp`` makes ``hao.search`` refer to this package).
"""
from __future__ import annotations

import sys
import types
from typing import Any

from hao.search.base import SearchProblem, Solver, get_solver, list_solvers, register_solver
from hao.search.objectives import (AdditiveObjective, CallableObjective, Objective, bops_objective,
                                   kernel_objective, latency_objective, macs_objective, proxy_objective,
                                   size_objective)
from hao.search.result import ParetoPlotInfo, SearchResult, draw_pareto, pareto_plot_info

__all__ = ["search", "SearchProblem", "Solver", "get_solver", "list_solvers", "register_solver", "Objective",
           "AdditiveObjective", "CallableObjective", "kernel_objective", "size_objective", "bops_objective",
           "macs_objective", "latency_objective", "proxy_objective", "SearchResult", "ParetoPlotInfo",
           "pareto_plot_info", "draw_pareto"]


def search(*args: Any, **kwargs: Any) -> SearchResult:
    """Run a search; see :func:`hao.search.api.search` for the arguments."""
    from hao.search.api import search as _search
    return _search(*args, **kwargs)


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> SearchResult:
        return search(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
