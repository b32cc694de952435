"""Torch surgery before a float network is exported to TVM: BatchNorm folded into the convolution before it,
ReLU6 replaced by ReLU, every fake-quant layer set to float — what an inference compiler sees of a candidate.
"""
from __future__ import annotations

from typing import Any

__all__ = ["fold_batchnorm", "float_model", "relu6_to_relu"]


def fold_batchnorm(model: Any) -> Any:
    """Fold every BatchNorm2d into the convolution before it (modules with ``conv``/``bn`` attributes, and
    consecutive Conv2d -> BatchNorm2d children of ``nn.Sequential``). In place; returns ``model``."""
    import torch
    from torch import nn

    def fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
        with torch.no_grad():
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps) if bn.affine else \
                1.0 / torch.sqrt(bn.running_var + bn.eps)
            shift = (bn.bias if bn.affine else 0.0) - bn.running_mean * scale
            conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
            if conv.bias is None:
                conv.bias = nn.Parameter(shift.clone())
            else:
                conv.bias.mul_(scale).add_(shift)

    for mod in list(model.modules()):
        conv, bn = getattr(mod, "conv", None), getattr(mod, "bn", None)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            fold(conv, bn)
            mod.bn = nn.Identity()
        if isinstance(mod, nn.Sequential):
            keys = list(mod._modules)
            for a, b in zip(keys, keys[1:]):
                if isinstance(mod._modules[a], nn.Conv2d) and isinstance(mod._modules[b], nn.BatchNorm2d):
                    fold(mod._modules[a], mod._modules[b])
                    mod._modules[b] = nn.Identity()
    return model


def float_model(space: Any, candidate: Any, seed: int = 0) -> Any:
    """The candidate as a float32 eval-mode torch module with BatchNorm folded."""
    from hao.quant import quant_layers, set_bits

    model = space.build(candidate, seed=seed)
    set_bits(model, {name: {"w_bits": 32, "a_bits": 32} for name, _ in quant_layers(model)})
    model.eval()
    relu6_to_relu(model)
    return fold_batchnorm(model)


def relu6_to_relu(model: Any) -> None:
    """Replace ReLU6 by ReLU (same cost). TVM 0.27's PyTorch frontend lowers ReLU6 to a ``call_tir`` clip that
    ``ConvertLayout`` cannot move to NHWC: every clip then ran as transpose -> clip -> transpose, separate
    from the convolution, which more than doubled the network's time. ReLU is a Relax op that converts and
    fuses into the convolution, as a deployment compiler fuses ReLU6."""
    from torch import nn

    for mod in list(model.modules()):
        for name, child in list(mod.named_children()):
            if isinstance(child, nn.ReLU6):
                setattr(mod, name, nn.ReLU(inplace=False))

