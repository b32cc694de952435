"""`hao calibrate` / `hao latency ...` through the real CLI entry point."""
from __future__ import annotations

import json

import pytest

from hao.cli import main


def test_latency_list_json(capsys):
    assert main(["latency", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    names = {r["name"] for r in rows}
    assert {"apq-bitfusion", "haq-mobilenetv2", "hawq-t4"} <= names
    assert all(r["ok"] for r in rows), [r for r in rows if not r["ok"]]


def test_latency_list_text(capsys):
    assert main(["latency", "list"]) == 0
    assert "hawq-t4" in capsys.readouterr().out


def test_calibrate_dry_run_and_resume(tmp_path, capsys):
    args = ["calibrate", "--hardware", "dry", "--space", "resnet-cifar", "--backend", "roofline", "--root",
            str(tmp_path), "--no-progress", "--kernels", "20"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["measured"] == 20
    assert main(args) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["measured"] == 0 and again["skipped"] == 20


@pytest.mark.parametrize("bad, msg", [
    (["--target", "llvm -mcpu=znver4"], "JSON target dict"),
    (["--precisions", "fp32"], "w32a32,w8a8"),
    (["--space", "no-such-space"], "no-such-space"),
    (["--op", "conv3d"], "valid ops are conv2d, dwconv2d, dense, avgpool, add"),
])
def test_calibrate_bad_arguments(tmp_path, capsys, bad, msg):
    args = ["calibrate", "--hardware", "x", "--space", "resnet-cifar", "--root", str(tmp_path), "--no-progress"]
    assert main(args + bad) == 2
    assert msg in capsys.readouterr().err


def test_import_command(tmp_path, capsys, shared_data):
    assert main(["latency", "import", "hawq", "--root", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["hardware"] == "hawq-t4" and (tmp_path / "hawq-t4" / "table.csv").is_file()


def test_unknown_importer(capsys):
    assert main(["latency", "import", "nn-meter"]) == 2
    assert "available importers" in capsys.readouterr().err


def test_calibrate_retime_cli(tmp_path, capsys):
    base = ["calibrate", "--hardware", "dry", "--backend", "roofline", "--root", str(tmp_path), "--no-progress"]
    assert main(base + ["--space", "resnet-cifar", "--kernels", "20"]) == 0
    capsys.readouterr()
    assert main(base + ["--retime", "--kernels", "5"]) == 0  # every row, at most 5 in this run
    part = json.loads(capsys.readouterr().out)
    assert part["retimed"] == 5 and not part["table_rewritten"]
    assert main(base + ["--retime", "--space", "resnet-cifar", "--kernels", "20"]) == 0  # resumes
    done = json.loads(capsys.readouterr().out)
    assert done["resumed"] == 5 and done["retimed"] == 15 and done["table_rewritten"]


def test_calibrate_needs_space_unless_retime(tmp_path, capsys):
    assert main(["calibrate", "--hardware", "dry", "--backend", "roofline", "--root", str(tmp_path)]) == 2
    assert "--space" in capsys.readouterr().err


def test_calibrate_op_filter(tmp_path, capsys):
    """--op keeps only that op's kernels of the plan (e.g. to re-measure depthwise rows after a program change)."""
    args = ["calibrate", "--hardware", "dry", "--space", "mbconv-fmnist", "--backend", "roofline", "--root",
            str(tmp_path), "--no-progress", "--precisions", "w32a32", "--no-space-bits", "--op", "dwconv2d"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    import pandas as pd

    table = pd.read_csv(tmp_path / "dry" / "table.csv")
    assert out["measured"] == len(table) > 10
    assert set(table["op"]) == {"dwconv2d"} and set(table["w_bits"]) == {32}
