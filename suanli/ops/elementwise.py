"""Elementwise primitives and their public functions: arithmetic, unary math, rounding, pow,
maximum/minimum, comparisons, logical/bitwise ops, where, clamp, casts (activations live in
:mod:`suanli.ops.activation` and are re-exported from here).

Each primitive: NumPy impl, shape/dtype rule, VJP and JVP written with suanli ops, with torch's
gradient conventions at kinks and ties (abs'(0) = 0, maximum splits ties 0.5/0.5, clamp passes the
gradient on its bounds, floor/round/sign have zero gradient...). Public functions promote dtypes the
PyTorch way, then call :func:`apply`.

>>> import suanli
>>> x = suanli.tensor([1.0, 2.0])
>>> (x + 1) * 2
tensor([4., 6.])
>>> (suanli.tensor([1, 2]) / 2).tolist()
[0.5, 1.0]
>>> suanli.tensor([1.0, -2.0]).abs().tolist(), (suanli.tensor([3, 4]) > 3).tolist()
([1.0, 2.0], [False, True])
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import dtypes as _dt
from .. import native
from .._config import state
from ..errors import DTypeError, SuanliError, op_error
from ..tensor import Tensor, _wrap
from ._helpers import (add_tangents, as_tensor, broadcast_shapes, infer_broadcast, infer_float_unary,
                       infer_same, promote)
from .registry import Primitive, Spec, apply, defprim, other_inputs, spec_str, tensor_method

__all__ = ["add", "sub", "mul", "div", "true_divide", "neg", "negative", "exp", "cast", "clone",
           # unary math
           "abs", "absolute", "sign", "log", "log1p", "expm1", "sqrt", "rsqrt", "reciprocal", "sin", "cos",
           "tanh", "sigmoid", "erf", "square", "positive",
           # rounding (zero gradient, as in torch)
           "floor", "ceil", "round", "trunc", "fix",
           # binary
           "pow", "maximum", "minimum", "fmod", "remainder", "floor_divide",
           "eq", "ne", "lt", "le", "gt", "ge", "greater", "greater_equal", "less", "less_equal",
           "not_equal", "isnan", "isinf", "isfinite",
           "logical_and", "logical_or", "logical_xor", "logical_not",
           "bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_not",
           # selection / clamping / composites
           "where", "clamp", "clip", "clamp_min", "clamp_max", "lerp", "addcmul", "addcdiv"]


def _binary(prim, a: Any, b: Any) -> Tensor:
    """Fast path for two same-dtype tensors; otherwise torch promotion first."""
    if type(a) is Tensor and type(b) is Tensor and a._data.dtype is b._data.dtype:
        return apply(prim, a, b)
    return apply(prim, *promote(a, b))


def checked_apply(prim, *inputs: Tensor, **attrs: Any) -> Tensor:
    """:func:`apply`, first running the shape/dtype rule when an input is not floating point.

    NumPy silently computes things torch rejects (``relu`` of bool, ``gelu`` of int64 -> float64...);
    apply() only runs the rule under SUANLI_CHECK_SHAPES, so ops whose impl would accept a wrong
    dtype validate here. Float inputs -- the hot path -- skip the rule.
    """
    if not state.check_shapes:
        for t in inputs:
            if t._data.dtype not in _dt.FLOATING:
                prim.infer(*[Spec(u._data.shape, u._data.dtype) for u in inputs], **attrs)
                break
    return apply(prim, *inputs, **attrs)


def _binary_checked(prim, a: Any, b: Any) -> Tensor:
    if type(a) is Tensor and type(b) is Tensor and a._data.dtype is b._data.dtype:
        return checked_apply(prim, a, b)
    return checked_apply(prim, *promote(a, b))


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

    ``rounding_mode='floor'|'trunc'`` rounds the quotient and keeps the promoted dtype (ints stay
    ints); like torch, the rounded quotient has a zero gradient.

    >>> import suanli
    >>> suanli.div(suanli.tensor([7, -7]), 2, rounding_mode="floor").tolist()
    [3, -4]
    >>> suanli.div(suanli.tensor([7, -7]), 2, rounding_mode="trunc").tolist()
    [3, -3]
    """
    if rounding_mode is not None:
        if rounding_mode not in ("floor", "trunc"):
            raise op_error("div", f"unknown rounding_mode {rounding_mode!r}", expect="None, 'floor' or 'trunc'",
                           cls=ValueError)  # type: ignore[arg-type]
        return checked_apply(DIV_ROUND, *promote(input, other), mode=rounding_mode)
    if (type(input) is Tensor and type(other) is Tensor and input._data.dtype is other._data.dtype
            and input._data.dtype in _dt.FLOATING):
        return apply(DIV, input, other)
    return apply(DIV, *promote(input, other, float_result=True))


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


negative = neg


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
    return np.array(x, order="C", copy=True)      # C order: contiguous() relies on it


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


# ==================================================================================================
# Helpers for the op families below
# ==================================================================================================
class IntegerDivisionByZero(SuanliError, ZeroDivisionError):
    """Integer ``floor_divide``/``fmod``/``remainder`` by zero (torch raises too; floats give inf/nan)."""


def _check_int_divisor(op: str, y: np.ndarray) -> None:
    if y.dtype.kind in "iub" and not np.all(y):
        raise IntegerDivisionByZero(f"{op}: integer division by zero\n"
                                    "  help: mask the zero divisors, or divide in floating point")


def _zeros(shape: tuple[int, ...], dtype: np.dtype) -> Tensor:
    return _wrap(np.zeros(shape, dtype))


