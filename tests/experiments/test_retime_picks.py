"""experiments/retime_picks.py: which networks it times (merged over result folders, roles kept), that it never
overwrites measured data without --force, and that it refuses a table of another CPU."""
import json

import pytest

from tests.experiments.conftest import REPO, load_script

RESULTS = [str(REPO / "docs" / "results" / d) for d in ("fmnist_front_finetuned", "dmasking_vs_ilp")]


@pytest.fixture(scope="module")
def mod():
    return load_script("retime_picks")


def test_networks_are_merged_over_folders_with_their_roles(mod):
    nets = mod._networks(RESULTS)
    rows = [json.loads(line) for d in RESULTS for line in open(f"{d}/rows.jsonl")]
    assert len(nets) == len({r["candidate"] for r in rows}) == 17          # 23 rows, 17 distinct networks
    both = [n for n in nets if len(n["roles"]) > 1]
    assert {tuple(n["roles"]) for n in both} >= {("fmnist_front_finetuned:front", "fmnist_front_finetuned:uniform")}
    timing = json.load(open(f"{RESULTS[1]}/timing.json"))["by_candidate"]
    for n in nets:
        if n["candidate"] in timing:
            assert n["earlier_measured_ms"] == timing[n["candidate"]]["measured_ms"]


def test_existing_output_is_not_overwritten(mod, tmp_path, capsys):
    out = tmp_path / "retime.json"
    out.write_text("measured")
    assert mod.main(["--results", RESULTS[0], "--out", str(out)]) == 2
    assert out.read_text() == "measured" and "--force" in capsys.readouterr().err


@pytest.mark.tvm
def test_a_table_of_another_cpu_is_refused(mod, tmp_path, capsys):
    pytest.importorskip("tvm")
    from hao.latency.table import hardware_dir, list_hardware
    from hao.latency.target import default_target

    here = default_target()["mcpu"]
    other = [h for h in list_hardware() if h.startswith("cpu-")
             and json.loads((hardware_dir(h) / "meta.json").read_text()).get("mcpu") not in (None, here)]
    if not other:
        pytest.skip("every committed CPU table is this CPU's")
    out = tmp_path / "r.json"
    assert mod.main(["--results", RESULTS[0], "--out", str(out), "--hardware", other[0]]) == 2
    assert not out.exists() and "own hardware" in capsys.readouterr().err
