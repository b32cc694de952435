"""What every training phase shares: the JSON round-trip of its frozen config and its learning-rate schedule."""
from __future__ import annotations

import json
import math
from dataclasses import asdict
from typing import Any

from hao.errors import ConfigError

__all__ = ["JsonConfig", "warmup_cosine"]


class JsonConfig:
    """Mixin for frozen dataclass configs: ``to_json`` / ``from_json`` (unknown fields are refused by name)."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)  # type: ignore[call-overload]

    @classmethod
    def from_json(cls, text: str) -> Any:
        d = json.loads(text)
        fields = cls.__dataclass_fields__  # type: ignore[attr-defined]
        unknown = sorted(set(d) - set(fields))
        if unknown:
            raise ConfigError(f"{cls.__name__}.from_json: unknown field(s) {unknown}; known: {sorted(fields)}.")
        return cls(**d)


def warmup_cosine(lr: float, step: int, warmup: int, total: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return lr * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
