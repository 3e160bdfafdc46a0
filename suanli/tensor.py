"""Tensor: a NumPy array plus what autograd needs (requires_grad, grad, creator node, version).

Arithmetic and every op method are attached by the op modules (``@tensor_method``), so this file
holds only the handle itself, conversions and autograd entry points.

>>> import suanli
>>> x = suanli.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
>>> x.shape, x.dtype, x.ndim
((2, 2), dtype('float32'), 2)
>>> (x * x).sum().backward()
>>> x.grad
tensor([[2., 4.],
        [6., 8.]])
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

import numpy as np

from . import dtypes as _dt
from ._config import state
from .errors import AutogradError, DTypeError, op_error


class Tensor:
    """An n-dimensional array that can record the ops applied to it for differentiation."""

    __slots__ = ("_data", "_requires_grad", "grad", "_node", "_vc", "_base", "_hooks", "_tangent",
                 "__weakref__")
    __array_priority__ = 1000   # ndarray (op) Tensor defers to Tensor's reflected operator

    def __init__(self, data: Any, dtype: Any = None, requires_grad: bool = False) -> None:
        self._data = _to_array(data, dtype)
        self._requires_grad = False
        self.grad: Tensor | None = None
        self._node = None
        self._vc = [0]
        self._base = None
        self._hooks = None
        self._tangent = None
        if requires_grad:
            self.requires_grad = True

    # ------------------------------------------------------------------ basic properties
    @property
    def shape(self) -> tuple[int, ...]:
        return self._data.shape

    @property
    def dtype(self) -> np.dtype:
        return self._data.dtype

    @property
    def ndim(self) -> int:
        return self._data.ndim

    @property
    def device(self) -> str:
        return "cpu"

    @property
    def data(self) -> Tensor:
        """The same storage without history (like torch's ``.data``)."""
        return self.detach()

    def size(self, dim: int | None = None) -> tuple[int, ...] | int:
        return self._data.shape if dim is None else self._data.shape[dim]

    def dim(self) -> int:
        return self._data.ndim

    def numel(self) -> int:
        return self._data.size

    def element_size(self) -> int:
        return self._data.itemsize

    def __len__(self) -> int:
        if self._data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    # ------------------------------------------------------------------ autograd state
    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        if value and self._data.dtype not in _dt.FLOATING:
            raise op_error("requires_grad", "only floating-point tensors can require gradients",
                           expect=f"dtype in {[str(d) for d in _dt.FLOATING]}",
                           actual=f"dtype {self._data.dtype}, shape {self._data.shape}",
                           hint="convert first, e.g. x.float().requires_grad_()", cls=DTypeError)
        if not value and self._node is not None:
            raise AutogradError("requires_grad: you can only change requires_grad of leaf tensors; "
                                "use .detach() to get a tensor without history")
        self._requires_grad = bool(value)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        self.requires_grad = requires_grad
        return self

    @property
    def is_leaf(self) -> bool:
        return self._node is None

    @property
    def grad_fn(self) -> Any:
        return self._node

    @property
    def _version(self) -> int:
        return self._vc[0]

    def backward(self, gradient: Tensor | None = None, retain_graph: bool | None = None,
                 create_graph: bool = False, inputs: Any = None) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad`` (see :func:`suanli.autograd.backward`)."""
        from .autograd.engine import backward
        backward(self, gradient, retain_graph=retain_graph, create_graph=create_graph, inputs=inputs)

    def register_hook(self, hook: Callable[[Tensor], Tensor | None]) -> Any:
        """Call ``hook(grad)`` when this tensor's gradient is computed; a returned tensor replaces it."""
        from .autograd.engine import register_hook
        return register_hook(self, hook)

    def retain_grad(self) -> None:
        """Keep ``.grad`` on this non-leaf tensor after backward."""
        from .autograd.engine import retain_grad
        retain_grad(self)

    def detach(self) -> Tensor:
        """Same storage (and version counter), no history, no gradient."""
        out = _wrap(self._data)
        out._vc = self._vc
        out._base = self if self._base is None else self._base
        return out

    def detach_(self) -> Tensor:
        self._node = None
        self._requires_grad = False
        return self

    # ------------------------------------------------------------------ conversions
    def numpy(self) -> np.ndarray:
        """The underlying array (shared memory, as in torch)."""
        if state.tracer is not None:
            state.tracer.check_concrete(self, "numpy()")
        if self._requires_grad:
            raise AutogradError("numpy(): can't call numpy() on a tensor that requires grad; "
                                "use tensor.detach().numpy()")
        return self._data

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        if state.tracer is not None:
            state.tracer.check_concrete(self, "numpy.asarray()")
        a = self._data
        if dtype is not None and np.dtype(dtype) != a.dtype:
            return a.astype(dtype)
        return a.copy() if copy else a

    def item(self) -> Any:
        if state.tracer is not None:   # compile: a traced value cannot become a Python number
            state.tracer.check_concrete(self, "item()")
        if self._data.size != 1:
            raise op_error("item", "only a one-element tensor can be converted to a Python scalar",
                           actual=f"shape {self._data.shape} ({self._data.size} elements)",
                           hint="reduce first (e.g. .sum()) or index one element", cls=ValueError)
        return self._data.reshape(()).item() if self._data.dtype not in _dt.HALF else float(self._data.reshape(()))

    def tolist(self) -> Any:
        if state.tracer is not None:
            state.tracer.check_concrete(self, "tolist()")
        if self._data.dtype in _dt.HALF:
            return self._data.astype(np.float32).tolist()
        return self._data.tolist()

    def __bool__(self) -> bool:
        if state.tracer is not None:
            state.tracer.check_concrete(self, "bool()")
        if self._data.size != 1:
            raise op_error("bool", "the truth value of a tensor with more than one element is ambiguous",
                           actual=f"shape {self._data.shape}", hint="use .any() or .all()", cls=ValueError)
        return bool(self._data.reshape(())[()])

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __index__(self) -> int:
        if state.tracer is not None:
            state.tracer.check_concrete(self, "int()")
        if self._data.dtype in _dt.FLOATING or self._data.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self._data.reshape(())[()])

    def __iter__(self) -> Iterator[Tensor]:
        if self._data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self._data.shape[0]))

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        data = self._data
        if data.dtype in _dt.HALF:
            data = data.astype(np.float32)
        body = np.array2string(data, separator=", ", prefix="tensor(", precision=4,
                               threshold=1000, edgeitems=3)
        extras = []
        if self._data.dtype not in (_dt.get_default_dtype(), _dt.int64, _dt.bool_) or \
                (self._data.size == 0 and self._data.dtype != _dt.get_default_dtype()):
            extras.append(f"dtype={self._data.dtype}")
        if self._node is not None:
            extras.append(f"grad_fn={self._node!r}")
        elif self._requires_grad:
            extras.append("requires_grad=True")
        return "tensor(" + body + "".join(", " + e for e in extras) + ")"

    # ------------------------------------------------------------------ dtype conversion sugar
    def to(self, *args: Any, **kwargs: Any) -> Tensor:
        """``x.to(dtype)``; device strings other than 'cpu' are rejected clearly."""
        dtype = kwargs.get("dtype")
        for a in args:
            if isinstance(a, str) and a.startswith(("cpu", "cuda", "mps")):
                if a != "cpu":
                    raise op_error("to", f"device {a!r} is not available", hint="suanli runs on the CPU")
            elif isinstance(a, Tensor):
                dtype = a.dtype
            else:
                dtype = a
        if dtype is None:
            return self
        from .ops.elementwise import cast
        return cast(self, _dt.as_dtype(dtype))

    def type(self, dtype: Any) -> Tensor:
        return self.to(dtype)

    def float(self) -> Tensor:
        return self.to(_dt.float32)

    def double(self) -> Tensor:
        return self.to(_dt.float64)

    def half(self) -> Tensor:
        return self.to(_dt.float16)

    def bfloat16(self) -> Tensor:
        return self.to(_dt.bfloat16)

    def long(self) -> Tensor:
        return self.to(_dt.int64)

    def int(self) -> Tensor:
        return self.to(_dt.int32)

    def bool(self) -> Tensor:
        return self.to(_dt.bool_)

    def cpu(self) -> Tensor:
        return self

    def is_floating_point(self) -> bool:
        return self._data.dtype in _dt.FLOATING

    def is_contiguous(self) -> bool:
        return self._data.flags.c_contiguous


