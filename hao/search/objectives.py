"""Objectives a solver minimises or budgets: additive (vectorized, ILP-ready) or arbitrary callables.

Every cost hao knows is additive over the units of a search space (``hao/space/base.py``): it is a
constant plus, for every unit, a value that depends only on the unit's option index. An
:class:`AdditiveObjective` stores exactly that: one cost vector per unit, indexed like
``space.unit_options(unit)`` (the last entry of a gated unit is its cost when switched off, usually 0). Scoring
``n`` candidates is one gather and one sum over an ``(n, n_units)`` index array, which is what lets the random
solver score >10^5 candidates per second and the ILP solver read its coefficients directly.

A :class:`CallableObjective` wraps anything else (a measured latency, a learned accuracy correction): a function
of a list of candidates. Only the sampling solvers (optuna, random, exhaustive) accept it.

Builders:

* :meth:`AdditiveObjective.from_unit_fn` — ``fn(unit_name, local_assignment_or_None) -> float``;
* :func:`kernel_objective` — any per-kernel cost ``cost(list[KernelSpec]) -> array`` summed over a candidate's
  kernels (one batched call for the whole space);
* :func:`size_objective` (weights, MB), :func:`bops_objective` (GBOPs), :func:`macs_objective`;
* :func:`latency_objective` — a ``LatencyPredictor`` (or any object with ``predict(kernels)``);
* :func:`proxy_objective` — an ``AccuracyProxy`` (or any ``fn(unit, local)``).
"""
from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from hao.errors import ConfigError
from hao.kernel import KernelSpec
from hao.registry import Registry
from hao.space.base import Candidate, SearchSpace

__all__ = ["OBJECTIVES", "ObjectiveContext", "register_objective", "list_objectives", "make_objective", "Objective",
           "AdditiveObjective", "CallableObjective", "kernel_objective", "size_objective", "bops_objective",
           "macs_objective", "latency_objective", "proxy_objective", "accuracy_objective"]


