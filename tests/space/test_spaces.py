"""Every registered space passes the conformance battery; sizes match brute force on shrunken instances."""
import json

import numpy as np
import pytest
import torch

from hao.errors import CandidateError, ConfigError
from hao.space import Candidate, get_space, list_spaces, register_space
from hao.space.mbconv import MBConvSpace
from hao.space.resnet import ResNetSpace
from hao.space.quantize_only import QuantizeOnlySpace
from hao.testing import brute_force_size, check_space, invalid_candidates

# Smaller inputs keep the big quantize-only models fast; structure and sizes do not depend on them.
FAST_KWARGS = {n: {"input_shape": (3, 64, 64)} for n in ("quant-resnet18", "quant-resnet50", "quant-mobilenetv2",
                                                          "mbconv-apq224", "ofa-mbv3-224", "ofa-mbv3-w12-224")}


def test_expected_spaces_registered():
    names = list_spaces()
    for n in ("mbconv-fmnist", "mbconv-cifar", "resnet-cifar", "quant-resnet18"):
        assert n in names


@pytest.mark.parametrize("name", list_spaces())
def test_conformance(name):
    space = get_space(name, **FAST_KWARGS.get(name, {}))
    check_space(space, n=200, seed=0, forward=2)


def test_mbconv_size_at_least_1e15():
    assert get_space("mbconv-fmnist").size() >= 10**15
    assert isinstance(get_space("mbconv-fmnist").size(), int)


SHRUNK = [
    MBConvSpace("mb-tiny", input_shape=(1, 8, 8), stem_channels=4, stages=((8, 1), (8, 2)), depths=(1, 2),
                kernel_sizes=(3, 5), ratios=(2,), w_bits=(4, 8), a_bits=(8,), head_channels=8),
    MBConvSpace("mb-tiny2", input_shape=(3, 8, 8), stem_channels=4, stages=((4, 2),), depths=(2, 3),
                kernel_sizes=(3,), ratios=(1, 2), w_bits=(2, 8), a_bits=(8,), head_channels=8),
    ResNetSpace("rn-tiny", input_shape=(3, 8, 8), stem_channels=4, stages=((4, 1), (8, 2)), depths=(1, 2),
                ratios=(50, 100), w_bits=(4, 8), a_bits=(8,)),
]


@pytest.mark.parametrize("space", SHRUNK, ids=lambda s: s.name)
def test_size_equals_brute_force(space):
    assert space.size() == brute_force_size(space)
    assert space.size() == sum(1 for _ in space.enumerate())
    check_space(space, n=50, forward=3)


def test_quantize_only_size_brute_force():
    from hao.models import resnet18
    from hao.space.quantize_only import downsample_ties
    m = resnet18()
    sp = QuantizeOnlySpace("q18", m, (3, 32, 32), bits=(4, 8), ties=downsample_ties(m))
    # 21 layers, 2 pinned, 3 ties -> 16 free units of 2 options
    assert sp.size() == 2 ** 16 == brute_force_size(sp)


@pytest.mark.parametrize("case", range(8))
def test_invalid_candidates_raise_one_clear_error(case):
    space = get_space("mbconv-fmnist")
    cases = invalid_candidates(space, np.random.default_rng(0))
    label, bad = cases[case]
    with pytest.raises(CandidateError) as err:
        if isinstance(bad, str):
            space.candidate_from_json(bad)
        else:
            space.validate(bad)
    msg = str(err.value)
    assert len(msg) > 20
    if label == "bad kernel size":
        assert "kernel" in msg and "[3, 5, 7]" in msg
    if label == "bits not allowed":
        assert "allowed values" in msg
    if label == "missing decision":
        assert "missing" in msg


def test_unknown_space_lists_known_names():
    with pytest.raises(ConfigError) as err:
        get_space("mbconv-fmnits")
    assert "mbconv-fmnist" in str(err.value)


def test_user_registered_space_and_folder_discovery(tmp_path, monkeypatch):
    @register_space("user-tiny-test", family="mbconv", overwrite=True)
    def _factory(**kw):
        return MBConvSpace("user-tiny-test", input_shape=(1, 8, 8), stages=((8, 1),), depths=(1,), **kw)

    assert "user-tiny-test" in list_spaces()
    (tmp_path / "my_space.py").write_text(
        "from hao.space import register_space\nfrom hao.space.resnet import ResNetSpace\n"
        "@register_space('folder-space-test', family='resnet', overwrite=True)\n"
        "def f(**kw):\n    return ResNetSpace('folder-space-test', stages=((8, 1),), depths=(1,))\n")
    monkeypatch.setenv("HAO_SEARCH_SPACES", str(tmp_path))
    from hao.space.registry import discover_spaces
    discover_spaces(force=True)
    assert get_space("folder-space-test").size() == 3 * 3 * 2 * 3 * 2


