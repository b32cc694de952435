"""Smoke test of experiments/dmasking_vs_ilp.py (--smoke: 2 search steps, 2 fine-tuning steps, 200 images)."""
import json

import pytest

from tests.experiments.conftest import FMNIST_CKPT, load_script, require_fmnist_search_inputs

CKPT = FMNIST_CKPT


@pytest.mark.slow
def test_dmasking_vs_ilp_smoke(tmp_path):
    require_fmnist_search_inputs(CKPT)
    mod = load_script("dmasking_vs_ilp")
    args = ["--out", str(tmp_path), "--smoke", "--threads", "1", "--hardware", "cpu-rocketlake-2t"]
    assert mod.main(args) == 0
    d = json.loads((tmp_path / "dmasking_vs_ilp.json").read_text())
    rows = d["rows"]
    assert {r["method"] for r in rows} == {"ilp", "dmasking", "random"}
    budget = rows[0]["budget_ms"]
    ilp = next(r for r in rows if r["method"] == "ilp")
    assert ilp["meets_budget"] and ilp["predicted_latency_ms"] <= budget
    # the ILP is the exact optimum of the accuracy model (the committed calibrated model: predicted accuracy,
    # maximised) under the budget: no other pick scores better on it
    for r in rows:
        if r.get("candidate") and r["meets_budget"]:
            assert ilp["predicted_accuracy"] >= r["predicted_accuracy"] - 1e-9
            assert 0 <= r["accuracy"] <= 100 and r["search_cpu_min"] >= 0
    assert (tmp_path / "dmasking_vs_ilp.png").stat().st_size > 0
    # resumable: a second run reuses every finished row
    assert mod.main(args) == 0
    assert d["timing"]["timed"] is False  # --smoke does not time
    assert len((tmp_path / "rows.jsonl").read_text().splitlines()) == 3


@pytest.mark.slow
def test_a_network_picked_under_two_budgets_is_fine_tuned_once(tmp_path, monkeypatch):
    require_fmnist_search_inputs(CKPT)
    mod = load_script("dmasking_vs_ilp")
    calls = []

    def fake_finetune(space, supernet, cand, *a, **k):
        calls.append(cand.to_json())
        return {"accuracy_before_finetune": 50.0, "accuracy": 60.0 + len(calls), "accuracy_se": 1.0,
                "finetune_wall_s": 1.0}

    monkeypatch.setattr(mod, "finetune_and_evaluate", fake_finetune)
    monkeypatch.setattr(mod, "_pick_random", lambda problem, n, budget, seed: problem.space.smallest())
    args = ["--out", str(tmp_path), "--smoke", "--threads", "1", "--hardware", "cpu-rocketlake-2t",
            "--targets", "0.5,0.6"]
    assert mod.main(args) == 0
    rows = json.loads((tmp_path / "dmasking_vs_ilp.json").read_text())["rows"]
    assert len(calls) == len(set(calls)) == len({r["candidate"] for r in rows})   # one fine-tuning per network
    rnd = [r for r in rows if r["method"] == "random"]
    assert len(rnd) == 2 and rnd[0]["accuracy"] == rnd[1]["accuracy"]
    assert rnd[1]["finetune_reused_from"] == "0.5/random" and rnd[1]["finetune_wall_s"] == 0.0
