"""The solver extension point: :class:`SearchProblem`, :class:`Solver` and the solver registry.

A solver turns a :class:`SearchProblem` (a space, objectives, budgets) into a :class:`SearchResult`. hao ships
``ilp`` (exact, additive objectives), ``optuna`` (NSGA-II / TPE, any objectives, persistent storage),
``random`` and ``exhaustive``. Add one by subclassing :class:`Solver` and decorating it with
:func:`register_solver`.
"""
from __future__ import annotations

import contextlib
import math
import signal
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from hao.errors import ConfigError, InfeasibleBudgetError
from hao.registry import Registry, accepted_parameters
from hao.search._index import IndexedSpace
from hao.search.objectives import AdditiveObjective, Objective
from hao.search.result import SearchResult, within_budget
from hao.space.base import Candidate, SearchSpace

__all__ = ["SearchProblem", "within_budget", "Solver", "SOLVERS", "STOP", "stop_on_interrupt", "register_solver",
           "get_solver", "make_solver", "list_solvers", "BUDGET_ALIASES"]

#: Short budget names accepted everywhere (``--budget latency=2`` means ``latency_ms``).
BUDGET_ALIASES = {"latency": "latency_ms", "size": "size_mb", "bops": "bops_g", "model_size": "size_mb"}


@dataclass
class SearchProblem:
    """What to search: a space, objectives (each minimised or maximised, as it declares), budgets and references.

    Args:
        space: the search space.
        objectives: objectives to optimise; ``objectives[0]`` unless ``target`` says otherwise is the one a
            single-objective solver optimises (typically the accuracy model).
        budgets: objective name -> bound (same unit as the objective): an upper bound on a minimised objective,
            a lower bound on a maximised one. A budget is a constraint for every solver (Optuna sees it as a
            constraint, the ILP as a row).
        target: name of the objective a single-objective solver minimises; it is moved to the front.
        references: label -> candidate, evaluated and drawn on plots (e.g. uniform 8-bit).
    """

    space: SearchSpace
    objectives: Sequence[Objective]
    budgets: Mapping[str, float] = field(default_factory=dict)
    target: str | None = None
    references: Mapping[str, Candidate] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.space, SearchSpace):
            raise ConfigError(f"SearchProblem.space must be a SearchSpace, got {type(self.space).__name__}.")
        objs = list(self.objectives)
        if not objs:
            raise ConfigError("SearchProblem needs at least one objective.")
        names = [o.name for o in objs]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"Objective names must be unique, got duplicates {dup}.")
        for o in objs:
            if not isinstance(o, Objective):
                raise ConfigError(f"Objectives must be hao Objective instances, got {type(o).__name__}.")
            if isinstance(o, AdditiveObjective) and o.space_name != self.space.name:
                raise ConfigError(f"Objective {o.name!r} was built for space {o.space_name!r}, not "
                                  f"{self.space.name!r}.")
        target = self.target or names[0]
        if target not in names:
            raise ConfigError(f"target={target!r} is not an objective; objectives are {names}.")
        objs.sort(key=lambda o: o.name != target)
        self.objectives = tuple(objs)
        self.target = target
        self.budgets = normalize_budgets(self.budgets, objs)
        self.references = dict(self.references)
        self._index: IndexedSpace | None = None

    @property
    def names(self) -> list[str]:
        return [o.name for o in self.objectives]

    @property
    def directions(self) -> list[str]:
        """``"minimize"`` / ``"maximize"`` per objective, in :attr:`names` order."""
        return [o.direction for o in self.objectives]

    def objective(self, name: str) -> Objective:
        for o in self.objectives:
            if o.name == name:
                return o
        raise ConfigError(f"Unknown objective {name!r}; objectives are {self.names}.")

    @property
    def index(self) -> IndexedSpace:
        if self._index is None:
            self._index = IndexedSpace(self.space)
        return self._index

    @property
    def all_additive(self) -> bool:
        return all(o.additive for o in self.objectives)

    def evaluate_indices(self, G: np.ndarray, U: np.ndarray,
                         candidates: Sequence[Candidate] | None = None) -> np.ndarray:
        """``(n, n_objectives)`` values; callables get candidates (built here if not given)."""
        out = np.empty((U.shape[0], len(self.objectives)), dtype=np.float64)
        for k, o in enumerate(self.objectives):
            if isinstance(o, AdditiveObjective):
                out[:, k] = o.evaluate_indices(U)
            else:
                if candidates is None:
                    candidates = self.index.to_candidates(G, U)
                out[:, k] = o.evaluate(candidates)
        return out

    def evaluate(self, candidates: Sequence[Candidate]) -> np.ndarray:
        G, U = self.index.from_candidates(candidates)
        return self.evaluate_indices(G, U, list(candidates))

    def feasible(self, values: np.ndarray) -> np.ndarray:
        ok = np.ones(values.shape[0], dtype=bool)
        for name, b in self.budgets.items():
            ok &= within_budget(values[:, self.names.index(name)], b, self.objective(name).direction)
        return ok

    def reference_rows(self) -> dict[str, dict[str, Any]]:
        out = {}
        for label, cand in self.references.items():
            vals = self.evaluate([cand])[0]
            out[label] = {"config": cand.to_json(), **{n: float(v) for n, v in zip(self.names, vals)}}
        return out

    def result(self, G: np.ndarray, U: np.ndarray, values: np.ndarray, source: Sequence[str] | str,
               meta: dict[str, Any], candidates: Sequence[Candidate] | None = None,
               extra: Mapping[str, Sequence[Any]] | None = None, pareto_on: list[str] | None = None
               ) -> SearchResult:
        """Assemble a :class:`SearchResult` from index rows and their objective values."""
        cands = list(candidates) if candidates is not None else self.index.to_candidates(G, U)
        data: dict[str, Any] = {"config": [c.to_json() for c in cands]}
        for k, n in enumerate(self.names):
            data[n] = values[:, k] if len(cands) else np.zeros(0)
        data["source"] = [source] * len(cands) if isinstance(source, str) else list(source)
        for k, v in (extra or {}).items():
            data[k] = list(v)
        meta = {"space": self.space.name, "target": self.target, **meta}
        return SearchResult(pd.DataFrame(data), self.names, units={o.name: o.unit for o in self.objectives},
                            budgets=dict(self.budgets), pareto_on=pareto_on,
                            directions={o.name: o.direction for o in self.objectives},
                            references=self.reference_rows(), meta=meta)


