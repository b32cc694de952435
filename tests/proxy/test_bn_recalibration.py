"""Traces are taken with the traced sub-network's own BatchNorm statistics: a supernet whose stored running
statistics are wrong gives the same traces (and activation statistics) as one whose statistics are right, once
hao traces it — and the caller's statistics are left as they were."""
import numpy as np
import torch
from torch import nn

from hao.proxy import compute_sensitivity, supernet_traces
from hao.space.mbconv import MBConvSpace
from hao.train import recalibrated_bn


def _space():
    return MBConvSpace("tiny-bn", input_shape=(1, 8, 8), stem_channels=4, stages=((8, 1),), depths=(1, 2),
                       kernel_sizes=(3,), ratios=(2,), w_bits=(8,), a_bits=(8,), head_channels=8)


def _data(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g))]


def _bn_state(net):
    return [{k: v.clone() for k, v in m.state_dict().items()} for m in net.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def _corrupt(net):
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.add_(3.0)
                m.running_var.mul_(40.0)


def test_stale_statistics_do_not_change_the_traces():
    space, data = _space(), _data()
    good, bad = space.supernet(0), space.supernet(0)
    with recalibrated_bn(good, data):  # "right" statistics for the traced sub-network... then restored
        pass
    _corrupt(bad)
    kept = _bn_state(bad)
    t_good = supernet_traces(space, good, data, samples=8, seed=0)
    t_bad = supernet_traces(space, bad, data, samples=8, seed=0)
    for a, b in zip(t_good, t_bad):
        assert a.path == b.path and np.isclose(a.mean, b.mean, rtol=1e-5, atol=1e-9), (a.path, a.mean, b.mean)
    for a, b in zip(_bn_state(bad), kept):  # the caller's (wrong) statistics are restored
        assert all(torch.equal(a[k], b[k]) for k in a)
    # without recalibration the stale statistics do change them (the bug this guards against)
    t_stale = supernet_traces(space, bad, data, samples=8, seed=0, recalibrate=False)
    assert not np.allclose([t.mean for t in t_stale], [t.mean for t in t_good], rtol=0.05)


def test_sensitivity_activation_statistics_use_recalibrated_bn():
    space, data = _space(), _data(seed=2)
    good, bad = space.supernet(0), space.supernet(0)
    _corrupt(bad)
    a = compute_sensitivity(space, good, data, samples=4, seed=0)
    b = compute_sensitivity(space, bad, data, samples=4, seed=0)
    stale = compute_sensitivity(space, bad, data, samples=4, seed=0, recalibrate=False)
    assert a.activations.keys() == b.activations.keys() and a.activations
    va, vb, vs = ([x for p in sorted(t.activations) for x in _flat(t.activations[p])] for t in (a, b, stale))
    assert len(va) > 10 and np.allclose(va, vb, rtol=1e-5, atol=1e-12)
    assert not np.allclose(va, vs, rtol=1e-3)  # the stale statistics would have changed them


def _flat(v):
    if isinstance(v, dict):
        for x in v.values():
            yield from _flat(x)
    elif isinstance(v, (list, tuple)):
        for x in v:
            yield from _flat(x)
    elif isinstance(v, (int, float)):
        yield float(v)
