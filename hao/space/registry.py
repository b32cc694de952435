"""Registry of search spaces: register by decorator, create by name, discover ``search_spaces/*.py``.

Spaces are found in three places, without editing ``hao/``:

1. every module of the top-level ``search_spaces`` package (one file per family in this repository);
2. every ``*.py`` file in the folders listed in the ``HAO_SEARCH_SPACES`` environment variable (``os.pathsep``
   separated);
3. entry points in the group ``hao.search_spaces`` of installed third-party packages;

and a user may call :func:`register_space` from their own script.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

from hao.errors import ConfigError
from hao.registry import Entry, Registry
from hao.space.base import SearchSpace

__all__ = ["SPACES", "register_space", "get_space", "list_spaces", "space_info", "discover_spaces"]


def _discover() -> None:
    _discover_modules()


SPACES: Registry = Registry("search space", base=None, loader=_discover, set_name=False,
                            hint="Add one as a file under search_spaces/, a folder in $HAO_SEARCH_SPACES, an entry "
                                 "point in the group hao.search_spaces, or with hao.space.register_space (see "
                                 "CONTRIBUTING.md).")


def register_space(name: str, *, family: str = "", description: str = "", overwrite: bool = False
                   ) -> Callable[[Callable[..., SearchSpace]], Callable[..., SearchSpace]]:
    """Decorator registering a factory ``f(**kwargs) -> SearchSpace`` under ``name``.

    >>> @register_space("my-space", family="mbconv")
    ... def my_space(**kw): return MBConvSpace("my-space", **kw)
    """
    def deco(factory: Callable[..., SearchSpace]) -> Callable[..., SearchSpace]:
        desc = description or (factory.__doc__ or "").strip().split("\n")[0]
        return SPACES.register(name, factory, overwrite=overwrite, family=family, description=desc)

    return deco


def _import_file(path: Path) -> None:
    mod_name = f"hao_user_space_{path.stem}_{abs(hash(str(path))) % 10**8}"
    if mod_name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    spec.loader.exec_module(module)


def discover_spaces(force: bool = False) -> None:
    """Import every space module (see the module docstring). Called automatically by the other functions."""
    SPACES.load(force=force)


def _discover_modules() -> None:
    try:
        pkg = importlib.import_module("search_spaces")
    except ImportError:
        pkg = None
    if pkg is not None:
        for info in pkgutil.iter_modules(pkg.__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"search_spaces.{info.name}")
    for folder in filter(None, os.environ.get("HAO_SEARCH_SPACES", "").split(os.pathsep)):
        p = Path(folder)
        if not p.is_dir():
            raise ConfigError(f"HAO_SEARCH_SPACES lists {folder!r}, which is not a folder; fix the variable.")
        for f in sorted(p.glob("*.py")):
            if not f.name.startswith("_"):
                _import_file(f)
    try:
        from importlib.metadata import entry_points
        for ep in entry_points(group="hao.search_spaces"):
            try:
                ep.load()
            except Exception as exc:  # a broken plug-in must not break hao
                warnings.warn(f"hao: could not load search-space plug-in {ep.name!r} ({exc}).", stacklevel=2)
    except Exception:  # pragma: no cover
        pass


def list_spaces() -> list[str]:
    """Names of every registered space, sorted."""
    return SPACES.names()


def space_info(name: str) -> Entry:
    """The registry entry of ``name``: ``.name``, ``.factory``, ``.family``, ``.description``."""
    return SPACES.entry(name)


def get_space(name: str, **kwargs) -> SearchSpace:
    """Create the registered space ``name`` (keyword arguments go to its factory)."""
    return SPACES.create(name, **kwargs)
