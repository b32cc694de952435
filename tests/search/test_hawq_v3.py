"""HAWQ-V3 reproduction: the generic ILP finds the published bit configurations (the shipped
reference_data/hawq_v3_ilp.json)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "reference_data" / "hawq_v3_ilp.json"  # shipped with the repository: never skipped


def _module():
    spec = importlib.util.spec_from_file_location("hawq_v3_experiment", REPO / "experiments" / "hawq_v3.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def hawq():
    mod = _module()
    return mod, mod.load(DATA)


def test_resnet18_all_nine_configs_match(hawq) -> None:
    mod, data = hawq
    df = mod.reproduce("resnet18", data["models"]["resnet18"])
    assert len(df) == 9
    assert (df.matches == 19).all(), df[["budget", "r", "found", "published", "matches"]]


def test_resnet50_at_least_eight_of_nine(hawq) -> None:
    mod, data = hawq
    df = mod.reproduce("resnet50", data["models"]["resnet50"])
    exact = df[df.matches == 52]
    assert len(exact) >= 8
    # the one known exception (data README): modelsize 0.25, where the ILP optimum is strictly better
    for _, r in df[df.matches != 52].iterrows():
        assert (r.budget, r.r) == ("modelsize", 0.25)
        assert r.matches == 51
        assert r.proxy < r.published_proxy and r.cost <= r.limit and r.published_cost <= r.limit


def test_resnet18_exact_front_equals_enumeration(hawq) -> None:
    """2^16 candidates: the epsilon-constraint front equals the brute-force front."""
    mod, data = hawq
    from hao.pareto import pareto_front
    from hao.search.baselines import ExhaustiveSolver
    problem, _ = mod.build_problem("resnet18", data["models"]["resnet18"])
    ex = ExhaustiveSolver(keep="all").solve(problem)
    fr = mod.fronts("resnet18", data["models"]["resnet18"])
    for obj in ("size_bytes", "latency_ms"):
        truth = pareto_front(ex.df[["proxy", obj]].to_numpy())
        got = pareto_front(fr[fr.front == obj][["proxy", obj]].to_numpy())
        np.testing.assert_allclose(got, truth, rtol=1e-9)


def test_cli_writes_configs_csv(tmp_path) -> None:
    mod = _module()
    assert mod.main(["--data", str(DATA), "--out", str(tmp_path), "--no-plots"]) == 0
    import pandas as pd
    df = pd.read_csv(tmp_path / "configs.csv", dtype={"found": str, "published": str})
    assert list(df.columns[:6]) == ["model", "budget", "r", "found", "published", "matches"]
    assert len(df) == 18 and df.found.str.fullmatch("[48]+").all()


def test_bad_data_file_is_a_clear_error(tmp_path) -> None:
    mod = _module()
    from hao.errors import ConfigError
    with pytest.raises(ConfigError, match="does not exist"):
        mod.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"models": {"m": {"layer_names": ["a"]}}}')
    with pytest.raises(ConfigError, match="lacks field"):
        mod.load(tmp_path / "bad.json")