class Objective:
    """Base class: a named quantity to minimise or maximise (or to keep within a budget).

    Subclasses implement :meth:`evaluate` (candidates -> float array). ``name`` is the column name in results
    and the key of budgets (e.g. ``latency_ms``); ``unit`` is a human-readable unit for axis labels;
    ``direction`` is ``"minimize"`` (costs, the ΔL proxy) or ``"maximize"`` (e.g. predicted accuracy). Every
    solver, the Pareto flags, hypervolumes and plots follow it; a budget on a maximised objective is a lower
    bound.
    """

    name: str
    unit: str = ""
    additive: bool = False
    direction: str = "minimize"

    @property
    def sign(self) -> float:
        """``+1`` when minimised, ``-1`` when maximised (``sign * value`` is always minimised)."""
        return 1.0 if self.direction == "minimize" else -1.0

    def _set_direction(self, direction: str) -> None:
        from hao.pareto import DIRECTIONS
        if direction not in DIRECTIONS:
            raise ConfigError(f"Objective {getattr(self, 'name', '?')!r}: direction must be one of {DIRECTIONS}, "
                              f"got {direction!r}.")
        self.direction = direction

    def evaluate(self, candidates: Sequence[Candidate]) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def label(self) -> str:
        return f"{self.name} [{self.unit}]" if self.unit else self.name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class AdditiveObjective(Objective):
    """``value(candidate) = constant + sum_j tables[j][option index of unit j]``.

    Args:
        space: the search space whose units index the tables.
        name: column / budget name, e.g. ``"latency_ms"``.
        tables: one 1-D array per unit of ``space`` (in ``space.units()`` order), of length
            ``len(space.unit_options(unit))``.
        constant: cost present in every candidate (fixed kernels, pinned layers, per-network overhead).
        unit: unit label for plots.
        direction: ``"minimize"`` (default) or ``"maximize"``.
        link: optional ``(fn, inverse)``, both monotone increasing and vectorized: the objective's value is then
            ``fn(constant + sum ...)`` (e.g. a calibrated accuracy model fitted on the log of the error rate,
            whose additive score maps to percent by :meth:`hao.proxy.CalibratedAccuracyModel.to_accuracy`). The
            exact solvers work on the additive *score* (:meth:`score_indices`; budgets are carried to it by
            ``inverse``), which orders candidates as the value does; values, bounds and budgets are in the
            value's unit.
    """

    additive = True

    def __init__(self, space: SearchSpace, name: str, tables: Sequence[np.ndarray], constant: float = 0.0,
                 unit: str = "", direction: str = "minimize",
                 link: tuple[Callable, Callable] | None = None) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigError(f"Objective name must be a non-empty string, got {name!r}.")
        self.name = name
        self._set_direction(direction)
        units = space.units()
        if len(tables) != len(units):
            raise ConfigError(f"Objective {name!r} has {len(tables)} unit tables, space {space.name!r} has "
                              f"{len(units)} units.")
        self.space_name = space.name
        self.name = name
        self.unit = unit
        self.constant = float(constant)
        self.tables = []
        for u, t in zip(units, tables):
            arr = np.asarray(t, dtype=np.float64).reshape(-1)
            n_opt = len(space.unit_options(u))
            if arr.shape[0] != n_opt:
                raise ConfigError(f"Objective {name!r}: unit {u.name!r} has {n_opt} options, its table has "
                                  f"{arr.shape[0]} values.")
            if not np.all(np.isfinite(arr)):
                bad = int(np.flatnonzero(~np.isfinite(arr))[0])
                raise ConfigError(f"Objective {name!r}: unit {u.name!r} option {bad} has a non-finite cost "
                                  f"{arr[bad]!r}; every option needs a finite cost.")
            self.tables.append(arr)
        if not np.isfinite(self.constant):
            raise ConfigError(f"Objective {name!r}: constant must be finite, got {constant!r}.")
        width = max((t.shape[0] for t in self.tables), default=1)
        self._dense = np.zeros((len(self.tables), width), dtype=np.float64)
        for j, t in enumerate(self.tables):
            self._dense[j, : t.shape[0]] = t
        self._flat = self._dense.ravel()
        self._offsets = np.arange(len(self.tables), dtype=np.int64) * width
        self._space = space
        if link is not None and not (isinstance(link, tuple) and len(link) == 2 and all(map(callable, link))):
            raise ConfigError(f"Objective {name!r}: link must be (fn, inverse), two callables, got {link!r}.")
        self.link = link

    def to_score(self, value: float) -> float:
        """A value (e.g. a budget) as the additive score the exact solvers sum: ``inverse(value)`` with a link."""
        return float(value) if self.link is None else float(self.link[1](float(value)))

    # ---- builders -------------------------------------------------------------------------------------
    @classmethod
    def from_unit_fn(cls, space: SearchSpace, name: str,
                     fn: Callable[[str, Mapping[str, int] | None], float], constant: float = 0.0,
                     unit: str = "", direction: str = "minimize") -> "AdditiveObjective":
        """Build the tables by calling ``fn(unit_name, local)`` for every option (``None`` = gated off)."""
        tables = [np.array([float(fn(u.name, loc)) for loc in space.unit_options(u)]) for u in space.units()]
        return cls(space, name, tables, constant, unit, direction)

    # ---- scoring --------------------------------------------------------------------------------------
    def evaluate_indices(self, unit_idx: np.ndarray) -> np.ndarray:
        """Vectorized value of an ``(n, n_units)`` array of option indices (the additive score, through the
        ``link`` when there is one)."""
        score = self.score_indices(unit_idx)
        return score if self.link is None else np.asarray(self.link[0](score), dtype=np.float64)

    def score_indices(self, unit_idx: np.ndarray) -> np.ndarray:
        """The additive score ``constant + Σ tables`` of an ``(n, n_units)`` array of option indices (the value
        itself unless the objective has a ``link``)."""
        U = np.asarray(unit_idx, dtype=np.int64)
        if U.ndim != 2 or U.shape[1] != len(self.tables):
            raise ConfigError(f"unit_idx must have shape (n, {len(self.tables)}), got {U.shape}.")
        return self.constant + self._flat[U + self._offsets].sum(axis=1)

    def evaluate(self, candidates: Sequence[Candidate]) -> np.ndarray:
        return self.evaluate_indices(self._space.unit_indices(list(candidates)))

    def bounds(self) -> tuple[float, float]:
        """Exact (min, max) of the value over the space."""
        lo, hi = self.score_bounds()
        if self.link is None:
            return lo, hi
        return float(self.link[0](lo)), float(self.link[0](hi))

    def score_bounds(self) -> tuple[float, float]:
        """Exact (min, max) of the additive score over the space: gates are independent, units given gate values
        are too."""
        from hao.search._index import IndexedSpace
        ix = IndexedSpace(self._space)
        lo = hi = self.constant
        for j, t in enumerate(self.tables):
            if not ix.gated[j]:
                lo += float(t.min())
                hi += float(t.max())
        for gi in range(ix.n_gates):
            los, his = [], []
            for vi in range(len(ix.gate_values[gi])):
                a = b = 0.0
                for j in np.flatnonzero(ix.gate_of == gi):
                    t = self.tables[j]
                    if ix.active[j][vi]:
                        a += float(t[: ix.n_on[j]].min())
                        b += float(t[: ix.n_on[j]].max())
                    else:
                        a += float(t[ix.off_index[j]])
                        b += float(t[ix.off_index[j]])
                los.append(a)
                his.append(b)
            lo += min(los)
            hi += max(his)
        return lo, hi

    def scaled(self, factor: float, name: str | None = None, unit: str | None = None,
               direction: str | None = None) -> "AdditiveObjective":
        """``factor * self`` (a negative factor with ``direction="maximize"`` turns a loss into a score)."""
        if self.link is not None:
            raise ConfigError(f"Objective {self.name!r} has a link (its value is not its additive score), so it "
                              "cannot be scaled; scale the model's terms instead.")
        return AdditiveObjective(self._space, name or self.name, [t * factor for t in self.tables],
                                 self.constant * factor, self.unit if unit is None else unit,
                                 direction or self.direction)