def defunary(name: str, impl: Any, grad_times: Any, *, infer: Any = None, **kwargs: Any) -> Primitive:
    """Register an elementwise unary primitive ``y = f(x)``.

    Its Jacobian is diagonal, so one rule ``grad_times(ctx, v) = f'(x) * v`` serves as the VJP
    (``v`` = output cotangent) and as the JVP (``v`` = input tangent). ``grad_times`` is written with
    suanli ops, so it is differentiable again.
    """
    def vjp(ctx, g):
        return (grad_times(ctx, g),)

    def jvp(ctx, t):
        return grad_times(ctx, t[0])

    vjp.__name__, jvp.__name__ = f"_{name}_vjp", f"_{name}_jvp"
    vjp.__qualname__, jvp.__qualname__ = vjp.__name__, jvp.__name__
    return defprim(name, impl, infer or infer_float_unary(name), vjp=vjp, jvp=jvp, **kwargs)


def _quiet(ufunc: Any) -> Any:
    """A NumPy ufunc as an impl that, like torch, returns inf/nan silently (log(0), sqrt(-1)...)."""
    def impl(x):
        with np.errstate(all="ignore"):
            return ufunc(x)
    impl.__name__ = impl.__qualname__ = f"_{ufunc.__name__}_impl"
    return impl


def _zero_vjp(ctx, g):
    """Piecewise-constant ops (floor, sign, ...): torch defines their gradient as zero."""
    return tuple(_zeros(t._data.shape, t._data.dtype) if need else None
                 for t, need in zip(ctx.inputs, ctx.needs))


def _zero_jvp(ctx, t):
    return _zeros(ctx.out._data.shape, ctx.out._data.dtype)


def _infer_numeric(op: str):
    """Unary elementwise on numbers (not bool): same shape and dtype."""
    def rule(x: Spec, **attrs: Any) -> Spec:
        if x.dtype == _dt.bool_:
            raise op_error(op, "is not defined for bool tensors", actual=spec_str(x),
                           hint="convert first, e.g. x.int() or x.float()", cls=DTypeError)
        return Spec(tuple(x.shape), x.dtype)
    rule.__name__ = f"infer_{op}"
    return rule


def _infer_arith(op: str, out_dtype: np.dtype | None = None):
    """Binary elementwise arithmetic: broadcast, one shared dtype, not bool."""
    broadcast_rule = infer_broadcast(op, out_dtype)

    def rule(*specs: Spec, **attrs: Any) -> Spec:
        out = broadcast_rule(*specs)
        if specs[0].dtype == _dt.bool_:
            raise op_error(op, "is not defined for bool tensors", actual=spec_str(*specs),
                           hint="convert first, e.g. x.int() or x.float()", cls=DTypeError)
        return out
    rule.__name__ = f"infer_{op}"
    return rule


def _is_operand(x: Any) -> bool:
    """What the binary dunders accept (anything else returns NotImplemented, as Python expects)."""
    return isinstance(x, (Tensor, np.ndarray, np.generic, int, float, bool, list, tuple))


# ==================================================================================================
# erf: NumPy has none, so a polynomial kernel fitted once at import against math.erf / math.erfc.
#   |x| <  0.75:  erf(x)  = x * P(x**2)                  (keeps full relative accuracy near 0)
#   |x| >= 0.75:  erf(x)  = 1 - exp(-x**2) * Q(1/|x|)     (Q fits erfc(x) exp(x**2); |x| clipped to 6,
#                                                         beyond which erf(x) rounds to +-1 in float64)
# float64 is within a few ulp of the true value (tests check against math.erf); float32 has its own
# kernel below.
# ==================================================================================================
_ERF_SPLIT, _ERF_END = 0.75, 6.0
_TWO_OVER_SQRT_PI = 2.0 / np.sqrt(np.pi)


def _chebyshev_fit(fn: Any, lo: float, hi: float, degree: int) -> np.ndarray:
    """Power-basis coefficients (lowest first) in ``s = (2v - lo - hi) / (hi - lo)`` of the
    polynomial interpolating ``fn`` at Chebyshev nodes of [lo, hi] (close to the minimax fit)."""
    cheb = np.polynomial.chebyshev
    n = 256
    s = np.cos(np.pi * (np.arange(n) + 0.5) / n)
    v = lo + (s + 1) * (hi - lo) / 2
    return cheb.cheb2poly(cheb.chebfit(s, np.array([fn(float(vi)) for vi in v]), degree))


def _erf_over_x(t: float) -> float:
    x = np.sqrt(t)
    return float(_TWO_OVER_SQRT_PI) if x == 0 else math.erf(x) / x


def _scaled_erfc(u: float) -> float:
    x = 1.0 / u
    return math.erfc(x) * math.exp(x * x)


def _erf_coefficients(dtype: np.dtype, small_degree: int, large_degree: int) -> tuple:
    p = _chebyshev_fit(_erf_over_x, 0.0, _ERF_SPLIT ** 2, small_degree)
    u_lo, u_hi = 1.0 / _ERF_END, 1.0 / _ERF_SPLIT
    q = _chebyshev_fit(_scaled_erfc, u_lo, u_hi, large_degree)
    c = dtype.type
    return ([c(v) for v in p], [c(v) for v in q], c(2.0 / _ERF_SPLIT ** 2),
            c(2.0 / (u_hi - u_lo)), c((u_hi + u_lo) / (u_hi - u_lo)))


def _horner(coeffs: list, s: np.ndarray) -> np.ndarray:
    out = np.full_like(s, coeffs[-1])
    for c in coeffs[-2::-1]:
        out *= s
        out += c
    return out


_ERF_COEFFS = {_dt.float64: _erf_coefficients(_dt.float64, 10, 26)}


# float32: one rational function x * P(x^2) / Q(x^2) on x clipped to [-4, 4] (the coefficients of
# Eigen's generic_fast_erf_float; within 8 ulp of math.erf), ~23 in-place passes instead of ~45
# for the two-piece fit -- erf is the cost of every exact GELU in a transformer.
_ERF32_P = [np.float32(c) for c in (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06,
                                    -5.69250639462346e-05, -7.34990630326855e-04, -2.95459980854025e-03,
                                    -1.60960333262415e-02)]
