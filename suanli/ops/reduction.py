"""Reduction primitives (sum, amax, prod, cumsum, argmax...) and composites (mean, var, norm...).

>>> import suanli
>>> suanli.tensor([[1.0, 2.0], [3.0, 4.0]]).sum(dim=0)
tensor([4., 6.])
"""
from __future__ import annotations

import builtins
from typing import Any, NamedTuple

import numpy as np

from .. import dtypes as _dt
from ..errors import DTypeError, op_error
from ..tensor import Tensor, _wrap
from ._helpers import normalize_axes
from .registry import Spec, apply, defprim, tensor_method

__all__ = ["sum", "mean", "var", "std", "var_mean", "std_mean", "amax", "amin", "aminmax", "argmax", "argmin",
           "max", "min", "logsumexp", "prod", "cumsum", "norm", "all", "any", "count_nonzero"]


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


# ------------------------------------------------------------------------------------ mean / var / std
def _count(shape: tuple[int, ...], axes: tuple[int, ...]) -> int:
    n = 1
    for a in axes:
        n *= shape[a]
    return n


def _require_float(op: str, x: Tensor) -> None:
    if x._data.dtype not in _dt.FLOATING:
        raise op_error(op, "could not infer output dtype: the input is not floating point",
                       actual=f"dtype {x._data.dtype}", hint=f"convert first, e.g. x.float().{op}() "
                       f"or pass dtype=suanli.float32", cls=DTypeError)


