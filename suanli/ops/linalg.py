"""Linear algebra: batched broadcasting ``matmul`` (straight to BLAS through ``np.matmul``) and ``einsum``.

>>> import suanli
>>> a = suanli.ones(2, 3); b = suanli.ones(3, 4)
>>> (a @ b).shape
(2, 4)
>>> suanli.einsum("ij,jk->ik", a, b)[0, 0]
tensor(3.)
"""
from __future__ import annotations

import string
from typing import Any

import numpy as np

from .. import dtypes as _dt
from ..errors import DTypeError, ShapeError, op_error
from ..tensor import Tensor
from ._helpers import add_tangents, broadcast_shapes, promote, same_dtype
from .registry import Spec, apply, defprim, other_inputs, tensor_method

__all__ = ["matmul", "mm", "bmm", "mv", "dot", "vdot", "outer", "inner", "einsum", "tensordot"]


# ----------------------------------------------------------------------------------------- matmul
def _infer_matmul(a: Spec, b: Spec, **attrs: Any) -> Spec:
    d = same_dtype("matmul", a, b)
    sa, sb = tuple(a.shape), tuple(b.shape)
    if not sa or not sb:
        raise op_error("matmul", "both arguments need at least 1 dimension",
                       actual=f"{sa} @ {sb}", hint="use mul (*) for scalars")
    ka = sa[-1]
    kb = sb[0] if len(sb) == 1 else sb[-2]
    if ka != kb:
        raise op_error("matmul", "the inner dimensions differ",
                       expect="a.shape[-1] == b.shape[-2] (or b.shape[0] for a vector b)",
                       actual=f"{sa} @ {sb} ({ka} vs {kb})",
                       hint="transpose an operand (x.mT) or check the layer sizes")
    if len(sa) == 1 and len(sb) == 1:
        return Spec((), d)
    if len(sa) == 1:
        return Spec(sb[:-2] + sb[-1:], d)
    if len(sb) == 1:
        return Spec(sa[:-1], d)
    batch = broadcast_shapes("matmul", sa[:-2], sb[:-2])
    return Spec(batch + (sa[-2], sb[-1]), d)


def _matmul_vjp(ctx, g):
    from .shape import transpose, unsqueeze, squeeze
    a, b = ctx.inputs
    ga = gb = None
    if a.ndim == 1 and b.ndim == 1:
        return (g * b if ctx.needs[0] else None, g * a if ctx.needs[1] else None)
    if a.ndim == 1:                      # (k) @ (..., k, m) -> (..., m)
        g2 = unsqueeze(g, -2)            # (..., 1, m)
        if ctx.needs[0]:
            ga = squeeze(matmul(g2, transpose(b, -1, -2)), -2)         # (..., k)
        if ctx.needs[1]:
            gb = matmul(unsqueeze(a, -1), g2)                            # (..., k, m)
        return ga, gb
    if b.ndim == 1:                      # (..., n, k) @ (k) -> (..., n)
        g2 = unsqueeze(g, -1)            # (..., n, 1)
        if ctx.needs[0]:
            ga = matmul(g2, unsqueeze(b, 0))                             # (..., n, k)
        if ctx.needs[1]:
            gb = squeeze(matmul(transpose(a, -1, -2), g2), -1)          # (..., k)
        return ga, gb
    if ctx.needs[0]:
        ga = matmul(g, transpose(b, -1, -2))
    if ctx.needs[1]:
        gb = matmul(transpose(a, -1, -2), g)
    return ga, gb


def _matmul_jvp(ctx, t):
    a, b = ctx.inputs
    ta, tb = t
    return add_tangents(None if ta is None else matmul(ta, b), None if tb is None else matmul(a, tb))


MATMUL = defprim("matmul", np.matmul, _infer_matmul, vjp=_matmul_vjp, jvp=_matmul_jvp,
                 saved_inputs=other_inputs, upcast_half=True,
                 doc="batched broadcasting matrix product (torch.matmul semantics)")


@tensor_method(names=["matmul", "__matmul__"])
def matmul(input: Tensor, other: Tensor) -> Tensor:
    """Matrix product with torch.matmul's rules for 1-D operands and broadcast batch dimensions.

    Same-dtype float32 operands go straight to BLAS (no copies, no upcast).
    """
    if type(input) is Tensor and type(other) is Tensor and input._data.dtype is other._data.dtype:
        return apply(MATMUL, input, other)
    if not isinstance(input, Tensor) or not isinstance(other, Tensor):
        raise op_error("matmul", "both operands must be tensors",
                       actual=f"{type(input).__name__} @ {type(other).__name__}", cls=TypeError)  # type: ignore[arg-type]
    return apply(MATMUL, *promote(input, other))


