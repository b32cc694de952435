import os
from pathlib import Path

import pytest

# TVM sizes its CPU thread pool once per thread (default here: half the cores, i.e. 1). pin_threads creates it
# wide enough when tvm is already imported; this covers a test that runs a TVM kernel before any pin_threads.
os.environ.setdefault("TVM_NUM_THREADS", "2")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("HAO_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "README.md").exists():
        pytest.skip(f"reference data folder {SHARED_DATA} is absent (set HAO_SHARED_DATA to the folder that holds "
                    "hawq_v3_ilp.json, apq_bitfusion_lut.json and haq_mobilenetv2_latency.npy)")
    return SHARED_DATA
