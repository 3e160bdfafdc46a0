"""MNIST from the original IDX files (gzip-compressed or raw), validated as they are read.

IDX layout: two zero bytes, a type code (0x08 = uint8, ...), the number of dimensions, one big-endian
uint32 per dimension, then the values, big-endian, C order. MNIST images are ``0x00000803`` (uint8,
3 dims: N x 28 x 28) and labels ``0x00000801`` (uint8, 1 dim: N).

>>> import gzip, os, tempfile, numpy as np
>>> path = os.path.join(tempfile.mkdtemp(), "tiny-idx1-ubyte.gz")
>>> with gzip.open(path, "wb") as f:
...     _ = f.write(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 1]))
>>> read_idx(path, expect_magic=0x00000801)
array([7, 2, 1], dtype=uint8)
"""
from __future__ import annotations

import gzip
import os
import struct
import zlib
import numpy as np

from ..creation import from_numpy
from ..errors import SuanliError
from ..tensor import Tensor
from .dataset import Dataset, _check_index

__all__ = ["read_idx", "IDXError", "MNIST", "MNIST_MEAN", "MNIST_STD", "FILES"]

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081

#: IDX type code -> big-endian NumPy dtype
_IDX_TYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}

#: split -> (images file, labels file), without the optional ``.gz``
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


class IDXError(SuanliError, ValueError):
    """An IDX file that is truncated, corrupt, or not the kind of IDX file expected."""


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        head = f.read(2)
    if head != b"\x1f\x8b":                        # gzip magic; anything else is read as raw IDX
        with open(path, "rb") as f:
            return f.read()
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except EOFError:
        raise IDXError(f"read_idx: {path}: the gzip stream ends early (the download is truncated); "
                       f"fetch the file again") from None
    except (gzip.BadGzipFile, zlib.error, OSError) as exc:
        raise IDXError(f"read_idx: {path}: corrupt gzip data ({exc}); fetch the file again") from None


def read_idx(path: str | os.PathLike[str], *, expect_magic: int | None = None) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw, detected from the content) into a native-order ndarray.

    ``expect_magic`` (e.g. ``0x00000803`` for MNIST images) rejects any other kind of IDX file.
    Raises :class:`IDXError` naming the file and the problem: bad magic, a byte count that does not
    match the dimensions (truncated or padded), corrupt gzip data.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"read_idx: {path}: no such file")
    data = _read_bytes(path)
    if len(data) < 4:
        raise IDXError(f"read_idx: {path}: only {len(data)} bytes; an IDX file starts with a 4-byte magic "
                       f"number (file empty or truncated)")
    magic = struct.unpack(">I", data[:4])[0]
    if expect_magic is not None and magic != expect_magic:
        raise IDXError(f"read_idx: {path}: magic number 0x{magic:08X}, expected 0x{expect_magic:08X} "
                       f"({_describe(expect_magic)}); is this the right file?")
    zeros, code, ndim = data[0:2], data[2], data[3]
    if zeros != b"\x00\x00" or code not in _IDX_TYPES or ndim == 0:
        raise IDXError(f"read_idx: {path}: 0x{magic:08X} is not an IDX magic number (expected 0x0000TTDD "
                       f"with type TT in {[f'0x{c:02X}' for c in _IDX_TYPES]} and DD >= 1 dimensions)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IDXError(f"read_idx: {path}: truncated header ({len(data)} bytes, {ndim} dimensions need "
                       f"{header})")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = _IDX_TYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(data) - header
    if actual != expected:
        problem = "truncated" if actual < expected else "has trailing bytes"
        raise IDXError(f"read_idx: {path}: {problem}: dimensions {tuple(shape)} of {dtype.name} need "
                       f"{expected} data bytes after the {header}-byte header, found {actual}")
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("=")) if not arr.dtype.isnative else arr.copy()


