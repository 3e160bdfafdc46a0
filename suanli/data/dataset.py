"""Datasets: the map-style protocol (``__getitem__`` + ``__len__``) and the standard combinators.

A dataset may also define ``fetch_batch(indices) -> batch`` returning an already-collated batch for
an array of indices; :class:`~suanli.data.DataLoader` then skips the per-item Python loop (the fast
path). :class:`TensorDataset` and :class:`Subset` of one do.

>>> import suanli
>>> from suanli.data import TensorDataset, random_split
>>> ds = TensorDataset(suanli.arange(10).float(), suanli.arange(10))
>>> x, y = ds[3]
>>> x.item(), y.item(), len(ds)
(3.0, 3, 10)
>>> train, val = random_split(ds, [0.8, 0.2], generator=suanli.Generator(0))
>>> len(train), len(val)
(8, 2)
"""
from __future__ import annotations

import math
from typing import Any, Generic, Iterable, Sequence, TypeVar

import numpy as np

from ..creation import from_numpy
from ..errors import op_error
from ..random import Generator, rng
from ..tensor import Tensor

__all__ = ["Dataset", "TensorDataset", "Subset", "ConcatDataset", "random_split"]

T = TypeVar("T")


class Dataset(Generic[T]):
    """Base class of map-style datasets: subclasses define ``__getitem__(i)`` and ``__len__()``."""

    def __getitem__(self, index: int) -> T:
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__(index)")

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must define __len__()")

    def __add__(self, other: Dataset[T]) -> ConcatDataset[T]:
        return ConcatDataset([self, other])


def _check_index(index: Any, n: int, name: str) -> int:
    try:
        i = int(index)
    except TypeError:
        raise TypeError(f"{name}: index must be an int, got {type(index).__name__}") from None
    if not -n <= i < n:
        raise IndexError(f"{name}: index {i} is out of range for a dataset of length {n}")
    return i + n if i < 0 else i


class TensorDataset(Dataset[tuple[Tensor, ...]]):
    """Item ``i`` is ``tuple(t[i] for t in tensors)``; every tensor has the same first dimension.

    Items are views (no copy), as in torch. Batches are gathered with one fancy index per tensor.
    """

    def __init__(self, *tensors: Tensor | np.ndarray) -> None:
        if not tensors:
            raise ValueError("TensorDataset: give at least one tensor")
        arrays = []
        for k, t in enumerate(tensors):
            if not isinstance(t, (Tensor, np.ndarray)):
                raise TypeError(f"TensorDataset: argument {k} must be a Tensor or ndarray, got {type(t).__name__}")
            if np.ndim(t) == 0:
                raise ValueError(f"TensorDataset: argument {k} is 0-d; every tensor needs a first "
                                 f"(sample) dimension")
            arrays.append(np.asarray(t))
        sizes = [a.shape[0] for a in arrays]
        if len(set(sizes)) != 1:
            raise op_error("TensorDataset", "size mismatch between tensors",
                           expect="every tensor has the same first dimension (the number of samples)",
                           actual=f"first dimensions {sizes}", cls=ValueError)
        self.tensors = tuple(t if isinstance(t, Tensor) else from_numpy(t) for t in tensors)
        self._arrays = arrays

    def __getitem__(self, index: int) -> tuple[Tensor, ...]:
        i = _check_index(index, len(self), "TensorDataset")
        return tuple(from_numpy(np.asarray(a[i])) for a in self._arrays)

    def __len__(self) -> int:
        return self._arrays[0].shape[0]

    def fetch_batch(self, indices: np.ndarray) -> list[Tensor]:
        """The collated batch for ``indices`` (a list like ``default_collate`` of the items gives)."""
        return [from_numpy(a[indices]) for a in self._arrays]


class Subset(Dataset[T]):
    """The items of ``dataset`` at ``indices``, in that order."""

    def __init__(self, dataset: Dataset[T], indices: Sequence[int] | np.ndarray) -> None:
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(dataset)
        if self.indices.size and not (-n <= self.indices.min() and self.indices.max() < n):
            raise IndexError(f"Subset: indices must lie in [-{n}, {n}) for a dataset of length {n}, "
                             f"got range [{self.indices.min()}, {self.indices.max()}]")
        if hasattr(dataset, "fetch_batch"):
            self.fetch_batch = self._fetch_batch

    def __getitem__(self, index: int) -> T:
        return self.dataset[int(self.indices[_check_index(index, len(self), "Subset")])]

    def __len__(self) -> int:
        return int(self.indices.size)

    def _fetch_batch(self, indices: np.ndarray) -> Any:
        return self.dataset.fetch_batch(self.indices[indices])   # type: ignore[attr-defined]


class ConcatDataset(Dataset[T]):
    """The datasets one after another."""

    def __init__(self, datasets: Iterable[Dataset[T]]) -> None:
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("ConcatDataset: give at least one dataset")
        self.cumulative_sizes = np.cumsum([len(d) for d in self.datasets]).tolist()

    def __len__(self) -> int:
        return self.cumulative_sizes[-1]

    def __getitem__(self, index: int) -> T:
        i = _check_index(index, len(self), "ConcatDataset")
        k = int(np.searchsorted(self.cumulative_sizes, i, side="right"))
        start = self.cumulative_sizes[k - 1] if k else 0
        return self.datasets[k][i - start]


def _split_lengths(n: int, lengths: Sequence[int | float]) -> list[int]:
    lengths = list(lengths)
    if not lengths:
        raise ValueError("random_split: lengths must not be empty")
    if all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in lengths):
        if any(x < 0 for x in lengths):
            raise ValueError(f"random_split: lengths must be non-negative, got {lengths}")
        if sum(lengths) != n:
            raise op_error("random_split", "the lengths do not add up to the length of the dataset",
                           expect=f"sum(lengths) == {n}", actual=f"sum({lengths}) == {sum(lengths)}",
                           hint="give lengths that add up, or fractions that add up to 1", cls=ValueError)
        return [int(x) for x in lengths]
    if not all(0.0 <= float(x) <= 1.0 for x in lengths) or not math.isclose(sum(lengths), 1.0, abs_tol=1e-6):
        raise op_error("random_split", "fractions must each lie in [0, 1] and add up to 1",
                       actual=f"{lengths} (sum {sum(lengths)})", cls=ValueError)
    # torch's rule: floor each, then hand the remainder out one by one, round robin
    sizes = [int(math.floor(n * float(f))) for f in lengths]
    for i in range(n - sum(sizes)):
        sizes[i % len(sizes)] += 1
    return sizes


def random_split(dataset: Dataset[T], lengths: Sequence[int | float],
                 generator: Generator | None = None) -> list[Subset[T]]:
    """Split ``dataset`` into disjoint random subsets of the given lengths (or fractions).

    Fractions are turned into lengths as torch does (floor, then the remainder one by one).
    ``generator`` defaults to suanli's global generator, so ``suanli.manual_seed`` fixes the split.
    """
    n = len(dataset)
    sizes = _split_lengths(n, lengths)
    perm = rng(generator).permutation(n)
    out, start = [], 0
    for size in sizes:
        out.append(Subset(dataset, perm[start:start + size]))
        start += size
    return out
