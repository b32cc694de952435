"""Searching a space with a context decision (the input resolution): exact against brute force, terms applied."""
from __future__ import annotations

import numpy as np
import pytest

import hao
from hao.errors import ConfigError, InfeasibleBudgetError
from hao.proxy.resolution import RESOLUTION_FILE, ResolutionTerms, resolution_offset
from hao.search.api import make_problem
from hao.search.contexts import split_trials
from tests.space.test_resolution import tiny

TERMS = {8: {"accuracy_drop": 3.0, "accuracy_drop_se": 0.1, "loss_increase": 0.05, "loss_increase_se": 0.01}}


class MacsPredictor:
    """Latency of a kernel: 1 µs + 1 ns per MAC (ms)."""

    def predict(self, kernels):
        return np.array([1e-3 + 1e-6 * k.macs for k in kernels])


def unit_cost(unit: str, local) -> float:
    """A deterministic additive 'loss increase': switched-off blocks and 4-bit layers cost, 5x5 kernels help."""
    if local is None:
        return 0.2
    four = sum(0.03 for k, v in local.items() if k.endswith("w_bits") and v == 4)
    return four - 0.01 * (local[f"{unit}.kernel"] == 5)


@pytest.fixture
def ckpt(tmp_path):
    ResolutionTerms("tiny-res", 12, TERMS).save(tmp_path / RESOLUTION_FILE)
    return tmp_path


def brute(space, budget):
    best = None
    pred = MacsPredictor()
    for c in space.enumerate():
        d = c.as_dict()
        sub = space.resolve(c)
        proxy = sum(unit_cost(u.name, sub._local(u, d)) for u in sub.units())
        proxy += TERMS[8]["loss_increase"] if d["resolution"] == 8 else 0.0
        lat = float(pred.predict(space.kernels(c)).sum())
        if lat <= budget * (1 + 1e-9) and (best is None or proxy < best[0] - 1e-12):
            best = (proxy, lat, c)
    return best


@pytest.mark.parametrize("solver", ["ilp", "exhaustive"])
def test_best_under_budget_equals_brute_force(ckpt, solver):
    sp = tiny()
    lats = sorted(float(MacsPredictor().predict(sp.kernels(c)).sum()) for c in sp.enumerate())
    for q in (0.05, 0.3, 0.7):
        budget = lats[int(q * (len(lats) - 1))]
        res = hao.search(sp, MacsPredictor(), solver=solver, objectives=["proxy", "latency_ms"],
                         budgets={"latency_ms": budget}, proxy=unit_cost, checkpoint=ckpt, references=False)
        exp = brute(sp, budget)
        got = res.best()
        assert got["proxy"] == pytest.approx(exp[0], abs=1e-9)
        assert got["latency_ms"] <= budget * (1 + 1e-9)
        assert {m["context"]["resolution"] for m in res.meta["contexts"]} == {8, 12}


def test_resolution_term_reaches_the_objective(ckpt):
    sp = tiny()
    lo = sp.condition({"resolution": 8})
    hi = sp.condition({"resolution": 12})
    p_lo = make_problem(lo, MacsPredictor(), objectives=["proxy"], proxy=unit_cost, checkpoint=ckpt, references=False)
    p_hi = make_problem(hi, MacsPredictor(), objectives=["proxy"], proxy=unit_cost, checkpoint=ckpt, references=False)
    c = lo.sample(np.random.default_rng(0))
    c_hi = sp.make(c.as_dict() | {"resolution": 12})
    v_lo, v_hi = p_lo.objective("proxy").evaluate([c])[0], p_hi.objective("proxy").evaluate([c_hi])[0]
    assert v_lo - v_hi == pytest.approx(TERMS[8]["loss_increase"])
    t = ResolutionTerms.load(ckpt / RESOLUTION_FILE)
    assert resolution_offset("accuracy", t, 8) == -3.0 and resolution_offset("latency_ms", t, 8) is None
    assert resolution_offset("accuracy", t, 12) == 0.0


def test_a_context_that_cannot_meet_the_budget_is_skipped(ckpt):
    sp = tiny()
    lo = min(float(MacsPredictor().predict(sp.kernels(c)).sum()) for c in sp.condition({"resolution": 12}).enumerate())
    budget = 0.99 * lo   # only the 8-px networks fit
    res = hao.search(sp, MacsPredictor(), solver="ilp", objectives=["proxy", "latency_ms"],
                     budgets={"latency_ms": budget}, proxy=unit_cost, checkpoint=ckpt, references=False)
    assert res.best()["proxy"] == pytest.approx(brute(sp, budget)[0], abs=1e-9)
    assert [s["context"] for s in res.meta["contexts_without_solution"]] == [{"resolution": 12}]
    with pytest.raises(InfeasibleBudgetError, match="No context"):
        hao.search(sp, MacsPredictor(), solver="ilp", objectives=["proxy", "latency_ms"],
                   budgets={"latency_ms": 1e-6}, proxy=unit_cost, checkpoint=ckpt, references=False)


