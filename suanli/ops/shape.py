"""Shape primitives (reshape, permute, expand, basic slicing, cat, pad, flip, roll, tril/triu,
diagonal) and the composites built on them (squeeze, flatten, stack, split, repeat, tile...).

View primitives (``reshape``, ``permute``, ``expand``, ``slice``, ``diagonal``) return NumPy views
and share the version counter of their input, as torch's views do. Everything else copies.

>>> import suanli
>>> x = suanli.arange(6).reshape(2, 3)
>>> x.shape
(2, 3)
>>> x.T.shape, x.unsqueeze(0).shape, x.flatten().shape
((3, 2), (1, 2, 3), (6,))
>>> suanli.cat([x, x], dim=1).shape
(2, 6)
"""
from __future__ import annotations

import math
import operator
from typing import Any, Sequence

import numpy as np

from .. import dtypes as _dt
from ..errors import DTypeError, op_error
from ..tensor import Tensor, _wrap
from ._helpers import broadcast_shapes as _broadcast_shapes, normalize_axis, sum_to
from .registry import Spec, apply, defprim, spec_str, tensor_method

__all__ = ["reshape", "view", "expand", "broadcast_to", "broadcast_tensors", "broadcast_shapes", "permute",
           "transpose", "swapaxes", "swapdims", "movedim", "moveaxis", "t", "adjoint", "squeeze",
           "unsqueeze", "flatten", "ravel", "unflatten", "cat", "concat", "concatenate", "stack",
           "hstack", "vstack", "split", "chunk", "unbind", "narrow", "pad", "flip", "fliplr", "flipud",
           "roll", "tril", "triu", "repeat_interleave", "tile", "diagonal"]


def _shape_arg(shape: Sequence[Any], op: str = "reshape") -> tuple[int, ...]:
    """Accept ``f(2, 3)`` and ``f((2, 3))`` alike."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = shape[0]
    try:
        return tuple(operator.index(s) for s in shape)
    except TypeError:
        raise op_error(op, "sizes must be integers", actual=f"{tuple(shape)!r}",
                       hint="pass ints, e.g. x.reshape(2, -1)", cls=DTypeError) from None


def _dims_arg(op: str, dims: Sequence[Any]) -> tuple[int, ...]:
    """``f(0, 1)``, ``f((0, 1))`` and ``f([0, 1])`` alike, as plain ints."""
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        dims = dims[0]
    try:
        return tuple(operator.index(d) for d in dims)
    except TypeError:
        raise op_error(op, "dims must be integers", actual=f"{dims!r}", cls=DTypeError) from None


def _zeros(shape: tuple[int, ...], dtype: np.dtype) -> Tensor:
    """A constant zero tensor (for cotangents/tangents of untouched positions)."""
    return _wrap(np.zeros(shape, dtype))


def _tangent_or_zeros(t: Tensor | None, like: Tensor) -> Tensor:
    return _zeros(like._data.shape, like._data.dtype) if t is None else t


# ------------------------------------------------------------------------------------ reshape
def resolve_shape(op: str, in_shape: tuple[int, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    """Fill in one ``-1`` and check the element count, with an error naming both shapes."""
    size = math.prod(in_shape)
    if shape.count(-1) > 1:
        raise op_error(op, "only one dimension can be -1", actual=f"shape {shape}")
    if -1 in shape:
        known = math.prod(s for s in shape if s != -1)
        if known == 0 or size % known:
            raise op_error(op, "cannot infer the -1 dimension",
                           actual=f"input {in_shape} ({size} elements) into {shape}")
        shape = tuple(size // known if s == -1 else s for s in shape)
    if any(s < 0 for s in shape) or math.prod(shape) != size:
        raise op_error(op, "the number of elements must not change",
                       expect=f"{size} elements (input shape {in_shape})",
                       actual=f"shape {shape} has {math.prod(shape)} elements")
    return shape


def _reshape_impl(x, *, shape):
    return np.reshape(x, shape)


def _infer_reshape(x: Spec, *, shape) -> Spec:
    return Spec(resolve_shape("reshape", tuple(x.shape), tuple(shape)), x.dtype)


def _reshape_vjp(ctx, g):
    return (reshape(g, ctx.inputs[0]._data.shape),)


def _reshape_jvp(ctx, t):
    return reshape(t[0], ctx.out._data.shape)


RESHAPE = defprim("reshape", _reshape_impl, _infer_reshape, vjp=_reshape_vjp, jvp=_reshape_jvp,
                  view=True, save_inputs=False, upcast_half=False)


def _viewable(data: np.ndarray, shape: tuple[int, ...]) -> bool:
    """Whether ``data`` can take ``shape`` without a copy (always true when C-contiguous)."""
    if data.flags.c_contiguous:
        return True
    try:
        np.reshape(data, shape, copy=False)
    except ValueError:
        return False
    return True


@tensor_method
def reshape(input: Tensor, *shape: Any) -> Tensor:
    """Same elements in a new shape (one dim may be -1); copies only when the strides require it.

    >>> import suanli
    >>> suanli.arange(6).reshape(3, -1).shape
    (3, 2)
    """
    shape = resolve_shape("reshape", input._data.shape, _shape_arg(shape))
    if shape == input._data.shape:
        return input
    if not _viewable(input._data, shape):
        # e.g. after a transpose: copy first, as torch's reshape does, so that the result does
        # not claim to share memory (and a version counter) with the input
        from .elementwise import clone
        input = clone(input)
    return apply(RESHAPE, input, shape=shape)


@tensor_method
def view(input: Tensor, *shape: Any) -> Tensor:
    """Like :func:`reshape` but never copies: the result always shares memory with ``input``.

    >>> import suanli
    >>> suanli.arange(6).view(2, 3).shape
    (2, 3)
    """
    shape = resolve_shape("view", input._data.shape, _shape_arg(shape, "view"))
    if shape == input._data.shape:
        return input
    if not _viewable(input._data, shape):
        raise op_error("view", "the size is not compatible with the input's strides (it is not contiguous)",
                       actual=f"input shape {input._data.shape}, strides {input._data.strides}, "
                       f"requested {shape}", hint="use .reshape(...) (copies if needed) or .contiguous().view(...)")
    return apply(RESHAPE, input, shape=shape)


@tensor_method
def view_as(input: Tensor, other: Tensor) -> Tensor:
    """``input.reshape(other.shape)``."""
    return reshape(input, other._data.shape)


@tensor_method
def reshape_as(input: Tensor, other: Tensor) -> Tensor:
    """``input.reshape(other.shape)``."""
    return reshape(input, other._data.shape)


# ------------------------------------------------------------------------------------ expand
def _expand_impl(x, *, shape):
    return np.broadcast_to(x, shape)


def _infer_expand(x: Spec, *, shape) -> Spec:
    out = _broadcast_shapes("expand", tuple(x.shape), tuple(shape))
    if out != tuple(shape):
        raise op_error("expand", "the input cannot be expanded to this shape",
                       expect="input dims equal to the target or 1", actual=f"{tuple(x.shape)} -> {tuple(shape)}")
    return Spec(out, x.dtype)


def _expand_vjp(ctx, g):
    return (sum_to(g, ctx.inputs[0]._data.shape),)


def _expand_jvp(ctx, t):
    return expand(t[0], ctx.attrs["shape"])


EXPAND = defprim("expand", _expand_impl, _infer_expand, vjp=_expand_vjp, jvp=_expand_jvp,
                 view=True, save_inputs=False, upcast_half=False)


@tensor_method
def expand(input: Tensor, *shape: Any) -> Tensor:
    """Broadcast to ``shape`` without copying (``-1`` keeps a dimension).

    >>> import suanli
    >>> suanli.tensor([[1], [2]]).expand(2, 3).tolist()
    [[1, 1, 1], [2, 2, 2]]
    """
    shape = _shape_arg(shape)
    lead = len(shape) - input._data.ndim
    shape = tuple(input._data.shape[i - lead] if s == -1 and i >= lead else s for i, s in enumerate(shape))
    _infer_expand(Spec(input._data.shape, input._data.dtype), shape=shape)
    if shape == input._data.shape:
        return input
    return apply(EXPAND, input, shape=shape)


@tensor_method
def expand_as(input: Tensor, other: Tensor) -> Tensor:
    """``input.expand(other.shape)``."""
    return expand(input, other._data.shape)


def broadcast_to(input: Tensor, shape: Sequence[int]) -> Tensor:
    """``expand`` with torch's ``broadcast_to`` signature."""
    return expand(input, tuple(shape))