def _describe(magic: int) -> str:
    code, ndim = (magic >> 8) & 0xFF, magic & 0xFF
    kind = _IDX_TYPES.get(code)
    return f"{kind.name if kind is not None else '?'} with {ndim} dimension{'s' if ndim != 1 else ''}"


def _find(root: str, name: str) -> str | None:
    for d in (root, os.path.join(root, "MNIST", "raw"), os.path.join(root, "raw")):
        for candidate in (os.path.join(d, name), os.path.join(d, name + ".gz")):
            if os.path.isfile(candidate):
                return candidate
    return None


class MNIST(Dataset[tuple[Tensor, Tensor]]):
    """MNIST digits: item ``i`` is ``(image float32 (1, 28, 28), label int64 ())``.

    ``root`` holds the four IDX files (``train-images-idx3-ubyte[.gz]`` ...), directly or under
    ``MNIST/raw`` as torchvision lays them out. ``normalize=True`` maps pixels to
    ``(p / 255 - 0.1307) / 0.3081`` (torchvision's ``ToTensor`` + ``Normalize`` values, bit for bit);
    ``normalize=False`` gives ``p / 255`` in [0, 1]. The raw ``uint8`` images and labels are kept in
    ``.data`` (N, 28, 28) and ``.targets`` (N,); :meth:`arrays` converts them all at once.
    """

    def __init__(self, root: str | os.PathLike[str], train: bool = True, normalize: bool = True) -> None:
        root = os.fspath(root)
        self.split = "train" if train else "test"
        names = FILES[self.split]
        paths = [_find(root, n) for n in names]
        if None in paths:
            missing = [n for n, p in zip(names, paths) if p is None]
            raise FileNotFoundError(
                f"MNIST: missing {', '.join(missing)} (or the same with .gz) for the {self.split} split.\n"
                f"  looked in: {root}, {os.path.join(root, 'MNIST', 'raw')}, {os.path.join(root, 'raw')}\n"
                f"  expected files: {', '.join(n + '[.gz]' for pair in FILES.values() for n in pair)}\n"
                f"  help: download the four IDX files of http://yann.lecun.com/exdb/mnist/ into {root}")
        images = read_idx(paths[0], expect_magic=0x00000803)
        labels = read_idx(paths[1], expect_magic=0x00000801)
        if images.shape[1:] != (28, 28):
            raise IDXError(f"MNIST: {paths[0]}: images are {images.shape[1:]}, expected 28 x 28")
        if len(images) != len(labels):
            raise IDXError(f"MNIST: {len(images)} images in {paths[0]} but {len(labels)} labels in {paths[1]}")
        if labels.size and labels.max() > 9:
            raise IDXError(f"MNIST: {paths[1]}: labels must be 0..9, found {int(labels.max())}")
        self.root, self.normalize, self.files = root, normalize, tuple(paths)
        self.data: np.ndarray = images                    # uint8 (N, 28, 28)
        self.targets: np.ndarray = labels.astype(np.int64)
        # one float32 value per possible pixel byte, computed the way torchvision does
        table = np.arange(256, dtype=np.float32) / np.float32(255)
        if normalize:
            table = (table - np.float32(MNIST_MEAN)) / np.float32(MNIST_STD)
        self._table = table

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        i = _check_index(index, len(self), "MNIST")
        return from_numpy(self._table[self.data[i]][None]), from_numpy(np.asarray(self.targets[i]))

    def fetch_batch(self, indices: np.ndarray) -> list[Tensor]:
        """Images (B, 1, 28, 28) float32 and labels (B,) int64 for ``indices`` (the DataLoader fast path)."""
        return [from_numpy(self._table[self.data[indices]][:, None]), from_numpy(self.targets[indices])]

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """All images as float32 (N, 1, 28, 28) and labels as int64 (N,)."""
        return self._table[self.data][:, None], self.targets

    def __repr__(self) -> str:
        return f"MNIST(split={self.split!r}, n={len(self)}, normalize={self.normalize}, root={self.root!r})"