_ERF32_Q = [np.float32(c) for c in (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03,
                                    -7.37332916720468e-03, -1.42647390514189e-02)]


def _erf_float32(x: np.ndarray) -> np.ndarray:
    kernel = native.kernel("gelu", "erf_f32")          # the same formula in one native pass
    if kernel is not None:
        out = np.empty(x.shape, np.float32)
        kernel(np.ascontiguousarray(x), out)
        return out
    xc = np.clip(x, np.float32(-4), np.float32(4))
    x2 = xc * xc
    p = _horner(_ERF32_P[::-1], x2)
    p *= xc
    p /= _horner(_ERF32_Q[::-1], x2)
    return p


def _erf_impl(x):
    if x.ndim == 0:                         # ufuncs turn 0-d arrays into scalars; the kernel works in place
        return _erf_impl(x.reshape(1)).reshape(())
    if x.dtype in _dt.HALF:                 # apply() upcasts already; this serves direct callers
        return _erf_impl(x.astype(np.float32)).astype(x.dtype)
    if x.dtype == np.float32:
        return _erf_float32(x)
    p, q, t_scale, u_scale, u_shift = _ERF_COEFFS[x.dtype]
    a = np.abs(x)
    s = np.minimum(a, _ERF_SPLIT)
    s *= s
    s *= t_scale
    s -= 1
    small = _horner(p, s)
    small *= x
    b = np.clip(a, _ERF_SPLIT, _ERF_END)
    large = _horner(q, np.divide(u_scale, b) - u_shift)
    b *= b
    np.negative(b, out=b)
    np.exp(b, out=b)
    large *= b
    np.subtract(1, large, out=large)
    np.copysign(large, x, out=large)
    return np.where(a < _ERF_SPLIT, small, large)


def _sigmoid_np(x: np.ndarray) -> np.ndarray:
    """Overflow-free logistic function: exp only ever sees -|x|."""
    with np.errstate(all="ignore"):
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


# ==================================================================================================
# Unary math
# ==================================================================================================
def _log_grad(ctx, v):
    return v / ctx.inputs[0]


def _log1p_grad(ctx, v):
    return v / (ctx.inputs[0] + 1)


def _expm1_grad(ctx, v):
    return v * (ctx.out + 1)


def _sqrt_grad(ctx, v):
    return v / (ctx.out * 2)


def _rsqrt_impl(x):
    with np.errstate(all="ignore"):
        return 1 / np.sqrt(x)


def _rsqrt_grad(ctx, v):
    return v * pow(ctx.out, 3) * -0.5


def _reciprocal_grad(ctx, v):
    return neg(v * (ctx.out * ctx.out))


def _sin_grad(ctx, v):
    return v * cos(ctx.inputs[0])


def _cos_grad(ctx, v):
    return neg(v * sin(ctx.inputs[0]))


def _tanh_grad(ctx, v):
    return v * (1 - ctx.out * ctx.out)


def _sigmoid_grad(ctx, v):
    return v * (ctx.out * (1 - ctx.out))


def _erf_grad(ctx, v):
    x = ctx.inputs[0]
    return v * (exp(neg(x * x)) * float(_TWO_OVER_SQRT_PI))


def _abs_grad(ctx, v):
    return v * sign(ctx.inputs[0])          # torch: abs'(0) = sign(0) = 0


_OUT_ONLY = {"save_inputs": False, "save_output": True}
LOG = defunary("log", _quiet(np.log), _log_grad)
LOG1P = defunary("log1p", _quiet(np.log1p), _log1p_grad)
EXPM1 = defunary("expm1", _quiet(np.expm1), _expm1_grad, **_OUT_ONLY)
SQRT = defunary("sqrt", _quiet(np.sqrt), _sqrt_grad, **_OUT_ONLY)
RSQRT = defunary("rsqrt", _rsqrt_impl, _rsqrt_grad, **_OUT_ONLY)
RECIPROCAL = defunary("reciprocal", _quiet(np.reciprocal), _reciprocal_grad, **_OUT_ONLY)
SIN = defunary("sin", _quiet(np.sin), _sin_grad)
COS = defunary("cos", _quiet(np.cos), _cos_grad)
TANH = defunary("tanh", np.tanh, _tanh_grad, **_OUT_ONLY)
SIGMOID = defunary("sigmoid", _sigmoid_np, _sigmoid_grad, **_OUT_ONLY)
ERF = defunary("erf", _erf_impl, _erf_grad)
ABS = defunary("abs", np.abs, _abs_grad, infer=_infer_numeric("abs"))


@tensor_method
def log(input: Tensor) -> Tensor:
    """Natural logarithm (``-inf`` at 0, ``nan`` below, silently, as in torch)."""
    return apply(LOG, _float_input(input))


@tensor_method
def log1p(input: Tensor) -> Tensor:
    """``log(1 + input)``, accurate for small inputs."""
    return apply(LOG1P, _float_input(input))


@tensor_method
def expm1(input: Tensor) -> Tensor:
    """``exp(input) - 1``, accurate for small inputs."""
    return apply(EXPM1, _float_input(input))


@tensor_method
def sqrt(input: Tensor) -> Tensor:
    """Square root (ints compute in the default float dtype).

    >>> import suanli
    >>> suanli.sqrt(suanli.tensor([4, 9])).tolist()
    [2.0, 3.0]
    """
    return apply(SQRT, _float_input(input))


@tensor_method
def rsqrt(input: Tensor) -> Tensor:
    """``1 / sqrt(input)``."""
    return apply(RSQRT, _float_input(input))


@tensor_method
def reciprocal(input: Tensor) -> Tensor:
    """``1 / input`` (ints give the default float dtype)."""
    return apply(RECIPROCAL, _float_input(input))


@tensor_method
def sin(input: Tensor) -> Tensor:
    """Sine, elementwise."""
    return apply(SIN, _float_input(input))


