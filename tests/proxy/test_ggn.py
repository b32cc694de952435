"""method="ggn": first-order Gauss-Newton sampling of per-layer weight and input-activation traces.

Ground truth: exact Hessians from ``torch.func.hessian`` on tiny piecewise-linear networks (where the
Gauss-Newton block equals the Hessian block), and the exact Gauss-Newton matrix Jᵀ A J on a smooth one."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, hessian, jacrev

from hao.errors import ConfigError
from hao.proxy import HessianTraces, hessian_traces, weight_layers


class ReluNet(nn.Module):
    """conv → BN (eval) → ReLU6 → linear → ReLU → linear, with a residual add: piecewise linear."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 3, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.fc1 = nn.Linear(144, 16)
        self.fc2 = nn.Linear(16, 16)
        self.head = nn.Linear(16, 3)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * (0.3 if p.dim() > 1 else 0.1))
            self.bn.weight.add_(1.0)
            self.bn.running_mean.copy_(torch.randn(4, generator=g) * 0.1)
            self.bn.running_var.copy_(torch.rand(4, generator=g) + 0.5)

    def forward(self, x):
        h = F.relu(self.fc1(F.relu6(2 * self.bn(self.conv(x))).flatten(1)))
        return self.head(h + F.relu(self.fc2(h)))   # residual: fc2's input also feeds the add


@pytest.fixture
def relu():
    g = torch.Generator().manual_seed(1)
    m = ReluNet().eval()
    return m, torch.randn(32, 1, 8, 8, generator=g), torch.randint(0, 3, (32,), generator=g)


def exact_weight_traces(model, loss, x, y):
    rest = {n: t.detach() for n, t in list(model.named_parameters()) + list(model.named_buffers())}
    out = {}
    for path, name in weight_layers(model).items():
        p = rest[name]
        H = hessian(lambda w, name=name: loss(functional_call(model, {**rest, name: w}, (x,)), y))(p)
        out[path] = float(H.reshape(p.numel(), p.numel()).diagonal().sum())
    return out


def exact_activation_traces(model, loss, x, y):
    """Tr of the Hessian w.r.t. a perturbation added to each layer's input (that layer's path only)."""
    mods, out = dict(model.named_modules()), {}
    for path in weight_layers(model):
        cap = {}
        h = mods[path].register_forward_pre_hook(lambda m, a: cap.setdefault("a", a[0].detach()))
        model(x)
        h.remove()

        def f(e, path=path):
            hk = mods[path].register_forward_pre_hook(lambda m, a: (a[0] + e,))
            try:
                return loss(model(x), y)
            finally:
                hk.remove()

        a0 = cap["a"]
        out[path] = float(hessian(f)(torch.zeros_like(a0)).detach().reshape(a0.numel(), -1).diagonal().sum())
    return out


def test_ggn_equals_exact_hessian_traces_on_piecewise_linear_net(relu):
    model, x, y = relu
    exact_w = exact_weight_traces(model, F.cross_entropy, x, y)
    exact_a = exact_activation_traces(model, F.cross_entropy, x, y)
    r = hessian_traces(model, F.cross_entropy, (x, y), samples=3000, seed=0, vectors_per_call=250, method="ggn",
                       activations=True)
    assert [a.path for a in r.activations] == list(weight_layers(model))
    for lt in r:
        assert lt.mean >= 0 and abs(lt.mean - exact_w[lt.path]) <= 4 * lt.std_error, (lt, exact_w[lt.path])
        assert lt.rel_error < 0.05
    for lt in r.activations:
        assert abs(lt.mean - exact_a[lt.path]) <= 4 * lt.std_error, (lt, exact_a[lt.path])
    assert r.activations[0].numel == 64 and r.activations[-1].numel == 16   # elements per sample
    assert abs(r.total - sum(exact_w.values())) <= 4 * r.total_se


def test_ggn_agrees_with_hutchinson_double_backward(relu):
    model, x, y = relu
    a = hessian_traces(model, F.cross_entropy, (x, y), samples=2000, seed=1, vectors_per_call=250, method="ggn")
    b = hessian_traces(model, F.cross_entropy, (x, y), samples=2000, seed=1, vectors_per_call=250,
                       method="forward_over_reverse")
    for la, lb in zip(a, b):
        assert abs(la.mean - lb.mean) <= 4 * (la.std_error ** 2 + lb.std_error ** 2) ** 0.5, (la, lb)


def test_ggn_is_the_gauss_newton_part_on_a_smooth_net(tiny):
    """TinyNet uses tanh: there the estimator is Tr(Jᵀ A J), not Tr(H) — checked against the exact GGN."""
    model, x, y = tiny
    model.eval()
    rest = {n: t.detach() for n, t in list(model.named_parameters()) + list(model.named_buffers())}
    with torch.no_grad():
        p = torch.softmax(model(x), 1)
    n = x.shape[0]
    A = (torch.diag_embed(p) - p[:, :, None] * p[:, None, :]) / n        # (N, C, C) output Hessian blocks
    r = hessian_traces(model, F.cross_entropy, (x, y), samples=3000, seed=2, vectors_per_call=250, method="ggn")
    for path, name in weight_layers(model).items():
        w = rest[name]
        J = jacrev(lambda v, name=name: functional_call(model, {**rest, name: v}, (x,)))(w).reshape(n, 3, -1)
        ggn = float(torch.einsum("nci,ncd,ndi->", J, A, J))
        assert abs(r[path].mean - ggn) <= 4 * r[path].std_error, (path, r[path], ggn)


def test_ggn_generic_loss_uses_the_output_hessian(relu):
    """A loss other than cross-entropy: the output Hessian is factorized numerically (here MSE)."""
    model, x, _ = relu
    target = torch.randn(32, 3, generator=torch.Generator().manual_seed(3))
    exact = exact_weight_traces(model, F.mse_loss, x, target)
    r = hessian_traces(model, F.mse_loss, (x, target), samples=2000, seed=0, vectors_per_call=250, method="ggn")
    for lt in r:
        assert abs(lt.mean - exact[lt.path]) <= 4 * lt.std_error, (lt, exact[lt.path])


def test_ggn_leaves_model_untouched_and_round_trips(relu):
    model, x, y = relu
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    r = hessian_traces(model, F.cross_entropy, (x, y), samples=8, seed=0, method="ggn", activations=True)
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(not m._forward_pre_hooks for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    back = HessianTraces.from_json(r.to_json())
    assert back == r and len(back.activations) == 4
    again = hessian_traces(model, F.cross_entropy, (x, y), samples=8, seed=0, method="ggn", activations=True)
    assert again.activations == r.activations and again.layers == r.layers


def test_ggn_errors_name_the_fix(relu):
    model, x, y = relu
    with pytest.raises(ConfigError, match="method='ggn'"):
        hessian_traces(model, F.cross_entropy, (x, y), samples=4, activations=True, method="double_backward")
    big_x = torch.randn(1400, 1, 8, 8)
    with pytest.raises(ConfigError, match="at most 4096"):
        hessian_traces(model, F.mse_loss, (big_x, torch.randn(1400, 3)), samples=4, method="ggn")
    with pytest.raises(ConfigError, match="module path"):
        hessian_traces(model, F.cross_entropy, (x, y), samples=4, method="ggn", activations=True,
                       params=["fc1.weight"])
