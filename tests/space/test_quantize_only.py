"""The quantize-only space on a torchvision-layout ResNet18 (HAWQ-V3's use case)."""
import numpy as np
import pytest
import torch

from hao.errors import ConfigError
from hao.models import resnet18
from hao.quant import calibrate_activations, quant_layers
from hao.space.quantize_only import QuantizeOnlySpace, downsample_ties


@pytest.fixture(scope="module")
def model():
    # A random-init ResNet with BN statistics that match its activations (as in any trained model):
    # run a few batches in train mode with a cumulative average.
    m = resnet18(num_classes=10, seed=0)
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.momentum = None
    g = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for _ in range(4):
            m(torch.rand(8, 3, 64, 64, generator=g))
    return m.eval()


@pytest.fixture(scope="module")
def space(model):
    return QuantizeOnlySpace("q18", model, (3, 64, 64), bits=(4, 8), ties=downsample_ties(model))


def test_finds_21_layers_ties_and_pins(space, model):
    assert len(space.layer_paths) == 21
    assert space.pinned == {"conv1": 8, "fc": 8}
    assert len(downsample_ties(model)) == 3
    tied = [g for g in space.groups if len(g) == 2]
    assert sorted(tuple(g) for g in tied) == [("layer2.0.conv1", "layer2.0.downsample.0"),
                                             ("layer3.0.conv1", "layer3.0.downsample.0"),
                                             ("layer4.0.conv1", "layer4.0.downsample.0")]
    assert space.num_searchable_layers() == 19


def test_ties_and_pins_honoured_in_built_model(space):
    rng = np.random.default_rng(0)
    for _ in range(10):
        c = space.sample(rng)
        m = space.build(c)
        layers = dict(quant_layers(m))
        assert len(layers) == 21
        assert layers["conv1"].w_bits == 8 and layers["fc"].w_bits == 8
        for s in (2, 3, 4):
            a, b = layers[f"layer{s}.0.conv1"], layers[f"layer{s}.0.downsample.0"]
            assert a.w_bits == b.w_bits and a.a_bits == b.a_bits


def test_8bit_fake_quant_within_1_percent(space, model):
    """Inputs are image-like (uniform in [0, 1]). Each of the 21 layers, quantized at W8A8 and fed the float
    model's own input to that layer, stays within 1% relative output error of the float layer (median; every layer
    < 1.5%). (Whole-network error of a *random-init* ResNet compounds through 21 chaotic layers, so it is checked
    for ordering only: 8-bit << 4-bit.)"""
    c = space.make({n: 8 for n in space.decision_names})
    qm = space.build(c).eval()
    g = torch.Generator().manual_seed(0)
    calib = [torch.rand(4, 3, 64, 64, generator=g) for _ in range(4)]
    calibrate_activations(qm, calib)
    x = torch.rand(8, 3, 64, 64, generator=g)
    inputs = {}
    hooks = [mod.register_forward_hook(lambda m_, i, o, n=n: inputs.__setitem__(n, i[0].detach()))
             for n, mod in model.named_modules() if n in space.layer_paths]
    with torch.no_grad():
        ref = model(x)
    for h in hooks:
        h.remove()
    qlayers = dict(quant_layers(qm))
    assert set(qlayers) == set(inputs) and len(inputs) == 21
    rels = {}
    with torch.no_grad():
        for n, inp in inputs.items():
            f = model.get_submodule(n)(inp)
            rels[n] = ((qlayers[n](inp) - f).norm() / f.norm()).item()
        out8 = qm(x)
    # min/max 8-bit quantizers on Gaussian-like weights give ~0.8% weight error alone, so a few layers sit
    # right at 1%: the typical layer is well inside 1%, none beyond 1.5%.
    assert float(np.median(list(rels.values()))) < 0.01, rels
    assert max(rels.values()) < 0.015, rels
    c4 = space.make({n: 4 for n in space.decision_names})
    q4 = space.build(c4).eval()
    calibrate_activations(q4, calib)
    with torch.no_grad():
        out4 = q4(x)
    rel8 = ((out8 - ref).norm() / ref.norm()).item()
    rel4 = ((out4 - ref).norm() / ref.norm()).item()
    assert rel8 < 0.25 * rel4, (rel8, rel4)


def test_bad_ties_and_pins(model):
    with pytest.raises(ConfigError, match="not a Conv2d/Linear"):
        QuantizeOnlySpace("x", model, (3, 32, 32), ties=[("layer1.0.conv1", "layer9.conv")])
    with pytest.raises(ConfigError, match="both pinned and tied"):
        QuantizeOnlySpace("x", model, (3, 32, 32), ties=[("conv1", "layer1.0.conv1")])