@tensor_method
def cos(input: Tensor) -> Tensor:
    """Cosine, elementwise."""
    return apply(COS, _float_input(input))


@tensor_method
def tanh(input: Tensor) -> Tensor:
    """Hyperbolic tangent."""
    return apply(TANH, _float_input(input))


@tensor_method
def sigmoid(input: Tensor) -> Tensor:
    """Logistic function ``1 / (1 + exp(-input))``, stable for large ``|input|``.

    >>> import suanli
    >>> suanli.sigmoid(suanli.tensor([-1000.0, 0.0, 1000.0])).tolist()
    [0.0, 0.5, 1.0]
    """
    return apply(SIGMOID, _float_input(input))


@tensor_method
def erf(input: Tensor) -> Tensor:
    """Gauss error function (a polynomial kernel within a few ulp; NumPy has no erf).

    >>> import suanli
    >>> print(f"{suanli.erf(suanli.tensor([0.5], dtype=suanli.float64)).item():.12f}")
    0.520499877813
    """
    return apply(ERF, _float_input(input))


@tensor_method(names=["abs", "absolute", "__abs__"])
def abs(input: Tensor) -> Tensor:
    """Absolute value; its gradient at 0 is 0 (``sign(0)``), as in torch."""
    return checked_apply(ABS, as_tensor(input))


absolute = abs


@tensor_method
def square(input: Tensor) -> Tensor:
    """``input ** 2`` (bool and int inputs give int64, as in torch)."""
    return pow(input, 2)


@tensor_method(names=["positive", "__pos__"])
def positive(input: Tensor) -> Tensor:
    """``+input``: the tensor itself."""
    return input


# ==================================================================================================
# Piecewise-constant unary ops: differentiable with a zero gradient (torch's convention)
# ==================================================================================================
def _sign_impl(x):
    if x.dtype == _dt.bool_:
        return x.copy()
    if x.dtype.kind == "f":                  # (x > 0) - (x < 0), as torch: sign(nan) is 0, not nan
        return np.subtract(x > 0, x < 0, dtype=x.dtype)
    return np.sign(x)


def _floor_impl(x):
    return x.copy() if x.dtype.kind in "iu" else np.floor(x)


def _ceil_impl(x):
    return x.copy() if x.dtype.kind in "iu" else np.ceil(x)


def _trunc_impl(x):
    return x.copy() if x.dtype.kind in "iu" else np.trunc(x)


def _round_impl(x, *, decimals):
    return x.copy() if x.dtype.kind in "iu" else np.round(x, decimals)


_ZERO_GRAD = {"vjp": _zero_vjp, "jvp": _zero_jvp, "save_inputs": False}
SIGN = defprim("sign", _sign_impl, infer_same, **_ZERO_GRAD)
FLOOR = defprim("floor", _floor_impl, _infer_numeric("floor"), **_ZERO_GRAD)
CEIL = defprim("ceil", _ceil_impl, _infer_numeric("ceil"), **_ZERO_GRAD)
TRUNC = defprim("trunc", _trunc_impl, _infer_numeric("trunc"), **_ZERO_GRAD)
ROUND = defprim("round", _round_impl, _infer_numeric("round"), **_ZERO_GRAD)


@tensor_method
def sign(input: Tensor) -> Tensor:
    """-1, 0 or 1 by the sign of each element (zero gradient)."""
    return apply(SIGN, as_tensor(input))


@tensor_method
def floor(input: Tensor) -> Tensor:
    """Largest integer <= input (ints unchanged; zero gradient, as in torch)."""
    return checked_apply(FLOOR, as_tensor(input))


@tensor_method
def ceil(input: Tensor) -> Tensor:
    """Smallest integer >= input (zero gradient)."""
    return checked_apply(CEIL, as_tensor(input))


@tensor_method(names=["trunc", "fix"])
def trunc(input: Tensor) -> Tensor:
    """Round toward zero (zero gradient)."""
    return checked_apply(TRUNC, as_tensor(input))


fix = trunc


@tensor_method
def round(input: Tensor, *, decimals: int = 0) -> Tensor:
    """Round half to even, to ``decimals`` places (zero gradient).

    >>> import suanli
    >>> suanli.round(suanli.tensor([0.5, 1.5, 2.5])).tolist()
    [0.0, 2.0, 2.0]
    """
    return checked_apply(ROUND, as_tensor(input), decimals=int(decimals))


# ==================================================================================================
# pow
# ==================================================================================================
def _int_power(x, y):
    """Integer ``x ** y``; a negative exponent truncates toward zero like torch (1, +-1 or 0)."""
    negative_exp = y < 0
    if not np.any(negative_exp):
        return np.power(x, y)
    out = np.power(x, np.where(negative_exp, 0, y))
    x, y = np.broadcast_arrays(x, y)
    odd = (y % 2) != 0
    inverse = np.where(x == 1, 1, np.where(x == -1, np.where(odd, -1, 1), 0))
    return np.where(negative_exp, inverse, out).astype(out.dtype)


def _pow_scalar_exponent(x, e):
    """torch's shortcuts for common scalar exponents (much faster than the general np.power);
    ``None`` where there is none."""
    if e == 2:
        return x * x
    if e == 3:
        return x * x * x
    if x.dtype.kind != "f":
        return None
    if e == 0.5:
        return np.sqrt(x)
    if e == -0.5:
        return 1 / np.sqrt(x)
    if e == -1:
        return 1 / x
    if e == -2:
        return 1 / (x * x)
    return None


def _pow_impl(x, y):
    with np.errstate(all="ignore"):
        if y.ndim == 0:
            out = _pow_scalar_exponent(x, y[()])
            if out is not None:
                return out
        if x.dtype.kind in "iu":
            return _int_power(x, y)
        return np.power(x, y)


