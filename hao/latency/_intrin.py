"""x86 tensor intrinsics for MetaSchedule, loaded fast and fixed for LLVM 22.

Two problems with TVM 0.27 as installed:

* ``import tvm.s_tir.tensor_intrin`` registers CUDA/ROCm/ARM/Hexagon intrinsics too and takes 25-30 s. Every
  MetaSchedule builder worker imports it, so the first builds time out. :func:`load_x86_intrinsics` installs
  only the x86 ones: it pre-registers an empty ``tvm.s_tir.tensor_intrin`` package object in ``sys.modules``
  (so the later ``import tvm.s_tir.tensor_intrin`` inside TVM is a no-op) and imports ``.x86`` alone.
* The shipped ``dot_16x4_vnni`` implementation calls ``llvm.x86.avx512.vpdpbusd.512`` with
  ``<16 x i32>`` operands; LLVM 22 declares it as ``(<16 x i32>, <64 x i8>, <64 x i8>)`` and the verifier
  rejects every VNNI candidate, after which the tuner silently falls back to scalar code. We re-register the
  intrinsic under the same name with the new operand types.

Call :func:`load_x86_intrinsics` in the tuning process and pass it as ``LocalBuilder(initializer=...)``.
"""
from __future__ import annotations

import importlib
import os
import sys
import types

from hao._imports import lazy_import

__all__ = ["load_x86_intrinsics", "VNNI_INTRIN"]

VNNI_INTRIN = "dot_16x4_vnni"
_LOADED = False


def _install_stub_package() -> None:
    if "tvm.s_tir.tensor_intrin" in sys.modules:
        return
    s_tir = importlib.import_module("tvm.s_tir")
    pkg_dir = os.path.join(os.path.dirname(s_tir.__file__), "tensor_intrin")
    stub = types.ModuleType("tvm.s_tir.tensor_intrin")
    stub.__path__ = [pkg_dir]  # a package: submodules import from the real folder
    stub.__package__ = "tvm.s_tir.tensor_intrin"
    stub.__file__ = os.path.join(pkg_dir, "__init__.py")
    sys.modules["tvm.s_tir.tensor_intrin"] = stub
    s_tir.tensor_intrin = stub


def load_x86_intrinsics() -> None:
    """Register the x86 dot-product intrinsics (VNNI fixed for LLVM 22). Idempotent, ~0.1 s."""
    global _LOADED
    if _LOADED:
        return
    lazy_import("tvm")
    _install_stub_package()
    importlib.import_module("tvm.s_tir.tensor_intrin.x86")
    from tvm.s_tir import TensorIntrin

    from hao.latency import _vnni_tir

    TensorIntrin.register(VNNI_INTRIN, _vnni_tir.dot_product_16x4_u8i8i32_desc,
                          _vnni_tir.dot_product_16x4_u8i8i32_vnni_llvm22, override=True)
    _LOADED = True
