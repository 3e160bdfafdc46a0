"""Primitives the ONNX op table needs that cannot be composed from the others.

* ``atan`` -- elementwise arctangent (``asin``/``acos`` are composed from it in ``suanli.onnx``).
* ``index_reduce`` -- ``x[idx] = reduce(x[idx], values)`` for ``mul``/``max``/``min`` with repeated
  indices applied one after another (``np.<ufunc>.at``); ScatterND/ScatterElements' reductions.
  Not differentiable (a gradient through a max-scatter is ambiguous where updates tie).

>>> import numpy as np, suanli
>>> from suanli.ops.registry import apply, registry
>>> apply(registry["atan"], suanli.tensor([0.0, 1.0])).tolist()
[0.0, 0.7853981852531433]
>>> x = suanli.tensor([1.0, 1.0, 1.0])
>>> apply(registry["index_reduce"], x, suanli.tensor([5.0, 2.0]), suanli.tensor([0, 0]),
...       reduction="max").tolist()
[5.0, 1.0, 1.0]
"""
from __future__ import annotations

import numpy as np

from ..errors import DTypeError, op_error
from ._helpers import infer_float_unary, same_dtype
from .registry import Spec, defprim, spec_str


def _atan_vjp(ctx, g):
    x = ctx.inputs[0]
    return (g / (x * x + 1),)


def _atan_jvp(ctx, t):
    x = ctx.inputs[0]
    return t[0] / (x * x + 1)


ATAN = defprim("atan", np.arctan, infer_float_unary("atan"), vjp=_atan_vjp, jvp=_atan_jvp)

_UFUNCS = {"mul": np.multiply, "max": np.maximum, "min": np.minimum, "add": np.add}


def _index_reduce_impl(x, values, *idx, reduction):
    out = x.copy()
    _UFUNCS[reduction].at(out, tuple(idx), values)
    return out


def _infer_index_reduce(x: Spec, values: Spec, *idx: Spec, reduction) -> Spec:
    if reduction not in _UFUNCS:
        raise op_error("index_reduce", f"unknown reduction {reduction!r}", expect=f"one of {sorted(_UFUNCS)}",
                       cls=ValueError)  # type: ignore[arg-type]
    same_dtype("index_reduce", x, values)
    for s in idx:
        if s.dtype.kind not in "iu":
            raise op_error("index_reduce", "indices must be integer tensors", actual=spec_str(*idx), cls=DTypeError)
    if len(idx) > len(x.shape):
        raise op_error("index_reduce", "more index tensors than input dims", actual=spec_str(x, *idx))
    return Spec(tuple(x.shape), x.dtype)


INDEX_REDUCE = defprim("index_reduce", _index_reduce_impl, _infer_index_reduce, differentiable=False,
                       save_inputs=False, upcast_half=False)
