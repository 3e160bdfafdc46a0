"""Tensor creation: ``tensor``, ``zeros``, ``ones``, ``full``, ``arange``, ``linspace``, ``eye``,
``*_like``, and random ``rand``/``randn``/``randint``/``randperm`` (seeded, see :mod:`suanli.random`).

>>> import suanli
>>> suanli.arange(0, 1, 0.25)
tensor([0.  , 0.25, 0.5 , 0.75])
>>> suanli.eye(2, dtype=suanli.int64)
tensor([[1, 0],
        [0, 1]])
"""
from __future__ import annotations

import operator
from typing import Any, Sequence

import numpy as np

from . import dtypes as _dt
from .errors import op_error
from .random import Generator, rng
from .tensor import Tensor, _to_array, _wrap

__all__ = ["tensor", "as_tensor", "from_numpy", "zeros", "ones", "full", "empty", "arange", "linspace",
           "eye", "zeros_like", "ones_like", "full_like", "empty_like", "rand", "randn", "randint",
           "rand_like", "randn_like", "randint_like", "randperm", "normal", "Tensor"]


def _shape(size: Sequence[Any]) -> tuple[int, ...]:
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    try:
        shape = tuple(operator.index(s) for s in size)   # 2.5 is an error, not 2 (as in torch)
    except TypeError:
        raise op_error("size", "sizes must be integers", actual=f"{size!r}", cls=TypeError) from None  # type: ignore[arg-type]
    if any(s < 0 for s in shape):
        raise op_error("size", "sizes must be non-negative", actual=str(shape), cls=ValueError)  # type: ignore[arg-type]
    return shape


def _finish(arr: np.ndarray, requires_grad: bool) -> Tensor:
    t = _wrap(arr)
    if requires_grad:
        t.requires_grad = True
    return t


def _float_or(dtype: Any) -> np.dtype:
    return _dt.get_default_dtype() if dtype is None else _dt.as_dtype(dtype)


