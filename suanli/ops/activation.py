"""Activation functions with ``torch.nn.functional`` signatures, numerics and gradient conventions.

Primitives where torch's gradient convention at a kink matters or where one fused NumPy expression
is cheaper than a chain of ops (relu, leaky_relu, hardtanh, hardsigmoid, hardswish, elu, softplus,
logsigmoid, gelu, silu); the rest are composites (relu6, selu, celu, mish, softsign, tanhshrink,
threshold, hardshrink, softshrink). Gradients at kinks follow torch:

* relu'(0) = 0, leaky_relu'(0) = negative_slope, elu'(0) = alpha * scale * input_scale
* hardtanh / relu6 / hardsigmoid pass no gradient *at* their corners (open intervals)
* hardswish'(-3) = 0 and hardswish'(3) = 1

>>> import suanli
>>> x = suanli.tensor([-2.0, 0.0, 2.0])
>>> suanli.relu(x).tolist(), suanli.leaky_relu(x, 0.25).tolist()
([0.0, 0.0, 2.0], [-0.5, 0.0, 2.0])
>>> [f"{v:.4f}" for v in suanli.gelu(x).tolist()]
['-0.0455', '0.0000', '1.9545']
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from .. import native
from .._config import state
from ..errors import op_error
from ..tensor import Tensor
from ._helpers import as_tensor, infer_float_unary
from .elementwise import (_erf_impl, _infer_numeric, _sigmoid_np, abs, checked_apply, clamp_max, defunary, erf,
                          exp, logical_and, logical_or, sigmoid, tanh, where)
from .registry import Node, apply, defprim, tensor_method

__all__ = ["relu", "relu6", "leaky_relu", "hardtanh", "elu", "selu", "celu", "gelu", "silu", "mish",
           "softplus", "logsigmoid", "hardsigmoid", "hardswish", "softsign", "tanhshrink", "threshold",
           "hardshrink", "softshrink"]

_SQRT1_2 = math.sqrt(0.5)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_GELU_KAPPA = 0.044715
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def _maybe_inplace(name: str, fn: Callable[..., Tensor], input: Tensor, inplace: bool, **kwargs: Any) -> Tensor:
    """``inplace=True`` (torch's flag) writes the result into ``input`` through the in-place machinery."""
    if inplace:
        from .inplace import apply_inplace
        return apply_inplace(name + "_", input, fn, **kwargs)
    return fn(input, **kwargs)


# ------------------------------------------------------------------------------------ relu family
def _relu_impl(x):
    return np.maximum(x, 0)


def _relu_grad(ctx, v):
    return where(ctx.out <= 0, 0, v)            # torch: threshold_backward(grad, result, 0)


def _leaky_relu_impl(x, *, negative_slope):
    return np.where(x > 0, x, x * negative_slope)


def _leaky_relu_grad(ctx, v):
    return where(ctx.inputs[0] > 0, v, v * ctx.attrs["negative_slope"])


def _hardtanh_impl(x, *, min_val, max_val):
    return np.minimum(np.maximum(x, min_val), max_val).astype(x.dtype, copy=False)


def _hardtanh_grad(ctx, v):
    x = ctx.inputs[0]
    at_or_outside = logical_or(x <= ctx.attrs["min_val"], x >= ctx.attrs["max_val"])
    return where(at_or_outside, 0, v)


RELU = defunary("relu", _relu_impl, _relu_grad, infer=_infer_numeric("relu"), save_inputs=False,
                save_output=True)
LEAKY_RELU = defunary("leaky_relu", _leaky_relu_impl, _leaky_relu_grad)
HARDTANH = defunary("hardtanh", _hardtanh_impl, _hardtanh_grad, infer=_infer_numeric("hardtanh"))


@tensor_method
def relu(input: Tensor, inplace: bool = False) -> Tensor:
    """``max(input, 0)``; the gradient at 0 is 0."""
    if inplace:
        return _maybe_inplace("relu", relu, input, True)
    return checked_apply(RELU, as_tensor(input))


def relu6(input: Tensor, inplace: bool = False) -> Tensor:
    """``min(max(input, 0), 6)`` (``hardtanh(input, 0, 6)``: no gradient at 0 or 6)."""
    return hardtanh(input, 0.0, 6.0, inplace)


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    """``input`` if positive, else ``negative_slope * input``; the gradient at 0 is ``negative_slope``."""
    if inplace:
        return _maybe_inplace("leaky_relu", leaky_relu, input, True, negative_slope=negative_slope)
    return checked_apply(LEAKY_RELU, as_tensor(input), negative_slope=float(negative_slope))


def hardtanh(input: Tensor, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> Tensor:
    """Clamp to ``[min_val, max_val]``; the gradient passes only strictly inside the interval."""
    if max_val < min_val:
        raise op_error("hardtanh", "max_val must be greater than or equal to min_val",
                       actual=f"min_val={min_val}, max_val={max_val}", cls=ValueError)  # type: ignore[arg-type]
    if inplace:
        return _maybe_inplace("hardtanh", hardtanh, input, True, min_val=min_val, max_val=max_val)
    return checked_apply(HARDTANH, as_tensor(input), min_val=float(min_val), max_val=float(max_val))


# ------------------------------------------------------------------------------------ hard sigmoid/swish
def _hardsigmoid_impl(x):
    return np.minimum(np.maximum(x + 3, 0), 6) / 6


def _hardsigmoid_grad(ctx, v):
    x = ctx.inputs[0]
    return where(logical_and(x > -3, x < 3), v / 6, 0)


def _hardswish_impl(x):
    with np.errstate(all="ignore"):
        return x * np.minimum(np.maximum(x + 3, 0), 6) / 6


def _hardswish_grad(ctx, v):
    x = ctx.inputs[0]
    return where(x <= -3, 0, where(x < 3, v * (x / 3 + 0.5), v))


HARDSIGMOID = defunary("hardsigmoid", _hardsigmoid_impl, _hardsigmoid_grad)
HARDSWISH = defunary("hardswish", _hardswish_impl, _hardswish_grad)


def hardsigmoid(input: Tensor, inplace: bool = False) -> Tensor:
    """``relu6(input + 3) / 6``."""
    if inplace:
        return _maybe_inplace("hardsigmoid", hardsigmoid, input, True)
    return checked_apply(HARDSIGMOID, as_tensor(input))


def hardswish(input: Tensor, inplace: bool = False) -> Tensor:
    """``input * relu6(input + 3) / 6``."""
    if inplace:
        return _maybe_inplace("hardswish", hardswish, input, True)
    return checked_apply(HARDSWISH, as_tensor(input))


# ------------------------------------------------------------------------------------ elu family
def _elu_impl(x, *, alpha, scale, input_scale):
    negative = np.expm1(np.minimum(x, 0) * input_scale) * (alpha * scale)   # no overflow for x > 0
    return np.where(x > 0, x * scale, negative)


def _elu_grad(ctx, v):
    x = ctx.inputs[0]
    a = ctx.attrs
    # clamp_max keeps exp finite on the branch that is not taken (else 0 * inf = nan in double backward)
    slope = exp(clamp_max(x, 0) * a["input_scale"]) * (a["alpha"] * a["scale"] * a["input_scale"])
    return where(x <= 0, v * slope, v * a["scale"])


ELU = defunary("elu", _elu_impl, _elu_grad)


def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """``input`` if positive, else ``alpha * (exp(input) - 1)``."""
    if inplace:
        return _maybe_inplace("elu", elu, input, True, alpha=alpha)
    return checked_apply(ELU, as_tensor(input), alpha=float(alpha), scale=1.0, input_scale=1.0)


def selu(input: Tensor, inplace: bool = False) -> Tensor:
    """Scaled ELU with the self-normalising constants."""
    if inplace:
        return _maybe_inplace("selu", selu, input, True)
    return checked_apply(ELU, as_tensor(input), alpha=_SELU_ALPHA, scale=_SELU_SCALE, input_scale=1.0)


def celu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """``max(0, x) + min(0, alpha * (exp(x / alpha) - 1))``."""
    if alpha == 0:
        raise op_error("celu", "alpha must not be 0", cls=ValueError)  # type: ignore[arg-type]
    if inplace:
        return _maybe_inplace("celu", celu, input, True, alpha=alpha)
    return checked_apply(ELU, as_tensor(input), alpha=float(alpha), scale=1.0, input_scale=1.0 / alpha)


# ------------------------------------------------------------------------------------ smooth ones
def _softplus_impl(x, *, beta, threshold):
    bx = x * beta
    with np.errstate(all="ignore"):
        smooth = (np.maximum(bx, 0) + np.log1p(np.exp(-np.abs(bx)))) / beta   # overflow-free
    return np.where(bx > threshold, x, smooth)


def _softplus_grad(ctx, v):
    bx = ctx.inputs[0] * ctx.attrs["beta"]
    return where(bx > ctx.attrs["threshold"], v, v * sigmoid(bx))


def _logsigmoid_impl(x):
    with np.errstate(all="ignore"):
        return np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))


