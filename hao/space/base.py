"""The search-space extension point: decisions, additive units, candidates.

A search space is a set of named integer *decisions* (kernel size, expansion, depth, bit-widths...). Every
decision is either a *gate* (it switches units on and off, e.g. a stage's depth) or belongs to exactly one
*unit* (a block, a layer, a tie group). Every cost hao knows — latency (a sum of kernels), size, BOPs and the
Hessian proxy (a sum over layers) — is a sum over units of a term that depends only on that unit's local
decisions (or on the unit being switched off). That is what lets the exact ILP solver and the vectorized
scorer work on any space; spaces whose costs are not additive can still be searched with Optuna.

Implementing a space (see ``search_spaces/*.py``): subclass :class:`SearchSpace`, set ``family``, and implement
``decisions``, ``units``, ``unit_kernels``, ``unit_layers``, ``fixed_kernels``, ``fixed_layers``, ``supernet``
and ``build``. The base class derives validation, exact size, sampling, encoding, JSON, kernels and
perturbations from them, and the reference candidates ``largest``, ``smallest`` and ``uniform`` (every decision
at its largest / smallest option; bits set uniformly), which a family overrides only where its structure needs
it. Spaces with a network follow the supernet protocol: ``supernet(seed)`` gives the
shared weights, ``activate(supernet, candidate)`` (by default the supernet's own ``set_active``, see
:class:`Supernet`) selects the sub-network its forward runs, and ``build(candidate, supernet)`` cuts a standalone
one out. ``hao.testing.check_space`` is the conformance battery every registered space passes.
"""
from __future__ import annotations

import contextlib
import itertools
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from hao.errors import CandidateError, ConfigError
from hao.kernel import KernelSpec

__all__ = ["BIT_KINDS", "QUANT_KINDS", "CONTEXT_KINDS", "Decision", "Gate", "Unit", "Candidate", "LayerPerturbation",
           "SearchSpace", "Supernet"]

from hao.space.candidate import (BIT_KINDS, QUANT_KINDS, Candidate, Decision, Gate,  # noqa: E402,F401
                                  LayerPerturbation, Unit)
from hao.space.contexts import CONTEXT_KINDS, ContextMixin  # noqa: E402
from hao.space.references import ReferenceMixin  # noqa: E402


@runtime_checkable
class Supernet(Protocol):
    """What the module returned by a weight-sharing family's ``SearchSpace.supernet()`` offers.

    ``set_active(candidate)`` selects the sub-network the module's ``forward`` runs: it validates ``candidate``
    (``CandidateError`` if it is not of the module's space), then the forward computes that candidate's
    architecture at its bits with the shared weights, with the same outputs (eval mode) as
    ``space.build(candidate, supernet)``. It changes no weight, BatchNorm statistic or training mode, so it can
    be called per training step. ``active`` is the last candidate set; which one a fresh supernet starts with
    is the family's choice, so activate one before relying on the forward. Generic code goes through
    :meth:`SearchSpace.activate` / :meth:`SearchSpace.activated`, which call ``set_active``.
    """

    active: Candidate

    def set_active(self, candidate: Candidate) -> None:
        ...


