"""Test helper: a folder's content as {relative path: sha256}, to show that a refused command changed nothing."""
from __future__ import annotations

import hashlib
from pathlib import Path


def snapshot(folder: str | Path) -> dict[str, str]:
    folder = Path(folder)
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "<dir>"
            for p in sorted(folder.rglob("*"))}
