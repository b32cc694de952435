"""Load the experiment scripts (``experiments/*.py`` is not a package) as modules for the smoke tests."""
import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def load_script(name: str):
    path = REPO / "experiments" / f"{name}.py"
    if str(path.parent) not in sys.path:  # as `python experiments/NAME.py` does: siblings (_common) import
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(f"_exp_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def script():
    return load_script
