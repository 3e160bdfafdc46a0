"""Weight initialisation, in place and without gradient, with torch's formulas and defaults.

Random draws come from the suanli generator (``suanli.manual_seed`` makes them repeatable); the
*distributions* match torch, the exact numbers do not (different bit generators).

>>> import suanli
>>> from suanli.nn import init
>>> w = suanli.empty(256, 128)
>>> _ = init.kaiming_uniform_(w, nonlinearity="relu")
>>> bound = (6 / 128) ** 0.5
>>> bool(w.abs().max() <= bound)
True
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import dtypes as _dt
from ..errors import op_error
from ..random import Generator, rng
from ..tensor import Tensor

__all__ = ["calculate_gain", "uniform_", "normal_", "trunc_normal_", "constant_", "zeros_", "ones_",
           "eye_", "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_",
           "orthogonal_", "_calculate_fan_in_and_fan_out"]


def _fill(op: str, tensor: Tensor, values: np.ndarray) -> Tensor:
    if not isinstance(tensor, Tensor):
        raise op_error(op, f"expected a suanli Tensor, got {type(tensor).__name__}")
    tensor._data[...] = values.astype(tensor._data.dtype, copy=False)
    tensor._vc[0] += 1
    return tensor


def _float_draw(tensor: Tensor) -> np.dtype:
    # draw in float64 for float64 tensors, float32 otherwise (half types are rounded afterwards)
    return _dt.float64 if tensor._data.dtype == _dt.float64 else _dt.float32


def calculate_gain(nonlinearity: str, param: Any = None) -> float:
    """The recommended std gain for ``nonlinearity`` (torch's table).

    >>> calculate_gain("relu") == 2 ** 0.5
    True
    """
    linear = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
              "conv_transpose3d", "sigmoid")
    if nonlinearity in linear:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        if isinstance(slope, bool) or not isinstance(slope, (int, float)):
            raise op_error("calculate_gain", f"negative_slope {slope!r} is not a number")
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise op_error("calculate_gain", f"unsupported nonlinearity {nonlinearity!r}",
                   hint="use one of linear, conv*d, sigmoid, tanh, relu, leaky_relu, selu")


def _calculate_fan_in_and_fan_out(tensor: Tensor) -> tuple[int, int]:
    if tensor.ndim < 2:
        raise op_error("init", "fan in and fan out need a tensor with at least 2 dimensions",
                       actual=f"shape {tensor.shape}")
    receptive = int(np.prod(tensor.shape[2:])) if tensor.ndim > 2 else 1
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def _fan(tensor: Tensor, mode: str) -> int:
    if mode not in ("fan_in", "fan_out"):
        raise op_error("init", f"mode {mode!r} is not supported", hint="use 'fan_in' or 'fan_out'")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0, generator: Generator | None = None) -> Tensor:
    """Fill with U(a, b)."""
    values = rng(generator).uniform(a, b, size=tensor.shape)
    return _fill("uniform_", tensor, values.astype(_float_draw(tensor)))


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, generator: Generator | None = None) -> Tensor:
    """Fill with N(mean, std²)."""
    values = rng(generator).standard_normal(size=tensor.shape, dtype=_float_draw(tensor))
    return _fill("normal_", tensor, values * std + mean)


def trunc_normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0,
                  generator: Generator | None = None) -> Tensor:
    """Fill with N(mean, std²) truncated to [a, b] (absolute bounds, as torch), by resampling."""
    if not a < b:
        raise op_error("trunc_normal_", f"need a < b, got a={a}, b={b}")
    gen = rng(generator)
    out = gen.standard_normal(size=tensor.shape) * std + mean
    bad = (out < a) | (out > b)
    for _ in range(100):          # each round keeps >= ~95% for the usual |a|,|b| >= 2 std
        if not bad.any():
            break
        out[bad] = gen.standard_normal(size=int(bad.sum())) * std + mean
        bad = (out < a) | (out > b)
    return _fill("trunc_normal_", tensor, np.clip(out, a, b))


def constant_(tensor: Tensor, val: float) -> Tensor:
    return _fill("constant_", tensor, np.asarray(val))


def zeros_(tensor: Tensor) -> Tensor:
    return _fill("zeros_", tensor, np.asarray(0))


def ones_(tensor: Tensor) -> Tensor:
    return _fill("ones_", tensor, np.asarray(1))


def eye_(tensor: Tensor) -> Tensor:
    if tensor.ndim != 2:
        raise op_error("eye_", "only 2-D tensors are supported", actual=f"shape {tensor.shape}")
    return _fill("eye_", tensor, np.eye(*tensor.shape))


def xavier_uniform_(tensor: Tensor, gain: float = 1.0, generator: Generator | None = None) -> Tensor:
    """Glorot uniform: U(-a, a) with a = gain·sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    bound = gain * math.sqrt(6.0 / float(fan_in + fan_out))
    return uniform_(tensor, -bound, bound, generator)


def xavier_normal_(tensor: Tensor, gain: float = 1.0, generator: Generator | None = None) -> Tensor:
    """Glorot normal: N(0, std²) with std = gain·sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / float(fan_in + fan_out)), generator)


def kaiming_uniform_(tensor: Tensor, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                     generator: Generator | None = None) -> Tensor:
    """He uniform: U(-b, b) with b = gain·sqrt(3 / fan). ``a`` is the leaky-relu slope."""
    if 0 in tensor.shape:
        return tensor
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode))
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(tensor: Tensor, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                    generator: Generator | None = None) -> Tensor:
    """He normal: N(0, std²) with std = gain / sqrt(fan)."""
    if 0 in tensor.shape:
        return tensor
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode))
    return normal_(tensor, 0.0, std, generator)


def orthogonal_(tensor: Tensor, gain: float = 1.0, generator: Generator | None = None) -> Tensor:
    """A (semi-)orthogonal matrix from the QR of a Gaussian, sign-corrected (torch's recipe)."""
    if tensor.ndim < 2:
        raise op_error("orthogonal_", "only tensors with 2 or more dimensions are supported",
                       actual=f"shape {tensor.shape}")
    rows = tensor.shape[0]
    cols = tensor.numel() // rows if rows else 0
    if tensor.numel() == 0:
        return tensor
    flat = rng(generator).standard_normal(size=(rows, cols))
    if rows < cols:
        flat = flat.T
    q, r = np.linalg.qr(flat)
    q *= np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return _fill("orthogonal_", tensor, (gain * q).reshape(tensor.shape))
