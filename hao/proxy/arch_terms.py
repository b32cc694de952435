"""A measured, additive architecture term: the change in validation loss when one choice differs from a reference.

For every unit of the space (an MBConv block: kernel × expand ratio) and every architecture option of it, the
reference sub-network (default: the largest architecture at the space's largest bits) is changed in that unit
only, BatchNorm statistics and activation ranges are recalibrated for the changed network
(:func:`hao.train.prepare_subnet`), and its loss on held-out images is measured; the term is the difference from
the reference's loss. Every gate value (a stage's depth) is measured the same way, and written as the cost of
switching the gated units off: with nested gates (depth ``d`` switches off blocks ``d, d+1, ...``) the per-unit
"off" costs that reproduce every measured depth exactly follow by differences (solved by least squares in
general; the residual is stored).

The sum of single-change effects is additive (the ILP and the front solver use it), cheap (one evaluation per
option: 9 per MBConv block), and measured on the network whose weights are actually kept — in place of a
second-order model of removed weights. ``ArchTerms`` is saved as JSON (``arch_terms.json``), never pickled.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hao.errors import ConfigError
from hao.space.base import QUANT_KINDS, Candidate, SearchSpace

__all__ = ["ArchTerms", "arch_jobs", "measure_arch_terms", "ARCH_TERMS_FILE"]

ARCH_TERMS_FILE = "arch_terms.json"


def _arch_decisions(space: SearchSpace, unit: Any) -> list[str]:
    kinds = {d.name: d.kind for d in space.decisions()}
    return [d for d in unit.decisions if kinds[d] not in QUANT_KINDS]


def _key(values: dict[str, int]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(values.items()))


def arch_jobs(space: SearchSpace, reference: Candidate) -> list[tuple[str, str, Candidate]]:
    """``(kind, key, candidate)`` for every measurement: ``("reference", "", ref)``, then ``("unit", NAME|KEY, c)``
    for each architecture option of each unit that differs from the reference, then ``("gate", NAME=VALUE, c)``
    for each other value of each gate decision."""
    ref = reference.as_dict()
    jobs: list[tuple[str, str, Candidate]] = [("reference", "", reference)]
    for u in space.units():
        names = _arch_decisions(space, u)
        if not names:
            continue
        seen = set()
        for opt in space.unit_options(u):
            if opt is None:
                continue
            vals = {n: opt[n] for n in names}
            k = _key(vals)
            if k in seen or all(ref[n] == v for n, v in vals.items()):
                seen.add(k)
                continue
            seen.add(k)
            jobs.append(("unit", f"{u.name}|{k}", space.canonical(space.make(ref | vals))))
    for g in space.gate_decisions():
        dec = next(d for d in space.decisions() if d.name == g)
        for v in dec.options:
            if v != ref[g]:
                jobs.append(("gate", f"{g}={v}", space.canonical(space.make(ref | {g: v}))))
    return jobs


@dataclass
class ArchTerms:
    """Measured losses: the reference's, and of every single-change candidate (keyed as :func:`arch_jobs`)."""

    space: str
    reference: str                               # Candidate JSON
    reference_loss: float
    losses: dict[str, float]                     # "unit|key" or "gate=value" -> loss
    accuracies: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def delta(self, key: str) -> float:
        return self.losses[key] - self.reference_loss

    def unit_tables(self, space: SearchSpace) -> tuple[list[np.ndarray], float]:
        """Per unit (``space.units()`` order), the term of each option of ``space.unit_options(unit)``, and the
        largest residual of the gate decomposition (0 for nested gates)."""
        if self.space not in (space.name, space.checkpoint_name):
            raise ConfigError(f"These architecture terms were measured on space {self.space!r}, not "
                              f"{space.name!r}.")
        ref = Candidate.from_json(self.reference).as_dict()
        tables = []
        for u in space.units():
            names = _arch_decisions(space, u)
            t = np.zeros(len(space.unit_options(u)))
            for i, opt in enumerate(space.unit_options(u)):
                if opt is None or not names:
                    continue
                vals = {n: opt[n] for n in names}
                if all(ref[n] == v for n, v in vals.items()):
                    continue
                key = f"{u.name}|{_key(vals)}"
                if key not in self.losses:
                    raise ConfigError(f"arch_terms.json has no measurement for {key!r}; measure again with "
                                      "hao.proxy.arch_terms.measure_arch_terms (the space changed?).")
                t[i] = self.delta(key)
            tables.append(t)
        # gates: the "off" cost of each gated unit, so that every measured gate value is reproduced
        units = space.units()
        residual = 0.0
        for g in space.gate_decisions():
            dec = next(d for d in space.decisions() if d.name == g)
            members = [j for j, u in enumerate(units) if u.gate is not None and u.gate.decision == g]
            rows, rhs = [], []
            for v in dec.options:
                rows.append([0.0 if v in units[j].gate.active_values else 1.0 for j in members])
                rhs.append(0.0 if v == ref[g] else self.delta(f"{g}={v}"))
            A, b = np.array(rows), np.array(rhs)
            x, *_ = np.linalg.lstsq(A, b, rcond=None)
            residual = max(residual, float(np.max(np.abs(A @ x - b))) if len(b) else 0.0)
            for j, xj in zip(members, x):
                tables[j][-1] = float(xj)
        return tables, residual

    # ---- persistence ----------------------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps({"format": "hao-arch-terms-1", "space": self.space, "reference": self.reference,
                           "reference_loss": self.reference_loss, "losses": self.losses,
                           "accuracies": self.accuracies, "info": self.info}, indent=1, sort_keys=True)

    def save(self, path: str | Path) -> Path:
        from hao.io import atomic_write_text
        p = Path(path)
        atomic_write_text(p, self.to_json() + "\n")
        return p

    @classmethod
    def load(cls, path: str | Path) -> "ArchTerms":
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{p} does not exist; measure the architecture terms first "
                              "(python experiments/fit_accuracy_model.py --help).")
        try:
            d = json.loads(p.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{p} is not valid JSON ({exc}).") from None
        if d.get("format") != "hao-arch-terms-1":
            raise ConfigError(f"{p} is not an architecture-term file (format {d.get('format')!r}, expected "
                              "'hao-arch-terms-1').")
        return cls(d["space"], d["reference"], float(d["reference_loss"]), {k: float(v) for k, v in
                   d["losses"].items()}, {k: float(v) for k, v in d.get("accuracies", {}).items()}, d.get("info", {}))


def measure_arch_terms(space: SearchSpace, supernet: Any, calib: list, val: list, *,
                       reference: Candidate | None = None, done: dict[str, dict] | None = None,
                       on_row: Callable[[str, dict], None] | None = None, progress: bool = True,
                       exact: bool = False) -> ArchTerms:
    """Measure every job of :func:`arch_jobs` (``calib``: training batches for BatchNorm/activation ranges;
    ``val``: held-out ``(x, y)`` batches). ``done`` maps a key to an already measured ``{"loss", "accuracy"}``
    (resume); ``on_row(key, row)`` is called after each new measurement. ``exact``: as in
    :func:`hao.train.evaluate.evaluate_full` (default ``False``: the float32 fake-quant path, ~2x faster than
    the exact integer arithmetic; architecture terms are loss differences, where the two agree)."""
    from tqdm import tqdm

    from hao.train.evaluate import evaluate_full, prepare_subnet

    ref = space.canonical(space.validate(reference if reference is not None else space.largest()))
    jobs = arch_jobs(space, ref)
    done = dict(done or {})
    rows: dict[str, dict] = {}
    bar = tqdm(total=len(jobs), desc="architecture terms", unit="net", disable=not progress)
    for kind, key, cand in jobs:
        if key in done:
            rows[key] = done[key]
        else:
            r = evaluate_full(prepare_subnet(space.build(cand, supernet), calib, channels_last=True), val, exact=exact)
            rows[key] = {"loss": r.loss, "accuracy": 100.0 * r.accuracy, "n": r.n}
            if on_row is not None:
                on_row(key, rows[key])
        bar.update(1)
    bar.close()
    n = rows[""]["n"] if "n" in rows[""] else None
    return ArchTerms(space.name, ref.to_json(), float(rows[""]["loss"]),
                     {k: float(v["loss"]) for k, v in rows.items() if k},
                     {k: float(v["accuracy"]) for k, v in rows.items()},
                     {"n_images": n, "n_measurements": len(jobs), "reference_accuracy": rows[""]["accuracy"]})
