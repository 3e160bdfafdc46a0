"""ONNX elementwise maths, activations, reductions, softmax family, MatMul/Gemm/Einsum, casts.

>>> import suanli
>>> from suanli.onnx.table import lookup
>>> lookup("", "Softsign", 17)(None, suanli.tensor([1.0, -3.0])).tolist()
[0.5, -0.75]
"""
from __future__ import annotations

import math
import numpy as np

from .. import ops as S
from ..tensor import Tensor
from ._util import P, cast, const, ints, is_float, norm_axes, np_dtype, reshape, scalar
from .errors import onnx_error
from .table import onnx_op


# ------------------------------------------------------------------------------ binary arithmetic
@onnx_op("Add")
def add(ctx, a, b):
    return P("add", a, b)


@onnx_op("Sub")
def sub(ctx, a, b):
    return P("sub", a, b)


@onnx_op("Mul")
def mul(ctx, a, b):
    return P("mul", a, b)


@onnx_op("Div")
def div(ctx, a, b):
    # integer division truncates toward zero, as C and ONNX Runtime do
    return P("div", a, b) if is_float(a) else P("div_round", a, b, mode="trunc")


@onnx_op("Pow")
def pow_(ctx, x, y):
    if is_float(x):
        return P("pow", x, cast(y, x.dtype))
    # an integer base: compute in float64 (exact for the ranges ONNX tests) and cast back
    return cast(P("pow", cast(x, np.float64), cast(y, np.float64)), x.dtype)


@onnx_op("Mod")
def mod(ctx, a, b):
    return P("fmod" if ctx.get("fmod", 0) else "remainder", a, b)


@onnx_op("Max")
def max_(ctx, *xs):
    return _fold("maximum", xs)


@onnx_op("Min")
def min_(ctx, *xs):
    return _fold("minimum", xs)


@onnx_op("Sum")
def sum_(ctx, *xs):
    return _fold("add", xs)


@onnx_op("Mean")
def mean(ctx, *xs):
    return P("div", _fold("add", xs), scalar(xs[0], len(xs)))


def _fold(prim: str, xs) -> Tensor:
    out = xs[0]
    for x in xs[1:]:
        out = P(prim, out, x)
    if len(xs) == 1:
        out = P("copy", out)
    return out


# ------------------------------------------------------------------------------ comparisons, logic, bits
for _onnx, _prim in (("Equal", "eq"), ("Less", "lt"), ("LessOrEqual", "le"), ("Greater", "gt"),
                     ("GreaterOrEqual", "ge"), ("And", "logical_and"), ("Or", "logical_or"),
                     ("Xor", "logical_xor"), ("BitwiseAnd", "bitwise_and"), ("BitwiseOr", "bitwise_or"),
                     ("BitwiseXor", "bitwise_xor")):
    def _binary(ctx, a, b, _prim=_prim):
        return P(_prim, a, b)
    _binary.__name__ = _prim
    onnx_op(_onnx)(_binary)


@onnx_op("Not")
def not_(ctx, x):
    return P("logical_not", x)


@onnx_op("BitwiseNot")
def bitwise_not(ctx, x):
    return P("bitwise_not", x)


@onnx_op("BitShift")
def bit_shift(ctx, x, y):
    # x << y == x * 2**y (wrapping), x >> y == floor(x / 2**y): unsigned only, as ONNX specifies
    # a shift outside [0, bits) saturates: 0, or -1 for a right shift of a negative signed value
    bits = 8 * x.dtype.itemsize
    out_of_range = P("logical_or", P("ge", y, scalar(y, bits)), P("lt", y, scalar(y, 0)))
    power = P("pow", scalar(x, 2), P("where", out_of_range, scalar(y, 0), y))
    if ctx.get("direction") == "LEFT":
        return P("where", out_of_range, scalar(x, 0), P("mul", x, power))
    shifted = P("div_round", x, power, mode="floor")
    saturated = P("where", P("lt", x, scalar(x, 0)), scalar(x, -1), scalar(x, 0)) if x.dtype.kind == "i" \
        else scalar(x, 0)
    return P("where", out_of_range, saturated, shifted)


