"""HiGHS helpers shared by the exact solvers."""
from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def _quiet_native_stdout() -> Iterator[None]:
    """HiGHS's C++ core prints debug lines to fd 1 even with disp=False; silence fd 1 for the call when it is a
    real file descriptor (the Python-level sys.stdout is untouched)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        yield
        return
    sys.stdout.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), fd)
            try:
                yield
            finally:
                os.dup2(saved, fd)
    finally:
        os.close(saved)
