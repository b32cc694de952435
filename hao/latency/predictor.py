"""``LatencyPredictor``: a scikit-learn estimator of kernel latency, fitted on a hardware table.

Features are physical (:func:`kernel_features`): log MACs, log bytes moved (input, weights, output), arithmetic
intensity, shapes (channels, resolution, kernel, stride), bit-widths and how they execute (fp32 / int8 /
mapped), channel padding to the int8 kernels' 16-lane blocks, and the op. The target is log(latency): errors
are relative, as latencies span four decades.

Contract (scikit-learn): ``__init__`` stores parameters only; :meth:`fit` learns attributes ending in ``_``;
:meth:`predict` before ``fit`` raises :class:`~hao.errors.NotFittedError`. Nothing is pickled: the model is
refitted deterministically from the table (fixed ``random_state``), and the only other state — the fitted
per-network overhead — is stored as JSON (``predictor.json`` next to the table, see :meth:`save_overhead`).

**Mapped kernels.** A sub-8-bit kernel on a CPU table runs the int8 program of its shape (``int8-mapped``,
:func:`~hao.latency.backend.kernel_precision`): the same code as the table's W8A8 row (on the committed CPU table
the mapped rows time at 0.99x their W8A8 row, median). A table without mapped rows (``hao calibrate
--no-space-bits``, the adaptive plan) therefore says everything about them: the predictor answers a mapped
kernel with the kernel it executes (:func:`~hao.latency.backend.executed_kernel`), looked up or predicted. A
table that has mapped rows (e.g. an imported GPU table with a real int4 program) keeps them as their own rows.

Network latency = scale·Σ kernel latencies + overhead, overhead = ``overhead_ms_ + overhead_per_kernel_ms_ * n``
(``network_scale_`` = 1 unless ``network_scale=True``)
(fitted on whole networks compiled end to end, :meth:`fit_overhead`; zero until then). Measured kernels can be
looked up instead of predicted (``prefer_measured=True``).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin

from hao.stats import error_stats  # noqa: F401
from hao.errors import ConfigError, NotFittedError
from hao.kernel import BLOCK_OPS, CNN_OPS, TOKEN_OPS, KernelSpec
from hao.latency.backend import executed_kernel, kernel_precision
from hao.latency.table import LatencyTable, atomic_write_text, load_table

__all__ = ["LatencyPredictor", "kernel_features", "FEATURE_NAMES", "BLOCK_FEATURE_NAMES", "TOKEN_FEATURE_NAMES",
           "FlopsBaseline",
           "error_stats", "fit_overhead_coefs"]

_PREC = ("fp32", "fp32-mapped", "int8", "int8-mapped")
_PLAIN_OPS = CNN_OPS
FEATURE_NAMES = (
    ("log_macs", "log_in_bytes", "log_w_bytes", "log_out_bytes", "log_intensity", "log_elems",
     "in_channels", "out_channels", "in_hw", "out_hw", "kernel", "stride", "w_bits", "a_bits", "log_batch",
     "ch_pad_in16", "ch_pad_out16", "log_ch_in", "log_ch_out")
    + tuple(f"op_{o}" for o in _PLAIN_OPS) + tuple(f"prec_{p}" for p in _PREC))
#: appended to :data:`FEATURE_NAMES` by a predictor fitted on a block-level table (only then: extra columns,
#: even constant ones, change a subsampled boosted fit, and plain tables' predictions must not move)
BLOCK_FEATURE_NAMES = tuple(f"op_{o}" for o in BLOCK_OPS) + ("log_mid_channels", "se", "hswish", "idskip")
#: appended (after any block features) by a predictor fitted on a table with transformer token kernels (only
#: then, for the same reason)
TOKEN_FEATURE_NAMES = tuple(f"op_{o}" for o in TOKEN_OPS)


def _pad_ratio(c: int, m: int = 16) -> float:
    return (-(-c // m) * m) / c


def kernel_features(kernels: Sequence[KernelSpec], block: bool = False, token: bool = False) -> np.ndarray:
    """(n, len(FEATURE_NAMES)) float matrix; with ``block``, :data:`BLOCK_FEATURE_NAMES` appended (composite
    ops need them; without ``block`` a composite kernel is refused), then with ``token``
    :data:`TOKEN_FEATURE_NAMES` (transformer kernels need them; without ``token`` they are refused). Bytes are
    those of the executed precision (int8-mapped kernels move int8 bytes, since that is what runs)."""
    n_plain = len(FEATURE_NAMES)
    n_block = len(BLOCK_FEATURE_NAMES) if block else 0
    X = np.zeros((len(kernels), n_plain + n_block + (len(TOKEN_FEATURE_NAMES) if token else 0)), dtype=np.float64)
    for i, k in enumerate(kernels):
        prec = kernel_precision(k)
        ebytes = 4.0 if prec.startswith("fp32") else 1.0
        n_in = k.batch * k.in_channels * k.in_h * k.in_w * (2 if k.op == "add" else 1)
        n_out = k.batch * k.out_channels * k.out_h * k.out_w
        in_b, w_b, out_b = n_in * ebytes, k.params * ebytes, n_out * ebytes
        work = max(k.macs, k.elementwise_ops, 1)
        X[i, :19] = (math.log1p(k.macs), math.log1p(in_b), math.log1p(w_b), math.log1p(out_b),
                     math.log(work / (in_b + w_b + out_b)), math.log1p(n_in + n_out), k.in_channels,
                     k.out_channels, k.in_h, k.out_h, k.kernel, k.stride, k.w_bits, k.a_bits, math.log(k.batch),
                     _pad_ratio(k.in_channels), _pad_ratio(k.out_channels), math.log(k.in_channels),
                     math.log(k.out_channels))
        if k.op in TOKEN_OPS:
            if not token:
                raise ConfigError(f"kernel_features: {k.short()} is a transformer (token) kernel, and this "
                                  "predictor was fitted on a table without token kernels, so it cannot price it. "
                                  "Calibrate the table with the transformer space (hao calibrate --space "
                                  "vit-fmnist), or search on size/BOPs/accuracy objectives (docs/search.md).")
            X[i, n_plain + n_block + TOKEN_OPS.index(k.op)] = 1.0
        elif k.op in BLOCK_OPS:
            if not block:
                raise ConfigError(f"kernel_features: {k.short()} is a composite block; a predictor fitted on a "
                                  "kernel-level table cannot price it (fit it on a block-level table; "
                                  "docs/table_schema.md, 'Block-level tables').")
            X[i, n_plain + BLOCK_OPS.index(k.op)] = 1.0
            X[i, n_plain + n_block - 4: n_plain + n_block] = (math.log1p(k.mid_channels), k.se, k.hswish, k.idskip)
        else:
            X[i, 19 + _PLAIN_OPS.index(k.op)] = 1.0
        X[i, 19 + len(_PLAIN_OPS) + _PREC.index(prec)] = 1.0
    return X


def fit_overhead_coefs(sum_kernels_ms: Any, n_kernels: Any, measured_ms: Any,
                       network_scale: bool) -> tuple[float, float, float]:
    """The one overhead fit: ``measured ≈ scale·Σkernels + a + b·n_kernels`` with a, b (and scale) >= 0, least
    squares on the relative error (NNLS); ``scale`` is fixed to 1 unless ``network_scale`` and two or more
    networks are given (it absorbs what isolated kernels systematically miss in a whole network: other fusion,
    cache state, separately tuned schedules). One network gives ``a = max(measured - Σ, 0)``, ``b = 0``.
    Returns ``(scale, a_ms, b_ms_per_kernel)``; no networks give ``(1, 0, 0)``."""
    from scipy.optimize import nnls

    s, n, y = (np.asarray(v, float) for v in (sum_kernels_ms, n_kernels, measured_ms))
    if y.size == 0:
        return 1.0, 0.0, 0.0
    if network_scale and y.size >= 2:
        coef, _ = nnls(np.stack([s, np.ones_like(n), n], axis=1) / y[:, None], np.ones_like(y))
        return float(coef[0]), float(coef[1]), float(coef[2])
    r = y - s
    if y.size == 1:
        return 1.0, float(max(r[0], 0.0)), 0.0
    coef, _ = nnls(np.stack([np.ones_like(n), n], axis=1) / y[:, None], r / y)
    return 1.0, float(coef[0]), float(coef[1])


# error_stats lives in hao.stats (one home for report statistics); re-exported here


class FlopsBaseline(BaseEstimator, RegressorMixin):
    """latency = c_p · work, one constant per execution precision p (work = MACs, or element ops for
    pooling/add), c_p the median of latency/work on the training rows. The baseline every predictor must beat."""

    def fit(self, kernels: Sequence[KernelSpec], latency_ms: Sequence[float]) -> "FlopsBaseline":
        y = np.asarray(latency_ms, float)
        work = np.array([max(k.macs, k.elementwise_ops, 1) for k in kernels], float)
        prec = np.array([kernel_precision(k) for k in kernels])
        self.coef_ = {p: float(np.median(y[prec == p] / work[prec == p])) for p in np.unique(prec)}
        self.default_coef_ = float(np.median(y / work))
        return self

    def predict(self, kernels: Sequence[KernelSpec]) -> np.ndarray:
        if not hasattr(self, "coef_"):
            raise NotFittedError("FlopsBaseline is not fitted; call fit(kernels, latency_ms) first.")
        return np.array([self.coef_.get(kernel_precision(k), self.default_coef_) * max(k.macs, k.elementwise_ops, 1)
                         for k in kernels])


class LatencyPredictor(BaseEstimator, RegressorMixin):
    """Gradient-boosted trees on :func:`kernel_features`, target log(latency_ms).

    Parameters
    ----------
    n_estimators, learning_rate, max_depth, min_samples_leaf, subsample: of
        :class:`sklearn.ensemble.GradientBoostingRegressor` (the point model, squared loss on log latency).
    quantiles: (low, high) for the uncertainty band (two extra quantile-loss models); ``None`` to skip.
    random_state: seed of the subsampling (the fit is deterministic for a given table).
    network_scale: if True, :meth:`fit_overhead` also fits a multiplicative factor on Σ kernels
        (network = scale·Σ + a + b·n); if False only the additive overhead a + b·n.
    """

    def __init__(self, n_estimators: int = 400, learning_rate: float = 0.05, max_depth: int = 4,
                 min_samples_leaf: int = 3, subsample: float = 0.8,
                 quantiles: tuple[float, float] | None = (0.1, 0.9), random_state: int = 0,
                 network_scale: bool = False) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.subsample = subsample
        self.quantiles = quantiles
        self.random_state = random_state
        self.network_scale = network_scale

    def _check_params(self) -> None:
        if not isinstance(self.n_estimators, int) or self.n_estimators < 1:
            raise ConfigError(f"LatencyPredictor n_estimators must be an int >= 1, got {self.n_estimators!r}.")
        if not (0 < float(self.learning_rate) <= 1):
            raise ConfigError(f"LatencyPredictor learning_rate must be in (0, 1], got {self.learning_rate!r}.")
        if self.quantiles is not None:
            lo, hi = self.quantiles
            if not 0 < lo < hi < 1:
                raise ConfigError(f"LatencyPredictor quantiles must satisfy 0 < low < high < 1, got "
                                  f"{self.quantiles!r}.")

    def _gbr(self, **kw: Any) -> Any:
        from sklearn.ensemble import GradientBoostingRegressor

        return GradientBoostingRegressor(n_estimators=self.n_estimators, learning_rate=self.learning_rate,
                                         max_depth=self.max_depth, min_samples_leaf=self.min_samples_leaf,
                                         subsample=self.subsample, random_state=self.random_state, **kw)

    def fit(self, kernels: Sequence[KernelSpec] | LatencyTable, latency_ms: Sequence[float] | None = None
            ) -> "LatencyPredictor":
        """Fit on kernels and their latencies, or on a :class:`LatencyTable` (``latency_ms`` omitted)."""
        self._check_params()
        if isinstance(kernels, LatencyTable):
            table = kernels
            kernels = table.kernels()
            latency_ms = table.df["latency_ms"].to_numpy(float)
            self.hardware_ = table.name
            self.granularity_ = table.granularity
        elif latency_ms is None:
            raise ConfigError("LatencyPredictor.fit(kernels, latency_ms): latency_ms is required with a kernel list.")
        else:
            kernels = list(kernels)
            self.granularity_ = "block" if any(k.op in BLOCK_OPS for k in kernels) else "kernel"
        kernels = list(kernels)
        y = np.asarray(latency_ms, dtype=float)
        if len(kernels) != y.size:
            raise ConfigError(f"fit got {len(kernels)} kernels but {y.size} latencies; they must match.")
        if y.size < 5:
            raise ConfigError(f"LatencyPredictor needs at least 5 rows to fit, got {y.size}.")
        if not np.all(np.isfinite(y)) or np.any(y <= 0):
            raise ConfigError("fit: every latency must be a finite number > 0.")
        self.maps_to_executed_ = not any(kernel_precision(k).endswith("-mapped") for k in kernels)
        self.block_features_ = self.granularity_ == "block"  # block tables must declare it (LatencyTable checks)
        self.token_features_ = any(k.op in TOKEN_OPS for k in kernels)
        X = kernel_features(kernels, self.block_features_, self.token_features_)
        ly = np.log(y)
        self.model_ = self._gbr().fit(X, ly)
        self.quantile_models_ = None
        if self.quantiles is not None:
            self.quantile_models_ = tuple(self._gbr(loss="quantile", alpha=q).fit(X, ly) for q in self.quantiles)
        self.n_features_in_ = X.shape[1]
        self.measured_ = {k.key(): float(v) for k, v in zip(kernels, y)}
        if not hasattr(self, "overhead_ms_"):
            self.overhead_ms_ = 0.0
            self.overhead_per_kernel_ms_ = 0.0
            self.network_scale_ = 1.0
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError("This LatencyPredictor is not fitted yet; call fit(table) or "
                                 "LatencyPredictor.from_table('hardware-name') first.")

    def _executed(self, kernels: Sequence[KernelSpec]) -> list[KernelSpec]:
        """The kernels as the table's hardware runs them (see "Mapped kernels" in the module docstring)."""
        if getattr(self, "maps_to_executed_", False):
            return [executed_kernel(k) for k in kernels]
        return list(kernels)

    def _features(self, kernels: Sequence[KernelSpec]) -> np.ndarray:
        return kernel_features(kernels, getattr(self, "block_features_", False),
                               getattr(self, "token_features_", False))

    def predict(self, kernels: Sequence[KernelSpec], prefer_measured: bool = False) -> np.ndarray:
        """Latency in ms per kernel (model output; measured values instead where ``prefer_measured``)."""
        self._check_fitted()
        kernels = self._executed(kernels)
        if not kernels:
            return np.zeros(0)
        out = np.exp(self.model_.predict(self._features(kernels)))
        if prefer_measured:
            for i, k in enumerate(kernels):
                v = self.measured_.get(k.key())
                if v is not None:
                    out[i] = v
        return out

    def predict_interval(self, kernels: Sequence[KernelSpec]) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) quantile predictions in ms (``quantiles`` band)."""
        self._check_fitted()
        if self.quantile_models_ is None:
            raise NotFittedError("predict_interval needs quantiles=(low, high) at construction; it was None.")
        X = self._features(self._executed(kernels))
        lo, hi = (np.exp(m.predict(X)) for m in self.quantile_models_)
        return np.minimum(lo, hi), np.maximum(lo, hi)

    # ---- networks ---------------------------------------------------------------------------------------
    def network_latency(self, kernels: Sequence[KernelSpec], prefer_measured: bool = True) -> float:
        """Σ kernel latencies + the fitted per-network overhead (ms)."""
        k = list(kernels)
        return float(getattr(self, "network_scale_", 1.0) * self.predict(k, prefer_measured=prefer_measured).sum()
                     + self.overhead_ms_ + self.overhead_per_kernel_ms_ * len(k))

    def fit_overhead(self, networks: Sequence[Sequence[KernelSpec]], measured_ms: Sequence[float],
                     prefer_measured: bool = True) -> "LatencyPredictor":
        """Fit overhead = a + b·n_kernels (a, b >= 0, least squares on relative error) from whole networks
        (:func:`fit_overhead_coefs`; no networks: no overhead)."""
        self._check_fitted()
        y = np.asarray(measured_ms, float)
        if len(networks) != y.size:
            raise ConfigError(f"fit_overhead needs one measured latency per network; got {len(networks)} networks "
                              f"and {y.size} latencies.")
        s = np.array([self.predict(list(n), prefer_measured=prefer_measured).sum() for n in networks])
        n = np.array([len(n) for n in networks], float)
        self.network_scale_, self.overhead_ms_, self.overhead_per_kernel_ms_ = fit_overhead_coefs(
            s, n, y, self.network_scale)
        return self

    def save_overhead(self, folder: str | os.PathLike, extra: dict[str, Any] | None = None,
                      space: str | None = None, deploy: str = "float") -> Path:
        """Write the non-refittable state (overhead) and the parameters as JSON (no pickle).

        With ``space``, the overhead is stored for that space's networks (``by_space``; the glue between
        kernels differs between families, e.g. a transformer's reshapes), the entries of other spaces are kept,
        and the top-level overhead (used for spaces without an entry) is the first space's (refitting that space
        updates it). ``deploy="integer"`` (needs ``space``) stores it as the overhead of that space's *integer*
        networks (``by_space[space]["integer"]``: quantize-input, classifier and call glue differ from a float
        network's), leaving the float overhead alone; :meth:`from_table` uses it for spaces whose every
        candidate deploys as an integer network."""
        self._check_fitted()
        if deploy not in ("float", "integer") or (deploy == "integer" and space is None):
            raise ConfigError(f"save_overhead: deploy must be 'float' or 'integer' (the latter with space=...), "
                              f"got deploy={deploy!r}, space={space!r}.")
        p = Path(folder) / "predictor.json"
        own = {"network_scale": self.network_scale_, "overhead_ms": self.overhead_ms_,
               "overhead_per_kernel_ms": self.overhead_per_kernel_ms_, **(extra or {})}
        old: dict[str, Any] = json.loads(p.read_text()) if space is not None and p.is_file() else {}
        if deploy == "integer":
            entry = dict(old.get("by_space", {}).get(space, {}))
            entry["integer"] = own
            doc = {**old, "params": old.get("params", self.get_params()),
                   "by_space": {**old.get("by_space", {}), space: entry}}
            atomic_write_text(p, json.dumps(doc, indent=2, default=list) + "\n")
            return p
        if space is None:
            doc = {"params": self.get_params(), **own}
        else:
            own["space"] = space
            integer = old.get("by_space", {}).get(space, {}).get("integer")
            top = {k: v for k, v in old.items() if k not in ("params", "by_space")}
            if not top or top.get("space") == space:     # none yet, or this space's earlier fit: replace it
                top = own
            doc = {"params": self.get_params(), **top,
                   "by_space": {**old.get("by_space", {}), space: {**own, **({"integer": integer} if integer else {})}}}
        atomic_write_text(p, json.dumps(doc, indent=2, default=list) + "\n")
        return p

    @classmethod
    def from_table(cls, table: str | os.PathLike | LatencyTable, space: str | None = None,
                   deploy: str = "auto", **params: Any) -> "LatencyPredictor":
        """Fit on a hardware table (name, folder or :class:`LatencyTable`) and load its ``predictor.json``
        overhead if present: the entry of ``space`` (a space name) when the file has one, else its top-level
        overhead. ``deploy``: whose overhead — ``"float"`` networks', ``"integer"`` networks' (the entry
        ``hao latency validate --precision int8|mixed`` fitted; the float one where there is none), or
        ``"auto"``: integer when every candidate of ``space`` deploys as an integer network (its bit decisions
        offer no float option), else float."""
        if deploy not in ("auto", "float", "integer"):
            raise ConfigError(f"from_table: deploy must be 'auto', 'float' or 'integer', got {deploy!r}.")
        t = table if isinstance(table, LatencyTable) else load_table(table)
        saved: dict[str, Any] = {}
        if t.path is not None and (Path(t.path) / "predictor.json").is_file():
            saved = json.loads((Path(t.path) / "predictor.json").read_text())
        p = dict(saved.get("params", {}))
        if "quantiles" in p and p["quantiles"] is not None:
            p["quantiles"] = tuple(p["quantiles"])
        p.update(params)
        est = cls(**p).fit(t)
        over = saved.get("by_space", {}).get(space, saved) if space is not None else saved
        if deploy == "auto":
            deploy = "integer" if space is not None and _deploys_integer(space) else "float"
        est.deploy_ = "float"
        if deploy == "integer" and isinstance(over.get("integer"), dict):
            over, est.deploy_ = over["integer"], "integer"
        est.overhead_ms_ = float(over.get("overhead_ms", 0.0))
        est.overhead_per_kernel_ms_ = float(over.get("overhead_per_kernel_ms", 0.0))
        est.network_scale_ = float(over.get("network_scale", 1.0))
        return est


def _deploys_integer(space_name: str) -> bool:
    """Whether every candidate of the registered space ``space_name`` deploys as an integer network: it has
    weight-bit decisions and none offers 32 (float). Unknown names: False."""
    from hao.space.candidate import BIT_KINDS
    from hao.space.registry import SPACES

    if space_name not in SPACES:
        return False
    from hao.space.registry import get_space

    decs = [d for d in get_space(space_name).decisions() if d.kind in BIT_KINDS and d.kind != "a_bits"]
    return bool(decs) and all(32 not in d.options for d in decs)