def _pow_base_grad(x, e, v):
    # torch masks exponent == 0, so 0 ** 0 (and x ** 0 generally) has gradient 0, never nan;
    # the masked lanes use exponent 1 so that no 0 * inf is computed (and warned about) at all
    zero_exp = e == 0
    return v * where(zero_exp, 0, e * pow(x, where(zero_exp, 1, e) - 1))


def _pow_exponent_grad(x, e, out, v):
    # d/de x**e = x**e log(x); torch defines it as 0 where x == 0 and e >= 0 (instead of 0 * -inf)
    masked = logical_and(x == 0, e >= 0)
    return v * where(masked, 0, out * log(where(masked, 1, x)))


def _pow_vjp(ctx, g):
    x, e = ctx.inputs
    return (_pow_base_grad(x, e, g) if ctx.needs[0] else None,
            _pow_exponent_grad(x, e, ctx.out, g) if ctx.needs[1] else None)


def _pow_jvp(ctx, t):
    x, e = ctx.inputs
    tx, te = t
    return add_tangents(None if tx is None else _pow_base_grad(x, e, tx),
                        None if te is None else _pow_exponent_grad(x, e, ctx.out, te))


POW = defprim("pow", _pow_impl, _infer_arith("pow"), vjp=_pow_vjp, jvp=_pow_jvp, save_output=True)


@tensor_method(names=["pow", "__pow__"])
def pow(input: Any, exponent: Any) -> Tensor:
    """``input ** exponent`` with broadcasting; either may be a Python number.

    Gradients follow torch: w.r.t. the base, 0 where the exponent is 0; w.r.t. the exponent,
    ``x**e * log(x)``, defined as 0 where ``x == 0 and e >= 0``.

    >>> import suanli
    >>> (suanli.tensor([1.0, 2.0, 3.0]) ** 2).tolist(), (2 ** suanli.tensor([1, 2, 3])).tolist()
    ([1.0, 4.0, 9.0], [2, 4, 8])
    """
    x, e = promote(input, exponent)
    if (x._data.dtype.kind in "iu" and not isinstance(exponent, Tensor)
            and isinstance(exponent, (int, np.integer)) and exponent < 0):
        raise op_error("pow", "integers to negative integer powers are not allowed",
                       actual=f"{spec_str(Spec(x.shape, x.dtype))} ** {exponent}",
                       hint="use a float base, e.g. x.float() ** -1", cls=DTypeError)
    return checked_apply(POW, x, e)


@tensor_method("__rpow__")
def _rpow(self: Tensor, other: Any) -> Tensor:
    return pow(other, self)


# ==================================================================================================
# maximum / minimum: ties split the gradient 0.5 / 0.5 (torch)
# ==================================================================================================
def _maximum_vjp(ctx, g):
    x, y = ctx.inputs
    split = where(x == y, g / 2, g)
    return (where(x < y, 0, split) if ctx.needs[0] else None,
            where(x > y, 0, split) if ctx.needs[1] else None)


def _minimum_vjp(ctx, g):
    x, y = ctx.inputs
    split = where(x == y, g / 2, g)
    return (where(x > y, 0, split) if ctx.needs[0] else None,
            where(x < y, 0, split) if ctx.needs[1] else None)


def _select_jvp(w: Tensor, t) -> Tensor:
    """Tangent of an op that picks input 0 with weight ``w`` and input 1 with ``1 - w``."""
    tx, ty = t
    return add_tangents(None if tx is None else w * tx, None if ty is None else (1 - w) * ty)


def _maximum_jvp(ctx, t):
    x, y = ctx.inputs
    return _select_jvp(where(x == y, 0.5, cast(x > y, x._data.dtype)), t)


def _minimum_jvp(ctx, t):
    x, y = ctx.inputs
    return _select_jvp(where(x == y, 0.5, cast(x < y, x._data.dtype)), t)


MAXIMUM = defprim("maximum", np.maximum, infer_broadcast("maximum"), vjp=_maximum_vjp, jvp=_maximum_jvp)
MINIMUM = defprim("minimum", np.minimum, infer_broadcast("minimum"), vjp=_minimum_vjp, jvp=_minimum_jvp)


@tensor_method
def maximum(input: Any, other: Any) -> Tensor:
    """Elementwise maximum (NaN propagates); on ties each input gets half the gradient.

    >>> import suanli
    >>> suanli.maximum(suanli.tensor([1, 5]), suanli.tensor([3, 2])).tolist()
    [3, 5]
    """
    return _binary(MAXIMUM, input, other)


@tensor_method
def minimum(input: Any, other: Any) -> Tensor:
    """Elementwise minimum (NaN propagates); on ties each input gets half the gradient."""
    return _binary(MINIMUM, input, other)


# ==================================================================================================
# fmod / remainder / rounding division
# ==================================================================================================
def _fmod_impl(x, y):
    _check_int_divisor("fmod", y)
    with np.errstate(all="ignore"):
        return np.fmod(x, y)


def _remainder_impl(x, y):
    _check_int_divisor("remainder", y)
    with np.errstate(all="ignore"):
        return np.remainder(x, y)


def _other_saved(needs):
    """The divisor's gradient reads both inputs; the dividend's reads none."""
    return (0, 1) if needs[1] else ()


def _rounded_quotient(ctx) -> Tensor:
    x, y = ctx.inputs
    return div(x, y, rounding_mode="trunc" if ctx.prim.name == "fmod" else "floor")


def _mod_vjp(ctx, g):
    # x mod y = x - y * q with q piecewise constant: d/dx = 1, d/dy = -q
    return (g if ctx.needs[0] else None,
            neg(g * _rounded_quotient(ctx)) if ctx.needs[1] else None)


def _mod_jvp(ctx, t):
    tx, ty = t
    return add_tangents(tx, None if ty is None else neg(ty * _rounded_quotient(ctx)))


