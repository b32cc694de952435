"""Datasets: Fashion-MNIST from IDX files, sklearn digits for tiny tests, and deterministic loaders."""
from hao.data.fmnist import (DEFAULT_FMNIST_DIR, FMNIST_MEAN, FMNIST_STD, DatasetNotFoundError, TensorDataset,
                             digits, fashion_mnist, find_fashion_mnist, loader, read_idx, resumable_batches)

__all__ = ["DEFAULT_FMNIST_DIR", "FMNIST_MEAN", "FMNIST_STD", "DatasetNotFoundError", "TensorDataset", "digits",
           "fashion_mnist", "find_fashion_mnist", "loader", "read_idx", "resumable_batches"]
