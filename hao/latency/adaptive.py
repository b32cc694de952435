"""Adaptive calibration: measure the kernels the predictor is least sure of, weighted by how much of the space's
networks they make up, and stop at a budget (``hao calibrate --adaptive N``).

nn-Meter's idea (Zhang et al., 2021: sample where the predictor errs, refit, repeat), made network-aware. The pool
is the space's executed kernels — every shape at float32 and at int8 (sub-8-bit kernels run the int8 program, so
their latency is the W8A8 row's; see "Mapped kernels" in :mod:`hao.latency.predictor`). Each round:

1. fit a :class:`~hao.latency.predictor.LatencyPredictor` (with its quantile band) on the rows measured so far;
2. score every unmeasured kernel by the latency it can put wrong in an average network of the space::

       score(k) = usage(k) · predicted_ms(k) · log(high_k / low_k)

   ``usage(k)``: how many times a seeded random network of the space contains ``k`` (averaged over
   ``n_networks`` networks of each precision: float32, int8 and the sampled bit-widths); ``log(high/low)``: the
   width of the predictor's 10-90% band, a relative uncertainty; times the predicted latency it is absolute, so
   a doubtful 5 µs kernel ranks below a doubtful 0.2 ms one;
3. measure the ``batch`` highest-scoring kernels.

The first ``start`` kernels are a seeded stratified draw (every op and precision first, then the most used
kernels). The same selection is replayed offline on a complete table by ``benchmarks/adaptive_calibration.py``
(which kernels would have been measured, and how well held-out whole networks are then predicted).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from hao.errors import ConfigError
from hao.kernel import KernelSpec
from hao.latency.backend import executed_kernel, kernel_precision, replace_bits

__all__ = ["AdaptiveSampler", "usage_weights", "executed_pool", "NETWORK_PRECISIONS"]

#: The precisions whose networks define a kernel's usage: all-float, all-int8 and the space's own bit-widths.
NETWORK_PRECISIONS = ("fp32", "int8", "mixed")


def _as_precision(kernels: Sequence[KernelSpec], precision: str) -> list[KernelSpec]:
    if precision == "fp32":
        return [replace_bits(k, 32, 32) for k in kernels]
    if precision == "int8":
        return [replace_bits(k, 8, 8) if k.op in ("conv2d", "dwconv2d") else k for k in kernels]
    return list(kernels)


def usage_weights(space: Any, n_networks: int = 200, seed: int = 0,
                  precisions: Sequence[str] = NETWORK_PRECISIONS) -> dict[KernelSpec, float]:
    """Mean number of occurrences of each executed kernel per network, over ``n_networks`` seeded random
    networks of ``space`` at each of ``precisions`` (``fp32``: every kernel float; ``int8``: convolutions W8A8;
    ``mixed``: the sampled bit-widths)."""
    bad = [p for p in precisions if p not in NETWORK_PRECISIONS]
    if bad or not precisions:
        raise ConfigError(f"usage_weights precisions must be a non-empty subset of {NETWORK_PRECISIONS}, got "
                          f"{list(precisions)!r}.")
    if not isinstance(n_networks, int) or n_networks < 1:
        raise ConfigError(f"usage_weights n_networks must be an int >= 1, got {n_networks!r}.")
    rng = np.random.default_rng(seed)
    counts: dict[KernelSpec, float] = {}
    total = n_networks * len(precisions)
    for _ in range(n_networks):
        ks = space.kernels(space.sample(rng))
        for p in precisions:
            for k in _as_precision(ks, p):
                e = executed_kernel(k)
                counts[e] = counts.get(e, 0.0) + 1.0 / total
    return counts


def executed_pool(kernels: Sequence[KernelSpec]) -> list[KernelSpec]:
    """The distinct kernels that ``kernels`` execute (mapped ones replaced by their program's kernel), sorted."""
    return sorted({executed_kernel(k) for k in kernels})


@dataclass
class AdaptiveSampler:
    """Chooses which kernels to measure next (module docstring).

    Parameters
    ----------
    pool: the candidate kernels (usually :func:`executed_pool` of the space's kernels).
    weights: usage per kernel (:func:`usage_weights`); kernels missing from it weigh 0.
    start: size of the seeded first draw; batch: kernels per round after it; seed: of the first draw and the
        predictor's subsampling.
    make_predictor: builds the estimator refitted each round (default: ``LatencyPredictor`` with its 10-90% band,
        120 trees — refitted often, so lighter than the table's).
    """

    pool: Sequence[KernelSpec]
    weights: dict[KernelSpec, float]
    start: int = 40
    batch: int = 16
    seed: int = 0
    make_predictor: Callable[[], Any] | None = None
    rounds: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in ("start", "batch"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"AdaptiveSampler {name} must be an int >= 1, got {v!r}.")
        if self.start < 5:
            raise ConfigError(f"AdaptiveSampler start must be >= 5 (the predictor needs 5 rows to fit), got "
                              f"{self.start}.")
        self.pool = list(dict.fromkeys(self.pool))
        if not self.pool:
            raise ConfigError("AdaptiveSampler got an empty pool of kernels; does the space emit any kernels?")

    def _predictor(self) -> Any:
        if self.make_predictor is not None:
            return self.make_predictor()
        from hao.latency.predictor import LatencyPredictor

        return LatencyPredictor(n_estimators=120, learning_rate=0.1, random_state=self.seed)

    def first(self) -> list[KernelSpec]:
        """The seeded first draw: one kernel of each (op, precision) group in turn, most used first within a
        group after a seeded shuffle, until ``start`` kernels."""
        rng = np.random.default_rng(self.seed)
        groups: dict[tuple[str, str], list[KernelSpec]] = {}
        for i in rng.permutation(len(self.pool)):
            k = self.pool[int(i)]
            groups.setdefault((k.op, kernel_precision(k)), []).append(k)
        for g in groups.values():  # stable sort: heavier use first, ties in the seeded order
            g.sort(key=lambda k: -self.weights.get(k, 0.0))
        out: list[KernelSpec] = []
        keys = sorted(groups)
        while len(out) < min(self.start, len(self.pool)):
            for key in keys:
                if groups[key] and len(out) < self.start:
                    out.append(groups[key].pop(0))
        return out

    def scores(self, measured: dict[KernelSpec, float]) -> tuple[list[KernelSpec], np.ndarray]:
        """(unmeasured kernels, their scores) under a predictor fitted on ``measured`` (kernel -> ms)."""
        rest = [k for k in self.pool if k not in measured]
        if not rest:
            return [], np.zeros(0)
        est = self._predictor().fit(list(measured), list(measured.values()))
        mid = est.predict(rest)
        lo, hi = est.predict_interval(rest)
        width = np.log(np.maximum(hi, 1e-12) / np.maximum(lo, 1e-12))
        # a band of zero width still leaves the point model's own error: never score a kernel exactly 0
        width = np.maximum(width, 0.02)
        w = np.array([self.weights.get(k, 0.0) for k in rest])
        return rest, w * mid * width

    def next(self, measured: dict[KernelSpec, float], failed: Sequence[KernelSpec] = ()) -> list[KernelSpec]:
        """The next ``batch`` kernels to measure given the rows so far (``failed`` kernels are never proposed
        again); [] when the pool is exhausted. Fewer than ``start`` rows: the rest of :meth:`first`."""
        skip = set(measured) | set(failed)
        if len(measured) < self.start:
            todo = [k for k in self.first() if k not in skip]
            if todo:
                return todo
        if len(measured) < 5:  # too few rows to fit (the first draw failed): the most used kernels left
            rest = sorted((k for k in self.pool if k not in skip), key=lambda k: -self.weights.get(k, 0.0))
            return rest[: self.batch]
        rest, s = self.scores(measured)
        keep = [i for i, k in enumerate(rest) if k not in skip]
        if not keep:
            return []
        order = sorted(keep, key=lambda i: (-s[i], i))[: self.batch]
        pick = [rest[i] for i in order]
        self.rounds.append({"measured": len(measured), "proposed": len(pick),
                            "score_sum_ms": float(s[keep].sum()), "score_picked_ms": float(s[order].sum())})
        return pick
