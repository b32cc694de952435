"""Accuracy proxy: per-layer Hessian traces, the (layer, choice, bits) sensitivity table, the additive proxy.

    traces = hessian_traces(model, F.cross_entropy, loader, samples=64, tol=0.05, seed=0)
    table = SensitivityTable.compute(space, supernet, traces, checkpoint_sha256=sha)
    proxy = AccuracyProxy(space, table)            # or AccuracyProxy.from_checkpoint(space)
    proxy.score(candidates)                        # ½ Σ Ω per candidate; proxy.unit_costs(), proxy.constant
"""
from hao.proxy.build import (compute_sensitivity, eigen_sensitivity, supernet_traces, zeroq_sensitivity,
                             zeroq_traces)
from hao.proxy.hutchinson import (HessianTraces, LayerTrace, hessian_traces, preserve_model_state,
                                  weight_layers)
from hao.proxy.proxy import (ACCURACY_MODELS, AccuracyProxy, BaseAccuracyProxy, WeightNormProxy, default_checkpoint_dir,
                             get_accuracy_model, list_accuracy_models, register_accuracy_model)
from hao.proxy.sensitivity import (SENSITIVITY_FILE, SensitivityCacheError, SensitivityTable,
                                   activation_quant_mse, float_weights, perturbation_sq_norm)
from hao.proxy.zeroq import distill_batch
from hao.proxy.arch_terms import ARCH_TERMS_FILE, ArchTerms, measure_arch_terms  # noqa: E402
from hao.proxy.calibrated import (CalibratedAccuracyModel, TermGroups, build_term_groups,  # noqa: E402
                                  model_folder)
from hao.proxy.eigen import LayerEigen, eigen_traces, qbert_sensitivity, top_eigenvalues  # noqa: E402

__all__ = ["ARCH_TERMS_FILE", "ArchTerms", "measure_arch_terms", "CalibratedAccuracyModel", "TermGroups",
           "model_folder",
           "build_term_groups", "LayerEigen", "eigen_traces", "qbert_sensitivity", "top_eigenvalues",
           "eigen_sensitivity", "ACCURACY_MODELS", "get_accuracy_model", "list_accuracy_models",
           "register_accuracy_model", "AccuracyProxy", "activation_quant_mse", "BaseAccuracyProxy", "HessianTraces",
           "LayerTrace", "SENSITIVITY_FILE", "SensitivityCacheError", "SensitivityTable", "WeightNormProxy",
           "compute_sensitivity", "default_checkpoint_dir", "distill_batch", "float_weights", "hessian_traces",
           "perturbation_sq_norm", "preserve_model_state", "supernet_traces", "weight_layers", "zeroq_sensitivity",
           "zeroq_traces"]
