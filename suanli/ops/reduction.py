"""Reduction primitives (sum, prod, amax/amin, argmax/argmin, cumsum/cumprod, all/any,
count_nonzero) and the composites built on them (mean, var, std, max/min, logsumexp, norm...).

Gradient conventions follow torch: ``amax``/``amin`` and the full ``max()``/``min()`` split the
gradient evenly among tied extrema; ``max(x, dim)`` sends it to the returned index only; ``prod``
is exact with zeros in the input; ``std`` and ``norm`` have a zero (not NaN) gradient where they
are zero.

>>> import suanli
>>> x = suanli.tensor([[1.0, 2.0], [3.0, 4.0]])
>>> x.sum(dim=0)
tensor([4., 6.])
>>> x.mean().item(), x.amax(dim=1).tolist(), x.argmax().item()
(2.5, [2.0, 4.0], 3)
>>> x.max(dim=1)
ValuesIndices(values=tensor([2., 4.]), indices=tensor([1, 1]))
"""
from __future__ import annotations

import builtins
import math
from typing import Any, NamedTuple

import numpy as np

from .. import dtypes as _dt
from .._config import state
from ..errors import DTypeError, ShapeError, op_error
from ..tensor import Tensor, _wrap
from ._helpers import normalize_axes, normalize_axis
from .registry import Spec, apply, defprim, tensor_method

__all__ = ["sum", "mean", "var", "std", "var_mean", "std_mean", "prod", "amax", "amin", "max", "min",
           "aminmax", "argmax", "argmin", "logsumexp", "cumsum", "cumprod", "norm", "all", "any",
           "count_nonzero", "ValuesIndices", "MinMax"]


class EmptyReductionError(ShapeError, IndexError):
    """A max-like reduction (no identity element) over a zero-size dim. A ShapeError (ValueError);
    also an IndexError, which is what torch raises."""


class ValuesIndices(NamedTuple):
    """What ``max(x, dim)`` / ``min(x, dim)`` return (torch's ``return_types.max``)."""

    values: Tensor
    indices: Tensor


class MinMax(NamedTuple):
    """What ``aminmax`` returns (torch's ``return_types.aminmax``)."""

    min: Tensor
    max: Tensor


# ==================================================================================================
# helpers
# ==================================================================================================
def _axes(op: str, dim: Any, ndim: int) -> tuple[int, ...]:
    """torch's reduction ``dim``: ``None`` or ``()`` -> every dim; an int or a sequence of ints.

    A 0-d tensor accepts dim 0 / -1 and reduces over nothing."""
    if dim is None:
        return tuple(range(ndim))
    if isinstance(dim, (list, tuple)) and len(dim) == 0:
        return tuple(range(ndim))
    if not isinstance(dim, (int, np.integer, list, tuple)):
        raise op_error(op, "dim must be an int or a tuple of ints", actual=f"dim={dim!r}", cls=DTypeError)
    axes = normalize_axes(op, dim, ndim)
    return axes if ndim else ()


def _reduced_shape(shape: tuple[int, ...], axes: tuple[int, ...], keepdims: bool) -> tuple[int, ...]:
    if keepdims:
        return tuple(1 if i in axes else s for i, s in enumerate(shape))
    return tuple(s for i, s in enumerate(shape) if i not in axes)


def _sum_dtype(dtype: np.dtype) -> np.dtype:
    """torch: integer and bool sums (and products, cumsums) accumulate in int64."""
    return _dt.int64 if dtype not in _dt.FLOATING else dtype


def _require_nonempty(op: str, shape: tuple[int, ...], axes: tuple[int, ...]) -> None:
    """max-like reductions have no identity: reducing a zero-size dim is an error (as in torch)."""
    for a in axes:
        if shape[a] == 0:
            raise op_error(op, "cannot reduce over a zero-size dimension (there is no identity element)",
                           expect="every reduced dimension non-empty", actual=f"input {shape}, dim {a} of dims {axes}",
                           hint="check for an empty batch, or reduce over a non-empty dim",
                           cls=EmptyReductionError)


def _require_float(op: str, x: Tensor, what: str = "a floating-point input") -> None:
    if x._data.dtype not in _dt.FLOATING:
        raise op_error(op, f"expects {what}", expect=f"dtype in {[str(d) for d in _dt.FLOATING]}",
                       actual=f"{x._data.shape} {x._data.dtype}",
                       hint="pass dtype=suanli.float32 or convert with .float() first", cls=DTypeError)


def _keepdims_grad(g: Tensor, in_shape: tuple[int, ...], axes: tuple[int, ...], keepdims: bool) -> Tensor:
    """Reshape a reduced cotangent/output so it broadcasts against the input."""
    from .shape import reshape
    if keepdims:
        return g
    return reshape(g, _reduced_shape(in_shape, axes, True))


def _squeeze_axes(x: Tensor, axes: tuple[int, ...], keepdim: bool) -> Tensor:
    """Drop the (size-1) reduced ``axes`` of a keepdim result unless ``keepdim``."""
    from .shape import reshape
    if keepdim:
        return x
    return reshape(x, _reduced_shape(x._data.shape, axes, False))


