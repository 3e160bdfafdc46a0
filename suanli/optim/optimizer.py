"""The optimizer base class: parameter groups, per-parameter state, ``zero_grad``, ``state_dict``.

An optimizer *class* owns the state and checks the hyper-parameters; the update maths of each
algorithm is a pure function on NumPy arrays next to its class (``sgd_update``, ``adam_update``...),
working in place like torch's functional ``adamw()``. The class hands it arrays:

* the parameter's own storage (``p._data``), updated in place, after which the parameter's version
  counter is bumped as an in-place op would;
* for float16/bfloat16 parameters a float32 copy of the parameter and gradient instead: the state
  (moments, momentum buffers) is kept in float32 and the result is rounded back into the parameter,
  so small terms such as Adam's ``eps = 1e-8`` do not vanish in half precision.

``state_dict()`` has torch's layout -- ``{'state': {index: {name: Tensor | number}}, 'param_groups':
[{..., 'params': [index, ...]}]}`` -- built only of Tensors, numbers, bools, None, strings, lists and
dicts, so a checkpoint can hold it without pickle. A torch optimizer's state dict (tensors converted)
loads too.

>>> import suanli
>>> from suanli.optim import SGD
>>> w = suanli.tensor([1.0, -2.0], requires_grad=True)
>>> opt = SGD([w], lr=0.1, momentum=0.9)
>>> (w ** 2).sum().backward()
>>> opt.step()
>>> w
tensor([ 0.8, -1.6], requires_grad=True)
>>> sd = opt.state_dict()
>>> sd["param_groups"][0]["params"], list(sd["state"][0])
([0], ['momentum_buffer'])
"""
from __future__ import annotations

import functools
import numbers
from collections import defaultdict
from typing import Any, Callable, Iterable, Union

import numpy as np

from .. import dtypes as _dt
from ..autograd import enable_grad
from ..errors import op_error
from ..tensor import Tensor, _wrap

__all__ = ["Optimizer", "ParamsT", "required"]

ParamsT = Union[Iterable[Tensor], Iterable[dict[str, Any]], Iterable[tuple[str, Tensor]]]


class _RequiredParameter:
    """Marks a hyper-parameter without a default (a group must then give it)."""

    def __repr__(self) -> str:
        return "<required parameter>"


required = _RequiredParameter()


class _Handle:
    """Returned by the ``register_*_hook`` methods; ``remove()`` unregisters the hook."""

    _next_id = 0

    def __init__(self, hooks: dict[int, Callable[..., Any]]) -> None:
        self._hooks, self.id = hooks, _Handle._next_id
        _Handle._next_id += 1

    def remove(self) -> None:
        self._hooks.pop(self.id, None)


