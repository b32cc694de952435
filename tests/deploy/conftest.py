from __future__ import annotations

import numpy as np
import pytest
import torch

from hao.space.mbconv import MBConvSpace

SHAPE = (1, 12, 12)


@pytest.fixture(scope="module")
def tiny_space():
    return MBConvSpace("tiny-deploy", input_shape=SHAPE, stem_channels=16, stages=((16, 1), (32, 2)), depths=(1, 2),
                       kernel_sizes=(3, 5), ratios=(3,), head_channels=32)


def calibrated(space, candidate, seed: int = 0):
    """A seeded, BN-recalibrated, activation-calibrated eval-mode sub-network of ``candidate``."""
    from hao.train.evaluate import prepare_subnet

    model = space.build(candidate, seed=seed)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, *SHAPE, generator=g)
    model.train()
    prepare_subnet(model, [x[:32], x[32:]])
    return model.eval()


def images(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *SHAPE)).astype(np.float32)
