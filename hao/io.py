"""Writing files safely and turning results into JSON: the one home for both.

* :func:`atomic_write_text` / :func:`atomic_write_bytes` / :func:`atomic_torch_save` — a temporary file in the
  same folder, fsync, then ``os.replace``: a reader (or a crash) sees the old file or the new one, never half.
* :func:`jsonable` — plain JSON types, with one policy for non-finite floats: NaN and ±inf become ``null``
  (JSON has no NaN; ``json.dumps`` would write the invalid token ``NaN``).
* :func:`write_json` — both together.
"""
from __future__ import annotations

import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["atomic_write_text", "atomic_write_bytes", "atomic_torch_save", "jsonable", "write_json"]


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see the module docstring); the file gets the umask's mode."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (tensors, numbers, strings: load with ``weights_only=True``)."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


def jsonable(o: Any) -> Any:
    """Plain JSON types: numpy scalars and arrays become Python numbers and lists, non-finite floats ``None``,
    mapping keys strings, anything else its ``str``."""
    if isinstance(o, dict):
        return {str(k): jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return jsonable(o.tolist())
    if isinstance(o, (bool, np.bool_)):
        return bool(o)
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating, float)):
        f = float(o)
        return f if math.isfinite(f) else None
    if isinstance(o, (str, int)) or o is None:
        return o
    return str(o)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``jsonable(obj)`` as indented JSON, atomically."""
    return atomic_write_text(path, json.dumps(jsonable(obj), indent=2) + "\n")
