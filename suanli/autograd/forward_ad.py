"""Forward-mode AD with dual tensors, as ``torch.autograd.forward_ad``.

Tangents are pushed through each primitive's JVP rule as ops run (true forward mode).

>>> import suanli
>>> import suanli.autograd.forward_ad as fwAD
>>> x = suanli.tensor([1.0, 2.0])
>>> with fwAD.dual_level():
...     y = fwAD.make_dual(x, suanli.ones_like(x)) ** 2
...     fwAD.unpack_dual(y).tangent
tensor([2., 4.])
"""
from __future__ import annotations

import weakref
from typing import Any, NamedTuple

from .._config import state
from ..errors import AutogradError, op_error
from ..tensor import Tensor, _wrap

_tracked: list[weakref.ref] = []   # tensors given a tangent at the current level (cleared on exit)


class dual_level:
    """Context in which dual tensors carry tangents. One level (no nesting)."""

    def __enter__(self) -> int:
        if state.forward_level:
            raise AutogradError("forward_ad.dual_level: nested dual levels are not supported; "
                                "compose forward-over-reverse (jvp of grad) instead")
        state.forward_level = 1
        return 1

    def __exit__(self, *exc: Any) -> None:
        state.forward_level = 0
        for ref in _tracked:
            t = ref()
            if t is not None:
                t._tangent = None
        _tracked.clear()


def _attach_tangent(t: Tensor, tangent: Tensor) -> None:
    t._tangent = tangent
    _tracked.append(weakref.ref(t))


def make_dual(tensor: Tensor, tangent: Tensor, *, level: int | None = None) -> Tensor:
    """A tensor equal to ``tensor`` (gradients flow back to it) carrying ``tangent``."""
    if not state.forward_level:
        raise AutogradError("make_dual: call inside `with forward_ad.dual_level():`")
    if not isinstance(tangent, Tensor):
        raise TypeError(f"make_dual: tangent must be a Tensor, got {type(tangent).__name__}")
    if tangent._data.shape != tensor._data.shape:
        raise op_error("make_dual", "tangent shape must equal the primal shape",
                       expect=str(tensor._data.shape), actual=str(tangent._data.shape))
    if tangent._data.dtype != tensor._data.dtype:
        from ..ops.elementwise import cast
        tangent = cast(tangent, tensor._data.dtype)
    level_ = state.forward_level
    state.forward_level = 0
    try:
        from ..ops.elementwise import clone
        dual = clone(tensor) if tensor._requires_grad else _alias(tensor)
    finally:
        state.forward_level = level_
    _attach_tangent(dual, tangent)
    return dual


def _alias(t: Tensor) -> Tensor:
    out = _wrap(t._data)
    out._vc = t._vc
    return out


class UnpackedDualTensor(NamedTuple):
    primal: Tensor
    tangent: Tensor | None


def unpack_dual(tensor: Tensor, *, level: int | None = None) -> UnpackedDualTensor:
    """``(primal, tangent)``; the tangent is ``None`` when nothing flowed into ``tensor``."""
    if tensor._tangent is None:
        return UnpackedDualTensor(tensor, None)
    level_ = state.forward_level
    state.forward_level = 0
    try:
        from ..ops.elementwise import clone
        primal = clone(tensor) if tensor._requires_grad else _alias(tensor)
    finally:
        state.forward_level = level_
    return UnpackedDualTensor(primal, tensor._tangent)
