"""Q-BERT's top-eigenvalue sensitivity against exact Hessian blocks of a tiny network."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hao.errors import ConfigError
from hao.proxy.eigen import qbert_sensitivity, top_eigenvalues


def _net() -> nn.Module:
    with torch.random.fork_rng():          # nn.Linear initialises from the global RNG: leave it as it was
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()


def _exact_top(model: nn.Module, name: str, x: torch.Tensor, y: torch.Tensor) -> float:
    from torch.func import functional_call
    params = dict(model.named_parameters())
    w0 = params[name].detach()

    def loss(flat: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(model, {**params, name: flat.reshape(w0.shape)}, (x,)), y)

    h = torch.autograd.functional.hessian(loss, w0.reshape(-1))
    ev = torch.linalg.eigvalsh(h)
    return float(ev[ev.abs().argmax()])


def test_power_iteration_finds_each_layers_top_eigenvalue_per_batch():
    model = _net()
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(16, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (16,), generator=g))
               for _ in range(3)]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    eig = top_eigenvalues(model, F.cross_entropy, batches, iters=2000, tol=1e-12, seed=0)
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert set(eig) == {"0", "2"}
    for path, name in (("0", "0.weight"), ("2", "2.weight")):
        exact = [_exact_top(model, name, x, y) for x, y in batches]
        assert eig[path].per_batch == pytest.approx(exact, rel=1e-6)
        m = sum(exact) / 3
        sd = (sum((v - m) ** 2 for v in exact) / 3) ** 0.5
        assert qbert_sensitivity(eig)[path] == pytest.approx(m + sd, rel=1e-6)
    again = top_eigenvalues(model, F.cross_entropy, batches, iters=2000, tol=1e-12, seed=0)
    assert again["0"].iterations == eig["0"].iterations                 # seeded: same start vectors


def test_bad_arguments_name_the_fix():
    model = _net()
    data = (torch.randn(4, 4, dtype=torch.float64), torch.tensor([0, 1, 2, 0]))
    with pytest.raises(ConfigError, match="iters must be an int >= 1"):
        top_eigenvalues(model, F.cross_entropy, data, iters=0)
    with pytest.raises(ConfigError, match="not conv/linear layers"):
        top_eigenvalues(model, F.cross_entropy, data, layers=["1"])


def test_eigen_traces_make_the_per_parameter_curvature_qberts_sensitivity():
    from hao.proxy.eigen import LayerEigen, eigen_traces
    eig = {"a": LayerEigen("a", (2.0, 4.0), (5, 7), 10), "b": LayerEigen("b", (1.0,), (3,), 4)}
    tr = eigen_traces(eig)
    assert tr["a"].per_param == pytest.approx(3.0 + 1.0)       # mean 3, population std 1
    assert tr["b"].per_param == pytest.approx(1.0)
    assert tr.total == pytest.approx(40.0 + 4.0)
    assert tr.info["method"] == "qbert_top_eigenvalue" and not tr.activations
    with pytest.raises(ConfigError, match="at least one layer"):
        eigen_traces({})


def test_eigen_sensitivity_table_scores_bits_by_eigenvalue_times_weight_error():
    """On vit-fmnist's (untrained) supernet: the eigen table's Ω of a layer is max(mean+std λ, 0)·‖ΔW‖² of that
    layer (‖ΔW‖² of the group-wise quantizer), and the proxy built on it charges lower bits more."""
    from hao.proxy import AccuracyProxy, eigen_sensitivity
    from hao.proxy.eigen import qbert_sensitivity, top_eigenvalues
    from hao.proxy.sensitivity import float_weights, layer_weights, perturbation_sq_norm
    from hao.space import get_space
    from hao.space.base import LayerPerturbation
    space = get_space("vit-fmnist")
    net = space.supernet(seed=0)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(8, 1, 28, 28, generator=g), torch.randint(0, 10, (8,), generator=g)) for _ in range(2)]
    table = eigen_sensitivity(space, net, batches, iters=8, tol=1e-3, seed=0)
    assert table.activations is None and table.traces.info["method"] == "qbert_top_eigenvalue"
    with space.activated(net, space.largest()), float_weights(net):
        eig = top_eigenvalues(net, F.cross_entropy, batches, iters=8, tol=1e-3, seed=0)
    sens = qbert_sensitivity(eig)
    w = layer_weights(net)
    checked = 0
    for path in ("blocks.0.mlp.fc1", "blocks.1.attn.q", "blocks.2.mlp.fc2"):
        p = LayerPerturbation(path, w_bits=4, a_bits=8)
        expect = max(sens[path], 0.0) * perturbation_sq_norm(w[path], p)
        assert table.omega_weights(p) == pytest.approx(expect, rel=1e-4)
        checked += sens[path] > 0
    assert checked >= 1                                  # at least one layer with a positive top eigenvalue
    s = AccuracyProxy(space, table).score([space.uniform(8, 8), space.uniform(2, 4)])
    assert s[1] > s[0]
