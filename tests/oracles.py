"""The three test oracles: torch (values + gradients), float64 finite differences (incl. double
backward, forward and reverse mode), and forward-vs-reverse consistency.

Typical use in an op test::

    check_torch(lambda x, y: suanli.maximum(x, y), torch.maximum, [a, b], dtype="float64")
    check_fd(lambda x, y: suanli.maximum(x, y), [a, b])          # a, b float64 arrays
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

import suanli
from suanli.autograd import check_grads

TOL = {  # (rtol, atol) for comparing with torch
    "float64": (1e-10, 1e-12),
    "float32": (1e-5, 1e-6),
    "float16": (1e-2, 1e-3),
    "bfloat16": (2e-2, 1e-2),
}
TORCH_DTYPE = {"float64": torch.float64, "float32": torch.float32, "float16": torch.float16,
               "bfloat16": torch.bfloat16, "int64": torch.int64, "int32": torch.int32,
               "int16": torch.int16, "int8": torch.int8, "uint8": torch.uint8, "bool": torch.bool}


def rand(shape: Sequence[int], dtype: str = "float64", *, seed: int = 0, low: float = -2.0,
         high: float = 2.0, away_from: Sequence[float] = ()) -> np.ndarray:
    """Random array in [low, high); ``away_from`` pushes values >= 0.1 away from kinks (0 for relu)."""
    rng = np.random.default_rng(seed)
    if dtype in ("int64", "int32", "int16", "int8", "uint8"):
        return rng.integers(int(low), int(high), size=shape).astype(dtype)
    if dtype == "bool":
        return rng.random(shape) < 0.5
    x = rng.uniform(low, high, size=shape)
    for k in away_from:
        near = np.abs(x - k) < 0.1
        x = np.where(near, k + np.where(x >= k, 0.1, -0.1) + (x - k), x)
    return x.astype(np.float64).astype(_np_dtype(dtype))


def _np_dtype(name: str) -> Any:
    return suanli.dtypes.as_dtype(name)


def to_suanli(a: np.ndarray, requires_grad: bool = False) -> suanli.Tensor:
    t = suanli.tensor(a)
    if requires_grad and t.is_floating_point():
        t.requires_grad_(True)
    return t


def to_torch(a: np.ndarray, requires_grad: bool = False) -> torch.Tensor:
    if a.dtype == suanli.bfloat16:
        t = torch.tensor(a.astype(np.float32)).to(torch.bfloat16)
    else:
        t = torch.tensor(a)
    if requires_grad and t.is_floating_point():
        t.requires_grad_(True)
    return t


def torch_to_numpy(t: torch.Tensor) -> np.ndarray:
    t = t.detach()
    if t.dtype == torch.bfloat16:
        return t.float().numpy().astype(suanli.bfloat16)
    return t.numpy()


def _as_tuple(x: Any) -> tuple:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def assert_close(actual: Any, expected: Any, rtol: float, atol: float, what: str = "value") -> None:
    a = actual._data if isinstance(actual, suanli.Tensor) else np.asarray(actual)
    e = torch_to_numpy(expected) if isinstance(expected, torch.Tensor) else np.asarray(expected)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != expected {e.shape}"
    if e.dtype == np.bool_ or a.dtype == np.bool_:
        np.testing.assert_array_equal(a, e, err_msg=what)
        return
    np.testing.assert_allclose(a.astype(np.float64), e.astype(np.float64), rtol=rtol, atol=atol,
                               equal_nan=True, err_msg=what)


def check_torch(fn: Callable, torch_fn: Callable, arrays: Sequence[np.ndarray], *, grad: bool = True,
                rtol: float | None = None, atol: float | None = None, check_dtype: bool = True,
                seed: int = 1) -> tuple:
    """Run ``fn`` on suanli tensors and ``torch_fn`` on torch tensors made from the same ``arrays``;
    compare outputs (values, shapes, dtypes) and -- with ``grad`` -- the gradients of every
    floating input for a random output cotangent."""
    dt = next((str(a.dtype) for a in arrays if a.dtype.kind == "f" or a.dtype == suanli.bfloat16), "float64")
    r, t = TOL.get(dt, (0, 0))
    rtol = r if rtol is None else rtol
    atol = t if atol is None else atol
    xs = [to_suanli(a, grad) for a in arrays]
    ts = [to_torch(a, grad) for a in arrays]
    outs = _as_tuple(fn(*xs))
    touts = _as_tuple(torch_fn(*ts))
    assert len(outs) == len(touts), f"{len(outs)} outputs vs torch's {len(touts)}"
    for i, (o, to) in enumerate(zip(outs, touts)):
        assert_close(o, to, rtol, atol, f"output {i}")
        if check_dtype:
            assert str(o.dtype) == str(to.dtype).replace("torch.", ""), \
                f"output {i}: dtype {o.dtype} != torch {to.dtype}"
    if grad:
        rng = np.random.default_rng(seed)
        diff = [(o, to) for o, to in zip(outs, touts) if to.requires_grad]
        assert all(o.requires_grad for o, _ in diff), "torch output requires grad but suanli's does not"
        if diff:
            cots = [rng.standard_normal(o.shape).astype(np.float64) for o, _ in diff]
            gs = suanli.autograd.grad([o for o, _ in diff], [x for x in xs if x.requires_grad],
                                      [suanli.tensor(c).to(o.dtype) for c, (o, _) in zip(cots, diff)],
                                      allow_unused=True, materialize_grads=True)
            tgs = torch.autograd.grad([to for _, to in diff], [t for t in ts if t.requires_grad],
                                      [torch.tensor(c).to(to.dtype) for c, (_, to) in zip(cots, diff)],
                                      allow_unused=True, materialize_grads=True)
            for k, (g, tg) in enumerate(zip(gs, tgs)):
                assert_close(g, tg, rtol * 10, atol * 10, f"gradient of input {k}")
    return outs


def check_fd(fn: Callable, arrays: Sequence[np.ndarray], *, order: int = 2, modes: Sequence[str] = ("rev", "fwd"),
             nondiff: Sequence[int] = (), rtol: float = 1e-6, atol: float = 1e-6, seed: int = 0) -> None:
    """float64 finite differences in random directions: reverse and forward mode, and (order=2)
    double backward plus forward-over-reverse. ``nondiff`` lists argument positions held constant."""
    xs = []
    for i, a in enumerate(arrays):
        t = suanli.tensor(a)
        if i not in nondiff and t.dtype == suanli.float64:
            t.requires_grad_(True)
        xs.append(t)
    check_grads(fn, xs, order=order, modes=modes, rtol=rtol, atol=atol, seed=seed)


def check_jvp_vjp(fn: Callable, arrays: Sequence[np.ndarray], *, seed: int = 0, rtol: float = 1e-9) -> None:
    """Forward against reverse: ``<u, J v>`` (jvp) equals ``<J^T u, v>`` (vjp) for random u, v."""
    rng = np.random.default_rng(seed)
    xs = [suanli.tensor(a) for a in arrays]
    vs = [suanli.tensor(rng.standard_normal(a.shape)) for a in arrays]
    out, tan = suanli.autograd.functional.jvp(fn, tuple(xs), tuple(vs))
    u = suanli.tensor(rng.standard_normal(out.shape))
    _, g = suanli.autograd.functional.vjp(fn, tuple(xs), u)
    lhs = float(np.sum(u._data * tan._data))
    rhs = float(sum(np.sum(gi._data * vi._data) for gi, vi in zip(g, vs)))
    assert abs(lhs - rhs) <= rtol * max(1.0, abs(lhs)), f"<u, Jv> = {lhs} but <J^T u, v> = {rhs}"
