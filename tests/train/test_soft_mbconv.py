"""The relaxed MBConv supernet (DMasking): at one-hot choices it is exactly the chosen sub-network."""
import copy

import numpy as np
import pytest
import torch

from hao.quant import ActQuant
from hao.search.soft import DecisionLogits
from hao.space.mbconv import MBConvSpace
from hao.train.soft_mbconv import SoftMBConv


@pytest.fixture(scope="module")
def tiny():
    space = MBConvSpace("tiny-soft", input_shape=(1, 12, 12), stem_channels=8, stages=((8, 1), (12, 2)),
                        depths=(1, 2), kernel_sizes=(3, 5), ratios=(2, 3), w_bits=(2, 8, 32), a_bits=(4, 8, 32),
                        head_channels=16)
    net = space.supernet(seed=0)
    for m in net.modules():
        if isinstance(m, ActQuant):
            m.calibrated.fill_(False)
    return space, net


def test_one_hot_soft_forward_is_the_subnetwork(tiny):
    space, net = tiny
    x = torch.randn(6, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    lg = DecisionLogits(space)
    rng = np.random.default_rng(0)
    for _ in range(4):
        cand = space.sample(rng)
        ref = copy.deepcopy(net)
        ref.set_active(cand)
        ref.train()
        with torch.no_grad():
            want = ref(x)
            got = SoftMBConv(net, space)(x, lg.one_hot(cand))
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-5), (cand, (got - want).abs().max())


def test_soft_forward_has_gradients_for_every_decision(tiny):
    space, net = tiny
    lg = DecisionLogits(space)
    x = torch.randn(4, 1, 12, 12, generator=torch.Generator().manual_seed(2))
    out = SoftMBConv(net, space)(x, lg.probs(1.0, torch.Generator().manual_seed(3)))
    out.logsumexp(1).sum().backward()
    missing = [n for n, p in zip(lg.names, lg.logits) if p.grad is None or not torch.any(p.grad != 0)]
    assert not missing, missing
