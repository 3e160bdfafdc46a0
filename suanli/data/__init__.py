"""Data: datasets, the DataLoader, and readers for MNIST (IDX), character-level text and the bundled digits.

>>> import suanli
>>> from suanli.data import DataLoader, TensorDataset
>>> ds = TensorDataset(suanli.randn(6, 3), suanli.arange(6))
>>> [tuple(x.shape) for x, _ in DataLoader(ds, batch_size=4, drop_last=True)]
[(4, 3)]
"""
from .dataloader import DataLoader, default_collate
from .dataset import ConcatDataset, Dataset, Subset, TensorDataset, random_split
from .digits import Digits, load_digits, upsample
from .mnist import MNIST, IDXError, read_idx
from .text import CharDataset, load_shakespeare

__all__ = ["Dataset", "TensorDataset", "Subset", "ConcatDataset", "random_split", "DataLoader",
           "default_collate", "MNIST", "read_idx", "IDXError", "CharDataset", "load_shakespeare",
           "load_digits", "upsample", "Digits"]
