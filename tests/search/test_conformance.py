"""Every registered solver passes the conformance battery of hao.search.testing."""
from __future__ import annotations

import pytest

from hao.search.base import list_solvers
from hao.search.testing import check_solver

PARAMS = {
    "ilp": ({"n_points": 5}, True),
    "front": ({}, True),
    "exhaustive": ({}, True),
    "random": ({"n_samples": 200, "seed": 1}, False),
    "optuna": ({"n_trials": 25, "seed": 1, "storage": ":memory:", "population_size": 6}, False),
}


@pytest.mark.parametrize("name", list_solvers())
def test_registered_solver_conforms(name: str) -> None:
    if name not in PARAMS:
        pytest.fail(f"solver {name!r} is registered but has no conformance parameters in this test")
    params, exact = PARAMS[name]
    check_solver(name, params, exact=exact)


def test_epsilon_front_conforms() -> None:
    check_solver("front", {"epsilon": 0.05}, exact=False)


def test_exact_ilp_front_mode_conforms() -> None:
    check_solver("ilp", {"exact_front": True}, exact=True)
    for sampler in ("tpe", "random"):
        check_solver("optuna", {"sampler": sampler, "n_trials": 15, "seed": 2, "storage": ":memory:"},
                     seeds=(0,))
