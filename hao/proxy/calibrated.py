"""One calibrated, additive accuracy model: predicted accuracy in percent, with an uncertainty.

    predicted accuracy (%) = intercept − Σ_g α_g · T_g(candidate),   α_g ≥ 0

Each term group ``T_g`` is additive over the space's units, so the whole model is too (the exact solvers use it):

* ``<stage>:arch`` — the measured architecture term (:mod:`hao.proxy.arch_terms`: validation-loss change of each
  single choice against the reference), or, without measurements, the Hessian model of removed weights
  (``<stage>:arch_hessian``);
* ``<stage>:w_bits`` — HAWQ-V2's ½ Σ Tr(H)/n · ‖quantization error of the weights kept‖² on the kept sub-network;
* ``<stage>:a_bits`` — the activation-quantization term, where the sensitivity table has it.

``<stage>`` is the unit name's first dotted part (``s0`` for ``s0.b1``). :meth:`CalibratedAccuracyModel.fit`
estimates the intercept (free) and α (non-negative) from measured accuracies of candidates that must never be
used for scoring (the caller's protocol keeps them apart), by bounded least squares (``loss="squared"``,
``scipy.optimize.lsq_linear``) or by a pairwise ranking loss (``loss="pairwise"``: α minimise the mean logistic
loss of every measured pair's order, then one scale and the intercept put the score in percent by least squares);
``sigma_`` is the residual standard deviation of that fit, reported as the uncertainty of a prediction.

``target="log_error"`` takes the same additive form on the log of the error rate instead of on the accuracy: each
term multiplies the error rate by a factor, so a quantized layer costs more points in a network that already errs
more. The additive score is then ``z = 100 − c·(1 + ln(err/c))`` (err = 100 − accuracy in percent, ``c`` =
``error_scale_``, the fit set's median error), which equals the accuracy where err = c and is in "points at the
fit set's typical error"; :meth:`CalibratedAccuracyModel.to_accuracy` maps it back to percent (monotone, so every
exact solver still works on the additive score). docs/accuracy_model.md, "The log-error target". As a
:class:`~hao.proxy.BaseAccuracyProxy`, ``score`` is the predicted accuracy *drop* Σ α·T (lower is better); the
``accuracy`` objective (``hao.search``) is the predicted accuracy itself, maximised.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hao.errors import ConfigError
from hao.proxy.proxy import BaseAccuracyProxy, default_checkpoint_dir, register_accuracy_model
from hao.space.base import Candidate, SearchSpace

__all__ = ["TermGroups", "build_term_groups", "CalibratedAccuracyModel", "MODEL_FILE", "MODEL_SUBFOLDER",
           "model_folder"]

MODEL_FILE = "accuracy_model.json"
#: The fit's loss functions (:class:`CalibratedAccuracyModel` ``loss``).
LOSSES = ("squared", "pairwise")
#: What the additive form is fitted on (:class:`CalibratedAccuracyModel` ``target``).
TARGETS = ("accuracy", "log_error")
#: Where a checkpoint folder keeps its calibrated model (with the measurements of its fit), when not beside it.
MODEL_SUBFOLDER = "accmodel"


def model_folder(space_name: str, folder: str | os.PathLike | None = None) -> Path | None:
    """The folder holding the calibrated accuracy model of ``folder`` (default: the space's checkpoint folder):
    the folder itself when it has ``accuracy_model.json``, else its ``accmodel/`` subfolder when that has one;
    ``None`` when neither does."""
    base = Path(folder) if folder is not None else default_checkpoint_dir(space_name)
    for f in (base, base / MODEL_SUBFOLDER):
        if (f / MODEL_FILE).is_file():
            return f
    return None


class TermGroups:
    """Named additive terms: ``tables[g][u][i]`` is group ``g``'s value for unit ``u`` taking option ``i``.

    ``penalized[g]``: group ``g`` is a *detail* term (a per-layer or per-block indicator) whose weight the fit
    shrinks towards 0 by its ``ridge`` penalty; the others are the model's coarse terms, fitted unpenalized.
    ``detail``: the detail options :func:`build_term_groups` was given (saved with a fitted model)."""

    def __init__(self, space: SearchSpace, names: Sequence[str], tables: Sequence[Sequence[np.ndarray]],
                 penalized: Sequence[bool] | None = None, detail: dict[str, bool] | None = None) -> None:
        self.space, self.names = space, list(names)
        self.tables = [[np.asarray(t, dtype=np.float64) for t in g] for g in tables]
        n_units = len(space.units())
        if any(len(g) != n_units for g in self.tables):
            raise ConfigError(f"every term group needs one table per unit ({n_units}).")
        self.penalized = np.zeros(len(self.names), bool) if penalized is None else np.asarray(penalized, bool)
        self.detail = dict(detail or {})
        if self.penalized.shape != (len(self.names),):
            raise ConfigError(f"penalized needs one flag per term group ({len(self.names)}), got "
                              f"{self.penalized.shape}.")

    def matrix(self, candidates: Sequence[Candidate]) -> np.ndarray:
        """``(n, n_groups)``: each candidate's value of each term group."""
        if len(candidates) == 0:
            return np.zeros((0, len(self.names)))
        idx = self.space.unit_indices([self.space.canonical(self.space.validate(c)) for c in candidates])
        X = np.zeros((len(candidates), len(self.names)))
        for g, tabs in enumerate(self.tables):
            for u, t in enumerate(tabs):
                X[:, g] += t[idx[:, u]]
        return X


def _stage(unit_name: str) -> str:
    return unit_name.split(".")[0]


def build_term_groups(space: SearchSpace, table: Any, arch: Any = None, layer_bits: bool = False,
                      arch_options: bool = False, block_pairs: bool = False) -> TermGroups:
    """The term groups of ``space`` from a :class:`~hao.proxy.SensitivityTable` and, if given, measured
    :class:`~hao.proxy.arch_terms.ArchTerms` (else the Hessian removed-weight term stands in for it).

    Two kinds of penalized detail groups, 0/1 indicators fitted with a ridge penalty (docs/accuracy_model.md,
    "Per-layer corrections"): they learn from the measured candidates what the coarse terms get wrong about a
    single layer or block, and keep the model additive.

    * ``layer_bits=True``: one per layer and bit-width below the layer's highest option (``<layer path>:w2``,
      ``<layer path>:a4``, ...): 1 when a candidate keeps that layer at that width;
    * ``arch_options=True``: one per unit and architecture value below its decision's largest (``s0.b1:kernel=3``,
      ``s0.b1:ratio=4``), 1 when the unit is kept with that value, and one per unit that can be switched off
      (``s0.b3:off``).

    ``block_pairs=True`` adds two coarse (unpenalized) interaction groups per stage, still additive over units:
    ``<stage>:w_lowest_pairs`` counts the pairs of layers *within one unit* that are both at their lowest weight
    width, ``<stage>:wa_lowest`` the layers at their lowest weight and lowest activation width at once (only where
    some layer has two activation widths). Low-bit layers of one block hurt more together than one at a time."""
    units = space.units()
    stages = list(dict.fromkeys(_stage(u.name) for u in units))
    arch_tables = arch.unit_tables(space)[0] if arch is not None else None
    arch_name = "arch" if arch is not None else "arch_hessian"
    parts = [arch_name, "w_bits"] + (["a_bits"] if table.activations else [])
    names = [f"{s}:{p}" for s in stages for p in parts]
    tables = [[np.zeros(len(space.unit_options(u))) for u in units] for _ in names]
    for j, u in enumerate(units):
        s = stages.index(_stage(u.name))
        for i, opt in enumerate(space.unit_options(u)):
            layers = space.unit_layers(u.name, opt)
            if arch_tables is not None:
                tables[s * len(parts)][j][i] = arch_tables[j][i]
            else:
                tables[s * len(parts)][j][i] = 0.5 * sum(table.omega_arch(p) for p in layers)
            tables[s * len(parts) + 1][j][i] = 0.5 * sum(table.omega_weights(p) - table.omega_arch(p)
                                                          for p in layers)
            if table.activations:
                tables[s * len(parts) + 2][j][i] = 0.5 * sum(table.omega_act(p) for p in layers)
    penalized = [False] * len(names)
    if block_pairs:
        extra = _block_pair_groups(space, stages)
        names, tables, penalized = names + list(extra), tables + list(extra.values()), penalized + [False] * len(extra)
    for flag, make in ((layer_bits, _layer_bit_indicators), (arch_options, _arch_option_indicators)):
        if flag:
            extra = make(space)
            names, tables = names + list(extra), tables + list(extra.values())
            penalized += [True] * len(extra)
    return TermGroups(space, names, tables, penalized=penalized,
                      detail={"layer_bits": bool(layer_bits), "arch_options": bool(arch_options),
                              "block_pairs": bool(block_pairs)})


def _block_pair_groups(space: SearchSpace, stages: list[str]) -> dict[str, list[np.ndarray]]:
    """``<stage>:w_lowest_pairs`` and ``<stage>:wa_lowest`` (see :func:`build_term_groups`), per stage."""
    units = space.units()
    widths: dict[tuple[str, str], set[int]] = {}  # (layer path, "w"/"a") -> the widths the layer can take
    for u in units:
        for opt in space.unit_options(u):
            for p in space.unit_layers(u.name, opt):
                if not p.removed:
                    widths.setdefault((p.path, "w"), set()).add(p.w_bits)
                    widths.setdefault((p.path, "a"), set()).add(p.a_bits)
    # a layer's lowest width; -1 for a layer with a single width, which is never "lowered"
    lowest = {key: min(ws) if len(ws) > 1 else -1 for key, ws in widths.items()}
    kinds = ["w_lowest_pairs"] + (["wa_lowest"] if any(lowest[k] > 0 for k in lowest if k[1] == "a") else [])
    out = {f"{s}:{k}": _indicator(space) for s in stages for k in kinds}
    for j, u in enumerate(units):
        s = _stage(u.name)
        for i, opt in enumerate(space.unit_options(u)):
            kept = [p for p in space.unit_layers(u.name, opt) if not p.removed]
            low_w = [p.w_bits == lowest[p.path, "w"] for p in kept]
            n = sum(low_w)
            out[f"{s}:w_lowest_pairs"][j][i] = n * (n - 1) / 2
            if "wa_lowest" in kinds:
                out[f"{s}:wa_lowest"][j][i] = sum(w and p.a_bits == lowest[p.path, "a"] for w, p in zip(low_w, kept))
    return out


def _indicator(space: SearchSpace) -> list[np.ndarray]:
    return [np.zeros(len(space.unit_options(v))) for v in space.units()]


def _layer_bit_indicators(space: SearchSpace) -> dict[str, list[np.ndarray]]:
    """``<layer path>:w<b>`` / ``:a<b>`` for every width below the layer's highest, in layer order."""
    found: dict[tuple[str, str, int], list[np.ndarray]] = {}  # (layer path, "w"/"a", bits) -> tables
    for j, u in enumerate(space.units()):
        for i, opt in enumerate(space.unit_options(u)):
            for p in space.unit_layers(u.name, opt):
                if p.removed:
                    continue
                for kind, b in (("w", p.w_bits), ("a", p.a_bits)):
                    found.setdefault((p.path, kind, b), _indicator(space))[j][i] = 1.0
    widest: dict[tuple[str, str], int] = {}  # each layer's highest width of each kind is the reference: no term
    for path, kind, b in found:
        widest[path, kind] = max(widest.get((path, kind), 0), b)
    order = {path: n for n, path in enumerate(dict.fromkeys(k[0] for k in found))}
    keep = sorted((k for k in found if k[2] < widest[k[0], k[1]]), key=lambda k: (order[k[0]], k[1] != "w", k[2]))
    return {f"{path}:{kind}{b}": found[path, kind, b] for path, kind, b in keep}


def _arch_option_indicators(space: SearchSpace) -> dict[str, list[np.ndarray]]:
    """``<unit>:<decision>=<value>`` for every architecture value below its decision's largest, kept units only,
    and ``<unit>:off`` for units that can be switched off."""
    kinds = {d.name: d.kind for d in space.decisions()}
    out: dict[str, list[np.ndarray]] = {}
    for j, u in enumerate(space.units()):
        arch_decs = [d for d in u.decisions if kinds.get(d) not in ("w_bits", "a_bits", "groups")]
        largest = {d: max(o[d] for o in space.unit_options(u) if o is not None and d in o) for d in arch_decs}
        for i, opt in enumerate(space.unit_options(u)):
            if opt is None or all(p.removed for p in space.unit_layers(u.name, opt)):
                out.setdefault(f"{u.name}:off", _indicator(space))[j][i] = 1.0
                continue
            for d in arch_decs:
                if d in opt and opt[d] < largest[d]:
                    unit, what = d.rsplit(".", 1)
                    out.setdefault(f"{unit}:{what}={opt[d]}", _indicator(space))[j][i] = 1.0
    return out


@register_accuracy_model("calibrated")
class CalibratedAccuracyModel(BaseAccuracyProxy):
    """Predicted accuracy = ``intercept_ − Σ_g alpha_[g] · T_g`` (see the module docstring).

    scikit-learn conventions: the constructor stores the term groups; only :meth:`fit` writes the fitted
    attributes ``intercept_``, ``alpha_``, ``sigma_``, ``n_fit_``; using the model before raises a ConfigError
    that says so. ``save``/``from_checkpoint`` use JSON (``accuracy_model.json``) next to the sensitivity table.
    """

    is_additive = True

    def __init__(self, space: SearchSpace, groups: TermGroups, ridge: float = 10.0, loss: str = "squared",
                 max_pairs: int = 500_000, target: str = "accuracy") -> None:
        super().__init__(space)
        if not isinstance(groups, TermGroups):
            raise ConfigError(f"CalibratedAccuracyModel needs TermGroups (build_term_groups), got "
                              f"{type(groups).__name__}.")
        if not (isinstance(ridge, (int, float)) and np.isfinite(ridge) and ridge > 0):
            raise ConfigError(f"CalibratedAccuracyModel ridge must be a number > 0 (the weight of each detail "
                              "term's α² against the squared fit errors, both in accuracy points), got "
                              f"{ridge!r}; see docs/accuracy_model.md, \"Per-layer corrections\".")
        if loss not in LOSSES:
            raise ConfigError(f"CalibratedAccuracyModel loss must be one of {LOSSES}, got {loss!r} "
                              "(docs/accuracy_model.md, \"Fitting α\").")
        if not isinstance(max_pairs, int) or isinstance(max_pairs, bool) or max_pairs < 1:
            raise ConfigError(f"CalibratedAccuracyModel max_pairs must be an int >= 1 (pairs sampled, seeded, when "
                              f"the fit set has more), got {max_pairs!r}.")
        if target not in TARGETS:
            raise ConfigError(f"CalibratedAccuracyModel target must be one of {TARGETS}, got {target!r} "
                              "(docs/accuracy_model.md, \"The log-error target\").")
        self.groups, self.ridge, self.loss, self.max_pairs = groups, float(ridge), loss, max_pairs
        self.target = target

    # ---- fitting ------------------------------------------------------------------------------------------
    def fit(self, candidates: Sequence[Candidate], accuracy: Sequence[float]) -> "CalibratedAccuracyModel":
        """Fit on measured ``accuracy`` (percent) of ``candidates`` (never the candidates you score).

        ``loss="squared"``: bounded least squares (every α ≥ 0, the intercept free); the penalized detail groups
        (per-layer and per-block indicators, :func:`build_term_groups` ``layer_bits`` / ``arch_options``) add
        ``ridge · α_g²`` each, so a layer's or block's own term moves away from 0 only as far as the measurements
        support it. ``loss="pairwise"``: α ≥ 0 minimise the mean logistic loss of the predicted order of every
        pair of candidates with different accuracies (at most ``max_pairs``, sampled with a fixed seed) plus the
        same ``ridge · α_g²`` (here against a mean pair loss, so typical ridges are ~1e-3, not ~10); then one
        non-negative scale and the intercept map the score to percent by least squares."""
        from scipy.optimize import lsq_linear

        y = np.asarray(accuracy, dtype=np.float64).reshape(-1)
        if len(candidates) != len(y):
            raise ConfigError(f"fit() got {len(candidates)} candidates and {len(y)} accuracies; give one each.")
        G, pen = len(self.groups.names), self.groups.penalized
        n_free = int(np.sum(~pen))
        if len(y) < n_free + 2:
            raise ConfigError(f"fit() needs at least {n_free + 2} measured candidates for {n_free} term groups, got "
                              f"{len(y)}; measure more (hao evaluate).")
        if not np.all(np.isfinite(y)) or np.any((y < 0) | (y > 100)):
            raise ConfigError("fit() needs accuracies in percent, each in [0, 100].")
        scale_c = None
        if self.target == "log_error":
            if np.any(y >= 100):
                raise ConfigError(f"fit() with target='log_error' needs accuracies below 100% (a zero error rate "
                                  f"has no logarithm), got {float(y.max())!r}; use target='accuracy'.")
            scale_c = float(np.median(100.0 - y))
            y = _log_error_score(y, scale_c)
        X = self.groups.matrix(candidates)
        scale = np.maximum(np.abs(X).max(axis=0), 1e-300)  # columns to O(1), for the solver's tolerances
        scale[pen] = 1.0  # detail terms are 0/1 indicators: their α is in accuracy points, and so is the penalty
        if self.loss == "pairwise":
            a = _pairwise_alpha(X / scale, y, pen, self.ridge, self.max_pairs)
            s = X / scale @ a
            k = max(0.0, -float(np.cov(s, y)[0, 1]) / float(np.var(s, ddof=1))) if np.ptp(s) > 0 else 0.0
            self.intercept_ = float(np.mean(y) + k * np.mean(s))
            self.alpha_ = k * a / scale
            dof_used = 2
        else:
            A = np.column_stack([np.ones(len(y)), -X / scale])
            rows = np.flatnonzero(pen)
            if len(rows):
                P = np.zeros((len(rows), G + 1))
                P[np.arange(len(rows)), 1 + rows] = np.sqrt(self.ridge)
                A, y_aug = np.vstack([A, P]), np.r_[y, np.zeros(len(rows))]
            else:
                y_aug = y
            lo = np.r_[-np.inf, np.zeros(G)]
            res = lsq_linear(A, y_aug, bounds=(lo, np.full(G + 1, np.inf)), method="bvls")
            self.intercept_ = float(res.x[0])
            self.alpha_ = np.maximum(res.x[1:], 0.0) / scale  # (BVLS can return -1e-16 for a bound at 0)
            dof_used = 1 + int(np.sum(self.alpha_[~pen] > 0))
        resid = y - (self.intercept_ - X @ self.alpha_)
        dof = max(1, len(y) - dof_used)
        self.sigma_ = float(np.sqrt(np.sum(resid ** 2) / dof))
        self.n_fit_ = int(len(y))
        self.error_scale_ = scale_c
        self._costs = None
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "alpha_"):
            raise ConfigError("This CalibratedAccuracyModel is not fitted yet; call fit(candidates, accuracy) or "
                              "load a fitted one with CalibratedAccuracyModel.from_checkpoint(space, folder).")

    # ---- prediction -----------------------------------------------------------------------------------
    def predict(self, candidates: Sequence[Candidate]) -> tuple[np.ndarray, np.ndarray]:
        """``(predicted accuracy in percent, its uncertainty)`` per candidate: ``sigma_``, or with
        ``target="log_error"`` ``sigma_`` carried to percent at the predicted error rate."""
        self._check_fitted()
        acc = self.to_accuracy(self.intercept_ - self.groups.matrix(candidates) @ self.alpha_)
        if self.target == "log_error":
            return acc, self.sigma_ * (100.0 - acc) / self.error_scale_
        return acc, np.full(len(acc), self.sigma_)

    def to_accuracy(self, z: Any) -> Any:
        """The additive score ``intercept_ − Σ α·T`` in percent: itself (``target="accuracy"``), or
        ``100 − c·exp((100 − z)/c − 1)`` (``target="log_error"``, c = ``error_scale_``). Monotone increasing."""
        self._check_fitted()
        if self.target == "accuracy":
            return z
        c = self.error_scale_
        return 100.0 - c * np.exp((100.0 - np.asarray(z, dtype=np.float64)) / c - 1.0)

    def from_accuracy(self, accuracy: Any) -> Any:
        """The inverse of :meth:`to_accuracy` (accuracies below 100%): a budget in percent as an additive score."""
        self._check_fitted()
        if self.target == "accuracy":
            return accuracy
        a = np.asarray(accuracy, dtype=np.float64)
        if np.any(a >= 100):
            raise ConfigError(f"An accuracy of {float(np.max(a))!r}% has no score under target='log_error' (the "
                              "model predicts error rates above 0); give a value below 100.")
        return _log_error_score(a, self.error_scale_)

    def terms(self, candidates: Sequence[Candidate]) -> dict[str, np.ndarray]:
        """Each group's contribution α_g·T_g per candidate (percentage points; with ``target="log_error"``
        points at the fit set's median error rate): what drives a prediction."""
        self._check_fitted()
        X = self.groups.matrix(candidates) * self.alpha_
        return {n: X[:, g] for g, n in enumerate(self.groups.names)}

    def score(self, candidates: Sequence[Candidate]) -> np.ndarray:
        """Predicted accuracy drop Σ α·T in percentage points (lower is better; with ``target="log_error"`` the
        drop of the additive score, see the module docstring)."""
        self._check_fitted()
        return self.groups.matrix(candidates) @ self.alpha_

    def unit_costs(self) -> list[np.ndarray]:
        self._check_fitted()
        if getattr(self, "_costs", None) is None:
            n_units = len(self.space.units())
            self._costs = [sum(a * self.groups.tables[g][u] for g, a in enumerate(self.alpha_))
                           if len(self.alpha_) else np.zeros(len(self.space.unit_options(self.space.units()[u])))
                           for u in range(n_units)]
        return self._costs

    @property
    def constant(self) -> float:
        self._check_fitted()
        return 0.0

    # ---- persistence ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        self._check_fitted()
        return {"format": "hao-accuracy-model-1", "space": self.space.name, "groups": self.groups.names,
                "intercept": self.intercept_, "alpha": [float(a) for a in self.alpha_], "sigma": self.sigma_,
                "n_fit": self.n_fit_, "ridge": self.ridge, "loss": self.loss, "target": self.target,
                "error_scale": self.error_scale_, **self.groups.detail,
                "info": getattr(self, "info", {})}

    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``folder/accuracy_model.json`` (the term tables are rebuilt from the folder's other files)."""
        from hao.io import atomic_write_text
        p = Path(folder) / MODEL_FILE
        atomic_write_text(p, json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n")
        return p

    @classmethod
    def from_checkpoint(cls, space: SearchSpace, folder: str | os.PathLike | None = None,
                        **params: Any) -> "CalibratedAccuracyModel":
        """The fitted model of ``folder`` (default: the space's checkpoint folder; a checkpoint folder's model
        may live in its ``accmodel/`` subfolder, see :func:`model_folder`): ``sensitivity.json``,
        ``arch_terms.json`` (when the model was fitted with measured architecture terms) and
        ``accuracy_model.json``."""
        from hao.proxy.arch_terms import ARCH_TERMS_FILE, ArchTerms
        from hao.proxy.sensitivity import SENSITIVITY_FILE, SensitivityTable

        if params:
            raise ConfigError(f"CalibratedAccuracyModel.from_checkpoint takes no parameters, got {sorted(params)}.")
        folder = model_folder(space.checkpoint_name, folder) or (
            Path(folder) if folder is not None else default_checkpoint_dir(space.checkpoint_name))
        mfile = folder / MODEL_FILE
        if not mfile.is_file():
            raise ConfigError(f"{mfile} does not exist: this checkpoint has no calibrated accuracy model. Fit one "
                              "with `python experiments/fit_accuracy_model.py` (docs/accuracy_model.md).")
        d = json.loads(mfile.read_text())
        if d.get("format") != "hao-accuracy-model-1" or d.get("space") not in (space.name, space.checkpoint_name):
            raise ConfigError(f"{mfile} is not an accuracy model of space {space.name!r} (format "
                              f"{d.get('format')!r}, space {d.get('space')!r}).")
        table = SensitivityTable.load(folder / SENSITIVITY_FILE, space=space)
        arch = ArchTerms.load(folder / ARCH_TERMS_FILE) if any(g.endswith(":arch") for g in d["groups"]) else None
        groups = build_term_groups(space, table, arch, layer_bits=bool(d.get("layer_bits", False)),
                                   arch_options=bool(d.get("arch_options", False)),
                                   block_pairs=bool(d.get("block_pairs", False)))
        if groups.names != d["groups"]:
            raise ConfigError(f"{mfile} was fitted on term groups {d['groups']}, but the folder's files give "
                              f"{groups.names}; refit the model.")
        m = cls(space, groups, ridge=float(d.get("ridge", 10.0)), loss=str(d.get("loss", "squared")),
                target=str(d.get("target", "accuracy")))
        m.intercept_, m.alpha_, m.sigma_ = float(d["intercept"]), np.asarray(d["alpha"], float), float(d["sigma"])
        m.error_scale_ = None if d.get("error_scale") is None else float(d["error_scale"])
        m.n_fit_, m.info = int(d["n_fit"]), d.get("info", {})
        m._costs = None
        return m


def _log_error_score(accuracy: np.ndarray, c: float) -> np.ndarray:
    """``z = 100 − c·(1 + ln(err/c))`` of accuracies in percent below 100 (err = 100 − accuracy): the additive
    score of ``target="log_error"``, equal to the accuracy where err = c."""
    return 100.0 - c * (1.0 + np.log((100.0 - accuracy) / c))


def _pairwise_alpha(Xs: np.ndarray, y: np.ndarray, pen: np.ndarray, ridge: float, max_pairs: int) -> np.ndarray:
    """α ≥ 0 minimising mean softplus(±(c_i − c_j)) over the pairs with y_i ≠ y_j (c = Xs·α, the predicted drop;
    the sign makes the loss small when the better-measured candidate is predicted to lose less) + ridge·Σ α²
    over the penalized columns. Convex; L-BFGS-B from α = 0, the gradient through the n-vector c (no pair x term
    matrix), so memory is O(pairs + n·groups)."""
    from scipy.optimize import minimize
    from scipy.special import expit

    n = len(y)
    i, j = np.triu_indices(n, 1)
    keep = y[i] != y[j]
    i, j = i[keep], j[keep]
    if len(i) > max_pairs:
        sel = np.sort(np.random.default_rng(0).choice(len(i), max_pairs, replace=False))
        i, j = i[sel], j[sel]
    if len(i) == 0:
        return np.zeros(Xs.shape[1])
    sgn = np.sign(y[i] - y[j])
    w = pen.astype(np.float64)

    def f(a: np.ndarray) -> tuple[float, np.ndarray]:
        c = Xs @ a
        z = sgn * (c[i] - c[j])
        g = sgn * expit(z) / len(z)
        gc = np.bincount(i, g, n) - np.bincount(j, g, n)
        return float(np.logaddexp(0.0, z).mean() + ridge * np.sum(w * a * a)), Xs.T @ gc + 2.0 * ridge * w * a

    res = minimize(f, np.zeros(Xs.shape[1]), jac=True, method="L-BFGS-B", bounds=[(0.0, None)] * Xs.shape[1],
                   options={"maxiter": 3000})
    return np.maximum(res.x, 0.0)
