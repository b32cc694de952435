"""Latency: hardware tables, TVM calibration, importers of published tables, a learned predictor, validation.

Nothing here imports tvm at import time (see :mod:`hao.latency.tvm_backend`).
"""
from __future__ import annotations

from hao.latency.backend import (LatencyBackend, Measurement, RooflineBackend, get_backend, kernel_precision,
                                 list_backends, register_backend)
from hao.latency.table import (LatencyTable, hardware_dir, list_hardware, load_table, register_hardware,
                               validate_frame)

__all__ = ["LatencyBackend", "Measurement", "RooflineBackend", "get_backend", "list_backends", "register_backend",
           "kernel_precision", "LatencyTable", "hardware_dir", "list_hardware", "load_table", "register_hardware",
           "validate_frame"]
