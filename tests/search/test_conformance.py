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


def _mbconv_problems():
    """Tiny MBConv problems (an untrained supernet, random images) for solvers that need the MBConv family."""
    import torch

    from hao.search import SearchProblem, bops_objective, size_objective
    from hao.space.mbconv import MBConvSpace

    space = MBConvSpace("tiny-conformance", input_shape=(1, 12, 12), stem_channels=8, stages=((8, 1), (12, 2)),
                        depths=(1, 2), kernel_sizes=(3, 5), ratios=(2, 3), w_bits=(2, 8), a_bits=(4, 8),
                        head_channels=16)
    net = space.supernet(seed=0)

    def batches(gen, n):
        x = torch.randn(n, 1, 12, 12, generator=gen)
        return x, (x.mean((1, 2, 3)) > 0).long()

    def problems(seed):
        objs = [size_objective(space), bops_objective(space)]
        budgets = {"bops_g": float(objs[1].bounds()[0] * 1.5)} if seed % 2 else {}
        return SearchProblem(space, objs, budgets=budgets)
    return {"steps": 3, "batch_size": 4, "snapshot_every": 1, "cost": "bops_g", "supernet": net,
            "batches": batches}, problems


@pytest.mark.parametrize("name", list_solvers())
def test_registered_solver_conforms(name: str) -> None:
    if name == "dmasking":
        params, problems = _mbconv_problems()
        check_solver(name, params, seeds=(0, 1), problems=problems)
        return
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