FMOD = defprim("fmod", _fmod_impl, _infer_arith("fmod"), vjp=_mod_vjp, jvp=_mod_jvp, saved_inputs=_other_saved)
REMAINDER = defprim("remainder", _remainder_impl, _infer_arith("remainder"), vjp=_mod_vjp, jvp=_mod_jvp,
                    saved_inputs=_other_saved)


def _div_round_impl(x, y, *, mode):
    _check_int_divisor("div", y)
    with np.errstate(all="ignore"):
        if mode == "floor":
            return np.floor_divide(x, y)            # Python's floor division, as torch's
        if x.dtype.kind in "iu":                     # C-style truncation for integers
            q, r = np.divmod(x, y)
            return np.where((r != 0) & ((x < 0) != (y < 0)), q + 1, q).astype(q.dtype)
        return np.trunc(x / y)


DIV_ROUND = defprim("div_round", _div_round_impl, _infer_arith("div_round"), **_ZERO_GRAD)


@tensor_method
def fmod(input: Any, other: Any) -> Tensor:
    """C-style remainder: the result has the sign of ``input`` (``x - y * trunc(x / y)``)."""
    return _binary_checked(FMOD, input, other)


@tensor_method(names=["remainder", "__mod__"])
def remainder(input: Any, other: Any) -> Tensor:
    """Python-style modulus: the result has the sign of ``other``.

    >>> import suanli
    >>> (suanli.tensor([-3, 3]) % 2).tolist(), suanli.fmod(suanli.tensor([-3, 3]), 2).tolist()
    ([1, 1], [-1, 1])
    """
    return _binary_checked(REMAINDER, input, other)


@tensor_method("__rmod__")
def _rmod(self: Tensor, other: Any) -> Tensor:
    return remainder(other, self)


@tensor_method(names=["floor_divide", "__floordiv__"])
def floor_divide(input: Any, other: Any) -> Tensor:
    """``input // other`` rounded toward -inf (ints stay ints); the gradient is zero."""
    return div(input, other, rounding_mode="floor")


@tensor_method("__rfloordiv__")
def _rfloordiv(self: Tensor, other: Any) -> Tensor:
    return floor_divide(other, self)


# ==================================================================================================
# Comparisons and predicates (bool results, no gradient)
# ==================================================================================================
def _comparison(name: str, ufunc: Any) -> Primitive:
    return defprim(name, ufunc, infer_broadcast(name, _dt.bool_), differentiable=False, save_inputs=False,
                   upcast_half=False)


EQ = _comparison("eq", np.equal)
NE = _comparison("ne", np.not_equal)
LT = _comparison("lt", np.less)
LE = _comparison("le", np.less_equal)
GT = _comparison("gt", np.greater)
GE = _comparison("ge", np.greater_equal)


@tensor_method
def eq(input: Any, other: Any) -> Tensor:
    """``input == other`` elementwise (compared in the promoted dtype)."""
    return _binary(EQ, input, other)


@tensor_method(names=["ne", "not_equal"])
def ne(input: Any, other: Any) -> Tensor:
    """``input != other`` elementwise."""
    return _binary(NE, input, other)


@tensor_method(names=["lt", "less", "__lt__"])
def lt(input: Any, other: Any) -> Tensor:
    """``input < other`` elementwise.

    >>> import suanli
    >>> (suanli.tensor([1, 2, 3]) < 2.5).tolist()
    [True, True, False]
    """
    return _binary(LT, input, other)


@tensor_method(names=["le", "less_equal", "__le__"])
def le(input: Any, other: Any) -> Tensor:
    """``input <= other`` elementwise."""
    return _binary(LE, input, other)


@tensor_method(names=["gt", "greater", "__gt__"])
def gt(input: Any, other: Any) -> Tensor:
    """``input > other`` elementwise."""
    return _binary(GT, input, other)


@tensor_method(names=["ge", "greater_equal", "__ge__"])
def ge(input: Any, other: Any) -> Tensor:
    """``input >= other`` elementwise."""
    return _binary(GE, input, other)


not_equal, less, less_equal, greater, greater_equal = ne, lt, le, gt, ge


@tensor_method("__eq__")
def _eq_operator(self: Tensor, other: Any) -> Any:
    return eq(self, other) if _is_operand(other) else NotImplemented


@tensor_method("__ne__")
def _ne_operator(self: Tensor, other: Any) -> Any:
    return ne(self, other) if _is_operand(other) else NotImplemented


def _infer_predicate(x: Spec, **attrs: Any) -> Spec:
    return Spec(tuple(x.shape), _dt.bool_)


def _isnan_impl(x):
    return np.isnan(x) if x.dtype.kind == "f" else np.zeros(x.shape, np.bool_)


def _isinf_impl(x):
    return np.isinf(x) if x.dtype.kind == "f" else np.zeros(x.shape, np.bool_)


def _isfinite_impl(x):
    return np.isfinite(x) if x.dtype.kind == "f" else np.ones(x.shape, np.bool_)


ISNAN = defprim("isnan", _isnan_impl, _infer_predicate, differentiable=False, save_inputs=False)
ISINF = defprim("isinf", _isinf_impl, _infer_predicate, differentiable=False, save_inputs=False)
ISFINITE = defprim("isfinite", _isfinite_impl, _infer_predicate, differentiable=False, save_inputs=False)


@tensor_method
def isnan(input: Tensor) -> Tensor:
    """True where the element is NaN."""
    return apply(ISNAN, as_tensor(input))


@tensor_method
def isinf(input: Tensor) -> Tensor:
    """True where the element is +-inf."""
    return apply(ISINF, as_tensor(input))


@tensor_method
def isfinite(input: Tensor) -> Tensor:
    """True where the element is neither inf nor NaN."""
    return apply(ISFINITE, as_tensor(input))


# ==================================================================================================
# Logical (any dtype in, bool out) and bitwise (bool/int in, same dtype out)
# ==================================================================================================
def _infer_logical(op: str):
    def rule(*specs: Spec, **attrs: Any) -> Spec:
        return Spec(broadcast_shapes(op, *(s.shape for s in specs)), _dt.bool_)
    rule.__name__ = f"infer_{op}"
    return rule


