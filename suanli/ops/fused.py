"""Fused primitives for the hot composites of training: softmax, log_softmax and the layer-norm core.

Built from elementwise primitives these cost 8-15 NumPy passes and as many tape nodes each way;
as primitives they are 2-4 passes. The pattern, used for every rule here:

* the forward is one primitive with a NumPy kernel;
* first-order backward (the usual ``loss.backward()``, grad mode off while the engine runs rules)
  calls a fused *gradient primitive*, which is not itself differentiable;
* under ``create_graph`` the rule is written with differentiable ops instead, so double backward
  and beyond still work (tested against finite differences and torch).

>>> import suanli
>>> from suanli.ops import fused
>>> fused.softmax(suanli.tensor([0.0, 0.0]), 0).tolist()
[0.5, 0.5]
"""
from __future__ import annotations

import functools
import math

import numpy as np

from .. import dtypes as _dt
from .._config import state
from ..errors import DTypeError, op_error
from ..tensor import Tensor
from ._helpers import normalize_axis
from .registry import Spec, apply, defprim, spec_str

__all__ = ["softmax", "log_softmax", "standardize"]


def _infer_float_same(op: str):
    def infer(x: Spec, *rest: Spec, **attrs) -> Spec:
        if x.dtype not in _dt.FLOATING or any(r.dtype != x.dtype for r in rest):
            raise op_error(op, "expects floating-point inputs of one dtype",
                           actual=", ".join(spec_str(s) for s in (x, *rest)), cls=DTypeError)
        if any(tuple(r.shape) != tuple(x.shape) for r in rest):
            raise op_error(op, "expects inputs of one shape", actual=", ".join(spec_str(s) for s in (x, *rest)))
        return Spec(tuple(x.shape), x.dtype)
    return infer


# ====================================================================================== reductions
def _max_keepdims(a: np.ndarray, dim: int) -> np.ndarray:
    """``np.max(a, dim, keepdims=True)``; along a last axis by halving with np.maximum, which runs
    ~2x faster than NumPy's row reduction on short rows (attention rows of 64) -- same values, NaN
    propagating the same way."""
    if dim != a.ndim - 1 or a.shape[-1] < 16 or a.size <= 4096:   # small: the halving loop's calls cost more
        return np.max(a, axis=dim, keepdims=True)
    while a.shape[-1] > 1:
        n = a.shape[-1]
        h = n // 2
        m = np.maximum(a[..., :h], a[..., h:2 * h])
        if n % 2:
            np.maximum(m[..., :1], a[..., 2 * h:], out=m[..., :1])
        a = m
    return a


def _sum_keepdims(a: np.ndarray, dim: int) -> np.ndarray:
    """``np.sum(a, dim, keepdims=True)``; along a last axis as a GEMV against ones (~5x faster)."""
    if dim != a.ndim - 1 or a.dtype not in (np.float32, np.float64) or a.shape[-1] < 16:
        return np.sum(a, axis=dim, keepdims=True)
    return (a @ np.ones(a.shape[-1], a.dtype))[..., None]


@functools.lru_cache(maxsize=16)
def _future_mask(L: int, S: int) -> np.ndarray:
    """True above the diagonal: the keys a causal query may not see (top-left aligned, as torch)."""
    mask = np.triu(np.ones((L, S), dtype=bool), k=1)
    mask.flags.writeable = False
    return mask


# ========================================================================================= softmax
def _softmax_impl(x, *, dim, causal=False):
    if x.size == 0:
        return x.copy()
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        if causal:
            x = x.copy()
            np.copyto(x, -np.inf, where=_future_mask(*x.shape[-2:]))
            e = x
        else:
            e = None
        e = np.subtract(x, _max_keepdims(x, dim), out=e)
        np.exp(e, out=e)
        e /= _sum_keepdims(e, dim)
    return e


def _softmax_grad_impl(y, g, *, dim):
    out = g * y
    out -= y * _sum_keepdims(out, dim)            # y * (g - sum(g * y))
    return out


