"""``hao.search(...)``: the Python entry point, and the builders it shares with the CLI and benchmarks.

>>> import hao
>>> result = hao.search(space="mbconv-fmnist", hardware="cpu-rocketlake-2t", solver="ilp",
...                     budgets={"latency_ms": 2.0})                                  # doctest: +SKIP
>>> result.pareto()            # DataFrame: config JSON, proxy, latency_ms, size_mb, bops_g, pareto ...
>>> result.plot("pareto.png"); result.save("out/")
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hao.errors import ConfigError
from hao.search.base import SOLVERS, SearchProblem, Solver, make_solver
from hao.search.objectives import Objective, ObjectiveContext, make_objective
from hao.search.result import SearchResult
from hao.space.base import BIT_KINDS, Candidate, SearchSpace

__all__ = ["search", "make_problem", "resolve_space", "resolve_predictor", "resolve_proxy",
           "reference_candidates", "OBJECTIVE_NAMES"]

#: Objectives ``hao.search`` builds by name.
#: the built-in objectives (``hao.search.list_objectives()`` lists every registered one)
OBJECTIVE_NAMES = ("proxy", "latency_ms", "size_mb", "bops_g", "macs_m")


def resolve_space(space: str | SearchSpace, **space_kwargs: Any) -> SearchSpace:
    if isinstance(space, SearchSpace):
        if space_kwargs:
            raise ConfigError(f"space_kwargs {sorted(space_kwargs)} only apply to a space given by name.")
        return space
    if isinstance(space, str):
        from hao.space import get_space
        return get_space(space, **space_kwargs)
    raise ConfigError(f"space must be a registered space name or a SearchSpace, got {type(space).__name__}.")


def resolve_predictor(hardware: Any, space: str | None = None) -> Any:
    """A fitted latency predictor: a hardware name / table folder (fitted with
    ``hao.latency.predictor.LatencyPredictor.from_table``, with the per-network overhead fitted for ``space``'s
    networks when the table has one), or an object with ``predict(kernels)``."""
    if hardware is None:
        return None
    if callable(getattr(hardware, "predict", None)):
        return hardware
    if isinstance(hardware, (str, Path)):
        try:
            from hao.latency.predictor import LatencyPredictor
        except ImportError as exc:
            raise ConfigError(f"hardware={str(hardware)!r} needs hao.latency.predictor, which failed to import "
                              f"({exc}).") from None
        # the search needs only point predictions: skip the two quantile models of the uncertainty band
        return LatencyPredictor.from_table(hardware, space=space, quantiles=None)
    raise ConfigError(f"hardware must be a hardware name (see `hao latency list`), a table folder or a fitted "
                      f"predictor with predict(kernels), got {type(hardware).__name__}.")


def resolve_proxy(space: SearchSpace, proxy: Any = None, checkpoint: str | Path | None = None) -> Any:
    """The accuracy model: an instance as given, a registered name (``hao.proxy.list_accuracy_models()``) built
    from the checkpoint folder, or by default the Hessian model from ``space``'s checkpoint folder."""
    if isinstance(proxy, str):
        from hao.proxy import get_accuracy_model
        return get_accuracy_model(proxy, space, checkpoint)
    if proxy is not None:
        return proxy
    try:
        from hao.proxy import AccuracyProxy, default_checkpoint_dir
    except ImportError as exc:
        raise ConfigError(f"The 'proxy' objective needs hao.proxy, which failed to import ({exc}).") from None
    folder = Path(checkpoint) if checkpoint is not None else default_checkpoint_dir(space.checkpoint_name)
    if not (folder / "sensitivity.json").is_file():
        raise ConfigError(
            f"The accuracy proxy for space {space.name!r} needs {folder / 'sensitivity.json'}, which does not "
            f"exist. Compute it (python experiments/train_supernet.py --sensitivity-only --out {folder}), pass "
            "checkpoint=FOLDER / --checkpoint FOLDER, or search other objectives (objectives=[...]).")
    return AccuracyProxy.from_checkpoint(space, folder)


def has_calibrated_model(space: SearchSpace, checkpoint: str | Path | None = None) -> bool:
    """Whether the checkpoint folder (default: the space's) holds a calibrated accuracy model."""
    try:
        from hao.proxy import model_folder
    except ImportError:
        return False
    return model_folder(space.checkpoint_name, checkpoint) is not None


def reference_candidates(space: SearchSpace) -> dict[str, Candidate]:
    """Uniform-precision references for plots: ``space.uniform(b, b)`` (the largest architecture, every layer at
    ``b`` bits) for b = 8 and 4, where every bit decision allows it."""
    out: dict[str, Candidate] = {}
    decs = space.decisions()
    if not any(d.kind in BIT_KINDS for d in decs):
        return out
    for b in (8, 4):
        if all(b in d.options for d in decs if d.kind in BIT_KINDS):
            try:
                out[f"uniform {b}-bit" + ("" if all(d.kind in BIT_KINDS for d in decs) else ", largest")] = \
                    space.uniform(b, b)
            except Exception:  # a space with extra validity rules: skip the reference
                continue
    return out


