"""The fused fake-quant kernels and the eval-mode weight cache compute what the reference formulas compute."""
import copy

import pytest
import torch

from hao.quant import ActQuant, QConv2d, QLinear, calibrate_activations, quantize_weight, reference_kernels
from hao.quant.fake import _weight_reference

BITS = (2, 3, 4, 5, 6, 7, 8)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _weights(seed):
    g = _gen(seed)
    yield torch.randn(16, 8, 3, 3, generator=g) * 0.1
    yield torch.randn(10, 256, generator=g)
    yield torch.randn(6, 1, 7, 7, generator=g).abs() * 1e-3          # one-signed channels
    w = torch.randn(5, 4, generator=g)
    w[1] = 0.0                                                         # all-zero channel (scale clamp 1e-12)
    w[2] = 0.37                                                        # constant channel
    w[3, :2] = torch.tensor([0.5, -0.5])                               # exact ties at 1 bit-step
    yield w
    yield torch.arange(-8, 9, dtype=torch.float32).reshape(1, -1) / 2  # many exact .5 ties (half-to-even)


@pytest.mark.parametrize("bits", BITS)
def test_weight_fused_is_bitwise_the_reference(bits):
    for w in _weights(bits):
        ref = _weight_reference(w, bits)
        with torch.no_grad():
            fast = quantize_weight(w, bits)
        assert torch.equal(fast, ref), (bits, w.shape)
        with reference_kernels():
            assert torch.equal(quantize_weight(w, bits), ref)