def broadcast_shapes(*shapes: Any) -> tuple[int, ...]:
    """The shape that ``shapes`` broadcast to (ints count as 1-d shapes).

    >>> import suanli
    >>> suanli.broadcast_shapes((2, 1), (3,))
    (2, 3)
    """
    return _broadcast_shapes("broadcast_shapes", *[(s,) if isinstance(s, int) else tuple(s) for s in shapes])


def broadcast_tensors(*tensors: Tensor) -> tuple[Tensor, ...]:
    """Expand every tensor to their common broadcast shape (views).

    >>> import suanli
    >>> a, b = suanli.broadcast_tensors(suanli.zeros(2, 1), suanli.zeros(3))
    >>> a.shape, b.shape
    ((2, 3), (2, 3))
    """
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    shape = _broadcast_shapes("broadcast_tensors", *[t._data.shape for t in tensors])
    return tuple(expand(t, shape) for t in tensors)


# ------------------------------------------------------------------------------------ permute
def _permute_impl(x, *, perm):
    return np.transpose(x, perm)


def _infer_permute(x: Spec, *, perm) -> Spec:
    if sorted(perm) != list(range(len(x.shape))):
        raise op_error("permute", "dims must be a permutation of the input's dimensions",
                       expect=f"a permutation of {tuple(range(len(x.shape)))}",
                       actual=f"dims={tuple(perm)} for input {tuple(x.shape)}")
    return Spec(tuple(x.shape[p] for p in perm), x.dtype)


def _permute_vjp(ctx, g):
    return (permute(g, tuple(int(i) for i in np.argsort(ctx.attrs["perm"]))),)


def _permute_jvp(ctx, t):
    return permute(t[0], ctx.attrs["perm"])


PERMUTE = defprim("permute", _permute_impl, _infer_permute, vjp=_permute_vjp, jvp=_permute_jvp,
                  view=True, save_inputs=False, upcast_half=False)


@tensor_method
def permute(input: Tensor, *dims: Any) -> Tensor:
    """Reorder the dimensions (a view): output dim ``i`` is input dim ``dims[i]``.

    >>> import suanli
    >>> suanli.zeros(2, 3, 4).permute(2, 0, 1).shape
    (4, 2, 3)
    """
    ndim = input._data.ndim
    perm = _dims_arg("permute", dims)
    if len(perm) != ndim:
        raise op_error("permute", "the number of dims must equal the input's number of dimensions",
                       expect=f"{ndim} dims", actual=f"dims={perm} for input {input._data.shape}",
                       hint="pass one entry per dimension")
    perm = tuple(normalize_axis("permute", d, ndim) for d in perm)
    if ndim == 0:
        return apply(PERMUTE, input, perm=())
    _infer_permute(Spec(input._data.shape, input._data.dtype), perm=perm)
    return apply(PERMUTE, input, perm=perm)


@tensor_method(names=["transpose", "swapaxes", "swapdims"])
def transpose(input: Tensor, dim0: int, dim1: int) -> Tensor:
    """Swap two dimensions (a view). ``swapaxes`` and ``swapdims`` are aliases.

    >>> import suanli
    >>> suanli.zeros(2, 3, 4).transpose(0, -1).shape
    (4, 3, 2)
    """
    ndim = input._data.ndim
    d0, d1 = normalize_axis("transpose", dim0, ndim), normalize_axis("transpose", dim1, ndim)
    perm = list(range(ndim))
    if ndim:
        perm[d0], perm[d1] = perm[d1], perm[d0]
    return apply(PERMUTE, input, perm=tuple(perm))


swapaxes = swapdims = transpose