def _const(value: float, shape: tuple[int, ...], dtype: np.dtype) -> Tensor:
    return _wrap(np.full(shape, value, dtype))


def _upcast(x: Tensor) -> Tensor:
    """float16/bfloat16 composites accumulate in float32 (torch's CPU opmath), rounded back at the end."""
    from .elementwise import cast
    return cast(x, _dt.float32) if x._data.dtype in _dt.HALF else x


def _downcast(y: Tensor, like: Tensor) -> Tensor:
    from .elementwise import cast
    return cast(y, like._data.dtype) if y._data.dtype != like._data.dtype else y


def _root_zero_grad(s: Tensor, p: float) -> Tensor:
    """``s ** (1/p)`` for ``s >= 0`` whose gradient is 0 (not inf/NaN) where ``s == 0``, as torch's
    norm/std backward masks it. The double ``where`` keeps every intermediate finite."""
    from .elementwise import pow, sqrt, where
    zero = s == 0
    safe = where(zero, 1.0, s)
    root = sqrt(safe) if p == 2 else pow(safe, 1.0 / p)
    return where(zero, 0.0, root)


# ==================================================================================================
# sum (primitive) and mean (composite)
# ==================================================================================================
def _sum_impl(x, *, axes, keepdims):
    return np.sum(x, axis=axes, keepdims=keepdims, dtype=_sum_dtype(x.dtype))


def _infer_sum(x: Spec, *, axes, keepdims) -> Spec:
    return Spec(_reduced_shape(tuple(x.shape), axes, keepdims), _sum_dtype(x.dtype))


def _sum_vjp(ctx, g):
    from .shape import expand
    shape = ctx.inputs[0]._data.shape
    return (expand(_keepdims_grad(g, shape, ctx.attrs["axes"], ctx.attrs["keepdims"]), shape),)


def _sum_jvp(ctx, t):
    return apply(SUM, t[0], **ctx.attrs)


SUM = defprim("sum", _sum_impl, _infer_sum, vjp=_sum_vjp, jvp=_sum_jvp, save_inputs=False)


