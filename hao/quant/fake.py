"""Fake quantization: per-channel symmetric weights, per-tensor activations with calibrated ranges.

Bits are any integer in [2, 8], or 32 for float (no quantization). Gradients pass straight through (STE).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch
from torch import nn
import torch.nn.functional as F

from hao.errors import ConfigError

__all__ = ["check_bits", "reference_kernels", "quantize_weight", "quantize_weight_error", "ActQuant", "QConv2d",
           "QLinear", "calibrate_activations", "set_bits", "quant_layers", "optional_state_keys",
           "exact_copy", "integer_codes", "exact_codes_op"]

VALID_BITS = (2, 3, 4, 5, 6, 7, 8, 32)


def check_bits(bits: int, what: str = "bits") -> int:
    if not isinstance(bits, int) or isinstance(bits, bool) or bits not in VALID_BITS:
        raise ConfigError(f"{what} must be an int in [2, 8] or 32 (float), got {bits!r}.")
    return bits


def _ste(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    return x + (q - x).detach()


try:  # torch.func wraps tensors (grad/vmap/jvp levels); the fused kernels below only see plain tensors
    from torch._C._functorch import is_functorch_wrapped_tensor as _is_wrapped
except ImportError:  # pragma: no cover - older/newer torch without this private hook
    def _is_wrapped(t: torch.Tensor) -> bool:
        return bool(torch._C._are_functorch_transforms_active())


def _plain(t: torch.Tensor) -> bool:
    """An ordinary tensor: not wrapped by a ``torch.func`` transform and carrying no forward-mode tangent.
    Anything else takes the reference formulas, exactly as before (their autograd/batching rules are known)."""
    if _is_wrapped(t):
        return False
    return torch.autograd.forward_ad.unpack_dual(t).tangent is None


_REFERENCE = False


@contextlib.contextmanager
def reference_kernels() -> Iterator[None]:
    """Within this context every quantizer uses the defining elementwise formulas, uncached (the pre-fusion
    implementation, kept for tests and benchmarks)."""
    global _REFERENCE
    prev, _REFERENCE = _REFERENCE, True
    try:
        yield
    finally:
        _REFERENCE = prev


def _fast(t: torch.Tensor) -> bool:
    return not _REFERENCE and _plain(t)


def _needs_grad(t: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and t.requires_grad


def _weight_scale(w: torch.Tensor, qmax: int) -> torch.Tensor:
    flat = w.detach().reshape(w.shape[0], -1)
    scale = flat.abs().amax(dim=1).clamp_min(1e-12) / qmax
    return scale.reshape((-1,) + (1,) * (w.dim() - 1))


def _weight_reference(w: torch.Tensor, bits: int) -> torch.Tensor:
    """The defining formula (kept verbatim; used for torch.func/forward-AD inputs and by the tests)."""
    qmax = 2 ** (bits - 1) - 1
    scale = _weight_scale(w, qmax)
    q = torch.clamp(torch.round(w / scale), -qmax, qmax) * scale
    return _ste(w, q)


def _weight_values(w: torch.Tensor, bits: int) -> torch.Tensor:
    """Quantized values of a plain, detached weight, bit-identical to :func:`_weight_reference`.

    ``w / scale`` is computed exactly as in the reference; round-half-to-even and the clamp to
    ``[-qmax, qmax]`` are then one fused ``fake_quantize_per_tensor_affine`` call with unit scale and zero point 0
    (its ``x * (1/1)`` is exact and ``nearbyint`` is half-to-even, like ``torch.round``). We do not hand the real
    per-channel scale to ``fake_quantize_per_channel_affine``: that kernel computes ``w * (1/scale)``, which can
    land on the other side of a rounding tie than ``w / scale`` (one quantization step off, on a set of relative
    width ~2**-24 around the ties), and the weight path is cached in eval mode, so its speed does not matter there.
    """
    qmax = 2 ** (bits - 1) - 1
    scale = _weight_scale(w, qmax)
    return torch.fake_quantize_per_tensor_affine(w / scale, 1.0, 0, -qmax, qmax).mul_(scale)


def quantize_weight(w: torch.Tensor, bits: int) -> torch.Tensor:
    """Symmetric uniform per-output-channel quantization (axis 0), straight-through gradient.

    Values: ``clamp(round(w / s), -qmax, qmax) * s`` with ``s = max|w_c| / qmax`` per output channel. When no
    gradient is needed the quantized tensor is returned as is; otherwise ``w + (q - w).detach()`` (gradient 1
    everywhere). Both are the same numbers: ``q - w`` is exact (Sterbenz: no weight is clipped, so
    ``|w - q| <= s/2 <= |q|/2`` or ``q == 0``), hence ``w + (q - w) == q``."""
    check_bits(bits, "w_bits")
    if bits == 32:
        return w
    if not _fast(w):
        return _weight_reference(w, bits)
    q = _weight_values(w.detach(), bits)
    return _ste(w, q) if _needs_grad(w) else q


@torch.no_grad()
def quantize_weight_error(w: torch.Tensor, bits: int) -> torch.Tensor:
    """‖Q_b(W) − W‖² (a scalar tensor)."""
    if bits == 32:
        return torch.zeros((), dtype=w.dtype)
    return (quantize_weight(w, bits) - w).pow(2).sum()


class ActQuant(nn.Module):
    """Per-tensor asymmetric uniform activation quantizer.

    The range comes from calibration (:func:`calibrate_activations`: min/max over calibration batches);
    before calibration it uses each batch's own min/max. ``bits=32`` is the identity.
    """

    def __init__(self, bits: int = 32, *, optional_state: bool = False) -> None:
        super().__init__()
        self.bits = check_bits(bits, "a_bits")
        #: ``True`` for the quantization points that checkpoints written before they existed lack (a residual
        #: block's output, the pooled head): loading such a checkpoint leaves them uncalibrated instead of failing
        #: (they are calibrated with the other quantizers by :func:`calibrate_activations`/``prepare_subnet``).
        self.optional_state = optional_state
        self.register_buffer("lo", torch.zeros(()))
        self.register_buffer("hi", torch.zeros(()))
        self.register_buffer("calibrated", torch.zeros((), dtype=torch.bool))
        self.calibrating = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.calibrating:
            lo, hi = x.detach().amin(), x.detach().amax()
            if bool(self.calibrated):
                self.lo.copy_(torch.minimum(self.lo, lo))
                self.hi.copy_(torch.maximum(self.hi, hi))
            else:
                self.lo.copy_(lo)
                self.hi.copy_(hi)
                self.calibrated.fill_(True)
        if self.bits == 32:
            return x
        if not _fast(x):
            return self._reference(x)
        scale, zero = self._qparams(x)
        levels = 2 ** self.bits - 1
        if not 0 <= zero <= levels:  # only with non-finite ranges; keep the reference's behaviour
            return self._reference(x)
        xd = x.detach()
        if self.fused_kernel:
            q = torch.fake_quantize_per_tensor_affine(xd / scale, 1.0, zero, 0, levels).mul_(scale)
        else:  # clamp(round(y) + z, 0, L) - z == clamp(round(y), -z, L - z): integers, exact in float32
            q = (xd / scale).round_().clamp_(-zero, levels - zero).mul_(scale)
        return _ste(x, q) if _needs_grad(x) else q

    #: The fast path computes ``x / scale`` exactly as the reference, then rounds half-to-even and clamps
    #: in place (default) or with one ``fake_quantize_per_tensor_affine`` call (``fused_kernel = True``; on CPU
    #: that kernel measured slower than the two vectorized in-place passes, see benchmarks/quant_eval_speed.py).
    #: Both are bit-identical to the grid value ``_reference(x, ste=False)`` for finite inputs (a NaN input gives
    #: NaN in place, the lowest level with the fused kernel). Passing the scale to the kernel instead would compute
    #: ``x * (1/scale)``, which can fall on the other side of a rounding tie (one quantization step, on a set of
    #: relative width ~2**-24 around ties), so it is not offered.
    fused_kernel = False

    def _range(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if bool(self.calibrated):
            lo, hi = self.lo, self.hi
        else:
            lo, hi = x.detach().amin(), x.detach().amax()
        return torch.minimum(lo, torch.zeros_like(lo)), torch.maximum(hi, torch.zeros_like(hi))

    def _qparams(self, x: torch.Tensor) -> tuple[torch.Tensor, int]:
        """(scale as a 0-dim float tensor, integer zero point), computed exactly as in :meth:`_reference`."""
        lo, hi = self._range(x)
        scale = (hi - lo).clamp_min(1e-8) / (2 ** self.bits - 1)
        z = float(torch.round(-lo / scale))
        return scale, int(z) if z == z and abs(z) < 2 ** 31 else -1

    def _reference(self, x: torch.Tensor, ste: bool = True) -> torch.Tensor:
        """The defining formulas (kept verbatim; used for torch.func/forward-AD inputs and by the tests).

        ``ste=False`` returns the grid value ``q`` itself. With ``ste=True`` (as before) it is ``x + (q - x)``,
        which equals ``q`` except on clipped inputs far outside the range (``|x| > 2|q|``), where ``q - x`` is
        rounded: there it is off the grid by at most ~``|x| * 2**-23``. The fast path returns ``q`` when no
        gradient is needed."""
        lo, hi = self._range(x)
        levels = 2 ** self.bits - 1
        scale = (hi - lo).clamp_min(1e-8) / levels
        zero = torch.round(-lo / scale)
        q = (torch.clamp(torch.round(x / scale) + zero, 0, levels) - zero) * scale
        return _ste(x, q) if ste else q

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        if self.optional_state:
            missing_keys[:] = [k for k in missing_keys if not k.startswith(prefix)]

    def extra_repr(self) -> str:
        return f"bits={self.bits}"


class _CachedWeightQuant:
    """Eval-mode cache of a layer's quantized weight (weights do not change while evaluating).

    The cache holds the detached quantized values; it is used only in eval mode and only for a plain weight
    tensor, and it is keyed on the weight object, its in-place version counter (``weight._version``: optimizer
    steps, ``load_state_dict``, ``with torch.no_grad(): w.mul_(..)``), storage, dtype and ``w_bits``. In training
    mode nothing is cached (and any cached value is dropped), as it is on every ``train()``/``eval()`` call.
    Writes through ``weight.data`` bypass the version counter: call :meth:`clear_weight_cache` after those.
    When a gradient is needed the straight-through form ``w + (q - w).detach()`` is returned, as uncached.
    """

    _wq_cache: tuple | None = None

    def clear_weight_cache(self) -> None:
        self._wq_cache = None

    def train(self, mode: bool = True):
        self._wq_cache = None
        return super().train(mode)

    def _quantized_weight(self) -> torch.Tensor:
        w, bits = self.weight, self.w_bits
        if bits == 32:
            return w
        if self.training or not _fast(w) or w.is_inference():
            self._wq_cache = None
            return quantize_weight(w, bits)
        check_bits(bits, "w_bits")
        key = (w._version, w.data_ptr(), w.dtype, w.device, tuple(w.shape), bits)
        c = self._wq_cache
        if c is None or c[0] is not w or c[1] != key:
            with torch.inference_mode(False), torch.no_grad():  # a normal tensor, usable outside inference mode
                q = _weight_values(w.detach(), bits)
            c = self._wq_cache = (w, key, q)
        q = c[2]
        return _ste(w, q) if _needs_grad(w) else q


def _codes(layer: nn.Module, x: torch.Tensor, weight: torch.Tensor | None = None
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """The integer-code form of an eval-mode quantized layer's inputs: (activation codes minus the zero point,
    weight codes, per-output-channel scale ``s_in · s_w``), all float32 holding integers; None where the layer
    must take the defining path (training, gradients, calibration, float bits, torch.func inputs).

    A convolution of integer codes is exact in float32 while every partial sum stays below 2**24 (u8 x i8 codes:
    e.g. 500 full-scale products), and scaling the exact accumulator once leaves a single rounding: the layer then
    computes what the integer pipeline computes (``hao.deploy``), up to ~1e-7 relative. Summing products of scaled
    values instead (the defining formula) rounds at every term. The element-wise part after it (scale, BatchNorm,
    the next quantizer's division) still rounds in float32: on one low-bit candidate that flipped 8.5% of the
    top-1 predictions relative to the exact network (docs/deployment.md). ``weight``: the weight actually used (an
    elastic layer's slice; not cached)."""
    aq = layer.act_quant
    if (layer.training or aq.calibrating or aq.bits == 32 or layer.w_bits == 32 or not _fast(x)
            or (torch.is_grad_enabled() and (x.requires_grad or layer.weight.requires_grad))):
        return None
    if weight is not None:
        qmax = 2 ** (layer.w_bits - 1) - 1
        with torch.no_grad():
            ws = _weight_scale(weight.detach(), qmax)
            codes = torch.fake_quantize_per_tensor_affine(weight.detach() / ws, 1.0, 0, -qmax, qmax)
        scale, zero = aq._qparams(x)
        levels = 2 ** aq.bits - 1
        if not 0 <= zero <= levels:
            return None
        return (x.detach() / scale).round_().clamp_(-zero, levels - zero), codes, scale * ws.reshape(-1)
    scale, zero = aq._qparams(x)
    levels = 2 ** aq.bits - 1
    if not 0 <= zero <= levels:
        return None
    xc = (x.detach() / scale).round_().clamp_(-zero, levels - zero)
    w = layer.weight.detach()
    key = (w._version, w.data_ptr(), w.dtype, tuple(w.shape), layer.w_bits)
    c = getattr(layer, "_wc_cache", None)
    if c is None or c[0] is not layer.weight or c[1] != key:
        qmax = 2 ** (layer.w_bits - 1) - 1
        with torch.inference_mode(False), torch.no_grad():  # normal tensors, usable outside inference mode
            ws = _weight_scale(w.clone(), qmax)
            codes = torch.fake_quantize_per_tensor_affine(w.clone() / ws, 1.0, 0, -qmax, qmax)
        c = layer._wc_cache = (layer.weight, key, codes, ws.reshape(-1))
    return xc, c[2], scale * c[3]


integer_codes = _codes  # public name for layers outside this module (elastic supernet convolutions)


#: float32 represents every integer up to 2**24 exactly, so a sum of integer products is exact while every
#: partial sum stays below it, in any summation order.
_F32_EXACT = float(2 ** 24)


def exact_codes_op(op, xc: torch.Tensor, wc: torch.Tensor, fan_in: int, w_absmax: int) -> torch.Tensor:
    """``op(xc, wc)`` (a convolution or matmul, linear in ``xc``) of integer-valued code tensors, exactly, as
    float64 — yet run by the fast float32 kernels.

    A float32 kernel is exact when ``fan_in · max|xc| · max|wc| < 2**24`` (every partial sum is an integer below
    2**24). When the bound fails (e.g. an 8-bit 3x3 convolution over 64 channels), the codes are split as
    ``xc = hi · 2**s + lo`` with ``0 <= lo < 2**s``; each half meets the bound, both are computed in float32 and
    joined in float64 (exact: each part is an exact integer). Falls back to float64 kernels only if no split
    fits (fan-ins above ~8,000 at 8 bits). ``op`` takes and returns tensors of its input dtype."""
    wf = wc.float()
    x_absmax = float(xc.abs().amax()) if xc.numel() else 0.0
    if fan_in * x_absmax * w_absmax < _F32_EXACT:
        return op(xc.float(), wf).double()
    for s in range(1, 16):
        step = float(2 ** s)
        if fan_in * (step - 1) * w_absmax < _F32_EXACT and fan_in * (x_absmax / step + 1) * w_absmax < _F32_EXACT:
            hi = torch.floor(xc / step)
            lo = xc - hi * step
            return op(hi.float(), wf).double().mul_(step).add_(op(lo.float(), wf).double())
    return op(xc.double(), wc.double())


class QConv2d(_CachedWeightQuant, nn.Conv2d):
    """``nn.Conv2d`` whose input is fake-quantized to ``a_bits`` and weight to ``w_bits``."""

    def __init__(self, *args, w_bits: int = 32, a_bits: int = 32, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.w_bits = check_bits(w_bits, "w_bits")
        self.act_quant = ActQuant(a_bits)

    @property
    def a_bits(self) -> int:
        return self.act_quant.bits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = _codes(self, x)
        if c is None:
            return self._conv_forward(self.act_quant(x), self._quantized_weight(), self.bias)
        xc, wc, scale = c
        if x.dtype == torch.float64:  # exact_copy: the accumulator exactly (float32 kernels), the rest in float64
            y = exact_codes_op(lambda a, b: self._conv_forward(a, b, None), xc, wc, wc[0].numel(),
                               2 ** (self.w_bits - 1) - 1)
        else:
            y = self._conv_forward(xc, wc, None)
        y = y.mul_(scale.reshape(1, -1, 1, 1))
        return y if self.bias is None else y.add_(self.bias.reshape(1, -1, 1, 1))

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, w_bits: int = 32, a_bits: int = 32) -> "QConv2d":
        q = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                conv.groups, conv.bias is not None, conv.padding_mode, w_bits=w_bits, a_bits=a_bits)
        q.weight = nn.Parameter(conv.weight.detach().clone(), requires_grad=conv.weight.requires_grad)
        if conv.bias is not None:
            q.bias = nn.Parameter(conv.bias.detach().clone(), requires_grad=conv.bias.requires_grad)
        return q

    def extra_repr(self) -> str:
        return super().extra_repr() + f", w_bits={self.w_bits}, a_bits={self.a_bits}"


class QLinear(_CachedWeightQuant, nn.Linear):
    """``nn.Linear`` with fake-quantized input (``a_bits``) and weight (``w_bits``)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, w_bits: int = 32,
                 a_bits: int = 32) -> None:
        super().__init__(in_features, out_features, bias)
        self.w_bits = check_bits(w_bits, "w_bits")
        self.act_quant = ActQuant(a_bits)

    @property
    def a_bits(self) -> int:
        return self.act_quant.bits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = _codes(self, x)
        if c is None:
            return F.linear(self.act_quant(x), self._quantized_weight(), self.bias)
        xc, wc, scale = c
        if x.dtype == torch.float64:
            y = exact_codes_op(F.linear, xc, wc, wc.shape[1], 2 ** (self.w_bits - 1) - 1).mul_(scale)
        else:
            y = F.linear(xc, wc).mul_(scale)
        return y if self.bias is None else y.add_(self.bias)

    @classmethod
    def from_linear(cls, lin: nn.Linear, w_bits: int = 32, a_bits: int = 32) -> "QLinear":
        q = cls(lin.in_features, lin.out_features, lin.bias is not None, w_bits=w_bits, a_bits=a_bits)
        q.weight = nn.Parameter(lin.weight.detach().clone())
        if lin.bias is not None:
            q.bias = nn.Parameter(lin.bias.detach().clone())
        return q

    def extra_repr(self) -> str:
        return super().extra_repr() + f", w_bits={self.w_bits}, a_bits={self.a_bits}"


def optional_state_keys(model: nn.Module) -> set[str]:
    """State keys that checkpoints may lack: quantization points added after they were written (an
    :class:`ActQuant` with ``optional_state``; they are calibrated with the others before any evaluation)."""
    return {f"{name}.{k}" for name, m in model.named_modules() if isinstance(m, ActQuant) and m.optional_state
            for k in m.state_dict()}


def exact_copy(model: nn.Module) -> nn.Module:
    """A float64 copy of a calibrated fake-quant model that computes the same quantized network exactly: weights
    replaced by their float32 quantized values (so the codes cannot change), activation ranges kept in float32
    (so the grids cannot change), everything else in float64 — its convolutions of quantized values are then
    exact, and what it computes is what the integer pipeline (``hao.deploy``) computes, up to the dyadic
    multipliers' 2**-31. Feed it float64 inputs. Used to tell float32 rounding in the fake-quant model apart
    from a difference of semantics."""
    import copy

    m = copy.deepcopy(model)
    with torch.no_grad():
        for _, layer in quant_layers(m):
            layer.weight.copy_(layer._quantized_weight().detach())
    m = m.double()
    for q in m.modules():
        if isinstance(q, ActQuant):
            q.lo, q.hi = q.lo.float(), q.hi.float()
    return m


def quant_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    for name, m in model.named_modules():
        if isinstance(m, (QConv2d, QLinear)):
            yield name, m


def set_bits(model: nn.Module, config: dict[str, dict[str, int]]) -> None:
    """Set ``w_bits``/``a_bits`` of the quantized layers named in ``config`` (``{path: {"w_bits":..}}``)."""
    layers = dict(quant_layers(model))
    for path, bits in config.items():
        if path not in layers:
            raise ConfigError(f"set_bits: no quantized layer at {path!r}; layers are {list(layers)[:8]}...")
        if "w_bits" in bits:
            layers[path].w_bits = check_bits(bits["w_bits"], f"{path}.w_bits")
        if "a_bits" in bits:
            layers[path].act_quant.bits = check_bits(bits["a_bits"], f"{path}.a_bits")


@contextlib.contextmanager
def _calibrating(model: nn.Module) -> Iterator[None]:
    qs = [m for m in model.modules() if isinstance(m, ActQuant)]
    for q in qs:
        q.calibrated.fill_(False)
        q.calibrating = True
    try:
        yield
    finally:
        for q in qs:
            q.calibrating = False


@torch.no_grad()
def calibrate_activations(model: nn.Module, batches: Iterable[torch.Tensor], max_batches: int = 8) -> None:
    """Record per-tensor activation ranges (min/max) of every :class:`ActQuant` in ``model`` on ``batches``.

    The model's train/eval mode is restored afterwards; BatchNorm statistics are not changed (eval mode)."""
    was_training = model.training
    model.eval()
    try:
        with _calibrating(model):
            for i, x in enumerate(batches):
                if i >= max_batches:
                    break
                if isinstance(x, (tuple, list)):
                    x = x[0]
                model(x)
    finally:
        model.train(was_training)
