"""Character-level text: a vocabulary, encode/decode, (x, y) blocks and nanoGPT-style random batches.

>>> from suanli.data import CharDataset
>>> ds = CharDataset("hello world, hello suanli", block_size=4, val_fraction=0.2)
>>> ds.decode(ds.encode("hello")), ds.vocab_size
('hello', 14)
>>> x, y = ds[0]
>>> ds.decode(x), ds.decode(y)
('hell', 'ello')
>>> import suanli
>>> xb, yb = ds.get_batch("train", 3, generator=suanli.Generator(0))
>>> xb.shape, yb.dtype
((3, 4), dtype('int64'))
"""
from __future__ import annotations

import os
from typing import Iterable

import numpy as np

from ..creation import from_numpy
from ..errors import op_error
from ..random import Generator, rng
from ..tensor import Tensor
from .dataset import Dataset, _check_index

__all__ = ["CharDataset", "load_shakespeare"]


def _codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype="<u4")


class CharDataset(Dataset[tuple[Tensor, Tensor]]):
    """Blocks of ``block_size`` characters of ``text``: item ``i`` is ``(x, y)``, int64, ``y`` = ``x`` shifted by one.

    The vocabulary is every distinct character of the whole text, sorted (nanoGPT's ``stoi``/``itos``)
    unless ``chars`` is given. The first ``1 - val_fraction`` of the text is the ``'train'`` split, the
    rest ``'val'``; items come from ``split``, while :meth:`get_batch` can draw from either.
    """

    def __init__(self, text: str, block_size: int, *, split: str = "train", val_fraction: float = 0.1,
                 chars: Iterable[str] | None = None) -> None:
        if not isinstance(text, str) or not text:
            raise ValueError("CharDataset: text must be a non-empty str")
        if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 1:
            raise ValueError(f"CharDataset: block_size must be a positive int, got {block_size!r}")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"CharDataset: val_fraction must lie in [0, 1), got {val_fraction}")
        if split not in ("train", "val"):
            raise ValueError(f"CharDataset: split must be 'train' or 'val', got {split!r}")
        vocab = sorted(set(text)) if chars is None else list(chars)
        if len(set(vocab)) != len(vocab) or not all(isinstance(c, str) and len(c) == 1 for c in vocab):
            raise ValueError("CharDataset: chars must be distinct single characters")
        self.chars: list[str] = vocab
        self.stoi: dict[str, int] = {c: i for i, c in enumerate(vocab)}
        self.itos: dict[int, str] = dict(enumerate(vocab))
        self._cp = _codepoints("".join(vocab))          # code point of each token id
        self._cp_order = np.argsort(self._cp)
        data = self._encode_array(text)
        n = int(len(data) * (1.0 - val_fraction))
        self.block_size = int(block_size)
        self.split = split
        self.data = {"train": data[:n], "val": data[n:]}
        if len(self.data[split]) <= self.block_size:
            raise op_error("CharDataset", f"the {split!r} split is too short for one block",
                           expect=f"more than block_size={block_size} characters",
                           actual=f"{len(self.data[split])} characters ({len(text)} in all, "
                                  f"val_fraction={val_fraction})", cls=ValueError)

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def _encode_array(self, text: str) -> np.ndarray:
        cp = _codepoints(text)
        sorted_cp = self._cp[self._cp_order]
        pos = np.searchsorted(sorted_cp, cp).clip(0, len(sorted_cp) - 1)
        bad = sorted_cp[pos] != cp
        if bad.any():
            unknown = sorted({chr(c) for c in cp[bad]})
            raise ValueError(f"CharDataset.encode: characters {unknown[:10]} are not in the vocabulary "
                             f"({len(self.chars)} characters)")
        return self._cp_order[pos].astype(np.int64)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``."""
        return self._encode_array(text).tolist()

    def decode(self, ids: Iterable[int] | Tensor | np.ndarray) -> str:
        """The text of ``ids`` (a list, array or 1-d tensor of token ids)."""
        arr = np.asarray(ids).reshape(-1) if isinstance(ids, (Tensor, np.ndarray)) else np.asarray(list(ids))
        if arr.size and (arr.min() < 0 or arr.max() >= len(self.chars)):
            raise ValueError(f"CharDataset.decode: ids must lie in [0, {len(self.chars)}), got range "
                             f"[{arr.min()}, {arr.max()}]")
        return "".join(self.chars[i] for i in arr.tolist())

    def __len__(self) -> int:
        return len(self.data[self.split]) - self.block_size

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        i = _check_index(index, len(self), "CharDataset")
        chunk = self.data[self.split][i:i + self.block_size + 1]
        return from_numpy(chunk[:-1].copy()), from_numpy(chunk[1:].copy())

    def _blocks(self, data: np.ndarray, starts: np.ndarray) -> list[Tensor]:
        idx = starts[:, None] + np.arange(self.block_size)            # (B, T)
        return [from_numpy(data[idx]), from_numpy(data[idx + 1])]

    def fetch_batch(self, indices: np.ndarray) -> list[Tensor]:
        """``[x (B, T), y (B, T)]`` for item ``indices`` (the DataLoader fast path)."""
        return self._blocks(self.data[self.split], np.asarray(indices, dtype=np.int64))

    def get_batch(self, split: str, batch_size: int, generator: Generator | None = None
                  ) -> tuple[Tensor, Tensor]:
        """``batch_size`` blocks at random offsets of ``split`` (nanoGPT's ``get_batch``): x, y (B, T) int64."""
        if split not in self.data:
            raise ValueError(f"CharDataset.get_batch: split must be 'train' or 'val', got {split!r}")
        data = self.data[split]
        if len(data) <= self.block_size:
            raise op_error("CharDataset.get_batch", f"the {split!r} split is too short for one block",
                           actual=f"{len(data)} characters, block_size={self.block_size}", cls=ValueError)
        starts = rng(generator).integers(0, len(data) - self.block_size, size=int(batch_size))
        x, y = self._blocks(data, starts)
        return x, y

    def __repr__(self) -> str:
        return (f"CharDataset(split={self.split!r}, n={len(self)}, block_size={self.block_size}, "
                f"vocab_size={self.vocab_size})")


def load_shakespeare(path: str | os.PathLike[str]) -> str:
    """The text of Tiny Shakespeare (``input.txt`` of karpathy/char-rnn) at ``path``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load_shakespeare: {path}: no such file; expected the Tiny Shakespeare "
                                f"input.txt (data/tinyshakespeare/input.txt of karpathy/char-rnn)")
    with open(path, encoding="utf-8") as f:
        return f.read()
