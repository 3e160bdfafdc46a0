"""ONNX quantized ops: Quantize/DequantizeLinear (per tensor, per axis, blocked), DynamicQuantizeLinear,
QLinearMatMul, QLinearConv, MatMulInteger, ConvInteger -- all composed from suanli ops.

>>> import numpy as np, suanli
>>> from suanli.onnx.ops_quant import quantize
>>> quantize(suanli.tensor([0.0, 1.0, 300.0]), suanli.tensor(2.0), suanli.tensor(np.uint8(10))).tolist()
[10, 10, 160]
"""
from __future__ import annotations

import numpy as np

from .. import ops as S
from ..tensor import Tensor
from ._util import P, cast, expand, np_dtype, reshape, scalar
from .ops_nn import _geometry, conv_nd
from .table import onnx_op


def _bounds(dtype: np.dtype) -> tuple[float, float]:
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return float(info.min), float(info.max)
    if dtype.name.startswith("int4"):
        return -8.0, 7.0
    if dtype.name.startswith("uint4"):
        return 0.0, 15.0
    info = np.finfo(dtype)
    return float(info.min), float(info.max)


def _broadcast_param(p: Tensor, x: Tensor, axis: int, block: int) -> Tensor:
    """Scale/zero point to ``x``'s shape: scalar, per-axis (1-d) or blocked along ``axis``."""
    if p.ndim == 0 or p.numel() == 1 and p.ndim <= 1:
        return reshape(p, ())
    axis %= x.ndim
    if p.ndim == 1 and not block:
        return reshape(p, [-1 if i == axis else 1 for i in range(x.ndim)])
    # blocked: repeat each entry `block` times along axis, cropped to the input's size
    rep = S.repeat_interleave(p, block, dim=axis)
    return P("slice", rep, key=tuple((0, n, 1) for n in x.shape))


def quantize(x: Tensor, scale: Tensor, zp: Tensor | None, axis: int = 1, block: int = 0,
             out_dtype: np.dtype | None = None, saturate: int = 1) -> Tensor:
    """``saturate(round_half_even(x / scale) + zero_point)`` in the zero point's dtype."""
    dtype = out_dtype or (zp.dtype if zp is not None else np.dtype(np.uint8))
    s = _broadcast_param(scale, x, axis, block)
    xf = cast(x, np.float32) if x.dtype != np.float64 else x
    y = P("div", xf, cast(s, xf.dtype))
    if dtype.kind in "iu" or "int4" in dtype.name:
        y = P("round", y, decimals=0)
        if zp is not None:
            y = P("add", y, cast(_broadcast_param(zp, x, axis, block), y.dtype))
        lo, hi = _bounds(dtype)
        y = P("clamp", y, scalar(y, lo), scalar(y, hi))
        return cast(y, dtype)
    if zp is not None:     # float8: the zero point is added in float
        y = P("add", y, cast(_broadcast_param(zp, x, axis, block), y.dtype))
    if saturate and "float8" in dtype.name:
        lo, hi = _bounds(dtype)
        y = P("clamp", y, scalar(y, lo), scalar(y, hi))
    return cast(y, dtype)


def dequantize(q: Tensor, scale: Tensor, zp: Tensor | None, axis: int = 1, block: int = 0,
               out_dtype: np.dtype | None = None) -> Tensor:
    dtype = out_dtype or scale.dtype
    y = cast(q, np.float32)
    if zp is not None:
        y = P("sub", y, cast(_broadcast_param(zp, q, axis, block), np.float32))
    return cast(P("mul", y, cast(_broadcast_param(scale, q, axis, block), np.float32)), dtype)


@onnx_op("QuantizeLinear")
def quantize_linear(ctx, x, scale, zp=None):
    out = ctx.get("output_dtype", 0)
    return quantize(x, scale, zp, ctx.get("axis", 1), ctx.get("block_size", 0),
                    np_dtype(out) if out else None, ctx.get("saturate", 1))


