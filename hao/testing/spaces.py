"""The battery every search space must pass (used by tests/space; third-party spaces can call it too)."""
from __future__ import annotations

import itertools
import json

import numpy as np
import torch
from torch import nn

from hao.errors import CandidateError
from hao.space.base import Candidate, SearchSpace


def count_module_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """MACs of every Conv2d / Linear in ``model`` for one input, counted with forward hooks (ground truth)."""
    total = [0]

    def hook(m: nn.Module, inp: tuple[torch.Tensor], out: torch.Tensor) -> None:
        if isinstance(m, nn.Conv2d):
            total[0] += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        else:
            total[0] += out.numel() * m.in_features

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros((1,) + tuple(input_shape)))
    finally:
        model.train(was)
        for h in hs:
            h.remove()
    return total[0]


def brute_force_size(space: SearchSpace, limit: int = 2_000_000) -> int:
    """Count distinct canonical candidates by enumerating the full product of all decisions."""
    decs = space.decisions()
    n = int(np.prod([len(d.options) for d in decs], dtype=object))
    if n > limit:
        raise ValueError(f"brute force over {n} raw combinations exceeds limit={limit}; shrink the space")
    seen = set()
    for combo in itertools.product(*(d.options for d in decs)):
        c = Candidate(space.name, tuple(zip((d.name for d in decs), combo)))
        seen.add(space.canonical(c))
    return len(seen)


def invalid_candidates(space: SearchSpace, rng: np.random.Generator) -> list[tuple[str, object]]:
    """(label, bad input) pairs that must each raise CandidateError."""
    good = space.sample(rng)
    d = good.as_dict()
    first = next(iter(d))
    kernel_dec = next((x for x in space.decisions() if x.kind == "kernel"), None)
    bits_dec = next((x for x in space.decisions() if x.kind in ("w_bits", "bits")), None)
    cases: list[tuple[str, object]] = []
    if kernel_dec is not None:
        cases.append(("bad kernel size", good.replace(**{kernel_dec.name: 4})))
    if bits_dec is not None:
        cases.append(("bits not allowed", good.replace(**{bits_dec.name: 6 if 6 not in bits_dec.options else 3})))
    cases.append(("missing decision", Candidate(space.name, good.choices[1:])))
    cases.append(("extra decision", Candidate(space.name, good.choices + (("bogus.decision", 1),))))
    cases.append(("wrong space", Candidate(space.name + "-other", good.choices)))
    cases.append(("malformed JSON", '{"space": "' + space.name + '", "choices": {'))
    cases.append(("JSON not an object", "[1, 2, 3]"))
    cases.append(("non-int value", json.dumps({"space": space.name, "choices": d | {first: "3"}})))
    return cases


def check_space(space: SearchSpace, n: int = 200, seed: int = 0, forward: int = 3) -> None:
    """Round-trip ``n`` seeded candidates through JSON, validate them, run ``forward`` builds and check that
    kernel MACs equal module MACs. Raises AssertionError with a message on failure."""
    rng = np.random.default_rng(seed)
    cands = [space.sample(rng) for _ in range(n)]
    for c in cands:
        back = space.candidate_from_json(c.to_json())
        if back != c:
            raise AssertionError(f"JSON round-trip changed the candidate: {c} -> {back}")
        space.validate(c)
    X = space.encode(cands)
    if X.shape != (n, len(space.decision_names)) or not np.isfinite(X).all():
        raise AssertionError(f"encode() gave shape {X.shape}")
    idx = space.unit_indices(cands)
    if idx.shape != (n, len(space.units())):
        raise AssertionError(f"unit_indices() gave shape {idx.shape}")
    sup = space.supernet(seed)
    for c in cands[:forward]:
        model = space.build(c, sup)
        model.eval()
        with torch.no_grad():
            y = model(torch.randn((2,) + tuple(space.input_shape), generator=torch.Generator().manual_seed(1)))
        if y.shape != (2, space.num_classes) or not torch.isfinite(y).all():
            raise AssertionError(f"build() forward gave {tuple(y.shape)} for {c.to_json()[:80]}")
        k_macs = sum(k.macs for k in space.kernels(c))
        m_macs = count_module_macs(model, space.input_shape)
        if k_macs != m_macs:
            raise AssertionError(f"kernel MACs {k_macs} != module MACs {m_macs} for {c.to_json()[:120]}")
    try:
        space.validate(Candidate(space.name, cands[0].choices[:-1]))
    except CandidateError:
        pass
    else:
        raise AssertionError("validate() accepted a candidate with a missing decision")
