"""`SearchResult`: every evaluated candidate of a search as a pandas DataFrame, with its Pareto front.

Columns of ``result.df``: ``config`` (the candidate's JSON, loadable with ``Candidate.from_json``), one column
per objective (``proxy``, ``latency_ms``, ``size_mb``, ...), ``feasible`` (all budgets met), ``pareto``
(non-dominated among the feasible rows on ``result.pareto_on``), and ``source`` (which solver step produced
it: a budget, a trial number, ...).

Plots follow Optuna's split: :func:`pareto_plot_info` builds a plain :class:`ParetoPlotInfo` (tested without
pixels) and :func:`draw_pareto` renders it with matplotlib (imported lazily).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hao.errors import ConfigError
from hao.io import jsonable
from hao.pareto import non_dominated, signs
from hao.space.base import Candidate

__all__ = ["SearchResult", "ParetoPlotInfo", "pareto_plot_info", "draw_pareto", "within_budget"]

_RESULT_FILES = ("results.csv", "pareto.csv", "result.json")


def within_budget(values: np.ndarray, bound: float, direction: str = "minimize") -> np.ndarray:
    """Mask of ``values`` meeting ``bound`` (``<=`` when minimised, ``>=`` when maximised; relative tolerance
    1e-9, the same for every solver)."""
    v = np.asarray(values, dtype=float)
    tol = abs(bound) * 1e-9 + 1e-12
    return v <= bound + tol if direction == "minimize" else v >= bound - tol


class SearchResult:
    """The outcome of a search.

    Args:
        df: one row per evaluated candidate with at least ``config`` and the objective columns.
        objectives: objective names, in order (the first is the one solvers minimise by default).
        units: objective name -> unit label.
        budgets: objective name -> bound used to mark rows ``feasible`` (upper bound; lower bound for a
            maximised objective).
        pareto_on: objectives the Pareto flag is computed on (default: target + budgeted, or all).
        references: label -> ``{"config": json, objective: value, ...}`` (e.g. uniform 8-bit) drawn on plots.
        meta: free-form provenance (space, solver, seed, timings, storage URL ...).
        directions: objective name -> ``"minimize"`` (default) or ``"maximize"``.
    """

    def __init__(self, df: pd.DataFrame, objectives: list[str], *, units: dict[str, str] | None = None,
                 budgets: dict[str, float] | None = None, pareto_on: list[str] | None = None,
                 references: dict[str, dict[str, Any]] | None = None, meta: dict[str, Any] | None = None,
                 directions: dict[str, str] | None = None) -> None:
        missing = [c for c in ["config", *objectives] if c not in df.columns]
        if missing:
            raise ConfigError(f"SearchResult needs columns {missing}; got {list(df.columns)}.")
        self.objectives = list(objectives)
        self.units = dict(units or {})
        self.budgets = {k: float(v) for k, v in (budgets or {}).items()}
        unknown = [k for k in self.budgets if k not in self.objectives]
        if unknown:
            raise ConfigError(f"Budgets on unknown objectives {unknown}; objectives are {self.objectives}.")
        if pareto_on is None:
            pareto_on = ([self.objectives[0], *[b for b in self.budgets if b != self.objectives[0]]]
                         if self.budgets else list(self.objectives))
        self.pareto_on = list(pareto_on)
        self.directions = {o: (directions or {}).get(o, "minimize") for o in self.objectives}
        signs(list(self.directions.values()), len(self.objectives))  # validates
        self._lookup: dict[tuple[str, ...], Any] = {}
        self.references = dict(references or {})
        self.meta = dict(meta or {})
        df = df.reset_index(drop=True).copy()
        if "source" not in df.columns:
            df["source"] = ""
        feas = np.ones(len(df), dtype=bool)
        for k, b in self.budgets.items():
            feas &= within_budget(df[k].to_numpy(dtype=float), b, self.directions[k])
        df["feasible"] = feas
        par = np.zeros(len(df), dtype=bool)
        if feas.any():
            F = df.loc[feas, self.pareto_on].to_numpy(dtype=float)
            dirs = [self.directions[o] for o in self.pareto_on]
            par[np.flatnonzero(feas)[non_dominated(F, directions=dirs)]] = True
        df["pareto"] = par
        cols = ["config", *self.objectives, "feasible", "pareto", "source"]
        self.df = df[cols + [c for c in df.columns if c not in cols]]

    # ---- views ----------------------------------------------------------------------------------------
    @property
    def target(self) -> str:
        return self.objectives[0]

    def pareto(self) -> pd.DataFrame:
        """The Pareto rows, de-duplicated by config and sorted by the first budgeted (or second) objective."""
        p = self.df[self.df["pareto"]].drop_duplicates("config")
        key = self.pareto_on[1] if len(self.pareto_on) > 1 else self.pareto_on[0]
        return p.sort_values([key, self.target], ascending=[self.directions[key] == "minimize",
                                                           self.directions[self.target] == "minimize"],
                             kind="stable").reset_index(drop=True)

    def candidates(self, pareto_only: bool = True) -> list[Candidate]:
        rows = self.pareto() if pareto_only else self.df
        return [Candidate.from_json(s) for s in rows["config"]]

    def best(self, objective: str | None = None) -> pd.Series:
        """The feasible row optimising ``objective`` (default: the target) in its direction."""
        obj = objective or self.target
        if obj not in self.objectives:
            raise ConfigError(f"Unknown objective {obj!r}; objectives are {self.objectives}.")
        feas = self.df[self.df["feasible"]]
        if feas.empty:
            raise ConfigError("No feasible candidate in this result; relax the budgets "
                              f"{self.budgets} or run more trials.")
        return feas.loc[feas[obj].idxmin() if self.directions[obj] == "minimize" else feas[obj].idxmax()]

    def query(self, budgets: dict[str, float], objective: str | None = None) -> pd.Series:
        """Answer a new budget by lookup: the Pareto row that optimises ``objective`` (default: the target) among
        those meeting ``budgets`` (bounds on ``pareto_on`` objectives, in the objectives' directions).

        On an exact front (``solver="front"``) this is the exact optimum of the budgeted problem: any candidate
        meeting the budgets is weakly dominated by a front point that meets them too. Microseconds to a
        millisecond (numpy over the front; the arrays are cached). Raises a ConfigError naming the budgets and
        the achievable range when no row meets them."""
        obj = objective or self.target
        bad = [k for k in [obj, *budgets] if k not in self.pareto_on]
        if bad:
            raise ConfigError(f"query() looks up the Pareto rows on {self.pareto_on}; {bad} are not among them. "
                              "Search with those objectives in the front (solver='front', objectives=[...]).")
        key = (obj, *sorted(budgets))
        if key not in self._lookup:
            front = self.df[self.df["pareto"]]
            self._lookup[key] = (front.index.to_numpy(), front[obj].to_numpy(dtype=float),
                                 {k: front[k].to_numpy(dtype=float) for k in budgets})
        rows, target, cols = self._lookup[key]
        ok = np.ones(len(rows), dtype=bool)
        for k, b in budgets.items():
            ok &= within_budget(cols[k], float(b), self.directions[k])
        if not ok.any():
            ranges = {k: (float(v.min()), float(v.max())) for k, v in cols.items()} if len(rows) else {}
            raise ConfigError(f"No Pareto row meets {budgets}; the front spans {ranges}. Relax the budgets.")
        cand = np.flatnonzero(ok)
        best = cand[np.argmin(target[cand])] if self.directions[obj] == "minimize" else cand[np.argmax(target[cand])]
        return self.df.loc[rows[best]]

    def summary(self, max_rows: int = 20) -> str:
        """A readable front: one line of counts and budgets, then the Pareto rows' objectives (with units),
        sorted as :meth:`pareto` sorts them. The configs themselves are in ``pareto()["config"]``."""
        front = self.pareto()
        head = (f"{len(front)} Pareto candidates of {len(self.df)} evaluated"
                + (f", budgets {self.budgets}" if self.budgets else "") + ":")
        if front.empty:
            return head + " none (relax the budgets)"
        cols = {o: f"{o} [{self.units[o]}]" if self.units.get(o) else o for o in self.objectives}
        table = front[self.objectives].rename(columns=cols)
        return head + "\n" + table.to_string(max_rows=max_rows, float_format=lambda v: f"{v:.4g}")

    def __len__(self) -> int:
        return len(self.df)

    def __repr__(self) -> str:
        return (f"<SearchResult {len(self.df)} rows, {int(self.df['pareto'].sum())} Pareto, objectives="
                f"{self.objectives}, budgets={self.budgets}>")

    # ---- persistence ----------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """Write ``results.csv`` (every row), ``pareto.csv`` and ``result.json`` (metadata) into ``folder``."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        self.df.to_csv(out / "results.csv.tmp", index=False)
        self.pareto().to_csv(out / "pareto.csv.tmp", index=False)
        meta = {"objectives": self.objectives, "units": self.units, "budgets": self.budgets,
                "directions": self.directions,
                "pareto_on": self.pareto_on, "references": self.references, "meta": jsonable(self.meta)}
        (out / "result.json.tmp").write_text(json.dumps(meta, indent=2, sort_keys=True))
        for name in _RESULT_FILES:  # rename last, so a crash never leaves half a result
            (out / f"{name}.tmp").replace(out / name)
        return out

    @classmethod
    def load(cls, folder: str | Path) -> "SearchResult":
        """Read a folder written by :meth:`save` (CSV + JSON only; nothing is unpickled)."""
        p = Path(folder)
        for name in ("results.csv", "result.json"):
            if not (p / name).is_file():
                raise ConfigError(f"{p / name} does not exist; point at a folder written by SearchResult.save.")
        try:
            meta = json.loads((p / "result.json").read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{p / 'result.json'} is not valid JSON ({exc}).") from None
        df = pd.read_csv(p / "results.csv")
        df = df.drop(columns=[c for c in ("feasible", "pareto") if c in df.columns])
        df["source"] = df["source"].fillna("").astype(str)
        return cls(df, meta["objectives"], units=meta.get("units"), budgets=meta.get("budgets"),
                   pareto_on=meta.get("pareto_on"), references=meta.get("references"), meta=meta.get("meta"),
                   directions=meta.get("directions"))

    # ---- plotting -------------------------------------------------------------------------------------
    def plot(self, path: str | Path | None = None, x: str | None = None, y: str | None = None,
             queries: dict[str, dict[str, float]] | None = None) -> Any:
        """Draw the front (line), dominated/infeasible points, references and answered budget ``queries``
        (label -> budgets); save to ``path`` if given. Returns the matplotlib figure."""
        return draw_pareto(pareto_plot_info(self, x=x, y=y, queries=queries), path)


@dataclass
class ParetoPlotInfo:
    """What a Pareto plot shows, independent of the drawing library."""

    x: str
    y: str
    x_label: str
    y_label: str
    front: np.ndarray                # (k, 2) Pareto points on (x, y), sorted by x
    dominated: np.ndarray            # (m, 2) feasible, not on the 2-D front
    infeasible: np.ndarray           # (q, 2) over budget
    references: list[tuple[str, float, float]] = field(default_factory=list)
    budget_x: float | None = None
    title: str = ""
    queries: list[tuple[str, float, float]] = field(default_factory=list)  # budget queries answered on the front


def pareto_plot_info(result: SearchResult, x: str | None = None, y: str | None = None,
                     queries: dict[str, dict[str, float]] | None = None) -> ParetoPlotInfo:
    """Split the rows of ``result`` into the 2-D front on ``(x, y)``, dominated and infeasible points.

    ``queries``: label -> budgets; each is answered with :meth:`SearchResult.query` and marked on the plot."""
    y = y or result.target
    if x is None:
        others = [o for o in (list(result.budgets) + result.objectives) if o != y]
        if not others:
            raise ConfigError("A Pareto plot needs two objectives; this result has only "
                              f"{result.objectives}.")
        x = others[0]
    for name in (x, y):
        if name not in result.objectives:
            raise ConfigError(f"Cannot plot {name!r}: objectives are {result.objectives}.")
    df = result.df
    feas = df["feasible"].to_numpy()
    XY = df[[x, y]].to_numpy(dtype=float)
    F = XY[feas]
    dirs = [result.directions[x], result.directions[y]]
    mask = non_dominated(F, directions=dirs) if len(F) else np.zeros(0, dtype=bool)
    front = np.unique(F[mask], axis=0) if len(F) else np.zeros((0, 2))
    front = front[np.argsort(front[:, 0], kind="stable")] if len(front) else front.reshape(0, 2)
    refs = []
    for label, r in result.references.items():
        if x in r and y in r:
            refs.append((label, float(r[x]), float(r[y])))
    def lab(n: str) -> str:
        arrow = " (lower is better)" if result.directions[n] == "minimize" else " (higher is better)"
        return (f"{n} [{result.units[n]}]" if result.units.get(n) else n) + arrow
    answered = []
    for label, bud in (queries or {}).items():
        row = result.query(bud)
        answered.append((label, float(row[x]), float(row[y])))
    return ParetoPlotInfo(x=x, y=y, x_label=lab(x), y_label=lab(y), front=front,
                          dominated=F[~mask] if len(F) else np.zeros((0, 2)), infeasible=XY[~feas],
                          references=refs, budget_x=result.budgets.get(x),
                          title=str(result.meta.get("title", result.meta.get("space", ""))), queries=answered)


def draw_pareto(info: ParetoPlotInfo, path: str | Path | None = None, ax: Any = None) -> Any:
    """Render a :class:`ParetoPlotInfo` with matplotlib (Agg backend when saving)."""
    from hao._imports import lazy_import
    mpl = lazy_import("matplotlib")
    if path is not None and ax is None:
        mpl.use("Agg", force=False)
    plt = lazy_import("matplotlib.pyplot")
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.6))
    else:
        fig = ax.figure
    if len(info.infeasible):
        ax.scatter(info.infeasible[:, 0], info.infeasible[:, 1], s=6, c="0.85", label="over budget")
    if len(info.dominated):
        ax.scatter(info.dominated[:, 0], info.dominated[:, 1], s=8, c="0.55", alpha=0.6, label="dominated")
    if len(info.front):
        ax.step(info.front[:, 0], info.front[:, 1], where="post", c="C0", lw=1.2)
        ax.scatter(info.front[:, 0], info.front[:, 1], s=22 if len(info.front) <= 200 else 3, c="C0", zorder=3,
                   label=f"Pareto front ({len(info.front)} points)")
    markers = "*^sDvP"
    for i, (label, rx, ry) in enumerate(info.references):
        ax.scatter([rx], [ry], marker=markers[i % len(markers)], s=90, c=f"C{(i + 1) % 10}", zorder=4,
                   edgecolors="k", label=label)
    for i, (label, qx, qy) in enumerate(info.queries):
        ax.scatter([qx], [qy], marker="o", s=70, facecolors="none", edgecolors="C3", linewidths=1.5, zorder=5,
                   label="budget queries (lookup on the front)" if i == 0 else None)
        ax.annotate(label, (qx, qy), textcoords="offset points", xytext=(8, 4), fontsize=7, color="C3")
    if info.budget_x is not None:
        ax.axvline(info.budget_x, c="C3", ls="--", lw=1, label=f"budget {info.x} = {info.budget_x:g}")
    ax.set_xlabel(info.x_label)
    ax.set_ylabel(info.y_label)
    if info.title:
        ax.set_title(info.title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    if path is not None:
        fig.tight_layout()
        fig.savefig(str(path), dpi=120)
        plt.close(fig)
    return fig
