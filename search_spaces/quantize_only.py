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


@register_space("quant-mobilenetv2", family="quantize-only",
                description="MobileNetV2 (224x224, HAQ layout): 51 searchable layers, W and A bits in 2..8 each, "
                            "first/last pinned at 8; maps onto the HAQ latency table")
def quant_mobilenetv2(bits=(2, 3, 4, 5, 6, 7, 8), a_bits=(2, 3, 4, 5, 6, 7, 8), seed: int = 0, **kw
                      ) -> QuantizeOnlySpace:
    from hao.models import mobilenet_v2
    return QuantizeOnlySpace("quant-mobilenetv2", mobilenet_v2(seed=seed), kw.pop("input_shape", (3, 224, 224)),
                             bits=bits, a_bits=a_bits, **kw)
