"""The 8x8 handwritten digits that ship with suanli (UCI optdigits test set, see ``files/README.md``).

1797 images, pixels 0..16, labels 0..9 -- real handwriting with no download, for the demo and tests.
:func:`upsample` enlarges them to LeNet-5's 32x32 input.

>>> from suanli.data import load_digits, Digits
>>> images, labels = load_digits()
>>> images.shape, images.dtype, labels.shape, labels.dtype
((1797, 1, 8, 8), dtype('float32'), (1797,), dtype('int64'))
>>> ds = Digits(size=32, split="train")
>>> x, y = ds[0]
>>> x.shape, len(ds)
((1, 32, 32), 1437)
"""
from __future__ import annotations

import functools
import gzip
import os
import numpy as np

from ..creation import from_numpy
from ..errors import op_error
from ..tensor import Tensor
from .dataset import TensorDataset

__all__ = ["load_digits", "upsample", "Digits", "DIGITS_PATH"]

DIGITS_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "files", "digits.csv.gz")
_N_TRAIN = 1437          # the first 80% of the rows are the "train" split, the last 360 "test"


@functools.lru_cache(maxsize=1)
def _read(path: str) -> tuple[np.ndarray, np.ndarray]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load_digits: {path}: no such file (it ships inside the suanli package; "
                                f"reinstall suanli)")
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
    if table.shape[1] != 65:
        raise ValueError(f"load_digits: {path}: expected 65 columns (64 pixels + label), got {table.shape[1]}")
    pixels, labels = table[:, :64], table[:, 64]
    if pixels.min() < 0 or pixels.max() > 16 or labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"load_digits: {path}: pixels must lie in 0..16 and labels in 0..9")
    images = (pixels.astype(np.float32) / np.float32(16)).reshape(-1, 1, 8, 8)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def load_digits(path: str | os.PathLike[str] | None = None) -> tuple[Tensor, Tensor]:
    """Images float32 (N, 1, 8, 8) scaled to [0, 1] and labels int64 (N,) (fresh copies)."""
    images, labels = _read(os.fspath(path) if path is not None else DIGITS_PATH)
    return from_numpy(images.copy()), from_numpy(labels.copy())


def _bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of torch's ``interpolate(mode='bilinear', align_corners=False)`` on one axis."""
    scale = n_in / n_out
    src = np.maximum((np.arange(n_out) + 0.5) * scale - 0.5, 0.0)
    lo = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    w_hi = (src - lo).astype(np.float64)
    m = np.zeros((n_out, n_in))
    np.add.at(m, (np.arange(n_out), lo), 1.0 - w_hi)
    np.add.at(m, (np.arange(n_out), hi), w_hi)
    return m


def upsample(images: Tensor | np.ndarray, factor: int = 4, mode: str = "bilinear") -> Tensor:
    """Enlarge (N, C, H, W) images ``factor`` times: ``'nearest'`` (repeat pixels) or ``'bilinear'``.

    ``'bilinear'`` matches ``torch.nn.functional.interpolate(..., mode='bilinear',
    align_corners=False)``. The result is a new float32 tensor.

    >>> import numpy as np
    >>> upsample(np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2), 2, "nearest").numpy()[0, 0]
    array([[0., 0., 1., 1.],
           [0., 0., 1., 1.],
           [2., 2., 3., 3.],
           [2., 2., 3., 3.]], dtype=float32)
    """
    x = np.asarray(images, dtype=np.float32)
    if x.ndim != 4:
        raise op_error("upsample", "expects a batch of images", expect="shape (N, C, H, W)",
                       actual=f"shape {x.shape}")
    if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor < 1:
        raise ValueError(f"upsample: factor must be a positive int, got {factor!r}")
    if mode == "nearest":
        return from_numpy(np.ascontiguousarray(x.repeat(factor, axis=2).repeat(factor, axis=3)))
    if mode == "bilinear":
        h, w = x.shape[2:]
        mh = _bilinear_matrix(h, h * factor).astype(np.float32)
        mw = _bilinear_matrix(w, w * factor).astype(np.float32)
        return from_numpy(np.ascontiguousarray(np.einsum("ph,nchw,qw->ncpq", mh, x, mw, optimize=True),
                                               dtype=np.float32))
    raise ValueError(f"upsample: mode must be 'nearest' or 'bilinear', got {mode!r}")


class Digits(TensorDataset):
    """The digits as a dataset of ``(image (1, size, size) float32, label int64)``.

    ``size`` is 8 (as stored) or a multiple of 8 (32 for LeNet-5), enlarged with :func:`upsample`'s
    ``mode``. ``split``: ``None`` for all 1797, ``'train'`` for the first 1437, ``'test'`` for the
    last 360 (a fixed split, so results are comparable between runs).
    """

    def __init__(self, size: int = 8, mode: str = "bilinear", split: str | None = None) -> None:
        if size % 8 or size < 8:
            raise ValueError(f"Digits: size must be a positive multiple of 8 (8, 16, 32...), got {size}")
        images, labels = _read(DIGITS_PATH)
        splits = {None: slice(None), "train": slice(0, _N_TRAIN), "test": slice(_N_TRAIN, None)}
        if split not in splits:
            raise ValueError(f"Digits: split must be None, 'train' or 'test', got {split!r}")
        images, labels = images[splits[split]], labels[splits[split]]
        x = upsample(images, size // 8, mode) if size != 8 else from_numpy(images.copy())
        super().__init__(x, from_numpy(labels.copy()))
        self.size, self.mode, self.split = size, mode, split
