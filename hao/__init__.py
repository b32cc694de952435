"""hao — hardware-aware neural architecture and mixed-precision search.

>>> import hao
>>> space = hao.get_space("mbconv-fmnist")
>>> result = hao.search(space="mbconv-fmnist", hardware="cpu-znver4-2t", solver="ilp")  # doctest: +SKIP
"""
from __future__ import annotations

from typing import Any

from hao.errors import (CandidateError, ConfigError, HaoError, MissingDependencyError, NotFittedError,
                        TableError)
from hao._imports import lazy_import
from hao.kernel import KernelSpec
from hao.space import Candidate, SearchSpace, get_space, list_spaces, register_space

__version__ = "0.1.0"
__all__ = ["Candidate", "CandidateError", "ConfigError", "HaoError", "KernelSpec", "MissingDependencyError",
           "NotFittedError", "SearchSpace", "TableError", "get_space", "lazy_import", "list_spaces", "register_space",
           "search",
           "__version__"]


def __getattr__(name: str) -> Any:
    # `hao.search(...)` is imported lazily so that `import hao` stays light (no optuna/scipy at import).
    if name == "search":
        from hao.search.api import search
        return search
    raise AttributeError(f"module 'hao' has no attribute {name!r}")
