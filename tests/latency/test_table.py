"""LatencyTable: loading, validation errors (file, row, column), saving, the hardware registry."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from hao.errors import ConfigError, TableError
from hao.kernel import KernelSpec
from hao.latency.table import (REQUIRED_COLUMNS, LatencyTable, hardware_dir, list_hardware, load_table,
                               register_hardware)

GOOD_ROWS = [
    dict(op="conv2d", in_channels=16, out_channels=32, in_h=8, in_w=8, kernel=3, stride=1, groups=1, batch=1,
         w_bits=32, a_bits=32, latency_ms=0.05, std_ms=0.001, repeats=7),
    dict(op="dwconv2d", in_channels=32, out_channels=32, in_h=8, in_w=8, kernel=3, stride=2, groups=32, batch=1,
         w_bits=8, a_bits=8, latency_ms=0.01, std_ms=0.0, repeats=7),
    dict(op="dense", in_channels=32, out_channels=10, in_h=1, in_w=1, kernel=1, stride=1, groups=1, batch=1,
         w_bits=8, a_bits=8, latency_ms=0.002, std_ms=0.0, repeats=7),
]


def write_folder(tmp_path: Path, rows: list[dict], meta: dict | None = None, raw: str | None = None) -> Path:
    d = tmp_path / "hw"
    d.mkdir(exist_ok=True)
    (d / "table.csv").write_text(raw if raw is not None else pd.DataFrame(rows).to_csv(index=False))
    (d / "meta.json").write_text(json.dumps(meta if meta is not None else
                                            {"hardware": "hw", "units": "ms", "source": "test"}))
    return d


def test_good_table_loads_and_looks_up(tmp_path):
    t = LatencyTable.load(write_folder(tmp_path, GOOD_ROWS))
    assert len(t) == 3
    assert t.latency(KernelSpec("conv2d", 16, 32, 8, 8, 3, 1, 1, 32, 32)) == pytest.approx(0.05)
    assert t.latency(KernelSpec("conv2d", 16, 32, 8, 8, 3, 1, 1, 8, 8)) is None
    assert t.supported_bits() == [(8, 8), (32, 32)]


def test_save_roundtrip(tmp_path):
    t = LatencyTable.load(write_folder(tmp_path, GOOD_ROWS))
    out = t.save(tmp_path / "copy")
    t2 = LatencyTable.load(out)
    assert t2.kernels() == t.kernels()
    assert list(t2.df["latency_ms"]) == list(t.df["latency_ms"])


def _mut(i: int, **changes) -> list[dict]:
    rows = [dict(r) for r in GOOD_ROWS]
    rows[i].update(changes)
    return rows


MALFORMED = {
    "missing column": ([{k: v for k, v in r.items() if k != "std_ms"} for r in GOOD_ROWS], None, "std_ms"),
    "nan latency": (_mut(1, latency_ms=float("nan")), 2, "latency_ms"),
    "empty latency": (_mut(0, latency_ms=""), 1, "latency_ms"),
    "zero latency": (_mut(2, latency_ms=0.0), 3, "latency_ms"),
    "negative latency": (_mut(1, latency_ms=-1.0), 2, "latency_ms"),
    "negative std": (_mut(1, std_ms=-0.5), 2, "std_ms"),
    "text latency": (_mut(0, latency_ms="fast"), 1, "latency_ms"),
    "unknown op": (_mut(1, op="conv3d"), 2, "op"),
    "non-int channels": (_mut(0, in_channels=16.5), 1, "in_channels"),
    "zero stride": (_mut(0, stride=0), 1, "stride"),
    "bad bits": (_mut(2, w_bits=9), 3, "w_bits"),
    "duplicate key": (GOOD_ROWS + [dict(GOOD_ROWS[0], latency_ms=0.07)], 4, "op"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_table_names_file_row_column(tmp_path, case):
    rows, row, col = MALFORMED[case]
    d = write_folder(tmp_path, rows)
    with pytest.raises(TableError) as ei:
        LatencyTable.load(d)
    msg = str(ei.value)
    assert "table.csv" in msg
    assert repr(col) in msg, msg
    if row is not None:
        assert f"row {row} " in msg, msg


def test_invalid_kernel_combination_names_row(tmp_path):
    d = write_folder(tmp_path, _mut(1, groups=5))  # groups must divide channels
    with pytest.raises(TableError, match=r"row 2 .*groups"):
        LatencyTable.load(d)


@pytest.mark.parametrize("raw, pattern", [
    ("", "empty"),
    (",".join(REQUIRED_COLUMNS) + "\nconv2d,1,2\n", r"row 1 .*fields"),
    (",".join(REQUIRED_COLUMNS) + "\n" + "conv2d,16,32,8,8,3,1,1,1,32,32,0.05,0,7", "not terminated"),
])
def test_malformed_csv_text(tmp_path, raw, pattern):
    with pytest.raises(TableError, match=pattern):
        LatencyTable.load(write_folder(tmp_path, [], raw=raw))


@pytest.mark.parametrize("meta_text, pattern", [
    ("{not json", "invalid JSON at line 1"),
    ("[1, 2]", "JSON object"),
    (json.dumps({"hardware": "x"}), r"lacks key\(s\) \['units', 'source'\]"),
])
def test_malformed_meta(tmp_path, meta_text, pattern):
    d = write_folder(tmp_path, GOOD_ROWS)
    (d / "meta.json").write_text(meta_text)
    with pytest.raises(TableError, match=pattern) as ei:
        LatencyTable.load(d)
    assert "meta.json" in str(ei.value)


def test_missing_files(tmp_path):
    with pytest.raises(TableError, match="not a folder"):
        LatencyTable.load(tmp_path / "nope")
    d = write_folder(tmp_path, GOOD_ROWS)
    (d / "table.csv").unlink()
    with pytest.raises(TableError, match="no such table file"):
        LatencyTable.load(d)


def test_registry_lists_committed_and_registered(tmp_path, monkeypatch):
    names = list_hardware()
    for expected in ("apq-bitfusion", "haq-mobilenetv2", "hawq-t4"):
        assert expected in names
    with pytest.raises(ConfigError) as ei:
        hardware_dir("no-such-hardware")
    assert "apq-bitfusion" in str(ei.value)  # the error lists the valid names
    d = write_folder(tmp_path, GOOD_ROWS)
    assert register_hardware(d, "my-test-hw") == "my-test-hw"
    assert "my-test-hw" in list_hardware()
    assert len(load_table("my-test-hw")) == 3
    other = tmp_path / "root2"
    (other / "envhw").mkdir(parents=True)
    write_folder(other / "envhw", GOOD_ROWS)
    monkeypatch.setenv("HAO_LATENCY_MODELS", str(other / "envhw"))
    assert "hw" in list_hardware()


def test_register_rejects_broken_folder(tmp_path):
    d = write_folder(tmp_path, _mut(0, latency_ms=-3))
    with pytest.raises(TableError, match="row 1"):
        register_hardware(d)


def test_committed_tables_are_valid():
    for name in list_hardware():
        t = load_table(name)
        assert len(t) > 0, name
        assert {"hardware", "units", "source"} <= set(t.meta)
