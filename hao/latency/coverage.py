"""How well a latency table covers a search space: measured kernels, predicted kernels, bit-width mismatches.

``hao latency check --space S --hardware H`` prints :func:`coverage` and its warnings; ``hao.search`` warns with the
same words when the table lacks a bit-width pair the space uses (its latencies are then extrapolated by the
predictor from other precisions, which the table never measured).
"""
from __future__ import annotations

from collections import Counter
from typing import Any

from hao.kernel import BLOCK_OPS, KEY_COLUMNS, KernelSpec
from hao.space.base import SearchSpace

__all__ = ["coverage", "space_kernels", "bit_mismatch_warning"]

_W, _A = KEY_COLUMNS.index("w_bits"), KEY_COLUMNS.index("a_bits")


def space_kernels(space: SearchSpace, granularity: str = "kernel") -> list[KernelSpec]:
    """Every distinct kernel any candidate of ``space`` can contain (all unit options and the fixed kernels, at
    every context value such as each input resolution), sorted; ``granularity="block"``: the block kernels a
    block-level table times."""
    from hao.search.objectives import _kernel_index
    seen: set[KernelSpec] = set()
    for ctx in space.contexts():
        seen.update(_kernel_index(space.condition(ctx), True, granularity)["unique"])
    return sorted(seen)


def bit_mismatch_warning(space_pairs: set[tuple[int, int]], table_pairs: set[tuple[int, int]],
                         hardware: str, int8_answers_sub8: bool = False) -> str | None:
    """The warning for bit-width pairs the space uses and the table never measured (None when all are there).

    ``int8_answers_sub8``: the table has W8A8 rows and no ``int8-mapped`` rows, so the predictor answers every
    sub-8-bit kernel with the W8A8 row of its shape (the program that runs it on a CPU; docs/measurement.md,
    "Mapped kernels"): those pairs are covered, not extrapolated."""
    missing = sorted(space_pairs - table_pairs)
    if int8_answers_sub8 and (8, 8) in table_pairs:
        missing = [(w, a) for w, a in missing if not (w <= 8 and a <= 8)]
    if not missing:
        return None
    fmt = ", ".join(f"w{w}a{a}" for w, a in missing)
    have = ", ".join(f"w{w}a{a}" for w, a in sorted(table_pairs)) or "none"
    return (f"latency table {hardware!r} has no rows at {fmt}, which this space uses (it has {have}): the latency of "
            "those kernels is extrapolated by the predictor from other precisions and may be far off. Calibrate "
            "those precisions (hao calibrate --precisions ...) or search with a space whose bits the table covers.")


def coverage(space: SearchSpace, table: Any) -> dict[str, Any]:
    """Per op and in total: the space's distinct kernels, how many the table measured (looked up) and how many
    the predictor must predict; the bit-width pairs of each; warnings. A block-level table is checked against
    the space's block kernels."""
    granularity = getattr(table, "granularity", "kernel")
    ks = space_kernels(space, granularity)
    index = table._key_index()
    hit = [k.key() in index for k in ks]
    per_op: dict[str, dict[str, int]] = {}
    for k, h in zip(ks, hit):
        d = per_op.setdefault(k.op, {"kernels": 0, "measured": 0, "predicted": 0})
        d["kernels"] += 1
        d["measured" if h else "predicted"] += 1
    space_pairs = {(k.w_bits, k.a_bits) for k in ks}
    table_pairs = set(table.supported_bits())
    warnings = []
    maps = "impl" in table.df and not table.df["impl"].astype(str).str.contains("-mapped").any()
    w = bit_mismatch_warning(space_pairs, table_pairs, table.name, int8_answers_sub8=maps)
    if w:
        warnings.append(w)
    by_pair = Counter((k.w_bits, k.a_bits) for k in ks)
    missing_pairs = sorted(space_pairs - table_pairs)
    n_missing = sum(by_pair[p] for p in missing_pairs)
    target = table.meta.get("target") if isinstance(getattr(table, "meta", None), dict) else None
    if target and any(k.op == "dwconv2d" and k.w_bits <= 8 for k in ks):
        try:
            from hao.latency.dw_dot import portable_depthwise_rows

            stale = portable_depthwise_rows(table.df, target)
        except ImportError:   # no TVM: the program choice cannot be checked
            stale = 0
        if stale:
            warnings.append(f"table {table.name!r}: {stale} int8 depthwise rows were timed with the portable "
                            "program, but networks for its target run the dot-product program "
                            "(hao/latency/dw_dot.py), so they price depthwise layers too high; re-time them on "
                            f"that hardware: hao calibrate --hardware {table.name} --retime --space {space.name} "
                            "--op dwconv2d --precisions w8a8 --no-space-bits (docs/deployment.md).")
    if granularity == "block" and not any(k.op in BLOCK_OPS for k in ks):
        warnings.append(f"table {table.name!r} times whole blocks, but space {space.name!r} emits no block kernels "
                        f"({list(BLOCK_OPS)}): every kernel is predicted from block rows. Use a space with "
                        "MBConv blocks (docs/table_schema.md, 'Block-level tables').")
    return {"space": space.name, "hardware": table.name, "granularity": granularity, "kernels": len(ks),
            "measured": int(sum(hit)),
            "predicted": int(len(ks) - sum(hit)), "share_measured": float(sum(hit) / max(1, len(ks))),
            "per_op": dict(sorted(per_op.items())),
            "space_bits": [f"w{w}a{a}" for w, a in sorted(space_pairs)],
            "table_bits": [f"w{w}a{a}" for w, a in sorted(table_pairs)],
            "missing_bits": [f"w{w}a{a}" for w, a in missing_pairs], "kernels_at_missing_bits": int(n_missing),
            "warnings": warnings}


def predictor_bit_pairs(predictor: Any) -> set[tuple[int, int]] | None:
    """The bit-width pairs a fitted ``LatencyPredictor`` measured (None for other predictors)."""
    measured = getattr(predictor, "measured_", None)
    if not isinstance(measured, dict):
        return None
    return {(int(k[_W]), int(k[_A])) for k in measured}