def _softmax_vjp(ctx, g):
    dim = ctx.attrs["dim"]
    if not state.grad_enabled:
        return (apply(SOFTMAX_GRAD, ctx.out, g, dim=dim),)
    y = apply(SOFTMAX, ctx.inputs[0], **ctx.attrs)    # differentiable in x for higher orders
    return (y * (g - (g * y).sum(dim, keepdim=True)),)


def _softmax_jvp(ctx, t):
    y = ctx.out
    return y * (t[0] - (t[0] * y).sum(ctx.attrs["dim"], keepdim=True))


SOFTMAX = defprim("softmax", _softmax_impl, _infer_float_same("softmax"), vjp=_softmax_vjp,
                  jvp=_softmax_jvp, save_output=True, save_inputs=False,
                  doc="exp(x - max) / sum(exp(x - max)) along dim")
SOFTMAX_GRAD = defprim("softmax_grad", _softmax_grad_impl, _infer_float_same("softmax_grad"),
                       differentiable=False, save_inputs=False,
                       doc="first-order softmax backward: y * (g - sum(g * y))")


# ===================================================================================== log_softmax
def _log_softmax_impl(x, *, dim):
    if x.size == 0:
        return x.copy()
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        shifted = x - _max_keepdims(x, dim)
        shifted -= np.log(_sum_keepdims(np.exp(shifted), dim))
    return shifted


def _log_softmax_grad_impl(y, g, *, dim):
    s = _sum_keepdims(g, dim)
    out = np.exp(y)
    out *= s
    np.subtract(g, out, out=out)                  # g - softmax * sum(g)
    return out


def _log_softmax_vjp(ctx, g):
    dim = ctx.attrs["dim"]
    if not state.grad_enabled:
        return (apply(LOG_SOFTMAX_GRAD, ctx.out, g, dim=dim),)
    p = apply(SOFTMAX, ctx.inputs[0], dim=dim)
    return (g - p * g.sum(dim, keepdim=True),)


def _log_softmax_jvp(ctx, t):
    p = ctx.out.exp()
    return t[0] - (p * t[0]).sum(ctx.attrs["dim"], keepdim=True)


LOG_SOFTMAX = defprim("log_softmax", _log_softmax_impl, _infer_float_same("log_softmax"), vjp=_log_softmax_vjp,
                      jvp=_log_softmax_jvp, save_output=True, save_inputs=False,
                      doc="x - max - log(sum(exp(x - max))) along dim")
LOG_SOFTMAX_GRAD = defprim("log_softmax_grad", _log_softmax_grad_impl, _infer_float_same("log_softmax_grad"),
                           differentiable=False, save_inputs=False,
                           doc="first-order log_softmax backward: g - exp(y) * sum(g)")


