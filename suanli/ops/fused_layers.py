"""Layer-sized primitives made by the inference pattern passes (:mod:`suanli.compiler.passes.patterns`).

* ``linear(x, w, b)`` -- ``x @ w + b`` for ``x`` (..., K), ``w`` (K, N), ``b`` (N,): one folded GEMM
  with the bias added in place (no second output buffer).
* ``attention(q, kt, v[, mask], scale, causal)`` -- ``softmax(q @ kt * scale + mask) @ v`` over the
  last axis for ``q`` (..., L, E), ``kt`` (..., E, S) (the key already transposed: the layout the
  matched graph has), ``v`` (..., S, Ev) and an additive float ``mask`` broadcastable to (..., L, S);
  ``causal`` hides the keys above the diagonal as the ``softmax`` primitive does. The scores are
  scaled, masked and normalised in place in one buffer.

Both are differentiable (VJP and JVP written with suanli ops, so any order works), although the
passes only make them in inference graphs.

>>> import numpy as np, suanli
>>> from suanli.ops.registry import apply
>>> x, w, b = suanli.ones(2, 3), suanli.ones(3, 4), suanli.tensor([0.5, 0, 0, 0])
>>> apply(LINEAR, x, w, b).tolist()[0]
[3.5, 3.0, 3.0, 3.0]
>>> q = k = v = suanli.ones(1, 2, 3, 4)
>>> apply(ATTENTION, q, k.transpose(-1, -2), v, scale=0.5, causal=False).shape
(1, 2, 3, 4)
"""
from __future__ import annotations

import math

import numpy as np

from .. import dtypes as _dt
from .. import native
from ..errors import DTypeError, op_error
from ._helpers import add_tangents, broadcast_shapes
from .fused import SOFTMAX, _future_mask, _max_keepdims, _sum_keepdims
from .registry import Spec, apply, defprim, spec_str

__all__ = ["LINEAR", "ATTENTION"]


def _same_float(op: str, *specs: Spec) -> None:
    if specs[0].dtype not in _dt.FLOATING or any(s.dtype != specs[0].dtype for s in specs):
        raise op_error(op, "expects floating-point inputs of one dtype", actual=spec_str(*specs),
                       hint="cast the inputs to one float dtype", cls=DTypeError)


# ========================================================================================== linear
def _linear_impl(x, w, b):
    rows = math.prod(x.shape[:-1])
    out = np.matmul(x.reshape(rows, x.shape[-1]), w)      # one GEMM for all leading dims
    out += b
    return out.reshape(x.shape[:-1] + (w.shape[1],))


def _infer_linear(x: Spec, w: Spec, b: Spec) -> Spec:
    _same_float("linear", x, w, b)
    if len(x.shape) < 1 or len(w.shape) != 2 or tuple(b.shape) != (w.shape[1],) or x.shape[-1] != w.shape[0]:
        raise op_error("linear", "shapes do not fit x (..., K) @ w (K, N) + b (N,)", actual=spec_str(x, w, b),
                       hint="use matmul + add for other shapes")
    return Spec(tuple(x.shape[:-1]) + (w.shape[1],), x.dtype)


def _linear_vjp(ctx, g):
    x, w, _ = ctx.inputs
    gx = g @ w.transpose(0, 1) if ctx.needs[0] else None
    gw = None
    if ctx.needs[1]:
        k, n = w.shape
        gw = x.reshape(-1, k).transpose(0, 1) @ g.reshape(-1, n)
    gb = g.reshape(-1, w.shape[1]).sum(0) if ctx.needs[2] else None
    return gx, gw, gb


def _linear_jvp(ctx, t):
    x, w, _ = ctx.inputs
    tx, tw, tb = t
    return add_tangents(None if tx is None else tx @ w, None if tw is None else x @ tw, tb)


LINEAR = defprim("linear", _linear_impl, _infer_linear, vjp=_linear_vjp, jvp=_linear_jvp,
                 doc="x @ w + b for x (..., K), w (K, N), b (N,): one GEMM, bias added in place")


# ======================================================================================= attention
def _scores(q, kt, mask, scale, causal):
    s = np.matmul(q, kt)                                   # (..., L, S), a fresh buffer we own
    if scale != 1.0:
        s *= s.dtype.type(scale)
    if mask:
        s += mask[0]
    if causal:
        np.copyto(s, -np.inf, where=_future_mask(*s.shape[-2:]))
    return s


# a row whose sum after the one shared shift is below this is redone with its own maximum: the
# shared shift then left its largest term below exp(-30), still a normal float (no precision lost)
_LOW_SUM = math.exp(-30.0)