class CallableObjective(Objective):
    """Any objective: ``fn(list[Candidate]) -> array of floats`` (called in batches by the solvers)."""

    def __init__(self, name: str, fn: Callable[[Sequence[Candidate]], Any], unit: str = "",
                 direction: str = "minimize") -> None:
        if not callable(fn):
            raise ConfigError(f"CallableObjective {name!r} needs a callable, got {type(fn).__name__}.")
        self.name, self.fn, self.unit = name, fn, unit
        self._set_direction(direction)

    def evaluate(self, candidates: Sequence[Candidate]) -> np.ndarray:
        vals = np.asarray(self.fn(list(candidates)), dtype=np.float64).reshape(-1)
        if vals.shape[0] != len(candidates):
            raise ConfigError(f"Objective {self.name!r} returned {vals.shape[0]} values for "
                              f"{len(candidates)} candidates.")
        return vals


# ---- kernel-based builders ------------------------------------------------------------------------------
_KERNEL_INDEX: "weakref.WeakKeyDictionary[SearchSpace, dict[bool, dict[str, Any]]]" = weakref.WeakKeyDictionary()


def _kernel_index(space: SearchSpace, include_fixed: bool, granularity: str = "kernel") -> dict[str, Any]:
    """Every kernel of every option of every unit (then the fixed kernels), de-duplicated; computed once per
    space and granularity and shared by all kernel-based objectives (size, BOPs, latency)."""
    per_space = _KERNEL_INDEX.setdefault(space, {})
    if (include_fixed, granularity) in per_space:
        return per_space[(include_fixed, granularity)]
    unit_fn, fixed_fn = space.granularity_hooks(granularity)
    slots: list[tuple[int, int]] = []
    kernels: list[KernelSpec] = []
    for j, u in enumerate(space.units()):
        for o, loc in enumerate(space.unit_options(u)):
            ks = unit_fn(u.name, loc)
            kernels.extend(ks)
            slots.extend([(j, o)] * len(ks))
    pre, post = fixed_fn() if include_fixed else ([], [])
    allk = kernels + list(pre) + list(post)
    # many options share kernels (the expand conv does not depend on the depthwise bits): cost each once
    uniq: dict[KernelSpec, int] = {}
    inv = np.fromiter((uniq.setdefault(k, len(uniq)) for k in allk), dtype=np.int64, count=len(allk))
    out = {"unique": list(uniq), "inv": inv, "slots": np.asarray(slots, dtype=np.int64).reshape(-1, 2),
           "n_unit_kernels": len(kernels)}
    per_space[(include_fixed, granularity)] = out
    return out


