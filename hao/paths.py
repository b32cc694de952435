"""Where hao reads its built-in data and where it writes yours.

Built-in data (read-only for hao's commands):

* ``latency_models/`` — the hardware tables hao ships (``hao latency list``),
* ``checkpoints/`` — the trained supernets and their sensitivities,
* ``reference_data/`` — published files the importers and the HAWQ-V3 experiment read (provenance and licences
  in ``reference_data/README.md``).

In a source checkout (``pip install -e .``) they are the repository's top-level folders; in an installed wheel
(``pip install .``) the same folders are shipped inside the package as ``hao/_data/<name>``.

Your data: tables you calibrate or import are written to ``--root DIR`` when you give it, else to the per-user
data folder :func:`user_tables_dir` — ``$HAO_HOME/latency_models``, or ``$XDG_DATA_HOME/hao/latency_models``
(``~/.local/share/hao/latency_models`` by default). hao never writes into an installed package. Environment
variables: ``HAO_HOME`` (the per-user folder), ``HAO_LATENCY_MODELS`` (extra table folders to read,
``os.pathsep``-separated), ``HAO_CHECKPOINTS`` (a folder of ``<space>/`` checkpoint folders read before the
built-in one), ``HAO_REFERENCE_DATA`` (replaces the built-in reference data folder). See ``docs/data.md``.
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["BUILTIN_FOLDERS", "builtin_dir", "in_source_checkout", "user_data_dir", "user_tables_dir",
           "reference_data_dir", "checkpoint_roots"]

BUILTIN_FOLDERS = ("latency_models", "checkpoints", "reference_data")
_PACKAGE = Path(__file__).resolve().parent
_REPO = _PACKAGE.parent


def in_source_checkout() -> bool:
    """True when ``hao`` is imported from a repository checkout (the folder holding ``pyproject.toml``)."""
    return (_REPO / "pyproject.toml").is_file() and (_REPO / "latency_models").is_dir()


def builtin_dir(name: str) -> Path:
    """The built-in folder ``name`` (one of :data:`BUILTIN_FOLDERS`): the checkout's top-level folder, or the
    copy shipped in the installed package."""
    if name not in BUILTIN_FOLDERS:
        raise ValueError(f"builtin_dir: unknown folder {name!r}; valid names are {', '.join(BUILTIN_FOLDERS)}.")
    if in_source_checkout() and (_REPO / name).is_dir():
        return _REPO / name
    return _PACKAGE / "_data" / name


def user_data_dir() -> Path:
    """The per-user folder for data you measure: ``$HAO_HOME``, else ``$XDG_DATA_HOME/hao``, else
    ``~/.local/share/hao``. Not created here."""
    env = os.environ.get("HAO_HOME", "").strip()
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME", "").strip()
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "hao"


def user_tables_dir() -> Path:
    """Where ``hao calibrate`` and ``hao latency import`` write a hardware folder when no ``--root`` is given."""
    return user_data_dir() / "latency_models"


def reference_data_dir() -> Path:
    """``$HAO_REFERENCE_DATA`` or the built-in ``reference_data/`` folder."""
    env = os.environ.get("HAO_REFERENCE_DATA", "").strip()
    return Path(env).expanduser() if env else builtin_dir("reference_data")


def checkpoint_roots() -> list[Path]:
    """Folders searched, in order, for ``<space>/supernet.pt`` and ``<space>/sensitivity.json``:
    ``$HAO_CHECKPOINTS`` (``os.pathsep``-separated), the per-user ``checkpoints/``, the built-in one."""
    roots = [Path(p).expanduser() for p in os.environ.get("HAO_CHECKPOINTS", "").split(os.pathsep) if p.strip()]
    return roots + [user_data_dir() / "checkpoints", builtin_dir("checkpoints")]
