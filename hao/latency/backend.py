"""The latency-backend extension point: something that turns a :class:`~hao.kernel.KernelSpec` into a measured time.

A backend is used by :func:`hao.latency.calibrate.calibrate` like this::

    backend = get_backend("tvm", target=..., trials=8, database_dir=folder / "tuning_db")
    backend.open()                       # once: start pools, load intrinsics, connect to RPC
    for kernel in kernels:               # one kernel at a time; any order
        m = backend.measure(kernel)      # -> Measurement (ok or failed, never raises for a kernel's fault)
    backend.close()                      # once, also after an exception (calibrate uses try/finally)
    meta = backend.describe()            # JSON-able facts for meta.json (device, target, threads, protocol)

Contract for implementers (subclass :class:`LatencyBackend`, decorate with :func:`register_backend`):

* ``__init__`` only stores and validates parameters (cheap, no heavy imports, no device access).
* :meth:`open` acquires resources; it may raise :class:`~hao.errors.ConfigError` or
  :class:`~hao.errors.MissingDependencyError` with a message naming the fix.
* :meth:`measure` must not raise for a problem of the kernel itself (build failure, wrong output, timeout):
  it returns ``Measurement(ok=False, reason=...)`` so that the run goes on and the failure is recorded.
  It may raise for problems of the whole run (device gone, KeyboardInterrupt).
* A backend is used from one thread; calibration of one hardware uses one backend instance.
* :meth:`describe` returns the facts that make a table reproducible; they go into ``meta.json``.
"""
from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable

from hao.errors import ConfigError
from hao.registry import Registry
from hao.kernel import LAYOUT_OPS, KernelSpec

__all__ = ["Measurement", "LatencyBackend", "RooflineBackend", "BACKENDS", "register_backend", "get_backend",
           "list_backends", "kernel_precision", "executed_kernel"]


def kernel_precision(kernel: KernelSpec) -> str:
    """How a kernel's bit-widths are executed: ``"fp32"``, ``"int8"`` or ``"int8-mapped"`` (sub-8-bit
    weights/activations run on the int8 kernel: no faster path exists on the CPUs we calibrate), or
    ``"fp32-mapped"`` (mixed float/integer bit-widths run as float32)."""
    w, a = kernel.w_bits, kernel.a_bits
    if kernel.op in ("avgpool", "add"):
        w = a  # no weights: the activation precision decides
    if w == 32 and a == 32:
        return "fp32"
    if w == 32 or a == 32:
        return "fp32-mapped"
    if w == 8 and a == 8:
        return "int8"
    return "int8-mapped"


@dataclass
class Measurement:
    """The outcome of measuring one kernel.

    ``latency_ms`` is the median over ``repeats`` timing rounds, ``std_ms`` their standard deviation.
    ``impl`` says what really ran (``fp32``, ``int8-vnni``, ``int8``, ``int8-mapped-vnni``...), ``vnni``
    whether the compiled code contains VNNI dot-product instructions. ``ok=False`` rows carry ``reason``.
    """

    kernel: KernelSpec
    ok: bool
    latency_ms: float = math.nan
    std_ms: float = math.nan
    repeats: int = 0
    impl: str = ""
    vnni: bool = False
    tuning_trials: int = 0
    tune_s: float = 0.0
    max_abs_err: float = math.nan
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_row(self) -> dict[str, Any]:
        d = self.kernel.to_dict()
        d.update(latency_ms=self.latency_ms, std_ms=self.std_ms, repeats=self.repeats, impl=self.impl,
                 vnni=int(self.vnni), tuning_trials=self.tuning_trials, tune_s=round(self.tune_s, 3),
                 max_abs_err=self.max_abs_err)
        return d


