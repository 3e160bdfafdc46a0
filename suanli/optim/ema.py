"""Exponential moving average of weights (the "EMA model" used for evaluation and sampling).

Follows torch's ``AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)``:
the first :meth:`EMA.update` copies the current weights, each later one does
``shadow = decay * shadow + (1 - decay) * weight`` (as torch's ``lerp``). Floating-point buffers
(BatchNorm running statistics) are averaged too; integer buffers (``num_batches_tracked``) are copied.
Averages of float16/bfloat16 tensors are kept in float32.

>>> import suanli
>>> w = suanli.tensor([0.0], requires_grad=True)
>>> ema = EMA([w], decay=0.5)
>>> for value in [1.0, 2.0, 3.0]:
...     with suanli.no_grad():
...         _ = w.fill_(value)
...     ema.update()
>>> ema.shadow[0]              # 1 (copied), then 0.5*1 + 0.5*2, then 0.5*1.5 + 0.5*3
tensor([2.25])
>>> with ema.average_parameters():      # evaluate with the averaged weights...
...     print(w)
tensor([2.25], requires_grad=True)
>>> w                                     # ...and get the trained ones back
tensor([3.], requires_grad=True)
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterable, Iterator

import numpy as np

from .. import dtypes as _dt
from ..tensor import Tensor, _wrap

__all__ = ["EMA"]


class EMA:
    """Exponential moving average of a model's parameters (and floating buffers).

    ``model_or_params`` is an object with ``.parameters()`` (a Module: its ``named_parameters()`` and,
    when ``use_buffers``, ``named_buffers()`` are tracked) or an iterable of tensors. The shadow copy
    starts as a copy of the current values.

    Methods: :meth:`update` (after each optimizer step), :meth:`copy_to` (write the averages into
    tensors), :meth:`average_parameters` (a context manager: averages in, originals back after),
    :meth:`state_dict` / :meth:`load_state_dict`.
    """

    def __init__(self, model_or_params: Any, decay: float = 0.999, use_buffers: bool = True) -> None:
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA: decay must be in [0, 1], got {decay!r}")
        self.decay = float(decay)
        names, tensors = _collect(model_or_params, use_buffers)
        self.names: list[str] | None = names
        self.tensors: list[Tensor] = tensors
        self._use_buffers = use_buffers
        self.shadow: list[Tensor] = [_wrap(np.array(t._data, dtype=_average_dtype(t), copy=True, order="C"))
                                     for t in tensors]
        self.num_updates = 0

    def update(self) -> None:
        """Fold the current values into the averages (the first call copies them, as torch's AveragedModel)."""
        weight = 1.0 - self.decay
        for avg, t in zip(self.shadow, self.tensors):
            a, x = avg._data, t._data
            if self.num_updates == 0 or a.dtype not in _dt.FLOATING:
                np.copyto(a, x, casting="unsafe")
            elif weight < 0.5:                    # torch's lerp: a + w * (x - a)
                a += weight * (x - a)
            else:
                np.subtract(x, (x - a) * (1.0 - weight), out=a, casting="unsafe")
            avg._vc[0] += 1
        self.num_updates += 1

    def copy_to(self, params: Iterable[Tensor] | Any = None) -> None:
        """Write the averages into ``params`` (default: the tracked tensors), in place, in the same order.
        ``params`` may also be a Module (its parameters and buffers, as tracked)."""
        if params is None:
            targets = self.tensors
        elif hasattr(params, "parameters"):
            targets = _collect(params, self._use_buffers)[1]
        else:
            targets = list(params)
        if len(targets) != len(self.shadow):
            raise ValueError(f"EMA.copy_to: got {len(targets)} tensors for {len(self.shadow)} averages")
        for t, avg in zip(targets, self.shadow):
            if t.shape != avg.shape:
                raise ValueError(f"EMA.copy_to: a tensor of shape {tuple(t.shape)} for an average of shape "
                                 f"{tuple(avg.shape)}")
            np.copyto(t._data, avg._data, casting="unsafe")
            t._vc[0] += 1

    @contextlib.contextmanager
    def average_parameters(self) -> Iterator[None]:
        """Inside the ``with`` block the tracked tensors hold the averages; the originals come back after."""
        saved = [np.array(t._data, copy=True) for t in self.tensors]
        self.copy_to()
        try:
            yield
        finally:
            for t, s in zip(self.tensors, saved):
                np.copyto(t._data, s)
                t._vc[0] += 1

    def state_dict(self) -> dict[str, Any]:
        """``{'decay', 'num_updates', 'names', 'shadow': [Tensor, ...]}`` (JSON-able around the tensors)."""
        return {"decay": self.decay, "num_updates": self.num_updates,
                "names": None if self.names is None else list(self.names), "shadow": list(self.shadow)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output; the averages must match the tracked tensors in number and shape."""
        shadow = state_dict["shadow"]
        if len(shadow) != len(self.shadow):
            raise ValueError(f"EMA.load_state_dict: the state has {len(shadow)} averages, this EMA tracks "
                             f"{len(self.shadow)} tensors")
        names = state_dict.get("names")
        if names is not None and self.names is not None and list(names) != self.names:
            diff = [(a, b) for a, b in zip(names, self.names) if a != b][:3]
            raise ValueError(f"EMA.load_state_dict: the saved tensor names differ from this model's, e.g. {diff}")
        new = []
        for i, (saved, mine) in enumerate(zip(shadow, self.shadow)):
            arr = saved._data if isinstance(saved, Tensor) else np.asarray(saved)
            if arr.shape != mine.shape:
                label = self.names[i] if self.names else f"#{i}"
                raise ValueError(f"EMA.load_state_dict: average {label} has shape {tuple(arr.shape)}, the tracked "
                                 f"tensor has shape {tuple(mine.shape)}")
            new.append(_wrap(np.array(arr, dtype=mine.dtype, copy=True, order="C")))
        self.shadow = new
        self.decay = float(state_dict.get("decay", self.decay))
        self.num_updates = int(state_dict.get("num_updates", self.num_updates))

    def __repr__(self) -> str:
        return f"EMA(decay={self.decay}, tensors={len(self.tensors)}, num_updates={self.num_updates})"


def _average_dtype(t: Tensor) -> np.dtype:
    """Averages of float16/bfloat16 tensors are kept in float32 (a 1e-3 step would round away)."""
    return np.dtype(np.float32) if t.dtype in _dt.HALF else t.dtype


def _collect(source: Any, use_buffers: bool) -> tuple[list[str] | None, list[Tensor]]:
    """(names or None, tensors) of a Module-like object or an iterable of tensors."""
    if isinstance(source, Tensor):
        raise TypeError("EMA: expected a model or an iterable of tensors, got a single Tensor; pass [tensor]")
    if hasattr(source, "parameters"):
        if hasattr(source, "named_parameters"):
            pairs = list(source.named_parameters())
            if use_buffers and hasattr(source, "named_buffers"):
                pairs += list(source.named_buffers())
            names, tensors = [n for n, _ in pairs], [t for _, t in pairs]
        else:
            names, tensors = None, list(source.parameters())
    else:
        names, tensors = None, list(source)
    for i, t in enumerate(tensors):
        if not isinstance(t, Tensor):
            raise TypeError(f"EMA: can only average Tensors, item {i} is a {type(t).__name__}")
    if not tensors:
        raise ValueError("EMA: nothing to average (no parameters given)")
    return names, tensors
