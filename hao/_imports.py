"""Lazy imports of heavy optional packages with a named, actionable error."""
from __future__ import annotations

import importlib
from types import ModuleType

from hao.errors import MissingDependencyError

_INSTALL_HINT = {
    "tvm": "pip install 'apache-tvm==0.27.0.post1' 'apache-tvm-ffi==0.1.14.post1'",
    "matplotlib": "pip install matplotlib",
    "optuna": "pip install optuna",
    "pyhessian": "pip install pyhessian",
    "psycopg2": "pip install psycopg2-binary",
}


def lazy_import(name: str) -> ModuleType:
    """Import ``name`` or raise :class:`MissingDependencyError` saying how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        root = name.split(".")[0]
        hint = _INSTALL_HINT.get(root, f"pip install {root}")
        raise MissingDependencyError(
            f"hao needs the optional package '{root}' for this feature, but importing '{name}' failed ({exc}). "
            f"Install it with: {hint}"
        ) from exc
