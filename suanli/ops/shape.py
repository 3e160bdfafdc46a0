"""Shape primitives (reshape, permute, expand, slicing, cat, pad, flip...) and composites.

>>> import suanli
>>> suanli.arange(6).reshape(2, 3).shape
(2, 3)
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ..errors import op_error
from ..tensor import Tensor
from ._helpers import broadcast_shapes, sum_to
from .registry import Spec, apply, defprim, tensor_method

__all__ = ["reshape", "expand", "broadcast_to"]


def _shape_arg(shape: Sequence[Any]) -> tuple[int, ...]:
    """Accept ``f(2, 3)`` and ``f((2, 3))`` alike."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = shape[0]
    return tuple(int(s) for s in shape)


# ------------------------------------------------------------------------------------ reshape
def resolve_shape(op: str, in_shape: tuple[int, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    """Fill in one ``-1`` and check the element count, with an error naming both shapes."""
    size = math.prod(in_shape)
    if shape.count(-1) > 1:
        raise op_error(op, "only one dimension can be -1", actual=f"shape {shape}")
    if -1 in shape:
        known = math.prod(s for s in shape if s != -1)
        if known == 0 or size % known:
            raise op_error(op, "cannot infer the -1 dimension",
                           actual=f"input {in_shape} ({size} elements) into {shape}")
        shape = tuple(size // known if s == -1 else s for s in shape)
    if any(s < 0 for s in shape) or math.prod(shape) != size:
        raise op_error(op, "the number of elements must not change",
                       expect=f"{size} elements (input shape {in_shape})",
                       actual=f"shape {shape} has {math.prod(shape)} elements")
    return shape


def _reshape_impl(x, *, shape):
    return np.reshape(x, shape)


def _infer_reshape(x: Spec, *, shape) -> Spec:
    return Spec(resolve_shape("reshape", tuple(x.shape), tuple(shape)), x.dtype)


def _reshape_vjp(ctx, g):
    return (reshape(g, ctx.inputs[0]._data.shape),)


def _reshape_jvp(ctx, t):
    return reshape(t[0], ctx.out._data.shape)


RESHAPE = defprim("reshape", _reshape_impl, _infer_reshape, vjp=_reshape_vjp, jvp=_reshape_jvp,
                  view=True, save_inputs=False, upcast_half=False)


@tensor_method(names=["reshape", "view"])
def reshape(input: Tensor, *shape: Any) -> Tensor:
    """Same elements in a new shape (one dim may be -1). ``view`` is an alias."""
    shape = resolve_shape("reshape", input._data.shape, _shape_arg(shape))
    if shape == input._data.shape:
        return input
    return apply(RESHAPE, input, shape=shape)


# ------------------------------------------------------------------------------------ expand
def _expand_impl(x, *, shape):
    return np.broadcast_to(x, shape)


def _infer_expand(x: Spec, *, shape) -> Spec:
    out = broadcast_shapes("expand", tuple(x.shape), tuple(shape))
    if out != tuple(shape):
        raise op_error("expand", "the input cannot be expanded to this shape",
                       expect=f"input dims equal to the target or 1", actual=f"{tuple(x.shape)} -> {tuple(shape)}")
    return Spec(out, x.dtype)


def _expand_vjp(ctx, g):
    return (sum_to(g, ctx.inputs[0]._data.shape),)


def _expand_jvp(ctx, t):
    return expand(t[0], ctx.attrs["shape"])


EXPAND = defprim("expand", _expand_impl, _infer_expand, vjp=_expand_vjp, jvp=_expand_jvp,
                 view=True, save_inputs=False, upcast_half=False)


@tensor_method
def expand(input: Tensor, *shape: Any) -> Tensor:
    """Broadcast to ``shape`` without copying (``-1`` keeps a dimension)."""
    shape = _shape_arg(shape)
    lead = len(shape) - input._data.ndim
    shape = tuple(input._data.shape[i - lead] if s == -1 and i >= lead else s for i, s in enumerate(shape))
    _infer_expand(Spec(input._data.shape, input._data.dtype), shape=shape)
    if shape == input._data.shape:
        return input
    return apply(EXPAND, input, shape=shape)


def broadcast_to(input: Tensor, shape: Sequence[int]) -> Tensor:
    """``expand`` with torch's ``broadcast_to`` signature."""
    return expand(input, tuple(shape))
