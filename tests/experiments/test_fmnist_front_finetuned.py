"""experiments/fmnist_front_finetuned.py: its dominance and hypervolume helpers against brute force, the uniform
baseline's construction, and a smoke run (--smoke: 2 picks per role, 2 fine-tuning steps, 200 images)."""
import json

import numpy as np
import pytest

from tests.experiments.conftest import REPO, load_script, require_fashion_mnist

E2E = REPO / "checkpoints" / "mbconv-fmnist"


@pytest.fixture(scope="module")
def mod():
    return load_script("fmnist_front_finetuned")


def test_dominated_matches_brute_force(mod):
    rng = np.random.default_rng(0)
    pts, by = rng.integers(0, 5, (40, 2)).astype(float), rng.integers(0, 5, (30, 2)).astype(float)
    want = [any(b[0] >= p[0] and b[1] <= p[1] and (b[0] > p[0] or b[1] < p[1]) for b in by) for p in pts]
    assert mod.dominated(pts, by).tolist() == want
    assert not mod.dominated(pts, by[:0]).any()


def test_hypervolume_matches_a_grid_count(mod):
    rng = np.random.default_rng(1)
    pts = np.column_stack([rng.integers(1, 10, 12), rng.integers(0, 9, 12)]).astype(float)
    ref = (0.0, 10.0)
    # unit cells (accuracy a..a+1, latency t..t+1) dominated by some point
    cells = sum(any(p[0] >= a + 1 and p[1] <= t for p in pts) for a in range(10) for t in range(10))
    assert mod.hypervolume(pts, ref) == pytest.approx(cells)
    assert mod.hypervolume(np.array([[1.0, 11.0]]), ref) == 0.0  # beyond the reference: nothing


def test_with_uniform_bits_keeps_the_architecture(mod):
    import hao
    space = hao.get_space("mbconv-fmnist")
    c = space.sample(np.random.default_rng(3))
    u = mod.with_uniform_bits(space, c, 2)
    kinds = {d.name: (d.kind, d.options) for d in space.decisions()}
    for name, v in u.as_dict().items():
        kind, opts = kinds[name]
        if kind == "w_bits":
            assert v == 2
        elif kind == "a_bits":
            assert v == min(o for o in opts if o >= 2)
        elif name in c.as_dict():
            assert v == c.as_dict()[name]


@pytest.mark.slow
def test_front_finetuned_smoke(tmp_path, mod):
    require_fashion_mnist()
    if not (E2E / "accmodel" / "accuracy_model.json").is_file():
        pytest.skip(f"no calibrated accuracy model in {E2E / 'accmodel'}")
    args = ["--out", str(tmp_path), "--smoke", "--threads", "1", "--checkpoint-dir", str(E2E),
            "--hardware", "cpu-rocketlake-2t"]
    assert mod.main(args) == 0
    d = json.loads((tmp_path / "front_finetuned.json").read_text())
    rows = d["rows"]
    assert [sum(r["role"] == k for r in rows) for k in ("front", "uniform", "random")] == [2, 2, 2]
    assert all(0 <= r["accuracy"] <= 100 and r["measured_latency_ms"] is None for r in rows)
    assert d["summary"]["latency_axis"] == "predicted_latency_ms" and d["timing"]["timed"] is False
    # the front's picks meet their budgets on the predictor
    assert all(r["predicted_latency_ms"] <= r["budget_ms"] * (1 + 1e-9) for r in rows if r["role"] == "front")
    # a uniform baseline that is the front pick itself is the same row, never fine-tuned twice
    front = {r["candidate"]: r for r in rows if r["role"] == "front"}
    for r in rows:
        if r["role"] == "uniform":
            assert bool(r.get("same_as_front")) == (r["candidate"] in front)
            if r["candidate"] in front:
                assert r["accuracy"] == front[r["candidate"]]["accuracy"]
    assert d["summary"]["uniform_same_as_front"] == sum(bool(r.get("same_as_front")) for r in rows)
    assert (tmp_path / "front_finetuned.png").stat().st_size > 0
    assert mod.main(args) == 0                     # resumable: every finished network is reused
    assert len((tmp_path / "rows.jsonl").read_text().splitlines()) == 6