# ------------------------------------------------------------------------------ unary maths
_UNARY = {"Abs": "abs", "Neg": "neg", "Exp": "exp", "Log": "log", "Sqrt": "sqrt", "Sin": "sin", "Cos": "cos",
          "Tanh": "tanh", "Sigmoid": "sigmoid", "Erf": "erf", "Floor": "floor", "Ceil": "ceil",
          "Round": "round", "Sign": "sign", "IsNaN": "isnan", "Atan": "atan"}
for _onnx, _prim in _UNARY.items():
    def _unary(ctx, x, _prim=_prim):
        return P(_prim, x, decimals=0) if _prim == "round" else P(_prim, x)
    _unary.__name__ = _prim
    onnx_op(_onnx)(_unary)


@onnx_op("Reciprocal")
def reciprocal(ctx, x):
    return P("div", scalar(x, 1), x)


@onnx_op("Tan")
def tan(ctx, x):
    return P("div", P("sin", x), P("cos", x))


@onnx_op("Sinh")
def sinh(ctx, x):
    return P("mul", P("sub", P("exp", x), P("exp", P("neg", x))), scalar(x, 0.5))


@onnx_op("Cosh")
def cosh(ctx, x):
    return P("mul", P("add", P("exp", x), P("exp", P("neg", x))), scalar(x, 0.5))


@onnx_op("Asinh")
def asinh(ctx, x):
    # sign(x) * log(|x| + sqrt(x^2 + 1)): odd symmetry keeps precision for negative x
    ax = P("abs", x)
    return P("mul", P("sign", x), P("log", P("add", ax, P("sqrt", P("add", P("mul", x, x), scalar(x, 1))))))


@onnx_op("Acosh")
def acosh(ctx, x):
    return P("log", P("add", x, P("sqrt", P("sub", P("mul", x, x), scalar(x, 1)))))


@onnx_op("Atanh")
def atanh(ctx, x):
    return P("mul", P("sub", P("log1p", x), P("log1p", P("neg", x))), scalar(x, 0.5))


@onnx_op("Asin")
def asin(ctx, x):
    return P("atan", P("div", x, P("sqrt", P("sub", scalar(x, 1), P("mul", x, x)))))


@onnx_op("Acos")
def acos(ctx, x):
    return P("sub", scalar(x, math.pi / 2), asin(ctx, x))


@onnx_op("IsInf")
def isinf(ctx, x):
    pos, neg = ctx.get("detect_positive", 1), ctx.get("detect_negative", 1)
    inf = P("isinf", x)
    if pos and neg:
        return inf
    if not pos and not neg:
        return P("logical_and", inf, const(False))
    side = P("gt", x, scalar(x, 0)) if pos else P("lt", x, scalar(x, 0))
    return P("logical_and", inf, side)


@onnx_op("Identity")
def identity(ctx, x):
    return x


# ------------------------------------------------------------------------------ activations
@onnx_op("Relu")
def relu(ctx, x):
    return P("relu", x) if is_float(x) else P("maximum", x, scalar(x, 0))


@onnx_op("LeakyRelu")
def leaky_relu(ctx, x):
    return P("leaky_relu", x, negative_slope=float(ctx.get("alpha", 0.01)))


@onnx_op("PRelu")
def prelu(ctx, x, slope):
    return P("where", P("lt", x, scalar(x, 0)), P("mul", x, slope), x)


@onnx_op("ThresholdedRelu")
def thresholded_relu(ctx, x):
    return P("where", P("gt", x, scalar(x, ctx.get("alpha", 1.0))), x, scalar(x, 0))


@onnx_op("Elu")
def elu(ctx, x):
    return P("elu", x, alpha=float(ctx.get("alpha", 1.0)), scale=1.0, input_scale=1.0)


@onnx_op("Selu")
def selu(ctx, x):
    return P("elu", x, alpha=float(ctx.get("alpha", 1.67326319217681884765625)),
             scale=float(ctx.get("gamma", 1.05070102214813232421875)), input_scale=1.0)


@onnx_op("Celu")
def celu(ctx, x):
    alpha = float(ctx.get("alpha", 1.0))
    return P("elu", x, alpha=alpha, scale=1.0, input_scale=1.0 / alpha)


@onnx_op("HardSigmoid")
def hard_sigmoid(ctx, x):
    y = P("add", P("mul", x, scalar(x, ctx.get("alpha", 0.2))), scalar(x, ctx.get("beta", 0.5)))
    return P("clamp", y, scalar(x, 0), scalar(x, 1))


@onnx_op("HardSwish")
def hard_swish(ctx, x):
    return P("hardswish", x)