@tensor_method("__rmatmul__")
def _rmatmul(self: Tensor, other: Any) -> Tensor:
    from ._helpers import as_tensor
    return matmul(as_tensor(other), self)


def _require_ndim(op: str, x: Tensor, ndim: int, name: str) -> None:
    if x.ndim != ndim:
        raise op_error(op, f"{name} must be {ndim}-D", actual=f"{name}.shape = {x.shape}")


@tensor_method
def mm(input: Tensor, mat2: Tensor) -> Tensor:
    """2-D matrix product (no broadcasting)."""
    _require_ndim("mm", input, 2, "input")
    _require_ndim("mm", mat2, 2, "mat2")
    return matmul(input, mat2)


@tensor_method
def bmm(input: Tensor, mat2: Tensor) -> Tensor:
    """Batched 3-D matrix product with equal batch sizes."""
    _require_ndim("bmm", input, 3, "input")
    _require_ndim("bmm", mat2, 3, "mat2")
    if input.shape[0] != mat2.shape[0]:
        raise op_error("bmm", "batch sizes differ", actual=f"{input.shape} @ {mat2.shape}")
    return matmul(input, mat2)


@tensor_method
def mv(input: Tensor, vec: Tensor) -> Tensor:
    """Matrix-vector product."""
    _require_ndim("mv", input, 2, "input")
    _require_ndim("mv", vec, 1, "vec")
    return matmul(input, vec)


@tensor_method
def dot(input: Tensor, other: Tensor) -> Tensor:
    """Inner product of two 1-D tensors."""
    _require_ndim("dot", input, 1, "input")
    _require_ndim("dot", other, 1, "other")
    return matmul(input, other)


vdot = dot


@tensor_method
def inner(input: Tensor, other: Tensor) -> Tensor:
    """Sum product over the last dimension of both."""
    from .shape import transpose
    if input.ndim == 0 or other.ndim == 0:
        return input * other
    if other.ndim == 1:
        return matmul(input, other)
    return matmul(input, transpose(other, -1, -2)) if other.ndim == 2 else einsum("...i,...i", input, other)


@tensor_method(names=["outer", "ger"])
def outer(input: Tensor, vec2: Tensor) -> Tensor:
    """Outer product of two vectors."""
    from .shape import unsqueeze
    _require_ndim("outer", input, 1, "input")
    _require_ndim("outer", vec2, 1, "vec2")
    return unsqueeze(input, 1) * unsqueeze(vec2, 0)


def tensordot(a: Tensor, b: Tensor, dims: Any = 2) -> Tensor:
    """Contract ``dims`` trailing dims of ``a`` with leading dims of ``b`` (or explicit dim lists)."""
    letters = iter(string.ascii_letters)
    sa = [next(letters) for _ in range(a.ndim)]
    sb = [next(letters) for _ in range(b.ndim)]
    if isinstance(dims, int):
        da, db = list(range(a.ndim - dims, a.ndim)), list(range(dims))
    else:
        da, db = [list(d) if isinstance(d, (list, tuple)) else [d] for d in dims]
    for i, j in zip(da, db):
        sb[j % b.ndim] = sa[i % a.ndim]
    out = [c for k, c in enumerate(sa) if k not in [i % a.ndim for i in da]] + \
          [c for k, c in enumerate(sb) if k not in [j % b.ndim for j in db]]
    return einsum(f"{''.join(sa)},{''.join(sb)}->{''.join(out)}", a, b)


# ----------------------------------------------------------------------------------------- einsum
def _einsum_impl(*xs, equation):
    return np.einsum(equation, *xs, optimize=len(xs) > 2)


def _parse(equation: str) -> tuple[list[str], str]:
    ins, out = equation.split("->")
    return ins.split(","), out


