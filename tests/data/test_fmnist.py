import gzip
import struct

import numpy as np
import pytest
import torch

from hao.data import (DEFAULT_FMNIST_DIR, DatasetNotFoundError, digits, fashion_mnist, find_fashion_mnist,
                      loader, read_idx)
from hao.errors import ConfigError, HaoError


def write_idx(path, arr, gz=False):
    head = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    data = head + arr.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


def make_folder(tmp_path, n_train=6, n_test=4, gz=True):
    rng = np.random.default_rng(0)
    sfx = ".gz" if gz else ""
    write_idx(tmp_path / f"train-images-idx3-ubyte{sfx}", rng.integers(0, 256, (n_train, 28, 28)), gz)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{sfx}", rng.integers(0, 10, (n_train,)), gz)
    write_idx(tmp_path / f"t10k-images-idx3-ubyte{sfx}", rng.integers(0, 256, (n_test, 28, 28)), gz)
    write_idx(tmp_path / f"t10k-labels-idx1-ubyte{sfx}", rng.integers(0, 10, (n_test,)), gz)


def test_missing_folder_says_how_to_get_the_data(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="apt-get install dataset-fashion-mnist") as e:
        fashion_mnist("train", tmp_path / "nowhere")
    assert "nowhere" in str(e.value) and "does not exist" in str(e.value)
    assert isinstance(e.value, FileNotFoundError)


def test_partial_folder_names_missing_files(tmp_path):
    make_folder(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetNotFoundError, match="t10k-labels-idx1-ubyte"):
        find_fashion_mnist(tmp_path)


@pytest.mark.parametrize("gz", [True, False])
def test_reads_plain_and_gzipped_idx(tmp_path, gz):
    make_folder(tmp_path, gz=gz)
    tr = fashion_mnist("train", tmp_path)
    te = fashion_mnist("test", tmp_path, normalize=False)
    assert tr.x.shape == (6, 1, 28, 28) and tr.x.dtype == torch.float32 and tr.y.dtype == torch.int64
    assert te.x.shape == (4, 1, 28, 28) and float(te.x.max()) <= 1.0 and float(te.x.min()) >= 0.0
    raw = read_idx(tmp_path / ("t10k-images-idx3-ubyte" + (".gz" if gz else "")))
    assert np.allclose(te.x[:, 0].numpy() * 255, raw)


def test_bad_files_are_reported(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(HaoError, match="not an IDX file"):
        read_idx(bad)
    trunc = tmp_path / "trunc"
    trunc.write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + b"\x00" * 3)
    with pytest.raises(HaoError, match="truncated"):
        read_idx(trunc)
    with pytest.raises(ConfigError, match="split"):
        fashion_mnist("val", tmp_path)


@pytest.mark.skipif(not (DEFAULT_FMNIST_DIR / "t10k-labels-idx1-ubyte.gz").exists()
                    and not (DEFAULT_FMNIST_DIR / "t10k-labels-idx1-ubyte").exists(),
                    reason="Debian dataset-fashion-mnist not installed")
def test_real_fashion_mnist_test_split():
    te = fashion_mnist("test")
    assert te.x.shape == (10000, 1, 28, 28) and te.y.shape == (10000,)
    assert sorted(torch.bincount(te.y).tolist()) == [1000] * 10


def test_digits_and_loader_are_deterministic():
    tr, te = digits("train"), digits("test")
    assert tr.x.shape[1:] == (1, 8, 8) and len(tr) + len(te) == 1797
    a = [y for _, y in loader(tr, 100, shuffle=True, seed=3)]
    b = [y for _, y in loader(tr, 100, shuffle=True, seed=3)]
    c = [y for _, y in loader(tr, 100, shuffle=True, seed=3, epoch=1)]
    assert all(torch.equal(p, q) for p, q in zip(a, b)) and not torch.equal(a[0], c[0])
    assert sum(len(y) for y in a) == len(tr)
    assert sum(len(y) for _, y in loader(tr, 100, drop_last=True)) == len(tr) // 100 * 100
    s = tr.subset(50, seed=1)
    assert len(s) == 50 and torch.equal(s.x, tr.subset(50, seed=1).x)
    with pytest.raises(ConfigError, match="batch_size"):
        next(loader(tr, 0))
    with pytest.raises(ConfigError, match="subset"):
        tr.subset(10**6)
