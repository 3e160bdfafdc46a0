"""Elementwise primitives (unary, binary with broadcasting, casts) and their public functions.

Each primitive: NumPy impl, shape/dtype rule, VJP and JVP written with suanli ops.
Public functions promote dtypes the PyTorch way, then call :func:`apply`.

>>> import suanli
>>> x = suanli.tensor([1.0, 2.0])
>>> (x + 1) * 2
tensor([4., 6.])
>>> suanli.tensor([1, 2]) / 2
tensor([0.5000, 1.    ])
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import dtypes as _dt
from ..errors import DTypeError, op_error
from ..tensor import Tensor
from ._helpers import add_tangents, infer_broadcast, infer_float_unary, infer_same, promote
from .registry import Spec, apply, defprim, other_inputs, tensor_method

__all__ = ["add", "sub", "mul", "div", "true_divide", "neg", "exp", "cast", "clone"]


def _binary(prim, a: Any, b: Any) -> Tensor:
    """Fast path for two same-dtype tensors; otherwise torch promotion first."""
    if type(a) is Tensor and type(b) is Tensor and a._data.dtype is b._data.dtype:
        return apply(prim, a, b)
    return apply(prim, *promote(a, b))


# ------------------------------------------------------------------------------------ add / sub
def _add_vjp(ctx, g):
    return g, g


def _add_jvp(ctx, t):
    return add_tangents(*t)


ADD = defprim("add", np.add, infer_broadcast("add"), vjp=_add_vjp, jvp=_add_jvp, save_inputs=False)


def _sub_vjp(ctx, g):
    return g, (neg(g) if ctx.needs[1] else None)


def _sub_jvp(ctx, t):
    tx, ty = t
    if ty is None:
        return tx
    return neg(ty) if tx is None else tx - ty


SUB = defprim("sub", np.subtract, infer_broadcast("sub"), vjp=_sub_vjp, jvp=_sub_jvp, save_inputs=False)


@tensor_method(names=["add", "__add__"])
def add(input: Any, other: Any, *, alpha: Any = 1) -> Tensor:
    """``input + alpha * other`` with broadcasting and torch type promotion."""
    if alpha != 1:
        other = mul(other, alpha)
    return _binary(ADD, input, other)


@tensor_method(names=["sub", "subtract", "__sub__"])
def sub(input: Any, other: Any, *, alpha: Any = 1) -> Tensor:
    """``input - alpha * other``."""
    if alpha != 1:
        other = mul(other, alpha)
    return _binary(SUB, input, other)


@tensor_method("__radd__")
def _radd(self: Tensor, other: Any) -> Tensor:
    return _binary(ADD, other, self)


@tensor_method("__rsub__")
def _rsub(self: Tensor, other: Any) -> Tensor:
    return _binary(SUB, other, self)


# ------------------------------------------------------------------------------------ mul / div
def _mul_vjp(ctx, g):
    x, y = ctx.inputs
    return (g * y if ctx.needs[0] else None, g * x if ctx.needs[1] else None)


def _mul_jvp(ctx, t):
    x, y = ctx.inputs
    tx, ty = t
    return add_tangents(None if tx is None else tx * y, None if ty is None else x * ty)


MUL = defprim("mul", np.multiply, infer_broadcast("mul"), vjp=_mul_vjp, jvp=_mul_jvp,
              saved_inputs=other_inputs)


def _div_saved(needs):
    return (0, 1) if needs[1] else (1,)


def _div_vjp(ctx, g):
    x, y = ctx.inputs
    gx = g / y if ctx.needs[0] else None
    gy = neg(g * x / (y * y)) if ctx.needs[1] else None
    return gx, gy


def _div_jvp(ctx, t):
    x, y = ctx.inputs
    tx, ty = t
    return add_tangents(None if tx is None else tx / y,
                        None if ty is None else neg(ty * x / (y * y)))


def _div_impl(x, y):
    with np.errstate(divide="ignore", invalid="ignore"):  # torch gives inf/nan silently too
        return np.true_divide(x, y)


def _infer_div(x: Spec, y: Spec, **attrs) -> Spec:
    s = infer_broadcast("div")(x, y)
    if s.dtype not in _dt.FLOATING:
        raise op_error("div", "the primitive divides floats; the public function promotes ints",
                       actual=f"{s.dtype}", cls=DTypeError)
    return s


DIV = defprim("div", _div_impl, _infer_div, vjp=_div_vjp, jvp=_div_jvp, saved_inputs=_div_saved)


@tensor_method(names=["mul", "multiply", "__mul__"])
def mul(input: Any, other: Any) -> Tensor:
    """Elementwise product with broadcasting."""
    return _binary(MUL, input, other)


@tensor_method("__rmul__")
def _rmul(self: Tensor, other: Any) -> Tensor:
    return _binary(MUL, other, self)


@tensor_method(names=["div", "divide", "true_divide", "__truediv__"])
def div(input: Any, other: Any, *, rounding_mode: str | None = None) -> Tensor:
    """True division (integers give the default float dtype, as in torch).

    ``rounding_mode='floor'|'trunc'`` rounds the quotient (no gradient through the rounding).
    """
    if (type(input) is Tensor and type(other) is Tensor and input._data.dtype is other._data.dtype
            and input._data.dtype in _dt.FLOATING):
        q = apply(DIV, input, other)
    else:
        q = apply(DIV, *promote(input, other, float_result=True))
    if rounding_mode is None:
        return q
    from . import elementwise as _ew
    if rounding_mode not in ("floor", "trunc"):
        raise op_error("div", f"unknown rounding_mode {rounding_mode!r}", expect="None, 'floor' or 'trunc'",
                       cls=ValueError)  # type: ignore[arg-type]
    rounded = getattr(_ew, rounding_mode)(q)
    target = _dt.result_type(input, other)
    return rounded if target in _dt.FLOATING else cast(rounded, target)


true_divide = div


@tensor_method("__rtruediv__")
def _rdiv(self: Tensor, other: Any) -> Tensor:
    return div(other, self)


# ------------------------------------------------------------------------------------ neg / exp
def _neg_vjp(ctx, g):
    return (neg(g),)


def _neg_jvp(ctx, t):
    return neg(t[0])


def _infer_neg(x: Spec, **attrs) -> Spec:
    if x.dtype == _dt.bool_:
        raise op_error("neg", "negation of a bool tensor is not supported", actual=str(x.shape),
                       hint="use logical_not / ~x", cls=DTypeError)
    return Spec(tuple(x.shape), x.dtype)


NEG = defprim("neg", np.negative, _infer_neg, vjp=_neg_vjp, jvp=_neg_jvp, save_inputs=False)


@tensor_method(names=["neg", "negative", "__neg__"])
def neg(input: Tensor) -> Tensor:
    """``-input``."""
    return apply(NEG, input)


def _float_input(x: Any) -> Tensor:
    """Unary float math on an int tensor computes in the default float dtype (as torch does)."""
    if type(x) is Tensor and x._data.dtype in _dt.FLOATING:
        return x
    x = promote(x)[0]
    return x if x._data.dtype in _dt.FLOATING else cast(x, _dt.get_default_dtype())


def _exp_vjp(ctx, g):
    return (g * ctx.out,)


def _exp_jvp(ctx, t):
    return t[0] * ctx.out


EXP = defprim("exp", np.exp, infer_float_unary("exp"), vjp=_exp_vjp, jvp=_exp_jvp,
              save_inputs=False, save_output=True)


@tensor_method
def exp(input: Tensor) -> Tensor:
    """``e ** input``."""
    return apply(EXP, _float_input(input))


# ------------------------------------------------------------------------------------ cast / copy
def _cast_impl(x, *, dtype):
    return x.astype(dtype)


def _infer_cast(x: Spec, *, dtype) -> Spec:
    return Spec(tuple(x.shape), dtype)


def _cast_vjp(ctx, g):
    return (cast(g, ctx.inputs[0]._data.dtype),)


def _cast_jvp(ctx, t):
    return cast(t[0], ctx.attrs["dtype"])


CAST = defprim("cast", _cast_impl, _infer_cast, vjp=_cast_vjp, jvp=_cast_jvp, save_inputs=False,
               upcast_half=False)


def cast(x: Tensor, dtype: Any) -> Tensor:
    """Convert to ``dtype`` (differentiable between float dtypes; identity if already that dtype)."""
    dtype = _dt.as_dtype(dtype)
    if x._data.dtype == dtype:
        return x
    out = apply(CAST, x, dtype=dtype)
    if dtype not in _dt.FLOATING and out._requires_grad:   # ints carry no gradient
        out._node, out._requires_grad = None, False
    return out


def _copy_impl(x):
    return np.array(x, copy=True)


def _copy_vjp(ctx, g):
    return (g,)


def _copy_jvp(ctx, t):
    return t[0]


COPY = defprim("copy", _copy_impl, infer_same, vjp=_copy_vjp, jvp=_copy_jvp, save_inputs=False,
               upcast_half=False)


@tensor_method
def clone(input: Tensor) -> Tensor:
    """A copy with its own storage; gradients flow through unchanged."""
    return apply(COPY, input)


@tensor_method
def contiguous(input: Tensor) -> Tensor:
    """``input`` itself if C-contiguous, else a contiguous copy."""
    return input if input._data.flags.c_contiguous else apply(COPY, input)
