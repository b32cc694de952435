import pytest
import torch
import torch.nn.functional as F

from hao.errors import ConfigError
from hao.proxy import distill_batch, float_weights, hessian_traces
from hao.quant import ActQuant
from hao.train import evaluate, evaluate_full, prepare_subnet, recalibrate_bn


def test_zeroq_matches_bn_statistics_and_leaves_model(tiny):
    model, x, y = tiny
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    xd, yd, info = distill_batch(model, 24, (1, 8, 8), steps=60, seed=0)
    assert xd.shape == (24, 1, 8, 8) and yd.shape == (24,)
    assert info["bn_loss_final"] < 0.5 * info["bn_loss_initial"]
    assert model.training and all(p.grad is None and p.requires_grad for p in model.parameters())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng)
    xd2, _, _ = distill_batch(model, 24, (1, 8, 8), steps=60, seed=0)
    assert torch.equal(xd, xd2)
    r = hessian_traces(model, F.cross_entropy, (xd, yd), samples=8, seed=0)
    assert len(r) == 3


def test_zeroq_needs_batchnorm():
    m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    with pytest.raises(ConfigError, match="BatchNorm"):
        distill_batch(m, 4, (1, 2, 2), steps=1)


def test_recalibrate_bn_is_exact_average_and_restores_mode(tiny):
    model, x, y = tiny
    model.eval()
    n = recalibrate_bn(model, [(x[:16], y[:16]), (x[16:], y[16:])])
    assert n == 32 and not model.training and model.bn.momentum == 0.1
    a = model.conv(x)
    assert torch.allclose(model.bn.running_mean, a.mean((0, 2, 3)), atol=1e-5)
    with pytest.raises(ConfigError, match="no batches"):
        recalibrate_bn(model, [])


def test_evaluate_accuracy_and_error(tiny):
    model, x, y = tiny
    model.train()
    acc = evaluate(model, [(x, y)])
    manual = float((model.eval()(x).argmax(1) == y).float().mean())
    model.train()
    assert acc == pytest.approx(manual) and model.training
    r = evaluate_full(model, [(x[:10], y[:10]), (x[10:], y[10:])])
    assert r.n == 32 and r.accuracy == pytest.approx(manual) and 0 < r.accuracy_se < 0.2
    with pytest.raises(ConfigError, match="empty"):
        evaluate(model, [])


def test_prepare_subnet_and_float_weights():
    from hao.space.mbconv import MBConvSpace
    sp = MBConvSpace("t", input_shape=(1, 8, 8), stem_channels=4, stages=((4, 1),), depths=(1,), kernel_sizes=(3,),
                     ratios=(2,), w_bits=(2, 8), a_bits=(4,), head_channels=8, num_classes=3)
    net = sp.supernet(0)
    sub = sp.build(sp.uniform(2, 4), net)
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(8, 1, 8, 8, generator=g) for _ in range(2)]
    prepare_subnet(sub, batches)
    assert all(bool(m.calibrated) for m in sub.modules() if isinstance(m, ActQuant))
    bits = [m.bits for m in net.modules() if isinstance(m, ActQuant)]
    with float_weights(net):
        assert all(m.bits == 32 for m in net.modules() if isinstance(m, ActQuant))
        assert net.classifier.w_bits == 32
    assert [m.bits for m in net.modules() if isinstance(m, ActQuant)] == bits and net.classifier.w_bits == 8
