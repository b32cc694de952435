import json

import numpy as np
import pytest
import torch

from hao.errors import ConfigError
from hao.proxy import (AccuracyProxy, BaseAccuracyProxy, HessianTraces, LayerTrace, SensitivityCacheError,
                       SensitivityTable, WeightNormProxy, perturbation_sq_norm, weight_layers)
from hao.quant import quantize_weight
from hao.space.base import LayerPerturbation
from hao.space.mbconv import MBConvSpace


@pytest.fixture(scope="module")
def space():
    return MBConvSpace("tiny-mb", input_shape=(1, 8, 8), stem_channels=4, stages=((4, 1), (6, 2)), depths=(1, 2),
                       kernel_sizes=(1, 3), ratios=(1, 2), w_bits=(2, 8), a_bits=(8,), head_channels=8,
                       num_classes=3)


@pytest.fixture(scope="module")
def supernet(space):
    return space.supernet(seed=3)


def fake_traces(supernet, scale=None):
    """Traces with Tr(H_l)/n_l = c_l chosen by hand (c_l = 1 + index / 10)."""
    layers = []
    params = dict(supernet.named_parameters())
    for i, (path, pname) in enumerate(weight_layers(supernet).items()):
        n = params[pname].numel()
        c = 1.0 + i / 10 if scale is None else scale
        layers.append(LayerTrace(path, c * n, 0.01 * c * n, 16, n))
    return HessianTraces(tuple(layers), sum(lt.mean for lt in layers), 0.0, 16, {"note": "hand-made"})


def test_perturbation_norm_hand_computed():
    w = torch.arange(2 * 3 * 3 * 3, dtype=torch.float64).reshape(2, 3, 3, 3) / 10 - 2
    # keep out 1, in 2, centre 1x1, at 32 bits: removed = everything but w[0, :2, 1, 1]
    p = LayerPerturbation("x", w_bits=32, out_keep=1, in_keep=2, kernel_keep=1)
    expect = float(w.pow(2).sum() - w[0, :2, 1, 1].pow(2).sum())
    assert perturbation_sq_norm(w, p) == pytest.approx(expect)
    p8 = LayerPerturbation("x", w_bits=8, out_keep=1, in_keep=2, kernel_keep=1)
    kept = w[:1, :2, 1:2, 1:2]
    expect_q = float((quantize_weight(kept, 8) - kept).pow(2).sum())
    assert perturbation_sq_norm(w, p8) == pytest.approx(expect + expect_q)
    assert perturbation_sq_norm(w, LayerPerturbation("x", removed=True)) == pytest.approx(float(w.pow(2).sum()))
    assert perturbation_sq_norm(w, LayerPerturbation("x", w_bits=32)) == 0.0


def hand_score(space, supernet, traces, cand):
    """½ Σ_l c_l ‖ΔW_l‖² computed from the *built* sub-network (independent of LayerPerturbation slicing)."""
    sub = space.build(cand, supernet)
    full = {path: dict(supernet.named_parameters())[pn].detach().double()
            for path, pn in weight_layers(supernet).items()}
    subw = {path: dict(sub.named_parameters())[pn].detach().double() for path, pn in weight_layers(sub).items()}
    bits = {p.path: p.w_bits for p in space.perturbations(cand) if not p.removed}
    total = 0.0
    for path, w in full.items():
        c = traces[path].mean / traces[path].numel
        if path not in subw:
            dw = float(w.pow(2).sum())
        else:
            k = subw[path]
            dw = float(w.pow(2).sum() - k.pow(2).sum()) + float((quantize_weight(k, bits[path]) - k).pow(2).sum())
        total += 0.5 * c * dw
    return total


def test_score_matches_hand_computed_values(space, supernet):
    tr = fake_traces(supernet)
    table = SensitivityTable.compute(space, supernet, tr, checkpoint_sha256="abc")
    proxy = AccuracyProxy(space, table)
    assert isinstance(proxy, BaseAccuracyProxy) and proxy.is_additive
    rng = np.random.default_rng(0)
    cands = [space.largest(), space.uniform(2, 8, kernel=1, ratio=1, depth=1)] + [space.sample(rng) for _ in range(8)]
    got = proxy.score(cands)
    want = np.array([hand_score(space, supernet, tr, c) for c in cands])
    np.testing.assert_allclose(got, want, rtol=1e-9)
    # the largest at 8 bits only pays quantization error; smaller and lower-bit candidates pay more
    assert got[0] < got[1]
    # additive decomposition: constant + Σ unit_costs[u][idx] == score
    idx = space.unit_indices(cands)
    rebuilt = proxy.constant + sum(c[idx[:, j]] for j, c in enumerate(proxy.unit_costs()))
    np.testing.assert_allclose(rebuilt, got, rtol=1e-12)
    assert [len(c) for c in proxy.unit_costs()] == [len(space.unit_options(u)) for u in space.units()]
    assert proxy.score([]).shape == (0,)


