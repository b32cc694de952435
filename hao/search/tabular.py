"""A search space given only by its decisions and units, with costs supplied as tables.

Used where the costs come from published numbers rather than from a network (the HAWQ-V3 ILP data, whose
layers are tie groups with bits {4, 8}) and for testing solvers on random instances. It has no kernels, layers
or supernet: build objectives with :meth:`AdditiveObjective.from_unit_fn` or raw tables.

>>> from hao.space import Decision, Unit
>>> sp = TabularSpace("toy", [Decision("b0", (4, 8), "bits"), Decision("b1", (4, 8), "bits")],
...                   [Unit("u0", ("b0",)), Unit("u1", ("b1",))])
>>> sp.size()
4
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hao.errors import ConfigError
from hao.kernel import KernelSpec
from hao.space.base import Decision, LayerPerturbation, SearchSpace, Unit

__all__ = ["TabularSpace"]


class TabularSpace(SearchSpace):
    """A :class:`SearchSpace` from explicit decisions and units (no network behind it)."""

    family = "tabular"
    has_supernet = False  # no network: largest/smallest/uniform work, supernet/build/activate raise

    def __init__(self, name: str, decisions: Sequence[Decision], units: Sequence[Unit]) -> None:
        super().__init__(name)
        self._decisions = tuple(decisions)
        self._units = tuple(units)
        self._structure()  # validate now

    def decisions(self) -> tuple[Decision, ...]:
        return self._decisions

    def units(self) -> tuple[Unit, ...]:
        return self._units

    def unit_kernels(self, unit: str, local: Mapping[str, int] | None) -> list[KernelSpec]:
        return []

    def unit_layers(self, unit: str, local: Mapping[str, int] | None) -> list[LayerPerturbation]:
        return []

    def fixed_kernels(self) -> tuple[list[KernelSpec], list[KernelSpec]]:
        return [], []

    def fixed_layers(self) -> list[LayerPerturbation]:
        return []

    def supernet(self, seed: int = 0) -> Any:
        raise ConfigError(f"Tabular space {self.name!r} has no network; it only carries cost tables.")

    def build(self, candidate: Any, supernet: Any = None, seed: int = 0) -> Any:
        raise ConfigError(f"Tabular space {self.name!r} has no network; it only carries cost tables.")
