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
    assert "Known table importers: apq, haq, hawq" in capsys.readouterr().err


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


# ---- no command destroys measured data -------------------------------------------------------------------
def test_import_refuses_an_existing_folder_and_force_moves_it_aside(tmp_path, capsys):
    from tests.snapshots import snapshot

    assert main(["latency", "import", "hawq", "--root", str(tmp_path), "--hardware", "t4"]) == 0
    (tmp_path / "t4" / "predictor.json").write_text("{}\n")  # something measured beside the table
    capsys.readouterr()
    before = snapshot(tmp_path)
    assert main(["latency", "import", "apq", "--root", str(tmp_path), "--hardware", "t4"]) == 2
    err = capsys.readouterr().err
    assert "refusing to write into" in err and str(tmp_path / "t4") in err and "--force" in err
    assert snapshot(tmp_path) == before  # nothing changed
    assert main(["latency", "import", "apq", "--root", str(tmp_path), "--hardware", "t4", "--force"]) == 0
    assert "moved the old" in capsys.readouterr().err
    aside = list((tmp_path / ".replaced").iterdir())
    assert len(aside) == 1 and (aside[0] / "predictor.json").is_file()  # the old folder, whole
    assert json.loads((tmp_path / "t4" / "meta.json").read_text())["importer"] == "apq"
    assert not (tmp_path / "t4" / "predictor.json").exists()


def test_import_refuses_to_hide_a_known_table(capsys, tmp_path, monkeypatch):
    """Without --root the table goes to the per-user folder; the built-in hawq-t4 keeps its name."""
    from tests.snapshots import snapshot
    from hao.paths import user_tables_dir

    monkeypatch.setenv("HAO_HOME", str(tmp_path / "home"))
    assert main(["latency", "import", "hawq"]) == 2
    err = capsys.readouterr().err
    assert "already used by the table at" in err and "hawq-t4" in err
    assert snapshot(tmp_path) == {}
    assert main(["latency", "import", "hawq", "--hardware", "my-t4"]) == 0
    assert (user_tables_dir() / "my-t4" / "table.csv").is_file()


