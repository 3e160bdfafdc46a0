"""Functional transforms: ``vjp``, ``jvp`` (true forward mode), ``jacobian``, ``hessian``, ``grad``.

Signatures follow ``torch.autograd.functional`` (``vjp/jvp/jacobian/hessian``); ``grad`` and
``grad_and_value`` follow ``torch.func`` (a function in, a function out).

>>> import suanli
>>> from suanli.autograd.functional import jacobian, hessian, jvp
>>> f = lambda x: (x ** 3).sum()
>>> hessian(f, suanli.tensor([1.0, 2.0]))
tensor([[ 6.,  0.],
        [ 0., 12.]])
>>> jvp(lambda x: x.exp(), suanli.tensor([0.0]), suanli.tensor([2.0]))[1]
tensor([2.])
>>> suanli.autograd.functional.grad(f)(suanli.tensor([1.0, 2.0]))
tensor([ 3., 12.])
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from .._config import state
from ..errors import AutogradError
from ..tensor import Tensor, _wrap
from . import forward_ad
from .engine import grad as _autograd_grad


def _tuple(x: Any) -> tuple[bool, tuple]:
    if isinstance(x, (tuple, list)):
        return True, tuple(x)
    return False, (x,)


def _prepare(inputs: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """Fresh leaves that require grad, sharing data with the caller's inputs."""
    out = []
    for t in inputs:
        if not isinstance(t, Tensor):
            raise TypeError(f"functional transforms take Tensors, got {type(t).__name__}")
        leaf = t.detach()
        leaf._base = None
        if leaf.is_floating_point():
            leaf.requires_grad_(True)
        if t._tangent is not None:          # keep forward-mode tangents (forward-over-reverse)
            forward_ad._attach_tangent(leaf, t._tangent)
        out.append(leaf)
    return tuple(out)


def _ones_like(t: Tensor) -> Tensor:
    return _wrap(np.ones_like(t._data))


def vjp(func: Callable, inputs: Any, v: Any = None, create_graph: bool = False,
        strict: bool = False) -> tuple[Any, Any]:
    """``(func(inputs), v^T J)``; ``v`` may be omitted for a scalar output."""
    in_tuple, ins = _tuple(inputs)
    with _enable(True):
        xs = _prepare(ins)
        out = func(*xs)
        out_tuple, outs = _tuple(out)
        _, vs = _tuple(v) if v is not None else (False, tuple(None for _ in outs))
        diff = [(o, g) for o, g in zip(outs, vs) if o._requires_grad]
        if diff:
            grads = _autograd_grad([o for o, _ in diff], xs, [g for _, g in diff],
                                   create_graph=create_graph, allow_unused=True)
        else:
            grads = (None,) * len(xs)
    grads = tuple(_wrap(np.zeros_like(x._data)) if g is None else g for x, g in zip(xs, grads))
    outs = tuple(o if create_graph else o.detach() for o in outs)
    return (outs if out_tuple else outs[0]), (grads if in_tuple else grads[0])


def jvp(func: Callable, inputs: Any, v: Any = None, create_graph: bool = False,
        strict: bool = False) -> tuple[Any, Any]:
    """``(func(inputs), J v)`` by forward mode: tangents ride through each primitive's JVP rule."""
    in_tuple, ins = _tuple(inputs)
    if v is None:
        if len(ins) != 1 or ins[0]._data.size != 1:
            raise AutogradError("jvp: v can be omitted only for a single one-element input")
        vs = (_ones_like(ins[0]),)
    else:
        _, vs = _tuple(v)
    if len(vs) != len(ins):
        raise AutogradError(f"jvp: {len(ins)} inputs but {len(vs)} tangents")
    with forward_ad.dual_level():
        duals = [forward_ad.make_dual(x, t) for x, t in zip(ins, vs)]
        out = func(*duals)
        out_tuple, outs = _tuple(out)
        prims, tans = [], []
        for o in outs:
            p, t = forward_ad.unpack_dual(o)
            prims.append(p if create_graph else p.detach())
            tans.append(_wrap(np.zeros_like(o._data)) if t is None else (t if create_graph else t.detach()))
    return (tuple(prims) if out_tuple else prims[0]), (tuple(tans) if out_tuple else tans[0])


