"""``GradScaler``: dynamic loss scaling, with ``torch.amp.GradScaler``'s semantics.

float16 gradients smaller than 2**-24 round to zero. Multiplying the loss by a large factor S
before ``backward`` lifts them into range; the gradients are divided by S again before the
optimizer uses them. S is adjusted on the fly:

* a step whose (unscaled) gradients hold an inf or NaN is **skipped** (the parameters and the
  optimizer state are untouched) and S is multiplied by ``backoff_factor`` (halved);
* after ``growth_interval`` consecutive clean steps S is multiplied by ``growth_factor`` (doubled).

The scale is kept as a float32 value, as torch keeps it, so the trajectories agree exactly.

>>> import suanli
>>> from suanli import optim
>>> w = suanli.tensor([1.0], requires_grad=True)
>>> opt = optim.SGD([w], lr=0.5)
>>> scaler = GradScaler(init_scale=1024.0, growth_interval=1)
>>> loss = (w * 3.0).sum()
>>> scaler.scale(loss).item()
3072.0
>>> scaler.scale(loss).backward()
>>> scaler.step(opt)                  # unscales (grad 3.0), finds it finite, steps
>>> scaler.update()                   # one clean step == growth_interval: the scale doubles
>>> w.item(), scaler.get_scale()
(-0.5, 2048.0)
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import dtypes as _dt
from ..errors import op_error
from ..tensor import Tensor

READY, UNSCALED, STEPPED = "ready", "unscaled", "stepped"   # per-optimizer stage within one iteration


def _f32(x: float) -> float:
    """Round to float32, the precision torch keeps the scale in (inf past float32's range)."""
    with np.errstate(over="ignore"):
        return float(np.float32(x))


class _OptimizerState:
    __slots__ = ("stage", "found_inf")

    def __init__(self) -> None:
        self.stage = READY
        self.found_inf: bool | None = None      # None: no gradient was checked


class GradScaler:
    """Scale the loss, unscale and check the gradients, skip bad steps, adapt the scale.

    ``GradScaler(init_scale=2.**16, growth_factor=2.0, backoff_factor=0.5, growth_interval=2000,
    enabled=True)``; torch's ``GradScaler("cpu", ...)``-style device argument is accepted as the
    ``device`` keyword (or as a lone positional ``"cpu"``). The optimizer is anything with torch's
    ``param_groups`` (a list of dicts with ``'params'``) and ``step()``.

    The loop, as in torch::

        with suanli.autocast(dtype=suanli.float16):
            loss = loss_fn(model(x), y)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)              # optional: only to clip or inspect the true gradients
        clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(opt)                  # skipped if a gradient is inf/NaN
        scaler.update()                   # halve on inf/NaN, double after growth_interval clean steps
        opt.zero_grad()

    >>> GradScaler().get_scale(), GradScaler(enabled=False).get_scale()
    (65536.0, 1.0)
    """

    def __init__(self, init_scale: float | str = 2.0 ** 16, growth_factor: float = 2.0,
                 backoff_factor: float = 0.5, growth_interval: int = 2000, enabled: bool = True, *,
                 device: str = "cpu") -> None:
        if isinstance(init_scale, str):          # GradScaler("cpu"): torch's first argument is the device
            device, init_scale = init_scale, 2.0 ** 16
        if device != "cpu":
            raise op_error("GradScaler", f"device {device!r} is not supported", expect="device='cpu'",
                           hint="suanli runs on the CPU", cls=ValueError)  # type: ignore[arg-type]
        _check_positive_finite("init_scale", init_scale)
        if not growth_factor > 1.0:
            raise op_error("GradScaler", "The growth factor must be > 1.0.", actual=f"growth_factor={growth_factor}",
                           cls=ValueError)  # type: ignore[arg-type]
        if not 0.0 < backoff_factor < 1.0:
            raise op_error("GradScaler", "The backoff factor must be < 1.0 (and > 0).",
                           actual=f"backoff_factor={backoff_factor}", cls=ValueError)  # type: ignore[arg-type]
        if not isinstance(growth_interval, (int, np.integer)) or isinstance(growth_interval, bool) \
                or growth_interval < 1:
            raise op_error("GradScaler", "growth_interval must be a positive integer",
                           actual=f"growth_interval={growth_interval!r}", cls=ValueError)  # type: ignore[arg-type]
        self._enabled = bool(enabled)
        self._scale = _f32(init_scale)
        self._growth_factor = float(growth_factor)
        self._backoff_factor = float(backoff_factor)
        self._growth_interval = int(growth_interval)
        self._growth_tracker = 0
        self._per_optimizer: dict[int, _OptimizerState] = {}

    # ------------------------------------------------------------------ the four calls of a step
    def scale(self, outputs: Any) -> Any:
        """``outputs * scale`` (a tensor, or a list/tuple of them); unchanged when disabled.

        The factor is a 0-d float32 tensor, as torch's: a 0-d float16 loss becomes float32.
        """
        if not self._enabled:
            return outputs
        from ..creation import tensor
        factor = tensor(self._scale, dtype=_dt.float32)

        def apply(value: Any) -> Any:
            if isinstance(value, Tensor):
                return value * factor
            if isinstance(value, (list, tuple)):
                return type(value)(apply(v) for v in value)
            raise op_error("GradScaler.scale", "outputs must be a Tensor or an iterable of Tensors",
                           actual=f"{type(value).__name__}", cls=ValueError)  # type: ignore[arg-type]
        return apply(outputs)

    def unscale_(self, optimizer: Any) -> None:
        """Divide the optimizer's gradients by the scale, in place, and note any inf/NaN.

        Call it at most once per optimizer between ``update()`` calls, before ``step()``: typically
        to clip gradients. ``step()`` calls it if you did not.
        """
        if not self._enabled:
            return
        st = self._state(optimizer)
        if st.stage == UNSCALED:
            raise op_error("GradScaler.unscale_",
                           "unscale_() has already been called on this optimizer since the last update().",
                           hint="call unscale_ once per iteration, before clipping; step() does not unscale again",
                           cls=RuntimeError)  # type: ignore[arg-type]
        if st.stage == STEPPED:
            raise op_error("GradScaler.unscale_", "unscale_() is being called after step().",
                           hint="unscale_ before step(), then call update()", cls=RuntimeError)  # type: ignore[arg-type]
        inv_scale = _f32(1.0 / self._scale)
        st.found_inf = self._unscale_grads(optimizer, inv_scale)
        st.stage = UNSCALED

    def step(self, optimizer: Any, *args: Any, **kwargs: Any) -> Any:
        """``optimizer.step()`` unless a gradient is inf/NaN (then the step is skipped, returns None)."""
        if not self._enabled:
            return optimizer.step(*args, **kwargs)
        if "closure" in kwargs:
            raise op_error("GradScaler.step", "Closure use is not currently supported if GradScaler is enabled.",
                           cls=RuntimeError)  # type: ignore[arg-type]
        st = self._state(optimizer)
        if st.stage == STEPPED:
            raise op_error("GradScaler.step", "step() has already been called since the last update().",
                           hint="call scaler.update() once per iteration, after step()", cls=RuntimeError)  # type: ignore[arg-type]
        if st.stage == READY:
            self.unscale_(optimizer)
        if st.found_inf is None:
            raise op_error("GradScaler.step", "No inf checks were recorded for this optimizer.",
                           hint="no parameter of this optimizer has a gradient: did backward run, and "
                                "does the loss depend on these parameters?", cls=RuntimeError)  # type: ignore[arg-type]
        result = None if st.found_inf else optimizer.step(*args, **kwargs)
        st.stage = STEPPED
        return result

    def update(self, new_scale: float | Tensor | None = None) -> None:
        """Adapt the scale after this iteration's steps (or set it to ``new_scale``).

        Any inf/NaN seen by any optimizer since the last update: ``scale *= backoff_factor`` and the
        clean-step count restarts. Otherwise the count grows, and at ``growth_interval`` the scale is
        multiplied by ``growth_factor`` (if the result is finite) and the count restarts.
        """
        if not self._enabled:
            return
        if new_scale is not None:
            if isinstance(new_scale, Tensor):
                if new_scale.numel() != 1 or new_scale.requires_grad:
                    raise op_error("GradScaler.update", "new_scale should be a float or a 1-element tensor "
                                   "with requires_grad=False.", actual=f"shape {new_scale.shape}", cls=ValueError)  # type: ignore[arg-type]
                new_scale = float(new_scale.item())
            _check_positive_finite("new_scale", new_scale)
            self._scale = _f32(new_scale)
        else:
            found = [st.found_inf for st in self._per_optimizer.values() if st.found_inf is not None]
            if not found:
                raise op_error("GradScaler.update", "No inf checks were recorded prior to update.",
                               hint="call scaler.step(optimizer) (or unscale_) before update()",
                               cls=RuntimeError)  # type: ignore[arg-type]
            if any(found):
                self._scale = _f32(self._scale * self._backoff_factor)
                self._growth_tracker = 0
            else:
                successful = self._growth_tracker + 1
                if successful == self._growth_interval:
                    grown = _f32(self._scale * self._growth_factor)
                    if math.isfinite(grown):
                        self._scale = grown
                    self._growth_tracker = 0
                else:
                    self._growth_tracker = successful
        self._per_optimizer = {}

    # ------------------------------------------------------------------ inspection and checkpoints
    def get_scale(self) -> float:
        """The current scale (1.0 when disabled)."""
        return self._scale if self._enabled else 1.0

    def is_enabled(self) -> bool:
        return self._enabled

    def get_growth_factor(self) -> float:
        return self._growth_factor

    def set_growth_factor(self, new_factor: float) -> None:
        self._growth_factor = float(new_factor)

    def get_backoff_factor(self) -> float:
        return self._backoff_factor

    def set_backoff_factor(self, new_factor: float) -> None:
        self._backoff_factor = float(new_factor)

    def get_growth_interval(self) -> int:
        return self._growth_interval

    def set_growth_interval(self, new_interval: int) -> None:
        self._growth_interval = int(new_interval)

    def state_dict(self) -> dict[str, Any]:
        """A plain, JSON-able dict with torch's keys (empty when disabled).

        >>> GradScaler(init_scale=8.0).state_dict()
        {'scale': 8.0, 'growth_factor': 2.0, 'backoff_factor': 0.5, 'growth_interval': 2000, '_growth_tracker': 0}
        """
        if not self._enabled:
            return {}
        return {"scale": self.get_scale(), "growth_factor": self._growth_factor,
                "backoff_factor": self._backoff_factor, "growth_interval": self._growth_interval,
                "_growth_tracker": self._growth_tracker}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` (also a torch GradScaler's, with its tensors as numbers)."""
        if not self._enabled:
            return
        if len(state_dict) == 0:
            raise op_error("GradScaler.load_state_dict", "The source state dict is empty, possibly because it "
                           "was saved from a disabled instance of GradScaler.", cls=RuntimeError)  # type: ignore[arg-type]
        missing = [k for k in ("scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker")
                   if k not in state_dict]
        if missing:
            raise op_error("GradScaler.load_state_dict", f"missing keys {missing}",
                           actual=f"keys {sorted(state_dict)}", cls=KeyError)  # type: ignore[arg-type]
        self._scale = _f32(_number(state_dict["scale"]))
        self._growth_factor = float(_number(state_dict["growth_factor"]))
        self._backoff_factor = float(_number(state_dict["backoff_factor"]))
        self._growth_interval = int(_number(state_dict["growth_interval"]))
        self._growth_tracker = int(_number(state_dict["_growth_tracker"]))

    def __repr__(self) -> str:
        return (f"GradScaler(scale={self.get_scale()}, growth_factor={self._growth_factor}, "
                f"backoff_factor={self._backoff_factor}, growth_interval={self._growth_interval}, "
                f"enabled={self._enabled})")

    # ------------------------------------------------------------------ internals
    def _state(self, optimizer: Any) -> _OptimizerState:
        st = self._per_optimizer.get(id(optimizer))
        if st is None:
            st = self._per_optimizer[id(optimizer)] = _OptimizerState()
        return st

    @staticmethod
    def _unscale_grads(optimizer: Any, inv_scale: float) -> bool | None:
        """Multiply every gradient by ``inv_scale`` in place; True if any was inf/NaN before
        (None if there was no gradient at all)."""
        from ..autograd import no_grad
        from ..ops.elementwise import isfinite
        found: bool | None = None
        with no_grad():
            for group in _param_groups(optimizer):
                for p in group["params"]:
                    g = p.grad
                    if g is None:
                        continue
                    if g.dtype == _dt.float16:
                        raise op_error("GradScaler.unscale_", "Attempting to unscale FP16 gradients.",
                                       actual=f"a parameter of shape {tuple(p.shape)} is float16",
                                       hint="keep the parameters (master weights) in float32 and run the "
                                            "forward under suanli.autocast: their gradients come back float32",
                                       cls=ValueError)  # type: ignore[arg-type]
                    bad = not bool(isfinite(g).all())
                    found = bad or bool(found)
                    if inv_scale != 1.0:
                        g.mul_(inv_scale)
        return found


def _param_groups(optimizer: Any) -> list[dict]:
    groups = getattr(optimizer, "param_groups", None)
    if groups is None:
        raise op_error("GradScaler", f"expected an optimizer with param_groups, got {type(optimizer).__name__}",
                       hint="pass the optimizer (e.g. suanli.optim.SGD), not the model or its parameters",
                       cls=TypeError)  # type: ignore[arg-type]
    return groups


def _number(value: Any) -> float:
    return float(value.item()) if hasattr(value, "item") else float(value)


def _check_positive_finite(name: str, value: Any) -> None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if not (math.isfinite(v) and v > 0):
        raise op_error("GradScaler", f"{name} must be a positive, finite number", actual=f"{name}={value!r}",
                       cls=ValueError)  # type: ignore[arg-type]