@tensor_method(names=["movedim", "moveaxis"])
def movedim(input: Tensor, source: Any, destination: Any) -> Tensor:
    """Move dims ``source`` to positions ``destination`` (ints or sequences); others keep their order.

    >>> import suanli
    >>> suanli.zeros(2, 3, 4).movedim(0, -1).shape
    (3, 4, 2)
    """
    ndim = input._data.ndim
    src = (source,) if isinstance(source, int) else tuple(source)
    dst = (destination,) if isinstance(destination, int) else tuple(destination)
    if len(src) != len(dst):
        raise op_error("movedim", "source and destination must have the same number of dims",
                       actual=f"source={source}, destination={destination}")
    src = tuple(normalize_axis("movedim", d, ndim) for d in src)
    dst = tuple(normalize_axis("movedim", d, ndim) for d in dst)
    if len(set(src)) != len(src) or len(set(dst)) != len(dst):
        raise op_error("movedim", "repeated dim in source or destination",
                       actual=f"source={source}, destination={destination}")
    if ndim == 0:
        return apply(PERMUTE, input, perm=())
    rest = iter(d for d in range(ndim) if d not in src)
    where = dict(zip(dst, src))
    perm = tuple(where[i] if i in where else next(rest) for i in range(ndim))
    return apply(PERMUTE, input, perm=perm)


moveaxis = movedim


@tensor_method
def t(input: Tensor) -> Tensor:
    """Transpose a tensor of at most 2 dims (0-d and 1-d come back as they are).

    >>> import suanli
    >>> suanli.zeros(2, 3).t().shape
    (3, 2)
    """
    if input._data.ndim > 2:
        raise op_error("t", "expects a tensor with <= 2 dimensions", actual=f"shape {input._data.shape}",
                       hint="use transpose(dim0, dim1) or .mT for batched matrices")
    return transpose(input, 0, -1) if input._data.ndim == 2 else input


def _T(self: Tensor) -> Tensor:
    """All dimensions reversed (``x.permute(*reversed(range(x.ndim)))``)."""
    return apply(PERMUTE, self, perm=tuple(range(self._data.ndim - 1, -1, -1)))


def _mT(self: Tensor) -> Tensor:
    """The last two dimensions swapped (batched matrix transpose)."""
    if self._data.ndim < 2:
        raise op_error("mT", "expects a tensor with at least 2 dimensions", actual=f"shape {self._data.shape}")
    return transpose(self, -2, -1)


@tensor_method
def adjoint(input: Tensor) -> Tensor:
    """The conjugate transpose of the last two dims (a plain transpose: suanli has no complex)."""
    return _mT(input)


Tensor.T = property(_T)      # type: ignore[attr-defined]
Tensor.mT = property(_mT)    # type: ignore[attr-defined]


# ------------------------------------------------------------------------- squeeze / unsqueeze
@tensor_method
def squeeze(input: Tensor, dim: Any = None) -> Tensor:
    """Remove size-1 dims (all, or those in ``dim``; dims of another size are left alone).

    >>> import suanli
    >>> suanli.zeros(1, 2, 1).squeeze().shape, suanli.zeros(1, 2, 1).squeeze((0, 1)).shape
    ((2,), (2, 1))
    """
    shape = input._data.shape
    if dim is None:
        dims = set(range(len(shape)))
    else:
        dims = {normalize_axis("squeeze", d, len(shape)) for d in ((dim,) if isinstance(dim, int) else dim)}
    new = tuple(s for i, s in enumerate(shape) if not (i in dims and s == 1))
    return reshape(input, new)


@tensor_method
def unsqueeze(input: Tensor, dim: int) -> Tensor:
    """Insert a size-1 dim at position ``dim`` (in ``[-ndim-1, ndim]``).

    >>> import suanli
    >>> suanli.zeros(2, 3).unsqueeze(-1).shape
    (2, 3, 1)
    """
    shape = input._data.shape
    d = normalize_axis("unsqueeze", dim, len(shape) + 1)
    return apply(RESHAPE, input, shape=shape[:d] + (1,) + shape[d:])


