"""Searching a space with context decisions (e.g. the input resolution): one exact search per context, merged.

A context decision conditions every unit's cost (at a lower resolution every kernel is smaller), so the space is
not additive over its units; it is a union of additive spaces, one per context value
(:meth:`hao.space.SearchSpace.condition`). Every solver runs on each conditioned space with the same budgets and
the results are merged into one :class:`~hao.search.result.SearchResult` whose Pareto flags are recomputed over
all rows. For the exact solvers this is exact: the best candidate under a budget is the best of the per-context
bests, and the union of the per-context fronts contains the front. Sampling solvers split their evaluation budget
evenly over the contexts.

The accuracy objectives of a conditioned space get the measured context term
(:mod:`hao.proxy.resolution`) added to their constant: architecture and bits are priced by the accuracy model
of the weights the space shares, the resolution by what it cost those weights when measured.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hao.errors import ConfigError, InfeasibleBudgetError
from hao.search.objectives import AdditiveObjective, CallableObjective, Objective
from hao.search.result import SearchResult
from hao.space.base import SearchSpace

__all__ = ["search_by_context", "merge_results", "with_context_terms", "split_trials", "context_parts", "context_tag",
           "run_context_search"]


def context_tag(ctx: Mapping[str, int]) -> str:
    """A file-name-safe tag of a context, e.g. ``"resolution20"`` (keeps one context's resumable state apart)."""
    return "_".join(f"{k}{v}" for k, v in ctx.items())


def split_trials(n_trials: int | None, n_contexts: int) -> int | None:
    """Each context's share of an evaluation budget (rounded up; ``None`` stays ``None``)."""
    return None if n_trials is None else max(1, math.ceil(n_trials / n_contexts))


def with_context_terms(space: SearchSpace, objectives: list[Objective], checkpoint: str | Path | None) -> list[
        Objective]:
    """``objectives`` with the measured context terms of a conditioned ``space`` added to the accuracy objectives
    (``accuracy``, ``proxy``); others are returned unchanged. A plain space returns ``objectives`` as given."""
    ctx: Mapping[str, int] = getattr(space, "conditioned_on", None) or {}
    if "resolution" not in ctx:
        return objectives
    from hao.proxy.resolution import RESOLUTION_FILE, ResolutionTerms, resolution_offset, takes_resolution_term

    if not any(takes_resolution_term(o.name) for o in objectives):
        return objectives
    from hao.proxy import default_checkpoint_dir

    folder = Path(checkpoint) if checkpoint is not None else default_checkpoint_dir(space.checkpoint_name)
    terms = ResolutionTerms.load(folder / RESOLUTION_FILE)
    if terms.space not in (space.name, space.checkpoint_name):
        raise ConfigError(f"{folder / RESOLUTION_FILE} was measured for space {terms.space!r}, not "
                          f"{space.checkpoint_name!r}; measure it with `python experiments/measure_resolution.py "
                          f"--space {space.name}`.")
    out = []
    for o in objectives:
        off = resolution_offset(o.name, terms, int(ctx["resolution"]))
        out.append(o if off is None else _shifted(o, off))
    return out


def _shifted(o: Objective, offset: float) -> Objective:
    if isinstance(o, AdditiveObjective):
        s = copy.copy(o)
        if o.link is None:
            s.constant = o.constant + offset
        else:  # the offset is in the value's unit: add it after the link
            fn, inv = o.link
            s.link = (lambda z, _f=fn: _f(z) + offset, lambda v, _i=inv: _i(np.asarray(v) - offset))
        return s
    if isinstance(o, CallableObjective):
        s = copy.copy(o)
        fn = o.evaluate
        s.evaluate = lambda cands, _fn=fn: _fn(cands) + offset  # type: ignore[method-assign]
        return s
    raise ConfigError(f"Objective {o.name!r} ({type(o).__name__}) cannot take the resolution term; give an "
                      "AdditiveObjective or CallableObjective.")


def merge_results(parts: list[tuple[dict[str, int], SearchResult]]) -> SearchResult:
    """One result from per-context results of the same problem: rows concatenated (``source`` prefixed with the
    context), Pareto flags recomputed, references from the last context (the largest value: the native
    resolution), per-context metadata under ``meta["contexts"]``."""
    if not parts:
        raise ConfigError("merge_results needs at least one (context, result) pair.")
    first = parts[0][1]
    dfs = []
    for ctx, r in parts:
        if r.objectives != first.objectives:
            raise ConfigError(f"Cannot merge results with objectives {r.objectives} and {first.objectives}.")
        d = r.df.drop(columns=["feasible", "pareto"]).copy()
        label = ", ".join(f"{k}={v}" for k, v in ctx.items())
        d["source"] = [f"{label}: {s}" if s else label for s in d["source"].astype(str)]
        for k, v in ctx.items():
            d[k] = v
        dfs.append(d)
    meta = dict(parts[-1][1].meta)
    meta["contexts"] = [{"context": ctx, "meta": r.meta, "rows": len(r.df)} for ctx, r in parts]
    return SearchResult(pd.concat(dfs, ignore_index=True), first.objectives, units=first.units,
                        budgets=first.budgets, pareto_on=first.pareto_on, references=parts[-1][1].references,
                        meta=meta, directions=first.directions)


def search_by_context(space: SearchSpace, solve_one: Callable[[SearchSpace, dict[str, int]], SearchResult],
                      progress: bool = False) -> SearchResult:
    """Run ``solve_one(conditioned_space, context)`` for every context of ``space`` and merge the results."""
    parts, skipped = [], []
    for ctx in space.contexts():
        label = ", ".join(f"{k}={v}" for k, v in ctx.items())
        if progress:
            print(f"[hao] {space.name}: searching at {label}", flush=True)
        try:
            parts.append((ctx, solve_one(space.condition(ctx), ctx)))
        except InfeasibleBudgetError as exc:   # this context cannot meet the budgets; the others may
            skipped.append({"context": ctx, "reason": str(exc)})
    if not parts:
        raise InfeasibleBudgetError("No context of space " + repr(space.name) + " meets the budgets: " + "; ".join(
            f"at {', '.join(f'{k}={v}' for k, v in s['context'].items())}: {s['reason']}" for s in skipped))
    res = merge_results(parts)
    res.meta["space"] = space.name
    if skipped:
        res.meta["contexts_without_solution"] = skipped
    return res


def context_parts(space: SearchSpace, build: Callable[[SearchSpace, bool], Any]
                  ) -> tuple[list[tuple[dict[str, int], Any]], dict[str, float]]:
    """The problems of a solver that searches the contexts itself in one run (``searches_contexts``, e.g. DMasking
    over the resolution): ``build(conditioned_space, with_budgets)`` for every context, in ``space.contexts()``
    order; a context that cannot meet the budgets is built without them (the joint search may still leave it).
    Returns the ``(context, problem)`` pairs and the budgets with normalized names; no context meeting them is an
    :class:`InfeasibleBudgetError`."""
    parts, budgets, reasons = [], None, []
    for ctx in space.contexts():
        sub = space.condition(ctx)
        try:
            p = build(sub, True)
            budgets = dict(p.budgets) if budgets is None else budgets
        except InfeasibleBudgetError as exc:
            reasons.append(f"at {ctx}: {exc}")
            p = build(sub, False)
        parts.append((ctx, p))
    if budgets is None and reasons:
        raise InfeasibleBudgetError(f"No context of space {space.name!r} meets the budgets: " + "; ".join(reasons))
    return parts, budgets or {}


def run_context_search(space: SearchSpace, build: Callable[[SearchSpace, bool], Any],
                       new_solver: Callable[[str, int | None], Any], *, joint: bool, n_trials: int | None = None,
                       progress: bool = False, start: Callable[[], None] | None = None) -> SearchResult:
    """Search a space with context decisions: the one routine behind :func:`hao.search` and ``hao search``.

    Args:
        build: ``build(conditioned_space, with_budgets)`` -> the context's problem (``make_problem``).
        new_solver: ``new_solver(tag, n_trials)`` -> a fresh solver for one context (``tag`` from
            :func:`context_tag`, empty for a joint run; ``n_trials`` that context's share).
        joint: the solver searches every context in one run (``searches_contexts``, e.g. DMasking over the
            resolution): it gets every context's problem through ``solve_contexts``.
        start: called once every context's problem is built and before any search work (the CLI claims its
            output folder there), so bad budgets or objectives fail before anything is written.

    Every context's problem is built first; a context whose budgets cannot be met is skipped and listed in
    ``meta["contexts_without_solution"]`` (none meeting them is an :class:`InfeasibleBudgetError`).
    """
    if joint:
        parts, budgets = context_parts(space, build)
        if start is not None:
            start()
        return new_solver("", n_trials).solve_contexts(space, parts, budgets=budgets, progress=progress)
    share = split_trials(n_trials, len(space.contexts()))
    problems: dict[str, Any] = {}
    infeasible: dict[str, InfeasibleBudgetError] = {}
    for ctx in space.contexts():
        try:
            problems[context_tag(ctx)] = build(space.condition(ctx), True)
        except InfeasibleBudgetError as exc:
            infeasible[context_tag(ctx)] = exc
    if start is not None and problems:
        start()

    def one(sub: SearchSpace, ctx: dict[str, int]) -> SearchResult:
        tag = context_tag(ctx)
        if tag in infeasible:
            raise infeasible[tag]
        return new_solver(tag, share).solve(problems[tag], progress=progress)

    return search_by_context(space, one, progress=progress)
