"""Gradient checks in float64: full-Jacobian ``gradcheck``/``gradgradcheck`` (as torch) and the
cheaper random-direction ``check_grads`` (as JAX) that tests use for every op.

>>> import suanli
>>> x = suanli.randn(3, dtype=suanli.float64, requires_grad=True)
>>> suanli.autograd.gradcheck(lambda t: (t.exp() * t).sum(), (x,))
True
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from .._config import state
from ..errors import AutogradError
from ..tensor import Tensor, _wrap
from . import forward_ad
from .engine import grad as _grad


def _as_tuple(x: Any) -> tuple:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _outputs(func: Callable, inputs: Sequence[Any]) -> tuple[Tensor, ...]:
    return _as_tuple(func(*inputs))


def _numerical_jacobian(func: Callable, inputs: list[Any], i: int, eps: float) -> list[np.ndarray]:
    """d outputs / d inputs[i] by central differences; one (out.size, in.size) matrix per output."""
    x = inputs[i]
    base = x._data
    cols = []
    with _no_grad():
        for k in range(base.size):
            plus, minus = base.copy(), base.copy()
            plus.reshape(-1)[k] += eps
            minus.reshape(-1)[k] -= eps
            args_p = list(inputs)
            args_p[i] = _wrap(plus).requires_grad_(x._requires_grad)
            args_m = list(inputs)
            args_m[i] = _wrap(minus).requires_grad_(x._requires_grad)
            fp = _outputs(func, args_p)
            fm = _outputs(func, args_m)
            cols.append([((a._data.astype(np.float64) - b._data.astype(np.float64)) / (2 * eps)).reshape(-1)
                         for a, b in zip(fp, fm)])
    n_out = len(_outputs(func, inputs))
    return [np.stack([c[o] for c in cols], axis=1) if cols else np.zeros((0, 0)) for o in range(n_out)]


def gradcheck(func: Callable, inputs: Any, *, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3,
              raise_exception: bool = True, check_forward_ad: bool = True,
              check_backward_ad: bool = True) -> bool:
    """Compare reverse-mode (and forward-mode) Jacobians with central finite differences.

    Inputs that require grad must be float64. Raises :class:`AssertionError` describing the first
    mismatch (or returns False with ``raise_exception=False``).
    """
    inputs = list(_as_tuple(inputs))
    diff_idx = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t._requires_grad]
    for i in diff_idx:
        if inputs[i]._data.dtype != np.float64:
            raise AutogradError(f"gradcheck: input {i} is {inputs[i]._data.dtype}; use float64 inputs "
                                "(finite differences are too coarse in lower precision)")
    outs = _outputs(func, inputs)
    try:
        for i in diff_idx:
            numeric = _numerical_jacobian(func, inputs, i, eps)
            for o, out in enumerate(outs):
                if not out.is_floating_point():
                    continue
                if check_backward_ad:
                    rev = _reverse_jacobian(func, inputs, i, o, out)
                    _compare("backward", rev, numeric[o], i, o, atol, rtol)
                if check_forward_ad:
                    fwd = _forward_jacobian(func, inputs, i, o, out)
                    _compare("forward", fwd, numeric[o], i, o, atol, rtol)
    except AssertionError:
        if raise_exception:
            raise
        return False
    return True


def _compare(mode: str, analytic: np.ndarray, numeric: np.ndarray, i: int, o: int,
             atol: float, rtol: float) -> None:
    if analytic.shape != numeric.shape or not np.allclose(analytic, numeric, atol=atol, rtol=rtol):
        raise AssertionError(f"gradcheck: {mode}-mode Jacobian mismatch for output {o} w.r.t. input {i}\n"
                             f"numerical:\n{numeric}\nanalytical:\n{analytic}")


def _reverse_jacobian(func: Callable, inputs: list, i: int, o: int, out_ref: Tensor) -> np.ndarray:
    rows = []
    for k in range(out_ref._data.size):
        with _enable_grad():
            out = _outputs(func, inputs)[o]
            if not out._requires_grad:
                rows.append(np.zeros(inputs[i]._data.size))
                continue
            v = np.zeros(out._data.size, out._data.dtype)
            v[k] = 1
            (g,) = _grad(out, inputs[i], _wrap(v.reshape(out._data.shape)), allow_unused=True,
                         materialize_grads=True)
        rows.append(g._data.astype(np.float64).reshape(-1))
    return np.stack(rows) if rows else np.zeros((0, inputs[i]._data.size))


def _forward_jacobian(func: Callable, inputs: list, i: int, o: int, out_ref: Tensor) -> np.ndarray:
    cols = []
    for k in range(inputs[i]._data.size):
        t = np.zeros(inputs[i]._data.size, inputs[i]._data.dtype)
        t[k] = 1
        with forward_ad.dual_level():
            args = list(inputs)
            args[i] = forward_ad.make_dual(inputs[i], _wrap(t.reshape(inputs[i]._data.shape)))
            out = _outputs(func, args)[o]
            tan = forward_ad.unpack_dual(out).tangent
            cols.append(np.zeros(out._data.size) if tan is None else tan._data.astype(np.float64).reshape(-1))
    return np.stack(cols, axis=1) if cols else np.zeros((out_ref._data.size, 0))


def gradgradcheck(func: Callable, inputs: Any, grad_outputs: Any = None, *, eps: float = 1e-6,
                  atol: float = 1e-5, rtol: float = 1e-3, raise_exception: bool = True,
                  check_fwd_over_rev: bool = False) -> bool:
    """``gradcheck`` of the map (inputs, v) -> vjp(func, inputs, v): checks second derivatives."""
    inputs = list(_as_tuple(inputs))
    diff_idx = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t._requires_grad]
    with _enable_grad():
        outs = _outputs(func, inputs)
    if grad_outputs is None:
        rng = np.random.default_rng(0)
        grad_outputs = [_wrap(rng.standard_normal(o._data.shape)).requires_grad_(True)
                        for o in outs if o._requires_grad]
    gos = list(_as_tuple(grad_outputs))
    n = len(inputs)

    def first_order(*args: Any) -> tuple:
        xs, vs = list(args[:n]), args[n:]
        with _enable_grad():
            o = [t for t in _outputs(func, xs) if t._requires_grad]
            gs = _grad(o, [xs[i] for i in diff_idx], list(vs), create_graph=True, allow_unused=True,
                       materialize_grads=True)
        return gs

    return gradcheck(first_order, inputs + gos, eps=eps, atol=atol, rtol=rtol,
                     raise_exception=raise_exception, check_forward_ad=check_fwd_over_rev)


def check_grads(func: Callable, inputs: Sequence[Tensor], *, order: int = 2, eps: float = 1e-6,
                rtol: float = 1e-6, atol: float = 1e-6, seed: int = 0,
                modes: Sequence[str] = ("rev", "fwd")) -> None:
    """Random-direction checks in float64 (JAX ``check_grads`` style), cheap for any input size.

    For random input direction ``v`` and output cotangent ``u``: the central difference
    ``<u, (f(x+eps v) - f(x-eps v)) / 2eps>`` must equal ``<vjp(u), v>`` (rev) and ``<u, jvp(v)>``
    (fwd). ``order=2`` repeats the reverse check on ``x -> vjp(f, x)(u)`` (double backward).
    """
    rng = np.random.default_rng(seed)
    inputs = list(inputs)
    diff = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t._data.dtype == np.float64
            and t._requires_grad]
    if not diff:
        raise AutogradError("check_grads: no float64 input requires grad")
    vs = {i: rng.standard_normal(inputs[i]._data.shape) for i in diff}

    def outputs_at(delta: float) -> list[np.ndarray]:
        args = list(inputs)
        for i in diff:
            args[i] = _wrap(inputs[i]._data + delta * vs[i]).requires_grad_(True)
        with _no_grad():
            return [o._data.astype(np.float64) for o in _outputs(func, args)]

    with _enable_grad():
        outs = [o for o in _outputs(func, inputs)]
    float_outs = [k for k, o in enumerate(outs) if o.is_floating_point()]
    us = {k: rng.standard_normal(outs[k]._data.shape) for k in float_outs}
    plus, minus = outputs_at(eps), outputs_at(-eps)
    fd = sum(float(np.sum(us[k] * (plus[k] - minus[k]) / (2 * eps))) for k in float_outs)
    scale = max(1.0, abs(fd))
    if "rev" in modes:
        diff_outs = [k for k in float_outs if outs[k]._requires_grad]
        if diff_outs:
            with _enable_grad():
                gs = _grad([outs[k] for k in diff_outs], [inputs[i] for i in diff],
                           [_wrap(us[k]) for k in diff_outs], retain_graph=True, allow_unused=True,
                           materialize_grads=True)
            rev = sum(float(np.sum(g._data * vs[i])) for g, i in zip(gs, diff))
        else:
            rev = 0.0
        if not abs(rev - fd) <= atol + rtol * scale:
            raise AssertionError(f"check_grads: reverse mode <vjp(u), v> = {rev!r} but finite "
                                 f"differences give {fd!r}")
    if "fwd" in modes:
        with forward_ad.dual_level():
            args = list(inputs)
            for i in diff:
                args[i] = forward_ad.make_dual(inputs[i], _wrap(vs[i]))
            fouts = _outputs(func, args)
            fwd = 0.0
            for k in float_outs:
                tan = forward_ad.unpack_dual(fouts[k]).tangent
                if tan is not None:
                    fwd += float(np.sum(us[k] * tan._data))
        if not abs(fwd - fd) <= atol + rtol * scale:
            raise AssertionError(f"check_grads: forward mode <u, jvp(v)> = {fwd!r} but finite "
                                 f"differences give {fd!r}")
    if order >= 2 and "rev" in modes:
        diff_outs = [k for k in float_outs if outs[k]._requires_grad]
        if not diff_outs:
            return
        u_tensors = [_wrap(us[k]) for k in diff_outs]

        def vjp_of_func(*args: Any) -> tuple:
            with _enable_grad():
                o = _outputs(func, args)
                return _grad([o[k] for k in diff_outs], [args[i] for i in diff], u_tensors,
                             create_graph=True, allow_unused=True, materialize_grads=True)

        check_grads(vjp_of_func, inputs, order=order - 1, eps=eps, rtol=rtol, atol=atol,
                    seed=seed + 1, modes=("rev", "fwd") if "fwd" in modes else ("rev",))


class _no_grad:
    def __enter__(self) -> None:
        self.prev = state.grad_enabled
        state.grad_enabled = False

    def __exit__(self, *exc: Any) -> None:
        state.grad_enabled = self.prev


class _enable_grad(_no_grad):
    def __enter__(self) -> None:
        self.prev = state.grad_enabled
        state.grad_enabled = True
