"""Reduction primitives (sum, amax, prod, cumsum, argmax...) and composites (mean, var, norm...).

>>> import suanli
>>> suanli.tensor([[1.0, 2.0], [3.0, 4.0]]).sum(dim=0)
tensor([4., 6.])
"""
from __future__ import annotations

import builtins
from typing import Any

import numpy as np

from .. import dtypes as _dt
from ..tensor import Tensor
from ._helpers import normalize_axes
from .registry import Spec, apply, defprim, tensor_method

__all__ = ["sum"]


def _reduced_shape(shape: tuple[int, ...], axes: tuple[int, ...], keepdims: bool) -> tuple[int, ...]:
    if keepdims:
        return tuple(1 if i in axes else s for i, s in enumerate(shape))
    return tuple(s for i, s in enumerate(shape) if i not in axes)


def _sum_dtype(dtype: np.dtype) -> np.dtype:
    """torch: integer and bool sums accumulate in int64."""
    return _dt.int64 if dtype not in _dt.FLOATING else dtype


def _sum_impl(x, *, axes, keepdims):
    return np.sum(x, axis=axes, keepdims=keepdims, dtype=_sum_dtype(x.dtype))


def _infer_sum(x: Spec, *, axes, keepdims) -> Spec:
    return Spec(_reduced_shape(tuple(x.shape), axes, keepdims), _sum_dtype(x.dtype))


def _keepdims_grad(g: Tensor, in_shape: tuple[int, ...], axes: tuple[int, ...], keepdims: bool) -> Tensor:
    """Reshape a reduced cotangent so it broadcasts against the input."""
    from .shape import reshape
    if keepdims:
        return g
    return reshape(g, _reduced_shape(in_shape, axes, True))


def _sum_vjp(ctx, g):
    from .shape import expand
    shape = ctx.inputs[0]._data.shape
    return (expand(_keepdims_grad(g, shape, ctx.attrs["axes"], ctx.attrs["keepdims"]), shape),)


def _sum_jvp(ctx, t):
    return sum(t[0], ctx.attrs["axes"], keepdim=ctx.attrs["keepdims"])


SUM = defprim("sum", _sum_impl, _infer_sum, vjp=_sum_vjp, jvp=_sum_jvp, save_inputs=False)


@tensor_method
def sum(input: Tensor, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> Tensor:
    """Sum over ``dim`` (all dims if ``None``); ints and bools accumulate in int64, as in torch."""
    if dtype is not None:
        input = input.to(dtype)
    axes = normalize_axes("sum", dim, input._data.ndim)
    return apply(SUM, input, axes=axes, keepdims=bool(keepdim))
