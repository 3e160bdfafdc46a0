"""Stochastic gradient descent (with momentum, dampening, Nesterov, weight decay), and ``sgd_update``.

>>> import suanli
>>> w = suanli.tensor([1.0], requires_grad=True)
>>> opt = suanli.optim.SGD([w], lr=0.1)
>>> (3 * w).sum().backward()
>>> opt.step()
>>> w
tensor([0.7], requires_grad=True)
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..tensor import _wrap
from .adam import effective_grad
from .optimizer import Optimizer, ParamsT, check_number

__all__ = ["SGD", "sgd_update"]


def sgd_update(param: np.ndarray, grad: np.ndarray, momentum_buffer: np.ndarray | None, *, lr: float,
               momentum: float = 0.0, dampening: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0,
               maximize: bool = False, work: np.ndarray | None = None) -> np.ndarray | None:
    """One SGD step on arrays, in place on ``param`` (and ``momentum_buffer``). Returns the momentum
    buffer: on the first step (``momentum_buffer=None``) a new one, a copy of the gradient, as torch.

    ::

        g = (-grad if maximize else grad) + weight_decay * param
        buf = g  (first step)   |   buf = momentum * buf + (1 - dampening) * g
        g = g + momentum * buf  (nesterov)   |   g = buf
        param -= lr * g

    >>> import numpy as np
    >>> p = np.array([1.0])
    >>> buf = sgd_update(p, np.array([2.0]), None, lr=0.1, momentum=0.9)
    >>> buf = sgd_update(p, np.array([2.0]), buf, lr=0.1, momentum=0.9)
    >>> p.round(6), buf
    (array([0.42]), array([3.8]))
    """
    g = effective_grad(grad, param, weight_decay, maximize)
    if momentum != 0:
        if momentum_buffer is None:
            momentum_buffer = np.array(g, copy=True, order="C")
        else:
            momentum_buffer *= momentum
            momentum_buffer += (1.0 - dampening) * g if dampening != 0 else g
        if nesterov:
            g = g + momentum * momentum_buffer
        else:
            g = momentum_buffer
    work = np.empty_like(param) if work is None else work
    np.multiply(g, -lr, out=work)
    param += work
    return momentum_buffer


class SGD(Optimizer):
    """SGD with torch's arguments and update (``momentum``, ``dampening``, ``weight_decay``, ``nesterov``,
    ``maximize``; ``foreach``/``fused`` accepted and ignored). State: ``momentum_buffer`` when
    ``momentum != 0`` (float32 for float16/bfloat16 parameters).

    >>> import suanli
    >>> w = suanli.tensor([1.0], requires_grad=True)
    >>> opt = suanli.optim.SGD([w], lr=0.1, momentum=0.9, nesterov=True)
    >>> w.grad = suanli.tensor([1.0])
    >>> opt.step()              # g + momentum * buf = 1.9
    >>> w
    tensor([0.81], requires_grad=True)
    """

    def __init__(self, params: ParamsT, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, differentiable: bool = False, fused: bool | None = None) -> None:
        defaults = {"lr": lr, "momentum": momentum, "dampening": dampening, "weight_decay": weight_decay,
                    "nesterov": nesterov, "maximize": maximize, "foreach": foreach,
                    "differentiable": differentiable, "fused": fused}
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        super()._check_group(group)
        name = self._name
        check_number(name, "lr", group["lr"])
        check_number(name, "momentum", group["momentum"])
        check_number(name, "dampening", group["dampening"], low=None)
        check_number(name, "weight_decay", group["weight_decay"])
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(f"{name}: nesterov momentum requires a momentum > 0 and zero dampening, got "
                             f"momentum={group['momentum']!r}, dampening={group['dampening']!r}")

    def _fix_loaded_group(self, group: dict[str, Any]) -> None:
        for k, v in (("nesterov", False), ("maximize", False), ("foreach", None), ("differentiable", False),
                     ("fused", None)):
            group.setdefault(k, v)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One SGD step for every parameter with a gradient (see :func:`sgd_update`)."""
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            hyper = {"lr": group["lr"], "momentum": group["momentum"], "dampening": group["dampening"],
                     "nesterov": group["nesterov"], "weight_decay": group["weight_decay"],
                     "maximize": group["maximize"]}
            for p in group["params"]:
                if p.grad is None:
                    continue
                param, grad = self._arrays(p)
                buf_t = self.state[p].get("momentum_buffer") if group["momentum"] != 0 else None
                buf = sgd_update(param, grad, None if buf_t is None else buf_t._data,
                                 work=self._workspace(param), **hyper)
                if buf is not None and buf_t is None:
                    if buf.dtype != self._state_dtype(p):
                        buf = buf.astype(self._state_dtype(p))
                    self.state[p]["momentum_buffer"] = _wrap(buf)
                self._commit(p, param)
        return loss
