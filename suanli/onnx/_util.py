"""Small helpers shared by the op modules: primitive calls, constants, concrete int reads."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from onnx import helper

from ..ops import onnx_prims  # noqa: F401  (registers atan / index_reduce)
from ..ops.registry import apply, registry
from ..tensor import Tensor, _wrap


def P(name: str, *inputs: Tensor, **attrs: Any) -> Tensor:
    """Apply primitive ``name`` (no promotion: ONNX inputs already share their dtypes)."""
    return apply(registry[name], *inputs, **attrs)


def const(value: Any, dtype: Any = None) -> Tensor:
    """A constant Tensor (no gradient)."""
    return _wrap(np.asarray(value, dtype=dtype))


def scalar(x: Tensor, value: Any) -> Tensor:
    """A 0-d constant of ``x``'s dtype."""
    return _wrap(np.asarray(value, dtype=x._data.dtype))


def ints(t: Tensor | None) -> list[int] | None:
    """The concrete integer values of a shape-like input (``None`` if absent)."""
    if t is None:
        return None
    return [int(v) for v in np.asarray(t._data).reshape(-1)]


def is_float(x: Tensor) -> bool:
    return x._data.dtype.kind == "f" or x._data.dtype.name == "bfloat16"


def np_dtype(onnx_type: int) -> np.dtype:
    """NumPy dtype of an ONNX ``TensorProto.DataType`` value."""
    return np.dtype(helper.tensor_dtype_to_np_dtype(onnx_type))


def cast(x: Tensor, dtype: Any) -> Tensor:
    dtype = np.dtype(dtype)
    return x if x._data.dtype == dtype else P("cast", x, dtype=dtype)


def norm_axes(axes: Sequence[int], ndim: int) -> tuple[int, ...]:
    return tuple(sorted(a % ndim if ndim else 0 for a in axes))


def reshape(x: Tensor, shape: Sequence[int]) -> Tensor:
    shape = tuple(int(s) for s in shape)
    return x if x._data.shape == shape else P("reshape", x, shape=shape)


def permute(x: Tensor, perm: Sequence[int]) -> Tensor:
    perm = tuple(int(p) for p in perm)
    return x if perm == tuple(range(len(perm))) else P("permute", x, perm=perm)


def expand(x: Tensor, shape: Sequence[int]) -> Tensor:
    shape = tuple(int(s) for s in shape)
    return x if x._data.shape == shape else P("expand", x, shape=shape)