def kernel_objective(space: SearchSpace, name: str, cost: Callable[[list[KernelSpec]], Any],
                     constant: float = 0.0, unit: str = "", include_fixed: bool = True,
                     granularity: str = "kernel") -> AdditiveObjective:
    """Sum of a per-kernel cost over a candidate's kernels (``granularity="block"``: its block kernels, for a
    block-level table).

    ``cost(kernels)`` must return one value per kernel; it is called once with the kernels of every option of
    every unit (plus the fixed kernels), so a predictor pays its per-call overhead once.
    """
    idx = _kernel_index(space, include_fixed, granularity)
    ukernels = idx["unique"]
    uvals = np.asarray(cost(ukernels), dtype=np.float64).reshape(-1) if ukernels else np.zeros(0)
    if uvals.shape[0] != len(ukernels):
        raise ConfigError(f"Kernel cost for objective {name!r} returned {uvals.shape[0]} values for "
                          f"{len(ukernels)} kernels; it must return one value per kernel.")
    if not np.all(np.isfinite(uvals)):
        bad = ukernels[int(np.flatnonzero(~np.isfinite(uvals))[0])]
        raise ConfigError(f"Kernel cost for objective {name!r} is not finite for {bad}.")
    slots, n_unit = idx["slots"], idx["n_unit_kernels"]
    vals = uvals[idx["inv"]]
    tables = [np.zeros(len(space.unit_options(u))) for u in space.units()]
    for j in range(len(tables)):
        m = slots[:, 0] == j
        if m.any():
            tables[j] += np.bincount(slots[m, 1], weights=vals[:n_unit][m], minlength=tables[j].size)
    const = float(constant) + float(vals[n_unit:].sum())
    return AdditiveObjective(space, name, tables, const, unit)


def size_objective(space: SearchSpace, name: str = "size_mb") -> AdditiveObjective:
    """Weight storage in MB (10^6 bytes) at each kernel's weight bits (32 = float32)."""
    return kernel_objective(space, name, lambda ks: [k.weight_bytes / 1e6 for k in ks], unit="MB")


def bops_objective(space: SearchSpace, name: str = "bops_g") -> AdditiveObjective:
    """Bit operations (MACs x w_bits x a_bits), in units of 10^9."""
    return kernel_objective(space, name, lambda ks: [k.bops / 1e9 for k in ks], unit="GBOPs")


def macs_objective(space: SearchSpace, name: str = "macs_m") -> AdditiveObjective:
    """Multiply-accumulates in millions."""
    return kernel_objective(space, name, lambda ks: [k.macs / 1e6 for k in ks], unit="MMACs")