# ===================================================================================== standardize
def _rows(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray | None:
    """``x`` as (rows, K) when ``axes`` are its trailing dims (layer norm), else ``None``."""
    if axes != tuple(range(x.ndim - len(axes), x.ndim)) or x.dtype not in (np.float32, np.float64):
        return None
    k = math.prod(x.shape[x.ndim - len(axes):])
    return np.ascontiguousarray(x).reshape(-1, k)


def _row_mean(x2: np.ndarray) -> np.ndarray:
    # a GEMV against 1/K: ~5x faster than np.mean(axis=-1) on short rows
    return x2 @ np.full(x2.shape[1], 1.0 / x2.shape[1], x2.dtype)


def _row_mean_of_product(a2: np.ndarray, b2: np.ndarray) -> np.ndarray:
    out = np.einsum("ij,ij->i", a2, b2)
    out *= out.dtype.type(1.0 / a2.shape[1])
    return out


def _row_rstd(x2: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """(centered rows, 1 / sqrt(var + eps) per row)."""
    centered = x2 - _row_mean(x2)[:, None]
    var = _row_mean_of_product(centered, centered)
    var += eps
    return centered, (1.0 / np.sqrt(var)).astype(x2.dtype, copy=False)


def _rstd(x: np.ndarray, axes: tuple[int, ...], eps: float) -> np.ndarray:
    var = np.var(x, axis=axes, keepdims=True)
    var += eps
    return 1.0 / np.sqrt(var)


def _standardize_impl(x, *, axes, eps):
    if x.size == 0:
        return x.copy()
    x2 = _rows(x, axes)
    if x2 is not None:
        centered, rstd = _row_rstd(x2, eps)
        centered *= rstd[:, None]
        return centered.reshape(x.shape)
    out = x - np.mean(x, axis=axes, keepdims=True)
    out *= _rstd(x, axes, eps).astype(x.dtype, copy=False)
    return out


def _standardize_grad_impl(x, y, g, *, axes, eps):
    # the Jacobian of standardize is symmetric: rstd * (g - mean(g) - y * mean(g * y))
    x2 = _rows(x, axes)
    if x2 is not None:
        y2, g2 = np.ascontiguousarray(y).reshape(x2.shape), np.ascontiguousarray(g).reshape(x2.shape)
        _, rstd = _row_rstd(x2, eps)
        out = g2 - _row_mean(g2)[:, None]
        out -= y2 * _row_mean_of_product(g2, y2)[:, None]
        out *= rstd[:, None]
        return out.reshape(x.shape)
    gy = g * y
    out = g - np.mean(g, axis=axes, keepdims=True)
    out -= y * np.mean(gy, axis=axes, keepdims=True)
    out *= _rstd(x, axes, eps).astype(x.dtype, copy=False)
    return out


def _standardize_rule(x: Tensor, y: Tensor, v: Tensor, axes: tuple[int, ...], eps: float) -> Tensor:
    """The (self-adjoint) linearization, with differentiable ops."""
    centered = x - x.mean(axes, keepdim=True)
    rstd = ((centered * centered).mean(axes, keepdim=True) + eps).rsqrt()
    return rstd * (v - v.mean(axes, keepdim=True) - y * (v * y).mean(axes, keepdim=True))


def _standardize_vjp(ctx, g):
    axes, eps = ctx.attrs["axes"], ctx.attrs["eps"]
    x = ctx.inputs[0]
    if not state.grad_enabled:
        return (apply(STANDARDIZE_GRAD, x, ctx.out, g, axes=axes, eps=eps),)
    return (_standardize_rule(x, apply(STANDARDIZE, x, axes=axes, eps=eps), g, axes, eps),)


def _standardize_jvp(ctx, t):
    return _standardize_rule(ctx.inputs[0], ctx.out, t[0], ctx.attrs["axes"], ctx.attrs["eps"])


STANDARDIZE = defprim("standardize", _standardize_impl, _infer_float_same("standardize"), vjp=_standardize_vjp,
                      jvp=_standardize_jvp, save_output=True,
                      doc="(x - mean) / sqrt(var + eps) over axes (biased variance): the core of layer/group norm")
STANDARDIZE_GRAD = defprim("standardize_grad", _standardize_grad_impl, _infer_float_same("standardize_grad"),
                           differentiable=False,
                           doc="first-order standardize backward: rstd * (g - mean(g) - y * mean(g * y))")


# ========================================================================================= public
def softmax(x: Tensor, dim: int, causal: bool = False) -> Tensor:
    """Softmax along ``dim`` as one primitive (``nn.functional.softmax`` adds dtype handling).
    ``causal=True`` (last dim only) first masks the keys above the diagonal of the last two dims."""
    dim = normalize_axis("softmax", dim, x.ndim)
    if causal and (x.ndim < 2 or dim != x.ndim - 1):
        raise op_error("softmax", "causal masking needs the softmax over the last of at least 2 dims",
                       actual=f"shape {tuple(x.shape)}, dim {dim}")
    return apply(SOFTMAX, x, dim=dim, causal=bool(causal))


def log_softmax(x: Tensor, dim: int) -> Tensor:
    """Log-softmax along ``dim`` as one primitive."""
    return apply(LOG_SOFTMAX, x, dim=normalize_axis("log_softmax", dim, x.ndim))


def standardize(x: Tensor, axes: tuple[int, ...], eps: float) -> Tensor:
    """``(x - mean) / sqrt(var + eps)`` over ``axes`` (non-negative, sorted) as one primitive."""
    return apply(STANDARDIZE, x, axes=tuple(int(a) for a in axes), eps=float(eps))