def test_candidate_json_roundtrip_and_canonical():
    sp = get_space("mbconv-fmnist")
    c = sp.sample(np.random.default_rng(3))
    assert Candidate.from_json(c.to_json()) == c
    d = json.loads(c.to_json())
    assert d["space"] == "mbconv-fmnist" and len(d["choices"]) == len(sp.decision_names)
    # switching a stage to its minimum depth makes the decisions of the dropped blocks irrelevant
    small = sp.canonical(c.replace(**{"s0.depth": 2, "s0.b3.kernel": 7}))
    assert small == sp.canonical(c.replace(**{"s0.depth": 2, "s0.b3.kernel": 3}))


def test_build_shares_supernet_weights_and_keeps_supernet_state():
    sp = get_space("mbconv-fmnist")
    sup = sp.supernet(0)
    before = sup.active
    c = sp.sample(np.random.default_rng(1))
    net = sp.build(c, sup)
    assert sup.active == before
    k = c["s0.b0.kernel"]
    w = sup.stages[0][0].dw.conv.weight
    mid = net.stages[0][0].dw.conv.out_channels
    off = (7 - k) // 2
    assert torch.equal(net.stages[0][0].dw.conv.weight, w[:mid, :, off:off + k, off:off + k])
    # the supernet's forward with set_active equals the extracted sub-network
    sup.set_active(c)
    sup.eval()
    net.eval()
    x = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(sup(x), net(x), atol=1e-5)


def test_perturbations_describe_removed_and_kept_weights():
    sp = get_space("mbconv-fmnist")
    c = sp.make({"s1.depth": 2, "s1.b0.ratio": 3, "s1.b0.kernel": 5, "s1.b0.dw.w_bits": 4})
    ps = {p.path: p for p in sp.perturbations(c)}
    assert ps["stages.1.3.dw.conv"].removed and ps["stages.1.2.expand.conv"].removed
    dw = ps["stages.1.0.dw.conv"]
    assert (dw.out_keep, dw.kernel_keep, dw.w_bits) == (32 * 3, 5, 4)
    assert ps["stem.conv"].w_bits == 8 and ps["classifier"].w_bits == 8
    cfg = sp.bit_config(c)
    assert "stages.1.3.dw.conv" not in cfg and cfg["stages.1.0.dw.conv"]["w_bits"] == 4


def test_bad_space_arguments():
    with pytest.raises(ConfigError, match="kernel_sizes"):
        MBConvSpace("x", kernel_sizes=(2, 3))
    with pytest.raises(ConfigError, match="stride"):
        ResNetSpace("x", stages=((8, 3),))
    with pytest.raises(ConfigError, match="w_bits"):
        MBConvSpace("x", w_bits=(1, 8))


def test_mobilenet_v3_options_build_what_they_say():
    from torch import nn

    from hao.layers import SqueezeExcite
    space = get_space("mbv3-fmnist")
    assert space.mobilenet_v3_options == ["se_stages", "hswish_stages", "stem_act", "first_block", "feature_mix"]
    assert get_space("mbconv-fmnist").mobilenet_v3_options == []
    net = space.build(space.largest())
    n_se = sum(isinstance(m, SqueezeExcite) for m in net.modules())
    assert n_se == sum(space.max_depth for s in space.se_stages if s)
    assert isinstance(net.stem.act, nn.Hardswish) and isinstance(net.stages[0][0].dw.act, nn.ReLU6)
    assert isinstance(net.stages[3][0].expand.act, nn.Hardswish) and net.first.expand is None
    assert net.feature_mix.out_features == 256 and isinstance(net.feature_act, nn.Hardswish)
    with pytest.raises(ConfigError, match="one bool per stage"):
        MBConvSpace("x", se_stages=(True,))


def test_mobilenet_v3_options_are_refused_where_unsupported():
    from hao.deploy.graph import integer_network
    from hao.train.soft_mbconv import SoftMBConv
    space = get_space("mbv3-fmnist")
    net = space.build(space.largest()).eval()
    with pytest.raises(ConfigError, match="MobileNetV2 block only"):
        integer_network(net, space.input_shape)
    with pytest.raises(ConfigError, match="MobileNetV3 options"):
        SoftMBConv(space.supernet(0), space)
