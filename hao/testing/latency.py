"""Conformance batteries for latency backends and table importers (every registered one must pass).

>>> from hao.testing import check_backend, check_importer
>>> check_backend("roofline")                                            # doctest: +SKIP
>>> check_importer("hawq", source="reference_data/hawq_v3_ilp.json")     # doctest: +SKIP
"""
from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hao.errors import ConfigError, TableError
from hao.kernel import KernelSpec

__all__ = ["check_backend", "check_importer", "SMALL_KERNELS", "write_ofa_lut"]

#: tiny kernels of every op, float32 and int8: what a backend battery measures
SMALL_KERNELS = (KernelSpec("conv2d", 8, 8, 6, 6, 3, 1), KernelSpec("dwconv2d", 8, 8, 6, 6, 3, 1, 8),
                 KernelSpec("dense", 16, 10, 1, 1), KernelSpec("conv2d", 8, 8, 6, 6, 1, 1, w_bits=8, a_bits=8),
                 KernelSpec("avgpool", 8, 8, 4, 4), KernelSpec("add", 8, 8, 4, 4))


def check_backend(backend: Any, params: Mapping[str, Any] | None = None,
                  kernels: Sequence[KernelSpec] = SMALL_KERNELS) -> dict[str, Any]:
    """The :class:`~hao.latency.backend.LatencyBackend` contract, on a backend name (created with ``params``)
    or instance:

    1. ``describe()`` is JSON-serialisable and names the ``backend``;
    2. ``open``/``close`` pair up (also as a context manager) and ``close`` may be called twice;
    3. ``measure`` returns a :class:`Measurement` for every kernel — never raises for a kernel it cannot run —
       with ``kernel`` echoed back, and for ``ok`` rows a finite ``latency_ms > 0``, ``std_ms >= 0`` and
       ``repeats >= 0``; a failed row carries a ``reason``;
    4. its rows pass the table checks (``validate_frame``).

    Returns ``describe()``."""
    import pandas as pd

    from hao.latency.backend import LatencyBackend, Measurement, get_backend
    from hao.latency.table import validate_frame

    b = get_backend(backend, **dict(params or {})) if isinstance(backend, str) else backend
    if not isinstance(b, LatencyBackend):
        raise ConfigError(f"check_backend needs a LatencyBackend or a registered name, got {type(b).__name__}.")
    desc = b.describe()
    json.dumps(desc, default=str)
    assert desc.get("backend"), f"describe() must name the backend: {desc}"
    rows = []
    with b:
        for k in kernels:
            m = b.measure(k)
            assert isinstance(m, Measurement), f"measure({k}) returned {type(m).__name__}, not a Measurement"
            assert m.kernel == k, f"measure({k}) answered for {m.kernel}"
            if m.ok:
                assert math.isfinite(m.latency_ms) and m.latency_ms > 0, (k, m.latency_ms)
                assert m.std_ms >= 0 and m.repeats >= 0, (k, m.std_ms, m.repeats)
                rows.append(m.as_row())
            else:
                assert m.reason, f"a failed measurement of {k} must say why"
    b.close()  # a second close is harmless
    if rows:
        validate_frame(pd.DataFrame(rows), "check_backend")
    return desc