def normalize_budgets(budgets: Mapping[str, Any] | None, objectives: Sequence[Objective]) -> dict[str, float]:
    """Resolve aliases, check names and values; raise a :class:`ConfigError` naming the bad budget and the
    achievable range where a budget is negative, not a number, or below the cheapest candidate."""
    names = [o.name for o in objectives]
    out: dict[str, float] = {}
    for raw, val in dict(budgets or {}).items():
        name = raw if raw in names else BUDGET_ALIASES.get(raw, raw)
        if name not in names:
            raise ConfigError(f"Budget on unknown objective {raw!r}. Objectives in this search: {names} "
                              f"(aliases: {BUDGET_ALIASES}).")
        try:
            v = float(val)
        except (TypeError, ValueError):
            raise ConfigError(f"Budget {raw}={val!r} is not a number; write e.g. {name}=2.5.") from None
        if not math.isfinite(v):
            raise ConfigError(f"Budget {raw}={val!r} must be a finite number.")
        obj = objectives[names.index(name)]
        if isinstance(obj, AdditiveObjective) and obj.direction == "maximize":
            lo, hi = obj.bounds()
            if v > hi * (1 + 1e-12) + 1e-15:
                raise InfeasibleBudgetError(
                    f"Budget {name}>={v:g} {obj.unit} is infeasible: the best candidate of this space reaches "
                    f"{hi:.6g} {obj.unit} (range [{lo:.6g}, {hi:.6g}]; {name} is maximised, so its budget is a lower "
                    f"bound). Lower it to at most {hi:.6g}.")
        elif isinstance(obj, AdditiveObjective):
            lo, hi = obj.bounds()
            if v < 0 and lo >= 0:
                raise ConfigError(f"Budget {name}={v:g} is negative; {name} ranges over [{lo:.6g}, {hi:.6g}] "
                                  f"{obj.unit} in this space. Give a value of at least {lo:.6g}.")
            if v < lo * (1 - 1e-12) - 1e-15:
                raise InfeasibleBudgetError(
                    f"Budget {name}={v:g} {obj.unit} is infeasible: the cheapest candidate of this space needs "
                    f"{lo:.6g} {obj.unit} (range [{lo:.6g}, {hi:.6g}]). Raise the budget to at least {lo:.6g}.")
        elif v < 0 and obj.direction == "minimize":
            raise ConfigError(f"Budget {name}={v:g} is negative; budgets are upper bounds on costs and must be "
                              ">= 0.")
        out[name] = v
    return out


