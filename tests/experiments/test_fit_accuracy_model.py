"""Smoke test of experiments/fit_accuracy_model.py on the committed end-to-end supernet: every step of the
protocol runs (architecture terms, fit, held-out report with baselines, latency bins, test-retest) and what it
writes loads back."""
import json

import pytest

from tests.experiments.conftest import REPO, load_script, require_fashion_mnist

E2E = REPO / "checkpoints" / "mbconv-fmnist"


@pytest.mark.slow
def test_fit_accuracy_model_smoke(tmp_path):
    require_fashion_mnist()
    if not (E2E / "supernet.pt").is_file():
        pytest.skip(f"no trained supernet in {E2E}")
    load_script("fit_accuracy_model").main(["--checkpoint-dir", str(E2E), "--out", str(tmp_path), "--smoke",
                                            "--float-eval", "--threads", "1", "--no-progress", "--layer-bits",
                                            "--arch-options", "--block-pairs", "--n-corner", "12", "--ridges",
                                            "10,100"])
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["tau_joint"]["model"]["n"] == 8 and "best_baseline" in report["tau_joint"]
    assert "model without detail terms" in report["tau_joint"]
    assert report["ridge_cv"]["ridge"] in (10.0, 100.0) and set(report["ridge_cv"]["cv_tau"]) == {"10.0", "100.0"}
    assert report["ceiling"]["n"] == 4 and len(report["tau_within_latency_bins"]["per_bin"]) == 2
    import hao
    from hao.proxy import CalibratedAccuracyModel
    space = hao.get_space("mbconv-fmnist")
    model = CalibratedAccuracyModel.from_checkpoint(space, tmp_path)
    assert model.ridge == report["ridge_cv"]["ridge"] and model.groups.penalized.sum() > 0
    assert model.groups.detail["block_pairs"] and model.n_fit_ == 16 + 12
    pred, sd = model.predict([space.largest(), space.smallest()])
    assert pred.shape == (2,) and (sd > 0).all()


def test_corner_candidates_are_uniform_and_start_with_the_extremes():
    """The fit set's corner candidates: the largest and the smallest architecture at every uniform (weight,
    activation) pair first, then random architectures at one uniform pair each; seeded and distinct."""
    import hao
    space = hao.get_space("mbconv-fmnist")
    make = load_script("fit_accuracy_model").make_corner_candidates
    cands = make(space, 30, 100)
    assert len(cands) == 30 and len({c.to_json() for c in cands}) == 30
    assert [c.to_json() for c in make(space, 30, 100)] == [c.to_json() for c in cands]
    kinds = {d.name: d.kind for d in space.decisions()}
    pairs = []
    for c in cands:
        d = c.as_dict()
        kept = {k: v for k, v in d.items() if kinds[k] == "depth"
                or int(k.split(".")[1][1:]) < d[k.split(".")[0] + ".depth"]}  # removed blocks: canonical widths
        w = {v for k, v in kept.items() if kinds[k] == "w_bits"}
        a = {v for k, v in kept.items() if kinds[k] == "a_bits"}
        assert len(w) == 1 and len(a) == 1, d
        pairs.append((w.pop(), a.pop()))
    assert pairs[:6] == [(2, 4), (2, 8), (4, 4), (4, 8), (8, 4), (8, 8)] and pairs[6:12] == pairs[:6]
    arch = {k for k, v in kinds.items() if v not in ("w_bits", "a_bits")}
    strip = [{k: v for k, v in c.as_dict().items() if k in arch} for c in cands]
    big = {k: v for k, v in space.largest().as_dict().items() if k in arch}
    small = {k: v for k, v in space.smallest().as_dict().items() if k in arch}
    assert all(s == big for s in strip[:6]) and all(s == small for s in strip[6:12])
    assert make(space, 0, 100) == []
