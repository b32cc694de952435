"""The integer program of a fake-quant network: what it computes equals the fake-quant model (up to the
rare one-step rounding differences of float vs integer arithmetic), its kernels are the predictor's, it
round-trips through JSON + npz, and it refuses what it cannot represent."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hao.deploy import IntegerNetwork, integer_network
from hao.errors import ConfigError
from tests.deploy.conftest import SHAPE, calibrated, images


def _cands(space, n, seed=0):
    rng = np.random.default_rng(seed)
    return [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(n)]


def test_integer_reference_matches_the_fake_quant_model(tiny_space):
    x = images(200)
    for i, c in enumerate(_cands(tiny_space, 3)):
        model = calibrated(tiny_space, c, seed=i)
        net = integer_network(model, SHAPE)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        got = net.run(x)
        assert got.shape == ref.shape and got.dtype == np.float32
        assert np.abs(got - ref).max() <= 0.02 * np.abs(ref).max(), c.to_json()
        assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.97


def test_kernels_are_the_predictors_kernels(tiny_space):
    for i, c in enumerate(_cands(tiny_space, 4, seed=3)):
        net = integer_network(calibrated(tiny_space, c, seed=i), SHAPE)
        assert sorted(k.short() for k in net.kernels()) == sorted(k.short() for k in tiny_space.kernels(c))


def test_save_load_round_trip(tiny_space, tmp_path):
    c = tiny_space.sample(np.random.default_rng(7))
    net = integer_network(calibrated(tiny_space, c), SHAPE)
    net.save(tmp_path / "n")
    back = IntegerNetwork.load(tmp_path / "n")
    x = images(8)
    assert np.array_equal(back.run(x), net.run(x))
    (tmp_path / "n" / "integer_network.json").write_text('{"format": "other"}')
    with pytest.raises(ConfigError, match="not a hao integer network"):
        IntegerNetwork.load(tmp_path / "n")


def test_refuses_float_uncalibrated_and_training_models(tiny_space):
    from hao.quant import set_bits, quant_layers

    c = tiny_space.largest()
    model = calibrated(tiny_space, c)
    name = next(n for n, _ in quant_layers(model))
    set_bits(model, {name: {"a_bits": 32}})
    with pytest.raises(ConfigError, match="float"):
        integer_network(model, SHAPE)
    fresh = tiny_space.build(c, seed=0).eval()
    with pytest.raises(ConfigError, match="not calibrated"):
        integer_network(fresh, SHAPE)
    with pytest.raises(ConfigError, match="eval-mode"):
        integer_network(calibrated(tiny_space, c).train(), SHAPE)
    with pytest.raises(ConfigError, match="MBConv family"):
        integer_network(torch.nn.Linear(2, 2), SHAPE)
    with pytest.raises(ConfigError, match="shape"):
        integer_network(calibrated(tiny_space, c), SHAPE).run(np.zeros((1, 1, 5, 5), np.float32))


def test_residual_add_uses_the_stored_input_and_a_quantized_projection(tiny_space):
    """The fake-quant block computes what the integer pipeline stores: the identity as the expand layer
    quantizes it, the projection quantized to 8 bits before the add."""
    c = tiny_space.uniform(4, 4)
    model = calibrated(tiny_space, c)
    blk = next(b for b in model.blocks() if b.residual)
    x = torch.randn(2, blk.expand.conv.in_channels, 12, 12)
    with torch.no_grad():
        y = blk.project(blk.dw(blk.expand(x)))
        want = blk.expand.conv.act_quant(x) + blk.out_quant(y)
        assert blk.out_quant.bits == 8 and torch.equal(blk(x), want)
        assert not torch.equal(blk(x), x + y)


def test_checkpoints_without_the_new_quantizers_still_load(tiny_space):
    from hao.quant import optional_state_keys

    net = tiny_space.supernet(0)
    sd = net.state_dict()
    opt = optional_state_keys(net)
    assert opt and all(k.endswith(("lo", "hi", "calibrated")) for k in opt)
    old = {k: v for k, v in sd.items() if k not in opt}
    tiny_space.supernet(1).load_state_dict(old)          # strict: the optional points may be missing
