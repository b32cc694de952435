"""The reference candidates every space derives from its decisions: ``largest``, ``smallest`` and ``uniform``.

A mixin of :class:`hao.space.SearchSpace` (kept apart so that the base class stays readable); it uses the
space's ``_structure()``, ``make`` and ``_cache``.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from hao.errors import CandidateError
from hao.space.candidate import BIT_KINDS, Candidate

__all__ = ["ReferenceMixin"]


class ReferenceMixin:
    """``largest()``, ``smallest()`` and ``uniform(w_bits, a_bits)`` of a :class:`~hao.space.SearchSpace`."""

    name: str
    _cache: dict[str, Any]

    def _structure(self) -> dict[str, Any]:  # provided by SearchSpace
        raise NotImplementedError

    def make(self, choices: Any = None, **kw: int) -> Candidate:  # provided by SearchSpace
        raise NotImplementedError

    def largest(self) -> Candidate:
        """Return the largest candidate: every decision at its largest option.

        In every family shipped with hao a larger option never makes the network smaller (deeper stages,
        bigger kernels, wider blocks, more bits), so this candidate switches every unit on and has the most
        MACs and the most weight bytes of the space. It is the sub-network sandwich training fits to the
        labels, the one whose Hessian traces the accuracy proxy uses (:meth:`activate` it on the supernet
        first), and the architecture of :meth:`uniform`.

        .. note::
            Override it only where the family's structure needs it (e.g. validity rules that the all-maximum
            point breaks). ``hao.testing.check_space`` checks the result: a valid canonical candidate, every
            architecture decision of its switched-on units at its largest option, and at least the MACs and the
            weight bytes (summed over :meth:`kernels`) of every sampled candidate.

        Returns:
            A validated, canonical :class:`Candidate`.
        """
        return self._extreme("largest", max)

    def smallest(self) -> Candidate:
        """Return the smallest candidate: every decision at its smallest option.

        The mirror image of :meth:`largest`: the fewest units switched on, the smallest kernels and widths and
        the fewest bits, hence the fewest MACs and weight bytes of the space. Sandwich training's smallest
        sub-network is this architecture (``hao.train.smallest_candidate`` draws its bits at random).

        .. note::
            Override it only where the family's structure needs it; ``check_space`` checks it as it checks
            :meth:`largest`, with smallest options and at most the MACs and weight bytes of every sampled
            candidate.

        Returns:
            A validated, canonical :class:`Candidate`.
        """
        return self._extreme("smallest", min)

    def uniform(self, w_bits: int, a_bits: int) -> Candidate:
        """Return the largest architecture with every searchable layer at the same bits.

        Every decision of kind ``w_bits`` takes ``w_bits``, every ``a_bits`` decision takes ``a_bits`` and
        every ``bits`` decision (weight and activation bits tied in one choice) takes their common value; the
        other decisions are those of :meth:`largest`. Layers a space pins at fixed bits keep them. In a space
        without bit decisions the result is :meth:`largest`.

        Args:
            w_bits: weight bits (32 = float), an option of every weight-bit decision.
            a_bits: activation bits (32 = float), an option of every activation-bit decision.

        Returns:
            A validated, canonical :class:`Candidate`.

        Raises:
            CandidateError: a value is not an option of some bit decision (the message names the decision,
                its options and the values every such decision allows), or the space ties activation bits to
                weight bits and ``w_bits != a_bits``.
        """
        decs = self._structure()["decisions"]
        tied = [dec.name for dec in decs if dec.kind == "bits"]
        if tied and w_bits != a_bits:
            raise CandidateError(
                f"uniform(w_bits={w_bits!r}, a_bits={a_bits!r}): space {self.name!r} ties activation bits to "
                f"weight bits (decision {tied[0]!r} and {len(tied) - 1} more of kind 'bits'); pass equal values, "
                f"one of {self._common_options(('bits', 'w_bits', 'a_bits'))}.")
        d = self.largest().as_dict()
        for dec in decs:
            if dec.kind not in BIT_KINDS:
                continue
            arg, v = ("a_bits", a_bits) if dec.kind == "a_bits" else ("w_bits", w_bits)
            if isinstance(v, bool) or v not in dec.options:
                kinds = ("a_bits", "bits") if arg == "a_bits" else ("w_bits", "bits")
                raise CandidateError(
                    f"uniform({arg}={v!r}): decision {dec.name!r} of space {self.name!r} allows only "
                    f"{list(dec.options)}; pick a value every {arg} decision allows: "
                    f"{self._common_options(kinds)}.")
            d[dec.name] = int(v)
        return self.make(d)

    def _extreme(self, key: str, pick: Callable[[tuple[int, ...]], int]) -> Candidate:
        if key not in self._cache:
            self._cache[key] = self.make({dec.name: pick(dec.options) for dec in self._structure()["decisions"]})
        return self._cache[key]

    def _common_options(self, kinds: Sequence[str]) -> list[int]:
        """The bit values every decision of the given kinds allows (sorted)."""
        sets = [set(dec.options) for dec in self._structure()["decisions"] if dec.kind in kinds]
        return sorted(set.intersection(*sets)) if sets else []

