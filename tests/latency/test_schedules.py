"""A table's schedules packed beside it and restored into a fresh tuning database."""
from __future__ import annotations

import json
import lzma
import shutil

import pytest

from hao.errors import ConfigError
from hao.latency.schedules import SCHEDULES_FILE, pack_schedules, read_schedules, restore_schedules

ZEN = {"kind": "llvm", "mcpu": "znver5", "num-cores": 2, "keys": ["cpu"], "tag": ""}


def _db(folder, workloads, records):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "database_workload.json").write_text("".join(json.dumps(w) + "\n" for w in workloads))
    (folder / "database_tuning_record.json").write_text("".join(json.dumps(r) + "\n" for r in records))


def _rec(secs, trace="t", target=ZEN):
    return [[trace], [secs, secs], target, []]


def test_pack_keeps_the_best_record_per_workload_and_restore_adds_only_what_is_missing(tmp_path):
    db = tmp_path / "hw" / "tuning_db"
    _db(db, [["1", "modA"], ["2", "modB"], ["3", "modC"]],
        [[0, _rec(3e-5, "slow")], [0, _rec(1e-5, "fast")], [1, _rec(2e-5)], [2, _rec(1e10, "failed")]])
    out = pack_schedules(db)
    assert out == tmp_path / "hw" / SCHEDULES_FILE
    data = read_schedules(out)
    assert [w[0] for w in data["workloads"]] == ["1", "2"]  # modC had only a failed candidate
    assert data["records"][0][1][0] == ["fast"] and data["target"] == {"kind": "llvm", "mcpu": "znver5"}
    # a fresh clone: no tuning_db
    shutil.rmtree(db)
    assert restore_schedules(db, ZEN) == 2
    assert restore_schedules(db, ZEN) == 0  # this file was restored already
    lines = (db / "database_tuning_record.json").read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0])[1][0] == ["fast"]
    # a database that has one of them gets only the other
    shutil.rmtree(db)
    _db(db, [["2", "modB"]], [[0, _rec(5e-6)]])
    assert restore_schedules(db, ZEN) == 1
    recs = [json.loads(x) for x in (db / "database_tuning_record.json").read_text().splitlines()]
    wls = [json.loads(x) for x in (db / "database_workload.json").read_text().splitlines()]
    assert [wls[r[0]][0] for r in recs] == ["2", "1"]
    # packing again keeps the better record of the database and the file's others
    pack_schedules(db)
    data = read_schedules(out)
    assert {w[0]: r[1][1][0] for w, r in zip(data["workloads"], data["records"])} == {"1": 1e-5, "2": 5e-6}


def test_another_cpu_model_is_refused(tmp_path):
    db = tmp_path / "hw" / "tuning_db"
    _db(db, [["1", "modA"]], [[0, _rec(1e-5)]])
    pack_schedules(db)
    shutil.rmtree(db)
    with pytest.raises(ConfigError, match=r"tuned for mcpu='znver5'.*targets 'skylake-avx512'.*another --hardware"):
        restore_schedules(db, {"kind": "llvm", "mcpu": "skylake-avx512"})
    _db(db, [["9", "modZ"]], [[0, _rec(1e-5, target={**ZEN, "mcpu": "icelake-server"})]])
    with pytest.raises(ConfigError, match="one table folder is one CPU model"):
        pack_schedules(db)


def test_unreadable_file_says_what_to_do(tmp_path):
    (tmp_path / "hw").mkdir()
    (tmp_path / "hw" / SCHEDULES_FILE).write_bytes(lzma.compress(b'{"format": "other"}'))
    with pytest.raises(ConfigError, match="another hao version"):
        restore_schedules(tmp_path / "hw" / "tuning_db", ZEN)
    (tmp_path / "hw" / SCHEDULES_FILE).write_bytes(b"not xz")
    with pytest.raises(ConfigError, match="not a readable schedules file"):
        restore_schedules(tmp_path / "hw" / "tuning_db", ZEN)
    assert pack_schedules(tmp_path / "empty" / "tuning_db") is None


def test_a_fresh_database_measures_without_tuning(tmp_path):
    pytest.importorskip("tvm")
    from hao.kernel import KernelSpec
    from hao.latency.tvm_backend import TVMBackend

    k = KernelSpec("conv2d", 8, 8, 6, 6, 3, 1)
    db = tmp_path / "cpu-x" / "tuning_db"
    kw = dict(trials=2, database_dir=db, repeat=3, min_repeat_ms=1, rounds=1, population=8)
    with TVMBackend(**kw) as b:
        first = b.measure(k)
    assert first.ok and first.tuning_trials == 2
    assert (tmp_path / "cpu-x" / SCHEDULES_FILE).is_file()  # packed when the backend closed
    shutil.rmtree(db)  # what a fresh clone has: the table folder without tuning_db/
    with TVMBackend(**kw) as b:
        again = b.measure(k)
    assert again.ok and again.tuning_trials == 0  # the committed schedule, not a new tuning