def test_calibrate_refuses_an_imported_table_and_another_target(tmp_path, capsys):
    from tests.snapshots import snapshot

    assert main(["latency", "import", "hawq", "--root", str(tmp_path), "--hardware", "hw"]) == 0
    capsys.readouterr()
    base = ["calibrate", "--space", "resnet-cifar", "--backend", "roofline", "--root", str(tmp_path),
            "--no-progress", "--kernels", "5"]
    before = snapshot(tmp_path)
    assert main(base + ["--hardware", "hw"]) == 2
    assert "imported with `hao latency import hawq`" in capsys.readouterr().err
    assert snapshot(tmp_path) == before
    # a table measured for another target
    assert main(base + ["--hardware", "cpu"]) == 0
    meta_p = tmp_path / "cpu" / "meta.json"
    meta = json.loads(meta_p.read_text())
    meta.update(backend="tvm", target={"kind": "llvm", "mcpu": "znver4", "num-cores": 2})
    meta_p.write_text(json.dumps(meta))
    capsys.readouterr()
    before = snapshot(tmp_path)
    assert main(base + ["--hardware", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "measured with backend='tvm'" in err and "znver4" in err and "--force" in err
    assert snapshot(tmp_path) == before
    assert main(base + ["--hardware", "cpu", "--force"]) == 0
    assert json.loads(meta_p.read_text())["backend"] == "roofline"
    assert len(list((tmp_path / ".replaced").iterdir())) == 1


def test_importer_names_the_expected_format(tmp_path, capsys, shared_data):
    assert main(["latency", "import", "apq", "--root", str(tmp_path),
                 "--source", str(shared_data / "haq_mobilenetv2_latency.npy")]) == 2
    err = capsys.readouterr().err
    assert "'.npy'" in err and "JSON object" in err and "haq" in err
    assert not any(tmp_path.iterdir())


def test_list_shows_invalid_folders_and_refuses_empty_tables(tmp_path, capsys, monkeypatch):
    from hao.errors import TableError
    from hao.latency.table import LatencyTable

    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "table.csv").write_text("op\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "meta.json").write_text(json.dumps({"hardware": "empty", "units": {}, "source": "x"}))
    header = ("op,in_channels,out_channels,in_h,in_w,kernel,stride,groups,batch,w_bits,a_bits,latency_ms,std_ms,"
              "repeats\n")
    (tmp_path / "empty" / "table.csv").write_text(header)
    with pytest.raises(TableError, match=r"empty/table.csv: the table has a header but 0 rows"):
        LatencyTable.load(tmp_path / "empty")
    monkeypatch.setenv("HAO_LATENCY_MODELS", str(tmp_path))
    assert main(["latency", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert not rows["half"]["ok"] and "no meta.json" in rows["half"]["error"]
    assert not rows["empty"]["ok"] and "0 rows" in rows["empty"]["error"]
    assert main(["latency", "list"]) == 0
    text = capsys.readouterr().out
    assert "half" in text and "INVALID" in text


def test_validate_refuses_to_replace_a_report(tmp_path, capsys, monkeypatch):
    from tests.snapshots import snapshot

    assert main(["calibrate", "--hardware", "dry", "--space", "resnet-cifar", "--backend", "roofline",
                 "--root", str(tmp_path), "--no-progress", "--kernels", "5"]) == 0
    (tmp_path / "dry" / "validation_resnet-cifar.json").write_text("{}\n")
    monkeypatch.setenv("HAO_LATENCY_MODELS", str(tmp_path))
    capsys.readouterr()
    before = snapshot(tmp_path)
    assert main(["latency", "validate", "dry", "--space", "resnet-cifar"]) == 2
    err = capsys.readouterr().err
    assert "validation_resnet-cifar.json already exists" in err and "--force" in err
    assert snapshot(tmp_path) == before


def test_calibrate_ends_with_a_timing_pass_over_its_rows(tmp_path, capsys):
    """With TVM, every row is timed once more after all tuning is done (rows timed right after their own tuning
    ran ~10% slow); the table is rewritten with those timings and the pass is reported."""
    pytest.importorskip("tvm")
    args = ["calibrate", "--hardware", "tp", "--root", str(tmp_path), "--space", "resnet-cifar", "--op", "add",
            "--precisions", "w32a32", "--no-space-bits", "--trials", "1", "--rounds", "1", "--repeat", "3",
            "--min-repeat-ms", "1", "--no-progress", "--quiet-limit", "none"]
    assert main(args) in (0, 3)  # 3: the re-check of a few µs adds timed once each may call it drift
    out = json.loads(capsys.readouterr().out)
    assert out["measured"] >= 2 and out["timing_pass"]["retimed"] == out["measured"]
    assert out["timing_pass"]["table_rewritten"]
    meta = json.loads((tmp_path / "tp" / "meta.json").read_text())
    assert [r.get("kind") for r in meta["calibration_runs"]][-1] == "retime"
    assert main(args[:-2] + ["--no-timing-pass", "--force"]) in (0, 3)
    assert "timing_pass" not in json.loads(capsys.readouterr().out)


def test_adaptive_calibration_times_again_only_the_rows_it_measured(tmp_path, capsys):
    """``--adaptive N`` measures N kernels of a larger plan; the timing pass names and re-times those N."""
    pytest.importorskip("tvm")
    args = ["calibrate", "--hardware", "ta", "--root", str(tmp_path), "--space", "resnet-cifar", "--op", "add",
            "--op", "avgpool", "--precisions", "w32a32", "--no-space-bits", "--trials", "1", "--rounds", "1",
            "--repeat", "3", "--min-repeat-ms", "1", "--no-progress", "--quiet-limit", "none", "--adaptive", "3"]
    assert main(args) in (0, 3)
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["measured"] == 3 and out["timing_pass"]["retimed"] == 3
    assert "timing pass over the 3 rows this run measured" in captured.err
