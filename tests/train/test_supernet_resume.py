"""Sandwich training resumes from its state file (loaded with weights_only=True: no arbitrary pickle)."""
import pytest
import torch

from hao.data import digits
from hao.errors import ConfigError
from hao.space.mbconv import MBConvSpace
from hao.train.supernet import SandwichConfig, train_supernet


def _space():
    return MBConvSpace("tiny-train", input_shape=(1, 8, 8), stem_channels=4, stages=((8, 1),), depths=(1, 2),
                       kernel_sizes=(3,), ratios=(2,), w_bits=(8,), a_bits=(8,), head_channels=8)


def test_resume_loads_state_and_checks_config(tmp_path):
    data = digits("train")
    sp = _space()
    cfg = SandwichConfig(steps=3, batch_size=16, warmup_steps=0, ckpt_every=1, seed=0)
    net = sp.supernet(0)
    train_supernet(sp, net, data, cfg, work_dir=tmp_path, progress=False)
    st = torch.load(tmp_path / "train_state.pt", weights_only=True)
    assert st["step"] == 3
    # resuming a finished run restores the trained weights and does no further step
    again = sp.supernet(0)
    train_supernet(sp, again, data, cfg, work_dir=tmp_path, progress=False)
    for (k, a), b in zip(net.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k
    with pytest.raises(ConfigError, match="resume"):
        train_supernet(sp, sp.supernet(0), data, SandwichConfig(steps=5, batch_size=16), work_dir=tmp_path,
                       progress=False)


def test_random_bits_for_the_largest(tmp_path, monkeypatch):
    """random_bits_largest: the first sub-network of every step is the largest architecture at random bits."""
    sp = MBConvSpace("tiny-bits", input_shape=(1, 8, 8), stem_channels=4, stages=((8, 1),), depths=(1, 2),
                     kernel_sizes=(3,), ratios=(2,), w_bits=(2, 4, 8), a_bits=(4, 8), head_channels=8)
    seen = []
    real = sp.activate
    monkeypatch.setattr(sp, "activate", lambda net, cand: (seen.append(cand), real(net, cand))[1])
    for flag in (False, True):
        seen.clear()
        cfg = SandwichConfig(steps=4, batch_size=16, warmup_steps=0, n_random=0, seed=1, random_bits_largest=flag)
        train_supernet(sp, sp.supernet(0), digits("train"), cfg, work_dir=tmp_path / str(flag), progress=False)
        firsts = seen[0:8:2]  # each step activates the largest, then the smallest
        arch = [d.name for d in sp.decisions() if d.kind not in ("w_bits", "a_bits")]
        assert all(c[k] == sp.largest()[k] for c in firsts for k in arch)
        if flag:
            assert len({c.to_json() for c in firsts}) > 1
        else:
            assert all(c == sp.largest() for c in firsts)
