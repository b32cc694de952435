"""A wheel (`pip install .`, not editable) carries the built-in tables, checkpoints and reference data, and an
installed hao finds them without the repository."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("hao", "search_spaces", "latency_models", "checkpoints", "reference_data", "pyproject.toml",
           "setup.py", "setup.cfg", "README.md")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    pytest.importorskip("setuptools")
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        p = REPO / name
        if p.is_dir():
            shutil.copytree(p, src / name, ignore=shutil.ignore_patterns("tuning_db", "__pycache__", "_data"))
        else:
            shutil.copy2(p, src / name)
    dist = tmp_path_factory.mktemp("dist")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(dist), str(src)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    (whl,) = dist.glob("hao-*.whl")
    return whl


def test_wheel_ships_the_builtin_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for need in ("hao/_data/latency_models/cpu-rocketlake-2t/table.csv",
                 "hao/_data/latency_models/apq-bitfusion/meta.json",
                 "hao/_data/checkpoints/mbconv-fmnist/supernet.pt",
                 "hao/_data/checkpoints/mbconv-fmnist/sensitivity.json",
                 "hao/_data/checkpoints/mbconv-fmnist/accmodel/accuracy_model.json",
                 "hao/_data/reference_data/hawq_v3_ilp.json",
                 "hao/_data/reference_data/README.md"):
        assert need in names, need
    assert not any("tuning_db" in n for n in names)  # per-machine schedules are not shipped


def test_installed_wheel_finds_its_data_and_writes_to_the_user_folder(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    home = tmp_path / "home"
    code = (
        "import json, hao, hao.paths as p\n"
        "from hao.latency.table import list_hardware, default_write_root\n"
        "from hao.proxy import default_checkpoint_dir\n"
        "print(json.dumps({'file': hao.__file__, 'tables': list_hardware(),\n"
        "  'builtin': str(p.builtin_dir('latency_models')), 'write': str(default_write_root()),\n"
        "  'ckpt': str(default_checkpoint_dir('mbconv-fmnist')), 'ref': str(p.reference_data_dir())}))\n")
    env = {"PATH": "/usr/bin:/bin", "HAO_HOME": str(home), "PYTHONPATH": str(site)}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    pkg = site / "hao"
    assert Path(got["file"]).parent == pkg
    assert {"cpu-rocketlake-2t", "apq-bitfusion", "haq-mobilenetv2", "hawq-t4"} <= set(got["tables"])
    assert Path(got["builtin"]) == pkg / "_data" / "latency_models"
    assert Path(got["ckpt"]) == pkg / "_data" / "checkpoints" / "mbconv-fmnist"
    assert Path(got["ref"]) == pkg / "_data" / "reference_data"
    assert Path(got["write"]) == home / "latency_models"  # never inside the package
    # an import without --root lands in the user folder; the package is untouched
    before = sorted(str(q) for q in pkg.rglob("*"))
    imp = ("from hao.latency.importers import get_importer\n"
           "print(get_importer('hawq').run(hardware='my-t4'))\n")
    r = subprocess.run([sys.executable, "-c", imp], capture_output=True, text=True, env=env, cwd=tmp_path,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (home / "latency_models" / "my-t4" / "table.csv").is_file()
    assert sorted(str(q) for q in pkg.rglob("*") if "__pycache__" not in str(q)) == \
        [q for q in before if "__pycache__" not in q]
