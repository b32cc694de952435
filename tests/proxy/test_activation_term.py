"""The activation-quantization term of the proxy: Ω^A_l = Tr(H^A_l) · f_l · e_l(a_bits).

Ground truth: the loss increase measured when noise of known variance is added to one layer's input, the
per-element quantization error computed directly, and hand-computed channel fractions."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hao.proxy import (AccuracyProxy, SensitivityTable, activation_quant_mse, float_weights, hessian_traces)
from hao.quant import ActQuant
from hao.space.base import LayerPerturbation
from hao.space.mbconv import MBConvSpace


@pytest.fixture(scope="module")
def space():
    return MBConvSpace("tiny-mb-act", input_shape=(1, 8, 8), stem_channels=4, stages=((4, 1), (6, 2)),
                       depths=(1, 2), kernel_sizes=(1, 3), ratios=(1, 2), w_bits=(4, 8), a_bits=(2, 4, 8),
                       head_channels=8, num_classes=3)


@pytest.fixture(scope="module")
def setup(space):
    net = space.supernet(seed=3)
    net.set_active(space.largest())
    net.eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(48, 1, 8, 8, generator=g)
    with torch.no_grad(), float_weights(net):
        y = net(x).argmax(1)            # labels the net mostly fits: a realistic, non-degenerate loss
    flip = torch.rand(48, generator=g) < 0.3
    y[flip] = torch.randint(0, 3, (int(flip.sum()),), generator=g)
    with float_weights(net):
        tr = hessian_traces(net, F.cross_entropy, (x, y), samples=600, seed=0, vectors_per_call=100,
                            method="ggn", activations=True)
    return net, x, y, tr


def test_activation_mse_matches_direct_quantization(space, setup):
    net, x, _, tr = setup
    paths = [a.path for a in tr.activations]
    st = activation_quant_mse(net, [x[:24], x[24:]], paths)
    mods = dict(net.named_modules())
    for path in paths[:5]:
        cap = []
        h = mods[path].register_forward_pre_hook(lambda m, a: cap.append(a[0].detach()))
        with torch.no_grad(), float_weights(net):
            net(x[:24]), net(x[24:])
        h.remove()
        a = torch.cat(cap)
        assert st[path]["range"] == pytest.approx([float(a.min()), float(a.max())])
        assert st[path]["channels"] == a.shape[1] and st[path]["numel"] == a[0].numel()
        errs = []
        for b in (2, 4, 8):
            q = ActQuant(b)
            q.lo.fill_(float(a.min()))
            q.hi.fill_(float(a.max()))
            q.calibrated.fill_(True)
            e = float((q(a) - a).double().pow(2).mean())
            assert st[path]["mse"][b] == pytest.approx(e, rel=1e-6)
            errs.append(e)
        assert errs[0] > errs[1] > errs[2] > 0
    assert st["stages.0.0.dw.conv"]["depthwise"] and not st["stages.0.0.expand.conv"]["depthwise"]


def test_predicted_loss_increase_matches_measured_noise_response(setup):
    """½·Tr(H^A)·σ² against ½(L(a+δ) + L(a−δ)) − L(a) for Gaussian δ of variance σ² added to the classifier's
    input (antithetic pairs cancel the gradient term), in float64, averaged over draws. Downstream of that input
    the loss is smooth (linear → softmax cross-entropy), so the quadratic model is exact to O(σ⁴). (Before a
    ReLU, finite noise also crosses kinks, which the almost-everywhere Hessian does not see; the fidelity
    experiment measures what that costs.)"""
    net, x, y, tr = setup
    import copy
    net = copy.deepcopy(net).double()
    x = x.double()
    lt = tr.activations[-1]
    assert lt.path == "classifier"
    mod = dict(net.named_modules())[lt.path]
    g = torch.Generator().manual_seed(5)
    sigma = 0.05
    meas = []
    with torch.no_grad(), float_weights(net):
        base = float(F.cross_entropy(net(x), y))
        cap = []
        h = mod.register_forward_pre_hook(lambda m, a: cap.append(a[0]))
        net(x)
        h.remove()
        for _ in range(300):
            d = torch.randn(cap[0].shape, generator=g, dtype=torch.float64) * sigma
            vals = []
            for s in (1, -1):
                hk = mod.register_forward_pre_hook(lambda m, a, s=s, d=d: (a[0] + s * d,))
                vals.append(float(F.cross_entropy(net(x), y)))
                hk.remove()
            meas.append(0.5 * sum(vals) - base)
    m, se = float(np.mean(meas)), float(np.std(meas) / np.sqrt(len(meas)))
    pred, pred_se = 0.5 * lt.mean * sigma ** 2, 0.5 * lt.std_error * sigma ** 2
    assert m > 0 and abs(pred - m) <= 4 * (se ** 2 + pred_se ** 2) ** 0.5, (pred, pred_se, m, se)


def test_table_activation_term_and_json_round_trip(space, setup, tmp_path):
    net, x, _, tr = setup
    st = activation_quant_mse(net, [x], [a.path for a in tr.activations])
    table = SensitivityTable.compute(space, net, tr, activation_mse=st)
    a = {lt.path: lt for lt in tr.activations}
    # depthwise: channel share from out_keep; regular conv: from in_keep; removed / float: zero
    dw = "stages.1.0.dw.conv"
    c = st[dw]["channels"]
    p = LayerPerturbation(dw, w_bits=8, a_bits=4, out_keep=c // 2, kernel_keep=1)
    assert table.omega_act(p) == pytest.approx(max(a[dw].mean, 0) * (c // 2) / c * st[dw]["mse"][4])
    pr = "stages.1.0.project.conv"
    cp = st[pr]["channels"]
    p2 = LayerPerturbation(pr, w_bits=8, a_bits=2, in_keep=cp // 2)
    assert table.omega_act(p2) == pytest.approx(max(a[pr].mean, 0) * (cp // 2) / cp * st[pr]["mse"][2])
    assert table.omega(p2) == pytest.approx(table.omega_weights(p2) + table.omega_act(p2))
    assert table.omega(p2, activations=False) == table.omega_weights(p2)
    assert table.omega_act(LayerPerturbation(pr, removed=True)) == 0.0
    assert table.omega_act(LayerPerturbation(pr, w_bits=8, a_bits=32)) == 0.0
    path = table.save(tmp_path)
    back = SensitivityTable.load(path)
    assert back.activations == table.activations
    assert back.omega(p2) == pytest.approx(table.omega(p2))
    # a version-1 (weights only) file still loads; its proxy ignores activation bits
    d = json.loads(path.read_text())
    d["version"], d["activations"] = 1, None
    old = tmp_path / "v1.json"
    old.write_text(json.dumps(d))
    v1 = SensitivityTable.load(old)
    assert v1.activations is None and v1.omega(p2) == pytest.approx(table.omega_weights(p2))
    assert not AccuracyProxy(space, v1).activations


def test_proxy_ranks_activation_bits_and_stays_additive(space, setup):
    net, x, _, tr = setup
    table = SensitivityTable.compute(space, net, tr, activation_mse=activation_quant_mse(
        net, [x], [a.path for a in tr.activations]))
    proxy = AccuracyProxy(space, table)
    weights_only = AccuracyProxy(space, table, activations=False)
    assert proxy.activations and not weights_only.activations
    big = space.largest()
    a_dec = [d.name for d in space.decisions() if d.kind == "a_bits"]
    s8, s4, s2 = proxy.score([big.replace(**{n: b for n in a_dec}) for b in (8, 4, 2)])
    assert s8 < s4 < s2
    w8, w4, w2 = weights_only.score([big.replace(**{n: b for n in a_dec}) for b in (8, 4, 2)])
    assert w8 == w4 == w2          # the weights-only proxy cannot see activation bits
    rng = np.random.default_rng(0)
    cands = [space.sample(rng) for _ in range(50)]
    idx = space.unit_indices(cands)
    additive = proxy.constant + sum(cu[idx[:, j]] for j, cu in enumerate(proxy.unit_costs()))
    direct = np.array([0.5 * sum(table.omega(p) for p in space.perturbations(c)) for c in cands])
    np.testing.assert_allclose(proxy.score(cands), additive, rtol=1e-9)
    np.testing.assert_allclose(proxy.score(cands), direct, rtol=1e-9)


def test_terms_split_the_score(space, setup):
    """AccuracyProxy.terms: architecture + weight bits + activation bits adds up to the score; bits-only changes
    leave the architecture part alone, and the largest candidate removes nothing."""
    net, x, _, tr = setup
    table = SensitivityTable.compute(space, net, tr, activation_mse=activation_quant_mse(
        net, [x], [a.path for a in tr.activations]))
    proxy = AccuracyProxy(space, table)
    rng = np.random.default_rng(1)
    big = space.largest()
    w_dec = [d.name for d in space.decisions() if d.kind == "w_bits"]
    cands = [space.sample(rng) for _ in range(20)] + [big.replace(**{n: 8 for n in w_dec}),
                                                       big.replace(**{n: 4 for n in w_dec})]
    t = proxy.terms(cands)
    total = t["architecture"] + t["weight_bits"] + t["activation_bits"]
    np.testing.assert_allclose(total, proxy.score(cands), rtol=1e-9)
    assert t["architecture"][-1] == t["architecture"][-2] == 0.0
    assert 0 < t["weight_bits"][-2] < t["weight_bits"][-1]
    assert (t["architecture"][:20] > 0).any() and (t["activation_bits"] > 0).all()
    assert not AccuracyProxy(space, table, activations=False).terms(cands[:3])["activation_bits"].any()


def test_arch_weight_scales_only_the_architecture_part(space, setup):
    """arch_weight w: score = w·architecture + weight bits + activation bits, still exactly additive (the ILP's
    unit costs), and the table computed by SensitivityTable.compute answers it without the supernet."""
    net, x, _, tr = setup
    table = SensitivityTable.compute(space, net, tr, activation_mse=activation_quant_mse(
        net, [x], [a.path for a in tr.activations]))
    rng = np.random.default_rng(2)
    cands = [space.sample(rng) for _ in range(25)]
    parts = AccuracyProxy(space, table).terms(cands)
    table.weights = None  # the float versions are stored in the table: no supernet needed
    for w in (0.0, 0.3, 2.0):
        proxy = AccuracyProxy(space, table, arch_weight=w)
        expect = w * parts["architecture"] + parts["weight_bits"] + parts["activation_bits"]
        np.testing.assert_allclose(proxy.score(cands), expect, rtol=1e-9, atol=1e-12)
        idx = space.unit_indices(cands)
        additive = proxy.constant + sum(cu[idx[:, j]] for j, cu in enumerate(proxy.unit_costs()))
        np.testing.assert_allclose(proxy.score(cands), additive, rtol=1e-9, atol=1e-12)
    for bad in (-1.0, float("nan"), "1"):
        with pytest.raises(Exception, match="arch_weight must be a finite number >= 0"):
            AccuracyProxy(space, table, arch_weight=bad)