@tensor_method
def flatten(input: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Merge dims ``start_dim..end_dim`` into one (a 0-d tensor becomes 1-d).

    >>> import suanli
    >>> suanli.zeros(2, 3, 4).flatten(1).shape
    (2, 12)
    """
    shape = input._data.shape
    if not shape:
        return reshape(input, (1,))
    s = normalize_axis("flatten", start_dim, len(shape))
    e = normalize_axis("flatten", end_dim, len(shape))
    if s > e:
        raise op_error("flatten", "start_dim cannot come after end_dim",
                       actual=f"start_dim={start_dim}, end_dim={end_dim} for shape {shape}")
    return reshape(input, shape[:s] + (math.prod(shape[s:e + 1]),) + shape[e + 1:])


@tensor_method
def ravel(input: Tensor) -> Tensor:
    """All elements as a 1-d tensor."""
    return reshape(input, (-1,))


@tensor_method
def unflatten(input: Tensor, dim: int, sizes: Sequence[int]) -> Tensor:
    """Split dim ``dim`` into ``sizes`` (one entry may be -1).

    >>> import suanli
    >>> suanli.zeros(2, 12).unflatten(1, (3, -1)).shape
    (2, 3, 4)
    """
    shape = input._data.shape
    d = normalize_axis("unflatten", dim, len(shape))
    sizes = resolve_shape("unflatten", (shape[d],) if shape else (), tuple(int(s) for s in sizes))
    return reshape(input, shape[:d] + sizes + shape[d + 1:])


# ------------------------------------------------------------------------------ basic slicing
# The key of the ``slice`` primitive is a tuple over the input's leading dims (the rest are kept
# whole); each entry is ``None`` (new size-1 dim), an int (select, already non-negative) or a
# ``(start, stop, step)`` triple with 0 <= start <= stop <= size and step >= 1.
def _np_key(key: tuple) -> tuple:
    return tuple(slice(*e) if isinstance(e, tuple) else e for e in key) + (Ellipsis,)


def _slice_impl(x, *, key):
    return x[_np_key(key)]


def _slice_shape(op: str, shape: tuple[int, ...], key: tuple) -> tuple[int, ...]:
    out: list[int] = []
    d = 0
    for e in key:
        if e is None:
            out.append(1)
            continue
        if d >= len(shape):
            raise op_error(op, "too many indices", actual=f"key {key} for shape {shape}", cls=IndexError)  # type: ignore[arg-type]
        n = shape[d]
        if isinstance(e, tuple):
            start, stop, step = e
            if not (0 <= start <= stop <= n and step >= 1):
                raise op_error(op, "slice out of range", actual=f"{e} for dim {d} of size {n}",
                               cls=IndexError)  # type: ignore[arg-type]
            out.append(len(range(start, stop, step)))
        elif not 0 <= e < n:
            raise op_error(op, f"index {e} is out of bounds for dimension {d} with size {n}",
                           cls=IndexError)  # type: ignore[arg-type]
        d += 1
    return tuple(out) + tuple(shape[d:])


def _infer_slice(x: Spec, *, key) -> Spec:
    return Spec(_slice_shape("slice", tuple(x.shape), key), x.dtype)


def _slice_vjp(ctx, g):
    from .indexing import INDEX_PUT
    x = ctx.inputs[0]
    # a 0-stride zero stand-in: index_put's copy is then the only full-size pass
    zeros = _wrap(np.broadcast_to(np.zeros((), g._data.dtype), x._data.shape))
    return (apply(INDEX_PUT, zeros, g, basic=ctx.attrs["key"], adv=(), accumulate=False),)


def _slice_jvp(ctx, t):
    return apply(SLICE, t[0], key=ctx.attrs["key"])


SLICE = defprim("slice", _slice_impl, _infer_slice, vjp=_slice_vjp, jvp=_slice_jvp, view=True,
                save_inputs=False, upcast_half=False,
                doc="basic indexing (ints, slices with step >= 1, None): a view")


def slice_dim(input: Tensor, dim: int, start: int, stop: int, step: int = 1) -> Tensor:
    """``input[..., start:stop:step, ...]`` along one (non-negative) ``dim``: a view. Internal helper."""
    key = tuple((0, n, 1) for n in input._data.shape[:dim]) + ((start, stop, step),)
    return apply(SLICE, input, key=key)


def select_dim(input: Tensor, dim: int, index: int) -> Tensor:
    """``input[..., index, ...]`` along one (non-negative) ``dim``: a view. Internal helper."""
    key = tuple((0, n, 1) for n in input._data.shape[:dim]) + (index,)
    return apply(SLICE, input, key=key)


@tensor_method
def narrow(input: Tensor, dim: int, start: Any, length: int) -> Tensor:
    """Elements ``start .. start+length-1`` along ``dim`` (a view; ``start`` may be negative).

    >>> import suanli
    >>> suanli.arange(6).narrow(0, -4, 2).tolist()
    [2, 3]
    """
    shape = input._data.shape
    d = normalize_axis("narrow", dim, len(shape))
    n = shape[d] if shape else 1
    start, length = operator.index(start), operator.index(length)
    if not -n <= start <= n:
        raise op_error("narrow", "start out of range", expect=f"start in [{-n}, {n}]",
                       actual=f"start={start} for dim {dim} of size {n}", cls=IndexError)  # type: ignore[arg-type]
    start = start % n if start < 0 else start
    if length < 0 or start + length > n:
        raise op_error("narrow", "start + length exceeds the dimension size",
                       actual=f"start={start}, length={length} for dim {dim} of size {n}")
    return slice_dim(input, d, start, start + length)


@tensor_method
def split(tensor: Tensor, split_size_or_sections: Any, dim: int = 0) -> tuple[Tensor, ...]:
    """Split along ``dim`` into pieces of ``split_size`` (the last may be smaller) or of the given
    list of sizes (which must add up to the dim's size). Pieces are views.

    >>> import suanli
    >>> [p.tolist() for p in suanli.arange(5).split(2)]
    [[0, 1], [2, 3], [4]]
    >>> [p.shape for p in suanli.zeros(2, 5).split([1, 4], dim=1)]
    [(2, 1), (2, 4)]
    """
    shape = tensor._data.shape
    d = normalize_axis("split", dim, len(shape))
    n = shape[d]
    if isinstance(split_size_or_sections, (int, np.integer)):
        size = int(split_size_or_sections)
        if size < 0 or (size == 0 and n != 0):
            raise op_error("split", "split_size must be a positive integer",
                           actual=f"split_size={size} for dim {dim} of size {n}", cls=ValueError)  # type: ignore[arg-type]
        sizes = [size] * (n // size) + ([n % size] if n % size else []) if size else [0]
        if not sizes:
            sizes = [0]
    else:
        sizes = [operator.index(s) for s in split_size_or_sections]
        if sum(sizes) != n or any(s < 0 for s in sizes):
            raise op_error("split", "split sizes must be non-negative and add up to the dimension size",
                           expect=f"sum == {n} (dim {dim} of shape {shape})", actual=f"sizes {sizes}")
    out, start = [], 0
    for s in sizes:
        out.append(slice_dim(tensor, d, start, start + s))
        start += s
    return tuple(out)


@tensor_method
def chunk(input: Tensor, chunks: int, dim: int = 0) -> tuple[Tensor, ...]:
    """Split into ``chunks`` pieces of size ``ceil(n / chunks)`` (possibly fewer pieces).

    >>> import suanli
    >>> [p.tolist() for p in suanli.arange(5).chunk(3)]
    [[0, 1], [2, 3], [4]]
    """
    if chunks <= 0:
        raise op_error("chunk", "chunks must be a positive integer", actual=f"chunks={chunks}",
                       cls=ValueError)  # type: ignore[arg-type]
    shape = input._data.shape
    d = normalize_axis("chunk", dim, len(shape))
    n = shape[d]
    if n == 0:
        return tuple(slice_dim(input, d, 0, 0) for _ in range(chunks))
    return split(input, -(-n // chunks), d)


@tensor_method
def unbind(input: Tensor, dim: int = 0) -> tuple[Tensor, ...]:
    """All slices along ``dim``, with that dim removed (views).

    >>> import suanli
    >>> [r.tolist() for r in suanli.arange(4).reshape(2, 2).unbind(1)]
    [[0, 2], [1, 3]]
    """
    d = normalize_axis("unbind", dim, input._data.ndim)
    return tuple(select_dim(input, d, i) for i in range(input._data.shape[d]))


# ---------------------------------------------------------------------------------------- cat
def _cat_impl(*xs, axis):
    return np.concatenate(xs, axis=axis)


def _infer_cat(*xs: Spec, axis) -> Spec:
    if not xs:
        raise op_error("cat", "expects a non-empty list of tensors")
    dtype = xs[0].dtype
    first = tuple(xs[0].shape)
    for s in xs:
        if s.dtype != dtype:
            raise op_error("cat", "inputs must share one dtype (the public function promotes)",
                           actual=spec_str(*xs), cls=DTypeError)
        if len(s.shape) != len(first) or any(a != b for i, (a, b) in enumerate(zip(s.shape, first)) if i != axis):
            raise op_error("cat", f"sizes of tensors must match except in dimension {axis}",
                           expect=f"every shape equal to {first} outside dim {axis}",
                           actual="shapes " + ", ".join(str(tuple(x.shape)) for x in xs),
                           hint="reshape/pad the odd one out, or concatenate along another dim")
    return Spec(first[:axis] + (sum(s.shape[axis] for s in xs),) + first[axis + 1:], dtype)


def _cat_vjp(ctx, g):
    axis = ctx.attrs["axis"]
    grads, start = [], 0
    for x, need in zip(ctx.inputs, ctx.needs):
        n = x._data.shape[axis]
        grads.append(slice_dim(g, axis, start, start + n) if need else None)
        start += n
    return tuple(grads)


def _cat_jvp(ctx, t):
    if all(ti is None for ti in t):
        return None
    return apply(CAT, *[_tangent_or_zeros(ti, x) for ti, x in zip(t, ctx.inputs)], axis=ctx.attrs["axis"])


CAT = defprim("cat", _cat_impl, _infer_cat, vjp=_cat_vjp, jvp=_cat_jvp, save_inputs=False, upcast_half=False)


def _tensor_list(op: str, tensors: Any) -> list[Tensor]:
    if isinstance(tensors, Tensor) or not isinstance(tensors, (list, tuple)):
        raise op_error(op, "expects a list or tuple of tensors", actual=type(tensors).__name__,
                       cls=DTypeError)
    if not tensors:
        raise op_error(op, "expects a non-empty list of tensors", cls=ValueError)  # type: ignore[arg-type]
    for i, t in enumerate(tensors):
        if not isinstance(t, Tensor):
            raise op_error(op, f"entry {i} is not a tensor", actual=type(t).__name__, cls=DTypeError)
    return list(tensors)


def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Concatenate along an existing ``dim``; dtypes promote as in torch (int + float -> float).

    Legacy 1-d empty tensors (shape ``(0,)``) are skipped, as torch does.

    >>> import suanli
    >>> suanli.cat([suanli.tensor([1, 2]), suanli.tensor([3.5])]).tolist()
    [1.0, 2.0, 3.5]
    """
    tensors = _tensor_list("cat", tensors)
    dtype = _dt.result_type(*tensors)
    kept = [t for t in tensors if t._data.shape != (0,)] or tensors[:1]
    ndim = kept[0]._data.ndim
    if ndim == 0:
        raise op_error("cat", "zero-dimensional tensors cannot be concatenated",
                       actual="shapes " + ", ".join(str(t._data.shape) for t in tensors),
                       hint="use stack, or unsqueeze(0) them first")
    axis = normalize_axis("cat", dim, ndim)
    kept = [t if t._data.dtype == dtype else t.to(dtype) for t in kept]
    _infer_cat(*[Spec(t._data.shape, t._data.dtype) for t in kept], axis=axis)
    return apply(CAT, *kept, axis=axis)


concat = concatenate = cat


def stack(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Join equally-shaped tensors along a new dim ``dim``.

    >>> import suanli
    >>> suanli.stack([suanli.zeros(2, 3), suanli.ones(2, 3)], dim=1).shape
    (2, 2, 3)
    """
    tensors = _tensor_list("stack", tensors)
    shape = tensors[0]._data.shape
    for i, t in enumerate(tensors):
        if t._data.shape != shape:
            raise op_error("stack", "expects each tensor to be equal size",
                           expect=f"every shape {shape} (entry 0)",
                           actual=f"shape {t._data.shape} at entry {i}; all shapes: "
                           + ", ".join(str(x._data.shape) for x in tensors))
    d = normalize_axis("stack", dim, len(shape) + 1)
    new = shape[:d] + (1,) + shape[d:]
    return cat([reshape(t, new) for t in tensors], d)


def hstack(tensors: Sequence[Tensor]) -> Tensor:
    """Concatenate along dim 1 (dim 0 for 1-d tensors)."""
    tensors = [t if t._data.ndim else reshape(t, (1,)) for t in _tensor_list("hstack", tensors)]
    return cat(tensors, 0 if tensors[0]._data.ndim == 1 else 1)


def vstack(tensors: Sequence[Tensor]) -> Tensor:
    """Concatenate along dim 0 after making every tensor at least 2-d."""
    tensors = _tensor_list("vstack", tensors)
    return cat([reshape(t, (1, -1)) if t._data.ndim < 2 else t for t in tensors], 0)


# ---------------------------------------------------------------------------------------- pad
# The ``pad`` primitive pads with a constant; a negative amount crops. ``pads`` has one
# ``(before, after)`` pair per input dim. The other modes gather with index arrays (see pad()).
def _pad_impl(x, *, pads, value):
    crop = tuple(slice(max(-lo, 0), x.shape[i] - max(-hi, 0)) for i, (lo, hi) in enumerate(pads))
    x = x[crop]
    widths = tuple((max(lo, 0), max(hi, 0)) for lo, hi in pads)
    if not any(lo or hi for lo, hi in widths):
        return x.copy()
    out = np.full(tuple(n + lo + hi for n, (lo, hi) in zip(x.shape, widths)), value, dtype=x.dtype)
    out[tuple(slice(lo, lo + n) for n, (lo, _) in zip(x.shape, widths))] = x
    return out


def _infer_pad(x: Spec, *, pads, value) -> Spec:
    if len(pads) != len(x.shape):
        raise op_error("pad", "one (before, after) pair per dimension", actual=f"pads {pads} for {tuple(x.shape)}")
    out = tuple(n + lo + hi for n, (lo, hi) in zip(x.shape, pads))
    if any(s < 0 for s in out):
        raise op_error("pad", "negative padding crops more elements than the dimension has",
                       actual=f"input {tuple(x.shape)} with pads {pads} gives {out}")
    return Spec(out, x.dtype)


def _pad_vjp(ctx, g):
    pads = tuple((-lo, -hi) for lo, hi in ctx.attrs["pads"])
    return (apply(PAD, g, pads=pads, value=0),)


def _pad_jvp(ctx, t):
    return apply(PAD, t[0], pads=ctx.attrs["pads"], value=0)


PAD = defprim("pad", _pad_impl, _infer_pad, vjp=_pad_vjp, jvp=_pad_jvp, save_inputs=False, upcast_half=False)

_PAD_MODES = ("constant", "reflect", "replicate", "circular")


def _pad_index(mode: str, n: int, lo: int, hi: int, dim: int, shape: tuple[int, ...]) -> np.ndarray:
    """Source positions for one padded dim: ``arange(-lo, n + hi)`` mapped back into ``[0, n)``."""
    pos = np.arange(-lo, n + hi)
    if mode == "reflect":
        if lo >= n or hi >= n:
            raise op_error("pad", "reflect padding must be smaller than the dimension size",
                           expect=f"padding < {n}", actual=f"padding ({lo}, {hi}) at dim {dim} of input {shape}")
        pos = np.abs(pos)
        return np.where(pos >= n, 2 * (n - 1) - pos, pos)
    if mode == "replicate":
        if n == 0 and (lo > 0 or hi > 0):
            raise op_error("pad", "replicate padding needs a non-empty dimension",
                           actual=f"dim {dim} of input {shape} is empty")
        return np.clip(pos, 0, n - 1)
    if lo > n or hi > n:
        raise op_error("pad", "circular padding must not exceed the dimension size",
                       expect=f"padding <= {n}", actual=f"padding ({lo}, {hi}) at dim {dim} of input {shape}")
    return pos % max(n, 1)


def pad(input: Tensor, pad: Sequence[int], mode: str = "constant", value: Any = None) -> Tensor:
    """torch.nn.functional.pad: ``pad = (left_last, right_last, left_2nd_last, right_2nd_last, ...)``.

    Modes: ``'constant'`` (with ``value``, default 0; negative amounts crop), ``'reflect'`` (mirror
    without repeating the edge), ``'replicate'`` (repeat the edge), ``'circular'`` (wrap around).
    Unlike torch, the non-constant modes work for any number of padded dims.

    >>> import suanli
    >>> x = suanli.tensor([1, 2, 3])
    >>> pad(x, (2, 1)).tolist(), pad(x, (2, 1), mode="reflect").tolist()
    ([0, 0, 1, 2, 3, 0], [3, 2, 1, 2, 3, 2])
    >>> pad(x, (2, 1), mode="replicate").tolist(), pad(x, (2, 1), mode="circular").tolist()
    ([1, 1, 1, 2, 3, 3], [2, 3, 1, 2, 3, 1])
    """
    shape = input._data.shape
    pad = tuple(operator.index(p) for p in pad)
    if len(pad) % 2 or len(pad) // 2 > len(shape):
        raise op_error("pad", "the padding tuple must have an even length of at most 2 * ndim",
                       expect=f"(left, right) pairs for up to {len(shape)} trailing dims",
                       actual=f"pad={pad} for input {shape}")
    if mode not in _PAD_MODES:
        raise op_error("pad", f"unknown mode {mode!r}", expect=f"one of {_PAD_MODES}", cls=ValueError)  # type: ignore[arg-type]
    pairs = [(0, 0)] * len(shape)
    for k in range(len(pad) // 2):
        pairs[len(shape) - 1 - k] = (pad[2 * k], pad[2 * k + 1])
    pairs = tuple(pairs)
    if mode == "constant":
        value = 0 if value is None else value
        if isinstance(value, Tensor):
            value = value.item()
        _infer_pad(Spec(shape, input._data.dtype), pads=pairs, value=value)
        if input._data.dtype not in _dt.FLOATING and isinstance(value, float):
            value = int(value)
        return apply(PAD, input, pads=pairs, value=value)
    if value not in (None, 0):
        raise op_error("pad", f"padding mode {mode!r} does not take a value", actual=f"value={value}",
                       cls=ValueError)  # type: ignore[arg-type]
    from .indexing import index_dim
    out = input
    for d, (lo, hi) in enumerate(pairs):
        if lo or hi:
            idx = _pad_index(mode, shape[d], lo, hi, d, shape)
            out = index_dim(out, d, _wrap(idx.astype(np.int64)))
    return out if out is not input else apply(PAD, input, pads=pairs, value=0)


# --------------------------------------------------------------------------------- flip / roll
def _flip_impl(x, *, dims):
    return np.flip(x, dims).copy()


def _infer_flip(x: Spec, *, dims) -> Spec:
    return Spec(tuple(x.shape), x.dtype)


def _flip_vjp(ctx, g):
    return (apply(FLIP, g, dims=ctx.attrs["dims"]),)


def _flip_jvp(ctx, t):
    return apply(FLIP, t[0], dims=ctx.attrs["dims"])


FLIP = defprim("flip", _flip_impl, _infer_flip, vjp=_flip_vjp, jvp=_flip_jvp, save_inputs=False,
               upcast_half=False)


@tensor_method
def flip(input: Tensor, *dims: Any) -> Tensor:
    """Reverse the order of elements along ``dims`` (a copy, as in torch).

    >>> import suanli
    >>> suanli.arange(4).reshape(2, 2).flip(0, 1).tolist()
    [[3, 2], [1, 0]]
    """
    ndim = input._data.ndim
    axes = tuple(normalize_axis("flip", d, ndim) for d in _dims_arg("flip", dims))
    if len(set(axes)) != len(axes):
        raise op_error("flip", "a dimension appears more than once", actual=f"dims={dims}")
    if ndim == 0:
        axes = ()
    return apply(FLIP, input, dims=axes)


@tensor_method
def fliplr(input: Tensor) -> Tensor:
    """Flip dim 1 (left/right)."""
    if input._data.ndim < 2:
        raise op_error("fliplr", "input must be at least 2-d", actual=f"shape {input._data.shape}")
    return flip(input, 1)


@tensor_method
def flipud(input: Tensor) -> Tensor:
    """Flip dim 0 (up/down)."""
    if input._data.ndim < 1:
        raise op_error("flipud", "input must be at least 1-d", actual="a 0-d tensor")
    return flip(input, 0)


def _roll_impl(x, *, shifts, dims):
    return np.roll(x, shifts, dims) if x.size else x.copy()


def _infer_roll(x: Spec, *, shifts, dims) -> Spec:
    if len(shifts) != len(dims):
        raise op_error("roll", "shifts and dims must have the same length", actual=f"shifts={shifts}, dims={dims}")
    return Spec(tuple(x.shape), x.dtype)


def _roll_vjp(ctx, g):
    return (apply(ROLL, g, shifts=tuple(-s for s in ctx.attrs["shifts"]), dims=ctx.attrs["dims"]),)


def _roll_jvp(ctx, t):
    return apply(ROLL, t[0], **ctx.attrs)


ROLL = defprim("roll", _roll_impl, _infer_roll, vjp=_roll_vjp, jvp=_roll_jvp, save_inputs=False,
               upcast_half=False)


@tensor_method
def roll(input: Tensor, shifts: Any, dims: Any = None) -> Tensor:
    """Rotate elements by ``shifts`` along ``dims``; with ``dims=None`` the tensor is flattened,
    rolled and reshaped back.

    >>> import suanli
    >>> suanli.arange(4).roll(1).tolist(), suanli.arange(4).reshape(2, 2).roll(1, 1).tolist()
    ([3, 0, 1, 2], [[1, 0], [3, 2]])
    """
    shifts = (shifts,) if isinstance(shifts, (int, np.integer)) else tuple(shifts)
    shifts = tuple(operator.index(s) for s in shifts)
    if dims is None:
        if len(shifts) != 1:
            raise op_error("roll", "with dims=None, shifts must be a single int",
                           actual=f"shifts={shifts}", cls=ValueError)  # type: ignore[arg-type]
        flat = reshape(input, (-1,))
        return reshape(apply(ROLL, flat, shifts=shifts, dims=(0,)), input._data.shape)
    dims = (dims,) if isinstance(dims, (int, np.integer)) else tuple(dims)
    if len(dims) != len(shifts):
        raise op_error("roll", "shifts and dims must have the same length",
                       actual=f"shifts={shifts}, dims={dims}", cls=ValueError)  # type: ignore[arg-type]
    ndim = input._data.ndim
    axes = tuple(normalize_axis("roll", d, ndim) for d in dims)
    if ndim == 0:
        return apply(ROLL, reshape(input, (1,)), shifts=shifts[:1], dims=(0,)).reshape(())
    return apply(ROLL, input, shifts=shifts, dims=axes)


# -------------------------------------------------------------------------------- tril / triu
def _tril_impl(x, *, k):
    return np.tril(x, k)


def _triu_impl(x, *, k):
    return np.triu(x, k)


def _infer_tri(x: Spec, *, k) -> Spec:
    if len(x.shape) < 2:
        raise op_error("tril/triu", "input must have at least 2 dimensions", actual=f"shape {tuple(x.shape)}",
                       hint="unsqueeze a 1-d tensor first")
    return Spec(tuple(x.shape), x.dtype)


def _tril_vjp(ctx, g):
    return (apply(TRIL, g, k=ctx.attrs["k"]),)


def _tril_jvp(ctx, t):
    return apply(TRIL, t[0], k=ctx.attrs["k"])


def _triu_vjp(ctx, g):
    return (apply(TRIU, g, k=ctx.attrs["k"]),)


def _triu_jvp(ctx, t):
    return apply(TRIU, t[0], k=ctx.attrs["k"])


TRIL = defprim("tril", _tril_impl, _infer_tri, vjp=_tril_vjp, jvp=_tril_jvp, save_inputs=False, upcast_half=False)
TRIU = defprim("triu", _triu_impl, _infer_tri, vjp=_triu_vjp, jvp=_triu_jvp, save_inputs=False, upcast_half=False)


@tensor_method
def tril(input: Tensor, diagonal: int = 0) -> Tensor:
    """Zero the elements above the ``diagonal``-th diagonal of the last two dims.

    >>> import suanli
    >>> suanli.ones(2, 2).tril().tolist()
    [[1.0, 0.0], [1.0, 1.0]]
    """
    _infer_tri(Spec(input._data.shape, input._data.dtype), k=diagonal)
    return apply(TRIL, input, k=operator.index(diagonal))


@tensor_method
def triu(input: Tensor, diagonal: int = 0) -> Tensor:
    """Zero the elements below the ``diagonal``-th diagonal of the last two dims.

    >>> import suanli
    >>> suanli.ones(2, 2).triu(1).tolist()
    [[0.0, 1.0], [0.0, 0.0]]
    """
    _infer_tri(Spec(input._data.shape, input._data.dtype), k=diagonal)
    return apply(TRIU, input, k=operator.index(diagonal))


# ---------------------------------------------------------------------------------- diagonal
def _diag_geometry(shape: tuple[int, ...], offset: int, a1: int, a2: int) -> tuple[int, int, int]:
    """(first row, first column, length) of the ``offset`` diagonal of dims a1 x a2."""
    r0, c0 = max(-offset, 0), max(offset, 0)
    return r0, c0, max(0, min(shape[a1] - r0, shape[a2] - c0))


def _diagonal_impl(x, *, offset, dim1, dim2):
    r0, c0, n = _diag_geometry(x.shape, offset, dim1, dim2)
    if n == 0:
        r0 = c0 = 0
    start = [slice(None)] * x.ndim
    start[dim1], start[dim2] = slice(r0, None), slice(c0, None)
    base = x[tuple(start)]     # a view whose [0, 0] is the diagonal's first element
    keep = [d for d in range(x.ndim) if d not in (dim1, dim2)]
    shape = tuple(x.shape[d] for d in keep) + (n,)
    strides = tuple(x.strides[d] for d in keep) + (x.strides[dim1] + x.strides[dim2],)
    # as_strided (unlike np.diagonal) keeps the view writeable, as torch's diagonal is
    return np.lib.stride_tricks.as_strided(base, shape, strides, writeable=base.flags.writeable)


def _infer_diagonal(x: Spec, *, offset, dim1, dim2) -> Spec:
    shape = tuple(x.shape)
    if len(shape) < 2 or dim1 == dim2:
        raise op_error("diagonal", "needs two different dims of a tensor with at least 2 dims",
                       actual=f"dim1={dim1}, dim2={dim2} for shape {shape}")
    n = _diag_geometry(shape, offset, dim1, dim2)[2]
    return Spec(tuple(s for d, s in enumerate(shape) if d not in (dim1, dim2)) + (n,), x.dtype)


def _diagonal_vjp(ctx, g):
    from .indexing import INDEX_PUT
    x = ctx.inputs[0]
    shape = x._data.shape
    offset, a1, a2 = ctx.attrs["offset"], ctx.attrs["dim1"], ctx.attrs["dim2"]
    r0, c0, n = _diag_geometry(shape, offset, a1, a2)
    rows, cols = _wrap(np.arange(r0, r0 + n)), _wrap(np.arange(c0, c0 + n))
    lo, hi = min(a1, a2), max(a1, a2)
    adv = tuple(-1 if d not in (a1, a2) else (0 if d == a1 else 1) for d in range(hi + 1))
    # advanced indices on dims a1, a2 put their dim at `lo` when adjacent, else in front
    g = movedim(g, -1, lo if hi - lo == 1 else 0)
    return (apply(INDEX_PUT, _zeros(shape, g._data.dtype), g, rows, cols, basic=(), adv=adv,
                  accumulate=False),)


def _diagonal_jvp(ctx, t):
    return apply(DIAGONAL, t[0], **ctx.attrs)


DIAGONAL = defprim("diagonal", _diagonal_impl, _infer_diagonal, vjp=_diagonal_vjp, jvp=_diagonal_jvp,
                   view=True, save_inputs=False, upcast_half=False)


@tensor_method
def diagonal(input: Tensor, offset: int = 0, dim1: int = 0, dim2: int = 1) -> Tensor:
    """The ``offset`` diagonal of dims ``dim1`` x ``dim2``, appended as the last dim (a view).

    >>> import suanli
    >>> suanli.arange(9).reshape(3, 3).diagonal(1).tolist()
    [1, 5]
    """
    ndim = input._data.ndim
    a1, a2 = normalize_axis("diagonal", dim1, ndim), normalize_axis("diagonal", dim2, ndim)
    _infer_diagonal(Spec(input._data.shape, input._data.dtype), offset=offset, dim1=a1, dim2=a2)
    return apply(DIAGONAL, input, offset=operator.index(offset), dim1=a1, dim2=a2)


# ------------------------------------------------------------------- repeat / tile / interleave
@tensor_method
def repeat(input: Tensor, *sizes: Any) -> Tensor:
    """Tile the tensor ``sizes[i]`` times along dim i (``Tensor.repeat``; leading new dims allowed).

    >>> import suanli
    >>> suanli.tensor([1, 2]).repeat(2, 2).tolist()
    [[1, 2, 1, 2], [1, 2, 1, 2]]
    """
    sizes = _shape_arg(sizes)
    shape = input._data.shape
    if len(sizes) < len(shape):
        raise op_error("repeat", "the number of repeat dims can not be smaller than the tensor's dims",
                       expect=f">= {len(shape)} sizes", actual=f"sizes={sizes} for shape {shape}",
                       hint="use tile() to repeat only the trailing dims")
    if any(s < 0 for s in sizes):
        raise op_error("repeat", "repeats must be non-negative", actual=f"sizes={sizes}", cls=ValueError)  # type: ignore[arg-type]
    shape = (1,) * (len(sizes) - len(shape)) + shape
    # (a, b) x (r0, r1): view as (1, a, 1, b), expand to (r0, a, r1, b), merge pairs -> (r0*a, r1*b)
    inter = tuple(v for s in shape for v in (1, s))
    big = tuple(v for r, s in zip(sizes, shape) for v in (r, s))
    out = reshape(expand(reshape(input, inter), big), tuple(r * s for r, s in zip(sizes, shape)))
    return out if any(r != 1 for r in sizes) else _fresh(out)     # (the reshape of an expand copies)


def _fresh(x: Tensor) -> Tensor:
    """A copy, for ops that torch defines to copy even when nothing moves (repeat by 1...)."""
    from .elementwise import clone
    return clone(x)


@tensor_method
def tile(input: Tensor, dims: Any) -> Tensor:
    """Like :func:`repeat`, but missing leading ``dims`` count as 1.

    >>> import suanli
    >>> suanli.ones(2, 3).tile((2,)).shape
    (2, 6)
    """
    dims = _shape_arg((dims,) if isinstance(dims, int) else tuple(dims))
    dims = (1,) * (input._data.ndim - len(dims)) + dims
    return repeat(input, dims)


@tensor_method
def repeat_interleave(input: Tensor, repeats: Any = None, dim: int | None = None, *,
                      output_size: int | None = None) -> Tensor:
    """Repeat each element ``repeats`` times (an int, or one count per element along ``dim``);
    ``dim=None`` flattens first. ``repeat_interleave(counts)`` gives ``arange`` repeated by counts.

    >>> import suanli
    >>> suanli.tensor([1, 2]).repeat_interleave(2).tolist()
    [1, 1, 2, 2]
    >>> suanli.tensor([[1, 2], [3, 4]]).repeat_interleave(suanli.tensor([1, 2]), dim=0).tolist()
    [[1, 2], [3, 4], [3, 4]]
    """
    if repeats is None:           # repeat_interleave(counts)
        counts = input._data
        return _wrap(np.repeat(np.arange(counts.shape[0]), counts).astype(np.int64))
    if dim is None:
        input, d = reshape(input, (-1,)), 0
    else:
        d = normalize_axis("repeat_interleave", dim, input._data.ndim)
    if input._data.ndim == 0:
        input = reshape(input, (1,))
    n = input._data.shape[d]
    if isinstance(repeats, Tensor) and repeats._data.ndim == 0:
        repeats = int(repeats.item())
    if isinstance(repeats, (int, np.integer)):
        r = int(repeats)
        if r < 0:
            raise op_error("repeat_interleave", "repeats must be non-negative", actual=f"repeats={r}",
                           cls=ValueError)  # type: ignore[arg-type]
        shape = input._data.shape
        x = expand(unsqueeze(input, d + 1), shape[:d + 1] + (r,) + shape[d + 1:])
        out = reshape(x, shape[:d] + (n * r,) + shape[d + 1:])
        return out if r != 1 else _fresh(out)
    counts = np.asarray(repeats._data if isinstance(repeats, Tensor) else repeats)
    if counts.ndim != 1 or counts.shape[0] != n or counts.dtype.kind not in "iu" or (counts < 0).any():
        raise op_error("repeat_interleave", "repeats must be non-negative integers, one per element of dim",
                       expect=f"{n} counts", actual=f"repeats of shape {counts.shape} ({counts.dtype})")
    from .indexing import index_dim
    return index_dim(input, d, _wrap(np.repeat(np.arange(n), counts).astype(np.int64)))

