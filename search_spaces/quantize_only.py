"""Quantize-only family: per-layer bits over a fixed model (HAWQ-V3). Wrap your own model with
``hao.space.quantize_only.QuantizeOnlySpace(name, model, input_shape, ties=..., pinned=...)``."""
from hao.models import resnet18, resnet50
from hao.space import register_space
from hao.space.quantize_only import QuantizeOnlySpace, downsample_ties


@register_space("quant-resnet18", family="quantize-only",
                description="ResNet18 (torchvision layout, 224x224): 19 searchable layers in {4,8} bits, "
                            "first/last pinned at 8, downsample ties (HAWQ-V3)")
def quant_resnet18(bits=(4, 8), seed: int = 0, **kw) -> QuantizeOnlySpace:
    model = resnet18(seed=seed)
    return QuantizeOnlySpace("quant-resnet18", model, kw.pop("input_shape", (3, 224, 224)), bits=bits,
                             ties=kw.pop("ties", downsample_ties(model)), **kw)


@register_space("quant-resnet50", family="quantize-only",
                description="ResNet50 (torchvision layout, 224x224): 52 searchable layers in {4,8} bits, "
                            "first/last pinned at 8, downsample ties")
def quant_resnet50(bits=(4, 8), seed: int = 0, **kw) -> QuantizeOnlySpace:
    model = resnet50(seed=seed)
    return QuantizeOnlySpace("quant-resnet50", model, kw.pop("input_shape", (3, 224, 224)), bits=bits,
                             ties=kw.pop("ties", downsample_ties(model)), **kw)
