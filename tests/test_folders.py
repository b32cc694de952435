"""hao.folders: output folders are checked before work, and no folder with data is replaced silently."""
from __future__ import annotations

import pytest

from hao.errors import ConfigError
from hao.folders import ASIDE_DIR, check_output_folder, claim_folder, move_aside
from tests.snapshots import snapshot


def test_check_output_folder_refuses_a_file_and_an_unwritable_place(tmp_path):
    f = tmp_path / "results.csv"
    f.write_text("x\n")
    with pytest.raises(ConfigError, match="is an existing file; --out names a folder"):
        check_output_folder(f, "hao search")
    with pytest.raises(ConfigError, match="cannot be created: .* is a file"):
        check_output_folder(f / "sub", "hao search")
    # /proc refuses new files even to root (a chmod'ed folder would not stop root)
    with pytest.raises(ConfigError, match="is not writable"):
        check_output_folder("/proc/hao-out", "hao search")
    assert check_output_folder(tmp_path / "new" / "deeper", "hao search") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # checking creates nothing
    assert f.read_text() == "x\n"


def test_claim_folder_refuses_then_moves_aside_with_force(tmp_path):
    d = tmp_path / "hw"
    assert claim_folder(d, force=False, what="t") is None  # absent: fine
    d.mkdir()
    assert claim_folder(d, force=False, what="t") is None  # empty: fine
    (d / "table.csv").write_text("measured\n")
    before = snapshot(tmp_path)
    with pytest.raises(ConfigError, match=r"refusing to write into .*hw: it already holds table.csv.*--force"):
        claim_folder(d, force=False, what="t")
    with pytest.raises(ConfigError, match="another target"):
        claim_folder(d, force=False, what="t", conflicts=["another target"], resumable=True)
    assert snapshot(tmp_path) == before
    assert claim_folder(d, force=False, what="t", resumable=True) is None  # own earlier work: resume in place
    moved = claim_folder(d, force=True, what="t")
    assert moved.parent == tmp_path / ASIDE_DIR and moved.name.startswith("hw-")
    assert (moved / "table.csv").read_text() == "measured\n" and not d.exists()


def test_move_aside_never_overwrites(tmp_path):
    a = [tmp_path / "x"]
    a[0].mkdir()
    first = move_aside(a[0])
    a[0].mkdir()
    second = move_aside(a[0])
    assert first != second and first.is_dir() and second.is_dir()
