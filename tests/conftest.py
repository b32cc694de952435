import os
from pathlib import Path

import pytest

# TVM sizes its CPU thread pool once per thread (default here: half the cores, i.e. 1). pin_threads creates it
# wide enough when tvm is already imported; this covers a test that runs a TVM kernel before any pin_threads.
os.environ.setdefault("TVM_NUM_THREADS", "2")

REPO = Path(__file__).resolve().parents[1]
REFERENCE_DATA = REPO / "reference_data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The published reference files shipped with the repository (never skipped)."""
    return REFERENCE_DATA


@pytest.fixture(autouse=True, scope="session")
def _isolated_user_folder(tmp_path_factory):
    """Tables the tests calibrate or import without --root go to a throw-away per-user folder, never to the
    developer's ~/.local/share/hao."""
    old = os.environ.get("HAO_HOME")
    os.environ["HAO_HOME"] = str(tmp_path_factory.mktemp("hao_home"))
    yield
    if old is None:
        os.environ.pop("HAO_HOME", None)
    else:
        os.environ["HAO_HOME"] = old
