"""A fake-quantized network as the integer program that deploys: :class:`IntegerNetwork`.

:func:`integer_network` reads a calibrated, eval-mode fake-quant model (the MBConv family: stem → inverted
residual blocks → head → pool → classifier) and returns its integer form — int8 weight codes, int64
requantization biases with BatchNorm and the input's zero point folded in, dyadic requantization multipliers
onto each consumer's grid, the ReLU6 as clip bounds (the operator semantics are :mod:`hao.latency.int8_ops`).
:meth:`IntegerNetwork.run` is the NumPy integer reference of the whole network (exact int64 arithmetic), the
ground truth the TVM module (:mod:`hao.deploy.tvm_module`) is checked against bit for bit; :meth:`save` and
:meth:`load` keep it as JSON + ``.npz`` (no pickle).

How each number is derived (``s`` a scale, ``z`` a zero point, ``q`` codes; every grid is the consumer's
activation quantizer, exactly as the fake-quant model rounds):

* conv ``c`` with BN folded: ``y_c = k_c·Σ(q_in − z_in)·w_c + t_c`` with ``k_c = s_in·s_w,c·γ_c/σ_c``; the layer
  emits ``clip(round(y_c / s_out) + z_out)``, i.e. multiplier ``k_c / s_out`` and bias ``round(t_c / k_c) −
  z_in·Σw_c`` (padding uses ``z_in``, so padded taps are real zeros). A negative ``k_c`` flips the channel's
  weight codes. ReLU6 is ``lo = z_out``, ``hi = z_out + round(6 / s_out)``.
* residual add: both inputs on their own grids, one output grid (``M_a = s_a / s_out``, ``M_b = s_b / s_out``).
* average pool: ``Σ(q − z_in)`` with ``M = s_in / (H·W·s_out)``.
* classifier: ``logits = f32(acc + bias)·s_in·s_w`` (the only float after the input's quantization).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hao.errors import ConfigError
from hao.latency import int8_ops as ops

__all__ = ["Grid", "Op", "IntegerNetwork", "integer_network"]

DOC = "docs/deployment.md"


@dataclass(frozen=True)
class Grid:
    """A per-tensor activation grid: ``real = scale·(q − zero)``, codes ``0..2**bits − 1``."""

    scale: float
    zero: int
    bits: int

    @property
    def levels(self) -> int:
        return 2 ** self.bits - 1


@dataclass
class Op:
    """One integer operator. ``kind``: conv | dwconv | add | avgpool | dense; ``inputs`` name earlier outputs
    (``"input"`` is the quantized image); ``attrs`` are ints; ``arrays`` are the constants (int8 weights, int32
    bias/mult/shift, float32 dequant)."""

    kind: str
    name: str
    inputs: list[str]
    attrs: dict[str, int]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    out: Grid | None = None
    layer: str = ""                      # the torch module path it came from


@dataclass
class IntegerNetwork:
    """The integer program of a network (see the module docstring)."""

    input_shape: tuple[int, int, int]
    input_grid: Grid
    ops: list[Op]
    num_classes: int

    # ---- the NumPy reference ----------------------------------------------------------------------------
    def quantize(self, x: np.ndarray) -> np.ndarray:
        """float32 images (N, C, H, W) -> u8 codes on the input grid."""
        g = self.input_grid
        return ops.quantize_input_np(x, scale=g.scale, zero=g.zero, levels=g.levels)

    def run(self, x: np.ndarray) -> np.ndarray:
        """Logits (N, classes) float32 of float32 images (N, C, H, W), in exact integer arithmetic."""
        x = np.asarray(x, np.float32)
        if x.ndim != 4 or tuple(x.shape[1:]) != tuple(self.input_shape):
            want = ", ".join(map(str, self.input_shape))
            raise ConfigError(f"IntegerNetwork.run expects images of shape (N, {want}), got {x.shape}.")
        vals: dict[str, np.ndarray] = {"input": self.quantize(x)}
        out = None
        for op in self.ops:
            a, A = op.attrs, op.arrays
            src = vals[op.inputs[0]]
            if op.kind in ("conv", "dwconv"):
                f = ops.conv_int8_np if op.kind == "conv" else ops.dwconv_int8_np
                out = f(src, A["weight"], A["bias"], A["mult"], A["shift"], stride=a["stride"], pad=a["pad"],
                        pad_value=a["pad_value"], zero=a["zero"], lo=a["lo"], hi=a["hi"])
            elif op.kind == "add":
                out = ops.add_int8_np(src, vals[op.inputs[1]], A["mult"], A["shift"], zero_a=a["zero_a"],
                                      zero_b=a["zero_b"], zero=a["zero"], lo=a["lo"], hi=a["hi"])
            elif op.kind == "avgpool":
                out = ops.avgpool_int8_np(src, A["mult"], A["shift"], in_zero=a["in_zero"], zero=a["zero"],
                                          lo=a["lo"], hi=a["hi"])
            elif op.kind == "dense":
                out = ops.dense_logits_np(src.reshape(src.shape[0], -1), A["weight"], A["dequant"], A["bias"])
            else:  # pragma: no cover - ops are built here only
                raise ConfigError(f"unknown integer op kind {op.kind!r}")
            vals[op.name] = out
        return out

    def kernels(self) -> list[Any]:
        """The table kernels (:class:`~hao.kernel.KernelSpec`) this network runs, in order — the list the latency
        predictor sums for the candidate (``space.kernels``), each run by that kernel's own program."""
        from hao.kernel import KernelSpec

        out: list[Any] = []
        chw = {"input": tuple(self.input_shape)}
        for op in self.ops:
            a = op.attrs
            c, h, w = chw[op.inputs[0]]
            if op.kind in ("conv", "dwconv"):
                s = a["stride"]
                conv = op.kind == "conv"
                out.append(KernelSpec("conv2d" if conv else "dwconv2d", a["in_channels"], a["out_channels"], h, w,
                                      a["kernel"], s, 1 if conv else a["in_channels"], a["w_bits"], a["a_bits"]))
                chw[op.name] = (a["out_channels"], -(-h // s), -(-w // s))
            elif op.kind == "add":
                out.append(KernelSpec("add", c, c, h, w, 1, 1, 1, 32, 8))
                chw[op.name] = (c, h, w)
            elif op.kind == "avgpool":
                out.append(KernelSpec("avgpool", c, c, h, w, 1, 1, 1, 32, 8))
                chw[op.name] = (c, 1, 1)
            else:
                out.append(KernelSpec("dense", c, op.arrays["weight"].shape[0], 1, 1, 1, 1, 1, 8, 8))
        return out

    # ---- persistence (JSON + npz, no pickle) ------------------------------------------------------------
    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {f"{op.name}/{k}": v for op in self.ops for k, v in op.arrays.items()}
        np.savez(folder / "integer_network.npz", **arrays)
        meta = {"format": "hao.integer_network/1", "input_shape": list(self.input_shape),
                "input_grid": vars(self.input_grid), "num_classes": self.num_classes,
                "ops": [{"kind": o.kind, "name": o.name, "inputs": o.inputs, "attrs": o.attrs, "layer": o.layer,
                         "out": None if o.out is None else vars(o.out), "arrays": sorted(o.arrays)}
                        for o in self.ops]}
        (folder / "integer_network.json").write_text(json.dumps(meta, indent=1) + "\n")

    @classmethod
    def load(cls, folder: str | Path) -> "IntegerNetwork":
        folder = Path(folder)
        meta = json.loads((folder / "integer_network.json").read_text())
        if meta.get("format") != "hao.integer_network/1":
            raise ConfigError(f"{folder}/integer_network.json is not a hao integer network (format "
                              f"{meta.get('format')!r}, expected 'hao.integer_network/1'); see {DOC}.")
        with np.load(folder / "integer_network.npz", allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
        net_ops = [Op(o["kind"], o["name"], o["inputs"], {k: int(v) for k, v in o["attrs"].items()},
                      {k: data[f"{o['name']}/{k}"] for k in o["arrays"]},
                      None if o["out"] is None else Grid(**o["out"]), o.get("layer", "")) for o in meta["ops"]]
        return cls(tuple(meta["input_shape"]), Grid(**meta["input_grid"]), net_ops, int(meta["num_classes"]))


# ---- extraction from a fake-quant model -----------------------------------------------------------------------
def _grid(aq: Any, where: str) -> Grid:
    import torch

    if aq.bits == 32:
        raise ConfigError(f"{where} is float (32 bits): the integer compiler needs every layer quantized (bits in "
                          f"[2, 8]); deploy float candidates with `hao export --tvm --precision fp32` ({DOC}).")
    if not bool(aq.calibrated):
        raise ConfigError(f"{where}'s activation range is not calibrated: run calibrate_activations / "
                          f"prepare_subnet on training images first ({DOC}).")
    scale, zero = aq._qparams(torch.zeros(()))
    return Grid(float(scale), int(zero), int(aq.bits))


def _weight_codes(conv: Any) -> tuple[np.ndarray, np.ndarray]:
    """(int codes as in the fake-quant forward, float32 per-channel scale)."""
    import torch

    from hao.quant.fake import _weight_scale

    bits = conv.w_bits
    if bits == 32:
        raise ConfigError(f"weights of {type(conv).__name__} are float (w_bits=32); see {DOC}.")
    qmax = 2 ** (bits - 1) - 1
    w = conv.weight.detach().float()
    s = _weight_scale(w, qmax)
    q = torch.clamp(torch.round(w / s), -qmax, qmax)
    return q.numpy().astype(np.int8), s.reshape(-1).numpy().astype(np.float32)


def _bn_affine(bn: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    from torch import nn

    if isinstance(bn, nn.Identity):
        return np.ones(n), np.zeros(n)
    sd = 1.0 / np.sqrt(bn.running_var.detach().double().numpy() + bn.eps)
    g = bn.weight.detach().double().numpy() if bn.affine else np.ones(n)
    b = bn.bias.detach().double().numpy() if bn.affine else np.zeros(n)
    return g * sd, b - g * sd * bn.running_mean.detach().double().numpy()


def _conv_op(name: str, path: str, unit: Any, src: str, in_grid: Grid, out_grid: Grid) -> Op:
    from torch import nn

    conv = unit.conv
    q, sw = _weight_codes(conv)
    oc = q.shape[0]
    gain, shift_bn = _bn_affine(unit.bn, oc)
    bias = conv.bias.detach().double().numpy() if conv.bias is not None else np.zeros(oc)
    k = in_grid.scale * sw.astype(np.float64) * gain            # real value of one accumulator step
    t = gain * bias + shift_bn
    sign = np.where(k < 0, -1, 1)
    q = q * sign.reshape(-1, 1, 1, 1).astype(np.int8)
    k = np.abs(k)
    dead = k <= 1e-12 * max(float(k.max()), 1e-30)
    q[dead] = 0
    mult, shift = ops.dyadic(np.where(dead, 0.0, k / out_grid.scale))
    # bias on the 2**-shift scale (exact integer arithmetic from here): t / s_out, minus the input's zero point
    # times the channel's weight sum (at the channel's integer multiplier), plus the rounding constant
    zsum = in_grid.zero * q.reshape(oc, -1).astype(np.int64).sum(1)
    tb = np.rint(t / out_grid.scale * np.exp2(shift.astype(np.float64)))
    if np.any(np.abs(tb) >= 2.0 ** 62):
        raise ConfigError(f"{path}: a folded bias does not fit the int64 requantization (|bias / s_out| up to "
                          f"{np.abs(t / out_grid.scale).max():.3g} output steps); the layer's BatchNorm or "
                          f"activation range is degenerate ({DOC}).")
    b = tb.astype(np.int64) - zsum * mult.astype(np.int64) + ops.rounding_bias(shift)
    act = isinstance(unit.act, (nn.ReLU6, nn.ReLU))
    lo = out_grid.zero if act else 0
    hi = out_grid.levels
    if isinstance(unit.act, nn.ReLU6):
        hi = min(hi, out_grid.zero + int(np.rint(np.float32(6.0) / np.float32(out_grid.scale))))
    groups = conv.groups
    kind = "dwconv" if groups > 1 else "conv"
    if groups > 1 and not groups == conv.in_channels == conv.out_channels:
        raise ConfigError(f"{path}: grouped convolutions other than depthwise are not supported ({DOC}).")
    ks = conv.kernel_size[0]
    if conv.padding[0] != ks // 2 or conv.kernel_size[0] != conv.kernel_size[1] or conv.dilation != (1, 1):
        raise ConfigError(f"{path}: only square, 'same'-padded, undilated convolutions are supported ({DOC}).")
    return Op(kind, name, [src], {"stride": conv.stride[0], "pad": ks // 2, "pad_value": in_grid.zero,
                                  "zero": out_grid.zero, "lo": lo, "hi": hi, "kernel": ks,
                                  "in_channels": conv.in_channels, "out_channels": conv.out_channels,
                                  "w_bits": conv.w_bits, "a_bits": in_grid.bits},
              {"weight": q, "bias": b, "mult": mult, "shift": shift}, out_grid, path)


def integer_network(model: Any, input_shape: tuple[int, int, int]) -> IntegerNetwork:
    """The integer program of a calibrated, eval-mode MBConv-family fake-quant model (``space.build`` of an
    ``mbconv*`` space, after ``prepare_subnet``). Raises ``ConfigError`` for float layers, uncalibrated ranges
    and unsupported structures."""
    for attr in ("stem", "blocks", "head", "pool_quant", "classifier"):
        if not hasattr(model, attr):
            raise ConfigError(f"integer_network supports the MBConv family (stem, blocks, head, pool, classifier); "
                              f"{type(model).__name__} has no {attr!r} ({DOC}).")
    if model.training:
        raise ConfigError("integer_network needs an eval-mode model (call model.eval()).")
    blocks = list(model.blocks())
    v3 = [what for what, on in (
        ("a first block", getattr(model, "first", None) is not None),
        ("a feature-mix layer", getattr(model, "feature_mix", None) is not None),
        ("squeeze-excite", any(getattr(b, "se", None) is not None for b in blocks)),
        ("h-swish", any(getattr(m, "act_kind", None) == "hswish" for m in model.modules()))) if on]
    if v3:
        raise ConfigError(f"integer_network compiles the MobileNetV2 block only; this model uses {', '.join(v3)} "
                          f"(MobileNetV3 options of the MBConv space), which have no integer program yet. Deploy it "
                          f"as PyTorch, or search a space without those options ({DOC}).")
    head_in = _grid(model.head.conv.act_quant, "head.conv input")
    entry = [_grid(b.expand.conv.act_quant, f"block {i} input") for i, b in enumerate(blocks)] + [head_in]
    in_grid = _grid(model.stem.conv.act_quant, "stem input")
    net_ops: list[Op] = []
    cur = "input"
    net_ops.append(_conv_op("stem", "stem", model.stem, cur, in_grid, entry[0]))
    cur = "stem"
    for i, blk in enumerate(blocks):
        p = f"blocks.{i}"
        g_e, g_dw, g_pr = entry[i], _grid(blk.dw.conv.act_quant, f"{p}.dw input"), \
            _grid(blk.project.conv.act_quant, f"{p}.project input")
        net_ops.append(_conv_op(f"{p}.expand", f"{p}.expand", blk.expand, cur, g_e, g_dw))
        net_ops.append(_conv_op(f"{p}.dw", f"{p}.dw", blk.dw, f"{p}.expand", g_dw, g_pr))
        if blk.residual:
            from hao.layers import follow_bits

            follow_bits(blk.out_quant, blk.project.conv.act_quant)
            g_o = _grid(blk.out_quant, f"{p} residual output")
            net_ops.append(_conv_op(f"{p}.project", f"{p}.project", blk.project, f"{p}.dw", g_pr, g_o))
            ma, shift = ops.dyadic_pair(g_e.scale / entry[i + 1].scale, g_o.scale / entry[i + 1].scale)
            net_ops.append(Op("add", f"{p}.add", [cur, f"{p}.project"],
                              {"zero_a": g_e.zero, "zero_b": g_o.zero, "zero": entry[i + 1].zero, "lo": 0,
                               "hi": entry[i + 1].levels}, {"mult": ma, "shift": shift}, entry[i + 1], p))
            cur = f"{p}.add"
        else:
            net_ops.append(_conv_op(f"{p}.project", f"{p}.project", blk.project, f"{p}.dw", g_pr, entry[i + 1]))
            cur = f"{p}.project"
    from hao.layers import follow_bits

    follow_bits(model.pool_quant, model.classifier.act_quant)
    g_pool = _grid(model.pool_quant, "pooled head output")
    g_cls = _grid(model.classifier.act_quant, "classifier input")
    net_ops.append(_conv_op("head", "head", model.head, cur, head_in, g_pool))
    fh, fw = _final_hw(tuple(input_shape), net_ops)
    m, sh = ops.dyadic(g_pool.scale / (fh * fw * g_cls.scale))
    net_ops.append(Op("avgpool", "pool", ["head"], {"in_zero": g_pool.zero, "zero": g_cls.zero, "lo": 0,
                                                     "hi": g_cls.levels, "h": fh, "w": fw},
                      {"mult": m, "shift": sh}, g_cls, "pool"))
    cls = model.classifier
    q, sw = _weight_codes(cls)
    k = g_cls.scale * sw.astype(np.float64)
    bias = cls.bias.detach().double().numpy() if cls.bias is not None else np.zeros(q.shape[0])
    # logits = s_in·s_w·Σ(q − z)·w + b = f32(acc)·k + (b − k·z·Σw): the only float arithmetic after the input
    b = bias - k * g_cls.zero * q.astype(np.int64).sum(1)
    net_ops.append(Op("dense", "classifier", ["pool"], {}, {"weight": q, "bias": b.astype(np.float32),
                                                            "dequant": k.astype(np.float32)}, None, "classifier"))
    return IntegerNetwork(tuple(int(s) for s in input_shape), in_grid, net_ops, int(q.shape[0]))


def _final_hw(input_shape: tuple[int, int, int], net_ops: list[Op]) -> tuple[int, int]:
    h, w = input_shape[1], input_shape[2]
    for op in net_ops:
        if op.kind in ("conv", "dwconv"):
            s = op.attrs["stride"]
            h, w = -(-h // s), -(-w // s)
    return h, w
