"""Tensor statistics for mixed-precision training: see a layer drift out of float16's range early.

:class:`TensorStats` records, per layer, the activations (forward hooks) and the gradients flowing
back into them (tensor hooks on the outputs): min, max, mean, absmax, and how many values

* **overflow** the low dtype: ``|x| > max`` (65504 for float16; includes inf),
* **underflow** it: ``0 < |x| < smallest subnormal`` (2**-24 for float16: these round to zero),
* fall **below the normal range**: ``0 < |x| < smallest normal`` (2**-14; includes the underflows;
  such values keep fewer significant bits -- in a float16 gradient this is what underflow looks
  like before the values reach zero),
* are NaN or inf (**nonfinite**).

It warns (a :class:`PrecisionWarning` naming the layer and the figure, once per layer and reason;
every alert also lands in :attr:`TensorStats.alerts`) when

* a layer's absmax passes ``warn_fraction`` of the dtype's max (default 1/8: 8188 for float16),
  before anything overflows; or values already overflow or are NaN/inf;
* more than ``underflow_fraction`` (default 1%) of a layer's nonzero gradient values are below the
  normal range.

Gradients are recorded as backward delivers them: with a GradScaler they are the *scaled* gradients,
which is what float16 has to hold.

>>> import warnings
>>> import suanli
>>> mon = TensorStats(warn=False)
>>> mon.observe("x", suanli.tensor([7e4, 1.0, 1e-8, 1e-5, 0.0], dtype=suanli.float64)).overflow
1
>>> st = mon.get("x")
>>> st.underflow, st.below_normal, st.absmax
(1, 2, 70000.0)
>>> [a.reason for a in mon.alerts]
['overflow']
"""
from __future__ import annotations

import itertools
import math
import warnings
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterator

import ml_dtypes
import numpy as np

from .. import dtypes as _dt
from .._config import state
from ..errors import op_error
from ..tensor import Tensor

ACTIVATION, GRADIENT = "activation", "gradient"


class PrecisionWarning(UserWarning):
    """A layer's values approach (or leave) the range of the low-precision dtype."""


@dataclass
class Stat:
    """Running statistics of one layer's activations or gradients (over every call since reset)."""

    name: str
    kind: str
    calls: int = 0
    numel: int = 0
    min: float = math.inf            # over finite values
    max: float = -math.inf
    total: float = 0.0               # sum of finite values (for the mean)
    finite: int = 0
    absmax: float = 0.0              # peak |x| over non-NaN values (inf counts)
    last_absmax: float = 0.0
    overflow: int = 0
    underflow: int = 0
    below_normal: int = 0
    nonfinite: int = 0
    nonzero: int = 0
    history: deque = field(default_factory=lambda: deque(maxlen=1000))   # absmax per call

    @property
    def mean(self) -> float:
        return self.total / self.finite if self.finite else math.nan


@dataclass
class Alert:
    """One reason to worry, first seen at call ``call`` of layer ``name``; ``count`` = how often seen."""

    name: str
    kind: str
    reason: str          # 'range' | 'overflow' | 'nonfinite' | 'underflow'
    value: float
    message: str
    call: int
    count: int = 1


