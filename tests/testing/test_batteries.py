"""Every registered latency backend, table importer and accuracy model passes its conformance battery."""
from __future__ import annotations

import pytest

import hao
from hao.latency.backend import list_backends
from hao.latency.importers import list_importers
from hao.proxy import list_accuracy_models
from hao.testing.accuracy import check_accuracy_model
from hao.testing.latency import check_backend, check_importer


@pytest.mark.parametrize("name", [n for n in list_backends() if n != "tvm"])
def test_fast_backends(name):
    desc = check_backend(name)
    assert desc["backend"] == name


@pytest.mark.tvm
@pytest.mark.slow
def test_tvm_backend_battery(tmp_path):
    pytest.importorskip("tvm")
    check_backend("tvm", {"trials": 2, "database_dir": tmp_path / "db", "repeat": 2, "min_repeat_ms": 1,
                          "rounds": 1, "population": 8})


@pytest.mark.parametrize("name", list_importers())
def test_importers(name):
    check_importer(name)


@pytest.mark.parametrize("name", list_accuracy_models())
def test_accuracy_models(name):
    check_accuracy_model(name, hao.get_space("mbconv-fmnist"), n=12)


def test_batteries_catch_a_broken_model():
    import numpy as np

    from hao.proxy import BaseAccuracyProxy

    class Noisy(BaseAccuracyProxy):
        def score(self, candidates):
            return np.random.default_rng().random(len(candidates))  # not deterministic

    with pytest.raises(AssertionError, match="not deterministic"):
        check_accuracy_model(Noisy(hao.get_space("resnet-cifar")), hao.get_space("resnet-cifar"), n=4)
