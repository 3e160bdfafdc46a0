"""Adam and AdamW: the classes, and ``adam_update``, the update maths on NumPy arrays.

AdamW is Adam with *decoupled* weight decay (``param *= 1 - lr * weight_decay`` before the Adam
step) instead of L2 regularisation added to the gradient, exactly as in torch, where ``AdamW`` is
``Adam(..., decoupled_weight_decay=True)``.

>>> import suanli
>>> from suanli.optim import AdamW
>>> w = suanli.tensor([1.0, -1.0], requires_grad=True)
>>> opt = AdamW([w], lr=0.1, weight_decay=0.0)
>>> (w * w).sum().backward()
>>> opt.step()          # Adam's first step moves each weight by lr, against the gradient's sign
>>> w
tensor([ 0.9, -0.9], requires_grad=True)
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .optimizer import Optimizer, ParamsT, check_number

__all__ = ["Adam", "AdamW", "adam_update"]


def lerp_(start: np.ndarray, end: np.ndarray, weight: float, work: np.ndarray) -> None:
    """``start += weight * (end - start)`` in place, with torch's two-sided formula (exact at weight 1)."""
    np.subtract(end, start, out=work)
    if weight < 0.5:
        work *= weight
        start += work
    else:
        work *= 1.0 - weight
        np.subtract(end, work, out=start)


def effective_grad(grad: np.ndarray, param: np.ndarray, weight_decay: float, maximize: bool) -> np.ndarray:
    """``-grad`` when maximizing, plus ``weight_decay * param`` (L2); a new array only when needed."""
    if maximize:
        grad = np.negative(grad)
    if weight_decay != 0:
        grad = np.add(grad, np.multiply(param, weight_decay))
    return grad


def adam_update(param: np.ndarray, grad: np.ndarray, exp_avg: np.ndarray, exp_avg_sq: np.ndarray,
                max_exp_avg_sq: np.ndarray | None, step: int, *, lr: float, beta1: float, beta2: float,
                eps: float, weight_decay: float = 0.0, amsgrad: bool = False, maximize: bool = False,
                decoupled_weight_decay: bool = False, work: np.ndarray | None = None) -> None:
    """One Adam/AdamW step on arrays, in place on ``param``, ``exp_avg``, ``exp_avg_sq`` (and
    ``max_exp_avg_sq`` with ``amsgrad``); ``step`` is the count *including* this step (1 first).
    ``grad`` is only read. ``work`` is optional scratch memory shaped like ``param``.

    ::

        g = -grad if maximize else grad
        param *= 1 - lr * wd                     (decoupled)   |   g += wd * param   (L2)
        m = lerp(m, g, 1 - beta1);  v = beta2 * v + (1 - beta2) * g * g
        param -= lr / (1 - beta1**step) * m / (sqrt(v) / sqrt(1 - beta2**step) + eps)

    >>> import numpy as np
    >>> p, g = np.array([1.0]), np.array([0.5])
    >>> m, v = np.zeros(1), np.zeros(1)
    >>> adam_update(p, g, m, v, None, 1, lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8)
    >>> p.round(6), m, v.round(6)
    (array([0.9]), array([0.05]), array([0.00025]))
    """
    work = np.empty_like(param) if work is None else work
    if weight_decay != 0 and decoupled_weight_decay:
        param *= 1.0 - lr * weight_decay
        grad = effective_grad(grad, param, 0.0, maximize)
    else:
        grad = effective_grad(grad, param, weight_decay, maximize)

    lerp_(exp_avg, grad, 1.0 - beta1, work)
    exp_avg_sq *= beta2
    np.multiply(grad, 1.0 - beta2, out=work)
    work *= grad
    exp_avg_sq += work

    bias_correction1 = 1 - beta1 ** step
    bias_correction2 = 1 - beta2 ** step
    step_size = lr / bias_correction1
    if amsgrad:
        assert max_exp_avg_sq is not None, "adam_update: amsgrad needs max_exp_avg_sq"
        np.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
        second = max_exp_avg_sq
    else:
        second = exp_avg_sq
    denom = np.sqrt(second, out=work)
    denom /= bias_correction2 ** 0.5
    denom += eps
    np.divide(exp_avg, denom, out=work)
    work *= -step_size
    param += work


