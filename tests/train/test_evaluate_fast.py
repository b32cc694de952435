"""evaluate_full: inference mode, chunked big batches give the same result, old vs new quantizer paths agree."""
import importlib

import torch
import torch.nn.functional as F
from torch import nn

from hao.quant import QConv2d, QLinear, reference_kernels
from hao.train import evaluate_full, prepare_subnet

ev = importlib.import_module("hao.train.evaluate")  # the module (hao.train.evaluate is also a function name)


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = QConv2d(1, 6, 3, padding=1, bias=False, w_bits=4, a_bits=8)
        self.bn = nn.BatchNorm2d(6)
        self.fc = QLinear(6, 3, w_bits=8, a_bits=6)

    def forward(self, x):
        self.seen_inference = torch.is_inference_mode_enabled()
        self.batch_sizes.append(x.shape[0])
        h = F.relu(self.bn(self.conv(x)))
        return self.fc(h.mean((2, 3)))


def _data(n=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 8, 8, generator=g)
    return x, torch.randint(0, 3, (n,), generator=g)


def _net():
    torch.manual_seed(0)
    net = _Net()
    net.batch_sizes = []
    return net


def _old(model, batches):
    correct = total = 0
    loss = 0.0
    with reference_kernels(), torch.no_grad(), ev._mode(model, False):
        for x, y in batches:
            out = model(x)
            loss += float(F.cross_entropy(out, y, reduction="sum"))
            correct += int((out.argmax(1) == y).sum())
            total += int(y.shape[0])
    return correct / total, loss / total


def test_chunked_equals_whole_and_old_path():
    x, y = _data()
    net = _net()
    prepare_subnet(net, [(x[:64], y[:64])])
    batches = [(x[:250], y[:250]), (x[250:], y[250:])]
    net.batch_sizes.clear()
    r = evaluate_full(net, batches, chunk=64)
    assert net.seen_inference and net.batch_sizes == [64, 64, 64, 58, 50]
    whole = evaluate_full(net, batches, chunk=None)
    assert (r.accuracy, r.loss, r.n) == (whole.accuracy, whole.loss, whole.n)
    acc, loss = _old(net, batches)
    assert r.accuracy == acc and abs(r.loss - loss) <= 1e-6 * max(1.0, abs(loss))
    assert net.training  # mode restored


def test_uncalibrated_quantizers_are_not_chunked():
    x, y = _data(seed=1)
    net = _net()  # never calibrated: quantizers use each batch's min/max, so batches must stay whole
    net.batch_sizes.clear()
    r = evaluate_full(net, [(x, y)], chunk=64)
    assert net.batch_sizes == [300]
    acc, loss = _old(net, [(x, y)])
    assert r.accuracy == acc and abs(r.loss - loss) <= 1e-6 * max(1.0, abs(loss))


def test_default_chunk_is_applied():
    n = ev.EVAL_CHUNK * 2 + 7
    x, y = _data(n, seed=2)
    net = _net()
    prepare_subnet(net, [(x[:64], y[:64])])
    net.batch_sizes.clear()
    evaluate_full(net, [(x, y)])
    assert net.batch_sizes == [ev.EVAL_CHUNK, ev.EVAL_CHUNK, 7]


def test_exact_evaluation_is_the_float64_copy_and_leaves_the_model_alone():
    from hao.quant import exact_copy

    x, y = _data(200, seed=3)
    net = _net()
    prepare_subnet(net, [x[:100]])
    net.eval()
    with torch.no_grad():
        want_logits = exact_copy(net)(x.double())
    r = evaluate_full(net, [(x, y)], exact=True)
    assert r.n == 200
    assert r.accuracy == float((want_logits.argmax(1) == y).double().mean())
    assert abs(r.loss - float(F.cross_entropy(want_logits, y))) < 1e-9
    assert all(p.dtype == torch.float32 for p in net.parameters())  # evaluated a copy
    fast = evaluate_full(net, [(x, y)])
    assert abs(fast.accuracy - r.accuracy) <= 0.02  # the same network up to float32 rounding


def test_per_example_hits_are_the_old_paths_predictions():
    x, y = _data(seed=4)
    net = _net()
    prepare_subnet(net, [(x[:64], y[:64])])
    batches = [(x[:250], y[:250]), (x[250:], y[250:])]
    r = evaluate_full(net, batches, chunk=64, per_example=True)
    with reference_kernels(), torch.no_grad(), ev._mode(net, False):
        hits = torch.cat([net(b[0]).argmax(1) == b[1] for b in batches]).numpy()
    assert r.correct.dtype == bool and r.correct.shape == (300,)
    assert (r.correct == hits).all() and r.correct.mean() == r.accuracy
    assert evaluate_full(net, batches).correct is None
