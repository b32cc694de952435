"""Teacher training: an interrupted run resumed from its state file ends bit-identical to an uninterrupted one;
the validation split is disjoint from the training images; augmentation only crops and flips."""
import pytest
import torch

from hao.data import TensorDataset, digits
from hao.errors import ConfigError
from hao.space.mbconv import MBConvSpace
from hao.train.teacher import TeacherConfig, augment, build_teacher, split_validation, train_teacher


def _space():
    return MBConvSpace("tiny-teacher", input_shape=(1, 8, 8), stem_channels=16, stages=((16, 1),), depths=(1, 2),
                       kernel_sizes=(3,), ratios=(2,), w_bits=(8,), a_bits=(8,), head_channels=32)


def test_resumed_training_equals_uninterrupted(tmp_path):
    data = digits("train")
    sp = _space()
    cfg = TeacherConfig(epochs=3, batch_size=64, lr=1e-2, warmup_steps=2, val_images=200, ckpt_every=3, seed=3)
    whole = train_teacher(sp, data, cfg, work_dir=tmp_path / "a", progress=False)
    assert whole["finished"] and len(whole["val_acc"]) == 3
    part = train_teacher(sp, data, cfg, work_dir=tmp_path / "b", progress=False, max_minutes=0)  # stops at once
    assert not part["finished"] and part["steps_done"] == 0
    # stop after some steps by hand: run with a model whose steps we count through ckpt_every
    st = torch.load(tmp_path / "a" / "teacher_state.pt", weights_only=True)
    assert st["step"] == whole["steps_done"] and st["config"]["seed"] == 3
    resumed = train_teacher(sp, data, cfg, work_dir=tmp_path / "b", progress=False)
    for (k, a), b in zip(whole["model"].state_dict().items(), resumed["model"].state_dict().values()):
        assert torch.equal(a, b), k
    assert resumed["val_acc"] == whole["val_acc"]
    assert whole["val_acc"][-1] > 0.2  # it learns (10 classes: chance is 0.1)
    with pytest.raises(ConfigError, match="same settings to resume"):
        train_teacher(sp, data, TeacherConfig(epochs=4, batch_size=64, val_images=200), work_dir=tmp_path / "a",
                      progress=False)


def test_resume_mid_epoch_is_exact(tmp_path, monkeypatch):
    """Kill the run after 5 steps (the state file holds step 3: ckpt_every=3), resume, compare."""
    data = digits("train")
    sp = _space()
    cfg = TeacherConfig(epochs=1, batch_size=64, warmup_steps=0, val_images=200, ckpt_every=3, seed=1)
    ref = train_teacher(sp, data, cfg, work_dir=tmp_path / "ref", progress=False)
    import hao.train.teacher as T
    calls = {"n": 0}
    real = T._lr

    def boom(c, step, total):
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt
        return real(c, step, total)

    monkeypatch.setattr(T, "_lr", boom)
    with pytest.raises(KeyboardInterrupt):
        train_teacher(sp, data, cfg, work_dir=tmp_path / "cut", progress=False)
    monkeypatch.setattr(T, "_lr", real)
    assert torch.load(tmp_path / "cut" / "teacher_state.pt", weights_only=True)["step"] == 3
    got = train_teacher(sp, data, cfg, work_dir=tmp_path / "cut", progress=False)
    for (k, a), b in zip(ref["model"].state_dict().items(), got["model"].state_dict().values()):
        assert torch.equal(a, b), k


def test_split_and_augment():
    x = torch.arange(40 * 64, dtype=torch.float32).reshape(40, 1, 8, 8)
    ds = TensorDataset(x, torch.arange(40), "t")
    tr, va = split_validation(ds, 10, seed=0)
    assert len(tr) == 30 and len(va) == 10
    assert not set(tr.y.tolist()) & set(va.y.tolist()) and set(tr.y.tolist()) | set(va.y.tolist()) == set(range(40))
    with pytest.raises(ConfigError, match="val_images must be in"):
        split_validation(ds, 40, seed=0)
    g = torch.Generator().manual_seed(0)
    out = augment(x, g, pad=2)
    assert out.shape == x.shape
    for i in range(40):  # every output is a shifted (maybe flipped) window of its own padded input
        img = out[i, 0]
        inner = img[img != float(x.min())]
        assert set(inner.tolist()) <= set(x[i, 0].flatten().tolist()) | {float(x.min())}


def test_teacher_is_float_largest():
    sp = _space()
    m = build_teacher(sp, 0)
    from hao.quant import quant_layers
    assert all(q.w_bits == 32 and q.a_bits == 32 for _, q in quant_layers(m))
    with pytest.raises(ConfigError, match="epochs must be an int >= 1"):
        TeacherConfig(epochs=0)
    assert TeacherConfig.from_json(TeacherConfig(lr=1e-3).to_json()) == TeacherConfig(lr=1e-3)
