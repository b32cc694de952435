"""Property tests (hypothesis) over the table loader: random corruptions of a valid table folder give either a
loaded table or :class:`~hao.errors.TableError` (a :class:`~hao.errors.HaoError`), never another exception, and
loading never changes the folder's files."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pandas as pd
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from hao.errors import HaoError  # noqa: E402
from hao.latency.table import REQUIRED_COLUMNS, TABLE_COLUMNS, LatencyTable  # noqa: E402

ROWS = [
    dict(op="conv2d", in_channels=16, out_channels=32, in_h=8, in_w=8, kernel=3, stride=1, groups=1, batch=1,
         w_bits=32, a_bits=32, latency_ms=0.05, std_ms=0.001, repeats=7, layout="NHWC", impl="fp32",
         vnni=0, tuning_trials=2, tune_s=1.5, max_abs_err=1e-6, energy_mj=None, measured_at="2026-01-01T00:00:00Z"),
    dict(op="dwconv2d", in_channels=32, out_channels=32, in_h=8, in_w=8, kernel=3, stride=2, groups=32, batch=1,
         w_bits=8, a_bits=8, latency_ms=0.01, std_ms=0.0, repeats=7, layout="NHWC", impl="int8-vnni",
         vnni=1, tuning_trials=2, tune_s=1.0, max_abs_err=0.0, energy_mj=None, measured_at="2026-01-01T00:00:00Z"),
    dict(op="dense", in_channels=32, out_channels=10, in_h=1, in_w=1, kernel=1, stride=1, groups=1, batch=1,
         w_bits=4, a_bits=4, latency_ms=0.002, std_ms=0.0, repeats=7, layout="NHWC", impl="int8-mapped",
         vnni=1, tuning_trials=0, tune_s=0.0, max_abs_err=0.0, energy_mj=None, measured_at="2026-01-01T00:00:00Z"),
]
META = {"hardware": "hw", "units": {"latency_ms": "ms"}, "source": "test"}

BAD_VALUES = ["nan", "NaN", "-1", "0", "-0.0", "1e308", "1e999", "inf", "-inf", "", "abc", "3.5", "1e-320",
              "99999999999999999999999999", "0x10", " 7", "None", "True", "\u00e9", "1,2", '"', "\x00", "7\r"]

settings.register_profile("table_fuzz", max_examples=150, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])


def _make_folder(root: Path) -> Path:
    d = root / "hw"
    LatencyTable(pd.DataFrame(ROWS), META).save(d)
    LatencyTable.load(d)  # the starting point is valid
    return d


def _snapshot(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def _load_checked(d: Path) -> None:
    before = _snapshot(d)
    try:
        t = LatencyTable.load(d)
    except HaoError:
        pass
    else:
        assert len(t.df) >= 0
        t.keys()
        t.supported_bits()
        t.summary()
    assert _snapshot(d) == before, "loading changed the folder's files"


# ---- corruptions of table.csv as a frame of strings ----------------------------------------------------------
frame_edit = st.one_of(
    st.tuples(st.just("cell"), st.integers(0, len(ROWS) - 1), st.sampled_from(TABLE_COLUMNS),
              st.one_of(st.sampled_from(BAD_VALUES), st.text(max_size=12))),
    st.tuples(st.just("drop"), st.sampled_from(TABLE_COLUMNS)),
    st.tuples(st.just("dup"), st.integers(0, len(ROWS) - 1)),
    st.tuples(st.just("rename"), st.sampled_from(TABLE_COLUMNS), st.text(max_size=8)),
    st.tuples(st.just("extra"), st.text(max_size=8)),
    st.tuples(st.just("droprows"),),
)


def _apply(df: pd.DataFrame, edit: tuple) -> pd.DataFrame:
    kind = edit[0]
    if kind == "cell":
        _, i, c, v = edit
        if c in df.columns and len(df):
            df = df.copy()
            df.iloc[i % len(df), df.columns.get_loc(c)] = v
    elif kind == "drop":
        df = df.drop(columns=[edit[1]], errors="ignore")
    elif kind == "dup":
        if len(df):
            df = pd.concat([df, df.iloc[[edit[1] % len(df)]]], ignore_index=True)
    elif kind == "rename":
        df = df.rename(columns={edit[1]: edit[2]})
    elif kind == "extra":
        df = df.copy()
        df[edit[1] or "x"] = "zz" if len(df) else []
    elif kind == "droprows":
        df = df.iloc[0:0]
    return df


@settings(settings.get_profile("table_fuzz"))
@given(st.lists(frame_edit, min_size=1, max_size=4))
def test_random_cell_and_column_edits_raise_only_table_errors(edits):
    with tempfile.TemporaryDirectory() as tmp:
        d = _make_folder(Path(tmp))
        df = pd.read_csv(d / "table.csv", dtype=str, keep_default_na=False)
        for e in edits:
            df = _apply(df, e)
        (d / "table.csv").write_text(df.to_csv(index=False, lineterminator="\n"))
        _load_checked(d)


# ---- byte-level edits of table.csv ---------------------------------------------------------------------------
byte_edit = st.one_of(
    st.tuples(st.just("flip"), st.floats(0, 1, exclude_max=True), st.integers(0, 255)),
    st.tuples(st.just("insert"), st.floats(0, 1), st.binary(min_size=1, max_size=6)),
    st.tuples(st.just("delete"), st.floats(0, 1, exclude_max=True), st.integers(1, 20)),
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(st.just("insert"), st.floats(0, 1), st.sampled_from([b",", b"\n", b'"', b"\r\n", b"\xff\xfe",
                                                                    b"\x00", b",,,", "\ufeff".encode()])),
)


def _apply_bytes(data: bytes, edit: tuple) -> bytes:
    kind, frac = edit[0], edit[1]
    pos = int(frac * len(data))
    if kind == "flip":
        return data[:pos] + bytes([edit[2]]) + data[pos + 1:]
    if kind == "insert":
        return data[:pos] + edit[2] + data[pos:]
    if kind == "delete":
        return data[:pos] + data[pos + edit[2]:]
    return data[:pos]  # truncate


@settings(settings.get_profile("table_fuzz"))
@given(st.lists(byte_edit, min_size=1, max_size=5))
def test_random_byte_edits_of_table_csv_raise_only_table_errors(edits):
    with tempfile.TemporaryDirectory() as tmp:
        d = _make_folder(Path(tmp))
        data = (d / "table.csv").read_bytes()
        for e in edits:
            data = _apply_bytes(data, e)
        (d / "table.csv").write_bytes(data)
        _load_checked(d)


# ---- garbage meta.json -----------------------------------------------------------------------------------------
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                           lambda ch: st.lists(ch, max_size=3) | st.dictionaries(st.text(max_size=6), ch,
                                                                                  max_size=3), max_leaves=8)


@settings(settings.get_profile("table_fuzz"))
@given(st.one_of(
    st.binary(max_size=40).map(lambda b: ("raw", b)),
    json_values.map(lambda v: ("json", v)),
    st.dictionaries(st.sampled_from(["hardware", "units", "source", "device", "rows"]), json_values,
                    max_size=5).map(lambda v: ("json", v)),
    st.tuples(st.floats(0, 1), st.integers(0, 30)).map(lambda t: ("cut", t)),
))
def test_garbage_meta_json_raises_only_table_errors(meta):
    with tempfile.TemporaryDirectory() as tmp:
        d = _make_folder(Path(tmp))
        kind, v = meta
        if kind == "raw":
            (d / "meta.json").write_bytes(v)
        elif kind == "json":
            (d / "meta.json").write_text(json.dumps(v))
        else:
            data = (d / "meta.json").read_bytes()
            pos = int(v[0] * len(data))
            (d / "meta.json").write_bytes(data[:pos] + data[pos + v[1]:])
        _load_checked(d)


def test_missing_files_raise_table_errors(tmp_path):
    d = _make_folder(tmp_path)
    (d / "meta.json").unlink()
    with pytest.raises(HaoError):
        LatencyTable.load(d)
    d2 = _make_folder(tmp_path / "b")
    (d2 / "table.csv").unlink()
    with pytest.raises(HaoError):
        LatencyTable.load(d2)
    assert set(REQUIRED_COLUMNS) <= set(TABLE_COLUMNS)


@pytest.mark.parametrize("col,value", [("in_channels", "1e308"), ("kernel", "inf"), ("repeats", "1e308"),
                                       ("vnni", "inf"), ("tuning_trials", "-inf")])
def test_found_by_fuzzing_huge_and_infinite_numbers(tmp_path, col, value):
    """Regressions: these raised OverflowError / IntCastingNaNError from inside numpy/pandas."""
    d = _make_folder(tmp_path)
    df = pd.read_csv(d / "table.csv", dtype=str, keep_default_na=False)
    df.loc[0, col] = value
    (d / "table.csv").write_text(df.to_csv(index=False, lineterminator="\n"))
    _load_checked(d)


def test_found_by_fuzzing_non_utf8_meta(tmp_path):
    """Regression: a non-UTF-8 meta.json raised UnicodeDecodeError."""
    d = _make_folder(tmp_path)
    (d / "meta.json").write_bytes(b"\x80{}")
    with pytest.raises(HaoError, match="UTF-8"):
        LatencyTable.load(d)