@onnx_op("Softplus")
def softplus(ctx, x):
    return P("softplus", x, beta=1.0, threshold=20.0)


@onnx_op("Softsign")
def softsign(ctx, x):
    return P("div", x, P("add", P("abs", x), scalar(x, 1)))


@onnx_op("Mish")
def mish(ctx, x):
    return P("mul", x, P("tanh", P("softplus", x, beta=1.0, threshold=20.0)))


@onnx_op("Gelu")
def gelu(ctx, x):
    return P("gelu", x, approximate=ctx.get("approximate", "none"))


@onnx_op("Shrink")
def shrink(ctx, x):
    lambd, bias = ctx.get("lambd", 0.5), ctx.get("bias", 0.0)
    lo = P("add", x, scalar(x, bias))
    hi = P("sub", x, scalar(x, bias))
    return P("where", P("lt", x, scalar(x, -lambd)), lo, P("where", P("gt", x, scalar(x, lambd)), hi, scalar(x, 0)))


@onnx_op("Clip")
def clip(ctx, x, lo=None, hi=None):
    if ctx.opset < 11:
        lo, hi = scalar(x, ctx.get("min", -np.inf)), scalar(x, ctx.get("max", np.inf))
    out = x
    if lo is not None:
        out = P("maximum", out, reshape(lo, ()))
    if hi is not None:
        out = P("minimum", out, reshape(hi, ()))
    return out if out is not x else P("copy", x)


@onnx_op("Where")
def where(ctx, cond, x, y):
    return P("where", cond, x, y)


# ------------------------------------------------------------------------------ casts
@onnx_op("Cast")
def cast_(ctx, x):
    return _cast_to(x, np_dtype(ctx.get("to")), ctx.get("saturate", 1))


@onnx_op("CastLike")
def cast_like(ctx, x, like):
    return _cast_to(x, like.dtype, ctx.get("saturate", 1))


def _cast_to(x: Tensor, dtype: np.dtype, saturate: int) -> Tensor:
    if dtype.kind in "US" or x.dtype.kind in "USO":
        # strings are metadata-like: NumPy's formatting, not a numeric op
        src = x._data.astype(np.float32) if x.dtype.kind in "USO" and dtype.kind == "f" else x._data
        return const(np.asarray(src).astype(dtype if dtype.kind != "U" else object))
    if saturate and dtype.itemsize == 1 and dtype.kind == "V" or "float8" in dtype.name:
        info = float(np.finfo(dtype).max) if "float8" in dtype.name else None
        if info is not None and is_float(x):
            x = P("clamp", x, scalar(x, -info), scalar(x, info))
    return cast(x, dtype)


# ------------------------------------------------------------------------------ reductions
def _reduce_axes(ctx, x: Tensor, axes_input: Tensor | None) -> tuple[int, ...] | None:
    """Reduction axes from the input (newer opsets) or the attribute; ``None`` = no-op."""
    axes = ints(axes_input) if axes_input is not None else ctx.get("axes")
    if not axes:
        if ctx.get("noop_with_empty_axes", 0):
            return None
        return tuple(range(x.ndim))
    return norm_axes(axes, x.ndim)


def _reducer(onnx_name: str, body):
    def reduce(ctx, x, axes=None):
        ax = _reduce_axes(ctx, x, axes)
        keep = bool(ctx.get("keepdims", 1))
        if ax is None:
            return P("copy", x)
        return body(x, ax, keep)
    reduce.__name__ = onnx_name
    onnx_op(onnx_name)(reduce)


def _sum(x, ax, keep):
    out = P("sum", x, axes=ax, keepdims=keep)
    return cast(out, x.dtype)


def _count(x, ax) -> int:
    return int(np.prod([x.shape[a] for a in ax]))


def _extreme(prim, empty):
    def body(x, ax, keep):
        if _count(x, ax) == 0:     # an empty reduction is the identity element (+-inf / int bounds)
            shape = tuple(1 if i in ax else n for i, n in enumerate(x.shape)) if keep else \
                tuple(n for i, n in enumerate(x.shape) if i not in ax)
            info = np.finfo(x.dtype) if is_float(x) else np.iinfo(x.dtype)
            fill = (-np.inf if empty == "min" else np.inf) if is_float(x) else (info.min if empty == "min" else info.max)
            return const(np.full(shape, fill, x.dtype))
        return P(prim, x, axes=ax, keepdims=keep)
    return body