def test_weight_norm_baseline_is_hessian_free(space, supernet):
    ones = fake_traces(supernet, scale=1.0)
    t1 = SensitivityTable.compute(space, supernet, ones)
    t2 = SensitivityTable.compute(space, supernet, fake_traces(supernet))
    c = [space.uniform(2, 8)]
    assert WeightNormProxy(space, t2).score(c)[0] == pytest.approx(AccuracyProxy(space, t1).score(c)[0])


def test_json_cache_round_trip_and_hash_check(space, supernet, tmp_path):
    ckpt = tmp_path / "supernet.pt"
    torch.save(supernet.state_dict(), ckpt)
    from hao.train import file_sha256
    sha = file_sha256(ckpt)
    table = SensitivityTable.compute(space, supernet, fake_traces(supernet), checkpoint_sha256=sha,
                                     meta={"data": "hand"})
    path = table.save(tmp_path)
    assert path.name == "sensitivity.json"
    loaded = SensitivityTable.load(tmp_path, checkpoint=ckpt, space=space)
    assert loaded.traces == table.traces and loaded.checkpoint_sha256 == sha
    rng = np.random.default_rng(1)
    cands = [space.sample(rng) for _ in range(6)]
    np.testing.assert_allclose(AccuracyProxy(space, loaded).score(cands), AccuracyProxy(space, table).score(cands))
    assert AccuracyProxy.from_checkpoint(space, tmp_path).score(cands).shape == (6,)
    # the weights change → the cache is refused, naming both hashes
    with torch.no_grad():
        supernet.classifier.weight.add_(1.0)
    torch.save(supernet.state_dict(), ckpt)
    with torch.no_grad():
        supernet.classifier.weight.sub_(1.0)
    with pytest.raises(SensitivityCacheError, match=sha[:16]):
        SensitivityTable.load(path, checkpoint=ckpt)
    with pytest.raises(SensitivityCacheError, match="tiny-mb"):
        SensitivityTable.load(path, space="other-space")
    with pytest.raises(ConfigError, match="does not exist"):
        SensitivityTable.load(tmp_path / "missing.json")
    d = json.loads(path.read_text())
    d["version"] = 99
    path.write_text(json.dumps(d))
    with pytest.raises(Exception, match="version 99"):
        SensitivityTable.load(path)


def test_missing_traces_are_named(space, supernet):
    tr = fake_traces(supernet)
    partial = HessianTraces(tr.layers[:2], 0.0, 0.0, 16)
    with pytest.raises(ConfigError, match="lack layers"):
        SensitivityTable.compute(space, supernet, partial)


def test_proxy_rejects_foreign_table(space, supernet):
    table = SensitivityTable.compute(space, supernet, fake_traces(supernet))
    other = MBConvSpace("other", input_shape=(1, 8, 8), stem_channels=4, stages=((4, 1),), depths=(1,),
                        kernel_sizes=(1,), ratios=(1,), w_bits=(8,), a_bits=(8,), head_channels=8)
    with pytest.raises(ConfigError, match="tiny-mb"):
        AccuracyProxy(other, table)


def test_negative_curvature_is_clamped_to_zero(space, supernet):
    tr = fake_traces(supernet)
    first = tr.layers[0]
    neg = HessianTraces((LayerTrace(first.path, -5.0 * first.numel, 1.0, 16, first.numel),) + tr.layers[1:],
                        tr.total, 0.0, 16)
    table = SensitivityTable.compute(space, supernet, neg)
    p = LayerPerturbation(first.path, w_bits=2)
    assert table.omega(p) == 0.0 and table.dw_sq(p) > 0
    assert (AccuracyProxy(space, table).score([space.uniform(2, 8)]) >= 0).all()
