"""The battery every search space must pass (used by tests/space; third-party spaces can call it too)."""
from __future__ import annotations

import itertools
import json

import numpy as np
import torch
from torch import nn

from hao.errors import CandidateError, ConfigError
from hao.space.base import BIT_KINDS, Candidate, SearchSpace, Supernet


def count_module_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """MACs of every Conv2d / Linear / :class:`hao.layers.BatchMatMul` in ``model`` for one input, counted with
    forward hooks (ground truth)."""
    from hao.layers import BatchMatMul
    total = [0]

    def hook(m: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        if isinstance(m, nn.Conv2d):
            total[0] += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, BatchMatMul):
            total[0] += out.numel() * inp[0].shape[-1]
        else:
            total[0] += out.numel() * m.in_features

    hs = [m.register_forward_hook(hook) for m in model.modules()
          if isinstance(m, (nn.Conv2d, nn.Linear, BatchMatMul))]
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


def _macs_and_bytes(space: SearchSpace, c: Candidate) -> tuple[int, float]:
    ks = space.kernels(c)
    return sum(k.macs for k in ks), sum(k.weight_bytes for k in ks)


def _active_decisions(space: SearchSpace, c: Candidate) -> set[str]:
    """Names of the decisions that matter for ``c``: gates, and the decisions of units it switches on."""
    d = c.as_dict()
    out = set(space.gate_decisions())
    for u in space.units():
        if space.unit_is_active(u, d):
            out.update(u.decisions)
    return out


def _common_bits(space: SearchSpace, kinds: tuple[str, ...]) -> list[int]:
    sets = [set(dec.options) for dec in space.decisions() if dec.kind in kinds]
    return sorted(set.intersection(*sets)) if sets else []


def check_reference_candidates(space: SearchSpace, cands: list[Candidate]) -> None:
    """``largest()``, ``smallest()`` and ``uniform(w_bits, a_bits)`` against the sampled ``cands``.

    Checks: all three are valid canonical candidates; ``largest`` has every active architecture decision at
    its largest option and at least the MACs and weight bytes (summed over ``space.kernels``) of every
    candidate in ``cands``, ``smallest`` the smallest options and at most theirs; ``uniform(w, a)`` (at the
    smallest and largest bits every bit decision allows) has the largest architecture and ``w`` / ``a`` in every
    active bit decision, and a bit value no decision allows raises a CandidateError naming it."""
    decs = {dec.name: dec for dec in space.decisions()}
    big, small = space.largest(), space.smallest()
    for label, c, pick in (("largest", big, max), ("smallest", small, min)):
        space.validate(c)
        if space.canonical(c) != c:
            raise AssertionError(f"{label}() is not canonical: {c.to_json()[:160]}")
        for name in _active_decisions(space, c):
            dec = decs[name]
            if dec.kind not in BIT_KINDS and c[name] != pick(dec.options):
                raise AssertionError(f"{label}() has {name!r} = {c[name]}, not the {label} option "
                                     f"{pick(dec.options)} of {list(dec.options)}")
    big_macs, big_bytes = _macs_and_bytes(space, big)
    small_macs, small_bytes = _macs_and_bytes(space, small)
    for c in cands:
        macs, wbytes = _macs_and_bytes(space, c)
        if not small_macs <= macs <= big_macs:
            raise AssertionError(f"MACs {macs} of {c.to_json()[:120]} are outside [smallest {small_macs}, "
                                 f"largest {big_macs}]")
        tol = 1e-9 * max(1.0, big_bytes)
        if not small_bytes - tol <= wbytes <= big_bytes + tol:
            raise AssertionError(f"weight bytes {wbytes} of {c.to_json()[:120]} are outside [smallest "
                                 f"{small_bytes}, largest {big_bytes}]")
    # uniform bits, at the smallest and the largest value every decision of the kind allows
    def ends(kinds: tuple[str, ...]) -> list[int]:
        if not any(dec.kind in kinds for dec in decs.values()):
            return [8]  # no decision of these kinds: the value is not used
        common = _common_bits(space, kinds)
        return sorted({common[0], common[-1]}) if common else []

    has_bits = any(dec.kind in BIT_KINDS for dec in decs.values())
    if any(dec.kind == "bits" for dec in decs.values()):  # weight and activation bits tied: w == a
        pairs = [(b, b) for b in ends(BIT_KINDS)]
    else:
        pairs = [(w, a) for w in ends(("w_bits",)) for a in ends(("a_bits",))]
    for w, a in pairs:
        u = space.uniform(w, a)
        space.validate(u)
        for name in _active_decisions(space, u):
            dec = decs[name]
            want = big[name] if dec.kind not in BIT_KINDS else (a if dec.kind == "a_bits" else w)
            if u[name] != want:
                raise AssertionError(f"uniform({w}, {a}) has {name!r} ({dec.kind}) = {u[name]}, expected {want}")
    if has_bits and pairs:
        allowed = {o for dec in decs.values() if dec.kind in BIT_KINDS for o in dec.options}
        bad = next(b for b in range(1, 65) if b not in allowed)
        try:
            space.uniform(bad, bad)
        except CandidateError as exc:
            if str(bad) not in str(exc):
                raise AssertionError(f"uniform({bad}, {bad}) raised a CandidateError that does not name {bad}: "
                                     f"{exc}") from None
        else:
            raise AssertionError(f"uniform({bad}, {bad}) accepted bits no decision allows")


