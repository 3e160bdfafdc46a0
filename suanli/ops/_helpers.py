"""Shared pieces for op modules: shape rules for common families, operand promotion, sum_to."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .. import dtypes as _dt
from ..errors import DTypeError, ShapeError, op_error
from ..tensor import Tensor, _wrap
from .registry import Spec, spec_str


# ------------------------------------------------------------------------------ shape rules
def broadcast_shapes(op: str, *shapes: Sequence[int]) -> tuple[int, ...]:
    """NumPy/torch broadcasting of ``shapes`` with an error naming ``op`` and every shape."""
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for axis in range(-ndim, 0):
        size = 1
        for s in shapes:
            d = s[axis] if -axis <= len(s) else 1
            if d != 1:
                if size != 1 and d != size:
                    raise op_error(op, "shapes cannot be broadcast together",
                                   expect="each dimension equal, or 1 (aligned from the right)",
                                   actual=" vs ".join(str(tuple(x)) for x in shapes) +
                                   f" (dimension {axis}: {size} vs {d})",
                                   hint="reshape/unsqueeze one operand so the sizes line up")
                size = d
        out.append(size)
    return tuple(out)


def same_dtype(op: str, *specs: Spec) -> np.dtype:
    d = specs[0].dtype
    for s in specs[1:]:
        if s.dtype != d:
            raise op_error(op, "inputs must share one dtype (the public function promotes)",
                           actual=spec_str(*specs), cls=DTypeError)
    return d


def infer_same(x: Spec, **attrs: Any) -> Spec:
    """Unary elementwise: same shape and dtype."""
    return Spec(tuple(x.shape), x.dtype)


def infer_float_unary(op: str):
    """Unary elementwise on floats only (exp, log, sin...): same shape and dtype."""
    def rule(x: Spec, **attrs: Any) -> Spec:
        require_float(op, x)
        return Spec(tuple(x.shape), x.dtype)
    rule.__name__ = f"infer_{op}"
    return rule


def infer_broadcast(op: str, out_dtype: np.dtype | None = None):
    """Binary/ternary elementwise with broadcasting; inputs share a dtype."""
    def rule(*specs: Spec, **attrs: Any) -> Spec:
        d = same_dtype(op, *specs)
        return Spec(broadcast_shapes(op, *(s.shape for s in specs)), out_dtype or d)
    rule.__name__ = f"infer_{op}"
    return rule


def require_float(op: str, *specs: Spec) -> None:
    for s in specs:
        if s.dtype not in _dt.FLOATING:
            raise op_error(op, "expects a floating-point tensor",
                           expect=f"dtype in {[str(d) for d in _dt.FLOATING]}",
                           actual=spec_str(*specs), hint="convert with .float() first", cls=DTypeError)


def normalize_axis(op: str, axis: int, ndim: int) -> int:
    """Wrap a negative axis; error names the op, the axis and the rank."""
    n = max(ndim, 1)
    if not -n <= axis < n:
        raise op_error(op, "dimension out of range", expect=f"dim in [{-n}, {n - 1}]",
                       actual=f"dim={axis} for a {ndim}-d tensor", cls=IndexError)  # type: ignore[arg-type]
    return axis % n


def normalize_axes(op: str, axes: Any, ndim: int) -> tuple[int, ...]:
    """``None`` -> all axes; int or sequence -> sorted tuple of non-negative axes (no repeats)."""
    if axes is None:
        return tuple(range(ndim))
    if isinstance(axes, (int, np.integer)):
        axes = (int(axes),)
    out = tuple(sorted(normalize_axis(op, int(a), ndim) for a in axes))
    if ndim == 0:          # torch accepts dim 0 / -1 on a 0-d tensor: nothing to reduce
        return ()
    if len(set(out)) != len(out):
        raise op_error(op, "a dimension appears more than once", actual=f"dims={axes}")
    return out


# ------------------------------------------------------------------------------ operands
def as_tensor(value: Any, dtype: np.dtype | None = None) -> Tensor:
    """A Tensor for ``value``: tensors pass through (cast if ``dtype`` given), scalars wrap as 0-d."""
    if isinstance(value, Tensor):
        if dtype is not None and value._data.dtype != dtype:
            from .elementwise import cast
            return cast(value, dtype)
        return value
    if isinstance(value, np.ndarray):
        return _wrap(value if dtype is None else value.astype(dtype))
    if dtype is None:
        dtype = _dt.scalar_dtype(value) if np.ndim(value) == 0 else None
    try:
        return _wrap(np.asarray(value, dtype=dtype))
    except (TypeError, ValueError) as exc:
        raise DTypeError(f"cannot use {type(value).__name__} {value!r} as a tensor operand "
                         f"(expected a Tensor or a number)") from exc


def promote(*operands: Any, float_result: bool = False) -> tuple[Tensor, ...]:
    """Bring tensors/scalars to torch's common dtype (``float_result``: ints go to the default float)."""
    dtype = _dt.result_type(*operands)
    if float_result and dtype not in _dt.FLOATING:
        dtype = _dt.get_default_dtype()
    return tuple(as_tensor(op, dtype) for op in operands)


def sum_to(x: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Sum a broadcast gradient back to ``shape`` (the single place broadcasting is undone)."""
    if x._data.shape == shape:
        return x
    from .reduction import sum as _sum
    from .shape import reshape
    lead = x._data.ndim - len(shape)
    if lead < 0:
        raise ShapeError(f"sum_to: cannot reduce shape {x._data.shape} to larger shape {shape}")
    axes = tuple(range(lead)) + tuple(i + lead for i, s in enumerate(shape)
                                      if s == 1 and x._data.shape[i + lead] != 1)
    y = _sum(x, axes, keepdim=True) if axes else x
    return reshape(y, shape) if y._data.shape != shape else y


def add_tangents(*tangents: Tensor | None) -> Tensor | None:
    """Sum the non-zero tangents (``None`` means zero); ``None`` if all are zero."""
    out = None
    for t in tangents:
        if t is not None:
            out = t if out is None else out + t
    return out
