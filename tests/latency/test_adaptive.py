"""Adaptive calibration: usage weights, the sampler's choices, the budgeted resumable run, and mapped kernels
answered by the program they run."""
from __future__ import annotations

import numpy as np
import pytest

from hao.cli import main
from hao.errors import ConfigError
from hao.kernel import KernelSpec
from hao.latency.adaptive import AdaptiveSampler, executed_pool, usage_weights
from hao.latency.backend import RooflineBackend, executed_kernel, kernel_precision, replace_bits
from hao.latency.calibrate import calibrate, plan_kernels, space_kernels
from hao.latency.predictor import LatencyPredictor
from hao.latency.table import load_table
from hao.space import get_space


def _pool(space):
    """What ``hao calibrate --adaptive`` chooses from: every shape at float32 and int8."""
    return executed_pool(plan_kernels(space_kernels(space)))


@pytest.fixture(scope="module")
def space():
    return get_space("resnet-cifar")


@pytest.fixture(scope="module")
def weights(space):
    return usage_weights(space, n_networks=30, seed=0)


def test_usage_weights_count_executed_kernels_per_network(space, weights):
    rng = np.random.default_rng(0)
    cands = [space.sample(rng) for _ in range(30)]
    # the mean number of kernels per network, over the three network precisions
    assert sum(weights.values()) == pytest.approx(np.mean([len(space.kernels(c)) for c in cands]))
    assert all(kernel_precision(k) in ("fp32", "int8") for k in weights)  # mapped kernels count as their program
    for k in space.kernels(cands[0]):
        assert executed_kernel(k) in weights
    assert weights == usage_weights(space, n_networks=30, seed=0)  # seeded
    with pytest.raises(ConfigError, match="precisions"):
        usage_weights(space, precisions=("int4",))


def test_first_draw_covers_every_op_and_precision(space, weights):
    pool = _pool(space)
    s = AdaptiveSampler(pool, weights, start=12, seed=3)
    first = s.first()
    assert len(first) == 12 and len(set(first)) == 12
    groups = {(k.op, kernel_precision(k)) for k in pool}
    assert groups <= {(k.op, kernel_precision(k)) for k in first}
    assert first == AdaptiveSampler(pool, weights, start=12, seed=3).first()


def _truth(k: KernelSpec) -> float:
    return float(RooflineBackend().measure(k).latency_ms)


def test_next_never_repeats_and_prefers_used_kernels(space, weights):
    pool = [k for k in _pool(space) if weights.get(k, 0) > 0]
    unused = KernelSpec("conv2d", 512, 512, 32, 32, 7, 1)  # heavy, but no network of the space has it
    s = AdaptiveSampler(pool + [unused], weights, start=10, batch=8, seed=0)
    measured: dict = {}
    failed = [pool[0]]
    for _ in range(200):
        batch = s.next(measured, failed=failed)
        if not batch:
            break
        assert not set(batch) & (set(measured) | set(failed))
        if unused in batch:  # weight 0: proposed only with (or after) the last used kernels
            assert set(pool[1:]) <= set(measured) | set(batch)
        for k in batch:
            measured[k] = _truth(k)
    assert set(measured) == set(pool[1:]) | {unused}
    assert s.rounds and all(r["score_picked_ms"] <= r["score_sum_ms"] + 1e-12 for r in s.rounds)


def test_sampler_validates_its_parameters():
    with pytest.raises(ConfigError, match="start must be >= 5"):
        AdaptiveSampler([KernelSpec("add", 8, 8, 4, 4)], {}, start=3)
    with pytest.raises(ConfigError, match="empty pool"):
        AdaptiveSampler([], {})


def test_adaptive_calibration_measures_the_budget_and_resumes(tmp_path, space, weights):
    pool = [k for k in _pool(space) if k in weights]
    kw = dict(root=tmp_path, progress=False, recheck=0)
    r1 = calibrate("rf", pool, RooflineBackend(), adaptive=AdaptiveSampler(pool, weights, start=10, batch=7),
                   budget=25, **kw)
    assert r1["measured"] == 25
    t = load_table(tmp_path / "rf")
    assert len(t.kernels()) == 25
    first = AdaptiveSampler(pool, weights, start=10).first()
    assert set(first) <= set(t.kernels())
    # a re-run with a larger budget measures only the difference, choosing with the rows already there
    r2 = calibrate("rf", pool, RooflineBackend(), adaptive=AdaptiveSampler(pool, weights, start=10, batch=7),
                   budget=40, **kw)
    assert r2["measured"] == 15 and len(load_table(tmp_path / "rf").kernels()) == 40
    with pytest.raises(ConfigError, match="budget"):
        calibrate("rf", pool, RooflineBackend(), adaptive=AdaptiveSampler(pool, weights), budget=None, **kw)


def test_cli_adaptive(tmp_path, capsys):
    assert main(["calibrate", "--backend", "roofline", "--hardware", "rf", "--root", str(tmp_path), "--space",
                 "resnet-cifar", "--adaptive", "30", "--no-progress"]) == 0
    t = load_table(tmp_path / "rf")
    assert len(t.kernels()) == 30
    assert not any(kernel_precision(k).endswith("mapped") for k in t.kernels())
    assert main(["calibrate", "--backend", "roofline", "--hardware", "rf2", "--root", str(tmp_path), "--space",
                 "resnet-cifar", "--adaptive", "30", "--kernels", "5"]) == 2
    assert "--adaptive" in capsys.readouterr().err


def test_mapped_kernels_are_answered_by_the_program_they_run():
    base = [KernelSpec("conv2d", c, 2 * c, h, h, k, 1) for c in (8, 16, 32) for h in (4, 8) for k in (1, 3)]
    rows = [replace_bits(k, w, w) for k in base for w in (32, 8)]
    lat = [_truth(k) for k in rows]
    est = LatencyPredictor(n_estimators=30).fit(rows, lat)
    w4a4 = replace_bits(base[3], 4, 4)
    int8 = replace_bits(base[3], 8, 8)
    assert est.predict([w4a4], prefer_measured=True)[0] == pytest.approx(_truth(int8))  # looked up
    assert est.predict([w4a4])[0] == pytest.approx(est.predict([int8])[0])
    lo, hi = est.predict_interval([w4a4])
    assert (lo, hi) == tuple(est.predict_interval([int8]))
    # a table with its own sub-8-bit rows (e.g. a real int4 program) keeps them
    own = LatencyPredictor(n_estimators=30).fit(rows + [w4a4], lat + [0.5 * _truth(int8)])
    assert own.predict([w4a4], prefer_measured=True)[0] == pytest.approx(0.5 * _truth(int8))
