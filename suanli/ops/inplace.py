"""In-place ops (``add_``, ``mul_``, ``zero_``, ``x[i] = v``...) with version counting.

An in-place op computes the out-of-place result, writes it into the tensor's storage, bumps the
version counter shared with its views, and -- when autograd is recording -- re-points the tensor at
the new node. Saved tensors remember their version, so backward through a value that was modified
afterwards raises instead of giving a wrong gradient (as PyTorch does).

>>> import suanli
>>> x = suanli.tensor([1.0, 2.0], requires_grad=True)
>>> y = x.exp()
>>> y.add_(1)            # exp saved its output for backward...
tensor([3.7183, 8.3891], grad_fn=<AddBackward>)
>>> try:
...     y.sum().backward()
... except RuntimeError as e:
...     print(str(e).split(':')[0])
one of the variables needed for gradient computation has been modified by an inplace operation
"""
from __future__ import annotations

import weakref
from typing import Any, Callable

import numpy as np

from .._config import state
from ..errors import AutogradError, DTypeError, op_error
from ..tensor import Tensor, _wrap

# out-of-place function name -> it gets an in-place twin "<name>_" if the op module defines it
INPLACE_OPS = ("add", "sub", "mul", "div", "pow", "neg", "exp", "log", "sqrt", "rsqrt", "abs", "sign",
               "sin", "cos", "tanh", "sigmoid", "relu", "clamp", "clip", "masked_fill", "reciprocal",
               "floor", "ceil", "round", "trunc", "log1p", "expm1", "erf", "leaky_relu", "silu", "gelu",
               "fmod", "remainder", "tril", "triu", "scatter_add", "index_fill", "lerp", "addcmul",
               "addcdiv", "square", "maximum", "minimum")
DUNDERS = {"__iadd__": "add", "__isub__": "sub", "__imul__": "mul", "__itruediv__": "div", "__ipow__": "pow"}


def apply_inplace(op: str, self: Tensor, fn: Callable[..., Tensor], *args: Any, **kwargs: Any) -> Tensor:
    """Run ``fn(self, *args)`` out of place and write the result into ``self``."""
    recording = state.grad_enabled and (self._requires_grad or any(
        isinstance(a, Tensor) and a._requires_grad for a in args))
    if state.grad_enabled and self._requires_grad:
        if self._node is None:
            raise AutogradError(f"{op}: a leaf tensor that requires grad is being used in an in-place "
                                "operation.\n  help: update parameters inside `with suanli.no_grad():`, "
                                "or clone() the tensor first")
        if self._base is not None:
            raise AutogradError(f"{op}: in-place modification of a view of a tensor that requires grad is "
                                "not supported.\n  help: use the out-of-place op, or clone() the view")
    data = self._data
    if not data.flags.writeable:
        raise op_error(op, "this tensor's memory is read-only (an expanded/broadcast view)",
                       actual=f"shape {data.shape}", hint="clone() it before modifying")
    if recording:
        # the old value, as the new node's input: a copy, so a VJP that reads it (sin_, pow_...)
        # still sees the value before the write, as in torch
        alias = _wrap(data.copy())
        alias._node, alias._base = self._node, self._base
        alias._requires_grad, alias._tangent = self._requires_grad, self._tangent
        if self._node is not None:
            self._node._out = weakref.ref(alias)
        result = fn(alias, *args, **kwargs)
    else:
        result = fn(self, *args, **kwargs)
    rd = result._data
    if rd.shape != data.shape:
        raise op_error(op, "the result must keep the tensor's shape (in-place ops cannot broadcast self)",
                       expect=str(data.shape), actual=str(rd.shape), hint="use the out-of-place op")
    if rd.dtype != data.dtype and not np.can_cast(rd.dtype, data.dtype, "same_kind"):
        raise op_error(op, f"result type {rd.dtype} can't be cast to the desired output type {data.dtype}",
                       hint="use the out-of-place op, or convert the tensor first", cls=DTypeError)
    if rd is not data:
        np.copyto(data, rd, casting="unsafe")
    self._vc[0] += 1
    if recording:
        node = result._node
        self._node = node
        self._requires_grad = result._requires_grad
        if node is not None:
            node._out = weakref.ref(self)
            node.saved = [(self._vc, self._vc[0], -1) if idx == -1 else (vc, v, idx)
                          for vc, v, idx in node.saved]
    if state.forward_level and result._tangent is not None:
        from ..autograd.forward_ad import _attach_tangent
        _attach_tangent(self, result._tangent)
    return self


def _make_inplace(name: str, fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
    def method(self: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        return apply_inplace(name + "_", self, fn, *args, **kwargs)
    method.__name__ = name + "_"
    method.__doc__ = f"In-place version of :func:`{name}`."
    return method


def _fill(x: Tensor, value: Any) -> Tensor:
    from ._helpers import as_tensor
    from .shape import expand
    v = as_tensor(value, x._data.dtype)
    if v._data.ndim:
        raise op_error("fill_", "the fill value must be a number or a 0-d tensor", actual=str(v._data.shape))
    return expand(v, x._data.shape)


def _copy(x: Tensor, src: Any) -> Tensor:
    from ._helpers import as_tensor
    from .shape import expand
    return expand(as_tensor(src, x._data.dtype), x._data.shape)


def fill_(self: Tensor, value: Any) -> Tensor:
    """Set every element to ``value``."""
    return apply_inplace("fill_", self, _fill, value)


def zero_(self: Tensor) -> Tensor:
    """Set every element to zero."""
    return apply_inplace("zero_", self, _fill, 0)


def copy_(self: Tensor, src: Any) -> Tensor:
    """Copy ``src`` (broadcast, cast) into this tensor; gradients flow to ``src``."""
    return apply_inplace("copy_", self, _copy, src)


def setitem(self: Tensor, key: Any, value: Any) -> None:
    """``self[key] = value``: differentiable w.r.t. ``value`` and the untouched part of ``self``."""
    from .indexing import setitem as _setitem_out_of_place
    apply_inplace("__setitem__", self, _setitem_out_of_place, key, value)


def install(namespace: dict[str, Any]) -> None:
    """Attach ``<op>_`` methods for every op in :data:`INPLACE_OPS` found in ``namespace``."""
    for name in INPLACE_OPS:
        fn = namespace.get(name)
        if fn is not None and (name + "_") not in Tensor.__dict__:
            setattr(Tensor, name + "_", _make_inplace(name, fn))
    for dunder, name in DUNDERS.items():
        fn = namespace.get(name)
        if fn is not None:
            setattr(Tensor, dunder, _make_inplace(name, fn))
    Tensor.fill_ = fill_
    Tensor.zero_ = zero_
    Tensor.copy_ = copy_
    Tensor.__setitem__ = setitem