@tensor_method
def sum(input: Tensor, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> Tensor:
    """Sum over ``dim`` (an int, a tuple, or all dims if ``None``); ints and bools accumulate in
    int64, as in torch. ``dtype`` casts the input first.

    >>> import suanli
    >>> suanli.tensor([[1, 2], [3, 4]]).sum(dim=-1, keepdim=True).tolist()
    [[3], [7]]
    >>> suanli.tensor([True, True, False]).sum().dtype
    dtype('int64')
    """
    if dtype is not None:
        input = input.to(dtype)
    axes = _axes("sum", dim, input._data.ndim)
    return apply(SUM, input, axes=axes, keepdims=bool(keepdim))


@tensor_method
def mean(input: Tensor, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> Tensor:
    """Arithmetic mean over ``dim``. Floating point only (as in torch); ``dtype`` casts first.
    The mean over zero elements is NaN.

    >>> import suanli
    >>> suanli.tensor([[1.0, 2.0], [3.0, 5.0]]).mean(0).tolist()
    [2.0, 3.5]
    >>> suanli.tensor([1, 2]).mean(dtype=suanli.float64).item()
    1.5
    """
    if dtype is not None:
        input = input.to(dtype)
    if input._data.dtype not in _dt.FLOATING:
        raise op_error("mean", "could not infer the output dtype: the input is not floating point",
                       actual=f"{input._data.shape} {input._data.dtype}",
                       hint="pass dtype=suanli.float32 or call .float() first", cls=DTypeError)
    axes = _axes("mean", dim, input._data.ndim)
    n = math.prod(input._data.shape[a] for a in axes)
    x = _upcast(input)
    return _downcast(apply(SUM, x, axes=axes, keepdims=bool(keepdim)) / n, input)


# ==================================================================================================
# var / std (composites)
# ==================================================================================================
def _correction(op: str, dim: Any, unbiased: Any, correction: Any) -> tuple[Any, float]:
    """Resolve torch's overloads: ``var(x, unbiased)``, ``var(x, dim, unbiased)``, ``correction=``."""
    if isinstance(dim, bool):          # x.var(True): the old "unbiased" positional form
        if unbiased is not None:
            raise op_error(op, "got unbiased twice", actual=f"dim={dim}, unbiased={unbiased}",
                           cls=TypeError)  # type: ignore[arg-type]
        dim, unbiased = None, dim
    if unbiased is not None and correction is not None:
        raise op_error(op, "pass either unbiased or correction, not both",
                       actual=f"unbiased={unbiased}, correction={correction}", cls=TypeError)  # type: ignore[arg-type]
    if correction is None:
        correction = 1 if unbiased is None or unbiased else 0
    return dim, correction


def _var(op: str, input: Tensor, dim: Any, unbiased: Any, keepdim: bool, correction: Any) -> tuple[Tensor, Tensor]:
    """(variance, mean) with the reduced dims kept, computed in float32 for half inputs."""
    from .shape import reshape
    dim, correction = _correction(op, dim, unbiased, correction)
    _require_float(op, input, "a floating-point input (var and std only support floats)")
    axes = _axes(op, dim, input._data.ndim)
    n = math.prod(input._data.shape[a] for a in axes)
    x = _upcast(input)
    mu = apply(SUM, x, axes=axes, keepdims=True) / n
    d = x - mu
    v = apply(SUM, d * d, axes=axes, keepdims=True) / builtins.max(0, n - correction)
    if not keepdim:
        shape = _reduced_shape(input._data.shape, axes, False)
        v, mu = reshape(v, shape), reshape(mu, shape)
    return v, mu


@tensor_method
def var(input: Tensor, dim: Any = None, unbiased: Any = None, keepdim: bool = False, *,
        correction: Any = None) -> Tensor:
    """Variance over ``dim`` with Bessel's ``correction`` (default 1; ``unbiased=False`` means 0).
    Divides by ``max(0, N - correction)``: a single element gives NaN, as in torch.

    >>> import suanli
    >>> x = suanli.tensor([1.0, 2.0, 3.0, 4.0])
    >>> x.var().item(), x.var(correction=0).item(), x.var(unbiased=False).item()
    (1.6666666269302368, 1.25, 1.25)
    """
    v, _ = _var("var", input, dim, unbiased, keepdim, correction)
    return _downcast(v, input)


@tensor_method
def std(input: Tensor, dim: Any = None, unbiased: Any = None, keepdim: bool = False, *,
        correction: Any = None) -> Tensor:
    """Standard deviation, ``sqrt(var)``; its gradient is 0 where it is 0 (as torch's).

    >>> import suanli
    >>> suanli.tensor([[1.0, 3.0], [2.0, 2.0]]).std(dim=1, correction=0).tolist()
    [1.0, 0.0]
    """
    v, _ = _var("std", input, dim, unbiased, keepdim, correction)
    return _downcast(_root_zero_grad(v, 2), input)


def var_mean(input: Tensor, dim: Any = None, unbiased: Any = None, keepdim: bool = False, *,
             correction: Any = None) -> tuple[Tensor, Tensor]:
    """``(var(input, dim), mean(input, dim))`` in one pass.

    >>> import suanli
    >>> [t.item() for t in suanli.var_mean(suanli.tensor([1.0, 3.0]))]
    [2.0, 2.0]
    """
    v, mu = _var("var_mean", input, dim, unbiased, keepdim, correction)
    return _downcast(v, input), _downcast(mu, input)


def std_mean(input: Tensor, dim: Any = None, unbiased: Any = None, keepdim: bool = False, *,
             correction: Any = None) -> tuple[Tensor, Tensor]:
    """``(std(input, dim), mean(input, dim))`` in one pass."""
    v, mu = _var("std_mean", input, dim, unbiased, keepdim, correction)
    return _downcast(_root_zero_grad(v, 2), input), _downcast(mu, input)


# ==================================================================================================
# cumsum / cumprod (primitives)
# ==================================================================================================
def _cumsum_impl(x, *, axis, reverse):
    dtype = _sum_dtype(x.dtype)
    if reverse:
        return np.ascontiguousarray(np.flip(np.cumsum(np.flip(x, axis), axis=axis, dtype=dtype), axis))
    return np.cumsum(x, axis=axis, dtype=dtype)


def _infer_scan(op: str):
    def rule(x: Spec, *, axis, **attrs) -> Spec:
        if not 0 <= axis < len(x.shape):
            raise op_error(op, "dimension out of range (the public function maps 0-d inputs to 1-d)",
                           actual=f"axis={axis} for input {tuple(x.shape)}", cls=IndexError)  # type: ignore[arg-type]
        return Spec(tuple(x.shape), _sum_dtype(x.dtype))
    rule.__name__ = f"_infer_{op}"
    return rule


def _cumsum_vjp(ctx, g):
    return (apply(CUMSUM, g, axis=ctx.attrs["axis"], reverse=not ctx.attrs["reverse"]),)


def _cumsum_jvp(ctx, t):
    return apply(CUMSUM, t[0], **ctx.attrs)


# ``reverse=True`` sums from the end (``flip(cumsum(flip(x)))``): the VJP of one direction is the other
CUMSUM = defprim("cumsum", _cumsum_impl, _infer_scan("cumsum"), vjp=_cumsum_vjp, jvp=_cumsum_jvp, save_inputs=False)


def _cumprod_impl(x, *, axis):
    return np.cumprod(x, axis=axis, dtype=_sum_dtype(x.dtype))


def _cumprod_terms(x: Tensor, axis: int) -> Tensor:
    """``M[..., i, k] = [k >= i] * prod_{j <= k, j != i} x_j`` along ``axis`` (moved last): the exact
    ``d y_k / d x_i`` of ``y = cumprod(x)``, with no division, so it is right with zeros and
    differentiable again. O(n^2) memory along ``axis``: used only when zeros meet a recorded/forward
    computation."""
    from .elementwise import where
    from .shape import expand, movedim, unsqueeze
    xl = movedim(x, axis, -1)
    n = xl._data.shape[-1]
    eye = _wrap(np.eye(n, dtype=bool))
    upper = _wrap(np.triu(np.ones((n, n), x._data.dtype)))
    rows = expand(unsqueeze(xl, -2), xl._data.shape[:-1] + (n, n))       # (..., i, j) = x_j
    c = apply(CUMPROD, where(eye, _const(1.0, (), x._data.dtype), rows), axis=xl._data.ndim)
    return c * upper


def _cumprod_masks(x: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """(before the first zero, at the first zero) along ``axis`` -- constants from the data."""
    zeros_so_far = np.cumsum(x == 0, axis=axis)
    return zeros_so_far == 0, (x == 0) & (zeros_so_far == 1)


def _cumprod_vjp(ctx, g):
    from .elementwise import where
    from .shape import movedim
    (x,), y, axis = ctx.inputs, ctx.out, ctx.attrs["axis"]
    if not np.any(x._data == 0):
        # d/dx_i = sum_{k >= i} g_k y_k / x_i: an identity while x has no zeros
        return (apply(CUMSUM, g * y, axis=axis, reverse=True) / x,)
    if state.grad_enabled or state.forward_level:     # will be differentiated again: exact form
        m = _cumprod_terms(x, axis)
        gl = movedim(g, axis, -1)
        return (movedim(apply(SUM, m * gl.unsqueeze(-2), axes=(m.ndim - 1,), keepdims=False), -1, axis),)
    # first order, O(n): before the first zero as above; at it, sum_{k >= z} g_k prod_{j<=k, j!=z} x_j;
    # after it, 0 (every product contains the zero)
    before, at_zero = (_wrap(m) for m in _cumprod_masks(x._data, axis))
    one = _const(1.0, (), x._data.dtype)
    part = apply(CUMSUM, g * y, axis=axis, reverse=True) / where(before, x, one)
    at = apply(CUMSUM, g * apply(CUMPROD, where(at_zero, one, x), axis=axis), axis=axis, reverse=True)
    return (where(before, part, where(at_zero, at, 0.0)),)


def _cumprod_jvp(ctx, t):
    from .elementwise import where
    from .shape import movedim
    (x,), (tx,), y, axis = ctx.inputs, t, ctx.out, ctx.attrs["axis"]
    if not np.any(x._data == 0):
        return y * apply(CUMSUM, tx / x, axis=axis, reverse=False)
    if state.grad_enabled and (x._requires_grad or tx._requires_grad):   # will be differentiated
        m = _cumprod_terms(x, axis)
        tl = movedim(tx, axis, -1)
        return movedim(apply(SUM, m * tl.unsqueeze(-1), axes=(m.ndim - 2,), keepdims=False), -1, axis)
    # before the first zero z: y_k * sum_{i<=k} t_i / x_i; from z on only i = z contributes
    before, at_zero = (_wrap(m) for m in _cumprod_masks(x._data, axis))
    one = _const(1.0, (), x._data.dtype)
    part = y * apply(CUMSUM, tx / where(before, x, one), axis=axis, reverse=False)
    tz = apply(SUM, where(at_zero, tx, 0.0), axes=(axis,), keepdims=True)
    return where(before, part, tz * apply(CUMPROD, where(at_zero, one, x), axis=axis))


CUMPROD = defprim("cumprod", _cumprod_impl, _infer_scan("cumprod"), vjp=_cumprod_vjp, jvp=_cumprod_jvp,
                  save_output=True)


def _scan(op: str, prim: Any, input: Tensor, dim: int, dtype: Any, **attrs: Any) -> Tensor:
    from .shape import reshape
    if dtype is not None:
        input = input.to(dtype)
    if input._data.ndim == 0:
        normalize_axis(op, dim, 0)
        return reshape(apply(prim, reshape(input, (1,)), axis=0, **attrs), ())
    return apply(prim, input, axis=normalize_axis(op, dim, input._data.ndim), **attrs)


@tensor_method
def cumsum(input: Tensor, dim: int, *, dtype: Any = None) -> Tensor:
    """Running sum along ``dim`` (ints and bools accumulate in int64).

    >>> import suanli
    >>> suanli.tensor([[1, 2, 3], [4, 5, 6]]).cumsum(dim=1).tolist()
    [[1, 3, 6], [4, 9, 15]]
    """
    return _scan("cumsum", CUMSUM, input, dim, dtype, reverse=False)


@tensor_method
def cumprod(input: Tensor, dim: int, *, dtype: Any = None) -> Tensor:
    """Running product along ``dim``; the gradient is exact with zeros in the input.

    >>> import suanli
    >>> suanli.tensor([1.0, 2.0, 3.0, 4.0]).cumprod(0).tolist()
    [1.0, 2.0, 6.0, 24.0]
    """
    return _scan("cumprod", CUMPROD, input, dim, dtype)


# ==================================================================================================
# prod (primitive)
# ==================================================================================================
def _prod_impl(x, *, axes, keepdims):
    return np.prod(x, axis=axes, keepdims=keepdims, dtype=_sum_dtype(x.dtype))


def _exclusive_prod(x: Tensor, axes: tuple[int, ...]) -> Tensor:
    """For each element, the product of the *other* elements of its reduced group, without division
    (torch's ``prod_safe_zeros_backward``): exclusive cumprod from the left times from the right."""
    from .shape import cat, flip, movedim, narrow, reshape
    dtype = x._data.dtype
    kept = tuple(a for a in range(x._data.ndim) if a not in axes)
    moved = movedim(x, axes, tuple(range(len(kept), x._data.ndim))) if axes else x
    lead = moved._data.shape[:len(kept)]
    n = math.prod(moved._data.shape[len(kept):])
    flat = reshape(moved, lead + (n,))                                      # (kept..., n)
    last = len(lead)
    ones = _const(1.0, lead + (1,), dtype)
    left = apply(CUMPROD, cat([ones, narrow(flat, last, 0, n - 1)], last), axis=last)
    rev = flip(narrow(flat, last, 1, n - 1), last)
    right = flip(apply(CUMPROD, cat([ones, rev], last), axis=last), last)
    others = reshape(left * right, moved._data.shape)
    return movedim(others, tuple(range(len(kept), x._data.ndim)), axes) if axes else others


def _prod_factor(x: Tensor, out: Tensor, axes: tuple[int, ...], keepdims: bool) -> Tensor:
    """``d prod / d x_i``: ``prod / x_i`` while there are no zeros, else the exclusive products."""
    if x._data.size == 0 or np.all(x._data != 0):
        return _keepdims_grad(out, x._data.shape, axes, keepdims) / x
    return _exclusive_prod(x, axes)


def _prod_vjp(ctx, g):
    x, axes, keep = ctx.inputs[0], ctx.attrs["axes"], ctx.attrs["keepdims"]
    return (_keepdims_grad(g, x._data.shape, axes, keep) * _prod_factor(x, ctx.out, axes, keep),)


def _prod_jvp(ctx, t):
    x, axes, keep = ctx.inputs[0], ctx.attrs["axes"], ctx.attrs["keepdims"]
    return apply(SUM, t[0] * _prod_factor(x, ctx.out, axes, keep), axes=axes, keepdims=keep)


PROD = defprim("prod", _prod_impl, _infer_sum, vjp=_prod_vjp, jvp=_prod_jvp, save_output=True)


@tensor_method
def prod(input: Tensor, dim: int | None = None, keepdim: bool = False, *, dtype: Any = None) -> Tensor:
    """Product of all elements, or along one ``dim``; ints and bools give int64. The gradient is
    exact with zeros in the input (as torch's).

    >>> import suanli
    >>> x = suanli.tensor([[1.0, 2.0], [3.0, 0.0]], requires_grad=True)
    >>> x.prod(1).tolist()
    [2.0, 0.0]
    >>> x.prod().backward(); x.grad.tolist()
    [[0.0, 0.0], [0.0, 6.0]]
    """
    if dtype is not None:
        input = input.to(dtype)
    if dim is not None and not isinstance(dim, (int, np.integer)):
        raise op_error("prod", "dim must be a single int (or None for all elements)", actual=f"dim={dim!r}",
                       hint="reduce one dim at a time, or flatten the dims first", cls=DTypeError)
    axes = _axes("prod", dim, input._data.ndim)
    return apply(PROD, input, axes=axes, keepdims=bool(keepdim and dim is not None))


# ==================================================================================================
# amax / amin (primitives; ties share the gradient) and max / min / aminmax
# ==================================================================================================
def _extremum_infer(op: str):
    def rule(x: Spec, *, axes, keepdims) -> Spec:
        _require_nonempty(op, tuple(x.shape), axes)
        return Spec(_reduced_shape(tuple(x.shape), axes, keepdims), x.dtype)
    rule.__name__ = f"_infer_{op}"
    return rule


def _amax_impl(x, *, axes, keepdims):
    return np.amax(x, axis=axes, keepdims=keepdims)


def _amin_impl(x, *, axes, keepdims):
    return np.amin(x, axis=axes, keepdims=keepdims)


def _tie_weights(ctx) -> Tensor:
    """``1/count`` at every position equal to the extremum of its group, else 0 (a constant)."""
    from .elementwise import cast
    x, axes, keep = ctx.inputs[0], ctx.attrs["axes"], ctx.attrs["keepdims"]
    out = _keepdims_grad(ctx.out.detach(), x._data.shape, axes, keep)
    hit = cast(x.detach() == out, x._data.dtype)
    return hit / apply(SUM, hit, axes=axes, keepdims=True)


def _extremum_vjp(ctx, g):
    x, axes, keep = ctx.inputs[0], ctx.attrs["axes"], ctx.attrs["keepdims"]
    return (_tie_weights(ctx) * _keepdims_grad(g, x._data.shape, axes, keep),)


def _extremum_jvp(ctx, t):
    return apply(SUM, _tie_weights(ctx) * t[0], axes=ctx.attrs["axes"], keepdims=ctx.attrs["keepdims"])


_EXTREMUM = {"vjp": _extremum_vjp, "jvp": _extremum_jvp, "save_output": True, "upcast_half": False}
AMAX = defprim("amax", _amax_impl, _extremum_infer("amax"), **_EXTREMUM)
AMIN = defprim("amin", _amin_impl, _extremum_infer("amin"), **_EXTREMUM)


def _reduce_extremum(op: str, prim: Any, input: Tensor, dim: Any, keepdim: bool) -> Tensor:
    axes = _axes(op, dim, input._data.ndim)
    _require_nonempty(op, input._data.shape, axes)
    return apply(prim, input, axes=axes, keepdims=bool(keepdim))


@tensor_method
def amax(input: Tensor, dim: Any = (), keepdim: bool = False) -> Tensor:
    """Maximum over ``dim`` (an int or tuple; all dims by default). Tied maxima share the gradient
    evenly, as in torch.

    >>> import suanli
    >>> suanli.tensor([[1, 5], [7, 2]]).amax(dim=0).tolist()
    [7, 5]
    """
    return _reduce_extremum("amax", AMAX, input, dim, keepdim)


@tensor_method
def amin(input: Tensor, dim: Any = (), keepdim: bool = False) -> Tensor:
    """Minimum over ``dim`` (an int or tuple; all dims by default); ties share the gradient."""
    return _reduce_extremum("amin", AMIN, input, dim, keepdim)


def _with_indices(op: str, arg_prim: Any, input: Tensor, dim: Any, keepdim: bool) -> ValuesIndices:
    """``(values, indices)`` along one dim: the values are gathered at the indices, so the
    gradient goes to the returned index only."""
    from .indexing import GATHER
    from .shape import reshape
    if not isinstance(dim, (int, np.integer)):
        raise op_error(op, "dim must be an int", actual=f"dim={dim!r}", cls=DTypeError)
    if input._data.ndim == 0:
        normalize_axis(op, dim, 0)
        values, indices = _with_indices(op, arg_prim, reshape(input, (1,)), 0, False)
        return ValuesIndices(reshape(values, ()), reshape(indices, ()))
    d = normalize_axis(op, dim, input._data.ndim)
    _require_nonempty(op, input._data.shape, (d,))
    idx = apply(arg_prim, input, axis=d, keepdims=True)
    values = apply(GATHER, input, idx, dim=d)
    return ValuesIndices(_squeeze_axes(values, (d,), keepdim), _squeeze_axes(idx, (d,), keepdim))


@tensor_method
def max(input: Tensor, dim: Any = None, keepdim: bool = False, *, other: Any = None) -> Any:
    """Three forms, as in torch:

    * ``max(x)`` -- the largest element (ties share the gradient evenly);
    * ``max(x, dim, keepdim=False)`` -- ``(values, indices)`` along ``dim`` (first index on ties;
      the gradient goes to that index);
    * ``max(x, other)`` (or ``other=``) -- elementwise :func:`maximum`.

    >>> import suanli
    >>> x = suanli.tensor([[1.0, 5.0], [7.0, 2.0]])
    >>> x.max().item()
    7.0
    >>> values, indices = x.max(dim=1)
    >>> values.tolist(), indices.tolist()
    ([5.0, 7.0], [1, 0])
    """
    return _max_or_min("max", input, dim, keepdim, other)


@tensor_method
def min(input: Tensor, dim: Any = None, keepdim: bool = False, *, other: Any = None) -> Any:
    """Like :func:`max`: ``min(x)``, ``min(x, dim)`` -> ``(values, indices)``, ``min(x, other)``.

    >>> import suanli
    >>> suanli.tensor([3, 1, 2]).min(0).indices.item()
    1
    """
    return _max_or_min("min", input, dim, keepdim, other)


def _max_or_min(op: str, input: Tensor, dim: Any, keepdim: bool, other: Any) -> Any:
    """Shared body of :func:`max` and :func:`min` (elementwise, full reduction, or values+indices)."""
    from . import elementwise as _ew
    is_max = op == "max"
    if isinstance(dim, Tensor) or other is not None:
        return (_ew.maximum if is_max else _ew.minimum)(input, dim if other is None else other)
    if dim is None:
        if keepdim:
            raise op_error(op, "keepdim needs a dim", actual="keepdim=True without dim",
                           hint="pass dim=..., or use amax/amin(keepdim=True) to reduce all dims",
                           cls=TypeError)  # type: ignore[arg-type]
        return _reduce_extremum(op, AMAX if is_max else AMIN, input, None, False)
    return _with_indices(op, ARGMAX if is_max else ARGMIN, input, dim, keepdim)


@tensor_method
def aminmax(input: Tensor, *, dim: int | None = None, keepdim: bool = False) -> MinMax:
    """``(amin, amax)`` over ``dim`` (all elements if ``None``).

    >>> import suanli
    >>> suanli.tensor([[1, 5], [7, 2]]).aminmax(dim=1)
    MinMax(min=tensor([1, 2]), max=tensor([5, 7]))
    """
    return MinMax(_reduce_extremum("aminmax", AMIN, input, dim, keepdim),
                  _reduce_extremum("aminmax", AMAX, input, dim, keepdim))


# ==================================================================================================
# argmax / argmin (not differentiable)
# ==================================================================================================
def _argmax_impl(x, *, axis, keepdims):
    return np.argmax(x, axis=axis, keepdims=keepdims).astype(np.int64, copy=False)


def _argmin_impl(x, *, axis, keepdims):
    return np.argmin(x, axis=axis, keepdims=keepdims).astype(np.int64, copy=False)


def _arg_infer(op: str):
    def rule(x: Spec, *, axis, keepdims) -> Spec:
        shape = tuple(x.shape)
        if axis is None:
            if math.prod(shape) == 0:
                raise op_error(op, "cannot take the index of an extremum of an empty tensor",
                               actual=f"input {shape}", hint="pass a dim whose size is non-zero",
                               cls=EmptyReductionError)
            return Spec((1,) * len(shape) if keepdims else (), _dt.int64)
        _require_nonempty(op, shape, (axis,))
        return Spec(_reduced_shape(shape, (axis,), keepdims), _dt.int64)
    rule.__name__ = f"_infer_{op}"
    return rule


_ARG = {"differentiable": False, "save_inputs": False, "upcast_half": False}
ARGMAX = defprim("argmax", _argmax_impl, _arg_infer("argmax"), **_ARG)
ARGMIN = defprim("argmin", _argmin_impl, _arg_infer("argmin"), **_ARG)


def _arg_reduce(op: str, prim: Any, input: Tensor, dim: Any, keepdim: bool) -> Tensor:
    ndim = input._data.ndim
    axis = None if dim is None else normalize_axis(op, dim, ndim)
    if ndim == 0:
        axis = None
    if input._data.dtype == _dt.bool_:
        raise op_error(op, "does not support bool input", actual=f"{input._data.shape} {input._data.dtype}",
                       hint="convert with .int() or .float() first", cls=DTypeError)
    return apply(prim, input, axis=axis, keepdims=bool(keepdim))


@tensor_method
def argmax(input: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
    """Index of the maximum (of the flattened tensor if ``dim`` is None; first one on ties), int64.

    >>> import suanli
    >>> x = suanli.tensor([[1, 9], [7, 2]])
    >>> x.argmax().item(), x.argmax(dim=0).tolist(), x.argmax(1, keepdim=True).tolist()
    (1, [1, 0], [[1], [0]])
    """
    return _arg_reduce("argmax", ARGMAX, input, dim, keepdim)


@tensor_method
def argmin(input: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
    """Index of the minimum (see :func:`argmax`)."""
    return _arg_reduce("argmin", ARGMIN, input, dim, keepdim)


# ==================================================================================================
# logsumexp, norm (composites)
# ==================================================================================================
@tensor_method
def logsumexp(input: Tensor, dim: Any, keepdim: bool = False) -> Tensor:
    """``log(sum(exp(x), dim))`` computed as ``m + log(sum(exp(x - m)))`` with ``m = amax(x)``
    (detached), so it never overflows. Integer inputs give the default float dtype. Reducing zero
    elements gives ``-inf``.

    >>> import suanli
    >>> suanli.tensor([1000.0, 1000.0]).logsumexp(0).item() - 1000.0
    0.693...
    """
    from .elementwise import cast, exp, isfinite, log, where
    if input._data.dtype not in _dt.FLOATING:
        input = cast(input, _dt.get_default_dtype())
    axes = _axes("logsumexp", dim, input._data.ndim)
    x = _upcast(input)
    if builtins.any(x._data.shape[a] == 0 for a in axes):
        m = _const(0.0, _reduced_shape(x._data.shape, axes, True), x._data.dtype)
    else:
        m = apply(AMAX, x.detach(), axes=axes, keepdims=True)
        m = where(isfinite(m), m, 0.0)       # all -inf (or an inf) in a group: shift by 0 instead
    out = log(apply(SUM, exp(x - m), axes=axes, keepdims=True)) + m
    return _downcast(_squeeze_axes(out, axes, keepdim), input)


def _vector_norm(op: str, x: Tensor, p: float, axes: tuple[int, ...], keepdim: bool) -> Tensor:
    from .elementwise import abs, cast, ne, pow
    if p == math.inf or p == -math.inf:
        prim = AMAX if p > 0 else AMIN
        _require_nonempty(op, x._data.shape, axes)
        return apply(prim, abs(x), axes=axes, keepdims=keepdim)
    if p == 0:      # the number of non-zeros (zero gradient)
        return apply(SUM, cast(ne(x, 0), x._data.dtype), axes=axes, keepdims=keepdim)
    if p == 1:
        return apply(SUM, abs(x), axes=axes, keepdims=keepdim)
    if p == 2:
        return _root_zero_grad(apply(SUM, x * x, axes=axes, keepdims=keepdim), 2)
    return _root_zero_grad(apply(SUM, pow(abs(x), p), axes=axes, keepdims=keepdim), p)


@tensor_method
def norm(input: Tensor, p: Any = "fro", dim: Any = None, keepdim: bool = False, dtype: Any = None) -> Tensor:
    """Vector p-norm over ``dim`` (all elements if ``None``), as ``torch.norm``: ``p`` = 2 / ``'fro'``
    (default), 1, ``inf`` (max abs), ``-inf`` (min abs), 0 (count of non-zeros) or any other number.
    The gradient at a zero vector is 0, as in torch. ``dtype`` casts the input first.

    >>> import suanli
    >>> x = suanli.tensor([[3.0, -4.0], [0.0, 1.0]])
    >>> x.norm().item() ** 2, x.norm(dim=1).tolist(), x.norm(1).item(), x.norm(float("inf")).item()
    (26.0..., [5.0, 1.0], 8.0, 4.0)
    """
    if dtype is not None:
        input = input.to(dtype)
    _require_float("norm", input)
    if p is None:
        p = 2.0
    if isinstance(p, str):
        n_dims = 1 if dim is None or isinstance(dim, (int, np.integer)) else len(dim)
        if p == "fro" and (dim is None or n_dims <= 2):
            p = 2.0
        elif p == "nuc":
            raise op_error("norm", "the nuclear norm (p='nuc') is not implemented",
                           hint="compute it from singular values, or use p='fro'",
                           cls=NotImplementedError)  # type: ignore[arg-type]
        elif p == "fro":
            raise op_error("norm", "p='fro' reduces at most 2 dims", actual=f"dim={dim!r}",
                           hint="pass p=2 for a vector norm over more dims", cls=ValueError)  # type: ignore[arg-type]
        else:
            raise op_error("norm", f"unknown norm p={p!r}", expect="a number, 'fro' (at most 2 dims) or 'nuc'",
                           cls=ValueError)  # type: ignore[arg-type]
    axes = _axes("norm", dim, input._data.ndim)
    x = _upcast(input)
    return _downcast(_vector_norm("norm", x, float(p), axes, bool(keepdim)), input)


# ==================================================================================================
# all / any / count_nonzero (not differentiable)
# ==================================================================================================
def _all_impl(x, *, axes, keepdims):
    out = np.all(x, axis=axes, keepdims=keepdims)
    return out.astype(np.uint8) if x.dtype == np.uint8 else out


def _any_impl(x, *, axes, keepdims):
    out = np.any(x, axis=axes, keepdims=keepdims)
    return out.astype(np.uint8) if x.dtype == np.uint8 else out


def _infer_logical_reduce(x: Spec, *, axes, keepdims) -> Spec:
    """torch: bool result, except that uint8 inputs give uint8."""
    return Spec(_reduced_shape(tuple(x.shape), axes, keepdims), _dt.uint8 if x.dtype == _dt.uint8 else _dt.bool_)


def _count_nonzero_impl(x, *, axes):
    return np.asarray(np.count_nonzero(x, axis=axes), dtype=np.int64)


def _infer_count_nonzero(x: Spec, *, axes) -> Spec:
    return Spec(_reduced_shape(tuple(x.shape), axes, False), _dt.int64)


ALL = defprim("all", _all_impl, _infer_logical_reduce, **_ARG)
ANY = defprim("any", _any_impl, _infer_logical_reduce, **_ARG)
COUNT_NONZERO = defprim("count_nonzero", _count_nonzero_impl, _infer_count_nonzero, **_ARG)


@tensor_method
def all(input: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
    """True where every element over ``dim`` is non-zero (bool; uint8 for uint8 inputs, as torch).

    >>> import suanli
    >>> suanli.tensor([[1, 0], [2, 3]]).all(dim=1).tolist()
    [False, True]
    """
    return apply(ALL, input, axes=_axes("all", dim, input._data.ndim), keepdims=bool(keepdim))


@tensor_method
def any(input: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
    """True where some element over ``dim`` is non-zero (bool; uint8 for uint8 inputs).

    >>> import suanli
    >>> suanli.tensor([[0, 0], [0, 3]]).any().item()
    True
    """
    return apply(ANY, input, axes=_axes("any", dim, input._data.ndim), keepdims=bool(keepdim))


@tensor_method
def count_nonzero(input: Tensor, dim: Any = None) -> Tensor:
    """The number of non-zero elements over ``dim`` (all if ``None``), int64.

    >>> import suanli
    >>> suanli.tensor([[0, 1], [2, 3]]).count_nonzero(dim=0).tolist()
    [1, 2]
    """
    return apply(COUNT_NONZERO, input, axes=_axes("count_nonzero", dim, input._data.ndim))