def _infer_bitwise(op: str):
    broadcast_rule = infer_broadcast(op)

    def rule(*specs: Spec, **attrs: Any) -> Spec:
        out = broadcast_rule(*specs)
        if out.dtype != _dt.bool_ and out.dtype.kind not in "iu":
            raise op_error(op, "is only defined for integer and bool tensors", actual=spec_str(*specs),
                           hint="use logical_and/or/xor/not for truth values of float tensors",
                           cls=DTypeError)
        return out
    rule.__name__ = f"infer_{op}"
    return rule


_NO_GRAD = {"differentiable": False, "save_inputs": False}
LOGICAL_AND = defprim("logical_and", np.logical_and, _infer_logical("logical_and"), **_NO_GRAD)
LOGICAL_OR = defprim("logical_or", np.logical_or, _infer_logical("logical_or"), **_NO_GRAD)
LOGICAL_XOR = defprim("logical_xor", np.logical_xor, _infer_logical("logical_xor"), **_NO_GRAD)
LOGICAL_NOT = defprim("logical_not", np.logical_not, _infer_logical("logical_not"), **_NO_GRAD)
BITWISE_AND = defprim("bitwise_and", np.bitwise_and, _infer_bitwise("bitwise_and"), **_NO_GRAD)
BITWISE_OR = defprim("bitwise_or", np.bitwise_or, _infer_bitwise("bitwise_or"), **_NO_GRAD)
BITWISE_XOR = defprim("bitwise_xor", np.bitwise_xor, _infer_bitwise("bitwise_xor"), **_NO_GRAD)
BITWISE_NOT = defprim("bitwise_not", np.invert, _infer_bitwise("bitwise_not"), **_NO_GRAD)


@tensor_method
def logical_and(input: Any, other: Any) -> Tensor:
    """Elementwise AND of truth values (nonzero is True); bool result."""
    return apply(LOGICAL_AND, as_tensor(input), as_tensor(other))


@tensor_method
def logical_or(input: Any, other: Any) -> Tensor:
    """Elementwise OR of truth values; bool result."""
    return apply(LOGICAL_OR, as_tensor(input), as_tensor(other))


@tensor_method
def logical_xor(input: Any, other: Any) -> Tensor:
    """Elementwise XOR of truth values; bool result."""
    return apply(LOGICAL_XOR, as_tensor(input), as_tensor(other))


@tensor_method
def logical_not(input: Any) -> Tensor:
    """Elementwise NOT of truth values; bool result."""
    return apply(LOGICAL_NOT, as_tensor(input))


@tensor_method(names=["bitwise_and", "__and__"])
def bitwise_and(input: Any, other: Any) -> Tensor:
    """``input & other`` for bool/int tensors.

    >>> import suanli
    >>> (suanli.tensor([True, False]) & True).tolist(), (~suanli.tensor([0, 5])).tolist()
    ([True, False], [-1, -6])
    """
    return _binary(BITWISE_AND, input, other)


@tensor_method(names=["bitwise_or", "__or__"])
def bitwise_or(input: Any, other: Any) -> Tensor:
    """``input | other`` for bool/int tensors."""
    return _binary(BITWISE_OR, input, other)


@tensor_method(names=["bitwise_xor", "__xor__"])
def bitwise_xor(input: Any, other: Any) -> Tensor:
    """``input ^ other`` for bool/int tensors."""
    return _binary(BITWISE_XOR, input, other)


@tensor_method(names=["bitwise_not", "__invert__"])
def bitwise_not(input: Any) -> Tensor:
    """``~input``: logical NOT for bool tensors, bitwise NOT for ints."""
    return apply(BITWISE_NOT, as_tensor(input))


@tensor_method("__rand__")
def _rand(self: Tensor, other: Any) -> Tensor:
    return bitwise_and(other, self)


@tensor_method("__ror__")
def _ror(self: Tensor, other: Any) -> Tensor:
    return bitwise_or(other, self)


@tensor_method("__rxor__")
def _rxor(self: Tensor, other: Any) -> Tensor:
    return bitwise_xor(other, self)


# ==================================================================================================
# where
# ==================================================================================================
def _infer_where(cond: Spec, x: Spec, y: Spec, **attrs: Any) -> Spec:
    if cond.dtype != _dt.bool_:
        raise op_error("where", "the condition must be a bool tensor", actual=f"condition {spec_str(cond)}",
                       hint="compare first (x > 0) or convert with .bool()", cls=DTypeError)
    shape = broadcast_shapes("where", cond.shape, x.shape, y.shape)
    if x.dtype != y.dtype:
        raise op_error("where", "input and other must share one dtype (the public function promotes)",
                       actual=spec_str(x, y), cls=DTypeError)
    return Spec(shape, x.dtype)


def _where_saved(needs):
    return (0,)


def _where_vjp(ctx, g):
    cond = ctx.inputs[0]
    return (None, where(cond, g, 0) if ctx.needs[1] else None, where(cond, 0, g) if ctx.needs[2] else None)


def _where_jvp(ctx, t):
    _, tx, ty = t
    if tx is None and ty is None:
        return None
    return where(ctx.inputs[0], 0 if tx is None else tx, 0 if ty is None else ty)


WHERE = defprim("where", np.where, _infer_where, vjp=_where_vjp, jvp=_where_jvp, saved_inputs=_where_saved,
                upcast_half=False)