class TensorStats:
    """Monitor activations and gradients of a model (or of tensors you hand it) for a low dtype.

    ``TensorStats(model=None, *, dtype=float16, warn_fraction=1/8, underflow_fraction=0.01,
    warn=True, gradients=True, leaves_only=True, history=1000)``. With a model, forward hooks go
    on every leaf module (every module with ``leaves_only=False``), named as in
    ``named_modules()``. Without one, call :meth:`observe` or :meth:`watch` yourself.
    :meth:`remove` (or leaving a ``with`` block) removes every hook.

    >>> import suanli
    >>> from suanli import nn
    >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> with TensorStats(model) as mon:
    ...     model(suanli.randn(3, 4)).sum().backward()
    >>> sorted(mon.names())
    ['0', '1', '2']
    >>> mon.get("2", "gradient").calls
    1
    >>> print(mon.summary().splitlines()[0].split())   # doctest: +NORMALIZE_WHITESPACE
    ['layer', 'kind', 'calls', 'min', 'max', 'mean', 'absmax', '%max', 'overflow', 'underflow', 'subnormal', 'nonfinite']
    """

    def __init__(self, model: Any = None, *, dtype: Any = _dt.float16, warn_fraction: float = 1 / 8,
                 underflow_fraction: float = 0.01, warn: bool = True, gradients: bool = True,
                 leaves_only: bool = True, history: int = 1000) -> None:
        d = _dt.as_dtype(dtype)
        if d not in _dt.FLOATING:
            raise op_error("TensorStats", f"dtype must be floating point, got {d}",
                           hint="pass the dtype you train in, e.g. suanli.float16", cls=TypeError)  # type: ignore[arg-type]
        if not 0 < warn_fraction <= 1:
            raise op_error("TensorStats", "warn_fraction must be in (0, 1]", actual=f"{warn_fraction}",
                           cls=ValueError)  # type: ignore[arg-type]
        if not 0 <= underflow_fraction <= 1:
            raise op_error("TensorStats", "underflow_fraction must be in [0, 1]", actual=f"{underflow_fraction}",
                           cls=ValueError)  # type: ignore[arg-type]
        info = ml_dtypes.finfo(d)
        self.dtype = d
        self.max_value = float(info.max)
        self.smallest_normal = float(info.smallest_normal)
        self.smallest_subnormal = float(info.smallest_subnormal)
        self.warn_fraction = float(warn_fraction)
        self.underflow_fraction = float(underflow_fraction)
        self.warn = warn
        self.gradients = gradients
        self.leaves_only = leaves_only
        self._history = int(history)
        self.stats: dict[tuple[str, str], Stat] = {}
        self.alerts: list[Alert] = []
        self._alert_index: dict[tuple[str, str, str], Alert] = {}
        self._module_handles: list[Any] = []
        self._grad_handles: dict[int, Any] = {}     # pending tensor hooks (dropped once they fire)
        self._keys = itertools.count()
        self._active = True
        if model is not None:
            self.attach(model)

    # ------------------------------------------------------------------ hooking
    def attach(self, model: Any, prefix: str = "") -> TensorStats:
        """Put a forward hook on each (leaf) module of ``model``; returns ``self``."""
        if not hasattr(model, "named_modules") or not hasattr(model, "register_forward_hook"):
            raise op_error("TensorStats.attach", f"expected a suanli.nn.Module, got {type(model).__name__}",
                           hint="for plain functions, call monitor.observe(name, tensor) or "
                                "monitor.watch(name, tensor) on their outputs", cls=TypeError)  # type: ignore[arg-type]
        self._active = True
        for name, module in model.named_modules(prefix=prefix):
            if self.leaves_only and any(True for _ in module.children()):
                continue
            label = name or type(module).__name__
            self._module_handles.append(module.register_forward_hook(self._forward_hook(label)))
        return self

    def _forward_hook(self, name: str) -> Any:
        def hook(module: Any, args: tuple, output: Any) -> None:
            for label, t in _tensors(name, output):
                self.watch(label, t)
        return hook

    def watch(self, name: str, tensor: Tensor) -> Tensor:
        """Record ``tensor`` as ``name``'s activation and, when it carries a gradient, record that
        gradient during backward. Returns ``tensor`` (so it can wrap an expression)."""
        if not self._active:
            return tensor
        self.observe(name, tensor, ACTIVATION)
        if self.gradients and tensor.requires_grad and state.grad_enabled:
            key = next(self._keys)

            def on_grad(g: Tensor) -> None:
                self._grad_handles.pop(key, None)
                if self._active:
                    self.observe(name, g, GRADIENT)

            self._grad_handles[key] = tensor.register_hook(on_grad)
            if len(self._grad_handles) > 4096:     # forwards never backpropagated: forget the oldest
                self._grad_handles.pop(next(iter(self._grad_handles)))
        return tensor

    def remove(self) -> None:
        """Remove every forward hook and every pending gradient hook."""
        for h in self._module_handles:
            h.remove()
        for h in self._grad_handles.values():
            h.remove()
        self._module_handles.clear()
        self._grad_handles.clear()
        self._active = False

    def __enter__(self) -> TensorStats:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()

    # ------------------------------------------------------------------ recording
    def observe(self, name: str, tensor: Any, kind: str = ACTIVATION) -> Stat:
        """Add one tensor's figures to ``name``'s statistics; warn if it nears the dtype's limits."""
        if kind not in (ACTIVATION, GRADIENT):
            raise op_error("TensorStats.observe", f"kind must be 'activation' or 'gradient', got {kind!r}",
                           cls=ValueError)  # type: ignore[arg-type]
        a = _as_array(tensor)
        st = self.stats.get((name, kind))
        if st is None:
            st = self.stats[(name, kind)] = Stat(name, kind, history=deque(maxlen=self._history))
        absx = np.abs(a)
        nan = np.isnan(a)
        finite = np.isfinite(a)
        n_finite = int(np.count_nonzero(finite))
        fin = a if n_finite == a.size else a[finite]
        notnan = absx if not nan.any() else absx[~nan]
        absmax = float(notnan.max()) if notnan.size else 0.0
        nz = absx > 0                                  # NaN compares False
        overflow = int(np.count_nonzero(absx > self.max_value))
        under = int(np.count_nonzero(nz & (absx < self.smallest_subnormal)))
        below = int(np.count_nonzero(nz & (absx < self.smallest_normal)))
        nonzero = int(np.count_nonzero(nz))
        st.calls += 1
        st.numel += a.size
        if fin.size:
            st.min = min(st.min, float(fin.min()))
            st.max = max(st.max, float(fin.max()))
            st.total += float(fin.sum(dtype=np.float64))
        st.finite += n_finite
        st.absmax = max(st.absmax, absmax)
        st.last_absmax = absmax
        st.history.append(absmax)
        st.overflow += overflow
        st.underflow += under
        st.below_normal += below
        st.nonfinite += a.size - n_finite
        st.nonzero += nonzero
        self._check(st, absmax, overflow, a.size - n_finite, below, nonzero)
        return st

    def _check(self, st: Stat, absmax: float, overflow: int, nonfinite: int, below: int, nonzero: int) -> None:
        what = f"layer {st.name!r} {st.kind}s"
        dname = str(self.dtype)
        if nonfinite:
            self._alert(st, "nonfinite", nonfinite, f"{what}: {nonfinite} NaN/inf values")
        if overflow:
            self._alert(st, "overflow", overflow,
                        f"{what}: {overflow} values exceed {dname}'s max {self.max_value:g} (absmax {absmax:.4g})")
        elif absmax > self.warn_fraction * self.max_value:
            self._alert(st, "range", absmax,
                        f"{what}: absmax {absmax:.4g} is {absmax / self.max_value:.1%} of {dname}'s max "
                        f"{self.max_value:g} (warning above {self.warn_fraction:.1%})")
        if st.kind == GRADIENT and nonzero and below / nonzero > self.underflow_fraction:
            self._alert(st, "underflow", below / nonzero,
                        f"{what}: {below / nonzero:.1%} of nonzero values are below {dname}'s normal range "
                        f"{self.smallest_normal:.3g} (they lose precision or round to 0); raise the loss scale")

    def _alert(self, st: Stat, reason: str, value: float, message: str) -> None:
        key = (st.name, st.kind, reason)
        alert = self._alert_index.get(key)
        if alert is not None:
            alert.count += 1
            return
        alert = Alert(st.name, st.kind, reason, float(value), message, st.calls)
        self._alert_index[key] = alert
        self.alerts.append(alert)
        if self.warn:
            warnings.warn(message, PrecisionWarning, stacklevel=4)

    # ------------------------------------------------------------------ reading
    def get(self, name: str, kind: str = ACTIVATION) -> Stat:
        """The statistics of ``name`` (``kind`` 'activation' or 'gradient')."""
        try:
            return self.stats[(name, kind)]
        except KeyError:
            seen = sorted({f"{n} ({k})" for n, k in self.stats})
            raise KeyError(f"TensorStats: nothing recorded for {name!r} ({kind}); recorded: {seen}") from None

    def names(self) -> list[str]:
        """Layer names recorded so far, in first-seen order."""
        return list(dict.fromkeys(n for n, _ in self.stats))

    def reset(self) -> None:
        """Forget every statistic and alert (hooks stay)."""
        self.stats.clear()
        self.alerts.clear()
        self._alert_index.clear()

    def summary(self) -> str:
        """A text table: one row per layer and kind.

        >>> mon = TensorStats(warn=False)
        >>> _ = mon.observe("fc", np.array([1.0, -3.0]))
        >>> print(mon.summary())  # doctest: +NORMALIZE_WHITESPACE
        layer kind       calls min max  mean absmax %max   overflow underflow subnormal nonfinite
        fc    activation 1     -3  1    -1   3      0.005% 0        0         0         0
        """
        header = ["layer", "kind", "calls", "min", "max", "mean", "absmax", "%max",
                  "overflow", "underflow", "subnormal", "nonfinite"]
        rows = [header]
        for st in self.stats.values():
            rows.append([st.name, st.kind, str(st.calls), _g(st.min), _g(st.max), _g(st.mean), _g(st.absmax),
                         f"{st.absmax / self.max_value:.3%}".replace(".000%", "%") if math.isfinite(st.absmax)
                         else "inf", str(st.overflow), str(st.underflow), str(st.below_normal), str(st.nonfinite)])
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        return "\n".join(" ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)

    def __repr__(self) -> str:
        return f"TensorStats(dtype={self.dtype}, layers={len(self.names())}, alerts={len(self.alerts)})"


def register_stat_hooks(module: Any, **kwargs: Any) -> TensorStats:
    """``TensorStats(module, **kwargs)``: hook every leaf module of ``module``; ``.remove()`` undoes it.

    >>> import suanli
    >>> from suanli import nn
    >>> mon = register_stat_hooks(nn.Linear(2, 2))
    >>> _ = nn.Linear(2, 2)                   # other modules are not watched
    >>> mon.remove()
    """
    return TensorStats(module, **kwargs)


def _tensors(name: str, output: Any) -> Iterator[tuple[str, Tensor]]:
    """The tensors in a module's output: a tensor, or a (nested) tuple/list/dict of them."""
    if isinstance(output, Tensor):
        if output.is_floating_point():
            yield name, output
    elif isinstance(output, (tuple, list)):
        for i, o in enumerate(output):
            yield from _tensors(f"{name}[{i}]", o)
    elif isinstance(output, dict):
        for k, o in output.items():
            yield from _tensors(f"{name}.{k}", o)


def _as_array(value: Any) -> np.ndarray:
    """The values as a float32 (half inputs) or float64/float32 array, without touching autograd."""
    if isinstance(value, Tensor):
        a = value.detach().numpy()
    else:
        a = np.asarray(value)
    if a.dtype in _dt.HALF:
        return a.astype(np.float32)
    if a.dtype.kind not in "f":
        return a.astype(np.float64)
    return a


def _g(x: float) -> str:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.4g}"