def tensor(data: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """A new tensor (always a copy) from nested lists, scalars, arrays or tensors.

    Python floats become float32 (the default dtype), ints int64, bools bool -- as in torch.
    """
    return _finish(_to_array(data, dtype), requires_grad)


def as_tensor(data: Any, dtype: Any = None, device: Any = None) -> Tensor:
    """Like :func:`tensor`, but a Tensor of the right dtype is returned as is (no copy)."""
    if isinstance(data, Tensor) and (dtype is None or data.dtype == _dt.as_dtype(dtype)):
        return data
    return tensor(data, dtype)


def from_numpy(array: np.ndarray) -> Tensor:
    """Wrap ``array`` without copying (memory is shared, as in torch)."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy: expected np.ndarray, got {type(array).__name__}")
    _dt.as_dtype(array.dtype)
    return _wrap(array)


def zeros(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    return _finish(np.zeros(_shape(size), _float_or(dtype)), requires_grad)


def ones(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    return _finish(np.ones(_shape(size), _float_or(dtype)), requires_grad)


def empty(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    return _finish(np.empty(_shape(size), _float_or(dtype)), requires_grad)


def full(size: Sequence[int], fill_value: Any, *, dtype: Any = None, device: Any = None,
         requires_grad: bool = False) -> Tensor:
    """Filled with ``fill_value``; dtype follows the value (float -> default float) unless given."""
    d = _dt.as_dtype(dtype) if dtype is not None else _dt.scalar_dtype(fill_value)
    return _finish(np.full(_shape((size,) if isinstance(size, int) else tuple(size)), fill_value, d),
                   requires_grad)


def arange(start: Any, end: Any = None, step: Any = 1, *, dtype: Any = None, device: Any = None,
           requires_grad: bool = False) -> Tensor:
    """Values in ``[start, end)`` by ``step``; int64 if all arguments are ints, else the default float."""
    if end is None:
        start, end = 0, start
    if step == 0:
        raise op_error("arange", "step must be nonzero", cls=ValueError)  # type: ignore[arg-type]
    if dtype is None:
        is_int = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (start, end, step))
        d = _dt.int64 if is_int else _dt.get_default_dtype()
    else:
        d = _dt.as_dtype(dtype)
    # compute in float64/int64 then cast, so float32 arange matches torch's endpoints
    n = int(np.ceil((float(end) - float(start)) / float(step)))
    arr = (start + np.arange(max(n, 0), dtype=np.float64 if d in _dt.FLOATING else np.int64) * step)
    return _finish(arr.astype(d), requires_grad)


def linspace(start: float, end: float, steps: int, *, dtype: Any = None, device: Any = None,
             requires_grad: bool = False) -> Tensor:
    if steps < 0:
        raise op_error("linspace", "steps must be non-negative", actual=str(steps), cls=ValueError)  # type: ignore[arg-type]
    return _finish(np.linspace(start, end, int(steps)).astype(_float_or(dtype)), requires_grad)


def eye(n: int, m: int | None = None, *, dtype: Any = None, device: Any = None,
        requires_grad: bool = False) -> Tensor:
    return _finish(np.eye(n, m, dtype=_float_or(dtype)), requires_grad)


def _like_dtype(t: Tensor, dtype: Any) -> np.dtype:
    return t._data.dtype if dtype is None else _dt.as_dtype(dtype)


def zeros_like(input: Tensor, *, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return _finish(np.zeros(input._data.shape, _like_dtype(input, dtype)), requires_grad)


def ones_like(input: Tensor, *, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return _finish(np.ones(input._data.shape, _like_dtype(input, dtype)), requires_grad)


def empty_like(input: Tensor, *, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return _finish(np.empty(input._data.shape, _like_dtype(input, dtype)), requires_grad)


def full_like(input: Tensor, fill_value: Any, *, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return _finish(np.full(input._data.shape, fill_value, _like_dtype(input, dtype)), requires_grad)


def _random_float(arr: np.ndarray, dtype: Any) -> np.ndarray:
    d = _float_or(dtype)
    if d not in _dt.FLOATING:
        raise op_error("rand", "random floats need a floating dtype", actual=str(d), cls=TypeError)  # type: ignore[arg-type]
    return arr.astype(d, copy=False)


def rand(*size: Any, generator: Generator | None = None, dtype: Any = None, device: Any = None,
         requires_grad: bool = False) -> Tensor:
    """Uniform on ``[0, 1)``."""
    d = _float_or(dtype)
    sample_dtype = np.float32 if d == _dt.float32 else np.float64
    return _finish(_random_float(rng(generator).random(_shape(size), dtype=sample_dtype), d), requires_grad)


def randn(*size: Any, generator: Generator | None = None, dtype: Any = None, device: Any = None,
          requires_grad: bool = False) -> Tensor:
    """Standard normal."""
    d = _float_or(dtype)
    sample_dtype = np.float32 if d == _dt.float32 else np.float64
    return _finish(_random_float(rng(generator).standard_normal(_shape(size), dtype=sample_dtype), d),
                   requires_grad)


def randint(low: int, high: int | None = None, size: Sequence[int] = (), *,
            generator: Generator | None = None, dtype: Any = None, device: Any = None) -> Tensor:
    """Integers in ``[low, high)`` (int64 unless ``dtype``); ``randint(high, size)`` also works."""
    if high is None:
        low, high = 0, low
    if isinstance(high, (tuple, list)):   # randint(high, size) form
        low, high, size = 0, low, high
    if high <= low:
        raise op_error("randint", "high must be greater than low", actual=f"low={low}, high={high}",
                       cls=ValueError)  # type: ignore[arg-type]
    d = _dt.int64 if dtype is None else _dt.as_dtype(dtype)
    return _wrap(rng(generator).integers(low, high, size=_shape((tuple(size),))).astype(d))


def randperm(n: int, *, generator: Generator | None = None, dtype: Any = None) -> Tensor:
    d = _dt.int64 if dtype is None else _dt.as_dtype(dtype)
    return _wrap(rng(generator).permutation(int(n)).astype(d))


def rand_like(input: Tensor, *, generator: Generator | None = None, dtype: Any = None) -> Tensor:
    return rand(input._data.shape, generator=generator, dtype=_like_dtype(input, dtype))


def randn_like(input: Tensor, *, generator: Generator | None = None, dtype: Any = None) -> Tensor:
    return randn(input._data.shape, generator=generator, dtype=_like_dtype(input, dtype))


def randint_like(input: Tensor, low: int, high: int | None = None, *,
                 generator: Generator | None = None, dtype: Any = None) -> Tensor:
    return randint(low, high, input._data.shape, generator=generator, dtype=_like_dtype(input, dtype))


def normal(mean: float, std: float, size: Sequence[int], *, generator: Generator | None = None,
           dtype: Any = None) -> Tensor:
    return _wrap((mean + std * rng(generator).standard_normal(_shape((tuple(size),)))).astype(_float_or(dtype)))
