"""``autocast``: run the ops of a region in mixed precision, as ``torch.autocast``.

Inside ``with autocast(dtype=suanli.float16):`` every primitive casts its inputs according to the
policy table in :mod:`suanli.amp.policy` before it runs: matmul and convolutions in the low dtype,
reductions/exp/log/softmax building blocks in float32, everything else in the widest input dtype.
The casts are ordinary differentiable ``cast`` ops, so gradients flow back to float32 parameters
("master weights") in float32.

How it hooks in: entering a region stores a :class:`AutocastRegion` in ``suanli._config.state.autocast``;
:func:`suanli.ops.registry.apply` tests that one attribute and, when it is set, hands the inputs to
:meth:`AutocastRegion.cast_inputs`. Outside autocast the only cost is that test.

Nothing is cached: a weight used k times in a region is cast k times. A cached cast would be one
graph node shared by every forward in the region, and suanli frees a node's inputs after backward,
so a second forward/backward inside one region would fail; recasting costs one pass over the weight.

>>> import suanli
>>> a = suanli.ones(2, 3)
>>> with suanli.amp.autocast(dtype=suanli.float16):
...     y = a @ suanli.ones(3, 2)            # matmul: lower precision
...     s = y.sum()                          # sum: float32
>>> y.dtype, s.dtype
(dtype('float16'), dtype('float32'))
"""
from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar

import numpy as np

from .. import dtypes as _dt
from .._config import state
from ..errors import DTypeError, op_error
from ..tensor import Tensor
from .policy import FLOAT32, LOWER, POLICY, PROMOTE

F = TypeVar("F", bound=Callable[..., Any])

LOW_DTYPES = (_dt.float16, _dt.bfloat16)


def _cast(t: Tensor, dtype: np.dtype) -> Tensor:
    from ..ops.elementwise import cast
    return cast(t, dtype)


