"""Group-wise (Q-BERT) weight quantization: ranges per group, the per-channel limit, and the outlier head."""
from __future__ import annotations

import pytest
import torch

from hao.errors import ConfigError
from hao.quant import quantize_weight
from hao.quant.groupwise import group_scales, grouped_weight_error, quantize_weight_grouped


def _heads(outlier: float = 20.0, heads: int = 4, head_dim: int = 16, d: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(heads * head_dim, d, generator=g) * 0.05
    w[:head_dim] *= outlier  # one head's weights are much larger (as after training, some heads are)
    return w


def test_per_head_groups_lose_less_with_an_outlier_head():
    w = _heads()
    for bits in (8, 4, 2):
        whole = grouped_weight_error(w, bits, 1)
        per_head = grouped_weight_error(w, bits, 4)
        two_per_head = grouped_weight_error(w, bits, 8)
        assert two_per_head <= per_head <= whole
        if bits == 8:
            assert per_head < 0.5 * whole
        if bits >= 4:  # what the outlier took away from the other heads (at 2 bits, ±1 codes lose them anyway)
            rest = w[16:]
            err_rest_whole = (quantize_weight_grouped(w, bits, 1)[16:] - rest).pow(2).sum()
            err_rest_head = (quantize_weight_grouped(w, bits, 4)[16:] - rest).pow(2).sum()
            assert err_rest_head < 0.05 * err_rest_whole


def test_groups_equal_rows_is_per_channel_and_codes_are_on_the_group_grid():
    w = _heads(outlier=3.0)
    assert torch.equal(quantize_weight_grouped(w, 4, w.shape[0]), quantize_weight(w, 4))
    q = quantize_weight_grouped(w, 4, 4)
    s = group_scales(w, 4, 4).repeat_interleave(16)[:, None]
    codes = q / s
    assert torch.allclose(codes, codes.round(), atol=1e-4) and codes.abs().max() <= 7
    # axis 1: the output projection reads heads along its input columns
    qt = quantize_weight_grouped(w.t().contiguous(), 4, 4, axis=1)
    assert torch.equal(qt, q.t())


def test_straight_through_gradient_and_float():
    w = _heads().requires_grad_()
    quantize_weight_grouped(w, 4, 4).sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))
    assert quantize_weight_grouped(w, 32, 4) is w


@pytest.mark.parametrize("groups,axis,match", [(3, 0, "must divide the 64 rows"), (0, 0, "must divide"),
                                               (4, 2, "axis must be 0")])
def test_bad_groups_name_the_valid_values(groups, axis, match):
    with pytest.raises(ConfigError, match=match):
        quantize_weight_grouped(_heads(), 4, groups, axis)