def _acts(seed):
    g = _gen(seed)
    yield torch.randn(4, 3, 5, 5, generator=g) * 3
    yield torch.rand(2, 8, 6, 6, generator=g) * 6                      # non-negative (zero point 0)
    yield -torch.rand(2, 8, 6, 6, generator=g) * 2                     # non-positive (zero point = levels)
    yield torch.full((3, 4), 1.25)                                     # constant tensor
    yield torch.zeros(3, 4)                                            # zero range: scale = 1e-8 / levels
    yield torch.randn(1000, generator=g) * 1e-9                        # range below the 1e-8 clamp
    yield torch.linspace(-3, 5, 2001)


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("calibrated", [False, True])
@pytest.mark.parametrize("fused", [False, True])
def test_activation_fast_path_is_bitwise_the_reference(bits, calibrated, fused):
    for i, x in enumerate(_acts(10 + bits)):
        q = ActQuant(bits)
        q.fused_kernel = fused
        if calibrated:  # calibrate on a narrower tensor so test values get clipped on both sides
            calibrate_activations(q, [x[..., : max(1, x.shape[-1] // 2)] * 0.5])
        q.eval()
        ref = q._reference(x, ste=False)
        with torch.no_grad():
            fast = q(x)
        assert torch.equal(fast, ref), (bits, i)
        # the old returned value x + (q - x) is q itself, except on inputs clipped far outside the range,
        # where the rounding of q - x leaves it at most ~|x| * 2**-23 off the grid
        old = q._reference(x)
        with reference_kernels():
            assert torch.equal(q(x), old)
        d = old != ref
        assert torch.all((old - ref).abs()[d] <= x.abs()[d] * 2.0 ** -22)
        scale = float((q._range(x)[1] - q._range(x)[0]).clamp_min(1e-8) / (2 ** bits - 1))
        assert torch.all((x.abs()[d] > (ref.abs()[d] * 2)) | ((x - ref).abs()[d] > scale / 2))


def test_kernel_with_real_scale_differs_by_at_most_one_step_on_rare_ties():
    """Why the scale is not handed to the kernel: it computes x * (1/scale); rarely one step off near ties."""
    g = _gen(3)
    total = differ = 0
    for bits in BITS:
        for _ in range(5):
            x = torch.randn(200_000, generator=g) * 4
            q = ActQuant(bits)
            calibrate_activations(q, [x * 0.8])
            q.eval()
            ref = q._reference(x, ste=False)
            scale, zero = q._qparams(x)
            fast = torch.fake_quantize_per_tensor_affine(x, float(scale), zero, 0, 2 ** bits - 1)
            d = fast != ref
            total += x.numel()
            differ += int(d.sum())
            assert torch.all((fast - ref).abs()[d] <= float(scale) * (1 + 1e-5))
    assert differ <= total * 1e-4


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_straight_through_gradients_unchanged(bits):
    g = _gen(bits)
    w = torch.randn(6, 5, generator=g, requires_grad=True)
    quantize_weight(w, bits).sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))

    x = (torch.randn(3, 4, 5, 5, generator=g) * 3).requires_grad_(True)
    q = ActQuant(bits)
    calibrate_activations(q, [x.detach() * 0.5])  # clips part of x: the STE still passes gradient 1 there
    out = q(x)
    assert torch.equal(out, q._reference(x.detach()))  # with grad the STE form, exactly as before
    (out * torch.arange(out.numel()).reshape(out.shape)).sum().backward()
    assert torch.equal(x.grad, torch.arange(out.numel(), dtype=x.dtype).reshape(x.shape))

    layer = QConv2d(4, 3, 3, padding=1, w_bits=bits, a_bits=bits)
    calibrate_activations(layer, [x.detach()])
    for training in (True, False):  # eval mode with grad enabled: cached values, STE gradient
        layer.train(training)
        layer.zero_grad()
        x.grad = None
        layer(x).sum().backward()
        with reference_kernels():
            ref_layer = copy.deepcopy(layer)
            ref_layer.zero_grad()
            x2 = x.detach().clone().requires_grad_(True)
            ref_layer(x2).sum().backward()
        assert torch.equal(layer.weight.grad, ref_layer.weight.grad)
        assert torch.equal(x.grad, x2.grad)


def _layer(seed=0):
    torch.manual_seed(seed)
    layer = QConv2d(3, 4, 3, padding=1, w_bits=4, a_bits=8)
    calibrate_activations(layer, [torch.randn(2, 3, 6, 6)])
    return layer.eval()


def test_eval_cache_reused_and_matches_reference():
    layer = _layer()
    x = torch.randn(2, 3, 6, 6)
    with torch.inference_mode():
        w1 = layer._quantized_weight()
        out = layer(x)
    with torch.no_grad():
        assert layer._quantized_weight() is w1  # cached across calls (and usable outside inference mode)
    assert not w1.is_inference()
    assert torch.equal(layer._quantized_weight(), w1) and layer._wq_cache[2] is w1  # STE form, same cache
    assert torch.equal(w1, _weight_reference(layer.weight, 4))
    with reference_kernels(), torch.no_grad():
        ref = layer(x)
    # eval mode convolves integer codes (exact) and scales once: the defining formula up to float32 rounding
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_eval_convolves_integer_codes_exactly():
    """The eval path computes the quantized layer exactly up to one rounding: closer to a float64 evaluation of the
    same codes than the defining formula (which rounds every product and partial sum in float32)."""
    torch.manual_seed(3)
    layer = QConv2d(64, 8, 3, padding=1, w_bits=2, a_bits=4)
    calibrate_activations(layer, [torch.randn(4, 64, 8, 8)])
    layer.eval()
    x = torch.randn(4, 64, 8, 8)
    with torch.no_grad():
        fast = layer(x).double()
        with reference_kernels():
            slow = layer(x).double()
        s, z = layer.act_quant._qparams(x)
        xc = ((x / s).round() + z).clamp(0, 15) - z
        wq = _weight_reference(layer.weight, 2).detach()
        ws = wq.abs().reshape(8, -1).amax(1)
        exact = torch.nn.functional.conv2d(xc.double(), (wq / ws.reshape(-1, 1, 1, 1)).round().double(), padding=1)
        exact = exact * (s.double() * ws.double()).reshape(1, -1, 1, 1) + layer.bias.double().reshape(1, -1, 1, 1)
    assert (fast - exact).abs().max() <= (slow - exact).abs().max()
    assert (fast - exact).abs().max() <= 1e-6 * exact.abs().max()


def test_cache_invalidated_by_inplace_weight_change_bits_and_mode():
    layer = _layer()
    q1 = layer._quantized_weight()
    with torch.no_grad():
        layer.weight.mul_(2.0).add_(0.01)  # bumps weight._version
    q2 = layer._quantized_weight()
    assert q2 is not q1 and torch.equal(q2, _weight_reference(layer.weight, 4))

    layer.load_state_dict({k: v * 0.5 if k == "weight" else v for k, v in layer.state_dict().items()})
    q3 = layer._quantized_weight()
    assert torch.equal(q3, _weight_reference(layer.weight, 4)) and not torch.equal(q3, q2)

    layer.w_bits = 2
    assert torch.equal(layer._quantized_weight(), _weight_reference(layer.weight, 2))
    layer.w_bits = 32
    assert layer._quantized_weight() is layer.weight

    layer.weight = torch.nn.Parameter(torch.randn(4, 3, 3, 3))  # a new parameter object
    layer.w_bits = 4
    assert torch.equal(layer._quantized_weight(), _weight_reference(layer.weight, 4))

    layer.train()
    assert layer._wq_cache is None
    layer.eval()
    layer._quantized_weight()
    layer.training = False  # mode flipped directly (as hao.train.evaluate does): training forward drops it
    layer.training = True
    layer(torch.randn(1, 3, 6, 6))
    assert layer._wq_cache is None


def test_optimizer_step_in_eval_mode_invalidates():
    layer = _layer(1)
    lin = QLinear(5, 3, w_bits=3, a_bits=8).eval()
    for m in (layer, lin):
        before = m._quantized_weight().clone()
        opt = torch.optim.SGD(m.parameters(), lr=0.5)
        x = torch.randn(2, 3, 6, 6) if m is layer else torch.randn(4, 5)
        m(x).pow(2).sum().backward()
        opt.step()
        after = m._quantized_weight()
        assert not torch.equal(after, before)
        assert torch.equal(after, _weight_reference(m.weight, m.w_bits))


def test_training_mode_never_caches():
    layer = _layer().train()
    x = torch.randn(2, 3, 6, 6)
    layer(x)
    assert layer._wq_cache is None
    with torch.no_grad():
        layer(x)
        layer.weight.add_(1.0)
    assert layer._wq_cache is None
    with torch.no_grad():
        q = layer._quantized_weight()
    assert torch.equal(q, _weight_reference(layer.weight, 4))


def test_deepcopy_and_torch_func_paths():
    layer = _layer(2)
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        ref = layer(x)
    twin = copy.deepcopy(layer)
    with torch.no_grad():
        twin.weight.mul_(-1)
        assert torch.equal(layer(x), ref)
        assert not torch.equal(twin(x), ref)
    # torch.func transforms see wrapped tensors: the reference formulas are used, uncached
    from torch.func import functional_call, grad, vmap
    params = {k: v.detach() for k, v in layer.named_parameters()}
    g = grad(lambda p: functional_call(layer, p, (x,)).sum())(params)
    layer.zero_grad()
    layer(x).sum().backward()
    assert torch.allclose(g["weight"], layer.weight.grad)
    ys = vmap(lambda xi: layer(xi.unsqueeze(0)))(x)
    with torch.no_grad():
        assert torch.allclose(ys.squeeze(1), layer(x), atol=1e-6)
