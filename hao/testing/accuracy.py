"""Conformance battery for accuracy models (``hao.proxy.BaseAccuracyProxy``): every registered one must pass.

>>> from hao.testing import check_accuracy_model
>>> check_accuracy_model("hessian", hao.get_space("mbconv-fmnist"))     # doctest: +SKIP
"""
from __future__ import annotations

from typing import Any

import numpy as np

from hao.errors import ConfigError
from hao.space.base import SearchSpace

__all__ = ["check_accuracy_model"]


def check_accuracy_model(model: Any, space: SearchSpace, n: int = 24, seed: int = 0, **params: Any) -> Any:
    """The accuracy-model contract, on a registered name (built with ``from_checkpoint(space, **params)``) or an
    instance, with ``n`` seeded candidates of ``space``:

    1. ``score`` returns a finite float array of shape ``(len(candidates),)``, and ``score([])`` an empty one;
    2. it is deterministic (twice the same values) and draws nothing from the global RNGs;
    3. scoring one candidate alone gives its value in a batch (no batch effects);
    4. an additive model (``is_additive``) decomposes exactly:
       ``score(c) == constant + Σ_u unit_costs()[u][index of c's option of u]``;
    5. a calibrated model (``predict``, ``intercept_``, ``to_accuracy``) predicts
       ``to_accuracy(intercept_ − score(c))`` percent (lower score, higher accuracy), with an uncertainty ≥ 0.

    Returns the model."""
    from hao.proxy import BaseAccuracyProxy, get_accuracy_model

    m = get_accuracy_model(model, space, **params) if isinstance(model, str) else model
    if not isinstance(m, BaseAccuracyProxy):
        raise ConfigError(f"check_accuracy_model needs a BaseAccuracyProxy or a registered name, got "
                          f"{type(m).__name__}.")
    rng = np.random.default_rng(seed)
    cands = [space.sample(rng) for _ in range(n)] + [space.largest()]
    np_state, py_state = np.random.get_state(), __import__("random").getstate()
    s1 = np.asarray(m.score(cands))
    s2 = np.asarray(m.score(cands))
    assert np.random.get_state()[1].tolist() == np_state[1].tolist(), "score() drew from numpy's global RNG"
    assert __import__("random").getstate() == py_state, "score() drew from Python's global RNG"
    assert s1.shape == (len(cands),) and s1.dtype.kind == "f" and np.isfinite(s1).all(), (s1.shape, s1.dtype)
    assert np.array_equal(s1, s2), "score() is not deterministic"
    assert np.asarray(m.score([])).shape == (0,)
    for i in (0, len(cands) - 1):
        assert np.isclose(float(np.asarray(m.score([cands[i]]))[0]), s1[i], rtol=1e-9, atol=1e-12)
    if getattr(m, "is_additive", False):
        costs = m.unit_costs()
        idx = space.unit_indices(cands)
        recon = m.constant + sum(np.asarray(costs[u])[idx[:, u]] for u in range(len(costs)))
        assert np.allclose(recon, s1, rtol=1e-9, atol=1e-9), "score() != constant + Σ unit_costs"
    if all(hasattr(m, k) for k in ("predict", "intercept_", "to_accuracy")):
        acc, sd = (np.asarray(v) for v in m.predict(cands))
        assert np.allclose(acc, m.to_accuracy(m.intercept_ - s1), rtol=1e-9, atol=1e-9), \
            "predict() != to_accuracy(intercept_ − score())"
        assert np.isfinite(acc).all() and sd.shape == acc.shape and np.all(sd >= 0), "non-finite accuracy or sd < 0"
    return m
