"""The proxy build (supernet traces, sensitivity table, ZeroQ) on every family, through the space's supernet
protocol: resnet (which had no largest() before), and quantize-only (whose supernet is the plain model)."""
import numpy as np
import pytest
import torch

from hao.errors import ConfigError
from hao.proxy import AccuracyProxy, compute_sensitivity, supernet_traces, zeroq_traces
from hao.space import get_space
from hao.space.quantize_only import QuantizeOnlySpace


def _batch(space, n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn((n,) + tuple(space.input_shape), generator=g), torch.randint(0, space.num_classes, (n,),
                                                                                    generator=g)


@pytest.fixture(scope="module")
def resnet():
    space = get_space("resnet-fmnist")
    return space, space.supernet(0)


def test_supernet_traces_on_resnet_fmnist(resnet):
    space, net = resnet
    before = net.active
    tr = supernet_traces(space, net, [_batch(space)], samples=4, vectors_per_call=2, seed=0)
    assert net.active == before                        # the active candidate is restored
    paths = {p.path for p in space.perturbations(space.largest())}
    assert paths <= set(tr.paths)                      # every layer of the largest sub-network was traced
    assert all(np.isfinite(t.mean) and t.mean >= 0 for t in tr)
    assert tr.activations                              # ggn default: input-activation traces too


def test_compute_sensitivity_on_resnet_fmnist_orders_largest_before_smallest(resnet):
    space, net = resnet
    table = compute_sensitivity(space, net, [_batch(space, seed=1)], samples=4, seed=0)
    proxy = AccuracyProxy(space, table)
    big, small = proxy.score([space.largest(), space.smallest()])
    assert 0 <= big < small


def test_supernet_traces_refuses_a_plain_model_of_a_supernet_space():
    space = get_space("resnet-fmnist")
    with pytest.raises(ConfigError, match="set_active"):
        supernet_traces(space, torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)),
                        [_batch(space)], samples=2)


def test_zeroq_traces_on_a_quantize_only_space():
    """What experiments/plugin_tables.py --proxy zeroq runs: ZeroQ inputs + weight traces of the plain model."""
    from tests.proxy.conftest import TinyNet
    space = QuantizeOnlySpace("q-tiny", TinyNet(0), (1, 8, 8), bits=(4, 8), pin_first_last=False)
    model = space.supernet(0)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    tr, info = zeroq_traces(space, model, n=8, steps=5, seed=0, samples=4, method="double_backward",
                            activations=False)
    assert set(tr.paths) == {"conv", "fc1", "fc2"} and not tr.activations
    assert "bn_loss_final" in info
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
