"""Fashion-MNIST from IDX files (optionally gzip-compressed) and sklearn's digits for tiny tests.

Debian's ``dataset-fashion-mnist`` package installs the four IDX files under
``/usr/share/datasets/fashion-mnist``; any folder holding ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``
works. Images are returned as float32 tensors normalised with the training-set mean/std, shape (N, 1, 28, 28).
"""
from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hao.errors import ConfigError, HaoError

__all__ = ["DEFAULT_FMNIST_DIR", "FMNIST_MEAN", "FMNIST_STD", "DatasetNotFoundError", "TensorDataset",
           "fashion_mnist", "find_fashion_mnist", "read_idx", "digits", "loader", "resumable_batches"]

DEFAULT_FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
#: Pixel mean / std of the Fashion-MNIST training split (pixels scaled to [0, 1]).
FMNIST_MEAN, FMNIST_STD = 0.2860, 0.3530
_FILES = {("train", "images"): "train-images-idx3-ubyte", ("train", "labels"): "train-labels-idx1-ubyte",
          ("test", "images"): "t10k-images-idx3-ubyte", ("test", "labels"): "t10k-labels-idx1-ubyte"}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


class DatasetNotFoundError(HaoError, FileNotFoundError):
    """A dataset's files are not where hao looked. The message says where it looked and how to get them."""


@dataclass(frozen=True)
class TensorDataset:
    """Inputs ``x`` (N, C, H, W) float32 and integer labels ``y`` (N,), with a name for messages."""

    x: torch.Tensor
    y: torch.Tensor
    name: str = "dataset"

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def subset(self, n: int, seed: int = 0) -> "TensorDataset":
        """``n`` examples drawn without replacement by a seeded generator (the first ``n`` of a permutation)."""
        if not isinstance(n, int) or not 1 <= n <= len(self):
            raise ConfigError(f"subset(n) needs 1 <= n <= {len(self)} for {self.name!r}, got n={n!r}.")
        idx = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n]
        return TensorDataset(self.x[idx], self.y[idx], f"{self.name}[{n}@seed{seed}]")


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (plain or ``.gz``) into a numpy array of its declared dtype and shape."""
    path = Path(path)
    with _open(path) as f:
        head = f.read(4)
        if len(head) != 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_DTYPES:
            raise HaoError(f"{path} is not an IDX file: its magic bytes are {head!r}, expected 0x00 0x00 "
                           f"<dtype in {sorted(_IDX_DTYPES)}> <ndim>.")
        ndim = head[3]
        shape = struct.unpack(">" + "I" * ndim, f.read(4 * ndim))
        dtype = np.dtype(_IDX_DTYPES[head[2]])
        data = f.read()
    n = int(np.prod(shape)) if shape else 1
    if len(data) != n * dtype.itemsize:
        raise HaoError(f"{path} is truncated: header says shape {shape} ({n * dtype.itemsize} bytes of data), "
                       f"found {len(data)} bytes. Re-install or re-download the file.")
    return np.frombuffer(data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="), copy=False)


def find_fashion_mnist(root: str | os.PathLike | None = None) -> dict[tuple[str, str], Path]:
    """Locate the four IDX files in ``root`` (default: ``$HAO_FMNIST_DIR`` or ``/usr/share/datasets/fashion-mnist``).

    Raises :class:`DatasetNotFoundError` naming the folder, the missing files and how to get them."""
    folder = Path(root if root is not None else os.environ.get("HAO_FMNIST_DIR", DEFAULT_FMNIST_DIR))
    found, missing = {}, []
    for key, stem in _FILES.items():
        for cand in (folder / stem, folder / (stem + ".gz")):
            if cand.is_file():
                found[key] = cand
                break
        else:
            missing.append(stem + "[.gz]")
    if missing:
        where = "does not exist" if not folder.is_dir() else f"lacks {missing}"
        raise DatasetNotFoundError(
            f"Fashion-MNIST not found: folder {str(folder)!r} {where}. Expected the four IDX files "
            f"{[s + '[.gz]' for s in _FILES.values()]}. Fix: `sudo apt-get install dataset-fashion-mnist` "
            f"(installs them under {DEFAULT_FMNIST_DIR}), or pass root=<folder holding them> / set HAO_FMNIST_DIR.")
    return found


def fashion_mnist(split: str = "train", root: str | os.PathLike | None = None, *,
                  normalize: bool = True) -> TensorDataset:
    """Fashion-MNIST ``split`` ("train": 60k, "test": 10k) as a :class:`TensorDataset` of (N, 1, 28, 28) floats."""
    if split not in ("train", "test"):
        raise ConfigError(f"fashion_mnist split must be 'train' or 'test', got {split!r}.")
    files = find_fashion_mnist(root)
    x = read_idx(files[(split, "images")])
    y = read_idx(files[(split, "labels")])
    if x.ndim != 3 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise HaoError(f"Fashion-MNIST {split} files disagree: images {x.shape}, labels {y.shape}; expected "
                       "(N, 28, 28) and (N,).")
    xt = torch.from_numpy(x.astype(np.float32) / 255.0).unsqueeze(1)
    if normalize:
        xt = (xt - FMNIST_MEAN) / FMNIST_STD
    return TensorDataset(xt.contiguous(), torch.from_numpy(y.astype(np.int64)), f"fashion-mnist/{split}")


def digits(split: str = "train", *, test_fraction: float = 0.25, seed: int = 0) -> TensorDataset:
    """sklearn's 8x8 digits (1797 images, 10 classes) as (N, 1, 8, 8) floats: a tiny dataset for tests."""
    from sklearn.datasets import load_digits
    if split not in ("train", "test"):
        raise ConfigError(f"digits split must be 'train' or 'test', got {split!r}.")
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction!r}.")
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = (x - 0.3) / 0.4
    y = torch.tensor(d.target, dtype=torch.int64)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_test = int(round(test_fraction * len(y)))
    idx = perm[:n_test] if split == "test" else perm[n_test:]
    return TensorDataset(x[idx].contiguous(), y[idx].contiguous(), f"digits/{split}")


def resumable_batches(ds: TensorDataset, batch_size: int, *, seed: int = 0,
                      start_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Shuffled, drop-last minibatches epoch after epoch (epoch ``e`` shuffled as ``loader(..., epoch=e)``),
    starting at global step ``start_step``: exactly the batches an uninterrupted run would see from there on,
    which is what a resumed training run needs. Never ends."""
    per_epoch = len(ds) // batch_size if isinstance(batch_size, int) and batch_size > 0 else 0
    if per_epoch < 1:
        raise ConfigError(f"resumable_batches needs 1 <= batch_size <= {len(ds)} (the dataset size) for "
                          f"{ds.name!r}, got {batch_size!r}.")
    step = int(start_step)
    while True:
        epoch, skip = divmod(step, per_epoch)
        it = loader(ds, batch_size, shuffle=True, seed=seed, drop_last=True, epoch=epoch)
        for _ in range(skip):
            next(it)
        for b in it:
            yield b
            step += 1


def loader(ds: TensorDataset, batch_size: int, *, shuffle: bool = False, seed: int = 0,
           drop_last: bool = False, epoch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Iterate ``(x, y)`` minibatches; shuffling uses a generator seeded by ``(seed, epoch)``, never the global RNG."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive int, got {batch_size!r}.")
    n = len(ds)
    idx = (torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)) if shuffle
           else torch.arange(n))
    stop = n - n % batch_size if drop_last else n
    for i in range(0, stop, batch_size):
        j = idx[i:i + batch_size]
        yield ds.x[j], ds.y[j]