@tensor_method
def mean(input: Tensor, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> Tensor:
    """Arithmetic mean over ``dim`` (floating inputs, as in torch)."""
    if dtype is not None:
        input = input.to(dtype)
    _require_float("mean", input)
    axes = normalize_axes("mean", dim, input._data.ndim)
    return sum(input, axes, keepdim) / _count(input._data.shape, axes)


def _correction(unbiased: Any, correction: Any) -> float:
    if correction is not None:
        return float(correction)
    if unbiased is None:
        return 1.0
    return 1.0 if unbiased else 0.0


@tensor_method
def var(input: Tensor, dim: Any = None, unbiased: Any = None, keepdim: bool = False, *,
        correction: Any = None) -> Tensor:
    """Variance with Bessel's ``correction`` (default 1; ``unbiased=False`` means 0)."""
    _require_float("var", input)
    if isinstance(dim, bool):          # torch.var(x, True) legacy form
        dim, unbiased = None, dim
    axes = normalize_axes("var", dim, input._data.ndim)
    n = _count(input._data.shape, axes)
    centered = input - mean(input, axes, keepdim=True)
    return sum(centered * centered, axes, keepdim) / builtins.max(0.0, n - _correction(unbiased, correction))


@tensor_method
def std(input: Tensor, dim: Any = None, unbiased: Any = None, keepdim: bool = False, *,
        correction: Any = None) -> Tensor:
    """Standard deviation: ``sqrt(var(...))``."""
    return var(input, dim, unbiased, keepdim, correction=correction).sqrt()


def var_mean(input: Tensor, dim: Any = None, unbiased: Any = None, keepdim: bool = False, *,
             correction: Any = None) -> tuple[Tensor, Tensor]:
    return var(input, dim, unbiased, keepdim, correction=correction), mean(input, dim, keepdim)


def std_mean(input: Tensor, dim: Any = None, unbiased: Any = None, keepdim: bool = False, *,
             correction: Any = None) -> tuple[Tensor, Tensor]:
    return std(input, dim, unbiased, keepdim, correction=correction), mean(input, dim, keepdim)


# ------------------------------------------------------------------------------------ amax / amin
def _extreme_impl(np_fn):
    def impl(x, *, axes, keepdims):
        if x.size == 0 and builtins.any(x.shape[a] == 0 for a in axes):
            raise ValueError("zero-size reduction")
        return np_fn(x, axis=axes, keepdims=keepdims)
    impl.__name__ = f"_{np_fn.__name__}_impl"
    return impl


def _infer_extreme(op: str):
    def rule(x: Spec, *, axes, keepdims) -> Spec:
        for a in axes:
            if x.shape[a] == 0:
                raise op_error(op, "cannot reduce over a zero-size dimension (no identity)",
                               actual=f"input shape {tuple(x.shape)}, dim {a}",
                               hint="reduce over a non-empty dimension")
        return Spec(_reduced_shape(tuple(x.shape), axes, keepdims), x.dtype)
    rule.__name__ = f"_infer_{op}"
    return rule


def _tie_mask(ctx) -> Tensor:
    """Where the input equals the extreme value, as a float weight that splits ties evenly."""
    from .elementwise import eq
    x = ctx.inputs[0]
    axes, keepdims = ctx.attrs["axes"], ctx.attrs["keepdims"]
    out = _keepdims_grad(ctx.out.detach(), x._data.shape, axes, keepdims)
    mask = eq(x.detach(), out).to(x._data.dtype)
    return mask / sum(mask, axes, keepdim=True)


def _extreme_vjp(ctx, g):
    x = ctx.inputs[0]
    return (_keepdims_grad(g, x._data.shape, ctx.attrs["axes"], ctx.attrs["keepdims"]) * _tie_mask(ctx),)


def _extreme_jvp(ctx, t):
    return sum(t[0] * _tie_mask(ctx), ctx.attrs["axes"], keepdim=ctx.attrs["keepdims"])


AMAX = defprim("amax", _extreme_impl(np.amax), _infer_extreme("amax"), vjp=_extreme_vjp,
               jvp=_extreme_jvp, save_output=True)
AMIN = defprim("amin", _extreme_impl(np.amin), _infer_extreme("amin"), vjp=_extreme_vjp,
               jvp=_extreme_jvp, save_output=True)


@tensor_method
def amax(input: Tensor, dim: Any = (), keepdim: bool = False) -> Tensor:
    """Maximum over ``dim`` (all dims if empty); the gradient is split evenly among ties."""
    axes = normalize_axes("amax", None if dim == () else dim, input._data.ndim)
    return apply(AMAX, input, axes=axes, keepdims=bool(keepdim))


@tensor_method
def amin(input: Tensor, dim: Any = (), keepdim: bool = False) -> Tensor:
    """Minimum over ``dim`` (all dims if empty); the gradient is split evenly among ties."""
    axes = normalize_axes("amin", None if dim == () else dim, input._data.ndim)
    return apply(AMIN, input, axes=axes, keepdims=bool(keepdim))


def aminmax(input: Tensor, *, dim: int | None = None, keepdim: bool = False) -> tuple[Tensor, Tensor]:
    d = () if dim is None else dim
    return amin(input, d, keepdim), amax(input, d, keepdim)


# ------------------------------------------------------------------------------------ argmax / max / min
def _arg_impl(np_fn):
    def impl(x, *, axis, keepdims):
        if axis is None:
            out = np_fn(x.reshape(-1))
            return np.asarray(out, dtype=np.int64).reshape((1,) * x.ndim if keepdims else ())
        return np_fn(x, axis=axis, keepdims=keepdims).astype(np.int64)
    impl.__name__ = f"_{np_fn.__name__}_impl"
    return impl


def _infer_arg(op: str):
    def rule(x: Spec, *, axis, keepdims) -> Spec:
        if axis is None:
            if builtins.any(s == 0 for s in x.shape):
                raise op_error(op, "cannot take the arg of an empty tensor", actual=f"shape {tuple(x.shape)}")
            return Spec((1,) * len(x.shape) if keepdims else (), _dt.int64)
        if x.shape and x.shape[axis] == 0:
            raise op_error(op, "cannot reduce over a zero-size dimension", actual=f"shape {tuple(x.shape)}")
        return Spec(_reduced_shape(tuple(x.shape), (axis,), keepdims), _dt.int64)
    rule.__name__ = f"_infer_{op}"
    return rule


ARGMAX = defprim("argmax", _arg_impl(np.argmax), _infer_arg("argmax"), differentiable=False)
ARGMIN = defprim("argmin", _arg_impl(np.argmin), _infer_arg("argmin"), differentiable=False)


@tensor_method
def argmax(input: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
    """Index of the (first) maximum; ``dim=None`` indexes the flattened tensor."""
    axis = None if dim is None or input._data.ndim == 0 else normalize_axes("argmax", dim, input._data.ndim)[0]
    return apply(ARGMAX, input, axis=axis, keepdims=bool(keepdim))


@tensor_method
def argmin(input: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
    """Index of the (first) minimum; ``dim=None`` indexes the flattened tensor."""
    axis = None if dim is None or input._data.ndim == 0 else normalize_axes("argmin", dim, input._data.ndim)[0]
    return apply(ARGMIN, input, axis=axis, keepdims=bool(keepdim))


class ValuesIndices(NamedTuple):
    """What ``max(dim)``/``min(dim)`` return, as torch's ``return_types``."""

    values: Tensor
    indices: Tensor


def _select_extreme(op: str, input: Tensor, dim: Any, keepdim: bool, other: Any) -> Any:
    if isinstance(dim, Tensor) or other is not None:
        from . import elementwise as _ew
        return getattr(_ew, "maximum" if op == "max" else "minimum")(input, dim if other is None else other)
    if dim is None:
        return amax(input) if op == "max" else amin(input)
    from .indexing import take_along_dim
    from .shape import squeeze
    axis = normalize_axes(op, dim, input._data.ndim)[0] if input._data.ndim else 0
    idx = (argmax if op == "max" else argmin)(input, axis, keepdim=True) if input._data.ndim else \
        (argmax if op == "max" else argmin)(input)
    if input._data.ndim == 0:
        return ValuesIndices(input, idx)
    values = take_along_dim(input, idx, axis)
    if not keepdim:
        values, idx = squeeze(values, axis), squeeze(idx, axis)
    return ValuesIndices(values, idx)


@tensor_method
def max(input: Tensor, dim: Any = None, keepdim: bool = False, *, other: Any = None) -> Any:
    """``max(x)`` -> value (ties share the gradient); ``max(x, dim)`` -> (values, indices) with the
    gradient going to the selected index; ``max(x, y)`` -> elementwise maximum."""
    return _select_extreme("max", input, dim, keepdim, other)


@tensor_method
def min(input: Tensor, dim: Any = None, keepdim: bool = False, *, other: Any = None) -> Any:
    """Like :func:`max`, for the minimum."""
    return _select_extreme("min", input, dim, keepdim, other)


# ------------------------------------------------------------------------------------ logsumexp
@tensor_method
def logsumexp(input: Tensor, dim: Any, keepdim: bool = False) -> Tensor:
    """``log(sum(exp(x)))`` computed stably (the max is subtracted and detached)."""
    from .elementwise import isfinite, where
    from .shape import reshape
    x = input if input._data.dtype in _dt.FLOATING else input.to(_dt.get_default_dtype())
    axes = normalize_axes("logsumexp", dim, x._data.ndim)
    if x._data.size == 0:
        return sum(x.exp(), axes, keepdim).log()
    m = amax(x.detach(), axes, keepdim=True)
    m = where(isfinite(m), m, 0.0)
    out = sum((x - m).exp(), axes, keepdim=True).log() + m
    return out if keepdim else reshape(out, _reduced_shape(x._data.shape, axes, False))


# ------------------------------------------------------------------------------------ prod
def _prod_impl(x, *, axes, keepdims):
    return np.prod(x, axis=axes, keepdims=keepdims, dtype=_sum_dtype(x.dtype))


def _prod_vjp(ctx, g):
    """Product of the *other* elements, exact with zeros: out/x where x != 0; where x is the only zero
    in its slice, the product of the non-zeros; else 0."""
    from .elementwise import eq, ne, where
    x = ctx.inputs[0]
    axes, keepdims = ctx.attrs["axes"], ctx.attrs["keepdims"]
    out = _keepdims_grad(ctx.out, x._data.shape, axes, keepdims)
    zero = eq(x.detach(), 0)
    n_zero = sum(zero, axes, keepdim=True)
    safe = where(zero, 1.0, x)
    prod_nonzero = apply(PROD, safe, axes=axes, keepdims=True)
    others = where(zero, where(eq(n_zero, 1), prod_nonzero, 0.0), out / safe)
    return (_keepdims_grad(g, x._data.shape, axes, keepdims) * others,)


def _prod_jvp(ctx, t):
    x = ctx.inputs[0]
    axes, keepdims = ctx.attrs["axes"], ctx.attrs["keepdims"]
    node_like = _VjpView(ctx)
    (w,) = _prod_vjp(node_like, _ones_like_out(ctx))
    return sum(t[0] * w, axes, keepdim=keepdims)


class _VjpView:
    """Lets the JVP reuse the VJP's 'product of the others' weights."""

    def __init__(self, ctx) -> None:
        self.inputs, self.attrs, self.out, self.needs = ctx.inputs, ctx.attrs, ctx.out, (True,)


def _ones_like_out(ctx) -> Tensor:
    return _wrap(np.ones(ctx.out._data.shape, ctx.out._data.dtype))


PROD = defprim("prod", _prod_impl, _infer_sum, vjp=_prod_vjp, jvp=_prod_jvp, save_output=True)


@tensor_method
def prod(input: Tensor, dim: int | None = None, keepdim: bool = False, *, dtype: Any = None) -> Tensor:
    """Product over ``dim`` (all elements if ``None``); exact gradients also where inputs are zero."""
    if dtype is not None:
        input = input.to(dtype)
    axes = normalize_axes("prod", dim, input._data.ndim)
    return apply(PROD, input, axes=axes, keepdims=bool(keepdim))


# ------------------------------------------------------------------------------------ cumsum
def _cumsum_impl(x, *, axis):
    return np.cumsum(x, axis=axis, dtype=_sum_dtype(x.dtype))


def _infer_cumsum(x: Spec, *, axis) -> Spec:
    return Spec(tuple(x.shape), _sum_dtype(x.dtype))


def _cumsum_vjp(ctx, g):
    from .shape import flip
    axis = ctx.attrs["axis"]
    return (flip(cumsum(flip(g, axis), axis), axis),)


def _cumsum_jvp(ctx, t):
    return cumsum(t[0], ctx.attrs["axis"])


CUMSUM = defprim("cumsum", _cumsum_impl, _infer_cumsum, vjp=_cumsum_vjp, jvp=_cumsum_jvp, save_inputs=False)


@tensor_method
def cumsum(input: Tensor, dim: int, *, dtype: Any = None) -> Tensor:
    """Running sum along ``dim`` (ints accumulate in int64)."""
    if dtype is not None:
        input = input.to(dtype)
    if input._data.ndim == 0:
        return apply(CUMSUM, input.reshape(1), axis=0).reshape(())
    axis = normalize_axes("cumsum", dim, input._data.ndim)[0]
    return apply(CUMSUM, input, axis=axis)


# ------------------------------------------------------------------------------------ norm
def _safe_root(s: Tensor, p: float) -> Tensor:
    """``s ** (1/p)`` with gradient 0 (not nan) where s == 0 -- torch's convention for norms at 0."""
    from .elementwise import eq, where
    zero = eq(s.detach(), 0)
    root = where(zero, 1.0, s) ** (1.0 / p)
    return where(zero, 0.0, root)


@tensor_method
def norm(input: Tensor, p: Any = "fro", dim: Any = None, keepdim: bool = False, dtype: Any = None) -> Tensor:
    """Vector p-norm over ``dim`` (``'fro'`` and 2 are the Euclidean norm; 1, inf, -inf, 0, any p)."""
    from .elementwise import abs as _abs, ne
    if dtype is not None:
        input = input.to(dtype)
    _require_float("norm", input)
    if p is None or p == "fro":
        p = 2.0
    if isinstance(p, str):
        raise op_error("norm", f"unsupported norm type {p!r}", expect="'fro', a number, inf or -inf",
                       cls=ValueError)  # type: ignore[arg-type]
    p = float(p)
    axes = normalize_axes("norm", dim, input._data.ndim)
    a = _abs(input)
    if p == float("inf"):
        return amax(a, axes, keepdim)
    if p == float("-inf"):
        return amin(a, axes, keepdim)
    if p == 0:
        return sum(ne(input, 0).to(input._data.dtype), axes, keepdim)
    if p == 1:
        return sum(a, axes, keepdim)
    if p == 2:
        return _safe_root(sum(input * input, axes, keepdim), 2.0)
    return _safe_root(sum(a ** p, axes, keepdim), p)


# ------------------------------------------------------------------------------------ all / any
def _bool_reduce(np_fn):
    def impl(x, *, axes, keepdims):
        return np_fn(x, axis=axes, keepdims=keepdims)
    impl.__name__ = f"_{np_fn.__name__}_impl"
    return impl


def _infer_bool_reduce(x: Spec, *, axes, keepdims) -> Spec:
    return Spec(_reduced_shape(tuple(x.shape), axes, keepdims), _dt.bool_)


ALL = defprim("all", _bool_reduce(np.all), _infer_bool_reduce, differentiable=False)
ANY = defprim("any", _bool_reduce(np.any), _infer_bool_reduce, differentiable=False)


@tensor_method
def all(input: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
    """True where every element (along ``dim``) is nonzero."""
    return apply(ALL, input, axes=normalize_axes("all", dim, input._data.ndim), keepdims=bool(keepdim))


@tensor_method
def any(input: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
    """True where some element (along ``dim``) is nonzero."""
    return apply(ANY, input, axes=normalize_axes("any", dim, input._data.ndim), keepdims=bool(keepdim))


@tensor_method
def count_nonzero(input: Tensor, dim: Any = None) -> Tensor:
    from .elementwise import ne
    return sum(ne(input, 0), dim)
