"""Mapping a search space onto a foreign latency table (one published with other key conventions).

A published table is keyed by *its* conventions, not hao's. A :class:`TableMapping` says, for every kernel a
candidate of the space executes (``space.kernels(candidate)``), which of these it is:

* ``lookup`` — rewrite the kernel into the table's key convention and look it up; if the table has the key the
  cost is the published value (**exact hit**), otherwise the :class:`~hao.latency.LatencyPredictor` fitted on
  that table predicts it (**predicted**), with the predictor's 10-90 % quantile band as its uncertainty. A
  missing kernel is never dropped.
* ``fixed`` — a kernel the table prices as part of a fixed per-network cost (APQ's ``head``/``tail``); its cost
  is that constant, added once.
* ``not-modelled`` — an op the table's own cost model does not price at all (APQ's and HAQ's simulators sum
  convolutions/linear layers only); counted and reported, costed at 0 to keep the table's semantics.

Shipped: :class:`APQMapping` (``mbconv-apq224`` on the APQ BitFusion table) and :class:`HAQMapping`
(``quant-mobilenetv2`` on HAQ's table); ``experiments/plugin_tables.py`` runs the search on both.
"""
from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["CATEGORIES", "TableMapping", "APQMapping", "HAQMapping"]

CATEGORIES = ("exact", "predicted", "fixed", "not-modelled")


# ---- the mapping extension point -------------------------------------------------------------------------------
class TableMapping:
    """How the kernels of ``space`` map onto a foreign ``table`` (see the module docstring).

    Subclasses implement :meth:`classify`; the base class turns it into per-kernel costs with uncertainty.
    ``predictor`` is a :class:`~hao.latency.LatencyPredictor` fitted on ``table`` (with quantiles).
    """

    name = "identity"
    cost_unit = "ms"

    def __init__(self, space: Any, table: Any, predictor: Any) -> None:
        self.space, self.table, self.predictor = space, table, predictor
        self._cache: dict[Any, tuple[str, float, float, float]] = {}

    def classify(self, k: Any) -> tuple[str, Any]:
        """``("lookup", kernel in the table's convention)``, ``("fixed", None)`` or ``("not-modelled", None)``."""
        return "lookup", k

    #: the space's fixed kernels (``space.fixed_kernels()``: stem, head, classifier) are priced by the table's
    #: fixed cost instead of being looked up
    replaces_fixed_kernels = False

    def fixed_cost(self) -> float:
        """Cost of the table's fixed per-network part (added once)."""
        return 0.0

    def candidate_costs(self, cand: Any) -> tuple[list, list[tuple[str, float, float, float]]]:
        """``(kernels, costs)`` of one candidate; fixed kernels are recognised by *position* (the first/last
        ``len(space.fixed_kernels())`` kernels), never by shape — a block's 1x1 conv can have the head's shape."""
        ks = self.space.kernels(cand)
        if not self.replaces_fixed_kernels:
            return ks, self.costs(ks)
        pre, post = self.space.fixed_kernels()
        n_pre, n_post = len(pre), len(post)
        if list(ks[:n_pre]) != list(pre) or list(ks[len(ks) - n_post:]) != list(post):
            raise ValueError(f"{type(self).__name__}: space.kernels() of {self.space.name!r} does not start/end "
                             "with space.fixed_kernels(); cannot tell the fixed kernels apart.")
        mid = self.costs(list(ks[n_pre:len(ks) - n_post]))
        fixed = [("fixed", 0.0, 0.0, 0.0)]
        return ks, fixed * n_pre + mid + fixed * n_post

    def costs(self, kernels: list) -> list[tuple[str, float, float, float]]:
        """Per kernel: (category, point, low, high). Exact hits have low = high = point."""
        todo = [k for k in dict.fromkeys(kernels) if k not in self._cache]
        pending = []
        for k in todo:
            kind, mk = self.classify(k)
            if kind != "lookup":
                self._cache[k] = (kind, 0.0, 0.0, 0.0)
                continue
            v = self.table.latency(mk)
            if v is not None:
                self._cache[k] = ("exact", v, v, v)
            else:
                pending.append((k, mk))
        if pending:
            mks = [mk for _, mk in pending]
            pt = self.predictor.predict(mks)
            lo, hi = self.predictor.predict_interval(mks)
            for (k, _), p, a, b in zip(pending, pt, lo, hi):
                self._cache[k] = ("predicted", float(p), float(min(a, p)), float(max(b, p)))
        return [self._cache[k] for k in kernels]

    def naive_hits(self, kernels: list) -> int:
        """How many kernels hit the table *without* the mapping (hao's own keys)."""
        return sum(self.table.latency(k) is not None for k in kernels)


class APQMapping(TableMapping):
    """mbconv-apq224 → APQ BitFusion LUT: batch 1; stem = APQ ``head``, final 1x1 + classifier = APQ ``tail``."""

    name = "apq-bitfusion"
    replaces_fixed_kernels = True

    def __init__(self, space: Any, table: Any, predictor: Any) -> None:
        super().__init__(space, table, predictor)
        fc = table.meta.get("fixed_costs_ms", {})
        missing = [n for n in ("head", "tail") if n not in fc]
        if missing:
            raise ValueError(f"APQMapping needs meta.json['fixed_costs_ms'] with 'head' and 'tail' (APQ's fixed "
                             f"stem/final costs); {table.name} lacks {missing}. Re-import with "
                             "`hao latency import apq`.")
        self._fixed_cost = float(fc["head"]["latency_ms"]) + float(fc["tail"]["latency_ms"])

    def classify(self, k: Any) -> tuple[str, Any]:
        if k.op in ("add", "avgpool"):
            return "not-modelled", None
        return "lookup", k  # hao's conv/dwconv keys already follow APQ's (c_in, c_out, input_size, k, s, groups)

    def fixed_cost(self) -> float:
        return self._fixed_cost


class HAQMapping(TableMapping):
    """quant-mobilenetv2 → HAQ's MobileNetV2 table: batch rewritten 1 → 16; global pool not modelled."""

    name = "haq-mobilenetv2"
    cost_unit = "relative cost"

    def classify(self, k: Any) -> tuple[str, Any]:
        if k.op in ("add", "avgpool"):
            return "not-modelled", None
        return "lookup", dataclasses.replace(k, batch=16)
