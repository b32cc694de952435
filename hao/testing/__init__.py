"""Conformance batteries for hao's extension points (in the spirit of optuna.testing)."""
from hao.testing.spaces import (brute_force_size, check_contexts, check_reference_candidates, check_space,
                                check_supernet_protocol, count_module_macs, invalid_candidates)

__all__ = ["brute_force_size", "check_contexts", "check_reference_candidates", "check_space", "check_supernet_protocol",
           "count_module_macs", "invalid_candidates"]
