"""Parameter: a Tensor that a Module registers as learnable when assigned as an attribute.

>>> import suanli
>>> p = suanli.nn.Parameter(suanli.zeros(2))
>>> p.requires_grad, isinstance(p, suanli.Tensor)
(True, True)
"""
from __future__ import annotations

from typing import Any

from ..tensor import Tensor, _to_array


class Parameter(Tensor):
    """A leaf tensor marked as a module parameter (``requires_grad=True`` by default).

    ``Parameter(t)`` shares ``t``'s storage like ``torch.nn.Parameter`` does.
    """

    __slots__ = ()

    def __init__(self, data: Any = None, requires_grad: bool = True) -> None:
        if data is None:
            data = _to_array([], None)
        _init_slots(self, data._data if isinstance(data, Tensor) else _to_array(data, None))
        if requires_grad:
            self.requires_grad = True

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


class Buffer(Tensor):
    """Marks a tensor to be registered as a buffer when assigned to a Module attribute.

    >>> import suanli
    >>> m = suanli.nn.Module()
    >>> m.running = suanli.nn.Buffer(suanli.zeros(3))
    >>> list(dict(m.named_buffers()))
    ['running']
    """

    __slots__ = ("persistent",)

    def __init__(self, data: Any, persistent: bool = True) -> None:
        _init_slots(self, data._data if isinstance(data, Tensor) else _to_array(data, None))
        self.persistent = persistent


def _init_slots(t: Tensor, array: Any) -> None:
    """Fill a fresh tensor's slots around ``array`` without copying it (shares the caller's storage)."""
    t._data = array
    t._requires_grad = False
    t.grad = None
    t._node = None
    t._vc = [0]
    t._base = None
    t._hooks = None
    t._tangent = None
