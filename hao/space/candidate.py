"""The values a search space is made of: decisions, gates, units, candidates and layer perturbations.

Frozen dataclasses; a :class:`Candidate` round-trips through JSON (``to_json`` / ``from_json``). The contract
that ties them together is :class:`hao.space.base.SearchSpace`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hao.errors import CandidateError, ConfigError

__all__ = ["BIT_KINDS", "QUANT_KINDS", "Decision", "Gate", "Unit", "Candidate", "LayerPerturbation"]

#: ``Decision.kind`` values that choose a bit-width: weight bits, activation bits, or both tied together.
BIT_KINDS = ("w_bits", "a_bits", "bits")
#: Kinds that choose how a layer is quantized without changing the architecture: the bit kinds and Q-BERT's
#: number of quantization ranges (``groups``). Architecture terms ignore them; random-bit training draws them.
QUANT_KINDS = BIT_KINDS + ("groups",)


@dataclass(frozen=True)
class Decision:
    """One searchable integer choice. ``kind`` is informative: depth, kernel, expand, width, w_bits, a_bits, bits."""

    name: str
    options: tuple[int, ...]
    kind: str = "other"

    def __post_init__(self) -> None:
        if not self.options:
            raise ConfigError(f"Decision {self.name!r} needs at least one option, got {self.options!r}.")
        if len(set(self.options)) != len(self.options):
            raise ConfigError(f"Decision {self.name!r} has duplicate options {self.options!r}.")


@dataclass(frozen=True)
class Gate:
    """A unit is active iff ``candidate[decision] in active_values``."""

    decision: str
    active_values: frozenset[int]


@dataclass(frozen=True)
class Unit:
    """An additive unit: its cost depends only on ``decisions`` (and on being gated on/off)."""

    name: str
    decisions: tuple[str, ...]
    gate: Gate | None = None


@dataclass(frozen=True)
class LayerPerturbation:
    """What a candidate does to one weight layer of the space's supernet (see ``hao/proxy/sensitivity.py``).

    ``path`` is the module path in the supernet. The kept weights are ``W[:out_keep, :in_keep]`` restricted
    to the centre ``kernel_keep x kernel_keep`` taps (``None`` = keep all along that axis), quantized to
    ``w_bits`` (32 = float) with hao's per-output-channel ranges, or, when ``w_groups`` is set, with ``w_groups``
    ranges along axis ``w_axis`` of the kept slice (Q-BERT's group-wise quantization,
    :mod:`hao.quant.groupwise`). ``removed`` means the whole layer is dropped (its block is skipped).
    """

    path: str
    w_bits: int = 32
    a_bits: int = 32
    removed: bool = False
    out_keep: int | None = None
    in_keep: int | None = None
    kernel_keep: int | None = None
    w_groups: int | None = None
    w_axis: int = 0


@dataclass(frozen=True)
class Candidate:
    """A point of a search space: one value per decision, in the space's decision order. Immutable.

    ``Candidate.to_json()`` gives ``{"space": name, "choices": {decision: value, ...}}``.
    """

    space: str
    choices: tuple[tuple[str, int], ...]

    def __getitem__(self, name: str) -> int:
        for k, v in self.choices:
            if k == name:
                return v
        raise CandidateError(f"Candidate of space {self.space!r} has no decision {name!r}; "
                             f"its decisions are {[k for k, _ in self.choices][:12]}...")

    def as_dict(self) -> dict[str, int]:
        return dict(self.choices)

    def replace(self, **changes: int) -> "Candidate":
        d = self.as_dict()
        for k, v in changes.items():
            if k not in d:
                raise CandidateError(f"Candidate.replace: unknown decision {k!r} for space {self.space!r}.")
            d[k] = v
        return Candidate(self.space, tuple(d.items()))

    def to_dict(self) -> dict[str, Any]:
        return {"space": self.space, "choices": dict(self.choices)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, d: Any) -> "Candidate":
        if not isinstance(d, dict):
            raise CandidateError(f"A candidate must be a JSON object with keys 'space' and 'choices', "
                                 f"got {type(d).__name__}.")
        missing = {"space", "choices"} - set(d)
        if missing:
            raise CandidateError(f"Candidate JSON is missing key(s) {sorted(missing)}; expected "
                                 "{'space': name, 'choices': {decision: int}}.")
        extra = set(d) - {"space", "choices"}
        if extra:
            raise CandidateError(f"Candidate JSON has unknown key(s) {sorted(extra)}; expected only "
                                 "'space' and 'choices'.")
        if not isinstance(d["space"], str):
            raise CandidateError(f"Candidate 'space' must be a string, got {d['space']!r}.")
        ch = d["choices"]
        if not isinstance(ch, dict):
            raise CandidateError(f"Candidate 'choices' must be an object mapping decision names to ints, "
                                 f"got {type(ch).__name__}.")
        out = []
        for k, v in ch.items():
            if not isinstance(v, int) or isinstance(v, bool):
                raise CandidateError(f"Candidate choice {k!r} must be an int, got {v!r}.")
            out.append((str(k), int(v)))
        return cls(d["space"], tuple(out))

    @classmethod
    def from_json(cls, s: str | bytes) -> "Candidate":
        try:
            d = json.loads(s)
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as exc:
            raise CandidateError(f"Candidate JSON is malformed ({exc}); expected "
                                 "{\"space\": name, \"choices\": {decision: int}}.") from None
        return cls.from_dict(d)
