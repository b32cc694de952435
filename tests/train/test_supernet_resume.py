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
