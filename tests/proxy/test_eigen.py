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
