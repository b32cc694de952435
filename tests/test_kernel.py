"""KernelSpec: plain kernels keep their serialisation; composite blocks cost exactly the sum of their parts."""
import pytest

from hao.errors import ConfigError
from hao.kernel import BLOCK_COLUMNS, KernelSpec, se_channels


def test_plain_kernel_serialisation_has_no_block_fields():
    k = KernelSpec("conv2d", 16, 32, 28, 28, 3, 2)
    assert set(k.to_dict()).isdisjoint(BLOCK_COLUMNS)
    assert len(k.key()) == 11 and KernelSpec.from_json(k.to_json()) == k


@pytest.mark.parametrize("mid,expected", [(64, 16), (72, 24), (240, 64), (480, 120), (672, 168), (16, 8)])
def test_se_channels_follow_mobilenet_v3(mid, expected):
    assert se_channels(mid) == expected


def test_block_macs_params_by_hand():
    # 16 -> 24 channels, 28x28, mid 64, 3x3 depthwise at stride 2 (14x14 out), squeeze-excite to 16 channels
    b = KernelSpec("mbconv", 16, 24, 28, 28, 3, 2, mid_channels=64, se=1)
    expand = 16 * 64 * 28 * 28
    dw = 64 * 9 * 14 * 14
    se = 64 * 16 * 2
    project = 64 * 24 * 14 * 14
    assert b.macs == expand + dw + se + project
    assert b.params == 16 * 64 + 64 * 9 + 64 * 16 * 2 + 64 * 24
    assert [p.op for p in b.block_parts()] == ["conv2d", "dwconv2d", "avgpool", "dense", "dense", "conv2d"]
    assert b.out_h == b.out_w == 14
    assert KernelSpec.from_json(b.to_json()) == b and len(b.key()) == 15
    # ratio-1 block (mid == input): no expand layer; identity add counted as element ops
    r1 = KernelSpec("mbconv", 16, 16, 8, 8, 3, 1, mid_channels=16, idskip=1)
    assert [p.op for p in r1.block_parts()] == ["dwconv2d", "conv2d", "add"]
    assert r1.macs == 16 * 9 * 64 + 16 * 16 * 64 and r1.elementwise_ops == 16 * 64
    assert r1.key() != KernelSpec("mbconv", 16, 16, 8, 8, 3, 1, mid_channels=16).key()


@pytest.mark.parametrize("kw,match", [
    (dict(op="conv2d", mid_channels=8), "belong to composite ops"),
    (dict(op="mbconv", mid_channels=0), "mid_channels"),
    (dict(op="mbconv", mid_channels=8, se=2), "se must be 0 or 1"),
    (dict(op="mbconv", mid_channels=8, idskip=1, stride=2), "idskip=1 needs stride 1"),
])
def test_block_field_errors(kw, match):
    args = dict(in_channels=8, out_channels=8, in_h=4, in_w=4, kernel=3) | kw
    with pytest.raises(ConfigError, match=match):
        KernelSpec(**args)