def _infer_einsum(*specs: Spec, equation) -> Spec:
    d = same_dtype("einsum", *specs)
    ins, out = _parse(equation)
    sizes: dict[str, int] = {}
    for sub, s in zip(ins, specs):
        for c, n in zip(sub, s.shape):
            if c in sizes and sizes[c] != n and 1 not in (sizes[c], n):
                raise op_error("einsum", f"subscript {c!r} has sizes {sizes[c]} and {n}",
                               actual=f"{equation} on shapes {[tuple(x.shape) for x in specs]}")
            sizes[c] = max(sizes.get(c, n), n)
    return Spec(tuple(sizes[c] for c in out), d)


def _einsum_vjp(ctx, g):
    from .shape import expand
    ins, out = _parse(ctx.attrs["equation"])
    grads = []
    for i, sub in enumerate(ins):
        if not ctx.needs[i]:
            grads.append(None)
            continue
        if len(set(sub)) != len(sub):
            raise NotImplementedError(f"einsum: gradient for operand {i} with a repeated subscript "
                                      f"({sub!r} in {ctx.attrs['equation']!r}) is not supported")
        others = [(s, t) for j, (s, t) in enumerate(zip(ins, ctx.inputs)) if j != i]
        present = set(out).union(*[set(s) for s, _ in others]) if others else set(out)
        target = "".join(c for c in sub if c in present)
        eq = ",".join([out] + [s for s, _ in others]) + "->" + target
        gi = apply(EINSUM, g, *[t for _, t in others], equation=eq)
        x = ctx.inputs[i]
        if target != sub:   # letters only in this operand: the gradient is constant along them
            from .shape import reshape
            shape_kept = tuple(n if c in present else 1 for c, n in zip(sub, x.shape))
            gi = expand(reshape(gi, shape_kept), x.shape)
        grads.append(gi)
    return tuple(grads)


def _einsum_jvp(ctx, t):
    terms = []
    for i, ti in enumerate(t):
        if ti is not None:
            args = list(ctx.inputs)
            args[i] = ti
            terms.append(apply(EINSUM, *args, **ctx.attrs))
    return add_tangents(*terms)


EINSUM = defprim("einsum", _einsum_impl, _infer_einsum, vjp=_einsum_vjp, jvp=_einsum_jvp,
                 saved_inputs=other_inputs)


def _normalize_equation(equation: str, operands: tuple[Tensor, ...]) -> str:
    """Explicit form: spaces removed, '...' expanded to letters, implicit output made explicit."""
    eq = equation.replace(" ", "")
    if "->" in eq:
        lhs, rhs = eq.split("->")
    else:
        lhs, rhs = eq, None
    subs = lhs.split(",")
    if len(subs) != len(operands):
        raise op_error("einsum", f"the equation names {len(subs)} operands but {len(operands)} were given",
                       actual=equation, cls=ValueError)  # type: ignore[arg-type]
    used = set(eq) - set(".,->")
    free = [c for c in string.ascii_letters if c not in used]
    ell_n = 0
    for s, x in zip(subs, operands):
        if "..." in s:
            ell_n = max(ell_n, x.ndim - (len(s) - 3))
    ell = "".join(free[:ell_n])
    out_subs = []
    for s, x in zip(subs, operands):
        if "..." in s:
            k = x.ndim - (len(s) - 3)
            s = s.replace("...", ell[ell_n - k:] if k else "")
        if len(s) != x.ndim:
            raise op_error("einsum", f"subscripts {s!r} do not match an operand of {x.ndim} dims",
                           actual=f"{equation} on shapes {[o.shape for o in operands]}")
        out_subs.append(s)
    if rhs is None:
        counts = {c: "".join(out_subs).count(c) for c in set("".join(out_subs))}
        rhs = ell + "".join(sorted(c for c, n in counts.items() if n == 1 and c not in ell))
    else:
        rhs = rhs.replace("...", ell)
    return ",".join(out_subs) + "->" + rhs


def einsum(equation: str, *operands: Any) -> Tensor:
    """Einstein summation, as ``torch.einsum`` (implicit output, ``...`` broadcasting).

    Differentiable in every operand (the VJP is itself an einsum); forward mode sums one einsum per
    operand tangent.
    """
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    for x in operands:
        if not isinstance(x, Tensor):
            raise TypeError(f"einsum: operands must be Tensors, got {type(x).__name__}")
    ops = promote(*operands) if len({x.dtype for x in operands}) > 1 else operands
    eq = _normalize_equation(equation, ops)
    return apply(EINSUM, *ops, equation=eq)