def check_importer(importer: Any, source: str | Path | None = None) -> Path:
    """The :class:`~hao.latency.importers.TableImporter` contract, on a name or instance, with ``source``
    (default: its shipped reference file), in a throw-away folder:

    1. ``read`` writes nothing and returns rows plus a meta dict;
    2. ``run`` writes a folder that :meth:`LatencyTable.load` accepts, with at least one row, the required
       ``meta.json`` keys, and ``importer`` / ``imported_from`` provenance;
    3. a second ``run`` into the same folder is refused and changes nothing; ``force=True`` moves the old
       folder aside (nothing is deleted);
    4. a file of the wrong kind is refused with a :class:`TableError` or :class:`ConfigError` naming the
       expected format.

    Returns the folder of the first import (inside a temporary directory that is removed)."""
    from hao.latency.importers import TableImporter, get_importer, shared_data_dir
    from hao.latency.table import REQUIRED_META_KEYS, LatencyTable

    imp = get_importer(importer) if isinstance(importer, str) else importer
    if not isinstance(imp, TableImporter):
        raise ConfigError(f"check_importer needs a TableImporter or a registered name, got {type(imp).__name__}.")
    if source is None and not imp.default_file:
        raise ConfigError(f"check_importer({imp.name!r}): this importer ships no default file; pass source= (a file "
                          f"in its format: {imp.file_format}).")
    src = Path(source) if source is not None else shared_data_dir() / imp.default_file
    with tempfile.TemporaryDirectory(prefix="hao-check-importer-") as tmp:
        root = Path(tmp)
        before = sorted(root.rglob("*"))
        df, meta = imp.read(src)
        assert sorted(root.rglob("*")) == before, "read() must not write anything"
        assert len(df) > 0 and isinstance(meta, dict)
        folder = imp.run(src, "checked", root=root)
        table = LatencyTable.load(folder)
        assert len(table) == len(df) and all(k in table.meta for k in REQUIRED_META_KEYS), table.meta.keys()
        assert table.meta.get("importer") == imp.name and table.meta.get("imported_from")
        snap = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
        try:
            imp.run(src, "checked", root=root)
        except ConfigError as exc:
            assert "--force" in str(exc), exc
        else:
            raise AssertionError("a second import into the same folder must be refused")
        assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == snap, "a refusal changed files"
        imp.run(src, "checked", root=root, force=True)
        assert any((root / ".replaced").iterdir()), "force must move the old folder aside"
        wrong = root / ("wrong.npy" if ".npy" not in imp.suffixes else "wrong.json")
        wrong.write_bytes(b"\x93NUMPY not a table" if wrong.suffix == ".npy" else b'{"not": "a table"}')
        try:
            imp.run(wrong, "wrong", root=root)
        except (TableError, ConfigError) as exc:
            assert imp.file_format.split()[0] in str(exc) or "expected" in str(exc) or "lacks" in str(exc), exc
        else:
            raise AssertionError(f"{imp.name} imported {wrong.name}, which is not a table")
        return folder


def write_ofa_lut(space: Any, path: str | Path, style: str = "mbv3", seed: int = 0,
                  ms_per_mmac: float = 0.01, drop: float = 0.0) -> Path:
    """Write a *synthetic* block-level lookup table in the OFA/ProxylessNAS YAML format for every block kernel
    of ``space`` (all options of every unit, and the fixed kernels) — the file ``hao latency import ofa`` reads.
    Latency = ``ms_per_mmac`` x MMACs + 0.002 ms per 10^4 element ops + 0.01 ms, times a seeded ±5% factor;
    std 2% of it; count 50. ``drop`` leaves a seeded share of the block rows out (to exercise the predictor).
    Returns ``path``."""
    import numpy as np
    import yaml

    from hao.latency.coverage import space_kernels
    from hao.latency.ofa_importer import ofa_key

    rng = np.random.default_rng(seed)
    pre, post = space.fixed_blocks()
    fixed = {k: ("Conv_2" if k.op == "dense" and i + 1 < len(post) and post[i + 1].op == "dense" else None)
             for i, k in enumerate(post)}
    out: dict[str, dict[str, Any]] = {}
    for k in space_kernels(space, "block"):
        if k.op == "mbconv" and k not in pre and drop and rng.random() < drop:
            continue
        ms = (ms_per_mmac * k.macs / 1e6 + 0.002 * k.elementwise_ops / 1e4 + 0.01) * rng.uniform(0.95, 1.05)
        out[ofa_key(k, style, fixed.get(k))] = {"count": 50, "mean": float(ms), "std": float(0.02 * ms)}
    path = Path(path)
    path.write_text(yaml.safe_dump(out, sort_keys=False))
    return path