def where(condition: Any, input: Any = None, other: Any = None) -> Any:
    """``input`` where ``condition`` is True, else ``other`` (broadcast; either may be a number).

    ``where(condition)`` alone is ``condition.nonzero(as_tuple=True)``: a tuple of index tensors.

    >>> import suanli
    >>> x = suanli.tensor([-1.0, 2.0])
    >>> suanli.where(x > 0, x, 0).tolist()
    [0.0, 2.0]
    """
    cond = as_tensor(condition)
    if cond._data.dtype != _dt.bool_:
        raise op_error("where", "the condition must be a bool tensor", actual=f"condition {cond._data.dtype}",
                       hint="compare first (x > 0) or convert with .bool()", cls=DTypeError)
    if input is None and other is None:
        return tuple(_wrap(i.astype(np.int64)) for i in np.nonzero(cond._data))
    if input is None or other is None:
        raise op_error("where", "needs both input and other (or neither)", cls=TypeError)  # type: ignore[arg-type]
    if type(input) is Tensor and type(other) is Tensor and input._data.dtype is other._data.dtype:
        return apply(WHERE, cond, input, other)
    return apply(WHERE, cond, *promote(input, other))


@tensor_method("where")
def _where_method(self: Tensor, condition: Any, other: Any) -> Tensor:
    """``x.where(condition, y)`` is ``where(condition, x, y)``."""
    return where(condition, self, other)


# ==================================================================================================
# clamp: the gradient passes where min <= x <= max (torch's clamp_backward)
# ==================================================================================================
def _clamp_impl(x, lo, hi):
    return np.minimum(np.maximum(x, lo), hi)


def _clamp_vjp(ctx, g):
    x, lo, hi = ctx.inputs
    return (where(logical_and(x >= lo, x <= hi), g, 0) if ctx.needs[0] else None,
            where(logical_and(x < lo, lo < hi), g, 0) if ctx.needs[1] else None,
            where(logical_or(x > hi, hi < lo), g, 0) if ctx.needs[2] else None)


def _clamp_jvp(ctx, t):
    x, lo, hi = ctx.inputs
    tx, tlo, thi = (_zeros(ctx.out._data.shape, ctx.out._data.dtype) if v is None else v for v in t)
    return where(lo > hi, thi, where(x < lo, tlo, where(x > hi, thi, tx)))


def _clamp_min_vjp(ctx, g):
    x, lo = ctx.inputs
    return (where(x >= lo, g, 0) if ctx.needs[0] else None, where(x < lo, g, 0) if ctx.needs[1] else None)


def _clamp_min_jvp(ctx, t):
    x, lo = ctx.inputs
    tx, tlo = t
    return where(x >= lo, 0 if tx is None else tx, 0 if tlo is None else tlo)


def _clamp_max_vjp(ctx, g):
    x, hi = ctx.inputs
    return (where(x <= hi, g, 0) if ctx.needs[0] else None, where(x > hi, g, 0) if ctx.needs[1] else None)


def _clamp_max_jvp(ctx, t):
    x, hi = ctx.inputs
    tx, thi = t
    return where(x <= hi, 0 if tx is None else tx, 0 if thi is None else thi)


CLAMP = defprim("clamp", _clamp_impl, _infer_arith("clamp"), vjp=_clamp_vjp, jvp=_clamp_jvp)
CLAMP_MIN = defprim("clamp_min", np.maximum, _infer_arith("clamp_min"), vjp=_clamp_min_vjp, jvp=_clamp_min_jvp)
CLAMP_MAX = defprim("clamp_max", np.minimum, _infer_arith("clamp_max"), vjp=_clamp_max_vjp, jvp=_clamp_max_jvp)


@tensor_method(names=["clamp", "clip"])
def clamp(input: Tensor, min: Any = None, max: Any = None) -> Tensor:
    """Limit ``input`` to ``[min, max]``; bounds are numbers or (broadcastable) tensors, one may be None.

    The gradient passes where ``min <= input <= max`` (bounds included, as in torch); if
    ``min > max`` every element is ``max``.

    >>> import suanli
    >>> suanli.tensor([-2.0, 0.5, 3.0]).clamp(-1, 1).tolist()
    [-1.0, 0.5, 1.0]
    """
    if min is None and max is None:
        raise op_error("clamp", "at least one of min or max must not be None",
                       hint="pass min=..., max=... or both", cls=ValueError)  # type: ignore[arg-type]
    if max is None:
        return clamp_min(input, min)
    if min is None:
        return clamp_max(input, max)
    return checked_apply(CLAMP, *promote(input, min, max))


clip = clamp


@tensor_method
def clamp_min(input: Tensor, min: Any) -> Tensor:
    """``max(input, min)`` with clamp's gradient (passes where ``input >= min``)."""
    return checked_apply(CLAMP_MIN, *promote(input, min))


@tensor_method
def clamp_max(input: Tensor, max: Any) -> Tensor:
    """``min(input, max)`` with clamp's gradient (passes where ``input <= max``)."""
    return checked_apply(CLAMP_MAX, *promote(input, max))


# ==================================================================================================
# Composites
# ==================================================================================================
@tensor_method
def lerp(input: Tensor, end: Any, weight: Any) -> Tensor:
    """Linear interpolation ``input + weight * (end - input)``.

    >>> import suanli
    >>> suanli.lerp(suanli.tensor([0.0, 10.0]), suanli.tensor([10.0, 20.0]), 0.25).tolist()
    [2.5, 12.5]
    """
    return add(input, mul(weight, sub(end, input)))


@tensor_method
def addcmul(input: Tensor, tensor1: Any, tensor2: Any, *, value: Any = 1) -> Tensor:
    """``input + value * tensor1 * tensor2``."""
    prod = mul(tensor1, tensor2)
    return add(input, prod if value == 1 else mul(prod, value))


@tensor_method
def addcdiv(input: Tensor, tensor1: Any, tensor2: Any, *, value: Any = 1) -> Tensor:
    """``input + value * tensor1 / tensor2``."""
    quot = div(tensor1, tensor2)
    return add(input, quot if value == 1 else mul(quot, value))


# activations live in their own module; they are re-exported from here
from . import activation as _activation  # noqa: E402
from .activation import *  # noqa: E402,F401,F403

__all__ += _activation.__all__