class Solver(ABC):
    """Base class of hao's solvers.

    Contract (mirrors ``optuna.samplers.BaseSampler``):

    * ``__init__`` only stores and validates parameters (unknown or out-of-range values raise
      :class:`~hao.errors.ConfigError` naming the parameter, the value and the valid range). No work, no I/O.
    * :meth:`solve` is called with a validated :class:`SearchProblem` and returns a :class:`SearchResult`
      holding **every candidate the solver evaluated** (or, for ``exhaustive`` on large spaces, the ones it was
      asked to keep), with all objectives. Budgets are constraints: infeasible rows may appear but are marked.
    * Randomness comes only from ``seed`` (a ``numpy.random.Generator`` / the sampler's own seed); the global
      RNGs of numpy, random and torch are never touched. Same seed + same problem = same result.
    * Solvers with ``requires_additive = True`` accept only :class:`AdditiveObjective` and say so otherwise.
    * ``solve`` may be called several times on one instance; instances are not shared between threads.
    """

    #: Registry name.
    name: ClassVar[str] = "abstract"
    #: Whether every objective must be additive.
    requires_additive: ClassVar[bool] = False
    #: The constructor parameter that bounds how many candidates it evaluates (``n_trials`` of the generic
    #: options maps onto it; ``None``: the solver has no such budget).
    evaluation_budget: ClassVar[str | None] = None
    #: Whether ``solve`` polls :data:`STOP` between evaluations and returns early (with its evaluations stored
    #: where it stores them) when it is set; the CLI then turns a first Ctrl-C into a clean stop.
    stops_gracefully: ClassVar[bool] = False

    def check_problem(self, problem: SearchProblem) -> None:
        if not isinstance(problem, SearchProblem):
            raise ConfigError(f"{type(self).__name__}.solve needs a SearchProblem, got {type(problem).__name__}.")
        if self.requires_additive and not problem.all_additive:
            bad = [o.name for o in problem.objectives if not o.additive]
            raise ConfigError(f"Solver {self.name!r} needs additive objectives, but {bad} are not; use "
                              "solver='optuna' or 'random' for non-additive objectives.")

    @abstractmethod
    def solve(self, problem: SearchProblem, *, progress: bool = False) -> SearchResult:
        """Search ``problem`` and return every evaluated candidate as a :class:`SearchResult`."""

    def __repr__(self) -> str:
        params = {k: v for k, v in vars(self).items() if not k.startswith("_")}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in params.items())})"


#: Set when the user asked a running search to stop (see :func:`stop_on_interrupt`). A solver that can end early
#: polls it between evaluations and returns what it has; the others are interrupted by KeyboardInterrupt.
STOP = threading.Event()


@contextlib.contextmanager
def stop_on_interrupt():
    """During the block, the first Ctrl-C (SIGINT) only sets :data:`STOP` — solvers that poll it finish the
    evaluation in progress, record it, and return — and a second Ctrl-C raises ``KeyboardInterrupt`` as usual.
    Worker processes forked inside the block inherit the handler. Yields the event; outside the main thread the
    handler cannot be installed and the block runs unchanged."""
    STOP.clear()
    if threading.current_thread() is not threading.main_thread():
        yield STOP
        return

    def _handler(signum: int, frame: Any) -> None:
        if STOP.is_set():
            raise KeyboardInterrupt
        STOP.set()

    old = signal.signal(signal.SIGINT, _handler)
    try:
        yield STOP
    finally:
        signal.signal(signal.SIGINT, old)


SOLVERS: Registry = Registry("solver", base=Solver, entry_points="hao.solvers",
                             builtins=("hao.search.baselines", "hao.search.ilp", "hao.search.front",
                                       "hao.search.optuna_solver", "hao.search.dmasking"),
                             hint="Register one with hao.search.register_solver (see CONTRIBUTING.md).")


def register_solver(name: str) -> Callable[[type[Solver]], type[Solver]]:
    """Class decorator registering a :class:`Solver` subclass under ``name``."""
    return SOLVERS.register(name)


def list_solvers() -> list[str]:
    return SOLVERS.names()


def make_solver(name: str | Solver, *, seed: int | None = None, n_trials: int | None = None,
                **params: Any) -> Solver:
    """Create a solver from hao's generic options, without knowing which solver it is.

    ``seed`` goes to solvers whose constructor takes one; ``n_trials`` to the parameter the class names in
    :attr:`Solver.evaluation_budget`; every other parameter must be one the constructor accepts (an option that
    does not apply to this solver is an error naming the ones that do)."""
    if isinstance(name, Solver):
        if params or n_trials is not None:
            raise ConfigError(f"Got a solver instance and extra parameters {sorted(params)}; pass either.")
        return name
    cls = SOLVERS.get(name)
    accepted = accepted_parameters(cls)
    p = dict(params)
    if seed is not None and "seed" in accepted:
        p.setdefault("seed", seed)
    if n_trials is not None:
        if cls.evaluation_budget is None:
            with_budget = [n for n in SOLVERS.names() if SOLVERS.get(n).evaluation_budget]
            raise ConfigError(f"n_trials (--trials) bounds the evaluations of {', '.join(with_budget)}; solver "
                              f"{name!r} has no such budget. Drop it or pick one of those solvers.")
        p[cls.evaluation_budget] = n_trials
    bad = sorted(k for k in p if k not in accepted)
    if bad:
        raise ConfigError(f"{bad} do not apply to solver {name!r}; it accepts {accepted}.")
    return SOLVERS.create(name, **p)


def get_solver(name: str | Solver, **params: Any) -> Solver:
    """Create the solver ``name`` with ``params`` (or return a :class:`Solver` instance unchanged)."""
    if isinstance(name, Solver):
        if params:
            raise ConfigError(f"Got a solver instance and extra parameters {sorted(params)}; pass either.")
        return name
    return SOLVERS.create(name, **params)


