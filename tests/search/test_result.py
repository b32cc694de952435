"""SearchResult: flags, save/load round trip (CSV + JSON), plot info (no pixels), random/exhaustive solvers."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from hao.errors import ConfigError
from hao.pareto import non_dominated
from hao.search.base import SearchProblem, get_solver, list_solvers
from hao.search.baselines import ExhaustiveSolver, RandomSolver
from hao.search.result import SearchResult, pareto_plot_info
from hao.space.base import Candidate
from tests.search._instances import random_instance


def _problem(budget: bool = True) -> SearchProblem:
    base, _ = random_instance(21, n_costs=2)
    lo, hi = base.objective("cost1").bounds()
    refs = {"first": base.space.make({})}
    return SearchProblem(base.space, base.objectives, budgets={"cost1": (lo + hi) / 2} if budget else {},
                         references=refs)


def test_flags_follow_budgets_and_dominance() -> None:
    p = _problem()
    res = ExhaustiveSolver().solve(p)
    V = res.df[p.names].to_numpy()
    feas = V[:, 1] <= p.budgets["cost1"] * (1 + 1e-9) + 1e-12
    assert np.array_equal(res.df["feasible"].to_numpy(), feas)
    nd = np.zeros(len(V), dtype=bool)
    nd[np.flatnonzero(feas)[non_dominated(V[feas][:, [0, 1]])]] = True
    assert np.array_equal(res.df["pareto"].to_numpy(), nd)
    assert res.pareto()["feasible"].all()
    assert res.best()["proxy"] == pytest.approx(V[feas, 0].min())
    assert "first" in res.references and set(p.names) <= set(res.references["first"])


def test_save_load_round_trip(tmp_path) -> None:
    res = RandomSolver(n_samples=50, seed=1).solve(_problem())
    res.save(tmp_path)
    assert {"results.csv", "pareto.csv", "result.json"} <= {f.name for f in tmp_path.iterdir()}
    assert not list(tmp_path.glob("*.tmp"))
    back = SearchResult.load(tmp_path)
    pd.testing.assert_frame_equal(back.df[["config", *res.objectives, "feasible", "pareto"]],
                                  res.df[["config", *res.objectives, "feasible", "pareto"]], check_exact=False)
    assert back.budgets == res.budgets and back.objectives == res.objectives
    meta = json.loads((tmp_path / "result.json").read_text())
    assert meta["meta"]["solver"] == "random"
    c = Candidate.from_json(back.pareto()["config"].iloc[0])
    assert c.space == res.meta["space"]
    with pytest.raises(ConfigError, match="does not exist"):
        SearchResult.load(tmp_path / "nope")


def test_plot_info_splits_front_dominated_infeasible(tmp_path) -> None:
    res = ExhaustiveSolver().solve(_problem())
    info = pareto_plot_info(res)
    assert (info.x, info.y) == ("cost1", "proxy")
    n_feasible = int(res.df["feasible"].sum())
    assert len(info.front) <= n_feasible and len(info.dominated) < n_feasible
    assert len(info.infeasible) == int((~res.df["feasible"]).sum())
    assert np.all(np.diff(info.front[:, 0]) > 0) and np.all(np.diff(info.front[:, 1]) < 0)
    assert info.budget_x == res.budgets["cost1"]
    assert [r[0] for r in info.references] == ["first"]
    res.plot(tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 1000
    with pytest.raises(ConfigError, match="Cannot plot"):
        pareto_plot_info(res, x="nope")


def test_random_solver_seeded_and_unique() -> None:
    p = _problem(budget=False)
    a, b = RandomSolver(n_samples=200, seed=4).solve(p), RandomSolver(n_samples=200, seed=4).solve(p)
    assert a.df["config"].equals(b.df["config"]) and a.df["config"].is_unique
    assert not a.df["config"].equals(RandomSolver(n_samples=200, seed=5).solve(p).df["config"])


def test_random_sampling_matches_space_sample_distribution() -> None:
    """Index-space sampling draws each decision uniformly, like SearchSpace.sample."""
    p = _problem(budget=False)
    ix = p.index
    rng = np.random.default_rng(0)
    G, U = ix.sample(rng, 20000)
    cands = ix.to_candidates(G[:2000], U[:2000])
    for c in cands[:50]:
        assert p.space.validate(c) is c and p.space.canonical(c) == c
    if ix.n_gates:
        counts = np.bincount(G[:, 0], minlength=len(ix.gate_values[0])) / len(G)
        np.testing.assert_allclose(counts, 1 / len(ix.gate_values[0]), atol=0.02)


def test_exhaustive_refuses_large_spaces_and_registry_errors() -> None:
    with pytest.raises(ConfigError, match="more than limit"):
        ExhaustiveSolver(limit=3).solve(_problem())
    assert {"ilp", "optuna", "random", "exhaustive"} <= set(list_solvers())
    with pytest.raises(ConfigError, match="Known solvers: dmasking, exhaustive, front, ilp, optuna, random"):
        get_solver("annealing")
    with pytest.raises(ConfigError, match="n_samples"):
        RandomSolver(n_samples=0)
    with pytest.raises(ConfigError, match="Bad parameters"):
        get_solver("random", n_trials=3)


def test_maximised_objective_flags_best_budget_and_round_trip(tmp_path) -> None:
    """A maximised target: feasibility uses a lower bound, best() takes the maximum, the direction survives
    save/load, and the plot label says which way is better."""
    base, _ = random_instance(22, n_costs=1)
    score = base.objective("proxy").scaled(-1.0, name="score", direction="maximize")
    lo, hi = score.bounds()
    p = SearchProblem(base.space, [score, base.objective("cost1")], budgets={"score": (lo + hi) / 2})
    res = ExhaustiveSolver().solve(p)
    V = res.df[["score", "cost1"]].to_numpy()
    feas = V[:, 0] >= p.budgets["score"] - 1e-9
    assert np.array_equal(res.df["feasible"].to_numpy(), feas)
    assert res.best()["score"] == pytest.approx(V[feas, 0].max())
    assert res.pareto_on == ["score"]  # target + budgeted objectives: here the maximum score is the front
    np.testing.assert_array_equal(res.df["pareto"].to_numpy(), feas & (V[:, 0] == V[feas, 0].max()))
    res = ExhaustiveSolver().solve(SearchProblem(base.space, [score, base.objective("cost1")]))
    V = res.df[["score", "cost1"]].to_numpy()
    nd = non_dominated(V, directions=["maximize", "minimize"])
    assert np.array_equal(res.df["pareto"].to_numpy(), nd)
    res.save(tmp_path)
    back = SearchResult.load(tmp_path)
    assert back.directions == {"score": "maximize", "cost1": "minimize"}
    assert np.array_equal(back.df["pareto"].to_numpy(), nd)
    info = pareto_plot_info(back, x="cost1", y="score")
    assert info.y_label.endswith("(higher is better)") and info.x_label.endswith("(lower is better)")
    with pytest.raises(ConfigError, match="infeasible"):
        SearchProblem(base.space, [score], budgets={"score": hi + 1.0})
