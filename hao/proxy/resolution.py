"""The accuracy model's resolution term: what a lower input resolution costs, measured on the trained supernet.

A resolution-searching space (a ``resolution`` decision, see :data:`hao.space.base.CONTEXT_KINDS`) shares the
weights and the accuracy model of the space it extends; those price architecture and bits. The input resolution
is a global choice, so its cost is one number per resolution, added to every candidate at that resolution:
``accuracy_drop`` (points, for the calibrated model's predicted accuracy) and ``loss_increase`` (cross-entropy,
for the Hessian proxy's predicted loss increase). ``experiments/measure_resolution.py`` measures them and writes
``resolution_terms.json`` into the checkpoint folder; ``hao.search`` adds them to the accuracy objective's constant
when it solves the space at each resolution (docs/search.md, "Input resolution").
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hao.errors import ConfigError

__all__ = ["RESOLUTION_FILE", "ResolutionTerms", "resolution_offset", "takes_resolution_term"]

RESOLUTION_FILE = "resolution_terms.json"
_FORMAT = "hao-resolution-terms-1"
_KEYS = ("accuracy_drop", "accuracy_drop_se", "loss_increase", "loss_increase_se")
#: the accuracy objectives that take a resolution term, and the term each takes (sign: added to the value)
_OBJECTIVE_TERM = {"accuracy": ("accuracy_drop", -1.0), "proxy": ("loss_increase", 1.0)}


@dataclass(frozen=True)
class ResolutionTerms:
    """Per resolution (pixels): ``{"accuracy_drop", "accuracy_drop_se", "loss_increase", "loss_increase_se"}``
    relative to ``native`` (whose terms are 0), measured for the weights of checkpoint space ``space``."""

    space: str
    native: int
    terms: dict[int, dict[str, float]]
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for r, t in self.terms.items():
            missing = [k for k in _KEYS if k not in t]
            if missing:
                raise ConfigError(f"resolution term {r} lacks {missing}; every resolution needs {list(_KEYS)}.")

    def term(self, resolution: int, key: str) -> float:
        """The measured ``key`` at ``resolution`` (0 at the native resolution)."""
        if resolution == self.native:
            return 0.0
        if resolution not in self.terms:
            raise ConfigError(f"No resolution term was measured at {resolution} px (measured: {sorted(self.terms)}); "
                              "measure it with `python experiments/measure_resolution.py --force` "
                              "(docs/search.md, 'Input resolution').")
        return float(self.terms[resolution][key])

    def to_dict(self) -> dict[str, Any]:
        return {"format": _FORMAT, "space": self.space, "native": self.native,
                "terms": {str(r): dict(t) for r, t in sorted(self.terms.items())}, "provenance": self.provenance}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ResolutionTerms":
        if d.get("format") != _FORMAT:
            raise ConfigError(f"Not a resolution-terms file (format {d.get('format')!r}, expected {_FORMAT!r}).")
        return cls(str(d["space"]), int(d["native"]), {int(r): {k: float(v) for k, v in t.items()}
                                                        for r, t in d["terms"].items()}, dict(d.get("provenance", {})))

    def save(self, path: str | os.PathLike) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return p

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ResolutionTerms":
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{p} does not exist: the resolution term of this checkpoint was never measured. "
                              "Measure it with `python experiments/measure_resolution.py` (docs/search.md, "
                              "'Input resolution').")
        return cls.from_dict(json.loads(p.read_text()))


def takes_resolution_term(objective_name: str) -> bool:
    """Whether objective ``objective_name`` is an accuracy objective that takes the resolution term."""
    return objective_name in _OBJECTIVE_TERM


def resolution_offset(objective_name: str, terms: ResolutionTerms, resolution: int) -> float | None:
    """What to add to accuracy objective ``objective_name`` at ``resolution`` (``None``: the objective takes no
    resolution term, e.g. latency or size, which the conditioned space's kernels already price)."""
    spec = _OBJECTIVE_TERM.get(objective_name)
    if spec is None:
        return None
    key, sign = spec
    return sign * terms.term(resolution, key)
