import math

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, hessian

from hao.errors import ConfigError
from hao.proxy import HessianTraces, hessian_traces, weight_layers


def exact_traces(model, x, y, names):
    """Exact Tr(H_ll) per parameter via torch.func.hessian (eval mode)."""
    was = model.training
    model.eval()
    rest = {n: t.detach() for n, t in list(model.named_parameters()) + list(model.named_buffers())}
    out = {}
    for name in names:
        p = rest[name]

        def f(w, name=name):
            return F.cross_entropy(functional_call(model, {**rest, name: w}, (x,)), y)

        H = hessian(f)(p).reshape(p.numel(), p.numel())
        out[name] = float(H.diagonal().sum())
    model.train(was)
    return out


def test_per_layer_traces_match_exact_within_std_error(tiny):
    model, x, y = tiny
    layers = weight_layers(model)
    assert set(layers) == {"conv", "fc1", "fc2"}
    exact = exact_traces(model, x, y, layers.values())
    r = hessian_traces(model, F.cross_entropy, (x, y), samples=400, seed=3, vectors_per_call=100,
                       method="forward_over_reverse")
    for path, pname in layers.items():
        lt = r[path]
        assert lt.samples == 400 and lt.numel == dict(model.named_parameters())[pname].numel()
        assert abs(lt.mean - exact[pname]) <= 4 * lt.std_error, (path, lt, exact[pname])
    assert abs(r.total - sum(exact.values())) <= 4 * r.total_se


def test_per_layer_traces_within_5_percent_with_enough_samples(tiny):
    model, x, y = tiny
    exact = exact_traces(model, x, y, weight_layers(model).values())
    r = hessian_traces(model, F.cross_entropy, (x, y), samples=20000, seed=0, vectors_per_call=1000,
                       method="forward_over_reverse")
    for path, pname in weight_layers(model).items():
        assert abs(r[path].mean / exact[pname] - 1) < 0.05, (path, r[path], exact[pname])
        assert r[path].rel_error < 0.05


def test_methods_agree_sample_by_sample(tiny):
    model, x, y = tiny
    a = hessian_traces(model, F.cross_entropy, (x, y), samples=12, seed=5, vectors_per_call=4,
                       method="double_backward")
    b = hessian_traces(model, F.cross_entropy, (x, y), samples=12, seed=5, vectors_per_call=4,
                       method="forward_over_reverse")
    c = hessian_traces(model, F.cross_entropy, (x, y), samples=12, seed=5, vectors_per_call=1,
                       method="double_backward")
    for la, lb, lc in zip(a, b, c):
        assert la.mean == pytest.approx(lb.mean, rel=1e-4, abs=1e-6)
        assert la.mean == pytest.approx(lc.mean, rel=1e-4, abs=1e-6)
        assert la.std_error == pytest.approx(lb.std_error, rel=1e-3, abs=1e-6)


def test_loader_averages_over_batches(tiny):
    model, x, y = tiny
    batches = [(x[:16], y[:16]), (x[16:], y[16:])]
    names = list(weight_layers(model).values())
    e1, e2 = exact_traces(model, *batches[0], names), exact_traces(model, *batches[1], names)
    r = hessian_traces(model, F.cross_entropy, batches, samples=2000, seed=1, vectors_per_call=250,
                       method="forward_over_reverse")
    assert r.info["batches"] == 2 and r.info["batch_visits"] == 8
    for path, pname in weight_layers(model).items():
        target = 0.5 * (e1[pname] + e2[pname])
        assert abs(r[path].mean - target) <= 4 * r[path].std_error, (path, r[path], target)


def test_tolerance_stops_early(tiny):
    model, x, y = tiny
    r = hessian_traces(model, F.cross_entropy, (x, y), samples=5000, tol=0.25, seed=0, vectors_per_call=8)
    assert r.info["converged"] is True
    assert r.samples < 5000
    assert all(lt.rel_error <= 0.25 for lt in r)


def test_model_left_exactly_as_it_was(tiny):
    model, x, y = tiny
    model.train()
    model.bn.eval()  # a mixed mode must survive too
    model.fc2.bias.requires_grad_(False)
    model.fc1.weight.grad = torch.full_like(model.fc1.weight, 7.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = {n: m.training for n, m in model.named_modules()}
    rng = torch.get_rng_state()
    for method in ("double_backward", "forward_over_reverse"):
        hessian_traces(model, F.cross_entropy, (x, y), samples=4, seed=0, method=method)
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert model.fc2.bias.requires_grad is False and model.fc1.weight.requires_grad is True
    assert torch.equal(model.fc1.weight.grad, torch.full_like(model.fc1.weight, 7.0))
    assert model.conv.weight.grad is None
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert torch.equal(torch.get_rng_state(), rng), "the global RNG must not be used"


def test_seed_reproducible_and_json_round_trip(tiny):
    model, x, y = tiny
    a = hessian_traces(model, F.cross_entropy, (x, y), samples=8, seed=11)
    b = hessian_traces(model, F.cross_entropy, (x, y), samples=8, seed=11)
    assert [lt.mean for lt in a] == [lt.mean for lt in b]
    c = HessianTraces.from_json(a.to_json())
    assert c == a
    assert c["fc1"].per_param == pytest.approx(a["fc1"].mean / a["fc1"].numel)
    with pytest.raises(KeyError, match="fc1"):
        a["nope"]


def test_matches_pyhessian_whole_model_trace(tiny):
    pyhessian = pytest.importorskip("pyhessian", reason="pyhessian not installed (pip install pyhessian)")
    model, x, y = tiny
    names = [n for n, _ in model.named_parameters()]
    ours = hessian_traces(model, F.cross_entropy, (x, y), samples=1500, seed=2, params=names,
                          vectors_per_call=250, method="forward_over_reverse")
    with torch.random.fork_rng():  # PyHessian draws from the global RNG; keep the test's RNG untouched
        torch.manual_seed(0)
        h = pyhessian.hessian(model, torch.nn.CrossEntropyLoss(), data=(x, y), cuda=False)
        vals = torch.tensor(h.trace(maxIter=1500, tol=-1.0), dtype=torch.float64)
    for p in model.parameters():
        p.grad = None
    ph_mean = float(vals.mean())
    ph_se = float(vals.std() / math.sqrt(len(vals)))
    assert len(vals) == 1500
    assert abs(ours.total - ph_mean) <= 4 * math.hypot(ours.total_se, ph_se), (ours.total, ours.total_se,
                                                                              ph_mean, ph_se)


@pytest.mark.parametrize("kw, match", [({"samples": 1}, "samples"), ({"method": "magic"}, "method"),
                                       ({"params": ["nope.weight"]}, "nope.weight"), ({"tol": -1.0}, "tol"),
                                       ({"vectors_per_call": 0}, "vectors_per_call")])
def test_bad_arguments_name_the_value(tiny, kw, match):
    model, x, y = tiny
    args = {"samples": 4} | kw
    with pytest.raises(ConfigError, match=match):
        hessian_traces(model, F.cross_entropy, (x, y), **args)


def test_bad_data_is_reported(tiny):
    model, _, _ = tiny
    with pytest.raises(ConfigError, match="empty"):
        hessian_traces(model, F.cross_entropy, [], samples=4)
    with pytest.raises(ConfigError, match="pair"):
        hessian_traces(model, F.cross_entropy, [torch.zeros(2, 1, 8, 8)], samples=4)
