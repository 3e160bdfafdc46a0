"""ONNX shape, layout, slicing, gather/scatter and constant-making ops.

Shapes, starts/ends, axes and pads are read as concrete values; the data moves through suanli ops
(reshape, permute, slice, index, index_put, gather, scatter), so gradients flow to it.

>>> import suanli
>>> from suanli.onnx.table import lookup
>>> from suanli.onnx.ops_shape import onnx_op
>>> lookup("", "Shape", 19)(type("C", (), {"get": lambda s, k, d=None: d})(), suanli.zeros(2, 3)).tolist()
[2, 3]
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import ops as S
from ..tensor import Tensor
from ._util import P, cast, const, expand, ints, norm_axes, np_dtype, permute, reshape, scalar
from .errors import onnx_error
from .table import onnx_op


# ------------------------------------------------------------------------------ metadata
@onnx_op("Shape")
def shape(ctx, x):
    dims = list(x.shape)
    start, end = ctx.get("start", 0), ctx.get("end", None)
    return const(np.array(dims[slice(start, end)], dtype=np.int64))


@onnx_op("Size")
def size(ctx, x):
    return const(np.int64(int(np.prod(x.shape))))


@onnx_op("Constant")
def constant(ctx):
    for key, dtype in (("value", None), ("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64), ("value_string", object),
                       ("value_strings", object)):
        if key in ctx.attrs:
            return const(np.array(ctx.attrs[key], dtype=dtype))
    raise onnx_error(ctx.where, "Constant has no value attribute", hint="set value / value_float / value_ints ...")


@onnx_op("ConstantOfShape")
def constant_of_shape(ctx, dims):
    value = ctx.get("value")
    fill = np.zeros(1, np.float32) if value is None else np.asarray(value).reshape(-1)
    return const(np.full(tuple(ints(dims)), fill[0], dtype=fill.dtype))


@onnx_op("Range")
def range_(ctx, start, limit, delta):
    s, lim, d = (t._data.item() for t in (start, limit, delta))
    n = max(int(np.ceil((lim - s) / d)), 0)
    return const((s + np.arange(n) * d).astype(start.dtype))


@onnx_op("EyeLike")
def eye_like(ctx, x):
    dtype = np_dtype(ctx.get("dtype")) if ctx.get("dtype") is not None else x.dtype
    return const(np.eye(x.shape[0], x.shape[1], k=ctx.get("k", 0), dtype=dtype))


# ------------------------------------------------------------------------------ reshapes
@onnx_op("Reshape")
def reshape_(ctx, x, shp=None):
    target = ints(shp) if shp is not None else ctx.get("shape")
    if not ctx.get("allowzero", 0):   # 0 copies the input's size at that position
        target = [x.shape[i] if s == 0 else s for i, s in enumerate(target)]
    known = int(np.prod([s for s in target if s != -1]))
    if -1 in target:
        target[target.index(-1)] = int(np.prod(x.shape)) // known if known else 0
    if int(np.prod(target)) != int(np.prod(x.shape)):
        raise onnx_error(ctx.where, "cannot reshape", expect=f"{int(np.prod(x.shape))} elements",
                         actual=f"input {tuple(x.shape)} to {ints(shp) if shp is not None else target}")
    return reshape(x, target)


@onnx_op("Flatten")
def flatten(ctx, x):
    axis = ctx.get("axis", 1)
    axis = axis + x.ndim if axis < 0 else axis
    return reshape(x, (int(np.prod(x.shape[:axis])), int(np.prod(x.shape[axis:]))))


@onnx_op("Squeeze")
def squeeze(ctx, x, axes=None):
    ax = ints(axes) if axes is not None else ctx.get("axes")
    ax = [i for i, n in enumerate(x.shape) if n == 1] if ax is None else norm_axes(ax, x.ndim)
    return reshape(x, [n for i, n in enumerate(x.shape) if i not in ax])


@onnx_op("Unsqueeze")
def unsqueeze(ctx, x, axes=None):
    ax = ints(axes) if axes is not None else ctx.get("axes")
    out_rank = x.ndim + len(ax)
    ax = sorted(a % out_rank for a in ax)
    dims = list(x.shape)
    for a in ax:
        dims.insert(a, 1)
    return reshape(x, dims)


@onnx_op("Transpose")
def transpose(ctx, x):
    perm = ctx.get("perm") or list(range(x.ndim))[::-1]
    return permute(x, perm)


@onnx_op("Expand")
def expand_(ctx, x, shp):
    target = S.broadcast_shapes(tuple(x.shape), tuple(ints(shp)))
    return expand(x, target) if tuple(target) != tuple(x.shape) else P("copy", x)


@onnx_op("Tile")
def tile(ctx, x, repeats):
    return S.tile(x, tuple(ints(repeats))) if x.ndim else P("copy", x)


@onnx_op("Concat")
def concat(ctx, *xs):
    axis = ctx.get("axis") % xs[0].ndim
    return P("cat", *xs, axis=axis)


@onnx_op("Split")
def split(ctx, x, sizes=None, num_outputs_unused=None):
    axis = ctx.get("axis", 0) % x.ndim
    n = x.shape[axis]
    parts = ints(sizes) if sizes is not None else ctx.get("split")
    if not parts:
        k = ctx.get("num_outputs", ctx.n_outputs)
        step = -(-n // k)    # ceil: the last chunk may be smaller (opset 18)
        parts = [min(step, n - i * step) for i in range(k)]
    return tuple(_slice_axis(x, axis, lo, lo + p) for lo, p in zip(np.cumsum([0] + parts[:-1]), parts))


def _slice_axis(x: Tensor, axis: int, start: int, stop: int, step: int = 1) -> Tensor:
    key = tuple((0, n, 1) for n in x.shape[:axis]) + ((int(start), int(stop), int(step)),)
    return P("slice", x, key=key)


@onnx_op("Slice")
def slice_(ctx, x, starts=None, ends=None, axes=None, steps=None):
    if ctx.opset < 10:
        starts, ends, axes = ctx.get("starts"), ctx.get("ends"), ctx.get("axes")
    else:
        starts, ends, axes, steps = ints(starts), ints(ends), ints(axes), ints(steps)
    axes = list(range(len(starts))) if axes is None else [a % x.ndim for a in axes]
    steps = steps or [1] * len(starts)
    out = x
    for a, s, e, st in zip(axes, starts, ends, steps):
        lo, hi, step = slice(s, e, st).indices(x.shape[a])
        if step > 0:
            out = _slice_axis(out, a, lo, max(hi, lo), step)
        else:   # a negative step: gather the positions NumPy would visit
            idx = np.arange(lo, hi, step)
            out = out[(slice(None),) * a + (const(idx),)]
    return out if out is not x else P("copy", x)


# ------------------------------------------------------------------------------ padding
@onnx_op("Pad")
def pad(ctx, x, pads=None, value=None, axes=None):
    mode = ctx.get("mode", "constant")
    pads = ints(pads) if pads is not None else ctx.get("pads")
    axes = [a % x.ndim for a in ints(axes)] if axes is not None else list(range(x.ndim))
    k = len(axes)
    pairs = [(0, 0)] * x.ndim
    for i, a in enumerate(axes):
        pairs[a] = (pads[i], pads[i + k])
    if mode == "constant":
        fill = value._data.item() if value is not None and value.numel() else ctx.get("value", 0.0)
        return P("pad", x, pads=tuple(pairs), value=np.asarray(fill, x.dtype).item())
    torch_mode = {"reflect": "reflect", "edge": "replicate", "wrap": "circular"}[mode]
    flat = [p for lo_hi in reversed(pairs) for p in lo_hi]
    return S.pad(x, flat, mode=torch_mode)


# ------------------------------------------------------------------------------ gather / scatter
def _wrap_negative(idx: Tensor, n: int) -> Tensor:
    return P("where", P("lt", idx, scalar(idx, 0)), P("add", idx, scalar(idx, n)), idx)


@onnx_op("Gather")
def gather(ctx, x, idx):
    axis = ctx.get("axis", 0) % x.ndim
    return x[(slice(None),) * axis + (_wrap_negative(idx, x.shape[axis]),)]


@onnx_op("GatherElements")
def gather_elements(ctx, x, idx):
    axis = ctx.get("axis", 0) % x.ndim
    return P("gather", x, cast(_wrap_negative(idx, x.shape[axis]), np.int64), dim=axis)


def _nd_key(x: Tensor, idx: Tensor, batch_dims: int) -> tuple:
    """The advanced-index tuple of GatherND/ScatterND: batch aranges, then idx[..., i]."""
    k = idx.shape[-1]
    lead = idx.shape[:-1]
    key: list[Any] = []
    for b in range(batch_dims):
        shape = [1] * len(lead)
        shape[b] = x.shape[b]
        key.append(const(np.arange(x.shape[b]).reshape(shape)))
    arr = np.asarray(idx._data, dtype=np.int64)
    for i in range(k):
        col = arr[..., i]
        key.append(const(np.where(col < 0, col + x.shape[batch_dims + i], col)))
    return tuple(key)


@onnx_op("GatherND")
def gather_nd(ctx, x, idx):
    b = ctx.get("batch_dims", 0)
    key = _nd_key(x, idx, b)
    if not key:
        return P("copy", x)
    return x[key]


def _scatter_with(x: Tensor, key: tuple, updates: Tensor, reduction: str) -> Tensor:
    idx = [k if isinstance(k, Tensor) else const(k) for k in key]
    full = np.broadcast_shapes(*[t.shape for t in idx]) if idx else ()
    upd = expand(updates, full + tuple(x.shape[len(idx):])) if updates.shape != full + tuple(x.shape[len(idx):]) else updates
    if reduction == "none":
        return S.index_put(x, tuple(idx), upd, accumulate=False)
    if reduction == "add":
        return S.index_put(x, tuple(idx), upd, accumulate=True)
    return P("index_reduce", x, upd, *[cast(t, np.int64) for t in idx], reduction=reduction)


@onnx_op("ScatterND")
def scatter_nd(ctx, x, idx, updates):
    return _scatter_with(x, _nd_key(x, idx, 0), updates, ctx.get("reduction", "none"))


@onnx_op("ScatterElements", "Scatter")
def scatter_elements(ctx, x, idx, updates):
    axis = ctx.get("axis", 0) % x.ndim
    arr = np.asarray(idx._data, dtype=np.int64)
    arr = np.where(arr < 0, arr + x.shape[axis], arr)
    # ScatterElements is ScatterND with every coordinate spelled out: position grids plus `idx` on `axis`
    grids = list(np.indices(arr.shape, sparse=True))
    grids[axis] = arr
    key = tuple(const(np.broadcast_to(g, arr.shape)) for g in grids)
    return _scatter_with(x, key, updates, ctx.get("reduction", "none"))


@onnx_op("Compress")
def compress(ctx, x, cond):
    keep = np.nonzero(np.asarray(cond._data, bool))[0]
    axis = ctx.get("axis")
    if axis is None:
        return reshape(x, (-1,))[(const(keep),)]
    axis %= x.ndim
    keep = keep[keep < x.shape[axis]]
    return x[(slice(None),) * axis + (const(keep),)]


@onnx_op("NonZero")
def nonzero(ctx, x):
    return const(np.array(np.nonzero(x._data), dtype=np.int64).reshape(x.ndim, -1))


@onnx_op("OneHot")
def one_hot(ctx, idx, depth, values):
    d = int(np.asarray(depth._data).reshape(-1)[0])
    axis = ctx.get("axis", -1) % (idx.ndim + 1)
    i = cast(idx, np.int64)
    i = P("where", P("lt", i, scalar(i, 0)), P("add", i, scalar(i, d)), i)
    shape = [1] * (idx.ndim + 1)
    shape[axis] = d
    hot = P("eq", S.unsqueeze(i, axis), const(np.arange(d).reshape(shape)))
    off, on = values[0:1], values[1:2]
    return P("where", hot, reshape(on, ()), reshape(off, ()))


@onnx_op("Trilu")
def trilu(ctx, x, k=None):
    diag = ints(k)[0] if k is not None else 0
    return P("triu" if ctx.get("upper", 1) else "tril", x, k=diag)


@onnx_op("TopK")
def topk(ctx, x, k):
    kk = ints(k)[0]
    axis = ctx.get("axis", -1) % x.ndim
    largest, sorted_ = ctx.get("largest", 1), ctx.get("sorted", 1)
    data = np.asarray(x._data)
    # the order is metadata (an index computation); values are gathered with a differentiable op
    key = -data if largest else data
    order = np.argsort(key, axis=axis, kind="stable")
    idx = np.take(order, np.arange(kk), axis=axis)
    if not sorted_:
        idx = np.sort(idx, axis=axis)
    idx_t = const(idx.astype(np.int64))
    return P("gather", x, idx_t, dim=axis), idx_t


@onnx_op("Unique")
def unique(ctx, x):
    axis = ctx.get("axis")
    data = np.asarray(x._data)
    vals, first, inverse, counts = np.unique(data, return_index=True, return_inverse=True, return_counts=True,
                                             axis=axis)
    if not ctx.get("sorted", 1):    # order of first occurrence
        order = np.argsort(first, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        vals = np.take(vals, order, axis=0 if axis is None else axis)
        first, counts, inverse = first[order], counts[order], rank[inverse.reshape(-1)]
    return (const(vals), const(first.astype(np.int64)), const(inverse.reshape(-1).astype(np.int64)),
            const(counts.astype(np.int64)))


@onnx_op("DepthToSpace")
def depth_to_space(ctx, x):
    b = ctx.get("blocksize")
    n, c, h, w = x.shape
    if ctx.get("mode", "DCR") == "DCR":
        y = permute(reshape(x, (n, b, b, c // (b * b), h, w)), (0, 3, 4, 1, 5, 2))
    else:
        y = permute(reshape(x, (n, c // (b * b), b, b, h, w)), (0, 1, 4, 2, 5, 3))
    return reshape(y, (n, c // (b * b), h * b, w * b))


@onnx_op("SpaceToDepth")
def space_to_depth(ctx, x):
    b = ctx.get("blocksize")
    n, c, h, w = x.shape
    perm = (0, 1, 3, 5, 2, 4) if ctx.get("mode", "DCR") == "CRD" else (0, 3, 5, 1, 2, 4)
    y = permute(reshape(x, (n, c, h // b, b, w // b, b)), perm)
    return reshape(y, (n, c * b * b, h // b, w // b))


@onnx_op("ReverseSequence")
def reverse_sequence(ctx, x, lens):
    batch_axis, time_axis = ctx.get("batch_axis", 1), ctx.get("time_axis", 0)
    L = np.asarray(lens._data, np.int64)
    T = x.shape[time_axis]
    t = np.arange(T)[:, None]
    src = np.where(t < L[None, :], L[None, :] - 1 - t, t)       # (T, B): time index to read
    shape = [1] * x.ndim
    shape[time_axis], shape[batch_axis] = T, len(L)
    src = src if time_axis < batch_axis else src.T
    idx = np.broadcast_to(src.reshape(shape), x.shape)
    return P("gather", x, const(np.ascontiguousarray(idx)), dim=time_axis)


@onnx_op("CenterCropPad")
def center_crop_pad(ctx, x, shp):
    axes = ctx.get("axes") or list(range(x.ndim))
    out = x
    for a, target in zip([a % x.ndim for a in axes], ints(shp)):
        n = out.shape[a]
        if target < n:
            lo = (n - target) // 2
            out = _slice_axis(out, a, lo, lo + target)
        elif target > n:
            lo = (target - n) // 2
            pads = tuple((lo, target - n - lo) if i == a else (0, 0) for i in range(x.ndim))
            out = P("pad", out, pads=pads, value=np.zeros((), x.dtype).item())
    return out if out is not x else P("copy", x)