class SearchSpace(ReferenceMixin, ContextMixin, ABC):
    """Base class of every search space. See the module docstring for the contract.

    Subclasses must call ``super().__init__(name)`` and may then call :meth:`_check_structure` (done lazily
    on first use otherwise).
    """

    #: Family name shown by ``hao spaces`` (mbconv, resnet, quantize-only, ...).
    family: str = "abstract"
    #: (channels, height, width) of one input sample.
    input_shape: tuple[int, int, int] = (3, 32, 32)
    num_classes: int = 10

    def __init__(self, name: str) -> None:
        self.name = name
        self._cache: dict[str, Any] = {}

    # ---- what a subclass implements ------------------------------------------------------------------
    @abstractmethod
    def decisions(self) -> tuple[Decision, ...]:
        """All decisions, in a fixed order (the order of ``Candidate.choices``)."""

    @abstractmethod
    def units(self) -> tuple[Unit, ...]:
        """The additive units, in network order."""

    @abstractmethod
    def unit_kernels(self, unit: str, local: Mapping[str, int] | None) -> list[KernelSpec]:
        """Kernels of ``unit`` under the local assignment (``None`` = gated off, usually ``[]``)."""

    @abstractmethod
    def unit_layers(self, unit: str, local: Mapping[str, int] | None) -> list[LayerPerturbation]:
        """Weight layers of ``unit`` and what the local assignment does to them (``None`` = gated off)."""

    @abstractmethod
    def fixed_kernels(self) -> tuple[list[KernelSpec], list[KernelSpec]]:
        """Kernels present in every candidate: (before the units, after the units)."""

    @abstractmethod
    def fixed_layers(self) -> list[LayerPerturbation]:
        """Weight layers present in every candidate with fixed (pinned) bits."""

    # ---- optional: block-level tables ----------------------------------------------------------------
    def unit_blocks(self, unit: str, local: Mapping[str, int] | None) -> list[KernelSpec]:
        """Kernels of ``unit`` as a *block-level* table times them (composite ops such as ``mbconv``, see
        :data:`hao.kernel.BLOCK_OPS`). Default: the plain kernels (a space without composite blocks)."""
        return self.unit_kernels(unit, local)

    def fixed_blocks(self) -> tuple[list[KernelSpec], list[KernelSpec]]:
        """:meth:`fixed_kernels` as a block-level table times them. Default: the plain fixed kernels."""
        return self.fixed_kernels()

    @abstractmethod
    def supernet(self, seed: int = 0) -> "Any":
        """Create the torch module holding the weights every candidate shares.

        The module is a fresh initialisation that depends only on ``seed`` (the same seed gives the same
        ``state_dict``); its ``state_dict`` keys are the checkpoint format read by
        ``hao.train.load_supernet``. Every layer path of :meth:`unit_layers` and :meth:`fixed_layers` is a
        module of it, holding the layer's *full* weight (the largest option), so the proxy can slice any
        candidate's weights out of it. Weight-sharing families return a :class:`Supernet` (a module with
        ``set_active`` and ``active``); a family whose candidates share one architecture may return the plain
        model and override :meth:`activate`.

        Args:
            seed: seed of the initialisation.

        Returns:
            A ``torch.nn.Module``.

        Raises:
            ConfigError: the space has no network behind it (``has_supernet`` is false).
        """

    @abstractmethod
    def build(self, candidate: Candidate, supernet: Any = None, seed: int = 0) -> "Any":
        """Create a standalone fake-quantized ``nn.Module`` for ``candidate``.

        The weights are copied (sliced for smaller options) from ``supernet``, or from a fresh
        ``self.supernet(seed)`` when ``supernet`` is None. The returned module owns its weights (training it
        does not change ``supernet``), and building leaves ``supernet`` as it was, its active candidate
        included. Its module paths match the paths of :meth:`unit_layers` / :meth:`fixed_layers`, and the MACs
        of its conv/linear layers equal those of ``self.kernels(candidate)``. For a :class:`Supernet`, its
        forward equals the supernet's forward after ``activate(supernet, candidate)`` (eval mode).

        Args:
            candidate: a candidate of this space (validated).
            supernet: a module returned by :meth:`supernet` (possibly trained), or None.
            seed: seed of the fresh supernet when ``supernet`` is None.

        Returns:
            A ``torch.nn.Module`` mapping a batch of ``input_shape`` inputs to ``num_classes`` logits.

        Raises:
            CandidateError: ``candidate`` does not belong to this space.
            ConfigError: ``supernet`` is not a supernet of this space, or the space has no network.
        """

    # ---- the supernet protocol -----------------------------------------------------------------------
    #: Whether the space has a network behind it (``supernet``, ``build`` and ``activate`` work). False for
    #: spaces that only carry cost tables (``hao.search.tabular.TabularSpace``).
    has_supernet: bool = True

    def activate(self, supernet: Any, candidate: Candidate) -> None:
        """Make ``supernet``'s forward run ``candidate``'s sub-network.

        After the call, ``supernet(x)`` computes ``candidate`` with the shared weights (the same outputs as
        ``self.build(candidate, supernet)`` in eval mode), and ``supernet.active`` is ``candidate``. Only the
        selection changes: weights, BatchNorm statistics and the training mode are left alone. The default
        calls ``supernet.set_active(candidate)`` (the :class:`Supernet` protocol); hao's generic code (proxy
        traces, the conformance battery) calls this method, never ``set_active`` directly, so that a family
        whose supernet is a plain model can override it.

        Args:
            supernet: a module returned by :meth:`supernet`.
            candidate: a candidate of this space.

        Raises:
            CandidateError: ``candidate`` does not belong to this space.
            ConfigError: the space has no network, or ``supernet`` has no ``set_active`` (it is not a
                supernet of this space).
        """
        self.validate(candidate)
        if not self.has_supernet:
            raise ConfigError(f"Space {self.name!r} ({self.family}) has no network, so there is no supernet to "
                              "activate a candidate on; use a space with a network (hao spaces).")
        set_active = getattr(supernet, "set_active", None)
        if not callable(set_active):
            raise ConfigError(
                f"{type(supernet).__name__} is not a weight-sharing supernet of space {self.name!r}: it has no "
                f"set_active(candidate). Pass space.supernet(seed) or a checkpoint loaded with "
                f"hao.train.load_supernet(space, path); for a plain model call hessian_traces(model, ...).")
        set_active(candidate)

    @contextlib.contextmanager
    def activated(self, supernet: Any, candidate: Candidate) -> Iterator[Any]:
        """Context manager: :meth:`activate` ``candidate`` on ``supernet``, and on exit re-activate the candidate
        that was active before (``supernet.active``; nothing to restore where the supernet has none).

        >>> with space.activated(net, space.largest()):       # doctest: +SKIP
        ...     traces = hessian_traces(net, F.cross_entropy, batches)
        """
        previous = getattr(supernet, "active", None)
        self.activate(supernet, candidate)
        try:
            yield supernet
        finally:
            if previous is not None:
                self.activate(supernet, previous)

    # ---- derived structure ---------------------------------------------------------------------------
    def _structure(self) -> dict[str, Any]:
        if "structure" in self._cache:
            return self._cache["structure"]
        decs = self.decisions()
        by_name = {d.name: d for d in decs}
        if len(by_name) != len(decs):
            raise ConfigError(f"Space {self.name!r} has duplicate decision names.")
        units = self.units()
        owner: dict[str, str] = {}
        gates: set[str] = set()
        for u in units:
            for dn in u.decisions:
                if dn not in by_name:
                    raise ConfigError(f"Space {self.name!r}: unit {u.name!r} uses unknown decision {dn!r}.")
                if dn in owner:
                    raise ConfigError(f"Space {self.name!r}: decision {dn!r} belongs to units {owner[dn]!r} "
                                      f"and {u.name!r}; each decision must belong to one unit.")
                owner[dn] = u.name
            if u.gate is not None:
                if u.gate.decision not in by_name:
                    raise ConfigError(f"Space {self.name!r}: unit {u.name!r} is gated by unknown decision "
                                      f"{u.gate.decision!r}.")
                gates.add(u.gate.decision)
        for g in gates:
            if g in owner:
                raise ConfigError(f"Space {self.name!r}: gate decision {g!r} may not also belong to a unit.")
        contexts = tuple(d.name for d in decs if d.kind in CONTEXT_KINDS and len(d.options) > 1)
        for c in contexts:
            if c in owner or c in gates:
                raise ConfigError(f"Space {self.name!r}: context decision {c!r} (kind "
                                  f"{by_name[c].kind!r}) conditions every unit, so it may not belong to a unit or "
                                  "gate one.")
        orphan = [d.name for d in decs if d.name not in owner and d.name not in gates and d.name not in contexts
                  and len(d.options) > 1]
        if orphan:
            raise ConfigError(f"Space {self.name!r}: decisions {orphan} belong to no unit and gate nothing.")
        s = {"decisions": decs, "by_name": by_name, "units": units, "units_by_name": {u.name: u for u in units},
             "owner": owner, "gates": tuple(d.name for d in decs if d.name in gates), "contexts": contexts,
             "index": {d.name: i for i, d in enumerate(decs)}}
        self._cache["structure"] = s
        return s

    @property
    def decision_names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self._structure()["decisions"])

    def gate_decisions(self) -> tuple[str, ...]:
        return self._structure()["gates"]

    def unit_is_active(self, unit: Unit, choices: Mapping[str, int]) -> bool:
        return unit.gate is None or choices[unit.gate.decision] in unit.gate.active_values

    def unit_options(self, unit: str | Unit) -> list[dict[str, int] | None]:
        """Every local assignment of ``unit`` (the product of its decisions' options), then ``None`` (off)
        if the unit is gated. Cached; indices into this list are the unit's option indices."""
        u = unit if isinstance(unit, Unit) else self._structure()["units_by_name"][unit]
        key = "opts:" + u.name
        if key not in self._cache:
            by = self._structure()["by_name"]
            opts: list[dict[str, int] | None] = [
                dict(zip(u.decisions, combo)) for combo in itertools.product(*(by[d].options for d in u.decisions))
            ]
            if u.gate is not None:
                opts.append(None)
            self._cache[key] = opts
        return self._cache[key]

    # ---- size -----------------------------------------------------------------------------------------
    def size(self) -> int:
        """Exact number of distinct candidates (Python int). Decisions of switched-off units do not count."""
        st = self._structure()
        total = 1
        n_local = {u.name: int(np.prod([len(st["by_name"][d].options) for d in u.decisions], dtype=object))
                   if u.decisions else 1 for u in st["units"]}
        for u in st["units"]:
            if u.gate is None:
                total *= n_local[u.name]
        for g in st["gates"]:
            s = 0
            for v in st["by_name"][g].options:
                p = 1
                for u in st["units"]:
                    if u.gate is not None and u.gate.decision == g and v in u.gate.active_values:
                        p *= n_local[u.name]
                s += p
            total *= s
        for c in st["contexts"]:
            total *= len(st["by_name"][c].options)
        return int(total)

    def num_searchable_layers(self) -> int:
        """Weight layers whose bits or shape a decision changes (max over the space)."""
        n = 0
        for u in self.units():
            n += len(self.unit_layers(u.name, self.unit_options(u)[0]))
        return n

    # ---- candidates -----------------------------------------------------------------------------------
    def make(self, choices: Mapping[str, int] | None = None, **kw: int) -> Candidate:
        """Build a validated, canonical candidate from a (possibly partial) mapping; missing decisions take
        their first option."""
        d = {dec.name: dec.options[0] for dec in self._structure()["decisions"]}
        given = dict(choices or {}) | kw
        unknown = set(given) - set(d)
        if unknown:
            raise CandidateError(f"Unknown decision(s) {sorted(unknown)[:5]} for space {self.name!r}; "
                                 f"valid names look like {list(d)[:6]}.")
        d.update(given)
        c = Candidate(self.name, tuple(d.items()))
        self.validate(c)
        return self.canonical(c)

    def canonical(self, candidate: Candidate) -> Candidate:
        """Set the decisions of switched-off units to their first option (so equal networks compare equal)."""
        st = self._structure()
        d = candidate.as_dict()
        for u in st["units"]:
            if not self.unit_is_active(u, d):
                for dn in u.decisions:
                    d[dn] = st["by_name"][dn].options[0]
        return Candidate(candidate.space, tuple((n, d[n]) for n in self.decision_names))

    def validate(self, candidate: Candidate) -> Candidate:
        """Raise :class:`CandidateError` naming the bad field unless ``candidate`` belongs to this space."""
        if not isinstance(candidate, Candidate):
            raise CandidateError(f"Expected a hao Candidate, got {type(candidate).__name__}.")
        if candidate.space != self.name:
            raise CandidateError(f"Candidate belongs to space {candidate.space!r}, not {self.name!r}. "
                                 f"Load it with hao.get_space({candidate.space!r}).")
        st = self._structure()
        names = [k for k, _ in candidate.choices]
        if len(set(names)) != len(names):
            raise CandidateError(f"Candidate for {self.name!r} repeats a decision name.")
        expected = set(st["by_name"])
        missing, extra = expected - set(names), set(names) - expected
        if missing or extra:
            raise CandidateError(
                f"Candidate for {self.name!r} has {len(names)} decisions, the space has {len(expected)}: "
                f"missing {sorted(missing)[:5]}{'...' if len(missing) > 5 else ''}, "
                f"unexpected {sorted(extra)[:5]}{'...' if len(extra) > 5 else ''}.")
        for k, v in candidate.choices:
            dec = st["by_name"][k]
            if v not in dec.options:
                raise CandidateError(f"Candidate field {k!r} ({dec.kind}) = {v!r} is not allowed in space "
                                     f"{self.name!r}; allowed values: {list(dec.options)}.")
        return candidate

    def candidate_from_json(self, s: str | bytes) -> Candidate:
        c = Candidate.from_json(s)
        self.validate(c)
        return self.canonical(c)

    def sample(self, rng: np.random.Generator) -> Candidate:
        """A random canonical candidate (each decision uniform; ``rng`` is the only source of randomness)."""
        if not isinstance(rng, np.random.Generator):
            raise ConfigError(f"sample() needs a numpy Generator (np.random.default_rng(seed)), got {rng!r}.")
        st = self._structure()
        ch = tuple((d.name, int(d.options[rng.integers(len(d.options))])) for d in st["decisions"])
        return self.canonical(Candidate(self.name, ch))

    def enumerate(self, limit: int = 1_000_000) -> Iterator[Candidate]:
        """Every distinct candidate (refuses spaces larger than ``limit``)."""
        n = self.size()
        if n > limit:
            raise ConfigError(f"Space {self.name!r} has {n} candidates, more than limit={limit}; use a solver "
                              "that samples (optuna, random) or raise the limit.")
        st = self._structure()
        if st["contexts"]:
            for ctx in self.contexts():
                yield from self.condition(ctx).enumerate(limit)
            return
        gates = st["gates"]
        for gvals in itertools.product(*(st["by_name"][g].options for g in gates)):
            base = dict(zip(gates, gvals))
            active = [u for u in st["units"] if self.unit_is_active(u, base)]
            for combo in itertools.product(*(self.unit_options(u)[: len(self.unit_options(u)) -
                                                                  (u.gate is not None)] for u in active)):
                d = {dec.name: dec.options[0] for dec in st["decisions"]} | base
                for local in combo:
                    d.update(local)
                yield Candidate(self.name, tuple((nm, d[nm]) for nm in self.decision_names))

    def compose(self, gate_values: Mapping[str, int], unit_choice: Mapping[str, Mapping[str, int] | None]
                ) -> Candidate:
        """Assemble a candidate from gate values and per-unit local assignments (used by exact solvers)."""
        d = dict(gate_values)
        for local in unit_choice.values():
            if local:
                d.update(local)
        return self.make(d)

    # ---- derived per-candidate views -------------------------------------------------------------------
    def _local(self, unit: Unit, d: Mapping[str, int]) -> dict[str, int] | None:
        if not self.unit_is_active(unit, d):
            return None
        return {dn: d[dn] for dn in unit.decisions}

    def unit_indices(self, candidates: Sequence[Candidate]) -> np.ndarray:
        """(n_candidates, n_units) option indices into :meth:`unit_options` — the vectorized scorers' input."""
        st = self._structure()
        out = np.empty((len(candidates), len(st["units"])), dtype=np.int64)
        lookups = []
        for u in st["units"]:
            lookups.append({None if o is None else tuple(o[d] for d in u.decisions): i
                            for i, o in enumerate(self.unit_options(u))})
        for r, c in enumerate(candidates):
            d = c.as_dict()
            for j, u in enumerate(st["units"]):
                loc = self._local(u, d)
                out[r, j] = lookups[j][None if loc is None else tuple(loc[x] for x in u.decisions)]
        return out

    def kernels(self, candidate: Candidate, granularity: str = "kernel") -> list[KernelSpec]:
        """The fused kernels the hardware executes for ``candidate``, in network order; with
        ``granularity="block"``, as a block-level table times them (:meth:`unit_blocks`, :meth:`fixed_blocks`)."""
        if self.context_decisions():
            return self.resolve(candidate).kernels(candidate, granularity)
        self.validate(candidate)
        unit_fn, fixed_fn = self.granularity_hooks(granularity)
        d = candidate.as_dict()
        pre, post = fixed_fn()
        out = list(pre)
        for u in self._structure()["units"]:
            out.extend(unit_fn(u.name, self._local(u, d)))
        return out + list(post)

    def granularity_hooks(self, granularity: str) -> tuple[Callable, Callable]:
        """``(unit_fn, fixed_fn)``: :meth:`unit_kernels`/:meth:`fixed_kernels` for ``"kernel"``,
        :meth:`unit_blocks`/:meth:`fixed_blocks` for ``"block"``."""
        if granularity == "kernel":
            return self.unit_kernels, self.fixed_kernels
        if granularity == "block":
            return self.unit_blocks, self.fixed_blocks
        raise ConfigError(f"granularity must be 'kernel' or 'block', got {granularity!r} (a table's "
                          "meta.json['granularity']; see docs/table_schema.md).")

    def perturbations(self, candidate: Candidate) -> list[LayerPerturbation]:
        """Per weight layer of the supernet: what ``candidate`` removes and how it quantizes (see
        ``hao/proxy/sensitivity.py``)."""
        self.validate(candidate)
        d = candidate.as_dict()
        out = list(self.fixed_layers())
        for u in self._structure()["units"]:
            out.extend(self.unit_layers(u.name, self._local(u, d)))
        return out

    def bit_config(self, candidate: Candidate) -> dict[str, dict[str, int]]:
        """``{module path: {"w_bits": b, "a_bits": b}}`` for every layer present in ``candidate``, plus
        ``"w_groups"``/``"w_axis"`` for layers quantized with group-wise ranges."""
        return {p.path: {"w_bits": p.w_bits, "a_bits": p.a_bits}
                | ({"w_groups": p.w_groups, "w_axis": p.w_axis} if p.w_groups is not None else {})
                for p in self.perturbations(candidate) if not p.removed}

    def encode(self, candidates: Sequence[Candidate]) -> np.ndarray:
        """Feature matrix (n, n_decisions): each decision's value, 0 where its unit is switched off."""
        st = self._structure()
        X = np.zeros((len(candidates), len(st["decisions"])), dtype=np.float64)
        units_of = st["owner"]
        ubn = st["units_by_name"]
        for r, c in enumerate(candidates):
            d = c.as_dict()
            for j, dec in enumerate(st["decisions"]):
                u = units_of.get(dec.name)
                if u is None or self.unit_is_active(ubn[u], d):
                    X[r, j] = d[dec.name]
        return X

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "family": self.family, "size": str(self.size()),
                "decisions": len(self.decision_names), "units": len(self.units()),
                "searchable_layers": self.num_searchable_layers(), "input_shape": list(self.input_shape)} | (
                    {"contexts": {n: list(self._structure()["by_name"][n].options)
                                  for n in self.context_decisions()}} if self.context_decisions() else {})

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} family={self.family} size~{float(self.size()):.3g}>"
