"""The accuracy-proxy extension point and the additive Hessian proxy.

:class:`BaseAccuracyProxy` is the contract every accuracy proxy satisfies; the search consumes it.
:class:`AccuracyProxy` is hao's Hessian proxy: ½ Σ_l Ω_l, additive over the space's units.
"""
from __future__ import annotations

import os
from typing import Any
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hao.errors import ConfigError
from hao.registry import Registry
from hao.proxy.sensitivity import SENSITIVITY_FILE, SensitivityTable
from hao.space.base import Candidate, SearchSpace

__all__ = ["BaseAccuracyProxy", "AccuracyProxy", "WeightNormProxy", "default_checkpoint_dir", "ACCURACY_MODELS",
           "register_accuracy_model", "list_accuracy_models", "get_accuracy_model"]


def default_checkpoint_dir(space_name: str) -> Path:
    """The first ``<root>/<space_name>`` holding a ``sensitivity.json`` or ``supernet.pt`` among
    :func:`hao.paths.checkpoint_roots` (``$HAO_CHECKPOINTS``, the per-user folder, the built-in
    ``checkpoints/``); the built-in one when none does."""
    from hao.paths import builtin_dir, checkpoint_roots

    for root in checkpoint_roots():
        d = root / space_name
        if (d / SENSITIVITY_FILE).is_file() or (d / "supernet.pt").is_file():
            return d
    return builtin_dir("checkpoints") / space_name


class BaseAccuracyProxy(ABC):
    """Contract of an accuracy proxy: a cheap predictor of how much a candidate hurts the model.

    ``score(candidates)`` returns a float array, one value per candidate, *lower is better* (a predicted
    loss increase or accuracy drop). It must be deterministic, must not train or modify any model, and must
    accept any list of candidates that ``space.validate`` accepts (an empty list gives an empty array).

    An *additive* proxy (``is_additive = True``) also exposes its decomposition for exact solvers:
    ``unit_costs()[u][i]`` is the cost of unit ``u`` (in ``space.units()`` order) taking option ``i`` of
    ``space.unit_options(u)`` (the last option is "switched off" for gated units), and ``constant`` is the
    cost of the layers every candidate has; then ``score(c) == constant + Σ_u unit_costs()[u][idx_u(c)]``
    exactly, with ``idx = space.unit_indices(candidates)``.

    ``from_checkpoint(space, folder)`` builds the model from a checkpoint folder (``sensitivity.json`` ...);
    registered models (:data:`ACCURACY_MODELS`, ``hao.proxy.register_accuracy_model``) are created by name that
    way. :func:`hao.testing.check_accuracy_model` is the conformance battery every model must pass.
    """

    is_additive: bool = False

    def __init__(self, space: SearchSpace) -> None:
        self.space = space

    @abstractmethod
    def score(self, candidates: Sequence[Candidate]) -> np.ndarray:
        """Predicted cost (lower is better) of each candidate, shape (len(candidates),)."""

    def unit_costs(self) -> list[np.ndarray]:
        raise NotImplementedError(f"{type(self).__name__} is not additive; use an Optuna solver.")

    @property
    def constant(self) -> float:
        raise NotImplementedError(f"{type(self).__name__} is not additive; use an Optuna solver.")

    @classmethod
    def from_checkpoint(cls, space: SearchSpace, folder: str | os.PathLike | None = None,
                        **params: Any) -> "BaseAccuracyProxy":
        """Build the model of ``space`` from the checkpoint folder (default :func:`default_checkpoint_dir`)."""
        raise NotImplementedError(f"{cls.__name__} cannot be built from a checkpoint folder; construct it "
                                  "directly and pass it as proxy=...")


