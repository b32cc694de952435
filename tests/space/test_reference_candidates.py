"""largest / smallest / uniform and the supernet protocol of the SearchSpace base class, per family."""
import numpy as np
import pytest
import torch

from hao.errors import CandidateError, ConfigError
from hao.search.tabular import TabularSpace
from hao.space import Decision, Gate, Unit, get_space
from hao.space.base import BIT_KINDS, Supernet
from hao.space.mbconv import MBConvSpace
from hao.space.quantize_only import QuantizeOnlySpace
from hao.space.resnet import ResNetSpace
from hao.testing import check_space
from hao.train import smallest_candidate


def _tiny_mbconv():
    return MBConvSpace("mb-ref", input_shape=(1, 8, 8), stem_channels=4, stages=((8, 1), (8, 2)), depths=(1, 2),
                       kernel_sizes=(3, 5), ratios=(2, 3), w_bits=(2, 4, 8), a_bits=(4, 8), head_channels=8)


def _tiny_resnet():
    return ResNetSpace("rn-ref", input_shape=(1, 8, 8), stem_channels=4, stages=((4, 1), (8, 2)), depths=(1, 2),
                       ratios=(50, 100), w_bits=(4, 8), a_bits=(4, 8))


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv1 = torch.nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.bn = torch.nn.BatchNorm2d(4)
        self.conv2 = torch.nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(4, 3)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)

    def forward(self, x):
        x = torch.relu(self.conv2(torch.relu(self.bn(self.conv1(x)))))
        return self.fc(torch.flatten(self.pool(x), 1))


def _tiny_quant(a_bits=None):
    return QuantizeOnlySpace("q-ref", _Net(), (1, 8, 8), bits=(2, 4, 8), a_bits=a_bits, pin_first_last=False)


def _old_mbconv_largest(sp):
    """The hand-written MBConvSpace.largest() the generic base-class version replaced."""
    d = {f"s{s}.depth": sp.max_depth for s in range(len(sp.stages))}
    for s in range(len(sp.stages)):
        for b in range(sp.max_depth):
            p = f"s{s}.b{b}"
            d[f"{p}.kernel"], d[f"{p}.ratio"] = max(sp.kernel_sizes), max(sp.ratios)
            for layer in ("expand", "dw", "project"):
                d[f"{p}.{layer}.w_bits"], d[f"{p}.{layer}.a_bits"] = max(sp.w_bits), max(sp.a_bits)
    return sp.make(d)


def _old_smallest_candidate(space, rng=None):
    """The hand-written hao.train.smallest_candidate that now calls space.smallest()."""
    d = {}
    for dec in space.decisions():
        if dec.kind in ("w_bits", "a_bits", "bits"):
            d[dec.name] = int(min(dec.options)) if rng is None else int(dec.options[rng.integers(len(dec.options))])
        else:
            d[dec.name] = int(min(dec.options))
    return space.make(d)


@pytest.mark.parametrize("name", ["mbconv-fmnist", "mbconv-apq224", "resnet-fmnist", "resnet-cifar"])
def test_generic_largest_matches_the_old_definitions(name):
    sp = get_space(name)
    big = sp.largest()
    assert all(big[d.name] == max(d.options) for d in sp.decisions())
    if isinstance(sp, MBConvSpace):
        assert big == _old_mbconv_largest(sp)
    assert sp.smallest() == sp.make({d.name: min(d.options) for d in sp.decisions()})


@pytest.mark.parametrize("factory", [_tiny_mbconv, _tiny_resnet, _tiny_quant, lambda: _tiny_quant((4, 8))],
                         ids=["mbconv", "resnet", "quant-tied", "quant-wa"])
def test_smallest_candidate_is_a_thin_caller_with_the_same_rng_draws(factory):
    sp = factory()
    assert smallest_candidate(sp) == sp.smallest() == _old_smallest_candidate(sp)
    for seed in range(5):
        r1, r2 = np.random.default_rng(seed), np.random.default_rng(seed)
        assert smallest_candidate(sp, r1) == _old_smallest_candidate(sp, r2)
        assert r1.bit_generator.state == r2.bit_generator.state  # same number of draws: training RNG unchanged


def test_uniform_keeps_the_mbconv_signature_and_names_bad_bits():
    sp = _tiny_mbconv()
    u = sp.uniform(4, 8)
    kinds = {d.name: d.kind for d in sp.decisions()}
    assert all(v == {"w_bits": 4, "a_bits": 8}.get(kinds[k], sp.largest()[k]) for k, v in u.choices)
    small = sp.uniform(2, 4, kernel=3, ratio=2, depth=1)
    assert small["s0.depth"] == 1 and small["s0.b0.kernel"] == 3 and small["s0.b0.ratio"] == 2
    assert small["s1.b0.dw.w_bits"] == 2 and small["s1.b0.dw.a_bits"] == 4
    with pytest.raises(CandidateError, match=r"w_bits=6.*\[2, 4, 8\]"):
        sp.uniform(6, 8)
    with pytest.raises(CandidateError, match=r"a_bits=2.*\[4, 8\]"):
        sp.uniform(8, 2)


def test_uniform_on_tied_bits_needs_equal_values():
    sp = _tiny_quant()
    assert all(v == 4 for _, v in sp.uniform(4, 4).choices)
    with pytest.raises(CandidateError, match="ties activation bits to weight bits"):
        sp.uniform(8, 4)


def test_quantize_only_activate_validates_and_keeps_the_float_model():
    sp = _tiny_quant((4, 8))
    net = sp.supernet(0)
    assert not isinstance(net, Supernet)
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    net.eval()
    with torch.no_grad():
        before = net(x)
        with sp.activated(net, sp.smallest()):
            assert torch.equal(net(x), before)  # one architecture; the bits only exist in build()
    with pytest.raises(CandidateError):
        sp.activate(net, _tiny_mbconv().largest())


def test_activate_refuses_a_module_that_is_not_a_supernet():
    sp = _tiny_resnet()
    with pytest.raises(ConfigError, match=r"no set_active.*space.supernet\(seed\)"):
        sp.activate(torch.nn.Linear(2, 2), sp.largest())


def test_activated_restores_the_previous_candidate():
    sp = _tiny_resnet()
    net = sp.supernet(0)
    before = net.active
    assert isinstance(net, Supernet) and before != sp.largest()
    with sp.activated(net, sp.largest()):
        assert net.active == sp.largest()
    assert net.active == before


def test_tabular_space_has_reference_candidates_but_no_network():
    decs = [Decision("g", (1, 2), "depth"), Decision("u0.bits", (4, 8), "bits"), Decision("u1.w", (2, 8), "width")]
    units = [Unit("u0", ("u0.bits",)), Unit("u1", ("u1.w",), Gate("g", frozenset({2})))]
    sp = TabularSpace("tab-ref", decs, units)
    assert not sp.has_supernet
    assert sp.largest().as_dict() == {"g": 2, "u0.bits": 8, "u1.w": 8}
    assert sp.smallest().as_dict() == {"g": 1, "u0.bits": 4, "u1.w": 2}
    assert sp.uniform(4, 4).as_dict() == {"g": 2, "u0.bits": 4, "u1.w": 8}
    check_space(sp, n=20)  # skips the network checks
    with pytest.raises(ConfigError, match="no network"):
        sp.activate(object(), sp.largest())


def test_bit_kinds_are_the_ones_the_spaces_use():
    kinds = {d.kind for name in ("mbconv-fmnist", "resnet-fmnist") for d in get_space(name).decisions()}
    assert {"w_bits", "a_bits"} <= kinds <= set(BIT_KINDS) | {"depth", "kernel", "expand", "width"}