class AutocastRegion:
    """What ``state.autocast`` holds inside an enabled region: the low dtype and the casting rules.

    :meth:`lower` and :meth:`float32` are also what composite entry points use to cast a whole
    layer at once (e.g. ``linear``: input, weight *and* bias in the low dtype, as torch does).

    >>> import suanli
    >>> r = AutocastRegion(suanli.bfloat16)
    >>> [t.dtype for t in r.lower(suanli.ones(2), suanli.ones(2, dtype=suanli.float64))]
    [dtype(bfloat16), dtype('float64')]
    """

    __slots__ = ("dtype", "_lower_from")

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype = dtype
        # torch casts every floating input except float64 to the low dtype
        self._lower_from = frozenset(d for d in (_dt.float32, *LOW_DTYPES) if d != dtype)

    def cast_inputs(self, prim: Any, inputs: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """Inputs of primitive ``prim`` cast per :data:`suanli.amp.policy.POLICY`."""
        kind = POLICY.get(prim.name, PROMOTE)
        if kind == LOWER:
            return self.lower(*inputs)
        if kind == FLOAT32:
            return self.float32(*inputs)
        return self.promote(*inputs)

    def lower(self, *tensors: Any) -> tuple[Any, ...]:
        """float32 (or the other half type) tensors cast to the region's dtype; others unchanged."""
        return tuple(_cast(t, self.dtype) if isinstance(t, Tensor) and t.dtype in self._lower_from else t
                     for t in tensors)

    def float32(self, *tensors: Any) -> tuple[Any, ...]:
        """float16/bfloat16 tensors cast to float32; others unchanged."""
        return tuple(_cast(t, _dt.float32) if isinstance(t, Tensor) and t.dtype in _dt.HALF else t
                     for t in tensors)

    def promote(self, *tensors: Any) -> tuple[Any, ...]:
        """Floating tensors cast to their widest dtype (torch's promotion); others unchanged."""
        if len(tensors) < 2:
            return tensors
        widest = None
        mixed = False
        for t in tensors:
            if isinstance(t, Tensor) and t.dtype in _dt.FLOATING:
                if widest is None:
                    widest = t.dtype
                elif t.dtype != widest:
                    widest, mixed = _dt.promote_types(widest, t.dtype), True
        if not mixed:
            return tensors
        return tuple(_cast(t, widest) if isinstance(t, Tensor) and t.dtype in _dt.FLOATING else t
                     for t in tensors)

    def __repr__(self) -> str:
        return f"AutocastRegion(dtype={self.dtype})"


_REGIONS = {d: AutocastRegion(d) for d in LOW_DTYPES}


def _check_dtype(dtype: Any) -> np.dtype:
    try:
        d = _dt.as_dtype(dtype)
    except (DTypeError, TypeError) as exc:
        raise op_error("autocast", f"unknown dtype {dtype!r}", expect="dtype=suanli.float16 or suanli.bfloat16",
                       hint="autocast runs matmul/conv in a 16-bit float type", cls=DTypeError) from exc
    if d not in LOW_DTYPES:
        raise op_error("autocast", f"dtype {d} is not a lower-precision floating type",
                       expect="dtype=suanli.float16 or suanli.bfloat16", actual=f"dtype={d}",
                       hint="use suanli.bfloat16 (the CPU default, float32's range) or suanli.float16 "
                            "(more precision, range up to 65504: pair it with suanli.amp.GradScaler)",
                       cls=DTypeError)
    return d


class autocast:
    """Context manager and decorator: ops inside run in mixed precision (see :mod:`suanli.amp.policy`).

    Signature as ``torch.autocast(device_type, dtype=None, enabled=True, cache_enabled=None)``;
    ``device_type`` must be ``'cpu'`` and may be left out: ``autocast(dtype=suanli.float16)`` or
    ``autocast(suanli.float16)``. The default dtype is bfloat16, as torch's on the CPU. Regions nest:
    an inner region (or ``enabled=False``) replaces the outer one until it exits. The state is
    process-wide, like grad mode. ``cache_enabled`` is accepted for compatibility; nothing is cached.

    Run ``loss.backward()`` after the region, as with torch (backward inside a region also works:
    gradients are cast to each input's dtype).

    >>> import suanli
    >>> w = suanli.ones(3, 2, requires_grad=True)
    >>> with suanli.autocast("cpu", dtype=suanli.bfloat16):
    ...     y = suanli.ones(4, 3) @ w
    ...     with suanli.autocast(enabled=False):
    ...         z = suanli.ones(4, 3) @ w
    >>> y.dtype, z.dtype
    (dtype(bfloat16), dtype('float32'))
    >>> y.float().sum().backward()
    >>> w.grad.dtype
    dtype('float32')
    >>> @suanli.autocast(dtype=suanli.float16)
    ... def forward(x):
    ...     return x @ x.T
    >>> forward(suanli.ones(2, 2)).dtype
    dtype('float16')
    """

    def __init__(self, device_type: Any = "cpu", dtype: Any = None, enabled: bool = True,
                 cache_enabled: bool | None = None) -> None:
        if not isinstance(device_type, str):         # autocast(suanli.float16): the dtype given first
            if dtype is not None:
                raise op_error("autocast", "dtype given twice", actual=f"autocast({device_type!r}, dtype={dtype!r})",
                               hint="pass autocast('cpu', dtype=...) or autocast(dtype=...)", cls=TypeError)  # type: ignore[arg-type]
            device_type, dtype = "cpu", device_type
        if device_type != "cpu":
            hint = ("did you mean dtype=...? e.g. autocast(dtype=suanli.float16)" if device_type in
                    ("float16", "bfloat16", "half") else "suanli runs on the CPU: use autocast('cpu', ...)")
            raise op_error("autocast", f"device_type {device_type!r} is not supported",
                           expect="device_type='cpu'", hint=hint, cls=ValueError)  # type: ignore[arg-type]
        self.device = device_type
        self.fast_dtype = _dt.bfloat16 if dtype is None else _check_dtype(dtype)
        self.enabled = bool(enabled)
        self._outer: list[AutocastRegion | None] = []   # a stack, so one instance can be re-entered

    def __enter__(self) -> autocast:
        self._outer.append(state.autocast)
        state.autocast = _REGIONS[self.fast_dtype] if self.enabled else None
        return self

    def __exit__(self, *exc: Any) -> None:
        state.autocast = self._outer.pop()

    def __call__(self, fn: F) -> F:
        """Use as a decorator: ``fn`` runs inside this region."""
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self:
                return fn(*args, **kwargs)
        return wrapper  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"autocast(device_type={self.device!r}, dtype={self.fast_dtype}, enabled={self.enabled})"


def is_autocast_enabled(device_type: str = "cpu") -> bool:
    """True inside an enabled :class:`autocast` region.

    >>> import suanli
    >>> with suanli.autocast(dtype=suanli.float16):
    ...     suanli.amp.is_autocast_enabled()
    True
    """
    return state.autocast is not None


def get_autocast_dtype(device_type: str = "cpu") -> np.dtype | None:
    """The low dtype of the active region, or ``None`` outside autocast.

    >>> import suanli
    >>> suanli.amp.get_autocast_dtype() is None
    True
    """
    region = state.autocast
    return None if region is None else region.dtype
