"""QAT fine-tuning of a candidate: it improves a low-bit sub-network's accuracy, is seeded, resumes exactly, and
refuses another candidate's state."""
import pytest
import torch

from hao.data import digits, loader
from hao.errors import ConfigError
from hao.space.mbconv import MBConvSpace
from hao.train.evaluate import evaluate, prepare_subnet
from hao.train.finetuning import FinetuneConfig, finetune


def _space():
    return MBConvSpace("tiny-ft", input_shape=(1, 8, 8), stem_channels=8, stages=((8, 1), (16, 2)),
                       depths=(1, 2), kernel_sizes=(3,), ratios=(2, 3), w_bits=(2, 8), a_bits=(4, 8),
                       head_channels=16)


@pytest.fixture(scope="module")
def setup():
    sp = _space()
    train, test = digits("train"), digits("test")
    calib = list(loader(train.subset(256, seed=1), 128))
    return sp, sp.supernet(0), train, list(loader(test, 200)), calib


def test_finetuning_improves_a_low_bit_candidate(setup, tmp_path):
    sp, net, train, test, calib = setup
    cand = sp.uniform(8, 4)  # 4-bit activations: the quantizers are in the trained forward pass
    before = evaluate(prepare_subnet(sp.build(cand, net), calib), test)
    cfg = FinetuneConfig(steps=60, batch_size=64, lr=1e-2, warmup_steps=5, seed=1, augment=False)
    out = finetune(sp, net, cand, train, cfg, calib, progress=False)
    after = evaluate(out["model"], test)
    assert out["finished"] and out["loss_last"] < out["loss_first"]
    assert after > before + 0.2, (before, after)   # an untrained supernet: 0.12 before, 0.43 measured after
    again = finetune(sp, net, cand, train, cfg, calib, progress=False)
    for (k, a), b in zip(out["model"].state_dict().items(), again["model"].state_dict().values()):
        assert torch.equal(a, b), k


def test_resume_equals_uninterrupted_and_teacher_term(setup, tmp_path):
    sp, net, train, test, calib = setup
    cand = sp.uniform(8, 8)
    teacher = prepare_subnet(sp.build(sp.largest(), net), calib)
    cfg = FinetuneConfig(steps=6, batch_size=32, warmup_steps=1, ckpt_every=2, seed=2)
    ref = finetune(sp, net, cand, train, cfg, calib, teacher=teacher, progress=False)
    part = finetune(sp, net, cand, train, cfg, calib, teacher=teacher, work_dir=tmp_path, max_minutes=0,
                    progress=False)
    assert not part["finished"] and part["steps_done"] == 0
    import hao.train.finetuning as FT
    real, calls = FT._lr, {"n": 0}

    def boom(c, step):
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt
        return real(c, step)

    FT._lr = boom
    try:
        with pytest.raises(KeyboardInterrupt):
            finetune(sp, net, cand, train, cfg, calib, teacher=teacher, work_dir=tmp_path, progress=False)
    finally:
        FT._lr = real
    got = finetune(sp, net, cand, train, cfg, calib, teacher=teacher, work_dir=tmp_path, progress=False)
    assert got["finished"]
    for (k, a), b in zip(ref["model"].state_dict().items(), got["model"].state_dict().values()):
        assert torch.equal(a, b), k
    with pytest.raises(ConfigError, match="another candidate or config"):
        finetune(sp, net, sp.uniform(2, 4), train, cfg, calib, work_dir=tmp_path, progress=False)


def test_config_round_trip_and_errors():
    cfg = FinetuneConfig(steps=3, kd_weight=0.2)
    assert FinetuneConfig.from_json(cfg.to_json()) == cfg
    for bad in ({"steps": 0}, {"lr": 0}, {"kd_weight": 1.5}, {"label_smoothing": 1.0}):
        with pytest.raises(ConfigError):
            FinetuneConfig(**bad)