class LatencyBackend(ABC):
    """Base class of latency backends (see the module docstring for the contract)."""

    #: Registry name, set by :func:`register_backend`.
    name: str = ""

    def open(self) -> None:  # noqa: B027 - optional hook
        """Acquire resources (pools, device sessions). Called once before the first :meth:`measure`."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources. Called once, also after an error."""

    @abstractmethod
    def measure(self, kernel: KernelSpec) -> Measurement:
        """Time one kernel; return a failed :class:`Measurement` (not an exception) if the kernel fails."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """JSON-able facts for ``meta.json``: device, target, threads, protocol, versions."""

    def __enter__(self) -> "LatencyBackend":
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


BACKENDS: Registry = Registry("latency backend", base=LatencyBackend, builtins=("hao.latency.tvm_backend",),
                             entry_points="hao.latency_backends",
                              hint="Register your own with @hao.latency.register_backend('name') (see "
                                   "CONTRIBUTING.md).")


def register_backend(name: str) -> Callable[[type], type]:
    """Class decorator: make a :class:`LatencyBackend` subclass available as ``get_backend(name)``."""
    return BACKENDS.register(name)


def list_backends() -> list[str]:
    return BACKENDS.names()


def get_backend(name: str, **params: Any) -> LatencyBackend:
    """Create the backend registered as ``name`` with ``params`` (bad parameters raise ConfigError)."""
    return BACKENDS.create(name, **params)


@register_backend("roofline")
class RooflineBackend(LatencyBackend):
    """An analytic stand-in (no device): ``max(MACs / peak, bytes / bandwidth) + launch overhead``.

    Used for dry runs of the calibration machinery and for tests of resume/atomicity that must be fast.
    Never commit its rows as a hardware table: ``describe()`` marks them ``"synthetic": true``.
    ``delay_s`` sleeps per kernel so that tests can interrupt a run mid-way.
    """

    def __init__(self, peak_gmacs: float = 50.0, bandwidth_gbs: float = 20.0, overhead_us: float = 5.0,
                 delay_s: float = 0.0, fail_ops: tuple[str, ...] = ()) -> None:
        for pname, v in (("peak_gmacs", peak_gmacs), ("bandwidth_gbs", bandwidth_gbs)):
            if not (isinstance(v, (int, float)) and v > 0):
                raise ConfigError(f"RooflineBackend {pname} must be a positive number, got {v!r}.")
        self.peak_gmacs = float(peak_gmacs)
        self.bandwidth_gbs = float(bandwidth_gbs)
        self.overhead_us = float(overhead_us)
        self.delay_s = float(delay_s)
        self.fail_ops = tuple(fail_ops)

    def measure(self, kernel: KernelSpec) -> Measurement:
        import time

        if self.delay_s:
            time.sleep(self.delay_s)
        if kernel.op in self.fail_ops:
            return Measurement(kernel, ok=False, reason=f"op {kernel.op!r} configured to fail (fail_ops)")
        speed = 4.0 if kernel_precision(kernel).startswith("int8") else 1.0
        t_c = kernel.macs / (self.peak_gmacs * 1e9 * speed)
        t_m = (kernel.input_bytes + kernel.output_bytes + kernel.weight_bytes) / (self.bandwidth_gbs * 1e9)
        ms = (max(t_c, t_m) + self.overhead_us * 1e-6) * 1e3
        return Measurement(kernel, ok=True, latency_ms=ms, std_ms=0.0, repeats=1,
                           impl=kernel_precision(kernel), vnni=False)

    def describe(self) -> dict[str, Any]:
        return {"backend": "roofline", "synthetic": True, "device": "analytic roofline model",
                "params": {"peak_gmacs": self.peak_gmacs, "bandwidth_gbs": self.bandwidth_gbs,
                           "overhead_us": self.overhead_us}}


def executed_kernel(kernel: KernelSpec) -> KernelSpec:
    """The kernel whose program a mapped kernel runs (:func:`kernel_precision`): ``int8-mapped`` -> the same
    shape at W8A8, ``fp32-mapped`` -> W32A32; any other kernel is returned unchanged."""
    prec = kernel_precision(kernel)
    if prec == "int8-mapped":
        return replace_bits(kernel, 8, 8)
    if prec == "fp32-mapped":
        return replace_bits(kernel, 32, 32)
    return kernel


#: ops that have float32 programs only (attention's matmuls, softmax, LayerNorm, GELU, head layout copies): a
#: calibration plan keeps them at 32/32 whatever precisions it asks for
FLOAT_ONLY_OPS = ("bmm", "softmax", "layernorm", "gelu") + LAYOUT_OPS


def replace_bits(kernel: KernelSpec, w_bits: int, a_bits: int) -> KernelSpec:
    """The same kernel at other bit-widths (weights of avgpool/add stay 32; float-only ops stay float32)."""
    if kernel.op in FLOAT_ONLY_OPS:
        return dataclasses.replace(kernel, w_bits=32, a_bits=32)
    if kernel.op in ("avgpool", "add"):
        return dataclasses.replace(kernel, a_bits=a_bits)
    return dataclasses.replace(kernel, w_bits=w_bits, a_bits=a_bits)
