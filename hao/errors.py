"""Exceptions raised by hao.

Every user-facing error is a :class:`HaoError` (a ``ValueError``) whose message names the bad value, the valid
range and the fix.
"""
from __future__ import annotations

__all__ = ["HaoError", "ConfigError", "CandidateError", "TableError", "NotFittedError", "MissingDependencyError"]


class HaoError(ValueError):
    """Base class of hao's user-facing errors."""


class ConfigError(HaoError):
    """A configuration value (argument, budget, URL, target) is invalid."""


class InfeasibleBudgetError(ConfigError):
    """A budget no candidate of the space can meet (the message names the reachable range)."""


class CandidateError(HaoError):
    """A candidate does not belong to its search space (bad field, bad value, malformed JSON)."""


class TableError(HaoError):
    """A latency table or its metadata is malformed. The message names the file, row and column."""


class NotFittedError(HaoError, AttributeError):
    """A predictor or proxy was used before ``fit``."""


class MissingDependencyError(ImportError):
    """An optional heavy dependency (tvm, matplotlib, ...) is not installed."""