class _AdditiveProxy(BaseAccuracyProxy):
    is_additive = True

    def __init__(self, space: SearchSpace) -> None:
        super().__init__(space)
        self._costs: list[np.ndarray] | None = None
        self._const: float | None = None

    def _layer_cost(self, p) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def _build(self) -> None:
        sp = self.space
        self._const = 0.5 * sum(self._layer_cost(p) for p in sp.fixed_layers())
        costs = []
        for u in sp.units():
            opts = sp.unit_options(u)
            costs.append(np.array([0.5 * sum(self._layer_cost(p) for p in sp.unit_layers(u.name, o))
                                   for o in opts], dtype=np.float64))
        self._costs = costs

    def unit_costs(self) -> list[np.ndarray]:
        """Per unit, the cost (½ Σ over the unit's layers) of each option of ``space.unit_options(unit)``."""
        if self._costs is None:
            self._build()
        return self._costs

    @property
    def constant(self) -> float:
        """½ Σ over the layers present in every candidate (fixed, pinned bits)."""
        if self._const is None:
            self._build()
        return self._const

    def score(self, candidates: Sequence[Candidate]) -> np.ndarray:
        if len(candidates) == 0:
            return np.zeros(0)
        for c in candidates:
            self.space.validate(c)
        idx = self.space.unit_indices(list(candidates))
        costs = self.unit_costs()
        out = np.full(len(candidates), self.constant)
        for j, cu in enumerate(costs):
            out += cu[idx[:, j]]
        return out


class AccuracyProxy(_AdditiveProxy):
    """Hessian proxy: predicted loss increase ½ Σ_l Tr(H_l)/n_l · ‖ΔW_l‖² (HAWQ-V2, extended to architecture)
    + ½ Σ_l Tr(H^A_l)·f_l·e_l(a_bits) for activation bits when the table has activation statistics (and
    ``activations=True``; see :mod:`hao.proxy.sensitivity`).

    ``arch_weight`` scales the architecture part (the weights a candidate removes) against the quantization
    parts; 1 is the plain second-order sum. Removing whole channels is far from the small perturbation the
    quadratic model describes, and on the committed supernet that part, at weight 1, drowns the quantization
    ranking (``checkpoints/mbconv-fmnist/first_supernet/README.md``); :meth:`terms` shows each part.

    >>> proxy = AccuracyProxy.from_checkpoint(hao.get_space("mbconv-fmnist"))   # doctest: +SKIP
    >>> proxy.score([space.largest(), space.uniform(4, 4)])                     # doctest: +SKIP
    """

    def __init__(self, space: SearchSpace, table: SensitivityTable, *, activations: bool = True,
                 arch_weight: float = 1.0) -> None:
        super().__init__(space)
        if isinstance(arch_weight, bool) or not isinstance(arch_weight, (int, float)) or not arch_weight >= 0 \
                or not np.isfinite(arch_weight):
            raise ConfigError(f"arch_weight must be a finite number >= 0 (1 = the plain second-order sum), got "
                              f"{arch_weight!r}.")
        #: weight of the architecture part (removed weights) against the quantization parts; 1 = HAWQ's sum
        self.arch_weight = float(arch_weight)
        if not isinstance(table, SensitivityTable):
            raise ConfigError(f"AccuracyProxy needs a SensitivityTable, got {type(table).__name__}.")
        if table.space not in (space.name, space.checkpoint_name):
            raise ConfigError(f"The sensitivity table belongs to space {table.space!r}, not {space.name!r}.")
        self.table = table
        #: whether the activation-quantization term is used (needs a table with activation statistics)
        self.activations = bool(activations and table.activations)

    def _layer_cost(self, p) -> float:
        cost = self.table.omega(p, activations=self.activations)
        if self.arch_weight != 1.0:
            cost += (self.arch_weight - 1.0) * self.table.omega_arch(p)
        return cost

    def terms(self, candidates: Sequence[Candidate]) -> dict[str, np.ndarray]:
        """The score of each candidate split into the parts it adds up (their sum is :meth:`score`):

        * ``architecture``: ½ Σ_l Tr(H_l)/n_l · ‖weights the candidate removes‖²,
        * ``weight_bits``: ½ Σ_l Tr(H_l)/n_l · ‖quantization error of the weights it keeps‖²,
        * ``activation_bits``: ½ Σ_l Tr(H^A_l)·f_l·e_l(a_bits) (zeros without the activation term).

        (``architecture`` includes ``arch_weight``.) A diagnostic: it shows which part drives a ranking
        (``experiments/proxy_fidelity.py`` reports Kendall τ per part). Tables computed before the float
        versions were stored need the supernet's weights attached:
        ``table.weights = hao.proxy.sensitivity.layer_weights(supernet)``."""
        out = {k: np.zeros(len(candidates)) for k in ("architecture", "weight_bits", "activation_bits")}
        for i, c in enumerate(candidates):
            for p in self.space.perturbations(c):
                full = self.table.omega_weights(p)
                arch = self.table.omega_arch(p)
                out["architecture"][i] += 0.5 * self.arch_weight * arch
                out["weight_bits"][i] += 0.5 * (full - arch)
                if self.activations:
                    out["activation_bits"][i] += 0.5 * self.table.omega_act(p)
        return out

    @classmethod
    def from_checkpoint(cls, space: SearchSpace, folder: str | os.PathLike | None = None, *,
                        verify: bool = True, activations: bool = True,
                        arch_weight: float = 1.0) -> "AccuracyProxy":
        """Load ``folder/sensitivity.json`` (default: the committed ``checkpoints/<space>``), checking that it
        matches ``folder/supernet.pt`` by sha256 when ``verify`` and the checkpoint is present."""
        folder = Path(folder) if folder is not None else default_checkpoint_dir(space.checkpoint_name)
        ckpt = folder / "supernet.pt"
        table = SensitivityTable.load(folder / SENSITIVITY_FILE, checkpoint=ckpt if verify and ckpt.exists() else None,
                                      space=space)
        return cls(space, table, activations=activations, arch_weight=arch_weight)


