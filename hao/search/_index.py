"""Index-space view of a :class:`~hao.space.SearchSpace` shared by every solver.

A candidate is represented by two integer rows: ``gate_idx`` (one value index per gate decision) and
``unit_idx`` (one option index per unit, into ``space.unit_options(unit)``; the last option of a gated unit is
"off"). Sampling, enumeration and scoring stay vectorized in this representation; a :class:`Candidate` is only
built for the rows a user will see.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import numpy as np

from hao.errors import ConfigError
from hao.space.base import Candidate, SearchSpace
from hao.space.candidate import BIT_KINDS

__all__ = ["IndexedSpace"]


class IndexedSpace:
    """Arrays describing the unit/gate structure of ``space`` (built once, read-only afterwards)."""

    def __init__(self, space: SearchSpace) -> None:
        if not isinstance(space, SearchSpace):
            raise ConfigError(f"Expected a hao SearchSpace, got {type(space).__name__}; create one with "
                              "hao.space.get_space(name).")
        if space.context_decisions():
            raise ConfigError(f"Space {space.name!r} has context decisions {list(space.context_decisions())}, which "
                              "condition every unit; index each conditioned space instead (space.condition({...})), "
                              "or search with hao.search(), which does (docs/search.md, 'Input resolution').")
        self.space = space
        st = space._structure()
        self.decision_names: tuple[str, ...] = space.decision_names
        self.units = st["units"]
        self.unit_names = tuple(u.name for u in self.units)
        self.gate_names: tuple[str, ...] = tuple(space.gate_decisions())
        self.gate_values: list[tuple[int, ...]] = [tuple(st["by_name"][g].options) for g in self.gate_names]
        self.options = [space.unit_options(u) for u in self.units]
        self.n_opts = np.array([len(o) for o in self.options], dtype=np.int64)
        self.gated = np.array([u.gate is not None for u in self.units], dtype=bool)
        self.n_on = self.n_opts - self.gated.astype(np.int64)
        self.off_index = np.where(self.gated, self.n_opts - 1, -1)
        gpos = {g: i for i, g in enumerate(self.gate_names)}
        self.gate_of = np.array([gpos[u.gate.decision] if u.gate is not None else -1 for u in self.units],
                                dtype=np.int64)
        # active[j] = bool mask over the values of unit j's gate
        self.active: list[np.ndarray | None] = []
        for u in self.units:
            if u.gate is None:
                self.active.append(None)
            else:
                vals = self.gate_values[gpos[u.gate.decision]]
                self.active.append(np.array([v in u.gate.active_values for v in vals], dtype=bool))
        bit_names = {d.name for d in st["decisions"] if d.kind in BIT_KINDS}
        #: per unit, the total bit-width of each option (sum over its bit decisions; "off" = 0): the order in
        #: which exact ties between options are broken (more bits first; see :func:`hao.search.front.pareto_dp`)
        self.option_bits: list[np.ndarray] = [
            np.array([0 if o is None else sum(int(o[d]) for d in u.decisions if d in bit_names) for o in opts],
                     dtype=np.int64) for u, opts in zip(self.units, self.options)]
        self._defaults = {d.name: d.options[0] for d in st["decisions"]}
        self._lookup = [{None if o is None else tuple(o[d] for d in u.decisions): i for i, o in enumerate(opts)}
                        for u, opts in zip(self.units, self.options)]

    @property
    def n_units(self) -> int:
        return len(self.units)

    @property
    def n_gates(self) -> int:
        return len(self.gate_names)

    # ---- sampling -------------------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` candidates distributed as ``space.sample`` (each decision uniform, then canonical)."""
        if not isinstance(rng, np.random.Generator):
            raise ConfigError(f"sample() needs a numpy Generator (np.random.default_rng(seed)), got {rng!r}.")
        G = np.empty((n, self.n_gates), dtype=np.int64)
        for i, vals in enumerate(self.gate_values):
            G[:, i] = rng.integers(len(vals), size=n)
        U = np.empty((n, self.n_units), dtype=np.int64)
        for j in range(self.n_units):
            U[:, j] = rng.integers(self.n_on[j], size=n)
            if self.gated[j]:
                on = self.active[j][G[:, self.gate_of[j]]]
                U[:, j] = np.where(on, U[:, j], self.off_index[j])
        return G, U

    # ---- enumeration ----------------------------------------------------------------------------------
    def enumerate(self, limit: int = 1_000_000, chunk: int = 65536) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every distinct candidate once, as ``(gate_idx, unit_idx)`` blocks of at most ``chunk`` rows."""
        n = self.space.size()
        if n > limit:
            raise ConfigError(f"Space {self.space.name!r} has {n} candidates, more than limit={limit}; use the "
                              "'ilp', 'optuna' or 'random' solver, or raise the limit.")
        for gcombo in itertools.product(*(range(len(v)) for v in self.gate_values)):
            g = np.array(gcombo, dtype=np.int64)
            ranges = []
            for j in range(self.n_units):
                if self.gated[j] and not self.active[j][g[self.gate_of[j]]]:
                    ranges.append(np.array([self.off_index[j]]))
                else:
                    ranges.append(np.arange(self.n_on[j]))
            sizes = [len(r) for r in ranges]
            total = int(np.prod(sizes, dtype=np.int64)) if sizes else 1
            for start in range(0, total, chunk):
                flat = np.arange(start, min(total, start + chunk), dtype=np.int64)
                U = np.empty((flat.size, self.n_units), dtype=np.int64)
                rem = flat
                for j in range(self.n_units - 1, -1, -1):
                    U[:, j] = ranges[j][rem % sizes[j]]
                    rem = rem // sizes[j]
                yield np.tile(g, (flat.size, 1)), U

    # ---- conversions ----------------------------------------------------------------------------------
    def to_candidates(self, G: np.ndarray, U: np.ndarray) -> list[Candidate]:
        """Canonical candidates of the given index rows (no validation needed: indices are valid by
        construction)."""
        out = []
        names = self.decision_names
        for g_row, u_row in zip(np.asarray(G), np.asarray(U)):
            d = dict(self._defaults)
            for gi, name in enumerate(self.gate_names):
                d[name] = self.gate_values[gi][int(g_row[gi])]
            for j in range(self.n_units):
                local = self.options[j][int(u_row[j])]
                if local:
                    d.update(local)
            out.append(Candidate(self.space.name, tuple((nm, d[nm]) for nm in names)))
        return out

    def from_candidates(self, candidates: Sequence[Candidate]) -> tuple[np.ndarray, np.ndarray]:
        G = np.empty((len(candidates), self.n_gates), dtype=np.int64)
        for r, c in enumerate(candidates):
            self.space.validate(c)
            for gi, name in enumerate(self.gate_names):
                G[r, gi] = self.gate_values[gi].index(c[name])
        return G, self.space.unit_indices([self.space.canonical(c) for c in candidates])

    def local_index(self, j: int, local: dict[str, int] | None) -> int:
        """Option index of unit ``j`` for a local assignment (``None`` = off)."""
        u = self.units[j]
        return self._lookup[j][None if local is None else tuple(local[d] for d in u.decisions)]

    def keys(self, G: np.ndarray, U: np.ndarray) -> np.ndarray:
        """One row per candidate identifying it uniquely (for de-duplication)."""
        return np.concatenate([np.asarray(G, dtype=np.int64), np.asarray(U, dtype=np.int64)], axis=1)
