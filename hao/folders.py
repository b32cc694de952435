"""Guards for folders that hold measured data: no command replaces them silently.

Every command that writes into a hardware folder (``hao calibrate``, ``hao latency import``) or an output folder
(``hao search --out``, ``hao export --out``, ``hao latency validate --out``) asks these helpers first:

* :func:`check_output_folder` — ``--out`` must be a folder hao can write (not an existing file, not read-only),
  checked *before* any work starts;
* :func:`claim_folder` — a folder that already holds something else is refused with an error naming it and the
  way out (``--force``); with ``force`` the old folder is first moved aside (:func:`move_aside`), never deleted.

See ``docs/data.md``.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Iterable

from hao.errors import ConfigError

__all__ = ["move_aside", "is_empty", "claim_folder", "check_output_folder", "refuse_package_folder"]

ASIDE_DIR = ".replaced"


def is_empty(folder: Path) -> bool:
    """True when ``folder`` does not exist or holds nothing."""
    return not folder.exists() or (folder.is_dir() and not any(folder.iterdir()))


def move_aside(folder: str | os.PathLike) -> Path:
    """Move ``folder`` to ``<parent>/.replaced/<name>-<YYYYmmddTHHMMSS>`` (hidden from ``hao latency list``) and
    return the new path. Nothing is deleted."""
    folder = Path(folder)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    dest = folder.parent / ASIDE_DIR / f"{folder.name}-{stamp}"
    n = 1
    while dest.exists():
        n += 1
        dest = folder.parent / ASIDE_DIR / f"{folder.name}-{stamp}-{n}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(folder, dest)
    return dest


def claim_folder(folder: str | os.PathLike, *, force: bool, what: str, conflicts: Iterable[str] = (),
                 resumable: bool = False) -> Path | None:
    """Make ``folder`` ready to be written by the command ``what`` (e.g. ``"hao latency import apq"``).

    ``conflicts``: reasons why the existing content is *not* this command's own earlier, resumable work (an
    empty list with ``resumable=True`` means: continue in place). When the folder is non-empty and either
    ``resumable`` is false or there is a conflict, the call raises :class:`ConfigError` naming the folder, the
    reasons and ``--force``; with ``force`` it moves the folder aside and returns where it went."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{what}: {folder} exists and is a file, not a folder; choose another name or move it.")
    if is_empty(folder):
        return None
    reasons = list(conflicts)
    if resumable and not reasons:
        return None
    if not force:
        why = "; ".join(reasons) if reasons else "it already holds " + ", ".join(
            sorted(p.name for p in folder.iterdir())[:6])
        raise ConfigError(f"{what}: refusing to write into {folder}: {why}. Nothing was changed. Choose another "
                          f"name, or pass --force to move the old folder aside to {folder.parent / ASIDE_DIR}/"
                          f"{folder.name}-<time> first (see docs/data.md).")
    return move_aside(folder)


def refuse_package_folder(folder: str | os.PathLike, what: str) -> None:
    """Refuse to write into the installed ``hao`` package (site-packages): user data goes to ``--root`` or the
    per-user folder (:func:`hao.paths.user_tables_dir`)."""
    from hao.paths import in_source_checkout

    pkg = Path(__file__).resolve().parent
    p = Path(folder).resolve()
    if not in_source_checkout() and (p == pkg or pkg in p.parents):
        from hao.paths import user_tables_dir

        raise ConfigError(f"{what}: {folder} is inside the installed hao package, which hao never writes to. "
                          f"Copy the folder to {user_tables_dir()} (or anywhere, then pass --root) and run the "
                          "command there (see docs/data.md).")


def check_output_folder(out: str | os.PathLike, what: str) -> Path:
    """Check *before any work* that ``out`` can be created or written as a folder: it must not be an existing
    file, and the nearest existing ancestor must be writable. Returns ``out`` as a :class:`Path`."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{what}: --out {out} is an existing file; --out names a folder. Pass a folder path.")
    probe = out
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ConfigError(f"{what}: --out {out} cannot be created: {probe} is a file. Pass another folder path.")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".hao-write-test-", dir=str(probe))
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise ConfigError(f"{what}: --out {out} is not writable ({probe}: {exc.strerror}). Pass a folder you can "
                          "write to.") from None
    return out
