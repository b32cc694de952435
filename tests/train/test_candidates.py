"""hao evaluate: one row per input line, in order, equal to evaluating each candidate by hand; malformed lines
are refused with their line number before any work; an interrupted run resumes; --out is never overwritten."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

import hao
from hao.cli import main
from hao.data import DatasetNotFoundError, fashion_mnist, loader
from hao.errors import ConfigError
from hao.train.candidates import read_candidates


@pytest.fixture(scope="module")
def fmnist():
    try:
        return fashion_mnist("train"), fashion_mnist("test")
    except DatasetNotFoundError as exc:
        pytest.skip(f"Fashion-MNIST is not installed: {exc}")


def _write(path, cands):
    path.write_text("".join(c.to_json() + "\n" for c in cands))
    return path


def test_read_candidates_names_the_bad_line(tmp_path):
    space = hao.get_space("mbconv-fmnist")
    good = space.largest().to_json()
    cases = [(good + "\nnot json\n", "line 2"), (good + "\n\n" + good + "\n", "line 2: blank line"),
             (hao.get_space("resnet-fmnist").largest().to_json() + "\n", "line 1: it is a candidate of space "
                                                                          "'resnet-fmnist'"),
             (good.replace('"s0.depth": 4', '"s0.depth": 5') + "\n", "line 1")]
    for text, msg in cases:
        (tmp_path / "c.jsonl").write_text(text)
        with pytest.raises(ConfigError, match=msg):
            read_candidates(tmp_path / "c.jsonl", space)
    assert len(read_candidates(_write(tmp_path / "ok.jsonl", [space.largest(), space.smallest()]), space)) == 2


def test_evaluate_matches_a_hand_evaluation_and_resumes(tmp_path, fmnist, capsys):
    from hao.proxy import default_checkpoint_dir
    from hao.train import evaluate_full, load_supernet, prepare_subnet

    space = hao.get_space("mbconv-fmnist")
    rng = np.random.default_rng(5)
    cands = [space.largest(), space.sample(rng), space.uniform(4, 4)]
    src = _write(tmp_path / "c.jsonl", cands)
    out = tmp_path / "acc.csv"
    args = ["evaluate", "--space", "mbconv-fmnist", "--candidates", str(src), "--out", str(out),
            "--test-images", "200", "--calib-images", "100", "--no-progress", "--threads", "2"]
    assert main(args) == 0
    rows = list(csv.DictReader(out.open()))
    assert [int(r["line"]) for r in rows] == [1, 2, 3]
    assert [json.loads(r["candidate"]) == c.to_dict() for r, c in zip(rows, cands)] == [True] * 3
    # ground truth: the same protocol by hand
    train, test = fmnist
    net = load_supernet(space, default_checkpoint_dir(space.name) / "supernet.pt")
    calib = list(loader(train.subset(100, seed=1), 250))
    batches = list(loader(test.subset(200, seed=7), 500))
    # hao evaluate computes what deploys (exact accumulators); the float32 path's rounding depends on the CPU's
    # kernels and may flip an image (AMD znver5, AVX-512: 82.5 vs 83.0 on these 200 images)
    ref = evaluate_full(prepare_subnet(space.build(cands[0], net), calib, channels_last=True), batches, exact=True)
    assert float(rows[0]["accuracy"]) == pytest.approx(100 * ref.accuracy, abs=1e-3)
    assert int(rows[0]["n_images"]) == 200 and float(rows[0]["accuracy"]) > 60  # the trained supernet
    # --out exists: refused, unchanged
    before = out.read_text()
    assert main(args) == 2 and "already exists" in capsys.readouterr().err and out.read_text() == before
    # resume: a partial file from an interrupted run with the same settings is reused
    out2 = tmp_path / "acc2.csv"
    args2 = args[:6] + [str(out2)] + args[7:]
    from hao.train import candidates as C
    real = C.evaluate_candidates

    def two_then_stop(*a, on_row=None, **kw):
        def row_then_maybe_stop(i, row):
            on_row(i, row)
            if i == 1:
                raise KeyboardInterrupt
        return real(*a, on_row=row_then_maybe_stop, **kw)

    C.evaluate_candidates = two_then_stop
    try:
        assert main(args2) == 130
    finally:
        C.evaluate_candidates = real
    capsys.readouterr()
    assert main(args2) == 0
    assert "resuming, 2 of 3" in capsys.readouterr().out
    assert [r["accuracy"] for r in csv.DictReader(out2.open())] == [r["accuracy"] for r in rows]