def test_missing_terms_and_whole_space_problem_are_refused(tmp_path):
    sp = tiny()
    with pytest.raises(ConfigError, match="measure_resolution"):
        make_problem(sp.condition({"resolution": 8}), MacsPredictor(), objectives=["proxy"], proxy=unit_cost,
                     checkpoint=tmp_path, references=False)
    with pytest.raises(ConfigError, match="hao.search"):
        make_problem(sp, MacsPredictor(), objectives=["proxy"], proxy=unit_cost, checkpoint=tmp_path)
    # costs without an accuracy objective need no terms
    make_problem(sp.condition({"resolution": 8}), MacsPredictor(), objectives=["latency_ms", "size_mb"],
                 references=False)


def test_sampling_solvers_split_their_budget(ckpt):
    assert split_trials(10, 3) == 4 and split_trials(None, 3) is None
    res = hao.search(tiny(), MacsPredictor(), solver="random", n_trials=40, seed=3, objectives=["proxy", "latency_ms"],
                     proxy=unit_cost, checkpoint=ckpt, references=False)
    rows = [m["rows"] for m in res.meta["contexts"]]
    assert len(rows) == 2 and all(10 < n <= 20 for n in rows)   # 20 draws each (duplicates dropped)
    again = hao.search(tiny(), MacsPredictor(), solver="random", n_trials=40, seed=3,
                       objectives=["proxy", "latency_ms"], proxy=unit_cost, checkpoint=ckpt, references=False)
    assert res.df["config"].tolist() == again.df["config"].tolist()


def test_optuna_keeps_one_study_per_context(ckpt, tmp_path):
    optuna = pytest.importorskip("optuna")
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    res = hao.search(tiny(), MacsPredictor(), solver="optuna", n_trials=8, seed=0, storage=url,
                     objectives=["proxy", "latency_ms"], proxy=unit_cost, checkpoint=ckpt, references=False)
    names = [m["meta"]["study_name"] for m in res.meta["contexts"]]
    assert len(set(names)) == 2
    for name in names:   # same space name and size at both resolutions, yet each context its own 4 trials
        assert len(optuna.load_study(study_name=name, storage=url).trials) == 4


def test_cli_skips_a_context_that_cannot_meet_the_budget(tmp_path):
    """``hao search`` shares the API's routine: every context's problem is built first, infeasible ones listed."""
    import json

    from hao.cli import main
    from hao.search.api import make_problem as mp

    sp = hao.get_space("mbconv-fmnist-res")
    lows = {r: mp(sp.condition({"resolution": r}), None, objectives=["bops_g", "size_mb"],
                  references=False).objective("bops_g").bounds()[0] for r in (20, 28)}
    budget = (lows[20] + lows[28]) / 2           # the 20-px networks can meet it, the 28-px ones cannot
    out = tmp_path / "out"
    assert main(["search", "--space", "mbconv-fmnist-res", "--objectives", "bops_g,size_mb", "--solver", "ilp",
                 "--points", "2", "--budget", f"bops_g={budget}", "--out", str(out), "--no-progress"]) == 0
    meta = json.loads((out / "result.json").read_text())["meta"]
    assert {"resolution": 28} in [s["context"] for s in meta["contexts_without_solution"]]
    assert {m["context"]["resolution"] for m in meta["contexts"]} >= {20}


def test_a_resolution_offset_shifts_a_linked_objective_after_its_link():
    """An accuracy objective whose value is a link of its additive score (a model fitted on the log error rate):
    the resolution term, in the value's unit, is added to the value, and budgets carry back through both."""
    from hao.search.contexts import _shifted
    from hao.search.objectives import AdditiveObjective
    space = tiny().condition({"resolution": 8})  # one conditioned space, as hao.search indexes it
    rng = np.random.default_rng(0)
    tables = [rng.random(len(space.unit_options(u))) for u in space.units()]
    link = (lambda z: 100.0 - 10.0 * np.exp(-np.asarray(z)), lambda v: -np.log((100.0 - np.asarray(v)) / 10.0))
    obj = AdditiveObjective(space, "accuracy", tables, constant=1.0, unit="%", direction="maximize", link=link)
    cands = [space.sample(np.random.default_rng(s)) for s in range(20)]
    moved = _shifted(obj, -3.0)
    np.testing.assert_allclose(moved.evaluate(cands), obj.evaluate(cands) - 3.0)
    np.testing.assert_allclose(obj.evaluate(cands), 100.0 - 10.0 * np.exp(-obj.score_indices(
        space.unit_indices(cands))))
    v = float(moved.evaluate(cands[:1])[0])
    assert moved.to_score(v) == pytest.approx(float(obj.score_indices(space.unit_indices(cands[:1]))[0]))
    assert moved.bounds()[1] == pytest.approx(obj.bounds()[1] - 3.0)