def _log_sum_exp(x, ax, keep):
    if _count(x, ax) == 0:
        return P("log", _sum(x, ax, keep))
    m = P("amax", x, axes=ax, keepdims=True)
    m = P("where", P("isfinite", m), m, scalar(m, 0))
    s = P("log", P("sum", P("exp", P("sub", x, m)), axes=ax, keepdims=True))
    out = P("add", s, m)
    return out if keep else reshape(out, [n for i, n in enumerate(x.shape) if i not in ax])


_reducer("ReduceSum", _sum)
_reducer("ReduceMean", lambda x, ax, keep: P("div", _sum(x, ax, keep), scalar(x, max(_count(x, ax), 1)))
         if is_float(x) else P("div_round", _sum(x, ax, keep), scalar(x, max(_count(x, ax), 1)), mode="trunc"))
_reducer("ReduceMax", _extreme("amax", "min"))
_reducer("ReduceMin", _extreme("amin", "max"))
_reducer("ReduceProd", lambda x, ax, keep: cast(P("prod", x, axes=ax, keepdims=keep), x.dtype))
_reducer("ReduceL1", lambda x, ax, keep: _sum(P("abs", x), ax, keep))
_reducer("ReduceL2", lambda x, ax, keep: _l2(x, ax, keep))
_reducer("ReduceSumSquare", lambda x, ax, keep: _sum(P("mul", x, x), ax, keep))
_reducer("ReduceLogSum", lambda x, ax, keep: P("log", _sum(x, ax, keep)))
_reducer("ReduceLogSumExp", _log_sum_exp)


def _l2(x, ax, keep):
    if is_float(x):
        return P("sqrt", _sum(P("mul", x, x), ax, keep))
    s = cast(_sum(P("mul", x, x), ax, keep), np.float64)
    return cast(P("sqrt", s), x.dtype)


def _arg(prim: str):
    def arg(ctx, x):
        axis = ctx.get("axis", 0) % max(x.ndim, 1)
        keep = bool(ctx.get("keepdims", 1))
        if ctx.get("select_last_index", 0):
            # the last extreme is the first one of the flipped tensor
            flipped = P("flip", x, dims=(axis,))
            idx = P(prim, flipped, axis=axis, keepdims=keep)
            return P("sub", const(x.shape[axis] - 1, np.int64), idx)
        return P(prim, x, axis=axis, keepdims=keep)
    arg.__name__ = prim
    return arg


onnx_op("ArgMax")(_arg("argmax"))
onnx_op("ArgMin")(_arg("argmin"))


@onnx_op("CumSum")
def cumsum(ctx, x, axis):
    ax = ints(axis)[0] % x.ndim
    reverse = bool(ctx.get("reverse", 0))
    out = P("cumsum", x, axis=ax, reverse=reverse)
    out = cast(out, x.dtype)
    return P("sub", out, x) if ctx.get("exclusive", 0) else out


@onnx_op("CumProd")
def cumprod(ctx, x, axis):
    ax = ints(axis)[0] % x.ndim
    y = P("flip", x, dims=(ax,)) if ctx.get("reverse", 0) else x
    if ctx.get("exclusive", 0):   # shift right by one, filling with the identity 1
        pads = tuple((1, 0) if i == ax else (0, 0) for i in range(x.ndim))
        y = P("pad", y, pads=pads, value=1)
        y = P("slice", y, key=tuple((0, n, 1) for n in x.shape))
    out = cast(P("cumprod", y, axis=ax), x.dtype)
    return P("flip", out, dims=(ax,)) if ctx.get("reverse", 0) else out


# ------------------------------------------------------------------------------ softmax family
def _softmax_like(prim: str):
    def fn(ctx, x):
        default = -1 if ctx.opset >= 13 else 1
        axis = ctx.get("axis", default) % max(x.ndim, 1)
        if ctx.opset >= 13:
            return P(prim, x, dim=axis)
        # opsets < 13 coerce to 2-d at `axis` and normalise over the flattened tail
        n = int(np.prod(x.shape[:axis]))
        y = P(prim, reshape(x, (n, -1 if x.numel() else int(np.prod(x.shape[axis:])))), dim=1)
        return reshape(y, x.shape)
    fn.__name__ = prim
    return fn


