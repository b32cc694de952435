"""Soft choices over a space's decisions, and the expected value of an additive objective under them.

The differentiable solver (:mod:`hao.search.dmasking`) keeps one logit vector per decision of the space; a
(Gumbel-)softmax turns them into one probability vector per decision. Because every objective hao optimises is
additive over the space's units (a unit's cost depends only on its own decisions, and on its gate), its
expectation under independent choices is exact and differentiable:

    E[f] = constant + Σ_units Σ_options P(option) · table[option]
    P(on option o of unit u) = P(u's gate active) · Π_{d in u} p_d(o_d),   P(off) = P(u's gate inactive)

At one-hot probabilities this *is* the objective of the chosen candidate (the predictor's latency, the size...),
so the latency term the search trains against and the latency the search reports are the same numbers.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from hao.errors import ConfigError
from hao.search._index import IndexedSpace
from hao.space.base import Candidate, SearchSpace

__all__ = ["DecisionLogits", "ExpectedObjective"]


class DecisionLogits(nn.Module):
    """One trainable logit vector per decision of ``space`` (zeros: uniform), in ``space.decision_names`` order.

    ``probs(tau, generator)`` returns ``{decision: probabilities}``: a softmax of ``(logits + g) / tau`` with
    Gumbel noise ``g`` drawn from ``generator`` (``None``: no noise). ``candidate()`` is the argmax candidate."""

    def __init__(self, space: SearchSpace) -> None:
        super().__init__()
        st = space._structure()
        self.space = space
        self.names = tuple(space.decision_names)
        self.options = {n: tuple(st["by_name"][n].options) for n in self.names}
        self.logits = nn.ParameterList([nn.Parameter(torch.zeros(len(self.options[n]))) for n in self.names])

    def probs(self, tau: float = 1.0, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        if not tau > 0:
            raise ConfigError(f"The Gumbel-softmax temperature must be > 0, got {tau!r}.")
        out = {}
        for n, lg in zip(self.names, self.logits):
            z = lg
            if generator is not None:
                u = torch.rand(lg.shape, generator=generator).clamp_(1e-10, 1.0 - 1e-10)
                z = lg - torch.log(-torch.log(u))
            out[n] = torch.softmax(z / tau, dim=0)
        return out

    def candidate(self) -> Candidate:
        """The most likely candidate (argmax of every decision's logits), canonical in its space."""
        values = {n: self.options[n][int(torch.argmax(lg))] for n, lg in zip(self.names, self.logits)}
        return self.space.canonical(self.space.make(values))

    def one_hot(self, candidate: Candidate) -> dict[str, torch.Tensor]:
        """Probabilities that put all mass on ``candidate``'s choices."""
        d = candidate.as_dict()
        out = {}
        for n in self.names:
            p = torch.zeros(len(self.options[n]))
            p[self.options[n].index(d[n])] = 1.0
            out[n] = p
        return out


class ExpectedObjective:
    """The expectation of one additive objective (``problem.objective(name)``) under independent choice
    probabilities, differentiable in them (see the module docstring). Built once per objective."""

    def __init__(self, space: SearchSpace, objective: object, index: IndexedSpace | None = None) -> None:
        tables = getattr(objective, "tables", None)
        if tables is None:
            raise ConfigError(f"Objective {getattr(objective, 'name', objective)!r} is not additive; only additive "
                              "objectives (per-unit tables) have an exact expectation.")
        ix = index or IndexedSpace(space)
        self.name = getattr(objective, "name", "objective")
        self.constant = float(getattr(objective, "constant", 0.0))
        st = space._structure()
        opts = {n: tuple(st["by_name"][n].options) for n in space.decision_names}
        self.units = []
        for j, unit in enumerate(ix.units):
            n_on = int(ix.n_on[j])
            decs = list(unit.decisions)
            idx = np.array([[opts[d].index(o[d]) for d in decs] for o in ix.options[j][:n_on]], dtype=np.int64)
            table = np.asarray(tables[j], dtype=np.float64)
            gate = None
            if ix.gated[j]:
                gate = (ix.gate_names[int(ix.gate_of[j])], torch.as_tensor(ix.active[j], dtype=torch.bool))
            self.units.append((decs, torch.as_tensor(idx.reshape(n_on, len(decs))),
                               torch.as_tensor(table[:n_on]), float(table[n_on]) if ix.gated[j] else 0.0, gate))

    def __call__(self, probs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        total = torch.tensor(self.constant, dtype=torch.float64)
        for decs, idx, table, off_value, gate in self.units:
            p = torch.ones(idx.shape[0], dtype=torch.float64)
            for k, d in enumerate(decs):
                p = p * probs[d].double()[idx[:, k]]
            on = p @ table
            if gate is None:
                total = total + on
            else:
                pg = probs[gate[0]].double()
                p_on = pg[gate[1]].sum()
                total = total + p_on * on + (1.0 - p_on) * off_value
        return total