def check_supernet_protocol(space: SearchSpace, sup: nn.Module, seed: int = 0) -> None:
    """``activate`` / ``activated`` / ``build`` on the largest and the smallest candidate.

    Checks: after ``space.activate(sup, largest)`` the supernet reports it as ``active`` (where it has the
    attribute); ``build`` of the active candidate leaves it active, runs, and its module MACs equal its kernel
    MACs; for a :class:`~hao.space.base.Supernet` the supernet's own forward equals the built module's (eval);
    ``activated`` restores the previously active candidate."""
    x = torch.randn((2,) + tuple(space.input_shape), generator=torch.Generator().manual_seed(seed + 1))
    was = sup.training
    sup.eval()
    try:
        for label, c in (("largest", space.largest()), ("smallest", space.smallest())):
            space.activate(sup, c)
            if hasattr(sup, "active") and sup.active != c:
                raise AssertionError(f"activate({label}) left {getattr(sup.active, 'to_json', str)()[:80]} active")
            model = space.build(c, sup)
            if hasattr(sup, "active") and sup.active != c:
                raise AssertionError(f"build({label}) changed the supernet's active candidate")
            model.eval()
            with torch.no_grad():
                y = model(x)
                if y.shape != (2, space.num_classes) or not torch.isfinite(y).all():
                    raise AssertionError(f"build({label}) forward gave {tuple(y.shape)}")
                if isinstance(sup, Supernet):
                    ys = sup(x)
                    if not torch.allclose(ys, y, atol=1e-4, rtol=1e-4):
                        raise AssertionError(f"after activate({label}) the supernet's forward differs from "
                                             f"build({label})'s by {float((ys - y).abs().max()):.3g}")
            k_macs = sum(k.macs for k in space.kernels(c))
            m_macs = count_module_macs(model, space.input_shape)
            if k_macs != m_macs:
                raise AssertionError(f"kernel MACs {k_macs} != module MACs {m_macs} for {label}()")
        if hasattr(sup, "active"):
            before = sup.active
            with space.activated(sup, space.largest()):
                if sup.active != space.largest():
                    raise AssertionError("activated(largest) did not activate the largest candidate")
            if sup.active != before:
                raise AssertionError("activated() did not restore the previously active candidate")
    finally:
        sup.train(was)


def check_contexts(space: SearchSpace, cands: list[Candidate]) -> None:
    """A space with context decisions (e.g. the input resolution) is the union of its conditioned spaces: each
    conditioned space is plain (no context decision), of the same name, with the context decisions pinned; its
    candidates are the space's candidates at that context; the sizes add up; and a candidate's kernels are those of
    the space it resolves to."""
    total = 0
    names = space.context_decisions()
    for ctx in space.contexts():
        sub = space.condition(ctx)
        if sub.context_decisions() or sub.name != space.name:
            raise AssertionError(f"condition({ctx}) gave {sub!r}: it must be a plain space named {space.name!r}")
        if sub.decision_names != space.decision_names:
            raise AssertionError(f"condition({ctx}) changed the decisions (they must stay, the context pinned)")
        c = sub.sample(np.random.default_rng(0))
        if any(c[n] != v for n, v in ctx.items()):
            raise AssertionError(f"condition({ctx}) sampled {[(n, c[n]) for n in names]}")
        space.validate(c)
        if space.resolve(c) is not sub:
            raise AssertionError(f"resolve() of a candidate at {ctx} is not condition({ctx})")
        total += sub.size()
    if total != space.size():
        raise AssertionError(f"size() {space.size()} != sum of the conditioned sizes {total}")
    for c in cands[:20]:
        if space.kernels(c) != space.resolve(c).kernels(c):
            raise AssertionError(f"kernels() of {c.to_json()[:80]} differ from its conditioned space's")


def check_space(space: SearchSpace, n: int = 200, seed: int = 0, forward: int = 3) -> None:
    """Round-trip ``n`` seeded candidates through JSON, validate them, run ``forward`` builds and check that
    kernel MACs equal module MACs; check ``largest``/``smallest``/``uniform`` against the samples
    (:func:`check_reference_candidates`) and, where the space has a network, the supernet protocol
    (:func:`check_supernet_protocol`). Raises AssertionError with a message on failure."""
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
    check_reference_candidates(space, cands)
    if not space.has_supernet:
        forward = 0
    else:
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
    for c in cands[:20]:  # block kernels (what block-level tables time) do the same work as the plain kernels
        try:
            blocks = space.kernels(c, "block")
        except ConfigError:  # a space may refuse block granularity for some candidates, with a reason
            continue
        b_macs, k_macs = sum(k.macs for k in blocks), sum(k.macs for k in space.kernels(c))
        if b_macs != k_macs:
            raise AssertionError(f"block-kernel MACs {b_macs} != kernel MACs {k_macs} for {c.to_json()[:120]}")
    if space.has_supernet:
        check_supernet_protocol(space, sup, seed)
    if space.context_decisions():
        check_contexts(space, cands)
    try:
        space.validate(Candidate(space.name, cands[0].choices[:-1]))
    except CandidateError:
        pass
    else:
        raise AssertionError("validate() accepted a candidate with a missing decision")
