"""The exact evaluation path: accumulators of integer codes computed by float32 kernels yet exact, the element-wise
part in float64 (``hao.quant.exact_copy``), checked against plain float64 arithmetic."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hao.quant import QConv2d, QLinear, calibrate_activations, exact_copy
from hao.quant.fake import exact_codes_op


def _codes(shape, lo, hi, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(lo, hi + 1, shape, generator=g).double()


@pytest.mark.parametrize("c_in,k,x_range,w_bits", [
    (8, 3, (-3, 12), 4),       # small bound: one float32 kernel
    (64, 3, (-128, 127), 8),   # 576 x 255 x 127 > 2**24: split into two halves
    (96, 5, (0, 255), 8),      # 2400-term sums at 8 bits: split
])
def test_exact_codes_conv_equals_float64(c_in, k, x_range, w_bits):
    qmax = 2 ** (w_bits - 1) - 1
    x = _codes((2, c_in, 9, 9), *x_range, seed=1)
    # the worst case for float32: every code at its extreme, so partial sums run far beyond 2**24
    x[0] = x_range[1]
    w = _codes((16, c_in, k, k), -qmax, qmax, seed=2)
    w[0] = qmax

    def op(a, b):
        return F.conv2d(a, b, None, 1, k // 2)

    got = exact_codes_op(op, x, w, c_in * k * k, qmax)
    want = op(x, w)  # float64: exact for these integer sums (all far below 2**53)
    assert got.dtype == torch.float64
    assert torch.equal(got, want)
    if c_in * k * k * max(abs(v) for v in x_range) * qmax >= 2 ** 24:
        # the plain float32 kernel is not exact here, which is why the split exists
        assert not torch.equal(op(x.float(), w.float()).double(), want)


def test_exact_codes_linear_huge_fan_in_falls_back_to_float64():
    x = _codes((3, 20000), 0, 255, seed=3)
    w = _codes((5, 20000), -127, 127, seed=4)
    got = exact_codes_op(F.linear, x, w, 20000, 127)
    assert torch.equal(got, F.linear(x, w))


def _tiny_net():
    torch.manual_seed(0)
    net = nn.Sequential(QConv2d(3, 64, 3, padding=1, w_bits=8, a_bits=8), nn.BatchNorm2d(64), nn.ReLU6(),
                        QConv2d(64, 32, 3, padding=1, w_bits=2, a_bits=4), nn.BatchNorm2d(32), nn.ReLU6(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), QLinear(32, 10, w_bits=4, a_bits=8))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
    net.eval()
    g = torch.Generator().manual_seed(5)
    calibrate_activations(net, [torch.randn(16, 3, 12, 12, generator=g)])
    return net


def test_exact_copy_fast_path_equals_float64_network(monkeypatch):
    net = _tiny_net()
    x = torch.randn(8, 3, 12, 12, generator=torch.Generator().manual_seed(6)).double()
    m64 = exact_copy(net)
    with torch.no_grad():
        fast = m64(x)
        # the same network with every accumulator computed by float64 kernels
        import hao.quant.fake as fq
        monkeypatch.setattr(fq, "exact_codes_op", lambda op, xc, wc, fan_in, w_absmax: op(xc.double(), wc.double()))
        slow = m64(x)
        f32 = net(x.float())
    assert fast.dtype == torch.float64
    assert torch.equal(fast, slow)
    assert torch.allclose(f32.double(), fast, atol=1e-4)  # float32 path: same network, up to rounding
