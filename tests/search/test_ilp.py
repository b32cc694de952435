"""The ILP solver against exhaustive enumeration on random instances with ties, pins and gates."""
from __future__ import annotations

import numpy as np
import pytest

from hao.errors import ConfigError
from hao.pareto import pareto_front
from hao.search.base import SearchProblem
from hao.search.baselines import ExhaustiveSolver
from hao.search.ilp import CompiledILP, ILPSolver, InfeasibleError
from tests.search._instances import has_tied_low_bits, random_instance, tie_low_bits


@pytest.mark.parametrize("seed", range(60))
def test_ilp_equals_exhaustive_under_budgets(seed: int) -> None:
    problem, info = random_instance(seed, n_costs=2, ints=(seed % 3 == 0))
    ex = ExhaustiveSolver(keep="all").solve(problem)
    assert len(ex.df) == problem.space.size()
    V = ex.df[problem.names].to_numpy()
    model = CompiledILP(problem, ["cost1", "cost2"])
    rng = np.random.default_rng(seed)
    for _ in range(6):
        b = {"cost1": float(np.quantile(V[:, 1], rng.random())), "cost2": float(np.quantile(V[:, 2], rng.random()))}
        if rng.random() < 0.3:
            b.pop("cost2")
        lim = np.array([b.get("cost1", np.inf), b.get("cost2", np.inf)])
        feas = np.all(V[:, 1:] <= lim + 1e-12, axis=1)
        if not feas.any():
            with pytest.raises(InfeasibleError):
                model.solve(b)
            continue
        G, U = model.solve(b)
        got = problem.evaluate_indices(G[None], U[None])[0]
        assert got[0] == pytest.approx(V[feas, 0].min(), abs=1e-9)
        assert np.all(got[1:] <= lim + 1e-12)
        # the tie-break returns a Pareto-optimal answer: nothing feasible is as good and cheaper
        better = feas & (V[:, 0] <= got[0] + 1e-9) & np.all(V[:, 1:] <= got[1:] + 1e-12, axis=1) & \
            np.any(V[:, 1:] < got[1:] - 1e-9, axis=1)
        assert not better.any()


@pytest.mark.parametrize("seed", range(30))
def test_exact_front_equals_exhaustive_front(seed: int) -> None:
    problem, _ = random_instance(1000 + seed, n_costs=1, ints=(seed % 2 == 0))
    truth = pareto_front(ExhaustiveSolver(keep="all").solve(problem).df[["proxy", "cost1"]].to_numpy())
    res = ILPSolver(exact_front=True).solve(problem)
    got = pareto_front(res.df[["proxy", "cost1"]].to_numpy())
    assert got.shape == truth.shape
    np.testing.assert_allclose(got, truth, rtol=1e-9, atol=1e-9)
    assert res.df["pareto"].all()


def test_option_reduction_is_exact() -> None:
    for seed in range(10):
        problem, _ = random_instance(2000 + seed, n_costs=1)
        full, red = CompiledILP(problem, ["cost1"], reduce=False), CompiledILP(problem, ["cost1"])
        assert red.n_var <= full.n_var
        lo, hi = problem.objective("cost1").bounds()
        for b in np.linspace(lo, hi, 5):
            v1 = problem.evaluate_indices(*[x[None] for x in full.solve({"cost1": b})])[0, 0]
            v2 = problem.evaluate_indices(*[x[None] for x in red.solve({"cost1": b})])[0, 0]
            assert v1 == pytest.approx(v2, abs=1e-9)


@pytest.mark.parametrize("seed", range(6))
def test_exact_ties_keep_the_option_with_more_bits(seed: int) -> None:
    """The front solver's tie rule: of a unit's options with identical values on the target and every budgeted
    objective, the ILP keeps the one with the most bits; its exact front is unchanged."""
    tied = tie_low_bits(random_instance(1700 + seed, n_costs=1)[0])
    truth = pareto_front(ExhaustiveSolver(keep="all").solve(tied).df[["proxy", "cost1"]].to_numpy())
    res = ILPSolver(exact_front=True).solve(tied)
    np.testing.assert_allclose(pareto_front(res.df[["proxy", "cost1"]].to_numpy()), truth, rtol=1e-9, atol=1e-9)
    assert not has_tied_low_bits(tied, res.candidates(pareto_only=False)), res.df


def test_sweep_respects_budget_and_gives_front_points() -> None:
    problem, _ = random_instance(7, n_costs=2)
    lo, hi = problem.objective("cost1").bounds()
    budget = lo + 0.6 * (hi - lo)
    p2 = SearchProblem(problem.space, problem.objectives, budgets={"cost1": budget})
    res = ILPSolver(n_points=5).solve(p2)
    assert (res.df["cost1"] <= budget + 1e-12).all()
    assert res.df["feasible"].all() and res.df["pareto"].any()
    assert res.meta["solver"] == "ilp"