def _softmax_shared_shift(s: np.ndarray) -> bool:
    """Softmax over the last axis in place, shifted by the maximum of the whole array instead of
    each row's (softmax is shift-invariant; a whole-array max costs ~10x less than row maxima on
    rows of 128). False (``s`` clobbered) when some row would lose precision or ``s`` is not finite."""
    top = s.max()
    if not np.isfinite(top):
        return False
    s -= top
    np.exp(s, out=s)
    total = _sum_keepdims(s, s.ndim - 1)
    if total.min() < _LOW_SUM:
        return False
    s /= total
    return True


def _attention_impl(q, kt, v, *mask, scale, causal):
    # one BLAS call per head on (L, E) @ (E, S) blocks: OpenBLAS's threads only add hand-offs there
    # (MiniLM shape (1, 12, 128, 32), 6 layers: 3.7 ms with two BLAS threads, 3.25 ms with one;
    # splitting the heads between two Python threads instead measured no faster)
    with native.blas_threads(1):
        return _attention_single(q, kt, v, mask, scale, causal)


def _attention_single(q, kt, v, mask, scale, causal):
    s = _scores(q, kt, mask, scale, causal)
    if s.size == 0:
        return np.matmul(s, v)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        if not _softmax_shared_shift(s):
            s = _scores(q, kt, mask, scale, causal)            # rare: the softmax primitive's steps, in place
            s -= _max_keepdims(s, s.ndim - 1)
            np.exp(s, out=s)
            s /= _sum_keepdims(s, s.ndim - 1)
    return np.matmul(s, v)


def _infer_attention(q: Spec, kt: Spec, v: Spec, *mask: Spec, scale, causal) -> Spec:
    _same_float("attention", q, kt, v, *mask)
    lead = tuple(q.shape[:-2])
    if (len(q.shape) < 2 or len(mask) > 1 or tuple(kt.shape[:-2]) != lead or tuple(v.shape[:-2]) != lead
            or q.shape[-1] != kt.shape[-2] or kt.shape[-1] != v.shape[-2]):
        raise op_error("attention", "shapes do not fit q (..., L, E), kt (..., E, S), v (..., S, Ev)[, mask]",
                       actual=spec_str(q, kt, v, *mask), hint="use matmul + softmax for other shapes")
    scores = lead + (q.shape[-2], kt.shape[-1])
    if mask and broadcast_shapes("attention", scores, tuple(mask[0].shape)) != scores:
        raise op_error("attention", "the mask must broadcast to the scores (..., L, S)",
                       actual=spec_str(q, kt, *mask))
    return Spec(lead + (q.shape[-2], v.shape[-1]), q.dtype)


def _probs(ctx):
    """The attention weights, recomputed with differentiable ops."""
    q, kt, _, *mask = ctx.inputs
    s = (q @ kt) * ctx.attrs["scale"]
    if mask:
        s = s + mask[0]
    return apply(SOFTMAX, s, dim=s.ndim - 1, causal=ctx.attrs["causal"])


def _attention_vjp(ctx, g):
    q, kt, v, *mask = ctx.inputs
    scale = ctx.attrs["scale"]
    p = _probs(ctx)
    gp = g @ v.transpose(-1, -2)
    gs = p * (gp - (gp * p).sum(-1, keepdim=True))       # the softmax VJP
    gq = (gs @ kt.transpose(-1, -2)) * scale if ctx.needs[0] else None
    gkt = (q.transpose(-1, -2) @ gs) * scale if ctx.needs[1] else None
    gv = p.transpose(-1, -2) @ g if ctx.needs[2] else None
    return (gq, gkt, gv) + ((gs,) if mask else ())        # the engine sums gs back to the mask's shape


def _attention_jvp(ctx, t):
    q, kt, v, *mask = ctx.inputs
    tq, tkt, tv, *tmask = t
    p = _probs(ctx)
    ts = add_tangents(None if tq is None else tq @ kt, None if tkt is None else q @ tkt)
    ts = None if ts is None else ts * ctx.attrs["scale"]
    ts = add_tangents(ts, tmask[0] if tmask else None)
    tp = None if ts is None else p * (ts - (ts * p).sum(-1, keepdim=True))
    return add_tangents(None if tp is None else tp @ v, None if tv is None else p @ tv)


ATTENTION = defprim("attention", _attention_impl, _infer_attention, vjp=_attention_vjp, jvp=_attention_jvp,
                    doc="softmax(q @ kt * scale + mask) @ v over the last axis; kt is the key transposed")