class Adam(Optimizer):
    """Adam (Kingma & Ba), with torch's arguments: ``betas`` (moment decay rates), ``eps`` (added to the
    denominator), ``weight_decay`` (L2, or decoupled as AdamW with ``decoupled_weight_decay=True``),
    ``amsgrad`` (use the running maximum of the second moment), ``maximize``.

    ``foreach``/``fused`` are accepted and ignored (there is one implementation); ``capturable`` and
    ``differentiable`` must be False. State per parameter: ``step``, ``exp_avg``, ``exp_avg_sq``
    (and ``max_exp_avg_sq``), float32 for float16/bfloat16 parameters.

    >>> import suanli
    >>> w = suanli.tensor([3.0], requires_grad=True)
    >>> opt = suanli.optim.Adam([w], lr=0.5)
    >>> for _ in range(100):
    ...     opt.zero_grad()
    ...     loss = ((w - 1.0) ** 2).sum()
    ...     loss.backward()
    ...     opt.step()
    >>> abs(w.item() - 1.0) < 0.02
    True
    """

    def __init__(self, params: ParamsT, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False, *,
                 foreach: bool | None = None, maximize: bool = False, capturable: bool = False,
                 differentiable: bool = False, fused: bool | None = None,
                 decoupled_weight_decay: bool = False) -> None:
        defaults = {"lr": lr, "betas": tuple(betas) if isinstance(betas, list) else betas, "eps": eps,
                    "weight_decay": weight_decay, "amsgrad": amsgrad, "maximize": maximize, "foreach": foreach,
                    "capturable": capturable, "differentiable": differentiable, "fused": fused,
                    "decoupled_weight_decay": decoupled_weight_decay}
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        super()._check_group(group)
        name = self._name
        check_number(name, "lr", group["lr"])
        check_number(name, "eps", group["eps"])
        check_number(name, "weight_decay", group["weight_decay"])
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"{name}: betas must be a pair (beta1, beta2), got {betas!r}")
        check_number(name, "betas[0]", betas[0], low=0.0, high=1.0)
        check_number(name, "betas[1]", betas[1], low=0.0, high=1.0)

    def _fix_loaded_group(self, group: dict[str, Any]) -> None:
        for k, v in (("amsgrad", False), ("maximize", False), ("foreach", None), ("capturable", False),
                     ("differentiable", False), ("fused", None), ("decoupled_weight_decay", False)):
            group.setdefault(k, v)
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])

    def _init_state(self, p: Any, group: dict[str, Any]) -> dict[str, Any]:
        state = {"step": 0, "exp_avg": self._zeros_state(p), "exp_avg_sq": self._zeros_state(p)}
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = self._zeros_state(p)
        return state

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One Adam step for every parameter with a gradient (see :func:`adam_update`)."""
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            hyper = {"lr": group["lr"], "beta1": beta1, "beta2": beta2, "eps": group["eps"],
                     "weight_decay": group["weight_decay"], "amsgrad": group["amsgrad"],
                     "maximize": group["maximize"], "decoupled_weight_decay": group["decoupled_weight_decay"]}
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state.update(self._init_state(p, group))
                if group["amsgrad"] and "max_exp_avg_sq" not in state:
                    state["max_exp_avg_sq"] = self._zeros_state(p)
                param, grad = self._arrays(p)
                state["step"] += 1
                max_sq = state.get("max_exp_avg_sq")
                adam_update(param, grad, state["exp_avg"]._data, state["exp_avg_sq"]._data,
                            None if max_sq is None else max_sq._data, state["step"],
                            work=self._workspace(param), **hyper)
                self._commit(p, param)
        return loss


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), torch's defaults (``weight_decay=1e-2``).

    >>> import suanli
    >>> w = suanli.tensor([2.0], requires_grad=True)
    >>> opt = suanli.optim.AdamW([w], lr=0.1, weight_decay=0.5)
    >>> w.grad = suanli.tensor([0.0])
    >>> opt.step()           # zero gradient: only the decay acts, w *= 1 - lr * weight_decay
    >>> w
    tensor([1.9], requires_grad=True)
    """

    def __init__(self, params: ParamsT, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 maximize: bool = False, foreach: bool | None = None, capturable: bool = False,
                 differentiable: bool = False, fused: bool | None = None) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach, maximize=maximize,
                         capturable=capturable, differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=True)

    def _fix_loaded_group(self, group: dict[str, Any]) -> None:
        super()._fix_loaded_group(group)
        group["decoupled_weight_decay"] = True