def test_budget_errors_name_value_and_range() -> None:
    problem, _ = random_instance(3, n_costs=1)
    lo, hi = problem.objective("cost1").bounds()
    with pytest.raises(ConfigError, match="negative"):
        SearchProblem(problem.space, problem.objectives, budgets={"cost1": -1.0})
    with pytest.raises(ConfigError, match=r"infeasible.*at least"):
        SearchProblem(problem.space, problem.objectives, budgets={"cost1": lo * 0.5 if lo > 0 else lo - 1})
    with pytest.raises(ConfigError, match="unknown objective 'nope'"):
        SearchProblem(problem.space, problem.objectives, budgets={"nope": 1.0})
    with pytest.raises(ConfigError, match="not a number"):
        SearchProblem(problem.space, problem.objectives, budgets={"cost1": "fast"})
    with pytest.raises(ConfigError, match="n_points"):
        ILPSolver(n_points=0)
    with pytest.raises(ConfigError, match="non-target objective"):
        ILPSolver(sweep="proxy").solve(problem)


def test_jointly_infeasible_budgets_raise() -> None:
    # two costs that pull in opposite directions: each budget alone is feasible, together they are not
    from hao.search.objectives import AdditiveObjective
    from hao.search.tabular import TabularSpace
    from hao.space import Decision, Unit
    sp = TabularSpace("opp", [Decision("a", (0, 1))], [Unit("u", ("a",))])
    objs = [AdditiveObjective(sp, "proxy", [np.array([0.0, 0.0])]),
            AdditiveObjective(sp, "c1", [np.array([1.0, 2.0])]), AdditiveObjective(sp, "c2", [np.array([2.0, 1.0])])]
    with pytest.raises(InfeasibleError, match="relax"):
        ILPSolver().solve(SearchProblem(sp, objs, budgets={"c1": 1.5, "c2": 1.5}))


@pytest.mark.parametrize("seed", range(3))
def test_reduced_cost_fixing_keeps_the_optimum(seed: int) -> None:
    """The fast path (LP reduced-cost fixing, then HiGHS on the columns an optimum can use) returns the same
    optimal value as HiGHS on the whole program, with three budgets that conflict with the target."""
    from hao.search.objectives import AdditiveObjective
    from hao.search.tabular import TabularSpace
    from hao.space import Decision, Unit
    rng = np.random.default_rng(seed)
    decisions, units = [], []
    for j in range(10):
        decisions += [Decision(f"u{j}.a", tuple(range(6)), "bits"), Decision(f"u{j}.b", tuple(range(4)), "kernel")]
        units.append(Unit(f"u{j}", (f"u{j}.a", f"u{j}.b")))
    space = TabularSpace(f"rcf{seed}", decisions, units)
    target = rng.random((10, 24))
    objs = [AdditiveObjective(space, "proxy", list(target))]
    for k in (1, 2, 3):  # costs fall as the target rises (a real trade-off), with noise
        objs.append(AdditiveObjective(space, f"c{k}", list(1.0 - 0.7 * target + 0.3 * rng.random((10, 24)))))
    problem = SearchProblem(space, objs)
    model = CompiledILP(problem, ["c1", "c2", "c3"], reduce=False)
    for q in (0.3, 0.6):
        budgets = {o.name: o.bounds()[0] + q * (o.bounds()[1] - o.bounds()[0]) for o in objs[1:]}
        b = np.array([(budgets[n] - model.cons[k].constant) / model.row_scale[k]
                      for k, n in enumerate(model.constrained)])
        full = model._milp(model.c0, model.cost_rows, b, None)
        fast = model._milp_fixed(model.c0, model.cost_rows, b, None)
        assert (full.x is None) == (fast.x is None)
        if full.x is not None:
            assert float(model.c0 @ fast.x) == pytest.approx(float(model.c0 @ full.x), rel=1e-9, abs=1e-9)
            assert np.all(model.cost_rows @ fast.x <= b + 1e-6)
            # with a known solution's value as cutoff, only strictly better solutions count: the optimum's own
            # value leaves nothing, a looser cutoff gives the optimum back
            z = float(model.c0 @ full.x)
            assert model._milp_fixed(model.c0, model.cost_rows, b, None, cutoff=z).x is None
            loose = model._milp_fixed(model.c0, model.cost_rows, b, None, cutoff=z + 1.0)
            assert float(model.c0 @ loose.x) == pytest.approx(z, rel=1e-9, abs=1e-9)