def _logsigmoid_grad(ctx, v):
    return v * sigmoid(-ctx.inputs[0])


def _native_kernel(symbol: str):
    """The native float32 kernel (``suanli/native/kernels/gelu*.c``) or ``None`` for the NumPy path."""
    return native.kernel("gelu_grad" if symbol == "gelu_grad_f32" else "gelu", symbol)


def _gelu_impl(x, *, approximate):
    with np.errstate(all="ignore"):            # gelu(-inf) is nan, silently, as in torch
        if approximate == "tanh":
            return 0.5 * x * (1 + np.tanh(_SQRT_2_OVER_PI * (x + _GELU_KAPPA * (x * x * x))))
        if x.dtype == np.float32 and (kernel := _native_kernel("gelu_f32")) is not None:
            out = np.empty(x.shape, np.float32)
            kernel(np.ascontiguousarray(x), out)
            return out
        out = _erf_impl(x * x.dtype.type(_SQRT1_2))
        out += 1
        out *= x.dtype.type(0.5)
        out *= x
        return out


def _gelu_grad_impl(x, y, g, *, approximate):
    """First-order GELU backward in one kernel. The exact form reads Phi(x) back from the saved
    output (y / x) instead of evaluating erf again -- erf is most of GELU's cost."""
    if x.ndim == 0:                                      # ufuncs return scalars for 0-d arrays
        return _gelu_grad_impl(x.reshape(1), y.reshape(1), g.reshape(1), approximate=approximate).reshape(())
    one = x.dtype.type(1)
    with np.errstate(all="ignore"):
        if approximate == "tanh":
            x_sq = x * x
            t = np.tanh((x + x_sq * x * x.dtype.type(_GELU_KAPPA)) * x.dtype.type(_SQRT_2_OVER_PI))
            out = (t + one) * x.dtype.type(0.5)
            out += x * x.dtype.type(0.5) * (one - t * t) * ((x_sq * x.dtype.type(3 * _GELU_KAPPA) + one)
                                                             * x.dtype.type(_SQRT_2_OVER_PI))
            out *= g
            return out
        if x.dtype == np.float32 and (kernel := _native_kernel("gelu_grad_f32")) is not None:
            out = np.empty(x.shape, np.float32)
            kernel(np.ascontiguousarray(x), np.ascontiguousarray(y), np.ascontiguousarray(g), out)
            return out
        cdf = np.divide(y, x, out=np.full_like(x, 0.5), where=(x != 0))   # +-inf give nan, as torch
        pdf = x * x
        pdf *= x.dtype.type(-0.5)
        np.exp(pdf, out=pdf)
        pdf *= x.dtype.type(_INV_SQRT_2PI)
        pdf *= x
        pdf += cdf
        pdf *= g
        return pdf


