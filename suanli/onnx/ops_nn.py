"""ONNX neural-network ops: Conv/ConvTranspose, pooling, normalizations, Resize, Dropout, LRN.

Convolutions of any rank run on suanli's 2-d convolution primitive (1-d by a unit height, 3-d as a
sum over kernel depth of 2-d convolutions); pooling takes the window's strided slices and reduces
them, which works for every rank, dilation and ceil mode.

>>> import suanli
>>> from suanli.onnx.ops_nn import pads_for
>>> pads_for("SAME_UPPER", [5], [3], [2], [1], None)
[1, 1]
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .. import ops as S
from ..ops.conv import CONV2D, CONV2D_INPUT_GRAD
from ..ops.registry import apply
from ..tensor import Tensor
from ._util import P, cast, const, expand, ints, is_float, permute, reshape, scalar
from .errors import onnx_error
from .table import onnx_op


def pads_for(auto_pad: str, in_size: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
             dilations: Sequence[int], pads: Sequence[int] | None) -> list[int]:
    """Explicit ``[begin..., end...]`` pads from ONNX's ``auto_pad`` rule."""
    k = len(kernel)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for n, kk, s, d in zip(in_size, kernel, strides, dilations):
            out = -(-n // s)
            total = max((out - 1) * s + (kk - 1) * d + 1 - n, 0)
            small, big = total // 2, total - total // 2
            begin.append(small if auto_pad == "SAME_UPPER" else big)
            end.append(big if auto_pad == "SAME_UPPER" else small)
        return begin + end
    if auto_pad == "VALID":
        return [0] * (2 * k)
    return list(pads) if pads else [0] * (2 * k)


def _geometry(ctx, x: Tensor, kernel: Sequence[int]):
    k = len(kernel)
    strides = ctx.get("strides") or [1] * k
    dilations = ctx.get("dilations") or [1] * k
    pads = pads_for(ctx.get("auto_pad", "NOTSET"), x.shape[2:], kernel, strides, dilations, ctx.get("pads"))
    return strides, dilations, pads


# ------------------------------------------------------------------------------ convolution
def conv_nd(x: Tensor, w: Tensor, strides, dilations, pads, groups: int) -> Tensor:
    """N-d cross-correlation (1, 2 or 3 spatial dims) on the conv2d primitive."""
    k = w.ndim - 2
    if k == 1:
        y = conv_nd(reshape(x, x.shape[:2] + (1,) + x.shape[2:]), reshape(w, w.shape[:2] + (1,) + w.shape[2:]),
                    [1] + list(strides), [1] + list(dilations), [0, pads[0], 0, pads[1]], groups)
        return reshape(y, y.shape[:2] + y.shape[3:])
    if k == 2:
        return apply(CONV2D, x, w, stride=tuple(strides), padding=((pads[0], pads[2]), (pads[1], pads[3])),
                     dilation=tuple(dilations), groups=int(groups))
    if k == 3:
        # out[:, :, d] = sum_kd conv2d(x_padded[:, :, d*s + kd*dil], w[:, :, kd]); batch the depth into N
        x = P("pad", x, pads=((0, 0), (0, 0), (pads[0], pads[3]), (0, 0), (0, 0)), value=0)
        N, C, D = x.shape[:3]
        kd = w.shape[2]
        sd, dd = strides[0], dilations[0]
        Do = (D - (kd - 1) * dd - 1) // sd + 1
        out = None
        for j in range(kd):
            xs = P("slice", x, key=((0, N, 1), (0, C, 1), (j * dd, j * dd + (Do - 1) * sd + 1, sd)))
            xs = reshape(permute(xs, (0, 2, 1, 3, 4)), (N * Do, C) + x.shape[3:])
            wj = reshape(P("slice", w, key=((0, w.shape[0], 1), (0, w.shape[1], 1), j)), w.shape[:2] + w.shape[3:])
            y = conv_nd(xs, wj, strides[1:], dilations[1:], [pads[1], pads[2], pads[4], pads[5]], groups)
            out = y if out is None else P("add", out, y)
        return permute(reshape(out, (N, Do) + out.shape[1:]), (0, 2, 1, 3, 4))
    raise onnx_error("Conv", f"{k}-d convolution is not supported", expect="1, 2 or 3 spatial dims",
                     actual=f"weight {tuple(w.shape)}")


def _add_channel_bias(y: Tensor, b: Tensor | None) -> Tensor:
    if b is None:
        return y
    return P("add", y, reshape(b, (1, -1) + (1,) * (y.ndim - 2)))


@onnx_op("Conv")
def conv(ctx, x, w, b=None):
    kernel = ctx.get("kernel_shape") or list(w.shape[2:])
    strides, dilations, pads = _geometry(ctx, x, kernel)
    return _add_channel_bias(conv_nd(x, w, strides, dilations, pads, ctx.get("group", 1)), b)


@onnx_op("ConvTranspose")
def conv_transpose(ctx, x, w, b=None):
    k = w.ndim - 2
    kernel = ctx.get("kernel_shape") or list(w.shape[2:])
    strides = ctx.get("strides") or [1] * k
    dilations = ctx.get("dilations") or [1] * k
    out_pad = ctx.get("output_padding") or [0] * k
    groups = ctx.get("group", 1)
    in_size = x.shape[2:]
    full = [s * (n - 1) + op + (kk - 1) * d + 1 for n, s, op, kk, d in zip(in_size, strides, out_pad, kernel, dilations)]
    auto_pad = ctx.get("auto_pad", "NOTSET")
    if ctx.get("output_shape") and auto_pad not in ("SAME_UPPER", "SAME_LOWER") and not ctx.get("pads"):
        # the output is the first `output_shape` cells of the full result: crop or zero-fill at the end
        target = list(ctx.get("output_shape"))[-k:]
        pads = [0] * k + [f - t for f, t in zip(full, target)]
    elif ctx.get("output_shape"):
        target = list(ctx.get("output_shape"))[-k:]
        total = [f - t for f, t in zip(full, target)]
        upper = auto_pad == "SAME_UPPER"
        pads = [t // 2 if upper else t - t // 2 for t in total] + [t - t // 2 if upper else t // 2 for t in total]
    elif ctx.get("auto_pad", "NOTSET") in ("SAME_UPPER", "SAME_LOWER"):
        total = [f - n * s for f, n, s in zip(full, in_size, strides)]
        upper = ctx.get("auto_pad") == "SAME_UPPER"
        pads = [t // 2 if upper else t - t // 2 for t in total] + [t - t // 2 if upper else t // 2 for t in total]
    else:
        pads = ctx.get("pads") or [0] * (2 * k)
    return _add_channel_bias(conv_transpose_nd(x, w, strides, dilations, pads, out_pad, groups), b)


def conv_transpose_nd(x, w, strides, dilations, pads, out_pad, groups) -> Tensor:
    """The adjoint of :func:`conv_nd` in its input (1-d or 2-d), output cropped by ``pads``."""
    k = w.ndim - 2
    if k == 1:
        y = conv_transpose_nd(reshape(x, x.shape[:2] + (1,) + x.shape[2:]), reshape(w, w.shape[:2] + (1,) + w.shape[2:]),
                              [1] + list(strides), [1] + list(dilations), [0, pads[0], 0, pads[1]], [0] + list(out_pad),
                              groups)
        return reshape(y, y.shape[:2] + y.shape[3:])
    if k == 3:
        return _conv_transpose_3d(x, w, strides, dilations, pads, out_pad, groups)
    if k != 2:
        raise onnx_error("ConvTranspose", f"{k}-d transposed convolution is not supported",
                         expect="1, 2 or 3 spatial dims", actual=f"weight {tuple(w.shape)}")
    # the input gradient of conv2d with weight (C_in, C_out/g, kh, kw) seen as conv2d's (O, C/g, ...)
    full = [s * (n - 1) + op + (kk - 1) * d + 1 for n, s, op, kk, d in zip(x.shape[2:], strides, out_pad, w.shape[2:], dilations)]
    size = tuple(f - pads[i] - pads[i + k] for i, f in enumerate(full))
    neg = [p < 0 for p in pads]
    if any(neg):      # negative pads grow the output: compute unpadded, then pad with zeros
        y = conv_transpose_nd(x, w, strides, dilations, [max(p, 0) for p in pads], out_pad, groups)
        grow = tuple((max(-pads[i], 0), max(-pads[i + k], 0)) for i in range(k))
        return P("pad", y, pads=((0, 0), (0, 0)) + grow, value=0)
    extra = [op // s for op, s in zip(out_pad, strides)]
    if any(extra):
        x = P("pad", x, pads=((0, 0), (0, 0)) + tuple((0, e) for e in extra), value=0)
    return apply(CONV2D_INPUT_GRAD, x, w, input_size=size, stride=tuple(strides),
                 padding=((pads[0], pads[2]), (pads[1], pads[3])), dilation=tuple(dilations), groups=int(groups))


def _conv_transpose_3d(x, w, strides, dilations, pads, out_pad, groups) -> Tensor:
    """3-d transposed convolution: per kernel depth ``j``, a 2-d one over (H, W) with the input depth
    folded into the batch, placed at output depths ``d * stride + j * dilation``; then crop ``pads``."""
    N, C, D = x.shape[:3]
    sd, dd, kd = strides[0], dilations[0], w.shape[2]
    full_d = sd * (D - 1) + out_pad[0] + (kd - 1) * dd + 1
    xs = reshape(permute(x, (0, 2, 1, 3, 4)), (N * D, C) + x.shape[3:])
    out = None
    for j in range(kd):
        wj = reshape(P("slice", w, key=((0, w.shape[0], 1), (0, w.shape[1], 1), (j, j + 1, 1))), w.shape[:2] + w.shape[3:])
        y = conv_transpose_nd(xs, wj, strides[1:], dilations[1:], [pads[1], pads[2], pads[4], pads[5]],
                              out_pad[1:], groups)
        y = reshape(y, (N, D, 1) + y.shape[1:])                          # (N, D, 1, Co, Ho, Wo)
        if sd > 1:   # interleave stride-1 zero planes: depth d lands on d * stride
            y = P("pad", y, pads=((0, 0), (0, 0), (0, sd - 1)) + ((0, 0),) * 3, value=0)
        y = reshape(y, (N, D * sd) + y.shape[3:])
        y = P("slice", y, key=((0, N, 1), (0, (D - 1) * sd + 1, 1)) + tuple((0, n, 1) for n in y.shape[2:]))
        before = j * dd
        y = P("pad", y, pads=((0, 0), (before, full_d - before - y.shape[1])) + ((0, 0),) * 3, value=0)
        out = y if out is None else P("add", out, y)
    lo, hi = pads[0], pads[3]
    if lo < 0 or hi < 0:     # negative pads grow the output
        out = P("pad", out, pads=((0, 0), (max(-lo, 0), max(-hi, 0))) + ((0, 0),) * 3, value=0)
        lo, hi = max(lo, 0), max(hi, 0)
    out = P("slice", out, key=((0, N, 1), (lo, out.shape[1] - hi, 1)) + tuple((0, n, 1) for n in out.shape[2:]))
    return permute(out, (0, 2, 1, 3, 4))


# ------------------------------------------------------------------------------ pooling
def _pool_windows(x: Tensor, kernel, strides, dilations, pads, ceil_mode: bool, fill: float):
    """The strided slices of a padded ``x``, one per kernel offset, plus the output size."""
    k = len(kernel)
    in_size = x.shape[2:]
    out = []
    extra = []
    for i in range(k):
        span = (kernel[i] - 1) * dilations[i] + 1
        total = in_size[i] + pads[i] + pads[i + k] - span
        n = (-(-total // strides[i]) if ceil_mode else total // strides[i]) + 1
        if ceil_mode and (n - 1) * strides[i] >= in_size[i] + pads[i]:
            n -= 1           # a window may not start in the end padding
        out.append(n)
        extra.append(max((n - 1) * strides[i] + span - (in_size[i] + pads[i] + pads[i + k]), 0))
    widths = ((0, 0), (0, 0)) + tuple((pads[i], pads[i + k] + extra[i]) for i in range(k))
    xp = P("pad", x, pads=widths, value=np.asarray(fill, x.dtype).item()) if any(sum(w) for w in widths) else x
    windows = []
    for offset in np.ndindex(*kernel):
        key = ((0, x.shape[0], 1), (0, x.shape[1], 1)) + tuple(
            (o * dilations[i], o * dilations[i] + (out[i] - 1) * strides[i] + 1, strides[i])
            for i, o in enumerate(offset))
        windows.append(P("slice", xp, key=key))
    return windows, out, widths


def _pool_args(ctx, x):
    kernel = ctx.get("kernel_shape")
    strides, dilations, pads = _geometry(ctx, x, kernel)
    return kernel, strides, dilations, pads, bool(ctx.get("ceil_mode", 0))


@onnx_op("MaxPool")
def max_pool(ctx, x):
    kernel, strides, dilations, pads, ceil = _pool_args(ctx, x)
    low = -np.inf if is_float(x) else np.iinfo(x.dtype).min
    windows, out, widths = _pool_windows(x, kernel, strides, dilations, pads, ceil, low)
    y = windows[0]
    for w in windows[1:]:
        y = P("maximum", y, w)
    if ctx.n_outputs < 2 or not ctx.node.output[1]:
        return y
    return y, _max_indices(x, windows, kernel, strides, dilations, pads, out, ctx.get("storage_order", 0))


def _max_indices(x, windows, kernel, strides, dilations, pads, out, storage_order):
    """Flat (row-major, or column-major with storage_order=1) input index of each window's max."""
    k = len(kernel)
    which = np.argmax(np.stack([w._data for w in windows]), axis=0)          # first max wins
    offsets = np.array(list(np.ndindex(*kernel)))                            # (K, k)
    coords = []
    for i in range(k):
        start = np.arange(out[i]) * strides[i] - pads[i]
        shape = [1] * (k + 2)
        shape[2 + i] = out[i]
        coords.append(start.reshape(shape) + offsets[which, i] * dilations[i] if False else
                      start.reshape(shape) + np.take(offsets[:, i], which) * dilations[i])
    N, C = x.shape[:2]
    spatial = x.shape[2:]
    if storage_order:
        flat = np.zeros_like(coords[0])
        mult = 1
        for i in range(k):
            flat = flat + coords[i] * mult
            mult *= spatial[i]
    else:
        flat = np.zeros_like(coords[0])
        for i in range(k):
            flat = flat * spatial[i] + coords[i]
    base = (np.arange(N)[:, None] * C + np.arange(C)[None, :]) * int(np.prod(spatial))
    return const((flat + base.reshape((N, C) + (1,) * k)).astype(np.int64))


@onnx_op("AveragePool")
def average_pool(ctx, x):
    kernel, strides, dilations, pads, ceil = _pool_args(ctx, x)
    windows, out, widths = _pool_windows(x, kernel, strides, dilations, pads, ceil, 0.0)
    total = windows[0]
    for w in windows[1:]:
        total = P("add", total, w)
    # the divisor: window cells inside the input (+ the explicit pads with count_include_pad); cells
    # in the extra end padding that ceil_mode adds never count. Separable: one count vector per axis.
    include = bool(ctx.get("count_include_pad", 0))
    k = len(kernel)
    count = np.ones((), x.dtype)
    for i in range(k):
        pos = (np.arange(out[i]) * strides[i] - pads[i])[:, None] + np.arange(kernel[i]) * dilations[i]
        lo, hi = (-pads[i], x.shape[2 + i] + pads[i + k]) if include else (0, x.shape[2 + i])
        per_axis = ((pos >= lo) & (pos < hi)).sum(axis=1).astype(x.dtype)
        count = np.multiply.outer(count, per_axis)
    return P("div", total, const(count))


@onnx_op("LpPool")
def lp_pool(ctx, x):
    kernel, strides, dilations, pads, ceil = _pool_args(ctx, x)
    p = float(ctx.get("p", 2))
    windows, _, _ = _pool_windows(x, kernel, strides, dilations, pads, ceil, 0.0)
    total = None
    for w in windows:
        term = P("pow", P("abs", w), scalar(x, p))
        total = term if total is None else P("add", total, term)
    return P("pow", total, scalar(x, 1.0 / p))


@onnx_op("GlobalAveragePool")
def global_average_pool(ctx, x):
    axes = tuple(range(2, x.ndim))
    return P("div", P("sum", x, axes=axes, keepdims=True), scalar(x, int(np.prod(x.shape[2:]))))


@onnx_op("GlobalMaxPool")
def global_max_pool(ctx, x):
    return P("amax", x, axes=tuple(range(2, x.ndim)), keepdims=True)


@onnx_op("GlobalLpPool")
def global_lp_pool(ctx, x):
    p = float(ctx.get("p", 2))
    s = P("sum", P("pow", P("abs", x), scalar(x, p)), axes=tuple(range(2, x.ndim)), keepdims=True)
    return P("pow", s, scalar(x, 1.0 / p))


# ------------------------------------------------------------------------------ normalizations
def _channel(t: Tensor, ndim: int) -> Tensor:
    return reshape(t, (1, -1) + (1,) * (ndim - 2))


@onnx_op("BatchNormalization")
def batch_norm(ctx, x, scale, bias, mean, var):
    eps = scalar(x, ctx.get("epsilon", 1e-5))
    if ctx.get("training_mode", 0) and ctx.opset >= 14:
        axes = (0,) + tuple(range(2, x.ndim))
        n = int(np.prod([x.shape[a] for a in axes]))
        bmean = P("div", P("sum", x, axes=axes, keepdims=False), scalar(x, n))
        centered = P("sub", x, _channel(bmean, x.ndim))
        bvar = P("div", P("sum", P("mul", centered, centered), axes=axes, keepdims=False), scalar(x, n))
        mom = scalar(x, ctx.get("momentum", 0.9))
        one_m = scalar(x, 1 - ctx.get("momentum", 0.9))
        run_mean = P("add", P("mul", mean, mom), P("mul", bmean, one_m))
        run_var = P("add", P("mul", var, mom), P("mul", bvar, one_m))
        y = P("div", centered, P("sqrt", P("add", _channel(bvar, x.ndim), eps)))
        y = P("add", P("mul", y, _channel(scale, x.ndim)), _channel(bias, x.ndim))
        return y, run_mean, run_var
    inv = P("div", scale, P("sqrt", P("add", var, eps)))
    shift = P("sub", bias, P("mul", mean, inv))
    return P("add", P("mul", x, _channel(inv, x.ndim)), _channel(shift, x.ndim))


def _standardize(x: Tensor, axes: tuple[int, ...], eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """(normalized, mean, 1/std) over ``axes`` (kept dims), composed from primitives."""
    n = int(np.prod([x.shape[a] for a in axes]))
    mean = P("div", P("sum", x, axes=axes, keepdims=True), scalar(x, n))
    c = P("sub", x, mean)
    var = P("div", P("sum", P("mul", c, c), axes=axes, keepdims=True), scalar(x, n))
    inv = P("div", scalar(x, 1), P("sqrt", P("add", var, scalar(x, eps))))
    return P("mul", c, inv), mean, inv


@onnx_op("InstanceNormalization")
def instance_norm(ctx, x, scale, bias):
    y, _, _ = _standardize(x, tuple(range(2, x.ndim)), ctx.get("epsilon", 1e-5))
    return P("add", P("mul", y, _channel(scale, x.ndim)), _channel(bias, x.ndim))


@onnx_op("LayerNormalization")
def layer_norm(ctx, x, scale, bias=None):
    axis = ctx.get("axis", -1) % x.ndim
    stash = ctx.get("stash_type", 1)
    xs = cast(x, np.float32) if stash == 1 and x.dtype != np.float64 else x
    y, mean, inv = _standardize(xs, tuple(range(axis, x.ndim)), ctx.get("epsilon", 1e-5))
    y = cast(y, x.dtype)
    y = P("mul", y, scale)
    if bias is not None:
        y = P("add", y, bias)
    return y, mean, inv


@onnx_op("RMSNormalization")
def rms_norm(ctx, x, scale):
    axis = ctx.get("axis", -1) % x.ndim
    xs = cast(x, np.float32) if ctx.get("stash_type", 1) == 1 and x.dtype != np.float64 else x
    axes = tuple(range(axis, x.ndim))
    n = int(np.prod([x.shape[a] for a in axes]))
    ms = P("div", P("sum", P("mul", xs, xs), axes=axes, keepdims=True), scalar(xs, n))
    y = P("div", xs, P("sqrt", P("add", ms, scalar(xs, ctx.get("epsilon", 1e-5)))))
    return P("mul", cast(y, x.dtype), scale)


@onnx_op("GroupNormalization")
def group_norm(ctx, x, scale, bias):
    g = ctx.get("num_groups")
    N, C = x.shape[:2]
    xs = cast(x, np.float32) if ctx.get("stash_type", 1) == 1 and x.dtype != np.float64 else x
    grouped = reshape(xs, (N, g, -1))
    y, _, _ = _standardize(grouped, (2,), ctx.get("epsilon", 1e-5))
    y = cast(reshape(y, x.shape), x.dtype)
    if ctx.opset < 21:    # opset 18: scale and bias are per group
        scale = reshape(expand(reshape(scale, (g, 1)), (g, C // g)), (C,))
        bias = reshape(expand(reshape(bias, (g, 1)), (g, C // g)), (C,))
    return P("add", P("mul", y, _channel(scale, x.ndim)), _channel(bias, x.ndim))


@onnx_op("MeanVarianceNormalization")
def mvn(ctx, x):
    axes = tuple(a % x.ndim for a in (ctx.get("axes") or [0, 2, 3]))
    y, _, _ = _standardize(x, tuple(sorted(axes)), 1e-9)
    return y


@onnx_op("LpNormalization")
def lp_norm(ctx, x):
    axis = ctx.get("axis", -1) % x.ndim
    p = ctx.get("p", 2)
    if p == 1:
        n = P("sum", P("abs", x), axes=(axis,), keepdims=True)
    else:
        n = P("sqrt", P("sum", P("mul", x, x), axes=(axis,), keepdims=True))
    # a zero-norm slice stays zero (not 0/0 = nan), as the reference does
    zero = P("eq", n, scalar(n, 0))
    return P("where", zero, scalar(x, 0), P("div", x, P("where", zero, scalar(n, 1), n)))


@onnx_op("LRN")
def lrn(ctx, x):
    size = ctx.get("size")
    alpha, beta, bias = ctx.get("alpha", 1e-4), ctx.get("beta", 0.75), ctx.get("bias", 1.0)
    sq = P("mul", x, x)
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    padded = P("pad", sq, pads=((0, 0), (lo, hi)) + ((0, 0),) * (x.ndim - 2), value=0)
    C = x.shape[1]
    total = None
    for j in range(size):
        part = P("slice", padded, key=((0, x.shape[0], 1), (j, j + C, 1)))
        total = part if total is None else P("add", total, part)
    denom = P("pow", P("add", scalar(x, bias), P("mul", total, scalar(x, alpha / size))), scalar(x, beta))
    return P("div", x, denom)


@onnx_op("Dropout")
def dropout(ctx, x, ratio=None, training=None):
    train = training is not None and bool(training._data)
    r = float(ratio._data) if ratio is not None else ctx.get("ratio", 0.5)
    if not train or r == 0:
        return (x, const(np.ones(x.shape, bool))) if ctx.n_outputs > 1 else x
    keep = np.random.default_rng(ctx.get("seed")).uniform(size=x.shape) >= r
    y = P("mul", x, const((keep / (1 - r)).astype(x.dtype)))
    return (y, const(keep)) if ctx.n_outputs > 1 else y


# ------------------------------------------------------------------------------ resize
def _source_coords(mode: str, out_n: int, in_n: int, scale: float, roi: tuple[float, float] | None) -> np.ndarray:
    i = np.arange(out_n, dtype=np.float64)
    if mode == "half_pixel":
        return (i + 0.5) / scale - 0.5
    if mode == "half_pixel_symmetric":
        adj = out_n / (scale * in_n)
        center = in_n / 2
        offset = center * (1 - adj)
        return offset + (i + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (i + 0.5) / scale - 0.5 if out_n > 1 else np.zeros_like(i)
    if mode == "align_corners":
        return i * (in_n - 1) / (out_n - 1) if out_n > 1 else np.zeros_like(i)
    if mode == "asymmetric":
        return i / scale
    if mode == "tf_crop_and_resize":
        start, end = roi
        if out_n > 1:
            return start * (in_n - 1) + i * (end - start) * (in_n - 1) / (out_n - 1)
        return np.full_like(i, 0.5 * (start + end) * (in_n - 1))
    raise onnx_error("Resize", f"unknown coordinate_transformation_mode {mode!r}")


def _nearest(x: np.ndarray, how: str) -> np.ndarray:
    if how == "round_prefer_ceil":
        return np.floor(x + 0.5)
    if how == "floor":
        return np.floor(x)
    if how == "ceil":
        return np.ceil(x)
    return np.ceil(x - 0.5)     # round_prefer_floor (the default)


def _cubic_weights(t: np.ndarray, a: float) -> np.ndarray:
    """Keys' cubic convolution weights for the 4 taps at offsets -1, 0, 1, 2."""
    def w(d):
        d = np.abs(d)
        return np.where(d <= 1, ((a + 2) * d - (a + 3)) * d * d + 1,
                        np.where(d < 2, ((a * d - 5 * a) * d + 8 * a) * d - 4 * a, 0.0))
    return np.stack([w(t + 1), w(t), w(1 - t), w(2 - t)], axis=-1)


def _axis_matrix(ctx, in_n: int, out_n: int, scale: float, roi) -> tuple[np.ndarray, np.ndarray]:
    """(out_n, in_n) interpolation matrix along one axis, and a mask of in-range outputs."""
    mode = ctx.get("mode", "nearest")
    ctm = ctx.get("coordinate_transformation_mode", "half_pixel")
    src = _source_coords(ctm, out_n, in_n, scale, roi)
    W = np.zeros((out_n, in_n))
    valid = np.ones(out_n, bool)
    if ctm == "tf_crop_and_resize":
        valid = (src >= 0) & (src <= in_n - 1)
    rows = np.arange(out_n)
    antialias = ctx.get("antialias", 0) and scale < 1 and mode in ("linear", "cubic")
    if mode == "nearest":
        idx = np.clip(_nearest(src, ctx.get("nearest_mode", "round_prefer_floor")).astype(np.int64), 0, in_n - 1)
        W[rows, idx] = 1.0
        return W, valid
    if mode == "linear" and not antialias:
        s = np.clip(src, 0, in_n - 1)
        lo = np.floor(s).astype(np.int64)
        hi = np.minimum(lo + 1, in_n - 1)
        t = s - lo
        np.add.at(W, (rows, lo), 1 - t)
        np.add.at(W, (rows, hi), t)
        return W, valid
    if mode == "cubic" and not antialias:
        a = ctx.get("cubic_coeff_a", -0.75)
        base = np.floor(src).astype(np.int64)
        weights = _cubic_weights(src - base, a)                        # (out, 4)
        taps = base[:, None] + np.arange(-1, 3)[None, :]
        inside = (taps >= 0) & (taps < in_n)
        if ctx.get("exclude_outside", 0):
            weights = weights * inside
            weights = weights / weights.sum(axis=1, keepdims=True)
        np.add.at(W, (np.repeat(rows, 4), np.clip(taps, 0, in_n - 1).reshape(-1)), weights.reshape(-1))
        return W, valid
    # antialiased downscale: the filter is stretched by 1/scale (ONNX reference semantics)
    a = ctx.get("cubic_coeff_a", -0.75)
    support = (1.0 if mode == "linear" else 2.0) / scale
    for r in rows:
        c = src[r]
        lo, hi = int(np.floor(c - support)) + 1, int(np.ceil(c + support))
        taps = np.arange(lo, hi)
        d = np.abs(taps - c) * scale
        if mode == "linear":
            w = np.maximum(1 - d, 0)
        else:
            w = np.where(d <= 1, ((a + 2) * d - (a + 3)) * d * d + 1,
                         np.where(d < 2, ((a * d - 5 * a) * d + 8 * a) * d - 4 * a, 0.0))
        inside = (taps >= 0) & (taps < in_n)
        if ctx.get("exclude_outside", 0):
            w = w * inside
        w = w / w.sum()
        np.add.at(W[r], np.clip(taps, 0, in_n - 1), w)
    return W, valid


@onnx_op("Resize", "Upsample")
def resize(ctx, x, roi=None, scales=None, sizes=None):
    if ctx.node.op_type == "Upsample" or ctx.opset < 11 and roi is not None and scales is None:
        scales, roi = (roi if roi is not None else const(ctx.get("scales"))), None
    nd = x.ndim
    axes = [a % nd for a in (ctx.get("axes") or range(nd))]
    sc = [1.0] * nd
    out = list(x.shape)
    roi_v = ints_f(roi)
    roi_full = [(0.0, 1.0)] * nd
    if roi_v:
        k = len(axes)
        for j, a in enumerate(axes):
            roi_full[a] = (roi_v[j], roi_v[j + k])
    if sizes is not None and sizes.numel():
        sz = ints(sizes)
        policy = ctx.get("keep_aspect_ratio_policy", "stretch")
        ratios = [sz[j] / x.shape[a] for j, a in enumerate(axes)]
        if policy != "stretch":
            r = min(ratios) if policy == "not_larger" else max(ratios)
            ratios = [r] * len(axes)
            sz = [int(np.floor(r * x.shape[a] + 0.5)) for a in axes]
        for j, a in enumerate(axes):
            out[a], sc[a] = sz[j], ratios[j]
    else:
        s = ints_f(scales)
        for j, a in enumerate(axes):
            sc[a] = s[j]
            ctm = ctx.get("coordinate_transformation_mode", "half_pixel")
            span = (roi_full[a][1] - roi_full[a][0]) if ctm == "tf_crop_and_resize" else 1.0
            out[a] = int(np.floor(x.shape[a] * span * s[j] + 1e-9 if False else x.shape[a] * span * s[j]))
    y = cast(x, np.float64) if not is_float(x) else x
    mask = None
    for a in range(nd):
        if out[a] == x.shape[a] and sc[a] == 1.0 and ctx.get("coordinate_transformation_mode") != "tf_crop_and_resize":
            continue
        W, valid = _axis_matrix(ctx, x.shape[a], out[a], sc[a], roi_full[a])
        Wt = const(W.astype(y.dtype))
        moved = S.movedim(y, a, -1)
        y = S.movedim(S.matmul(moved, S.transpose(Wt, 0, 1)), -1, a)
        if not valid.all():
            shape = [1] * nd
            shape[a] = out[a]
            m = valid.reshape(shape)
            mask = m if mask is None else mask & m
    if mask is not None:
        y = P("where", const(mask), y, scalar(y, ctx.get("extrapolation_value", 0.0)))
    if not is_float(x):
        y = cast(P("round", y, decimals=0), x.dtype)
    return y


def ints_f(t: Tensor | None) -> list[float]:
    return [] if t is None else [float(v) for v in np.asarray(t._data).reshape(-1)]


# ------------------------------------------------------------------------------ losses
def nll_loss(ctx, logp: Tensor, target: Tensor, weight: Tensor | None) -> Tensor:
    """ONNX NegativeLogLikelihoodLoss on log-probabilities ``(N, C, d...)``, targets ``(N, d...)``."""
    ignore = ctx.get("ignore_index")
    reduction = ctx.get("reduction", "mean")
    t = cast(target, np.int64)
    keep = P("ne", t, scalar(t, ignore)) if ignore is not None else None
    safe = P("where", keep, t, scalar(t, 0)) if keep is not None else t
    picked = S.squeeze(P("gather", logp, S.unsqueeze(safe, 1), dim=1), 1)
    w = weight[(safe,)] if weight is not None else const(np.ones(t.shape, logp.dtype))
    if keep is not None:       # ignored targets weigh nothing, in the sum and in the mean's divisor
        w = P("where", keep, w, scalar(w, 0))
    loss = P("neg", P("mul", picked, w))
    if reduction == "none":
        return loss
    total = P("sum", loss, axes=tuple(range(loss.ndim)), keepdims=False)
    if reduction == "sum":
        return total
    return P("div", total, P("sum", w, axes=tuple(range(w.ndim)), keepdims=False))


@onnx_op("NegativeLogLikelihoodLoss")
def negative_log_likelihood_loss(ctx, x, target, weight=None):
    return nll_loss(ctx, x, target, weight)


@onnx_op("SoftmaxCrossEntropyLoss")
def softmax_cross_entropy_loss(ctx, scores, labels, weights=None):
    logp = P("log_softmax", scores, dim=1)
    loss = nll_loss(ctx, logp, labels, weights)
    return (loss, logp) if ctx.n_outputs > 1 else loss


# ------------------------------------------------------------------------------ MaxUnpool
@onnx_op("MaxUnpool", since=9)
def max_unpool(ctx, x, indices, output_shape=None):
    """Scatter X to the flat positions MaxPool reported; zero elsewhere; end-pad to ``output_shape``."""
    kernel = ctx.get("kernel_shape")
    k = len(kernel)
    strides = ctx.get("strides") or [1] * k
    pads = ctx.get("pads") or [0] * (2 * k)
    natural = x.shape[:2] + tuple((x.shape[2 + i] - 1) * strides[i] - pads[i] - pads[i + k] + kernel[i] for i in range(k))
    size = int(np.prod(natural))
    idx = np.asarray(indices._data).astype(np.int64).reshape(-1)
    if indices.shape != x.shape or (idx.size and (idx.min() < 0 or idx.max() >= size)):
        raise onnx_error(ctx.where, "indices must have X's shape and index into the unpooled tensor",
                         expect=f"shape {x.shape}, values in [0, {size})", actual=f"shape {indices.shape}")
    y = P("scatter", const(np.zeros(size, x.dtype)), const(idx), reshape(x, (-1,)), dim=0)
    y = reshape(y, natural)
    target = ints(output_shape)
    if target and tuple(target) != natural:
        y = P("pad", y, pads=tuple((0, t - n) for t, n in zip(target, natural)), value=0)
    return y
