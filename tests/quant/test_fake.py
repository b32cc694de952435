import pytest
import torch

from hao.errors import ConfigError
from hao.quant import ActQuant, QConv2d, calibrate_activations, quantize_weight, quantize_weight_error


def test_weight_quant_levels_and_error_monotone():
    w = torch.randn(8, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    errs = [quantize_weight_error(w, b).item() for b in (2, 4, 6, 8)]
    assert errs == sorted(errs, reverse=True)
    q = quantize_weight(w, 4)
    for ch in range(8):  # per-channel symmetric: at most 2*7+1 levels, max |q| = max |w|
        assert q[ch].unique().numel() <= 15
        assert torch.isclose(q[ch].abs().max(), w[ch].abs().max())
    assert torch.equal(quantize_weight(w, 32), w)


def test_straight_through_gradient():
    w = torch.randn(4, 4, requires_grad=True)
    quantize_weight(w, 4).sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))


def test_activation_calibration_and_bits_validation():
    q = QConv2d(3, 4, 3, padding=1, w_bits=8, a_bits=8)
    data = [torch.rand(2, 3, 8, 8) * 5 for _ in range(3)]
    calibrate_activations(q, data)
    assert bool(q.act_quant.calibrated) and q.act_quant.hi.item() <= 5.0 and q.act_quant.hi.item() > 4.0
    assert q.training  # mode restored
    with pytest.raises(ConfigError, match=r"\[2, 8\] or 32"):
        ActQuant(1)
    with pytest.raises(ConfigError):
        QConv2d(3, 4, 3, w_bits=9)