def make_problem(space: str | SearchSpace, hardware: Any = None, *,
                 objectives: Sequence[str | Objective] | None = None, budgets: Mapping[str, Any] | None = None,
                 target: str | None = None, proxy: Any = None, checkpoint: str | Path | None = None,
                 references: bool | Mapping[str, Candidate] = True,
                 space_kwargs: Mapping[str, Any] | None = None) -> SearchProblem:
    """Build a :class:`SearchProblem` from names (what ``hao.search`` and ``hao search`` do).

    Default objectives: ``accuracy`` (the calibrated model's predicted accuracy, maximised) when the checkpoint
    folder has a calibrated model and no other ``proxy`` is given, else ``proxy`` (the accuracy model's predicted
    loss increase); then ``latency_ms`` (when ``hardware`` is given), ``size_mb``, ``bops_g``.
    """
    sp = resolve_space(space, **dict(space_kwargs or {}))
    if objectives is None:
        acc = "accuracy" if proxy is None and has_calibrated_model(sp, checkpoint) else "proxy"
        objectives = [acc, *(["latency_ms"] if hardware is not None else []), "size_mb", "bops_g"]
    if isinstance(objectives, (str, Objective)):
        objectives = [objectives]
    if sp.context_decisions():
        raise ConfigError(f"Space {sp.name!r} has context decisions {list(sp.context_decisions())} (they condition "
                          "every unit), so one problem cannot hold it: build one per context with "
                          "space.condition({...}), or call hao.search(), which searches every context and merges "
                          "(docs/search.md, 'Input resolution').")
    ctx = ObjectiveContext(sp, predictor=None if hardware is None else (
        lambda: resolve_predictor(hardware, sp.checkpoint_name)),
                           accuracy_model=lambda: resolve_proxy(sp, proxy, checkpoint),
                           calibrated_model=lambda: resolve_proxy(sp, "calibrated" if proxy is None else proxy,
                                                                  checkpoint))
    built = [o if isinstance(o, Objective) else make_objective(o, ctx) for o in objectives]
    if getattr(sp, "conditioned_on", None):
        from hao.search.contexts import with_context_terms
        built = with_context_terms(sp, built, checkpoint)
    refs = reference_candidates(sp) if references is True else dict(references or {})
    return SearchProblem(sp, built, budgets=dict(budgets or {}), target=target, references=refs)



def search(space: str | SearchSpace, hardware: Any = None, solver: str | Solver = "ilp",
           budgets: Mapping[str, Any] | None = None, *, objectives: Sequence[str | Objective] | None = None,
           target: str | None = None, proxy: Any = None, checkpoint: str | Path | None = None,
           n_trials: int | None = None, seed: int = 0, storage: str | None = None, n_workers: int = 1,
           references: bool | Mapping[str, Candidate] = True, space_kwargs: Mapping[str, Any] | None = None,
           progress: bool = False, **solver_params: Any) -> SearchResult:
    """Search ``space`` for the Pareto-optimal candidates on ``hardware``.

    Args:
        space: registered space name (``hao spaces``) or a :class:`SearchSpace`.
        hardware: hardware name (``latency_models/<name>``), table folder or fitted latency predictor; adds the
            ``latency_ms`` objective.
        solver: ``"ilp"`` (exact, default), ``"optuna"``, ``"random"``, ``"exhaustive"``, or a :class:`Solver`.
        budgets: upper bounds, e.g. ``{"latency_ms": 2.0, "size_mb": 1.5}`` (aliases ``latency``, ``size``,
            ``bops``).
        objectives: names among ``proxy, latency_ms, size_mb, bops_g, macs_m`` or :class:`Objective` objects;
            default ``proxy`` + ``latency_ms`` (with hardware) + ``size_mb`` + ``bops_g``.
        target: the objective single-objective solvers minimise (default: the first, ``proxy``).
        proxy: an accuracy proxy (default: ``AccuracyProxy.from_checkpoint`` on ``checkpoint`` or
            ``checkpoints/<space>/``).
        n_trials: Optuna trials / random samples.
        seed: seed of sampling solvers (explicit; no global RNG is used).
        storage: Optuna storage URL (``sqlite:///file.db`` default file ``hao-studies.db``; ``postgresql://...``).
        n_workers: Optuna worker processes on this machine.
        references: add uniform 8/4-bit reference points (or a ``{label: Candidate}`` mapping, or False).
        progress: show progress bars.
        **solver_params: passed to the solver (e.g. ``n_points``, ``exact_front``, ``sampler``).

    Returns:
        a :class:`SearchResult` (``.df``, ``.pareto()``, ``.save(dir)``, ``.plot(path)``).
    """
    params = dict(solver_params)
    if storage is not None:
        params["storage"] = storage
    if n_workers != 1:
        params["n_workers"] = n_workers
    sp = resolve_space(space, **dict(space_kwargs or {}))
    if sp.context_decisions():
        from hao.search.contexts import run_context_search

        if isinstance(solver, Solver):
            raise ConfigError(f"Space {sp.name!r} is searched once per context {list(sp.context_decisions())}; pass "
                              "the solver by name (and its parameters as keywords) so each context gets a fresh one.")
        hw = resolve_predictor(hardware, sp.checkpoint_name)

        def new_solver(tag: str, trials: int | None) -> Solver:
            p = dict(params)
            if tag and p.get("work_dir"):
                p["work_dir"] = str(Path(p["work_dir"]) / tag)
            return make_solver(solver, seed=seed, n_trials=trials, **p)

        result = run_context_search(
            sp, lambda sub, b: make_problem(sub, hw, objectives=objectives, budgets=budgets if b else None,
                                            target=target, proxy=proxy, checkpoint=checkpoint, references=references),
            new_solver, joint=getattr(SOLVERS.get(solver), "searches_contexts", False), n_trials=n_trials,
            progress=progress)
    else:
        problem = make_problem(sp, hardware, objectives=objectives, budgets=budgets, target=target, proxy=proxy,
                               checkpoint=checkpoint, references=references)
        result = make_solver(solver, seed=seed, n_trials=n_trials, **params).solve(problem, progress=progress)
    if hardware is not None:
        result.meta.setdefault("hardware", str(getattr(hardware, "hardware_", hardware)))
    return result