def _with_hooks(step: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a subclass's ``step``: run the step pre/post hooks and note that a step happened (the
    lr schedulers read that to warn about calling ``scheduler.step()`` before ``optimizer.step()``)."""

    @functools.wraps(step)
    def wrapper(self: Optimizer, *args: Any, **kwargs: Any) -> Any:
        if self._in_step:                       # a subclass's step calling super().step()
            return step(self, *args, **kwargs)
        for hook in tuple(self._step_pre_hooks.values()):
            result = hook(self, args, kwargs)
            if result is not None:
                args, kwargs = result
        self._in_step = True
        try:
            out = step(self, *args, **kwargs)
        finally:
            self._in_step = False
        self._opt_called = True
        for hook in tuple(self._step_post_hooks.values()):
            hook(self, args, kwargs)
        return out

    wrapper._suanli_hooked = True   # type: ignore[attr-defined]
    return wrapper


def _bad_value(opt: str, name: str, rule: str, value: Any) -> ValueError:
    err = ValueError(f"{opt}: {name} must be {rule}, got {value!r}")
    err.suanli_clear = True    # type: ignore[attr-defined]
    return err


def check_number(opt: str, name: str, value: Any, *, low: float | None = 0.0, high: float | None = None,
                 high_open: bool = True) -> None:
    """Raise ``ValueError("<opt>: <name> must be >= low, got value")`` unless ``value`` is a number in range.

    >>> check_number("Adam", "lr", -1)
    Traceback (most recent call last):
    ...
    ValueError: Adam: lr must be >= 0, got -1
    """
    if isinstance(value, Tensor):
        raise _bad_value(opt, name, "a Python number (tensor hyper-parameters are not supported; pass "
                                    "float(t))", value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _bad_value(opt, name, "a number", value)
    lo = "" if low is None else f"{low:g}"
    if high is None:
        rule = f">= {lo}"
    else:
        rule = f"in [{lo}, {high:g}{')' if high_open else ']'}"
    if (low is not None and not value >= low) or \
            (high is not None and not (value < high if high_open else value <= high)):
        raise _bad_value(opt, name, rule, value)


class Optimizer:
    """Base class of the optimizers (torch's ``torch.optim.Optimizer`` API).

    ``params`` is an iterable of tensors, of ``(name, tensor)`` pairs (``model.named_parameters()``),
    or of dicts (parameter groups) each with a ``'params'`` entry and any hyper-parameters that
    override ``defaults``. Subclasses implement :meth:`step` and may override :meth:`_check_group`
    (validate one group's hyper-parameters) and :meth:`_init_state` (the fresh state of one parameter).

    Attributes: ``param_groups`` (list of dicts, keys as torch), ``state`` (dict keyed by parameter
    tensor), ``defaults``.

    >>> import suanli
    >>> from suanli.optim import Adam
    >>> a, b = suanli.zeros(3, requires_grad=True), suanli.zeros(2, requires_grad=True)
    >>> opt = Adam([{"params": [a]}, {"params": [b], "lr": 0.1}], lr=0.01)
    >>> [g["lr"] for g in opt.param_groups]
    [0.01, 0.1]
    """

    _in_step = False
    _opt_called = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        step = cls.__dict__.get("step")
        if step is not None and not getattr(step, "_suanli_hooked", False):
            cls.step = _with_hooks(step)    # type: ignore[method-assign]

    def __init__(self, params: ParamsT, defaults: dict[str, Any]) -> None:
        self.defaults = dict(defaults)
        self._check_group(self.defaults)
        self.state: defaultdict[Tensor, dict[str, Any]] = defaultdict(dict)
        self.param_groups: list[dict[str, Any]] = []
        self._step_pre_hooks: dict[int, Callable[..., Any]] = {}
        self._step_post_hooks: dict[int, Callable[..., Any]] = {}
        self._work: dict[np.dtype, np.ndarray] = {}     # scratch memory for the update functions

        if isinstance(params, Tensor):
            raise TypeError(f"{self._name}: params should be an iterable of Tensors or dicts, but got a "
                            f"Tensor of shape {tuple(params.shape)}; pass [tensor] or model.parameters()")
        if isinstance(params, (set, frozenset)):
            raise TypeError(f"{self._name}: params must be an ordered collection (a set's order changes "
                            f"between runs); use a list")
        groups = list(params)
        if len(groups) == 0:
            raise ValueError(f"{self._name}: got an empty parameter list\n  help: pass model.parameters() "
                             f"(a generator can only be consumed once) or a non-empty list of tensors")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    @property
    def _name(self) -> str:
        return type(self).__name__

    # ------------------------------------------------------------------ groups
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters (with its own hyper-parameters) to optimize, e.g. layers unfrozen
        during fine-tuning. Missing hyper-parameters are taken from ``defaults``."""
        if not isinstance(param_group, dict):
            raise TypeError(f"{self._name}: a parameter group must be a dict, got {type(param_group).__name__}")
        group = dict(param_group)
        params = group.get("params")
        if params is None:
            raise ValueError(f"{self._name}: a parameter group needs a 'params' entry")
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            raise TypeError(f"{self._name}: parameters must be an ordered collection (a set's order changes "
                            f"between runs); use a list")
        params = list(params)
        if params and all(isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) for p in params):
            group["param_names"] = [name for name, _ in params]
            params = [p for _, p in params]
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"{self._name}: can only optimize Tensors, but parameter {i} of the group is a "
                                f"{type(p).__name__}")
            if not p.is_leaf:
                raise ValueError(f"{self._name}: can't optimize a non-leaf Tensor (parameter {i} of the group, "
                                 f"shape {tuple(p.shape)}, is the result of an operation)\n  help: optimize the "
                                 f"leaf it came from, or use x.detach().requires_grad_()")
            if p.dtype not in _dt.FLOATING:
                raise TypeError(f"{self._name}: can only optimize floating-point tensors, parameter {i} of the "
                                f"group has dtype {p.dtype}")
        if len({id(p) for p in params}) != len(params):
            raise ValueError(f"{self._name}: a parameter group contains the same parameter twice (it would be "
                             f"updated twice per step); remove the duplicates")
        group["params"] = params
        for name, default in self.defaults.items():
            if default is required and name not in group:
                raise ValueError(f"{self._name}: parameter group didn't specify a value of required "
                                 f"optimization parameter {name}")
            group.setdefault(name, default)
        self._check_group(group)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in params):
            raise ValueError(f"{self._name}: some parameters appear in more than one parameter group")
        self.param_groups.append(group)

    def _check_group(self, group: dict[str, Any]) -> None:
        """Validate one group's hyper-parameters (subclasses); raise a ValueError naming the culprit."""
        for flag in ("capturable", "differentiable"):
            if group.get(flag):
                raise ValueError(f"{self._name}: {flag}=True is not supported: suanli updates parameters "
                                 f"outside autograd, on the CPU (foreach/fused are accepted and ignored)")

    # ------------------------------------------------------------------ stepping helpers
    def _state_dtype(self, p: Tensor) -> np.dtype:
        """Optimizer state (moments, buffers) is float32 for half-precision parameters."""
        return np.dtype(np.float32) if p.dtype in _dt.HALF else p.dtype

    def _init_state(self, p: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        """The fresh state of ``p`` (subclasses). Called on the first step that sees a gradient."""
        return {}

    def _zeros_state(self, p: Tensor, fill: float = 0.0) -> Tensor:
        return _wrap(np.full(p.shape, fill, dtype=self._state_dtype(p)))

    def _arrays(self, p: Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(parameter, gradient) arrays for the update maths: the parameter's storage itself, or float32
        copies when it is float16/bfloat16 (written back by :meth:`_commit`)."""
        data, grad = p._data, p.grad._data  # type: ignore[union-attr]
        if grad.shape != data.shape:
            raise op_error(f"{self._name}.step", "a gradient does not have its parameter's shape",
                           expect=f"grad shape {data.shape}", actual=f"grad shape {grad.shape}",
                           hint="something assigned a wrong .grad to this parameter")
        if data.dtype in _dt.HALF:
            return data.astype(np.float32), grad.astype(np.float32)
        if grad.dtype != data.dtype:
            grad = grad.astype(data.dtype)
        return data, grad

    @staticmethod
    def _commit(p: Tensor, param: np.ndarray) -> None:
        """Finish an in-place update of ``p`` (round a float32 working copy back) and bump its version."""
        if param is not p._data:
            np.copyto(p._data, param, casting="unsafe")
        p._vc[0] += 1

    def _workspace(self, like: np.ndarray) -> np.ndarray:
        """Scratch memory shaped like ``like``, reused across parameters and steps (no per-step allocation)."""
        buf = self._work.get(like.dtype)
        if buf is None or buf.size < like.size:
            buf = self._work[like.dtype] = np.empty(max(like.size, 1), dtype=like.dtype)
        return buf[:like.size].reshape(like.shape)

    def _closure_loss(self, closure: Callable[[], Any] | None) -> Any:
        if closure is None:
            return None
        with enable_grad():
            return closure()

    # ------------------------------------------------------------------ public API
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient; ``closure`` (re-evaluating the loss, run with grad
        enabled) is called first and its result returned."""
        raise NotImplementedError

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients: drop them (``set_to_none=True``, the default -- cheaper, and a parameter
        without gradient is skipped by ``step``) or fill them with zeros."""
        for group in self.param_groups:
            for p in group["params"]:
                g = p.grad
                if g is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    g.detach_()
                    g._data.fill(0)
                    g._vc[0] += 1

    def register_step_pre_hook(self, hook: Callable[..., Any]) -> _Handle:
        """``hook(optimizer, args, kwargs)`` runs before each ``step``; it may return new ``(args, kwargs)``."""
        handle = _Handle(self._step_pre_hooks)
        self._step_pre_hooks[handle.id] = hook
        return handle

    def register_step_post_hook(self, hook: Callable[..., Any]) -> _Handle:
        """``hook(optimizer, args, kwargs)`` runs after each ``step``."""
        handle = _Handle(self._step_post_hooks)
        self._step_post_hooks[handle.id] = hook
        return handle

    def state_dict(self) -> dict[str, Any]:
        """``{'state': {index: {name: Tensor | number}}, 'param_groups': [{..., 'params': [index]}]}``.

        Parameters are numbered in group order, as torch does. The tensors are the live state (no copy);
        tuples (``betas``) are written as lists so the rest is plain JSON.
        """
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {k: _plain(v) for k, v in group.items() if k != "params"}
            packed["params"] = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append(packed)
        state = {index[id(p)]: {k: _plain(v) for k, v in s.items()}
                 for p, s in self.state.items() if id(p) in index}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (or a torch optimizer's, with its tensors converted).

        The groups must match this optimizer's in number and size (parameters are matched by
        position); state tensors must have their parameter's shape and are copied, in the state dtype.
        """
        where = f"{self._name}.load_state_dict"
        if not isinstance(state_dict, dict) or not {"state", "param_groups"} <= set(state_dict):
            keys = sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict).__name__
            raise ValueError(f"{where}: expected a dict with keys 'state' and 'param_groups', got {keys}")
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"{where}: the state dict has {len(saved_groups)} parameter group(s), this optimizer "
                             f"has {len(self.param_groups)}\n  help: build the optimizer with the same parameter "
                             f"groups, in the same order, as the one that was saved")
        by_index: dict[int, Tensor] = {}
        for i, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"{where}: parameter group {i} has {len(saved['params'])} parameter(s) in the "
                                 f"state dict, {len(group['params'])} in this optimizer\n  help: build the "
                                 f"optimizer over the same model and the same parameter groups")
            by_index.update(zip((int(k) for k in saved["params"]), group["params"]))

        new_state: defaultdict[Tensor, dict[str, Any]] = defaultdict(dict)
        for key, values in state_dict["state"].items():
            k = int(key)
            if k not in by_index:
                raise ValueError(f"{where}: the state refers to parameter index {k}, which no parameter group "
                                 f"lists (indices {sorted(by_index)})")
            p = by_index[k]
            new_state[p] = {name: self._load_value(p, k, name, v) for name, v in values.items()}

        new_groups = []
        for group, saved in zip(self.param_groups, saved_groups):
            new = {k: v for k, v in group.items() if k != "params"}
            for k, v in saved.items():
                if k == "params":
                    continue
                new[k] = tuple(v) if isinstance(group.get(k), tuple) and isinstance(v, list) else v
            self._fix_loaded_group(new)
            self._check_group(new)
            new["params"] = group["params"]
            new_groups.append(new)
        self.state, self.param_groups = new_state, new_groups

    def _fix_loaded_group(self, group: dict[str, Any]) -> None:
        """Adjust a group read from a state dict (subclasses: torch's ``__setstate__`` defaults)."""

    def _load_value(self, p: Tensor, index: int, name: str, value: Any) -> Any:
        if isinstance(value, Tensor):
            value = value._data
        if not isinstance(value, np.ndarray):
            return value
        if name == "step":                      # torch keeps the step count in a 0-d float tensor
            step = float(value.reshape(()))
            return int(step) if step.is_integer() else step
        if value.shape != p.shape and value.ndim != 0:
            raise ValueError(f"{self._name}.load_state_dict: state {name!r} of parameter {index} has shape "
                             f"{tuple(value.shape)}, but the parameter has shape {tuple(p.shape)}\n  help: the "
                             f"state dict comes from a different model (or parameter order)")
        dtype = self._state_dtype(p) if value.dtype.kind == "f" or value.dtype in _dt.HALF else value.dtype
        return _wrap(np.array(value, dtype=dtype, copy=True, order="C"))

    def __repr__(self) -> str:
        lines = [f"{self._name} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {group[k]}" for k in sorted(group) if k != "params"]
        return "\n".join(lines) + "\n)"


def _plain(value: Any) -> Any:
    """Tuples -> lists (recursively), everything else as is (tensors stay tensors)."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