_infer_gelu_grad_x = infer_float_unary("gelu_grad")


def _infer_gelu_grad(x, y, g, *, approximate):
    return _infer_gelu_grad_x(x)


GELU_GRAD = defprim("gelu_grad", _gelu_grad_impl, _infer_gelu_grad, differentiable=False,
                    doc="first-order GELU backward: g * (Phi(x) + x * phi(x)), Phi read from the output")


def _gelu_grad(ctx, v):
    x = ctx.inputs[0]
    if not state.grad_enabled and ctx.out is not None and isinstance(ctx, Node):
        return apply(GELU_GRAD, x, ctx.out, v, approximate=ctx.attrs["approximate"])
    if ctx.attrs["approximate"] == "tanh":
        x_sq = x * x
        t = tanh((x + x_sq * x * _GELU_KAPPA) * _SQRT_2_OVER_PI)
        left_derivative = (t + 1) * 0.5
        right_derivative = x * 0.5 * (1 - t * t) * ((x_sq * (3 * _GELU_KAPPA) + 1) * _SQRT_2_OVER_PI)
        return v * (left_derivative + right_derivative)
    cdf = (erf(x * _SQRT1_2) + 1) * 0.5
    pdf = exp(x * x * -0.5) * _INV_SQRT_2PI
    return v * (cdf + x * pdf)


