"""Adagrad and ``adagrad_update``.

>>> import suanli
>>> w = suanli.tensor([1.0], requires_grad=True)
>>> opt = suanli.optim.Adagrad([w], lr=0.1)
>>> w.grad = suanli.tensor([2.0])
>>> opt.step()            # sum = 4; w -= lr * g / sqrt(sum)
>>> w
tensor([0.9], requires_grad=True)
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .adam import effective_grad
from .optimizer import Optimizer, ParamsT, check_number

__all__ = ["Adagrad", "adagrad_update"]


def adagrad_update(param: np.ndarray, grad: np.ndarray, state_sum: np.ndarray, step: int, *, lr: float,
                   lr_decay: float = 0.0, weight_decay: float = 0.0, eps: float = 1e-10, maximize: bool = False,
                   work: np.ndarray | None = None) -> None:
    """One Adagrad step on arrays, in place on ``param`` and ``state_sum``; ``step`` counts this step.

    ::

        g = (-grad if maximize else grad) + weight_decay * param
        clr = lr / (1 + (step - 1) * lr_decay)
        state_sum += g * g;  param -= clr * g / (sqrt(state_sum) + eps)

    >>> import numpy as np
    >>> p, s = np.array([1.0]), np.zeros(1)
    >>> adagrad_update(p, np.array([2.0]), s, 1, lr=0.1, eps=0.0)
    >>> p.round(6), s
    (array([0.9]), array([4.]))
    """
    work = np.empty_like(param) if work is None else work
    g = effective_grad(grad, param, weight_decay, maximize)
    clr = lr / (1 + (step - 1) * lr_decay)
    np.multiply(g, g, out=work)
    state_sum += work
    std = np.sqrt(state_sum, out=work)
    std += eps
    np.divide(g, std, out=work)
    work *= -clr
    param += work


class Adagrad(Optimizer):
    """Adagrad with torch's arguments (``lr_decay``, ``weight_decay``, ``initial_accumulator_value``,
    ``eps``, ``maximize``; ``foreach``/``fused`` accepted and ignored). As in torch, the state (``step``,
    ``sum``) is created when the optimizer is built.

    >>> import suanli
    >>> w = suanli.zeros(2, requires_grad=True)
    >>> opt = suanli.optim.Adagrad([w], initial_accumulator_value=0.5)
    >>> opt.state[w]["sum"]
    tensor([0.5, 0.5])
    """

    def __init__(self, params: ParamsT, lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10, foreach: bool | None = None, *,
                 maximize: bool = False, differentiable: bool = False, fused: bool | None = None) -> None:
        defaults = {"lr": lr, "lr_decay": lr_decay, "eps": eps, "weight_decay": weight_decay,
                    "initial_accumulator_value": initial_accumulator_value, "foreach": foreach,
                    "maximize": maximize, "differentiable": differentiable, "fused": fused}
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p].update(self._init_state(p, group))

    def _check_group(self, group: dict[str, Any]) -> None:
        super()._check_group(group)
        for key in ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps"):
            check_number(self._name, key, group[key])

    def _fix_loaded_group(self, group: dict[str, Any]) -> None:
        for k, v in (("foreach", None), ("maximize", False), ("differentiable", False), ("fused", None)):
            group.setdefault(k, v)

    def _init_state(self, p: Any, group: dict[str, Any]) -> dict[str, Any]:
        return {"step": 0, "sum": self._zeros_state(p, fill=group["initial_accumulator_value"])}

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One Adagrad step for every parameter with a gradient (see :func:`adagrad_update`)."""
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            hyper = {k: group[k] for k in ("lr", "lr_decay", "weight_decay", "eps", "maximize")}
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:                           # a group added after construction
                    state.update(self._init_state(p, group))
                param, grad = self._arrays(p)
                state["step"] += 1
                adagrad_update(param, grad, state["sum"]._data, state["step"], work=self._workspace(param),
                               **hyper)
                self._commit(p, param)
        return loss