@onnx_op("DequantizeLinear")
def dequantize_linear(ctx, q, scale, zp=None):
    out = ctx.get("output_dtype", 0)
    return dequantize(q, scale, zp, ctx.get("axis", 1), ctx.get("block_size", 0), np_dtype(out) if out else None)


@onnx_op("DynamicQuantizeLinear")
def dynamic_quantize_linear(ctx, x):
    # uint8 with the range widened to include 0, as the spec defines
    lo = P("minimum", P("amin", x, axes=tuple(range(x.ndim)), keepdims=False), scalar(x, 0))
    hi = P("maximum", P("amax", x, axes=tuple(range(x.ndim)), keepdims=False), scalar(x, 0))
    scale = P("div", P("sub", hi, lo), scalar(x, 255))
    zp_f = P("clamp", P("round", P("sub", scalar(x, 0), P("div", lo, scale)), decimals=0), scalar(x, 0), scalar(x, 255))
    zp = cast(zp_f, np.uint8)
    return quantize(x, scale, zp), scale, zp


def _centered(q: Tensor, zp: Tensor | None, axis_shape: list[int] | None = None) -> Tensor:
    """``q - zero_point`` in int32 (exact integer arithmetic, as MatMulInteger specifies)."""
    v = cast(q, np.int32)
    if zp is None:
        return v
    z = cast(zp, np.int32)
    if axis_shape is not None and z.ndim == 1 and z.numel() > 1:
        z = reshape(z, axis_shape)
    return P("sub", v, z)


@onnx_op("MatMulInteger")
def matmul_integer(ctx, a, b, a_zp=None, b_zp=None):
    a_c = _centered(a, a_zp, [-1, 1] if a.ndim >= 2 else None)
    b_c = _centered(b, b_zp, [1, -1] if b.ndim >= 2 else None)
    return S.matmul(a_c, b_c)


@onnx_op("ConvInteger")
def conv_integer(ctx, x, w, x_zp=None, w_zp=None):
    xc = cast(_centered(x, x_zp), np.float64)
    wc = cast(_centered(w, w_zp, [-1] + [1] * (w.ndim - 1)), np.float64)
    strides, dilations, pads = _geometry(ctx, x, ctx.get("kernel_shape") or list(w.shape[2:]))
    # float64 GEMM is exact for int8 products summed over realistic kernel sizes
    return cast(conv_nd(xc, wc, strides, dilations, pads, ctx.get("group", 1)), np.int32)


@onnx_op("QLinearMatMul")
def qlinear_matmul(ctx, a, a_s, a_zp, b, b_s, b_zp, y_s, y_zp):
    af = dequantize(a, a_s, a_zp, axis=0 if a_s.numel() > 1 else 1, out_dtype=np.dtype(np.float64))
    bf = dequantize(b, b_s, b_zp, axis=-1, out_dtype=np.dtype(np.float64))
    y = S.matmul(af, bf)
    return quantize(y, cast(y_s, np.float64), y_zp, axis=-1)


@onnx_op("QLinearConv")
def qlinear_conv(ctx, x, x_s, x_zp, w, w_s, w_zp, y_s, y_zp, b=None):
    xf = dequantize(x, x_s, x_zp, out_dtype=np.dtype(np.float64))
    wf = dequantize(w, w_s, w_zp, axis=0, out_dtype=np.dtype(np.float64))
    strides, dilations, pads = _geometry(ctx, x, ctx.get("kernel_shape") or list(w.shape[2:]))
    y = conv_nd(xf, wf, strides, dilations, pads, ctx.get("group", 1))
    if b is not None:   # int32 bias in units of x_scale * w_scale
        bs = P("mul", cast(reshape(x_s, ()), np.float64), cast(w_s, np.float64))
        bias = P("mul", cast(b, np.float64), expand(bs, b.shape) if bs.ndim else bs)
        y = P("add", y, reshape(bias, (1, -1) + (1,) * (y.ndim - 2)))
    return quantize(y, cast(y_s, np.float64), y_zp)