onnx_op("Softmax")(_softmax_like("softmax"))
onnx_op("LogSoftmax")(_softmax_like("log_softmax"))


@onnx_op("Hardmax")
def hardmax(ctx, x):
    axis = ctx.get("axis", -1 if ctx.opset >= 13 else 1) % max(x.ndim, 1)
    shape = x.shape
    if ctx.opset < 13:
        x = reshape(x, (int(np.prod(shape[:axis])), int(np.prod(shape[axis:]))))
        axis = 1
    idx = P("argmax", x, axis=axis, keepdims=True)
    pos = reshape(const(np.arange(x.shape[axis])), [-1 if i == axis else 1 for i in range(x.ndim)])
    return reshape(cast(P("eq", idx, pos), x.dtype), shape)


# ------------------------------------------------------------------------------ products
@onnx_op("MatMul")
def matmul(ctx, a, b):
    return S.matmul(a, b)


@onnx_op("Gemm")
def gemm(ctx, a, b, c=None):
    if ctx.get("transA", 0):
        a = S.transpose(a, 0, 1)
    if ctx.get("transB", 0):
        b = S.transpose(b, 0, 1)
    y = S.matmul(a, b)
    alpha, beta = ctx.get("alpha", 1.0), ctx.get("beta", 1.0)
    if alpha != 1.0:
        y = P("mul", y, scalar(y, alpha))
    if c is not None:
        y = P("add", y, c if beta == 1.0 else P("mul", c, scalar(c, beta)))
    return y


@onnx_op("Einsum")
def einsum(ctx, *xs):
    return S.einsum(ctx.get("equation").replace(" ", ""), *xs)


@onnx_op("Det")
def det(ctx, x):
    # LU-free composition is long; the determinant is rare in models, so it reads the values
    return const(np.linalg.det(x._data).astype(x.dtype))


# ------------------------------------------------------------------------------ random (seeded)
def _rng(ctx) -> np.random.Generator:
    seed = ctx.get("seed")
    return np.random.default_rng(None if seed is None else int(np.float32(seed).view(np.int32)))


def _rand_dtype(ctx, like: Tensor | None = None) -> np.dtype:
    if ctx.get("dtype") is not None:
        return np_dtype(ctx.get("dtype"))
    return like.dtype if like is not None else np.dtype(np.float32)


@onnx_op("RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike")
def random_(ctx, like=None):
    shape = like.shape if like is not None else tuple(ctx.get("shape"))
    rng = _rng(ctx)
    if "Normal" in ctx.node.op_type:
        v = rng.normal(ctx.get("mean", 0.0), ctx.get("scale", 1.0), shape)
    else:
        v = rng.uniform(ctx.get("low", 0.0), ctx.get("high", 1.0), shape)
    return const(v.astype(_rand_dtype(ctx, like)))


@onnx_op("Bernoulli")
def bernoulli(ctx, p):
    draw = _rng(ctx).uniform(0.0, 1.0, p.shape)
    return const((draw < p._data).astype(_rand_dtype(ctx, p)))


# ------------------------------------------------------------------------------ late additions
@onnx_op("Swish", since=24)
def swish(ctx, x):
    """``x * sigmoid(alpha * x)``."""
    return P("mul", x, P("sigmoid", P("mul", x, scalar(x, ctx.get("alpha", 1.0)))))


@onnx_op("BitCast", since=26)
def bit_cast(ctx, x):
    """Reinterpret the bits as another type of the same width (a view; no gradient)."""
    to = np_dtype(ctx.get("to"))
    if x.dtype.kind in "USO" or to.kind in "USO" or x.dtype.itemsize != to.itemsize:
        raise onnx_error(ctx.where, "BitCast needs non-string types of equal bit width",
                         actual=f"{x.dtype} ({x.dtype.itemsize * 8} bits) -> {to} ({to.itemsize * 8} bits)")
    return const(np.array(x._data, copy=True).view(to))      # a copy is C-contiguous and keeps a 0-d shape


@onnx_op("SwiGLU", since=28)
def swiglu(ctx, a, b):
    """``swish(a, alpha) * b`` (same shapes: no broadcasting)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        raise onnx_error(ctx.where, "A and B must have the same shape and dtype (no broadcasting)",
                         actual=f"A {a.shape} {a.dtype}, B {b.shape} {b.dtype}")
    return P("mul", swish(ctx, a), b)
