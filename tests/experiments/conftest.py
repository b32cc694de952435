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


#: the committed trained supernet + sensitivities (HAO_FMNIST_CHECKPOINT points elsewhere)
FMNIST_CKPT = Path(__import__("os").environ.get("HAO_FMNIST_CHECKPOINT", REPO / "checkpoints" / "mbconv-fmnist"))


def require_fashion_mnist() -> None:
    """Skip unless Fashion-MNIST is installed (Debian's dataset-fashion-mnist, or $HAO_FMNIST_DIR)."""
    from hao.data import DatasetNotFoundError, find_fashion_mnist
    try:
        find_fashion_mnist()
    except DatasetNotFoundError as exc:
        pytest.skip(f"Fashion-MNIST is not installed: {exc}")


def require_fmnist_search_inputs(ckpt: Path = FMNIST_CKPT) -> None:
    """Skip unless the trained supernet + sensitivities, the committed CPU table and Fashion-MNIST are present."""
    if not (ckpt / "sensitivity.json").is_file() or not (ckpt / "supernet.pt").is_file():
        pytest.skip(f"trained supernet + sensitivities not in {ckpt} (experiments/train_supernet.py makes them)")
    if not (REPO / "latency_models" / "cpu-rocketlake-2t" / "table.csv").is_file():
        pytest.skip("latency_models/cpu-rocketlake-2t is absent")
    require_fashion_mnist()
