"""Block-wise distillation: the supernet starts as the teacher, each stage's sandwich learns to reproduce the
teacher's stage output, and an interrupted run resumed from its state file ends bit-identical."""
import numpy as np
import pytest
import torch

from hao.data import digits
from hao.errors import ConfigError
from hao.quant import quant_layers, set_bits
from hao.space.mbconv import MBConvSpace
from hao.train.distill import DistillConfig, distill_stages, init_from_teacher, stage_forward, stage_sandwich
from hao.train.teacher import build_teacher


def _space():
    return MBConvSpace("tiny-distill", input_shape=(1, 8, 8), stem_channels=8, stages=((8, 1), (16, 2)),
                       depths=(1, 2), kernel_sizes=(3, 5), ratios=(2, 3), w_bits=(4, 8), a_bits=(8,),
                       head_channels=16)


def _float(net):
    set_bits(net, {name: {"w_bits": 32, "a_bits": 32} for name, _ in quant_layers(net)})
    return net


def _teacher(sp, seed=5):
    t = build_teacher(sp, seed)
    with torch.no_grad():  # a teacher that differs from the supernet's own initialisation
        for p in t.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    return t.eval()


def test_supernet_starts_as_the_teacher():
    sp = _space()
    teacher = _teacher(sp)
    net = sp.supernet(0)
    init_from_teacher(net, teacher.state_dict())
    net.eval()
    sp.activate(net, sp.largest())
    x = digits("test").x[:16]
    sub = _float(net.extract()).eval()
    torch.testing.assert_close(sub(x), teacher(x), rtol=0, atol=0)
    with pytest.raises(ConfigError, match="does not fit this supernet"):
        init_from_teacher(net, {"stem.conv.weight": torch.zeros(1)})


def test_sandwich_is_seeded_and_covers_largest_and_smallest():
    sp = _space()
    a = stage_sandwich(sp, np.random.default_rng(1), 2, quantize=True)
    b = stage_sandwich(sp, np.random.default_rng(1), 2, quantize=True)
    assert a == b and len(a) == 4
    big, small = sp.largest().as_dict(), sp.smallest().as_dict()
    arch = [d.name for d in sp.decisions() if d.kind not in ("w_bits", "a_bits")]
    assert all(a[0][k] == big[k] for k in arch) and all(a[1][k] == small[k] for k in arch)
    plain = stage_sandwich(sp, np.random.default_rng(1), 1, quantize=False)
    assert all(plain[0][d.name] == big[d.name] for d in sp.decisions())  # (inactive blocks' bits are canonical)
    assert len({c[d.name] for c in a for d in sp.decisions() if d.kind == "w_bits"}) == 2  # random bits: 4 and 8


def _stage_loss(sp, net, teacher, x, stage, cand):
    with torch.no_grad():
        h = teacher.stem(x)
        for s in range(stage):
            h = stage_forward(teacher, s, h)
        y = stage_forward(teacher, stage, h)
        sp.activate(net, cand)
        return float((stage_forward(net, stage, h) - y).pow(2).mean() / y.var())


def test_distillation_reduces_each_stage_loss_of_the_smallest(tmp_path):
    sp = _space()
    teacher = _teacher(sp)
    data = digits("train")
    x = data.x[:256]
    net = sp.supernet(0)
    init_from_teacher(net, teacher.state_dict())
    net.train()
    small = sp.smallest()
    before = [_stage_loss(sp, net, teacher, x, s, small) for s in range(2)]
    cfg = DistillConfig(steps_per_stage=40, batch_size=64, lr=1e-2, warmup_steps=2, n_random=1, seed=2)
    out = distill_stages(sp, net, teacher, data, cfg, work_dir=tmp_path, progress=False)
    assert out["finished"] and out["n_stages"] == 2
    net.train()
    after = [_stage_loss(sp, net, teacher, x, s, small) for s in range(2)]
    for s in range(2):
        assert after[s] < 0.8 * before[s], (s, before, after)  # measured: 0.98 -> 0.68, 1.06 -> 0.72


def test_resumed_distillation_equals_uninterrupted(tmp_path, monkeypatch):
    sp = _space()
    teacher = _teacher(sp)
    data = digits("train")
    cfg = DistillConfig(steps_per_stage=6, batch_size=32, warmup_steps=1, n_random=1, seed=4, ckpt_every=2)
    ref = sp.supernet(0)
    distill_stages(sp, ref, teacher, data, cfg, work_dir=tmp_path / "ref", progress=False)
    import hao.train.distill as D
    calls = {"n": 0}
    real = D._lr

    def boom(c, step):
        calls["n"] += 1
        if calls["n"] > 9:  # stage 1, step 3: the state file holds stage 1 step 2
            raise KeyboardInterrupt
        return real(c, step)

    monkeypatch.setattr(D, "_lr", boom)
    cut = sp.supernet(0)
    with pytest.raises(KeyboardInterrupt):
        distill_stages(sp, cut, teacher, data, cfg, work_dir=tmp_path / "cut", progress=False)
    monkeypatch.setattr(D, "_lr", real)
    st = torch.load(tmp_path / "cut" / "distill_state.pt", weights_only=True)
    assert (st["stage"], st["step"]) == (1, 2)
    again = sp.supernet(0)
    out = distill_stages(sp, again, teacher, data, cfg, work_dir=tmp_path / "cut", progress=False)
    assert out["finished"]
    for (k, a), b in zip(ref.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k
    with pytest.raises(ConfigError, match="same settings to resume"):
        distill_stages(sp, sp.supernet(0), teacher, data, DistillConfig(steps_per_stage=7), work_dir=tmp_path / "cut",
                       progress=False)


def test_config_round_trip_and_errors():
    cfg = DistillConfig(steps_per_stage=3, lr=0.01)
    assert DistillConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ConfigError, match="steps_per_stage"):
        DistillConfig(steps_per_stage=0)
    with pytest.raises(ConfigError, match="lr"):
        DistillConfig(lr=-1)
    with pytest.raises(ConfigError, match="unknown field"):
        DistillConfig.from_json('{"steps": 3}')
