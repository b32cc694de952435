"""Input resolution as a searchable (context) decision of the MBConv family."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hao.errors import CandidateError, ConfigError
from hao.search._index import IndexedSpace
from hao.space import get_space
from hao.space.mbconv import MBConvSpace
from hao.testing import check_contexts, check_space


def tiny(resolutions=(8, 12), **kw) -> MBConvSpace:
    cfg = dict(input_shape=(1, 12, 12), stem_channels=4, stages=((8, 2),), depths=(1, 2), kernel_sizes=(3, 5),
               ratios=(2,), w_bits=(4, 8), a_bits=(8,), head_channels=8, resolutions=resolutions)
    return MBConvSpace("tiny-res", **(cfg | kw))


def test_registered_space_is_base_times_resolutions():
    sp, base = get_space("mbconv-fmnist-res"), get_space("mbconv-fmnist")
    assert sp.context_decisions() == ("resolution",)
    assert sp.size() == 3 * base.size()
    assert sp.checkpoint_name == "mbconv-fmnist"
    assert sp.decision_names[:-1] == base.decision_names and sp.decision_names[-1] == "resolution"
    assert sp.largest()["resolution"] == 28 and sp.smallest()["resolution"] == 20


def test_kernels_follow_the_resolution():
    sp = get_space("mbconv-fmnist-res")
    c = sp.sample(np.random.default_rng(3))
    by_r = {r: sp.kernels(sp.make(c.as_dict() | {"resolution": r})) for r in (20, 24, 28)}
    # same kernel sequence, only the spatial sizes change: the stem sees r x r, the MACs grow with r
    assert [k.op for k in by_r[20]] == [k.op for k in by_r[28]]
    assert [k.in_h for k in by_r[20]][0] == 20 and [k.in_h for k in by_r[28]][0] == 28
    macs = [sum(k.macs for k in by_r[r]) for r in (20, 24, 28)]
    assert macs[0] < macs[1] < macs[2]
    # the 28-px candidate prices exactly as the plain space's candidate
    base = get_space("mbconv-fmnist")
    plain = base.make({k: v for k, v in c.choices if k != "resolution"})
    assert by_r[28] == base.kernels(plain)


def test_conditioned_space_and_battery():
    sp = tiny()
    check_space(sp, n=60, forward=2)
    sub = sp.condition({"resolution": 8})
    assert sub.input_shape == (1, 8, 8) and sub.context_decisions() == () and sub.conditioned_on == {"resolution": 8}
    assert sum(1 for _ in sp.enumerate()) == sp.size() == 2 * sub.size()
    with pytest.raises(CandidateError, match="allowed"):
        sp.condition({"resolution": 10})
    with pytest.raises(ConfigError, match="context decision"):
        sp.condition({})
    check_contexts(sp, [sp.sample(np.random.default_rng(i)) for i in range(5)])


def test_network_subsamples_its_input_to_the_resolution():
    sp = tiny()
    net = sp.supernet(0).eval()
    c = sp.make(sp.largest().as_dict() | {"resolution": 8})
    x = torch.randn(3, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    sp.activate(net, c)
    model = sp.build(c, net).eval()
    with torch.no_grad():
        y_super, y_built = net(x), model(x)
        small = torch.nn.functional.interpolate(x, size=(8, 8), mode="bilinear", align_corners=False, antialias=True)
        y_small = model(small)                      # an input already at the resolution is used as given
    torch.testing.assert_close(y_super, y_built)
    torch.testing.assert_close(y_built, y_small)
    assert model.resolution == 8


def test_bad_resolutions_name_the_fix():
    with pytest.raises(ConfigError, match="largest must be the data's resolution"):
        tiny(resolutions=(8, 10))
    with pytest.raises(ConfigError, match="at least"):
        tiny(resolutions=(1, 12))


def test_index_refuses_a_space_with_contexts():
    with pytest.raises(ConfigError, match="condition"):
        IndexedSpace(tiny())
    IndexedSpace(tiny().condition({"resolution": 12}))
