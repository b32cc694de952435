"""Context decisions: global choices (e.g. the input resolution) that condition every unit of a space.

A space whose decisions include one of :data:`CONTEXT_KINDS` (with more than one option) is not additive over its
units — every unit's kernels depend on the context — but it is a union of additive spaces, one per context value.
:class:`ContextMixin` (part of :class:`hao.space.SearchSpace`) gives the view every solver needs:
:meth:`~ContextMixin.condition` pins the context (a plain space of the same name whose candidates are candidates of
the whole space), :meth:`~ContextMixin.resolve` finds the one a candidate lives in. ``hao.search`` searches each
conditioned space and merges (``hao/search/contexts.py``; docs/search.md, "Input resolution").
"""
from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hao.errors import CandidateError, ConfigError

if TYPE_CHECKING:
    from hao.space.base import SearchSpace
    from hao.space.candidate import Candidate

__all__ = ["CONTEXT_KINDS", "ContextMixin"]

#: Decision kinds that condition *every* unit (a global choice such as the input resolution): a space with such a
#: decision (more than one option) is a union of conditioned spaces, one per value (:meth:`ContextMixin.condition`),
#: each additive over its units. Exact solvers solve each conditioned space and merge (``hao.search``).
CONTEXT_KINDS = ("resolution",)


class ContextMixin:
    """The context-decision methods of :class:`hao.space.SearchSpace` (see the module docstring)."""

    name: str
    _cache: dict[str, Any]

    def _structure(self) -> dict[str, Any]:  # pragma: no cover - provided by SearchSpace
        raise NotImplementedError

    def validate(self, candidate: "Candidate") -> "Candidate":  # pragma: no cover - provided by SearchSpace
        raise NotImplementedError

    @property
    def checkpoint_name(self) -> str:
        """Name of the checkpoint folder holding this space's trained weights and accuracy models
        (``checkpoints/<checkpoint_name>/``): the space's name unless the family shares another space's weights
        (e.g. a resolution-searching variant of a trained space)."""
        return getattr(self, "_checkpoint_name", None) or self.name

    def context_decisions(self) -> tuple[str, ...]:
        """Names of the decisions that condition every unit (kinds in :data:`CONTEXT_KINDS`, more than one
        option). Empty for a plain additive space."""
        return self._structure()["contexts"]

    def contexts(self) -> list[dict[str, int]]:
        """Every assignment of the context decisions (``[{}]`` for a plain space)."""
        st = self._structure()
        names = st["contexts"]
        return [dict(zip(names, combo)) for combo in itertools.product(*(st["by_name"][n].options for n in names))]

    def condition(self, context: Mapping[str, int]) -> "SearchSpace":
        """The space with every context decision pinned to ``context``'s value (a plain additive space of the
        same name whose candidates are candidates of this space). A space without context decisions returns
        itself. Families with context decisions override :meth:`_condition`."""
        names = self.context_decisions()
        if not names:
            return self
        st = self._structure()
        if set(context) != set(names):
            raise ConfigError(f"condition() on space {self.name!r} needs a value for each context decision "
                              f"{list(names)}, got {sorted(context)}.")
        for n in names:
            if context[n] not in st["by_name"][n].options:
                raise CandidateError(f"condition(): {n} = {context[n]!r} is not an option of space {self.name!r}; "
                                     f"allowed: {list(st['by_name'][n].options)}.")
        key = "ctx:" + repr(sorted(context.items()))
        if key not in self._cache:
            sub = self._condition(dict(context))
            #: the context values this space was conditioned on (read by hao.search for the context terms)
            sub.conditioned_on = dict(context)
            self._cache[key] = sub
        return self._cache[key]

    def _condition(self, context: dict[str, int]) -> "SearchSpace":
        raise ConfigError(f"Space {self.name!r} ({type(self).__name__}) declares context decisions "
                          f"{list(self.context_decisions())} but does not implement _condition(context); see "
                          "docs/search.md, 'Input resolution'.")

    def resolve(self, candidate: Candidate) -> "SearchSpace":
        """The conditioned space ``candidate`` lives in (:meth:`condition` at its context values); the space
        itself when it has no context decision. Use it for what depends on the context: kernels, the network's
        input shape, deployment."""
        names = self.context_decisions()
        if not names:
            return self
        d = self.validate(candidate).as_dict()
        return self.condition({n: d[n] for n in names})
