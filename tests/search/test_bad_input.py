"""Property-based: arbitrary storage URLs, budgets and CLI budget strings give only hao's documented errors."""
from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hao.errors import ConfigError, MissingDependencyError
from hao.search.base import SearchProblem
from hao.search.optuna_solver import open_storage
from tests.search._instances import random_instance

PROBLEM, _ = random_instance(31, n_costs=1)


_FIXED_URLS = ["sqlite://", "sqlite:///", "postgresql://", "mysql://x", "sqlite:////nonexistent-dir/x.db",
               "redis://h", ""]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=40), st.sampled_from(_FIXED_URLS), st.integers(),
                 st.none().map(lambda _: b"sqlite:///x.db")))
def test_storage_urls_fail_only_with_documented_errors(url) -> None:
    if isinstance(url, str) and (url == ":memory:" or url.startswith("sqlite:///") and "/" not in url[10:]
                                 and url[10:] and "\x00" not in url):
        return  # a valid in-memory / relative SQLite URL would create a file in the cwd
    try:
        open_storage(url)
    except (ConfigError, MissingDependencyError):
        pass


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["cost1", "proxy", "latency", "size", "nope", ""]),
                       st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=5), st.none(),
                                 st.integers(-10, 10)), max_size=3))
def test_budgets_fail_only_with_config_errors(budgets) -> None:
    try:
        p = SearchProblem(PROBLEM.space, PROBLEM.objectives, budgets=budgets)
    except ConfigError:
        return
    for name, v in p.budgets.items():
        assert name in p.names and math.isfinite(v)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=20), max_size=3))
def test_cli_budget_strings_fail_only_with_config_errors(items) -> None:
    from hao.cli_search import parse_budgets
    try:
        out = parse_budgets(items)
    except ConfigError:
        return
    assert all(isinstance(v, float) for v in out.values())


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "1e3x"])
def test_specific_bad_budget_messages(bad) -> None:
    with pytest.raises(ConfigError, match="cost1"):
        SearchProblem(PROBLEM.space, PROBLEM.objectives, budgets={"cost1": bad})
