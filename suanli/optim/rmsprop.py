"""RMSprop (optionally centered, with momentum) and ``rmsprop_update``.

>>> import suanli
>>> w = suanli.tensor([1.0], requires_grad=True)
>>> opt = suanli.optim.RMSprop([w], lr=0.01, alpha=0.99)
>>> w.grad = suanli.tensor([2.0])
>>> opt.step()            # square_avg = 0.01 * 4; w -= lr * g / sqrt(square_avg)
>>> w
tensor([0.9], requires_grad=True)
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .adam import effective_grad, lerp_
from .optimizer import Optimizer, ParamsT, check_number

__all__ = ["RMSprop", "rmsprop_update"]


def rmsprop_update(param: np.ndarray, grad: np.ndarray, square_avg: np.ndarray, grad_avg: np.ndarray | None,
                   momentum_buffer: np.ndarray | None, *, lr: float, alpha: float, eps: float,
                   weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False,
                   maximize: bool = False, work: np.ndarray | None = None) -> None:
    """One RMSprop step on arrays, in place on ``param`` and the state arrays (``grad_avg`` is used when
    ``centered``, ``momentum_buffer`` when ``momentum > 0``).

    ::

        g = (-grad if maximize else grad) + weight_decay * param
        square_avg = alpha * square_avg + (1 - alpha) * g * g
        avg = sqrt(square_avg - grad_avg**2) + eps   (centered, grad_avg = lerp(grad_avg, g, 1 - alpha))
        avg = sqrt(square_avg) + eps                 (otherwise)
        buf = momentum * buf + g / avg;  param -= lr * buf     (momentum > 0)
        param -= lr * g / avg                                   (otherwise)

    >>> import numpy as np
    >>> p, sq = np.array([1.0]), np.zeros(1)
    >>> rmsprop_update(p, np.array([2.0]), sq, None, None, lr=0.01, alpha=0.99, eps=0.0)
    >>> p.round(6), sq.round(6)
    (array([0.9]), array([0.04]))
    """
    work = np.empty_like(param) if work is None else work
    g = effective_grad(grad, param, weight_decay, maximize)
    square_avg *= alpha
    np.multiply(g, 1.0 - alpha, out=work)
    work *= g
    square_avg += work
    if centered:
        assert grad_avg is not None, "rmsprop_update: centered needs grad_avg"
        lerp_(grad_avg, g, 1.0 - alpha, work)
        np.multiply(grad_avg, grad_avg, out=work)
        np.subtract(square_avg, work, out=work)
        avg = np.sqrt(work, out=work)
    else:
        avg = np.sqrt(square_avg, out=work)
    avg += eps
    if momentum > 0:
        assert momentum_buffer is not None, "rmsprop_update: momentum > 0 needs momentum_buffer"
        momentum_buffer *= momentum
        np.divide(g, avg, out=work)
        momentum_buffer += work
        np.multiply(momentum_buffer, -lr, out=work)
    else:
        np.divide(g, avg, out=work)
        work *= -lr
    param += work


class RMSprop(Optimizer):
    """RMSprop with torch's arguments (``alpha``: smoothing constant, ``eps``, ``weight_decay``,
    ``momentum``, ``centered``: normalise by the estimated variance, ``maximize``; ``foreach`` accepted
    and ignored). State: ``step``, ``square_avg`` (+ ``momentum_buffer``, ``grad_avg``).

    >>> import suanli
    >>> w = suanli.tensor([1.0, 2.0], requires_grad=True)
    >>> opt = suanli.optim.RMSprop([w], lr=0.01, momentum=0.9, centered=True)
    >>> sorted(opt.defaults)[:4]
    ['alpha', 'capturable', 'centered', 'differentiable']
    """

    def __init__(self, params: ParamsT, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False,
                 capturable: bool = False, foreach: bool | None = None, maximize: bool = False,
                 differentiable: bool = False) -> None:
        defaults = {"lr": lr, "momentum": momentum, "alpha": alpha, "eps": eps, "centered": centered,
                    "weight_decay": weight_decay, "capturable": capturable, "foreach": foreach,
                    "maximize": maximize, "differentiable": differentiable}
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        super()._check_group(group)
        for key in ("lr", "eps", "momentum", "weight_decay", "alpha"):
            check_number(self._name, key, group[key])

    def _fix_loaded_group(self, group: dict[str, Any]) -> None:
        for k, v in (("momentum", 0), ("centered", False), ("foreach", None), ("maximize", False),
                     ("differentiable", False), ("capturable", False)):
            group.setdefault(k, v)

    def _init_state(self, p: Any, group: dict[str, Any]) -> dict[str, Any]:
        state: dict[str, Any] = {"step": 0, "square_avg": self._zeros_state(p)}
        if group["momentum"] > 0:
            state["momentum_buffer"] = self._zeros_state(p)
        if group["centered"]:
            state["grad_avg"] = self._zeros_state(p)
        return state

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One RMSprop step for every parameter with a gradient (see :func:`rmsprop_update`)."""
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            hyper = {k: group[k] for k in ("lr", "alpha", "eps", "weight_decay", "momentum", "centered",
                                           "maximize")}
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state.update(self._init_state(p, group))
                for key, needed in (("momentum_buffer", group["momentum"] > 0), ("grad_avg", group["centered"])):
                    if needed and key not in state:      # hyper-parameters changed after the first step
                        state[key] = self._zeros_state(p)
                param, grad = self._arrays(p)
                state["step"] += 1
                buf, avg = state.get("momentum_buffer"), state.get("grad_avg")
                rmsprop_update(param, grad, state["square_avg"]._data, None if avg is None else avg._data,
                               None if buf is None else buf._data, work=self._workspace(param), **hyper)
                self._commit(p, param)
        return loss