class WeightNormProxy(_AdditiveProxy):
    """Baseline without the Hessian: ½ Σ_l ‖ΔW_l‖² (same perturbations, every layer weighted 1)."""

    def __init__(self, space: SearchSpace, table: SensitivityTable) -> None:
        super().__init__(space)
        self.table = table

    @classmethod
    def from_checkpoint(cls, space: SearchSpace, folder: str | os.PathLike | None = None, *,
                        verify: bool = True) -> "WeightNormProxy":
        """The ‖ΔW‖² baseline from ``folder/sensitivity.json`` (same files as :class:`AccuracyProxy`)."""
        folder = Path(folder) if folder is not None else default_checkpoint_dir(space.checkpoint_name)
        ckpt = folder / "supernet.pt"
        table = SensitivityTable.load(folder / SENSITIVITY_FILE, checkpoint=ckpt if verify and ckpt.exists() else None,
                                      space=space)
        return cls(space, table)

    def _layer_cost(self, p) -> float:
        return self.table.dw_sq(p)


ACCURACY_MODELS: Registry = Registry("accuracy model", base=BaseAccuracyProxy, set_name=False,
                                     entry_points="hao.accuracy_models",
                                     hint="Register one with hao.proxy.register_accuracy_model (see "
                                          "CONTRIBUTING.md), or pass an instance as proxy=...")


def register_accuracy_model(name: str):
    """Class decorator: make a :class:`BaseAccuracyProxy` subclass available by name (``proxy="name"``)."""
    return ACCURACY_MODELS.register(name)


def list_accuracy_models() -> list[str]:
    return ACCURACY_MODELS.names()


def get_accuracy_model(name: str, space: SearchSpace, folder: str | os.PathLike | None = None,
                       **params: Any) -> BaseAccuracyProxy:
    """The accuracy model registered as ``name`` for ``space``, from the checkpoint ``folder``."""
    cls = ACCURACY_MODELS.get(name)
    try:
        return cls.from_checkpoint(space, folder, **params)
    except TypeError as exc:
        raise ConfigError(f"Bad parameters {sorted(params)} for accuracy model {name!r}: {exc}.") from exc


register_accuracy_model("hessian")(AccuracyProxy)
register_accuracy_model("weight-norm")(WeightNormProxy)