def jacobian(func: Callable, inputs: Any, create_graph: bool = False, strict: bool = False,
             vectorize: bool = False, strategy: str = "reverse-mode") -> Any:
    """Full Jacobian; ``strategy='reverse-mode'`` (one VJP per output element) or ``'forward-mode'``
    (one JVP per input element). Shape: ``out.shape + in.shape`` (nested tuples for tuple in/out).
    """
    if strategy not in ("reverse-mode", "forward-mode"):
        raise ValueError(f"jacobian: strategy must be 'reverse-mode' or 'forward-mode', got {strategy!r}")
    from ..ops.shape import reshape, stack
    in_tuple, ins = _tuple(inputs)
    if strategy == "forward-mode":
        cols: list[list[list[Tensor]]] = []   # [input][element][output]
        for i, x in enumerate(ins):
            per_elem = []
            for k in range(x._data.size):
                tangent = np.zeros(x._data.size, x._data.dtype)
                tangent[k] = 1
                vs = [_wrap(np.zeros_like(t._data)) for t in ins]
                vs[i] = _wrap(tangent.reshape(x._data.shape))
                out, tan = jvp(func, tuple(ins), tuple(vs), create_graph=create_graph)
                per_elem.append(list(_tuple(tan)[1]))
            cols.append(per_elem)
        # the primal outputs came with every jvp call; call func only if no input had an element
        out_tuple, outs_ = _tuple(out) if any(x._data.size for x in ins) else _tuple(func(*ins))
        result = []
        for o_idx, o in enumerate(outs_):
            row = []
            for i, x in enumerate(ins):
                if x._data.size == 0 or o._data.size == 0:
                    row.append(_wrap(np.zeros(o._data.shape + x._data.shape, o._data.dtype)))
                    continue
                col = stack([cols[i][k][o_idx] for k in range(x._data.size)], dim=-1)
                row.append(reshape(col, o._data.shape + x._data.shape))
            result.append(row)
    else:
        with _enable(True):
            xs = _prepare(ins)
            out = func(*xs)
            out_tuple, outs = _tuple(out)
            result = []
            for o in outs:
                row_per_input: list[list[Tensor]] = [[] for _ in xs]
                flat_n = o._data.size
                for k in range(flat_n):
                    if not o._requires_grad:
                        gs = (None,) * len(xs)
                    else:
                        v = np.zeros(flat_n, o._data.dtype)
                        v[k] = 1
                        gs = _autograd_grad(o, xs, _wrap(v.reshape(o._data.shape)), retain_graph=True,
                                            create_graph=create_graph, allow_unused=True)
                    for i, (x, g) in enumerate(zip(xs, gs)):
                        row_per_input[i].append(_wrap(np.zeros_like(x._data)) if g is None else g)
                row = []
                for i, x in enumerate(xs):
                    if flat_n == 0:
                        row.append(_wrap(np.zeros(o._data.shape + x._data.shape, x._data.dtype)))
                    else:
                        row.append(reshape(stack(row_per_input[i], dim=0), o._data.shape + x._data.shape))
                result.append(row)
    if not create_graph:
        result = [[r.detach() for r in row] for row in result]
    rows = [tuple(row) if in_tuple else row[0] for row in result]
    return tuple(rows) if out_tuple else rows[0]


def hessian(func: Callable, inputs: Any, create_graph: bool = False, strict: bool = False,
            vectorize: bool = False, outer_jacobian_strategy: str = "reverse-mode") -> Any:
    """Hessian of a scalar function: the Jacobian of its gradient (reverse-over-reverse by default,
    forward-over-reverse with ``outer_jacobian_strategy='forward-mode'``)."""
    in_tuple, ins = _tuple(inputs)

    def gradient(*xs: Tensor) -> Any:
        with _enable(True):
            leaves = xs if all(x._requires_grad for x in xs) else _prepare(xs)
            out = func(*leaves)
            if not isinstance(out, Tensor) or out._data.size != 1:
                raise AutogradError("hessian: func must return a single one-element tensor")
            gs = _autograd_grad(out, leaves, create_graph=True, allow_unused=True, materialize_grads=True)
        return gs if in_tuple else gs[0]

    return jacobian(gradient, ins if in_tuple else ins[0], create_graph=create_graph,
                    strategy=outer_jacobian_strategy)


def grad(func: Callable, argnums: int | Sequence[int] = 0, has_aux: bool = False) -> Callable:
    """``torch.func.grad``: a function returning d func / d args[argnums] (func returns a scalar)."""
    gv = grad_and_value(func, argnums, has_aux)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        g, value = gv(*args, **kwargs)
        return (g, value[1]) if has_aux else g
    return wrapper


def grad_and_value(func: Callable, argnums: int | Sequence[int] = 0, has_aux: bool = False) -> Callable:
    """Like :func:`grad` but also returns the function's value. Nested calls give higher orders."""
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
        args = list(args)
        caller_tracks = any(isinstance(args[n], Tensor) and args[n]._requires_grad for n in nums)
        with _enable(True):
            for n in nums:
                x = args[n]
                if not x._requires_grad:
                    leaf = x.detach()
                    leaf._base = None
                    args[n] = leaf.requires_grad_(True)
            out = func(*args, **kwargs)
            value, aux = (out if has_aux else (out, None))
            if not isinstance(value, Tensor) or value._data.size != 1:
                raise AutogradError("grad: func must return a one-element tensor (a scalar loss)")
            gs = _autograd_grad(value, [args[n] for n in nums], create_graph=True, allow_unused=True,
                                materialize_grads=True)
        if not (caller_tracks and state.grad_enabled):   # an outer transform differentiates us
            gs = tuple(g.detach() for g in gs)
        g = gs[0] if isinstance(argnums, int) else gs
        return g, ((value, aux) if has_aux else value)
    return wrapper


class _enable:
    def __init__(self, on: bool) -> None:
        self.on = on

    def __enter__(self) -> None:
        self.prev = state.grad_enabled
        state.grad_enabled = self.on

    def __exit__(self, *exc: Any) -> None:
        state.grad_enabled = self.prev
