"""Fake quantization (per-channel symmetric weights, calibrated per-tensor activations)."""
from hao.quant.fake import (ActQuant, QConv2d, QLinear, calibrate_activations, check_bits, exact_copy,
                            optional_state_keys, quant_layers, quantize_weight, quantize_weight_error,
                            reference_kernels, set_bits)

__all__ = ["ActQuant", "QConv2d", "QLinear", "calibrate_activations", "check_bits", "exact_copy",
           "optional_state_keys", "quant_layers", "quantize_weight", "quantize_weight_error", "reference_kernels",
           "set_bits"]
