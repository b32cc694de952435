"""Packaging hook (the metadata lives in pyproject.toml).

A wheel (``pip install .``) carries the built-in data next to the code: the repository's top-level
``latency_models/``, ``checkpoints/`` and ``reference_data/`` are copied into ``hao/_data/`` at build time, where
:func:`hao.paths.builtin_dir` finds them. A checkout (``pip install -e .``) reads the top-level folders directly.
"""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
DATA_FOLDERS = ("latency_models", "checkpoints", "reference_data")
# per-machine state and the resumable state of training still in progress (kept in git so that a run can continue
# on another machine; useless to a user of the package) are never shipped
SKIP = shutil.ignore_patterns("tuning_db", ".replaced", "__pycache__", "*.tmp", "retime.csv", "*_state.pt",
                              "*.partial.jsonl")


class BuildPyWithData(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for name in DATA_FOLDERS:
            src = HERE / name
            if src.is_dir():
                dst = Path(self.build_lib) / "hao" / "_data" / name
                if dst.exists():
                    shutil.rmtree(dst)
                shutil.copytree(src, dst, ignore=SKIP)


setup(cmdclass={"build_py": BuildPyWithData})
