"""Smoke test of experiments/fit_accuracy_model.py on the committed end-to-end supernet: every step of the
protocol runs (architecture terms, fit, a closed-loop round, held-out report with baselines, latency bins,
test-retest, the front's picks) and what it writes loads back."""
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
                                            "10,100", "--loop-rounds", "1", "--judge-budgets", "0.25,0.35",
                                            "--loss", "pairwise"])
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["tau_joint"]["model"]["n"] == 8 and "best_baseline" in report["tau_joint"]
    assert "model without detail terms" in report["tau_joint"] and "model, squared loss" in report["tau_joint"]
    assert report["ridge_cv"]["ridge"] in (10.0, 100.0) and set(report["ridge_cv"]["cv_tau"]) == {"10.0", "100.0"}
    (loop,) = report["loop"]  # one closed-loop round: the front's picks measured and added to the fit set
    n_picks = len(loop["measured"])
    assert 1 <= n_picks <= 2 and len(loop["predicted"]) == n_picks and "model before loop" in report["tau_joint"]
    picks = report["front_picks"]
    assert [(p["model"], p["budget_ms"]) for p in picks] == [
        (m, b) for m in ("model", "squared loss", "before loop") for b in (0.25, 0.35)]
    assert all(0 <= p["measured"] <= 100 for p in picks)
    assert report["ceiling"]["n"] == 4 and len(report["tau_within_latency_bins"]["per_bin"]) == 2
    import hao
    from hao.proxy import CalibratedAccuracyModel
    space = hao.get_space("mbconv-fmnist")
    model = CalibratedAccuracyModel.from_checkpoint(space, tmp_path)
    # the loop refits with the squared loss (its ridge: ridge_cv); the final model with the pairwise loss
    assert model.loss == "pairwise" and model.info["loss_ridge_cv"]["ridge"] == model.ridge
    assert model.ridge in (10.0, 100.0) and model.groups.penalized.sum() > 0
    assert model.groups.detail["block_pairs"] and model.n_fit_ == 16 + 12 + n_picks
    pred, sd = model.predict([space.largest(), space.smallest()])
    assert pred.shape == (2,) and (sd > 0).all()
    # the loop's picks are listed; --fit-also adds them back without a loop (every measurement cached)
    listed = (tmp_path / "loop_picks.jsonl").read_text().splitlines()
    assert len(listed) == n_picks
    out2 = tmp_path / "again"
    out2.mkdir()
    for f in ("fit_val.jsonl", "test.jsonl", "retest.jsonl", "arch_terms.partial.jsonl"):
        (out2 / f).write_text((tmp_path / f).read_text())
    load_script("fit_accuracy_model").main(["--checkpoint-dir", str(E2E), "--out", str(out2), "--smoke",
                                            "--float-eval", "--threads", "1", "--no-progress", "--layer-bits",
                                            "--arch-options", "--block-pairs", "--n-corner", "12", "--ridges",
                                            "10,100", "--fit-also", str(tmp_path / "loop_picks.jsonl"),
                                            "--target", "log_error"])
    again = CalibratedAccuracyModel.from_checkpoint(space, out2)
    assert again.n_fit_ == 16 + 12 + n_picks and again.loss == "squared"
    assert again.target == "log_error" and again.error_scale_ > 0 and again.info["target"] == "log_error"
    assert len((out2 / "fit_val.jsonl").read_text().splitlines()) == len(
        (tmp_path / "fit_val.jsonl").read_text().splitlines())  # nothing measured again


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


def test_front_picks_are_the_best_predicted_candidates_within_each_budget():
    """The closed loop measures what the search returns: at each latency budget the pick is feasible and no
    sampled candidate within the budget has a higher predicted accuracy (the front solver is exact); ``exclude``
    and ``unique`` drop repeats and already-measured candidates, ``k`` spreads budgets over the front."""
    import numpy as np

    import hao
    from hao.latency.predictor import LatencyPredictor
    from hao.proxy import CalibratedAccuracyModel, SensitivityTable, build_term_groups
    from hao.proxy.arch_terms import ArchTerms
    from hao.search.objectives import latency_objective

    folder = E2E / "accmodel"
    if not (folder / "arch_terms.json").is_file():
        pytest.skip(f"no committed accuracy model in {folder}")
    space, hw = hao.get_space("mbconv-fmnist"), "cpu-rocketlake-2t"
    groups = build_term_groups(space, SensitivityTable.load(folder / "sensitivity.json", space=space),
                               ArchTerms.load(folder / "arch_terms.json"))
    rng = np.random.default_rng(0)
    fit_c = [space.sample(rng) for _ in range(60)]
    X = groups.matrix(fit_c)
    truth = 95.0 - (X / np.maximum(X.max(axis=0), 1e-12)) @ np.linspace(0.5, 2.0, X.shape[1])  # a planted model
    model = CalibratedAccuracyModel(space, groups).fit(fit_c, truth)
    front_picks = load_script("fit_accuracy_model").front_picks
    lat = latency_objective(space, LatencyPredictor.from_table(hw, space=space.name, quantiles=None))
    sample = [space.sample(rng) for _ in range(400)]
    s_lat, s_acc = lat.evaluate(sample), model.predict(sample)[0]
    b1, b2, b3 = np.quantile(s_lat, [0.05, 0.3, 0.7])
    budgets = [b1, b2, b2, b3]
    picks, b = front_picks(space, model, hw, budgets=budgets, unique=False)
    assert len(picks) == 4 and b.tolist() == budgets and picks[1].to_json() == picks[2].to_json()
    p_lat, p_acc = lat.evaluate(picks), model.predict(picks)[0]
    for bb, pl, pa in zip(budgets, p_lat, p_acc):
        assert pl <= bb + 1e-9
        assert pa >= s_acc[s_lat <= bb].max() - 1e-6
    uniq, _ = front_picks(space, model, hw, budgets=budgets, exclude={picks[0].to_json()})
    assert [c.to_json() for c in uniq] == [picks[1].to_json(), picks[3].to_json()]
    spread, b = front_picks(space, model, hw, k=5)
    assert len(b) == 5 and np.all(np.diff(b) > 0) and 1 <= len(spread) <= 5
