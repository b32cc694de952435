"""The front solver (hao/search/front.py) against brute force: exact fronts, ε-bounds, budgets, directions,
budget queries."""
from __future__ import annotations

import time

import numpy as np
import pytest

from hao.errors import ConfigError
from hao.pareto import hypervolume, pareto_front
from hao.search.base import SearchProblem
from hao.search.baselines import ExhaustiveSolver
from hao.search.front import FrontSolver, nd_first, pareto_dp
from hao.search.ilp import CompiledILP
from hao.search.objectives import AdditiveObjective, bops_objective, macs_objective, size_objective
from hao.space import get_space, list_spaces

from ._instances import has_tied_low_bits, random_instance, tie_low_bits


def _all_values(problem: SearchProblem) -> np.ndarray:
    G, U = zip(*problem.index.enumerate())
    return problem.evaluate_indices(np.concatenate(G), np.concatenate(U))


def _same_front(got: np.ndarray, truth: np.ndarray, exact: bool) -> None:
    assert got.shape == truth.shape
    if exact:
        np.testing.assert_array_equal(got, truth)
    else:
        np.testing.assert_allclose(got, truth, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", range(40))
def test_exact_front_equals_brute_force(seed: int) -> None:
    """2 and 3 objectives, ties, pins, depth gates; integer costs compare bit for bit."""
    n_costs = 1 + seed % 2
    ints = seed % 4 < 2
    problem, _ = random_instance(500 + seed, n_costs=n_costs, ints=ints)
    truth = pareto_front(_all_values(problem))
    res = FrontSolver().solve(problem) if n_costs == 1 else FrontSolver(objectives=problem.names).solve(problem)
    assert res.pareto_on == problem.names
    got = res.df[problem.names].to_numpy()
    assert len(np.unique(got, axis=0)) == len(got), "one candidate per distinct objective vector"
    _same_front(pareto_front(got), truth, ints)
    assert res.df["pareto"].all()
    for c in res.candidates(pareto_only=False):  # every point a valid canonical candidate
        problem.space.validate(c)
        assert problem.space.canonical(c) == c


def _small_registered() -> list[str]:
    return [n for n in list_spaces() if get_space(n).size() <= 300_000]


@pytest.mark.parametrize("name", _small_registered())
def test_every_enumerable_registered_space_front_is_exact(name: str) -> None:
    """Every registered space small enough to enumerate: the front on two kernel-derived objectives (no table
    needed) equals the brute-force front."""
    space = get_space(name)
    objs = [size_objective(space), bops_objective(space), macs_objective(space)]
    problem = SearchProblem(space, objs)
    truth = pareto_front(_all_values(problem)[:, :2])
    got = FrontSolver(objectives=["size_mb", "bops_g"]).solve(problem).df[["size_mb", "bops_g"]].to_numpy()
    _same_front(pareto_front(got), truth, exact=False)


def test_there_is_an_enumerable_registered_space() -> None:
    assert "quant-resnet18" in _small_registered()


@pytest.mark.parametrize("seed", range(12))
def test_epsilon_front_covers_the_exact_front_within_the_stated_bound(seed: int) -> None:
    problem, _ = random_instance(700 + seed, n_costs=1 + seed % 2, max_layers=9)
    names = problem.names
    exact = pareto_front(_all_values(problem))
    eps = 0.02 if seed % 3 else [0.05, 0.01, 0.03][: len(names)]
    fr = pareto_dp(problem, names, epsilon=eps)
    A = fr.values
    slack = np.asarray(fr.eps_abs)
    for p in exact:  # every exact point is weakly dominated by a returned point moved by eps_abs
        assert np.any(np.all(A <= p + slack + 1e-12, axis=1)), p
    assert len(A) <= len(exact)
    if len(names) == 2:
        ref = exact.max(axis=0) + 1.0
        ratio = hypervolume(A, ref) / hypervolume(exact, ref)
        assert fr.hv_ratio_lower_bound is not None and fr.hv_ratio_lower_bound <= 1.0
        assert ratio <= 1.0 + 1e-12
        # the bound holds with the solver's own reference point; with this one it holds too (ref further out)
        assert ratio >= hypervolume(A, ref) / hypervolume(A - slack, ref) - 1e-12


@pytest.mark.parametrize("seed", range(40))
def test_budgets_filter_the_exact_front(seed: int) -> None:
    problem, _ = random_instance(900 + seed, n_costs=2)
    V = _all_values(problem)
    b = float(np.quantile(V[:, 1], 0.4)), float(np.quantile(V[:, 2], 0.6))
    budgeted = SearchProblem(problem.space, list(problem.objectives), budgets={"cost1": b[0], "cost2": b[1]})
    res = FrontSolver().solve(budgeted)
    assert res.pareto_on == ["proxy", "cost1", "cost2"]
    ok = (V[:, 1] <= b[0] + 1e-12) & (V[:, 2] <= b[1] + 1e-12)
    _same_front(pareto_front(res.df[budgeted.names].to_numpy()), pareto_front(V[ok]), exact=False)
    # every row decodes to the candidate it reports (a budget once decoded the last depth gate as 0)
    cands = res.candidates(pareto_only=False)
    got = np.column_stack([o.evaluate(cands) for o in budgeted.objectives])
    np.testing.assert_allclose(got, res.df[budgeted.names].to_numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", range(8))
def test_maximised_objective(seed: int) -> None:
    """A maximised score (-proxy): the front, the query and the ILP follow the declared direction."""
    problem, _ = random_instance(1100 + seed, n_costs=1)
    score = problem.objective("proxy").scaled(-1.0, name="score", direction="maximize")
    p2 = SearchProblem(problem.space, [score, problem.objective("cost1")])
    V = _all_values(p2)
    truth = pareto_front(V, directions=["maximize", "minimize"])
    res = FrontSolver().solve(p2)
    _same_front(pareto_front(res.df[["score", "cost1"]].to_numpy(), directions=["maximize", "minimize"]), truth,
                exact=False)
    b = float(np.quantile(V[:, 1], 0.5))
    best = V[V[:, 1] <= b + 1e-12, 0].max()
    assert res.query({"cost1": b})["score"] == pytest.approx(best, abs=1e-12)
    G, U = CompiledILP(p2, ["cost1"]).solve({"cost1": b})
    assert score.evaluate_indices(U[None, :])[0] == pytest.approx(best, abs=1e-9)
    # a lower bound on the maximised objective
    lo = float(np.quantile(V[:, 0], 0.7))
    row = res.query({"score": lo}, objective="cost1")
    assert row["cost1"] == pytest.approx(V[V[:, 0] >= lo - 1e-12, 1].min(), abs=1e-12)


@pytest.mark.parametrize("seed", range(10))
def test_query_equals_the_budgeted_optimum(seed: int) -> None:
    problem, _ = random_instance(1300 + seed, n_costs=2)
    V = _all_values(problem)
    res = FrontSolver(objectives=problem.names).solve(problem)
    rng = np.random.default_rng(seed)
    for _ in range(5):
        b1, b2 = (float(np.quantile(V[:, k], rng.uniform(0.1, 1.0))) for k in (1, 2))
        ok = (V[:, 1] <= b1 + 1e-12) & (V[:, 2] <= b2 + 1e-12)
        if not ok.any():
            with pytest.raises(ConfigError, match="No Pareto row meets"):
                res.query({"cost1": b1, "cost2": b2})
            continue
        row = res.query({"cost1": b1, "cost2": b2})
        assert row["proxy"] == pytest.approx(V[ok, 0].min(), abs=1e-12)
        assert row["cost1"] <= b1 + 1e-12 and row["cost2"] <= b2 + 1e-12


def test_query_is_a_lookup() -> None:
    problem, _ = random_instance(3, n_costs=1, max_layers=9)
    res = FrontSolver().solve(problem)
    lo, hi = res.df["cost1"].min(), res.df["cost1"].max()
    res.query({"cost1": hi})  # builds the cached arrays
    t0 = time.perf_counter()
    for b in np.linspace(lo, hi, 200):
        res.query({"cost1": float(b)})
    assert (time.perf_counter() - t0) / 200 < 0.05  # generous: the benchmark reports the real figure


@pytest.mark.parametrize("m", [2, 3])
def test_nd_first_matches_pairwise(m: int) -> None:
    rng = np.random.default_rng(m)
    for n in (1, 2, 7, 600, 1500):
        F = rng.integers(0, 6, size=(n, m)).astype(float)  # many ties and copies
        got = F[nd_first(F)]
        truth = pareto_front(F)
        np.testing.assert_array_equal(np.unique(got, axis=0), truth)
        assert len(got) == len(truth)


def test_parameter_errors_name_value_and_range() -> None:
    with pytest.raises(ConfigError, match=r"epsilon.*\[0, 1\)"):
        FrontSolver(epsilon=1.5)
    with pytest.raises(ConfigError, match="epsilon"):
        FrontSolver(epsilon="small")
    with pytest.raises(ConfigError, match="max_points"):
        FrontSolver(max_points=0)
    with pytest.raises(ConfigError, match="list of objective names"):
        FrontSolver(objectives="proxy")
    problem, _ = random_instance(4, n_costs=3)
    with pytest.raises(ConfigError, match="at most 3 objectives"):
        FrontSolver(objectives=problem.names).solve(problem)
    with pytest.raises(ConfigError, match="not objectives of this problem"):
        FrontSolver(objectives=["proxy", "nope"]).solve(problem)
    with pytest.raises(ConfigError, match="max_points"):
        p, _ = random_instance(5, n_costs=1, max_layers=9)
        FrontSolver(max_points=1).solve(p)


def test_exhaustive_agrees_on_a_gated_instance_with_pins() -> None:
    for seed in range(20):
        problem, info = random_instance(seed, n_costs=1)
        if info["n_gated"] and info["pinned"]:
            break
    truth = ExhaustiveSolver().solve(problem).pareto()[["proxy", "cost1"]].to_numpy()
    got = FrontSolver().solve(problem).pareto()[["proxy", "cost1"]].to_numpy()
    _same_front(pareto_front(got), pareto_front(truth), exact=False)


@pytest.mark.parametrize("seed", range(6))
def test_exact_ties_keep_the_option_with_more_bits(seed: int) -> None:
    """When a unit's 4-bit and 8-bit options cost exactly the same on every objective (an int8-only table and a
    model that prices both alike), the front holds the 8-bit one, and the front itself is unchanged."""
    problem, _ = random_instance(1700 + seed, n_costs=1)
    tied = tie_low_bits(problem)
    res = FrontSolver().solve(tied)
    _same_front(pareto_front(res.df[["proxy", "cost1"]].to_numpy()), pareto_front(_all_values(tied)), exact=False)
    assert not has_tied_low_bits(tied, res.candidates(pareto_only=False)), res.df


def _linked(problem: SearchProblem) -> tuple[SearchProblem, AdditiveObjective]:
    """``acc = 100 − 10·exp(−score)`` of ``score = −proxy``, maximised: a monotone link, as a calibrated model
    fitted on the log of the error rate gives the search."""
    proxy = problem.objective("proxy")
    link = (lambda z: 100.0 - 10.0 * np.exp(-np.asarray(z)), lambda v: -np.log((100.0 - np.asarray(v)) / 10.0))
    acc = AdditiveObjective(problem.space, "acc", [-t for t in proxy.tables], constant=-proxy.constant,
                            unit="%", direction="maximize", link=link)
    return SearchProblem(problem.space, [acc, problem.objective("cost1")]), acc


@pytest.mark.parametrize("seed", range(8))
def test_linked_objective_front_budgets_and_ilp_use_its_values(seed: int) -> None:
    """An objective whose value is a monotone link of its additive score: values, bounds, the front, budgets on
    it (front solver and ILP, in the value's unit) all equal brute force on the linked values."""
    problem, _ = random_instance(1700 + seed, n_costs=1)
    p2, acc = _linked(problem)
    V = _all_values(p2)
    assert acc.bounds() == pytest.approx((V[:, 0].min(), V[:, 0].max()), abs=1e-12)
    np.testing.assert_allclose(V[:, 0], 100.0 - 10.0 * np.exp(_all_values(problem)[:, 0]))  # score = −proxy
    truth = pareto_front(V, directions=["maximize", "minimize"])
    res = FrontSolver().solve(p2)
    _same_front(pareto_front(res.df[["acc", "cost1"]].to_numpy(), directions=["maximize", "minimize"]), truth,
                exact=False)
    lo = float(np.quantile(V[:, 0], 0.6))
    cheapest = V[V[:, 0] >= lo - 1e-12, 1].min()
    assert res.query({"acc": lo}, objective="cost1")["cost1"] == pytest.approx(cheapest, abs=1e-12)
    budgeted = FrontSolver().solve(SearchProblem(p2.space, list(p2.objectives), budgets={"acc": lo}))
    assert (budgeted.df["acc"] >= lo - 1e-9).all() and budgeted.df["cost1"].min() == pytest.approx(cheapest)
    G, U = CompiledILP(SearchProblem(p2.space, list(p2.objectives), target="cost1"), ["acc"]).solve({"acc": lo})
    assert p2.objective("cost1").evaluate_indices(U[None, :])[0] == pytest.approx(cheapest, abs=1e-9)
    assert acc.evaluate_indices(U[None, :])[0] >= lo - 1e-9
    b = float(np.quantile(V[:, 1], 0.5))
    G, U = CompiledILP(p2, ["cost1"]).solve({"cost1": b})
    assert acc.evaluate_indices(U[None, :])[0] == pytest.approx(V[V[:, 1] <= b + 1e-12, 0].max(), abs=1e-9)
    with pytest.raises(ConfigError, match="link"):
        acc.scaled(2.0)
