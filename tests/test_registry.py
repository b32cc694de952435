"""hao.registry: the one registry behind every extension point, and the same behaviour everywhere."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from hao.errors import ConfigError
from hao.registry import Registry, accepted_parameters

REPO = Path(__file__).resolve().parents[1]


class Base:
    pass


class A(Base):
    def __init__(self, x: int = 1, *, y: str = "a") -> None:
        self.x, self.y = x, y


def test_register_create_and_errors():
    r = Registry("widget", base=Base, hint="See docs/widgets.md.")
    r.register("a")(A)
    assert A.name == "a" and r.names() == ["a"] and "a" in r
    assert r.create("a", x=3).x == 3
    with pytest.raises(ConfigError, match=r"Unknown widget 'b'\. Known widgets: a\. See docs/widgets\.md\."):
        r.get("b")
    with pytest.raises(ConfigError, match=r"Bad parameters \['z'\] for widget 'a'.*accepts \['x', 'y'\]"):
        r.create("a", z=1)
    with pytest.raises(ConfigError, match="already registered"):
        r.register("a")(type("A2", (Base,), {}))
    r.register("a", type("A3", (Base,), {}), overwrite=True)
    with pytest.raises(ConfigError, match="Only subclasses of Base"):
        r.register("c")(int)
    with pytest.raises(ConfigError, match="without white space"):
        r.register("has space")
    assert accepted_parameters(A) == ["x", "y"]


def test_builtins_and_loader_run_once_and_lazily():
    calls = []
    r = Registry("thing", loader=lambda: calls.append(1))
    assert calls == []
    r.names()
    r.names()
    assert calls == [1]
    r.load(force=True)
    assert calls == [1, 1]


def test_every_extension_point_uses_the_one_registry():
    from hao.latency.backend import BACKENDS
    from hao.latency.importers import IMPORTERS
    from hao.proxy import ACCURACY_MODELS
    from hao.search.base import SOLVERS
    from hao.search.objectives import OBJECTIVES
    from hao.space.registry import SPACES

    for reg in (SPACES, SOLVERS, OBJECTIVES, BACKENDS, IMPORTERS, ACCURACY_MODELS):
        assert isinstance(reg, Registry)
        with pytest.raises(ConfigError, match=f"Unknown {reg.kind} 'no-such'. Known {reg.kind}s: "):
            reg.get("no-such")
    assert {"ilp", "optuna", "random", "exhaustive"} <= set(SOLVERS.names())
    assert {"roofline", "tvm"} <= set(BACKENDS.names())
    assert {"apq", "haq", "hawq"} <= set(IMPORTERS.names())
    assert {"hessian", "weight-norm"} <= set(ACCURACY_MODELS.names())
    assert {"proxy", "latency_ms", "size_mb", "bops_g", "macs_m"} <= set(OBJECTIVES.names())
    # no second registry implementation hides in the package
    pat = re.compile(r"^_(REGISTRY|SOLVERS|BACKENDS|IMPORTERS)\s*:?.*=\s*\{\}", re.M)
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "hao").rglob("*.py") if pat.search(p.read_text())]
    assert not offenders, offenders


def test_solver_options_map_without_names():
    from hao.search.base import make_solver

    assert make_solver("random", seed=3, n_trials=7).n_samples == 7
    assert make_solver("optuna", seed=3, n_trials=7).n_trials == 7
    assert make_solver("ilp", seed=3).__class__.__name__ == "ILPSolver"  # the seed is not ILP's
    with pytest.raises(ConfigError, match="solver 'ilp' has no such budget"):
        make_solver("ilp", n_trials=5)
    with pytest.raises(ConfigError, match=r"\['storage'\] do not apply to solver 'ilp'"):
        make_solver("ilp", storage="sqlite:///x.db")