def latency_objective(space: SearchSpace, predictor: Any, name: str = "latency_ms",
                      overhead_ms: float | None = None) -> AdditiveObjective:
    """Predicted latency in ms, as ``LatencyPredictor.network_latency`` computes it: scale · Σ per-kernel
    predictions + the per-network overhead (a + b·kernels).

    ``predictor`` is a fitted ``hao.latency.LatencyPredictor`` or any object with ``predict(kernels)`` returning
    ms per kernel. A predictor fitted on a block-level table (``granularity_ == "block"``) is asked for the
    space's block kernels (:meth:`~hao.space.SearchSpace.unit_blocks`). The overhead is taken from
    ``overhead_ms`` if given, else from the predictor's ``overhead_ms_`` attribute (0 if it has none); the
    scale from its ``network_scale_`` (1 if it has none).
    """
    if callable(getattr(predictor, "predict", None)):
        fn = predictor.predict
    elif callable(predictor):
        fn = predictor
    else:
        raise ConfigError(f"latency_objective needs a predictor with predict(kernels) -> ms per kernel, got "
                          f"{type(predictor).__name__}.")
    if overhead_ms is None:
        overhead_ms = float(getattr(predictor, "overhead_ms_", 0.0) or 0.0)
    per_kernel = float(getattr(predictor, "overhead_per_kernel_ms_", 0.0) or 0.0)
    scale = float(getattr(predictor, "network_scale_", 1.0) or 1.0)
    if not (np.isfinite(scale) and scale > 0):
        raise ConfigError(f"The predictor's network_scale_ must be a positive number, got {scale!r}; refit it with "
                          "`hao latency validate`.")
    try:  # a hao LatencyPredictor uses measured rows where the table has them (as network_latency does)
        import inspect
        measured = "prefer_measured" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        measured = False

    def cost(ks: list[KernelSpec]) -> np.ndarray:
        out = np.asarray(fn(ks, prefer_measured=True) if measured else fn(ks), dtype=np.float64)
        return scale * out + per_kernel

    granularity = str(getattr(predictor, "granularity_", "kernel"))
    from hao.latency.coverage import bit_mismatch_warning, predictor_bit_pairs
    have = predictor_bit_pairs(predictor)
    if have is not None:
        uses = {(k.w_bits, k.a_bits) for k in _kernel_index(space, True, granularity)["unique"]}
        msg = bit_mismatch_warning(uses, have, str(getattr(predictor, "hardware_", "the table")),
                                   int8_answers_sub8=bool(getattr(predictor, "maps_to_executed_", False)))
        if msg:
            import warnings
            warnings.warn(msg + " (`hao latency check` shows the coverage.)", UserWarning, stacklevel=2)
    return kernel_objective(space, name, cost, constant=overhead_ms, unit="ms", granularity=granularity)


def proxy_objective(space: SearchSpace, proxy: Any, name: str = "proxy") -> Objective:
    """The accuracy proxy as an objective.

    ``proxy`` is an additive ``hao.proxy`` proxy (``is_additive``: its ``unit_costs()`` and ``constant`` become
    an :class:`AdditiveObjective`), any other ``BaseAccuracyProxy`` (its ``score`` becomes a
    :class:`CallableObjective`, for Optuna) or a function ``fn(unit_name, local) -> float``.
    """
    if getattr(proxy, "is_additive", False) and hasattr(proxy, "unit_costs"):
        if getattr(proxy, "space", space).name != space.name:
            raise ConfigError(f"The proxy was built for space {proxy.space.name!r}, not {space.name!r}.")
        return AdditiveObjective(space, name, proxy.unit_costs(), float(proxy.constant), unit="ΔL")
    if callable(getattr(proxy, "score", None)):
        return CallableObjective(name, proxy.score, unit="ΔL")  # type: ignore[return-value]
    if callable(proxy):
        return AdditiveObjective.from_unit_fn(space, name, proxy, unit="ΔL")
    raise ConfigError(f"proxy_objective needs an AccuracyProxy or fn(unit, local) -> float, got "
                      f"{type(proxy).__name__}.")


def accuracy_objective(space: SearchSpace, model: Any, name: str = "accuracy") -> AdditiveObjective:
    """Predicted accuracy in percent, **maximised**, from a calibrated accuracy model (one with ``predict`` and
    a fitted ``intercept_``, e.g. :class:`hao.proxy.CalibratedAccuracyModel`): ``intercept_ − Σ unit costs``, through
    the model's ``to_accuracy`` as the objective's link when it was fitted on another scale (``target``)."""
    if not (getattr(model, "is_additive", False) and hasattr(model, "intercept_")):
        raise ConfigError(f"The 'accuracy' objective needs a fitted calibrated accuracy model (proxy='calibrated', "
                          f"see docs/accuracy_model.md); got {type(model).__name__}. Use the 'proxy' objective (a "
                          "predicted loss increase) with other accuracy models.")
    if model.space.name != space.name:
        raise ConfigError(f"The accuracy model was built for space {model.space.name!r}, not {space.name!r}.")
    link = None
    if getattr(model, "target", "accuracy") != "accuracy":  # fitted on another scale: to_accuracy maps it
        link = (model.to_accuracy, model.from_accuracy)
    return AdditiveObjective(space, name, [-np.asarray(c) for c in model.unit_costs()],
                             float(model.intercept_) - float(model.constant), unit="%", direction="maximize",
                             link=link)


