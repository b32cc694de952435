"""hao latency validate --published: a table against published whole-network latencies, no TVM, held-out
(leave-one-out) overhead."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

import hao
from hao.errors import ConfigError
from hao.latency.predictor import LatencyPredictor
from hao.latency.published import validate_published
from hao.latency.table import list_hardware, load_table

pytestmark = pytest.mark.skipif("cpu-rocketlake-2t" not in list_hardware(), reason="the committed CPU table")
HW = "cpu-rocketlake-2t"


def _write(path, rows):
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["name", "candidate", "measured_ms"])
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def nets():
    space = hao.get_space("mbconv-fmnist")
    pred = LatencyPredictor(quantiles=None).fit(load_table(HW))
    rng = np.random.default_rng(0)
    out = []
    for i in range(12):
        c = space.sample(rng)
        ks = space.kernels(c)
        s = float(pred.predict(ks, prefer_measured=True).sum())
        out.append((f"net{i}", c.to_json(), s, len(ks)))
    return out


def test_a_known_overhead_is_recovered_held_out(nets, tmp_path):
    rng = np.random.default_rng(1)
    # noise relative to the network (0.4%), so the test does not depend on how fast the table's CPU is
    rows = [(n, c, f"{1.15 * s + 0.04 + 0.0005 * k + rng.normal(0, 0.004 * s):.6f}") for n, c, s, k in nets]
    rep = validate_published(HW, _write(tmp_path / "nets.csv", rows), network_scale="auto")
    assert rep["n_networks"] == 12 and rep["network_scale"] == "on"
    assert rep["summary"]["share_within_10pct"] == 1.0 and rep["summary"]["kendall_tau"] > 0.8
    assert rep["sum_of_kernels_only"]["share_within_10pct"] < 0.5  # the raw sum misses the 15% + overhead
    assert [r["name"] for r in rep["networks"]] == [n for n, *_ in nets]
    assert all(0 <= r["table_hit_share"] <= 1 for r in rep["networks"])


def test_bad_rows_are_refused_with_their_line(nets, tmp_path):
    rows = [(n, c, "1.0") for n, c, *_ in nets[:3]] + [("x", nets[0][1], "-2")]
    with pytest.raises(ConfigError, match="line 5: measured_ms must be a number > 0"):
        validate_published(HW, _write(tmp_path / "bad.csv", rows))
    (tmp_path / "nocol.csv").write_text("candidate\n{}\n")
    with pytest.raises(ConfigError, match="lacks the column"):
        validate_published(HW, tmp_path / "nocol.csv")
    with pytest.raises(ConfigError, match="at least 3"):
        validate_published(HW, _write(tmp_path / "two.csv", [(n, c, "1.0") for n, c, *_ in nets[:2]]))


def test_cli_needs_no_tvm(nets, tmp_path):
    src = _write(tmp_path / "nets.csv", [(n, c, f"{s + 0.05:.6f}") for n, c, s, _ in nets])
    out = tmp_path / "rep.json"
    code = ("import sys; from hao.cli import main; rc = main(['latency', 'validate', %r, '--published', %r, "
            "'--out', %r]); print('TVM_LOADED' if 'tvm' in sys.modules else 'NO_TVM'); sys.exit(rc)"
            % (HW, str(src), str(out)))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "NO_TVM" in r.stdout and "within ±10%" in r.stdout
    assert json.loads(out.read_text())["n_networks"] == 12
    r2 = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r2.returncode == 2 and "already exists" in r2.stderr