_new = object.__new__


def _wrap(array: np.ndarray) -> Tensor:
    """Fast internal constructor around an existing array (no copy, no checks)."""
    t = _new(Tensor)
    t._data = array
    t._requires_grad = False
    t.grad = None
    t._node = None
    t._vc = [0]
    t._base = None
    t._hooks = None
    t._tangent = None
    return t


def _to_array(data: Any, dtype: Any = None) -> np.ndarray:
    """Copy ``data`` into a fresh array with torch's dtype inference (floats -> default dtype)."""
    target = None if dtype is None else _dt.as_dtype(dtype)
    if isinstance(data, Tensor):
        arr = np.array(data._data, copy=True)
    elif isinstance(data, np.ndarray):
        arr = np.array(data, copy=True)
    else:
        if isinstance(data, (list, tuple)) and _contains_tensor(data):
            data = _nested_to_numpy(data)
        try:
            arr = np.array(data)
        except ValueError as exc:   # ragged nested lists
            raise op_error("tensor", "nested sequences must have a regular (rectangular) shape",
                           actual=f"{type(data).__name__} with rows of different lengths ({exc})",
                           hint="pad the rows to one length, or build one tensor per row",
                           cls=ValueError) from None  # type: ignore[arg-type]
        if target is None:
            if arr.dtype.kind == "f":
                arr = arr.astype(_dt.get_default_dtype())
            elif arr.dtype.kind in "iu":
                arr = arr.astype(_dt.int64)
    if arr.dtype.kind in "OUSc":
        raise DTypeError(f"tensor: cannot make a tensor from {type(data).__name__} with NumPy dtype "
                         f"{arr.dtype}; expected (nested lists of) numbers or an array")
    if target is not None and arr.dtype != target:
        arr = arr.astype(target)
    elif arr.dtype not in _dt.ALL:
        arr = arr.astype(_dt.as_dtype(_nearest_supported(arr.dtype)))
    return arr


def _nearest_supported(d: np.dtype) -> np.dtype:
    if d.kind == "f":
        return _dt.float64
    if d.kind == "u":
        return _dt.int64
    return _dt.int64


def _contains_tensor(data: Any) -> bool:
    return any(isinstance(x, Tensor) or (isinstance(x, (list, tuple)) and _contains_tensor(x)) for x in data)


def _nested_to_numpy(data: Any) -> Any:
    if isinstance(data, Tensor):
        return data._data
    if isinstance(data, (list, tuple)):
        return [_nested_to_numpy(x) for x in data]
    return data