# ---- registry: objectives by name ------------------------------------------------------------------------
class ObjectiveContext:
    """What an objective factory may use: the ``space``, and — resolved only when a factory asks — the
    hardware's latency predictor (:meth:`predictor`), the accuracy model (:meth:`accuracy_model`) and the
    calibrated accuracy model (:meth:`calibrated_model`; the accuracy model when no separate resolver is given)."""

    def __init__(self, space: SearchSpace, *, predictor: Callable[[], Any] | None = None,
                 accuracy_model: Callable[[], Any] | None = None,
                 calibrated_model: Callable[[], Any] | None = None) -> None:
        self.space = space
        self._resolvers = {"predictor": predictor, "accuracy_model": accuracy_model,
                           "calibrated_model": calibrated_model or accuracy_model}
        self._cache: dict[str, Any] = {}

    def _get(self, what: str, missing: str) -> Any:
        if what not in self._cache:
            fn = self._resolvers[what]
            if fn is None:
                raise ConfigError(missing)
            self._cache[what] = fn()
        return self._cache[what]

    def predictor(self) -> Any:
        return self._get("predictor", "This objective needs hardware=NAME (a latency table, see `hao latency "
                                      "list`) or a fitted predictor, and none was given.")

    def accuracy_model(self) -> Any:
        return self._get("accuracy_model", "This objective needs an accuracy model (proxy=NAME or an instance, "
                                           "or a checkpoint folder with sensitivity.json), and none was given.")

    def calibrated_model(self) -> Any:
        return self._get("calibrated_model", "This objective needs a calibrated accuracy model (a checkpoint "
                                             "folder with accuracy_model.json, docs/accuracy_model.md), and none "
                                             "was given.")


OBJECTIVES: Registry = Registry("objective", base=None, set_name=False,
                                hint="Register one with hao.search.register_objective (a factory "
                                     "f(ObjectiveContext) -> Objective), or pass hao.search.Objective instances.")


def register_objective(name: str, *, unit: str = "", description: str = "") -> Callable:
    """Decorator registering ``factory(ctx: ObjectiveContext) -> Objective`` under ``name``."""
    def deco(factory: Callable) -> Callable:
        return OBJECTIVES.register(name, factory, unit=unit, description=description)
    return deco


def list_objectives() -> list[str]:
    return OBJECTIVES.names()


def make_objective(name: str, ctx: ObjectiveContext) -> Objective:
    """The objective registered as ``name``, built for ``ctx``."""
    obj = OBJECTIVES.get(name)(ctx)
    if not isinstance(obj, Objective):
        raise ConfigError(f"The factory of objective {name!r} returned {type(obj).__name__}, not an Objective.")
    return obj


register_objective("proxy", unit="ΔL", description="the accuracy model's predicted loss increase")(
    lambda ctx: proxy_objective(ctx.space, ctx.accuracy_model()))
register_objective("accuracy", unit="%", description="predicted accuracy (calibrated model), maximised")(
    lambda ctx: accuracy_objective(ctx.space, ctx.calibrated_model()))
register_objective("latency_ms", unit="ms", description="predicted latency on the hardware")(
    lambda ctx: latency_objective(ctx.space, ctx.predictor()))
register_objective("size_mb", unit="MB", description="weight storage")(lambda ctx: size_objective(ctx.space))
register_objective("bops_g", unit="GBOPs", description="bit operations")(lambda ctx: bops_objective(ctx.space))
register_objective("macs_m", unit="M", description="multiply-accumulates")(lambda ctx: macs_objective(ctx.space))
