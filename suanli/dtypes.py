"""The dtype table and PyTorch's type-promotion rules.

suanli dtypes *are* NumPy dtype objects (``suanli.float32 is np.dtype('float32')``), so a Tensor's
dtype costs nothing to read and converts to NumPy for free. bfloat16 comes from ``ml_dtypes``.

>>> import suanli
>>> suanli.result_type(suanli.tensor([1, 2]), 2.5)
dtype('float32')
>>> suanli.promote_types(suanli.uint8, suanli.int8)
dtype('int16')
"""
from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np

from .errors import DTypeError

float64 = np.dtype(np.float64)
float32 = np.dtype(np.float32)
float16 = np.dtype(np.float16)
bfloat16 = np.dtype(ml_dtypes.bfloat16)
int64 = np.dtype(np.int64)
int32 = np.dtype(np.int32)
int16 = np.dtype(np.int16)
int8 = np.dtype(np.int8)
uint8 = np.dtype(np.uint8)
bool_ = np.dtype(np.bool_)

FLOATING = (float64, float32, float16, bfloat16)
INTEGER = (int64, int32, int16, int8, uint8)
ALL = FLOATING + INTEGER + (bool_,)
HALF = frozenset((float16, bfloat16))   # computed in float32 and rounded back, as torch's CPU does

_ALIASES = {
    "float64": float64, "double": float64, "float32": float32, "float": float32,
    "float16": float16, "half": float16, "bfloat16": bfloat16, "int64": int64, "long": int64,
    "int32": int32, "int": int32, "int16": int16, "short": int16, "int8": int8, "uint8": uint8,
    "bool": bool_,
}

_default_float = float32


def get_default_dtype() -> np.dtype:
    """The dtype of tensors made from Python floats (float32, as in torch)."""
    return _default_float


def set_default_dtype(dtype: Any) -> None:
    """Set the default floating dtype (float32 or float64)."""
    global _default_float
    d = as_dtype(dtype)
    if d not in FLOATING:
        raise DTypeError(f"set_default_dtype: expected a floating dtype, got {d}")
    _default_float = d


def as_dtype(dtype: Any) -> np.dtype:
    """Normalise ``dtype`` (a suanli/NumPy dtype, its name, a Python type, or a torch dtype name)."""
    if isinstance(dtype, np.dtype):
        d = dtype
    elif isinstance(dtype, str):
        d = _ALIASES.get(dtype.replace("torch.", ""))
        if d is None:
            raise DTypeError(f"unknown dtype {dtype!r}; expected one of {sorted(_ALIASES)}")
    elif dtype is float:
        d = _default_float
    elif dtype is int:
        d = int64
    elif dtype is bool:
        d = bool_
    else:
        try:
            d = np.dtype(dtype)
        except TypeError:
            name = getattr(dtype, "name", None) or str(dtype)
            return as_dtype(str(name))
    if d not in ALL:
        raise DTypeError(f"dtype {d} is not supported; supported: {[str(x) for x in ALL]}")
    return d


def is_floating(dtype: np.dtype) -> bool:
    """True for float64/32/16 and bfloat16."""
    return dtype in FLOATING


def promote_types(a: np.dtype, b: np.dtype) -> np.dtype:
    """PyTorch's ``promote_types`` on two dtypes (bool < integers < floats; f16+bf16 -> f32)."""
    if a == b:
        return a
    if a == bool_:
        return b
    if b == bool_:
        return a
    fa, fb = a in FLOATING, b in FLOATING
    if fa and fb:
        if {a, b} == {float16, bfloat16}:
            return float32
        return a if a.itemsize > b.itemsize else b
    if fa:
        return a
    if fb:
        return b
    # two integers; only uint8 is unsigned here
    if a == uint8 or b == uint8:
        signed = b if a == uint8 else a
        return int16 if signed == int8 else signed
    return a if a.itemsize > b.itemsize else b


def _category(d: np.dtype | None) -> int:
    if d is None:
        return -1
    if d == bool_:
        return 0
    return 2 if d in FLOATING else 1


def _combine(higher: np.dtype | None, lower: np.dtype | None) -> np.dtype | None:
    """c10's ``combine_categories``: a lower-priority operand only matters if its category is higher."""
    if higher is not None and higher in FLOATING:
        return higher
    if higher == bool_ or (lower is not None and lower in FLOATING):
        if higher is None:
            return lower
        if lower is None:
            return higher
        return promote_types(higher, lower)
    return higher if higher is not None else lower


def scalar_dtype(value: Any) -> np.dtype:
    """Dtype a Python scalar gets when it enters an op on its own."""
    if isinstance(value, (bool, np.bool_)):
        return bool_
    if isinstance(value, (int, np.integer)):
        return int64
    if isinstance(value, (float, np.floating)):
        return _default_float
    raise DTypeError(f"cannot use {type(value).__name__} {value!r} as a tensor operand; "
                     "expected a Tensor, bool, int or float")


def result_type(*operands: Any) -> np.dtype:
    """PyTorch's ``result_type``: dimensioned tensors outrank 0-d tensors, which outrank Python scalars.

    Within a tier dtypes promote normally; a lower tier only raises the result's *category*
    (e.g. ``int_tensor * 2.5`` is float32, ``float16_tensor * 2.5`` stays float16).
    """
    dim = zero = wrapped = None
    for op in operands:
        data = getattr(op, "_data", None)
        if data is None and isinstance(op, np.ndarray):
            data = op
        if data is not None:
            if data.ndim:
                dim = data.dtype if dim is None else promote_types(dim, data.dtype)
            else:
                zero = data.dtype if zero is None else promote_types(zero, data.dtype)
        else:
            d = scalar_dtype(op)
            wrapped = d if wrapped is None else promote_types(wrapped, d)
    out = _combine(dim, _combine(zero, wrapped))
    if out is None:
        raise DTypeError("result_type: needs at least one operand")
    return out