def _silu_impl(x):
    with np.errstate(all="ignore"):
        return x * _sigmoid_np(x)


def _silu_grad(ctx, v):
    x = ctx.inputs[0]
    s = sigmoid(x)
    return v * (s * (x * (1 - s) + 1))


SOFTPLUS = defunary("softplus", _softplus_impl, _softplus_grad)
LOGSIGMOID = defunary("logsigmoid", _logsigmoid_impl, _logsigmoid_grad)
GELU = defunary("gelu", _gelu_impl, _gelu_grad, save_output=True)
SILU = defunary("silu", _silu_impl, _silu_grad)


def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """``log(1 + exp(beta * x)) / beta``, and just ``x`` where ``beta * x > threshold``.

    >>> import suanli
    >>> suanli.softplus(suanli.tensor([-1000.0, 1000.0])).tolist()
    [0.0, 1000.0]
    """
    return checked_apply(SOFTPLUS, as_tensor(input), beta=float(beta), threshold=float(threshold))


def logsigmoid(input: Tensor) -> Tensor:
    """``log(sigmoid(input))``, stable for large ``|input|``."""
    return checked_apply(LOGSIGMOID, as_tensor(input))


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    """Gaussian error linear unit ``x * Phi(x)``; ``approximate='tanh'`` for the tanh formula."""
    if approximate not in ("none", "tanh"):
        raise op_error("gelu", "approximate argument must be either 'none' or 'tanh'",
                       actual=repr(approximate), cls=ValueError)  # type: ignore[arg-type]
    return checked_apply(GELU, as_tensor(input), approximate=approximate)


def silu(input: Tensor, inplace: bool = False) -> Tensor:
    """``input * sigmoid(input)`` (a.k.a. swish)."""
    if inplace:
        return _maybe_inplace("silu", silu, input, True)
    return checked_apply(SILU, as_tensor(input))


def mish(input: Tensor, inplace: bool = False) -> Tensor:
    """``input * tanh(softplus(input))``."""
    if inplace:
        return _maybe_inplace("mish", mish, input, True)
    return input * tanh(softplus(input))


def softsign(input: Tensor) -> Tensor:
    """``input / (1 + |input|)``."""
    return input / (abs(input) + 1)


def tanhshrink(input: Tensor) -> Tensor:
    """``input - tanh(input)``."""
    return input - tanh(input)


def threshold(input: Tensor, threshold: float, value: float, inplace: bool = False) -> Tensor:
    """``input`` where ``input > threshold``, else ``value``."""
    if inplace:
        return _maybe_inplace("threshold", _threshold, input, True, threshold=threshold, value=value)
    return _threshold(input, threshold=threshold, value=value)


def _threshold(input: Tensor, *, threshold: float, value: float) -> Tensor:
    return where(input <= threshold, value, input)      # NaN passes through, as in torch


def hardshrink(input: Tensor, lambd: float = 0.5) -> Tensor:
    """``input`` where ``|input| > lambd``, else 0."""
    return where(logical_and(input >= -lambd, input <= lambd), 0, input)


def softshrink(input: Tensor, lambd: float = 0.5) -> Tensor:
    """Shrink toward 0 by ``lambd``: ``x - lambd`` above ``lambd``, ``x + lambd`` below ``-lambd``, else 0."""
    inside = logical_and(input >= -lambd, input <= lambd)
    return where(inside, 0, where(input > lambd, input - lambd, input + lambd))   # NaN passes through
