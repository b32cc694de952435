"""Measuring candidates by hand: read a JSON-lines file of candidates, evaluate each one for real.

:func:`read_candidates` parses one ``Candidate.to_json()`` per line (every malformed line is refused with its
line number). :func:`evaluate_candidates` builds each candidate from the trained supernet, prepares it the way
every accuracy figure of hao is measured — BatchNorm statistics re-estimated and activation ranges calibrated
on seeded training images, then fake-quantized evaluation — and returns one row per candidate, in order.
``hao evaluate`` is the command line around them (``hao/cli_evaluate.py``).
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hao.errors import CandidateError, ConfigError
from hao.space.base import Candidate, SearchSpace

__all__ = ["read_candidates", "evaluate_candidates"]


def read_candidates(path: str | Path, space: SearchSpace) -> list[Candidate]:
    """The candidates of a JSON-lines file, validated against ``space``; a bad line raises
    :class:`ConfigError` naming the file, the line number and the reason. Blank lines are refused too (the
    output has one row per input line)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--candidates {p}: no such file; pass a JSON-lines file with one Candidate.to_json() "
                          "per line (e.g. the config column of a pareto.csv).")
    lines = p.read_text().splitlines()
    if not lines:
        raise ConfigError(f"--candidates {p} is empty; it needs one Candidate.to_json() per line.")
    out = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            raise ConfigError(f"{p}, line {i}: blank line; every line must hold one candidate (JSON), since the "
                              "output has one row per input line. Remove it.")
        try:
            cand = Candidate.from_json(line)
            if cand.space != space.name:
                raise CandidateError(f"it is a candidate of space {cand.space!r}, not {space.name!r}")
            out.append(space.canonical(space.validate(cand)))
        except (CandidateError, ConfigError) as exc:
            raise ConfigError(f"{p}, line {i}: {exc}. Fix or remove that line.") from None
    return out


def evaluate_candidates(space: SearchSpace, supernet: Any, candidates: Sequence[Candidate], calib: list,
                        test: list, *, done: dict[int, dict] | None = None,
                        on_row: Callable[[int, dict], None] | None = None,
                        progress: bool = True, exact: bool = True) -> list[dict[str, Any]]:
    """One row per candidate: ``accuracy`` and ``accuracy_se`` (percent), ``loss`` (mean cross-entropy),
    ``n_images``, ``candidate`` (JSON). ``calib``: batches of training images for BatchNorm and activation
    ranges; ``test``: ``(x, y)`` batches. ``done`` maps an index to an already measured row (resume); ``on_row``
    is called with each new row as soon as it is measured. ``exact`` (default): the accuracy the integer
    deployment computes (:func:`hao.train.evaluate.evaluate_full`, float64 element-wise path); ``False``: the
    float32 fake-quant path, ~2x faster."""
    from tqdm import tqdm

    from hao.train.evaluate import evaluate_full, prepare_subnet

    done = dict(done or {})
    rows = []
    bar = tqdm(total=len(candidates), initial=len(done), desc=f"evaluate {space.name}", unit="cand",
               disable=not progress)
    for i, cand in enumerate(candidates):
        if i in done:
            rows.append(done[i])
            continue
        model = prepare_subnet(space.build(cand, supernet), calib, channels_last=True).eval()
        r = evaluate_full(model, test, exact=exact)
        row = {"index": i, "accuracy": 100.0 * r.accuracy, "accuracy_se": 100.0 * r.accuracy_se, "loss": r.loss,
               "n_images": r.n, "candidate": cand.to_json()}
        rows.append(row)
        if on_row is not None:
            on_row(i, row)
        bar.update(1)
        bar.set_postfix(acc=f"{row['accuracy']:.2f}%")
    bar.close()
    return rows


def settings_key(**settings: Any) -> str:
    """A short hash of the settings a resumed evaluation must share with the first run."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]
