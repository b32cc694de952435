"""experiments/measure_resolution.py: the measured resolution term (smoke run on real data, resume, no overwrite)."""
import json

import pytest

from hao.proxy.resolution import ResolutionTerms
from tests.experiments.conftest import FMNIST_CKPT, load_script, require_fashion_mnist


@pytest.fixture(scope="module")
def mod():
    return load_script("measure_resolution")


def test_existing_terms_are_not_overwritten(mod, tmp_path, capsys):
    out = tmp_path / "resolution_terms.json"
    out.write_text("measured")
    assert mod.main(["--out", str(out), "--work", str(tmp_path / "w")]) == 2
    assert out.read_text() == "measured" and "--force" in capsys.readouterr().err


def test_a_space_without_resolution_is_refused(mod, tmp_path, capsys):
    assert mod.main(["--space", "mbconv-fmnist", "--out", str(tmp_path / "t.json")]) == 2
    assert "no resolution decision" in capsys.readouterr().err


def test_smoke_measures_every_resolution_and_resumes(mod, tmp_path, capsys):
    require_fashion_mnist()
    if not (FMNIST_CKPT / "supernet.pt").is_file():
        pytest.skip("no trained mbconv-fmnist supernet")
    args = ["--checkpoint-dir", str(FMNIST_CKPT), "--n-candidates", "2", "--test-images", "200",
            "--calib-images", "100", "--work", str(tmp_path / "w"), "--out", str(tmp_path / "t.json")]
    assert mod.main(args) == 0
    t = ResolutionTerms.load(tmp_path / "t.json")
    assert t.native == 28 and sorted(t.terms) == [20, 24, 28] and t.term(28, "accuracy_drop") == 0.0
    rows = t.provenance["rows"]
    assert len(rows) == 6                                            # 2 candidates x 3 resolutions
    acc = {(r["base"], r["resolution"]): r["accuracy"] for r in rows}
    for r in (20, 24):                                               # the term is the mean drop over candidates
        want = sum(acc[(i, 28)] - acc[(i, r)] for i in range(2)) / 2
        assert t.term(r, "accuracy_drop") == pytest.approx(want)
    capsys.readouterr()
    assert mod.main(args + ["--force"]) == 0                         # resumed: nothing re-measured
    assert "[1/6]" not in capsys.readouterr().out
    assert json.loads((tmp_path / "t.json").read_text())["terms"] == t.to_dict()["terms"]
