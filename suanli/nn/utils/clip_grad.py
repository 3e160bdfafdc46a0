"""Gradient clipping: by total norm (``clip_grad_norm_``) and by value (``clip_grad_value_``).

Same results as ``torch.nn.utils``: the total norm is the norm of the per-tensor norms, and the
gradients are scaled by ``min(1, max_norm / (total_norm + 1e-6))``. The gradients are modified in
place (their version counters are bumped like any in-place op).

>>> import suanli
>>> from suanli.nn.utils import clip_grad_norm_
>>> w = suanli.zeros(2, requires_grad=True)
>>> w.grad = suanli.tensor([3.0, 4.0])
>>> clip_grad_norm_([w], max_norm=1.0)
tensor(5.)
>>> w.grad
tensor([0.6, 0.8])
"""
from __future__ import annotations

import math
import types
import warnings
from typing import Iterable, Union

import numpy as np

from ... import dtypes as _dt
from ...errors import op_error
from ...tensor import Tensor, _wrap

__all__ = ["clip_grad_norm_", "clip_grad_value_", "get_total_norm", "clip_grads_with_norm_"]

TensorOrTensors = Union[Tensor, Iterable[Tensor]]


def _as_list(tensors: TensorOrTensors, where: str) -> list[Tensor]:
    if isinstance(tensors, Tensor):
        return [tensors]
    is_generator = isinstance(tensors, types.GeneratorType)
    out = list(tensors)
    if is_generator and not out:
        warnings.warn(f"{where}: `parameters` is an empty generator, no gradient clipping will occur.",
                      stacklevel=3)
    for i, t in enumerate(out):
        if not isinstance(t, Tensor):
            raise TypeError(f"{where}: expected Tensors, item {i} is a {type(t).__name__}")
    return out


def _norm_dtype(arrays: list[np.ndarray]) -> np.dtype:
    """The dtype of the total norm: the grads' promoted dtype, at least float32 (a float16 norm
    overflows at 65504)."""
    dtype = np.result_type(*[a.dtype if a.dtype not in _dt.HALF else np.float32 for a in arrays])
    return np.promote_types(dtype, np.float32)


def _vector_norm(a: np.ndarray, p: float) -> np.floating:
    """||a||_p of a flattened array (p may be inf, -inf or 0: max, min of |a|, count of non-zeros)."""
    if a.size == 0:
        return a.dtype.type(0.0)
    if p == 2.0:
        flat = a.reshape(-1)
        return np.sqrt(np.dot(flat, flat))
    if p == math.inf:
        return np.max(np.abs(a))
    if p == -math.inf:
        return np.min(np.abs(a))
    if p == 1.0:
        return np.sum(np.abs(a))
    if p == 0.0:
        return a.dtype.type(np.count_nonzero(a))
    return np.sum(np.abs(a) ** p) ** (1.0 / p)


def get_total_norm(tensors: TensorOrTensors, norm_type: float = 2.0, error_if_nonfinite: bool = False,
                   foreach: bool | None = None) -> Tensor:
    """The ``norm_type`` norm of all ``tensors`` together (the norm of their norms), as a 0-d tensor.

    >>> import suanli
    >>> get_total_norm([suanli.tensor([3.0]), suanli.tensor([-4.0])], norm_type=float("inf"))
    tensor(4.)
    """
    tensors = _as_list(tensors, "get_total_norm")
    norm_type = float(norm_type)
    if not tensors:
        return _wrap(np.array(0.0, dtype=_dt.get_default_dtype()))
    arrays = [t._data for t in tensors]
    dtype = _norm_dtype(arrays)
    norms = np.array([_vector_norm(a.astype(dtype, copy=False), norm_type) for a in arrays], dtype=dtype)
    total = np.asarray(_vector_norm(norms, norm_type), dtype=dtype)
    if error_if_nonfinite and not np.isfinite(total):
        raise RuntimeError(f"The total norm of order {norm_type} for gradients from `parameters` is non-finite, "
                           f"so it cannot be clipped. To disable this error and scale the gradients by the "
                           f"non-finite norm anyway, set `error_if_nonfinite=False`")
    return _wrap(total)


def clip_grads_with_norm_(parameters: TensorOrTensors, max_norm: float, total_norm: Tensor | float,
                          foreach: bool | None = None) -> None:
    """Scale the gradients of ``parameters`` by ``min(1, max_norm / (total_norm + 1e-6))`` in place."""
    params = _as_list(parameters, "clip_grads_with_norm_")
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    total = total_norm._data if isinstance(total_norm, Tensor) else np.asarray(total_norm, dtype=np.float32)
    dtype = total.dtype.type
    coef = np.reciprocal(total + dtype(1e-6)) * dtype(float(max_norm))     # torch: max_norm / t
    coef = np.minimum(coef, dtype(1.0))
    if coef >= 1.0:             # multiplying by exactly 1 would change nothing
        return
    for g in grads:
        np.multiply(g._data, coef, out=g._data, casting="unsafe")
        g._vc[0] += 1


def clip_grad_norm_(parameters: TensorOrTensors, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False, foreach: bool | None = None) -> Tensor:
    """Rescale the gradients of ``parameters`` so that their total ``norm_type`` norm is at most
    ``max_norm``; return the total norm *before* clipping (a 0-d tensor).

    ``parameters``: a tensor or an iterable of tensors (those without ``.grad`` are ignored).
    ``norm_type``: 2 (default), 1, ``float('inf')`` or any p. ``error_if_nonfinite``: raise if the norm
    is inf/NaN (otherwise the gradients become NaN, as in torch). ``foreach`` is accepted and ignored.
    The norm of float16/bfloat16 gradients is computed (and returned) in float32.

    >>> import suanli
    >>> w = suanli.zeros(2, requires_grad=True)
    >>> w.grad = suanli.tensor([1.0, -3.0])
    >>> clip_grad_norm_(w, max_norm=1.0, norm_type=1)
    tensor(4.)
    >>> w.grad
    tensor([ 0.25, -0.75])
    """
    params = _as_list(parameters, "clip_grad_norm_")
    grads = [p.grad for p in params if p.grad is not None]
    total = get_total_norm(grads, norm_type, error_if_nonfinite, foreach)
    clip_grads_with_norm_(params, max_norm, total, foreach)
    return total


def clip_grad_value_(parameters: TensorOrTensors, clip_value: float, foreach: bool | None = None) -> None:
    """Clamp every gradient of ``parameters`` into ``[-clip_value, clip_value]`` in place.

    >>> import suanli
    >>> w = suanli.zeros(3, requires_grad=True)
    >>> w.grad = suanli.tensor([-2.0, 0.5, 9.0])
    >>> clip_grad_value_([w], 1.0)
    >>> w.grad
    tensor([-1. ,  0.5,  1. ])
    """
    clip_value = float(clip_value)
    if clip_value < 0:
        raise op_error("clip_grad_value_", f"clip_value must be >= 0, got {clip_value}",
                       cls=ValueError)  # type: ignore[arg-type]
    for p in _as_list(parameters, "clip_grad_value_"):
        g = p.grad
        if g is not None:
            np.clip(g._data, -clip_value, clip_value, out=g._data)
            g._vc[0] += 1
