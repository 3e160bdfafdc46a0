"""Indexing: ``x[key]`` (basic and advanced), ``x[key] = v`` (out of place: :func:`setitem`),
index_put, gather/scatter/scatter_add, index_select/index_add/index_fill, masked_fill, nonzero.

Torch semantics throughout. A key is split in two steps, as torch does:

1. the *basic* part -- ints, slices (step >= 1), ``None``, ``...`` -- is one view (the ``slice``
   primitive in :mod:`suanli.ops.shape`);
2. the *advanced* part -- integer tensors/lists and boolean masks (turned into integer tensors
   with ``nonzero``) -- is one copying ``index`` primitive on that view. Index tensors that sit next
   to each other put their broadcast shape at their place; separated ones put it in front (NumPy's
   rule; unlike NumPy, an int is a basic select and never counts as an advanced index).

Writing (``setitem``, ``index_put``, ``index_add``...) is one ``index_put`` primitive that takes the
same two-step key; its ``accumulate`` flag adds instead of overwriting (repeated indices sum up).
It is also the backward of both reading primitives.

>>> import suanli
>>> x = suanli.arange(12).reshape(3, 4)
>>> x[1], x[:, ::2].shape, x[[0, 2], 1:3].tolist()
(tensor([4, 5, 6, 7]), (3, 2), [[1, 2], [9, 10]])
>>> x[suanli.tensor([False, True, False])].tolist()
[[4, 5, 6, 7]]
"""
from __future__ import annotations

import operator
from typing import Any, Sequence

import numpy as np

from .._config import state
from ..errors import DTypeError, op_error
from ..tensor import Tensor, _wrap
from ._helpers import as_tensor, broadcast_shapes, normalize_axis, sum_to
from .registry import Spec, apply, defprim, tensor_method
from .shape import PAD, SLICE, _np_key, _slice_shape, _zeros, expand, reshape

__all__ = ["index_put", "gather", "scatter", "scatter_add", "index_select", "index_add", "index_fill",
           "take", "take_along_dim", "masked_fill", "masked_select", "nonzero", "argwhere"]


class IndexDTypeError(DTypeError, IndexError):
    """An index of the wrong dtype: a TypeError, and an IndexError like torch raises."""


_INDEX_DTYPE_MSG = "tensors used as indices must be long, int, byte or bool tensors"


def _out_of_bounds(op: str, index: int, dim: int, size: int, negative: bool = True) -> IndexError:
    return op_error(op, f"index {index} is out of bounds for dimension {dim} with size {size}",
                    expect=f"indices in [{-size if negative else 0}, {size - 1}]",
                    cls=IndexError)  # type: ignore[arg-type,return-value]


def _check_range(op: str, idx: np.ndarray, dim: int, size: int, *, negative: bool) -> np.ndarray:
    """Validate integer indices (wrapping negatives if allowed); returns int64 indices in [0, size)."""
    idx = np.asarray(idx)
    lo = -size if negative else 0
    bad = (idx < lo) | (idx >= size)
    if bad.any():
        raise _out_of_bounds(op, int(idx[bad].flat[0]), dim, size, negative)
    if negative:
        idx = np.where(idx < 0, idx + size, idx)
    # always a private copy: the node saves it, and the caller's index tensor may change later
    return idx.astype(np.int64, copy=True)


def _index_of(src: Any, idx: np.ndarray, size: int | None) -> Tensor:
    """``_wrap(idx)``; while compiling, recorded as a function of the index tensor ``src`` (negatives
    wrapped by ``size`` if given), so a plan reads each call's indices instead of freezing them."""
    t = _wrap(idx)
    if state.tracer is not None and isinstance(src, Tensor):
        state.tracer.derive_index(t, src, size)
    return t


# ----------------------------------------------------------------------------- key parsing
def _sequence_as_tuple(key: list) -> bool:
    """torch's legacy rule: a short list holding tensors, sequences, slices, ``...`` or ``None``
    is a tuple of indices, not one index list."""
    if len(key) >= 32:
        return False
    return any(isinstance(e, (Tensor, np.ndarray, list, tuple, slice)) or e is None or e is Ellipsis
               for e in key)


def _classify(op: str, e: Any) -> tuple[str, Any]:
    if e is None:
        return "new", None
    if e is Ellipsis:
        return "ellipsis", None
    if isinstance(e, (bool, np.bool_)):
        return "bool", bool(e)
    if isinstance(e, (int, np.integer)):
        return "int", int(e)
    if isinstance(e, slice):
        return "slice", e
    if isinstance(e, (Tensor, np.ndarray, list, tuple)):
        if isinstance(e, Tensor):
            if state.tracer is not None:
                state.tracer.refuse_index(e)
            arr = e._data
        else:
            arr = np.asarray(e)
            if arr.size == 0 and arr.dtype == np.float64:
                arr = arr.astype(np.int64)        # an empty list selects nothing
        if arr.dtype == np.bool_ or arr.dtype == np.uint8:
            arr = arr.astype(bool)
            return ("bool", bool(arr)) if arr.ndim == 0 else ("mask", arr)
        if arr.dtype.kind in "iu":
            return ("int", int(arr)) if arr.ndim == 0 and isinstance(e, Tensor) else ("array", arr)
        raise IndexDTypeError(f"{op}: {_INDEX_DTYPE_MSG}\n  Actual: index of dtype {arr.dtype}\n"
                              "  help: convert the index with .long() (or compare to get a bool mask)")
    raise op_error(op, "only integers, slices (`:`), ellipsis (`...`), None and long or byte tensors are "
                   f"valid indices (got {type(e).__name__})", cls=IndexDTypeError)


def _norm_slice(op: str, s: slice, n: int) -> tuple[int, int, int]:
    step = 1 if s.step is None else operator.index(s.step)
    if step <= 0:
        raise op_error(op, "step must be greater than zero", actual=f"slice {s}",
                       hint="use flip() to reverse a dimension", cls=ValueError)  # type: ignore[arg-type]
    start = None if s.start is None else operator.index(s.start)
    stop = None if s.stop is None else operator.index(s.stop)
    start, stop, step = slice(start, stop, step).indices(n)
    length = len(range(start, stop, step))
    if length == 0:
        return (0, 0, 1)
    return (start, start + (length - 1) * step + 1, step)


def parse_key(op: str, shape: tuple[int, ...], key: Any) -> tuple[tuple, tuple, list[np.ndarray]]:
    """Split ``key`` into (basic key, advanced key, index arrays).

    The basic key is the ``slice`` primitive's key. The advanced key has one entry per dim of the
    basic result (trailing ones omitted): ``-1`` keeps the dim, ``k >= 0`` indexes it with array k.
    """
    if isinstance(key, tuple):
        entries = list(key)
    elif isinstance(key, list) and _sequence_as_tuple(key):
        entries = list(key)
    else:
        entries = [key]
    items = [_classify(op, e) for e in entries]
    ndim = len(shape)
    consumed = sum(v.ndim if k == "mask" else (k in ("int", "slice", "array")) for k, v in items)
    if sum(k == "ellipsis" for k, _ in items) > 1:
        raise op_error(op, "an index can only have a single ellipsis ('...')", actual=f"key {key!r}",
                       cls=IndexError)  # type: ignore[arg-type]
    if consumed > ndim:
        raise op_error(op, f"too many indices for tensor of dimension {ndim}",
                       actual=f"{consumed} indexed dims for shape {shape}", cls=IndexError)  # type: ignore[arg-type]
    basic: list = []
    dims: list[int | None] = []     # the input dim each basic entry reads (None for new dims)
    adv: list[int] = []
    arrays: list[np.ndarray] = []
    d = 0
    for kind, v in items:
        if kind == "ellipsis":
            for _ in range(ndim - consumed):
                basic.append((0, shape[d], 1))
                dims.append(d)
                adv.append(-1)
                d += 1
        elif kind == "new":
            basic.append(None)
            dims.append(None)
            adv.append(-1)
        elif kind == "bool":          # x[True]: a new dim of size 1, indexed by [0] (or by [] if False)
            basic.append(None)
            dims.append(None)
            adv.append(len(arrays))
            arrays.append(np.zeros(1 if v else 0, np.int64))
        elif kind == "int":
            n = shape[d]
            if not -n <= v < n:
                raise _out_of_bounds(op, v, d, n)
            basic.append(v % n)
            dims.append(d)
            d += 1
        elif kind == "slice":
            basic.append(_norm_slice(op, v, shape[d]))
            dims.append(d)
            adv.append(-1)
            d += 1
        elif kind == "array":
            arrays.append(_check_range(op, v, d, shape[d], negative=True))
            basic.append((0, shape[d], 1))
            dims.append(d)
            adv.append(len(arrays) - 1)
            d += 1
        else:                         # bool mask over v.ndim dims: its nonzero() positions
            if v.shape != tuple(shape[d:d + v.ndim]):
                raise op_error(op, f"the shape of the mask {list(v.shape)} at index {d} does not match the "
                               f"shape of the indexed tensor {list(shape)} at index {d}", cls=IndexError)  # type: ignore[arg-type]
            for nz in np.nonzero(v):
                arrays.append(nz.astype(np.int64))
                basic.append((0, shape[d], 1))
                dims.append(d)
                adv.append(len(arrays) - 1)
                d += 1
    while basic and dims[-1] is not None and basic[-1] == (0, shape[dims[-1]], 1):   # trailing whole dims need no entry
        basic.pop()
        dims.pop()
    if not arrays:
        return tuple(basic), (), []
    try:
        np.broadcast_shapes(*[a.shape for a in arrays])
    except ValueError:
        raise op_error(op, "shape mismatch: indexing tensors could not be broadcast together",
                       actual="index shapes " + ", ".join(str(a.shape) for a in arrays),
                       cls=IndexError) from None  # type: ignore[arg-type]
    while adv and adv[-1] == -1:
        adv.pop()
    return tuple(basic), tuple(adv), arrays


def _adv_key(adv: tuple, idx: Sequence[np.ndarray]) -> tuple:
    return tuple(slice(None) if e < 0 else idx[e] for e in adv)


def _adv_shape(op: str, shape: tuple[int, ...], adv: tuple, idx_shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    """Shape of ``x[adv key]``: adjacent index tensors put their broadcast shape in place, others in front."""
    if len(adv) > len(shape):
        raise op_error(op, "too many indices", actual=f"{len(adv)} for shape {shape}", cls=IndexError)  # type: ignore[arg-type]
    try:
        b = broadcast_shapes(op, *idx_shapes)
    except Exception:
        raise op_error(op, "shape mismatch: indexing tensors could not be broadcast together",
                       actual="index shapes " + ", ".join(str(tuple(s)) for s in idx_shapes),
                       cls=IndexError) from None  # type: ignore[arg-type]
    pos = [i for i, e in enumerate(adv) if e >= 0]
    if pos == list(range(pos[0], pos[-1] + 1)):
        return tuple(shape[:pos[0]]) + b + tuple(shape[pos[-1] + 1:])
    return b + tuple(s for i, s in enumerate(shape) if i not in pos)


def _target_shape(op: str, shape: tuple[int, ...], basic: tuple, adv: tuple,
                  idx_shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    shape = _slice_shape(op, tuple(shape), basic)
    return _adv_shape(op, shape, adv, idx_shapes) if adv else shape


def _require_int(op: str, *specs: Spec) -> None:
    for s in specs:
        if s.dtype.kind not in "iu":
            raise op_error(op, "index tensors must be integer", actual=f"dtype {s.dtype}", cls=IndexDTypeError)


def _after_first(needs: tuple[bool, ...]) -> range:
    """Saved inputs: the index tensors (all inputs but the data)."""
    return range(1, len(needs))


def _after_second(needs: tuple[bool, ...]) -> range:
    return range(2, len(needs))


def _second(needs: tuple[bool, ...]) -> tuple[int, ...]:
    return (1,)


# ------------------------------------------------------------------------------ index (read)
def _index_impl(x, *idx, adv):
    return x[_adv_key(adv, idx)]


def _infer_index(x: Spec, *idx: Spec, adv) -> Spec:
    _require_int("index", *idx)
    return Spec(_adv_shape("index", tuple(x.shape), adv, [tuple(s.shape) for s in idx]), x.dtype)


def _index_vjp(ctx, g):
    x, *idx = ctx.inputs
    gx = apply(INDEX_PUT, _zeros(x._data.shape, g._data.dtype), g, *idx, basic=(), adv=ctx.attrs["adv"],
               accumulate=True)
    return (gx,) + (None,) * len(idx)


def _index_jvp(ctx, t):
    if t[0] is None:
        return None
    return apply(INDEX, t[0], *ctx.inputs[1:], adv=ctx.attrs["adv"])


INDEX = defprim("index", _index_impl, _infer_index, vjp=_index_vjp, jvp=_index_jvp,
                saved_inputs=_after_first, upcast_half=False,
                doc="advanced indexing with integer index tensors (a copy)")


# ------------------------------------------------------------------------- index_put (write)
def _index_put_impl(x, values, *idx, basic, adv, accumulate):
    out = x.copy()
    view = out[_np_key(basic)]
    key = _adv_key(adv, idx) if adv else Ellipsis
    if not accumulate:
        view[key] = values
    elif adv:
        _add_at(view, key, values)
    else:
        view += values
    return out


def _add_at(view: np.ndarray, key: tuple, values: np.ndarray) -> None:
    """``np.add.at(view, key, values)``; rows picked by one 1-d index on the first axis (embedding
    and index_select gradients) are summed by sort + ``reduceat`` instead, ~10x faster, in a fixed
    order (deterministic)."""
    rows = key[0] if len(key) == 1 else None
    if (rows is None or not isinstance(rows, np.ndarray) or rows.ndim != 1 or rows.size < 64
            or values.shape != (rows.size,) + view.shape[1:]):
        np.add.at(view, key, values)
        return
    rows = np.where(rows < 0, rows + view.shape[0], rows)
    order = np.argsort(rows, kind="stable")
    sorted_rows = rows[order]
    starts = np.flatnonzero(np.r_[True, sorted_rows[1:] != sorted_rows[:-1]])
    view[sorted_rows[starts]] += np.add.reduceat(values[order], starts, axis=0)


def _infer_index_put(x: Spec, values: Spec, *idx: Spec, basic, adv, accumulate) -> Spec:
    _require_int("index_put", *idx)
    if values.dtype != x.dtype:
        raise op_error("index_put", "values must have the tensor's dtype (the public function casts)",
                       actual=f"tensor {x.dtype}, values {values.dtype}", cls=DTypeError)
    target = _target_shape("index_put", tuple(x.shape), basic, adv, [tuple(s.shape) for s in idx])
    if not _broadcasts_to(tuple(values.shape), target):
        raise op_error("index_put", "shape mismatch: the values cannot be broadcast to the indexed shape",
                       expect=f"values broadcastable to {target}", actual=f"values {tuple(values.shape)}")
    return Spec(tuple(x.shape), x.dtype)


def _read(g: Tensor, basic: tuple, adv: tuple, idx: Sequence[Tensor]) -> Tensor:
    """``g[key]`` for a parsed key (the two reading primitives)."""
    out = apply(SLICE, g, key=basic) if basic or not adv else g
    return apply(INDEX, out, *idx, adv=adv) if adv else out


def _index_put_vjp(ctx, g):
    x, values, *idx = ctx.inputs
    basic, adv, acc = ctx.attrs["basic"], ctx.attrs["adv"], ctx.attrs["accumulate"]
    gx = gv = None
    if ctx.needs[0]:
        gx = g if acc else apply(INDEX_PUT, g, _zeros((), g._data.dtype), *idx, basic=basic, adv=adv,
                                 accumulate=False)
    if ctx.needs[1]:
        gv = sum_to(_read(g, basic, adv, idx), values._data.shape)
    return (gx, gv) + (None,) * len(idx)


def _index_put_jvp(ctx, t):
    tx, tv = t[0], t[1]
    if tx is None and tv is None:
        return None
    x, values, *idx = ctx.inputs
    if tx is None:
        tx = _zeros(x._data.shape, tv._data.dtype)
    if tv is None:
        tv = _zeros((), tx._data.dtype)
    return apply(INDEX_PUT, tx, tv, *idx, **ctx.attrs)


INDEX_PUT = defprim("index_put", _index_put_impl, _infer_index_put, vjp=_index_put_vjp, jvp=_index_put_jvp,
                    saved_inputs=_after_second, upcast_half=False,
                    doc="out-of-place x[key] = values (accumulate: +=), key as in getitem")


# ------------------------------------------------------------------------------ public: []
@tensor_method("__getitem__")
def getitem(input: Tensor, key: Any) -> Tensor:
    """``input[key]`` with torch semantics. Basic keys (ints, slices, ``None``, ``...``) give a view;
    integer tensors/lists and bool masks give a copy. Gradients flow (repeated indices accumulate).

    >>> import suanli
    >>> x = suanli.arange(6.0).reshape(2, 3).requires_grad_()
    >>> x[0, [0, 0, 2]].sum().backward()
    >>> x.grad.tolist()
    [[2.0, 0.0, 1.0], [0.0, 0.0, 0.0]]
    """
    basic, adv, arrays = parse_key("getitem", input._data.shape, key)
    return _read(input, basic, adv, [_wrap(a) for a in arrays])


def _broadcasts_to(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    if len(shape) > len(target):
        return False
    return all(s in (1, t) for s, t in zip(shape[::-1], target[::-1]))


def _put(op: str, input: Tensor, key: Any, values: Any, accumulate: bool) -> Tensor:
    basic, adv, arrays = parse_key(op, input._data.shape, key)
    v = as_tensor(values, input._data.dtype)
    given = v._data.shape
    target = _target_shape(op, input._data.shape, basic, adv, [a.shape for a in arrays])
    extra = v._data.ndim - len(target)
    if extra > 0 and all(s == 1 for s in v._data.shape[:extra]):
        v = reshape(v, v._data.shape[extra:])     # leading size-1 dims of the values are dropped
    if not _broadcasts_to(v._data.shape, target):
        raise op_error(op, "shape mismatch: the value tensor cannot be broadcast to the indexing result",
                       expect=f"a value broadcastable to {target}",
                       actual=f"value of shape {given}")
    return apply(INDEX_PUT, input, v, *[_wrap(a) for a in arrays], basic=basic, adv=adv,
                 accumulate=bool(accumulate))


def setitem(x: Tensor, key: Any, value: Any) -> Tensor:
    """A new tensor equal to ``x`` with ``x[key] = value`` (what ``x[key] = value`` runs in place).

    Differentiable w.r.t. ``x`` (zero gradient where overwritten) and ``value`` (summed back to
    its shape after broadcasting).

    >>> import suanli
    >>> setitem(suanli.zeros(2, 3), (slice(None), 1), 5.0).tolist()
    [[0.0, 5.0, 0.0], [0.0, 5.0, 0.0]]
    """
    return _put("setitem", x, key, value, False)


@tensor_method
def index_put(input: Tensor, indices: Sequence[Any], values: Any, accumulate: bool = False) -> Tensor:
    """``input[indices] = values`` out of place; ``accumulate=True`` adds (repeats add up).

    >>> import suanli
    >>> i = suanli.tensor([0, 0, 2])
    >>> suanli.zeros(3).index_put((i,), suanli.tensor(1.0), accumulate=True).tolist()
    [2.0, 0.0, 1.0]
    """
    key = tuple(slice(None) if i is None else i for i in indices)    # None: the whole dim, as in torch
    return _put("index_put", input, key, values, accumulate)


@tensor_method
def index_put_(input: Tensor, indices: Sequence[Any], values: Any, accumulate: bool = False) -> Tensor:
    """In-place :func:`index_put`."""
    from .inplace import apply_inplace
    return apply_inplace("index_put_", input, index_put, indices, values, accumulate)


# ------------------------------------------------------------------------ dim-wise indexing
def index_dim(input: Tensor, dim: int, index: Tensor) -> Tensor:
    """``input`` indexed along a non-negative ``dim`` by a checked int64 ``index`` (internal)."""
    return apply(INDEX, input, index, adv=(-1,) * dim + (0,))


def _index_arg(op: str, index: Any, dim: int, size: int, *, negative: bool = False) -> Tensor:
    """A 1-d int64 index tensor, validated against ``size``."""
    if not isinstance(index, Tensor):
        index = as_tensor(index)
    data = index._data
    if data.dtype.kind not in "iu":
        raise op_error(op, "index must be an integer tensor", expect="dtype int64 (or another integer)",
                       actual=f"dtype {data.dtype}", cls=IndexDTypeError)
    if data.ndim > 1:
        raise op_error(op, "index must be a 0-d or 1-d tensor", actual=f"index of shape {data.shape}",
                       cls=IndexError)  # type: ignore[arg-type]
    return _index_of(index, _check_range(op, data.reshape(-1), dim, size, negative=negative),
                     size if negative else None)


@tensor_method
def index_select(input: Tensor, dim: int, index: Tensor) -> Tensor:
    """The entries ``index`` (a 1-d integer tensor) along ``dim``.

    >>> import suanli
    >>> suanli.arange(6).reshape(2, 3).index_select(1, suanli.tensor([2, 0])).tolist()
    [[2, 0], [5, 3]]
    """
    if input._data.ndim == 0:
        return reshape(index_select(reshape(input, (1,)), 0, index), ())
    d = normalize_axis("index_select", dim, input._data.ndim)
    return index_dim(input, d, _index_arg("index_select", index, d, input._data.shape[d]))


def _dim_put(op: str, input: Tensor, dim: int, index: Tensor, values: Tensor, accumulate: bool) -> Tensor:
    return apply(INDEX_PUT, input, values, index, basic=(), adv=(-1,) * dim + (0,), accumulate=accumulate)


@tensor_method
def index_add(input: Tensor, dim: int, index: Tensor, source: Tensor, *, alpha: Any = 1) -> Tensor:
    """``input`` with ``alpha * source[..., i, ...]`` added at ``index[i]`` along ``dim`` (repeats add up).

    >>> import suanli
    >>> suanli.zeros(3).index_add(0, suanli.tensor([0, 0, 2]), suanli.ones(3)).tolist()
    [2.0, 0.0, 1.0]
    """
    shape = input._data.shape
    if not shape:
        return reshape(index_add(reshape(input, (1,)), 0, index, reshape(source, (1,)), alpha=alpha), ())
    d = normalize_axis("index_add", dim, len(shape))
    idx = _index_arg("index_add", index, d, shape[d])
    source = as_tensor(source, input._data.dtype)
    want = shape[:d] + (idx._data.shape[0],) + shape[d + 1:]
    if source._data.shape != want and not (source._data.ndim == 0 and want == (1,)):
        raise op_error("index_add", "source must match the input except along dim, where it has one "
                       "slice per index", expect=f"source shape {want}", actual=f"source {source._data.shape}")
    if alpha != 1:
        source = source * alpha
    return _dim_put("index_add", input, d, idx, source, True)


@tensor_method
def index_add_(input: Tensor, dim: int, index: Tensor, source: Tensor, *, alpha: Any = 1) -> Tensor:
    """In-place :func:`index_add`."""
    from .inplace import apply_inplace
    return apply_inplace("index_add_", input, index_add, dim, index, source, alpha=alpha)


@tensor_method
def index_fill(input: Tensor, dim: int, index: Tensor, value: Any) -> Tensor:
    """``input`` with the slices ``index`` along ``dim`` set to ``value`` (a number or 0-d tensor).

    >>> import suanli
    >>> suanli.zeros(2, 3).index_fill(1, suanli.tensor([0, 2]), -1.0).tolist()
    [[-1.0, 0.0, -1.0], [-1.0, 0.0, -1.0]]
    """
    shape = input._data.shape
    if not shape:
        return reshape(index_fill(reshape(input, (1,)), 0, index, value), ())
    d = normalize_axis("index_fill", dim, len(shape))
    idx = _index_arg("index_fill", index, d, shape[d], negative=True)
    idx = _wrap(np.unique(idx._data))   # a repeated index must not count the value's gradient twice
    v = _scalar_value("index_fill", value, input._data.dtype)
    return _dim_put("index_fill", input, d, idx, v, False)


@tensor_method
def take(input: Tensor, index: Tensor) -> Tensor:
    """Elements of the flattened ``input`` at ``index`` (output has the index's shape).

    >>> import suanli
    >>> suanli.tensor([[4, 5], [6, 7]]).take(suanli.tensor([0, 3])).tolist()
    [4, 7]
    """
    return getitem(reshape(input, (-1,)), as_tensor(index))


# ------------------------------------------------------------------------- gather / scatter
def _dim_grid(index: np.ndarray, dim: int) -> tuple:
    """Full index tuple for scatter: open grids over index's shape, with ``index`` on ``dim``."""
    grids = list(np.ix_(*[np.arange(s) for s in index.shape]))
    grids[dim] = index
    return tuple(grids)


def _index_region(index_shape: tuple[int, ...], skip: int | None = None) -> tuple:
    return tuple(slice(None) if d == skip else slice(0, s) for d, s in enumerate(index_shape))


def _gather_impl(x, index, *, dim):
    return np.take_along_axis(x[_index_region(index.shape, dim)], index, axis=dim)


def _check_dims(op: str, x: Spec, index: Spec, dim: int, src: Spec | None = None) -> None:
    _require_int(op, index)
    xs, ixs = tuple(x.shape), tuple(index.shape)
    if len(ixs) != len(xs) or (src is not None and len(src.shape) != len(xs)):
        raise op_error(op, "index (and src) must have as many dims as the input",
                       actual=f"input {xs}, index {ixs}" + (f", src {tuple(src.shape)}" if src else ""),
                       hint="unsqueeze the index to the input's rank")
    if any(i > s for d, (i, s) in enumerate(zip(ixs, xs)) if d != dim):
        raise op_error(op, f"index.size(d) must be <= input.size(d) for every d != dim ({dim})",
                       actual=f"input {xs}, index {ixs}")
    if src is not None and any(i > s for i, s in zip(ixs, src.shape)):
        raise op_error(op, "index.size(d) must be <= src.size(d) for every d",
                       actual=f"index {ixs}, src {tuple(src.shape)}")


def _infer_gather(x: Spec, index: Spec, *, dim) -> Spec:
    _check_dims("gather", x, index, dim)
    return Spec(tuple(index.shape), x.dtype)


def _pad_to(t: Tensor, shape: tuple[int, ...]) -> Tensor:
    pads = tuple((0, s - n) for s, n in zip(shape, t._data.shape))
    return t if not any(hi for _, hi in pads) else apply(PAD, t, pads=pads, value=0)


def _gather_vjp(ctx, g):
    x, index = ctx.inputs
    return (apply(SCATTER_ADD, _zeros(x._data.shape, g._data.dtype), index, g, dim=ctx.attrs["dim"]), None)


def _gather_jvp(ctx, t):
    return None if t[0] is None else apply(GATHER, t[0], ctx.inputs[1], dim=ctx.attrs["dim"])


GATHER = defprim("gather", _gather_impl, _infer_gather, vjp=_gather_vjp, jvp=_gather_jvp,
                 saved_inputs=_second, upcast_half=False)


def _scatter_add_impl(x, index, src, *, dim):
    out = x.copy()
    if index.size:
        np.add.at(out, _dim_grid(index, dim), src[_index_region(index.shape)])
    return out


def _scatter_impl(x, index, src, *, dim):
    out = x.copy()
    if index.size:
        np.put_along_axis(out[_index_region(index.shape, dim)], index, src[_index_region(index.shape)], axis=dim)
    return out


def _infer_scatter(x: Spec, index: Spec, src: Spec, *, dim) -> Spec:
    _check_dims("scatter", x, index, dim, src)
    if src.dtype != x.dtype:
        raise op_error("scatter", "src must have the input's dtype (the public function casts)",
                       actual=f"input {x.dtype}, src {src.dtype}", cls=DTypeError)
    return Spec(tuple(x.shape), x.dtype)


def _scatter_src_grad(ctx, g):
    _, index, src = ctx.inputs
    return _pad_to(apply(GATHER, g, index, dim=ctx.attrs["dim"]), src._data.shape)


def _scatter_add_vjp(ctx, g):
    return (g if ctx.needs[0] else None, None, _scatter_src_grad(ctx, g) if ctx.needs[2] else None)


def _scatter_vjp(ctx, g):
    index = ctx.inputs[1]
    gx = None
    if ctx.needs[0]:
        gx = apply(SCATTER, g, index, _zeros(index._data.shape, g._data.dtype), dim=ctx.attrs["dim"])
    return (gx, None, _scatter_src_grad(ctx, g) if ctx.needs[2] else None)


def _scatter_tangents(ctx, t):
    tx, _, ts = t
    if tx is None and ts is None:
        return None
    x, index, src = ctx.inputs
    dtype = (tx if tx is not None else ts)._data.dtype
    return (_zeros(x._data.shape, dtype) if tx is None else tx, index,
            _zeros(src._data.shape, dtype) if ts is None else ts)


def _scatter_add_jvp(ctx, t):
    args = _scatter_tangents(ctx, t)
    return None if args is None else apply(SCATTER_ADD, *args, dim=ctx.attrs["dim"])


def _scatter_jvp(ctx, t):
    args = _scatter_tangents(ctx, t)
    return None if args is None else apply(SCATTER, *args, dim=ctx.attrs["dim"])


SCATTER_ADD = defprim("scatter_add", _scatter_add_impl, _infer_scatter, vjp=_scatter_add_vjp,
                      jvp=_scatter_add_jvp, saved_inputs=_second, upcast_half=False)
SCATTER = defprim("scatter", _scatter_impl, _infer_scatter, vjp=_scatter_vjp, jvp=_scatter_jvp,
                  saved_inputs=_second, upcast_half=False)


def _gather_index(op: str, input: Tensor, dim: int, index: Any, src: Tensor | None = None) -> tuple[int, Tensor]:
    """Check dims, sizes and index values (in [0, size)) for gather/scatter; returns (dim, index)."""
    if not isinstance(index, Tensor):
        raise op_error(op, "index must be a tensor", actual=type(index).__name__, cls=IndexDTypeError)
    d = normalize_axis(op, dim, input._data.ndim)
    x_spec = Spec(input._data.shape, input._data.dtype)
    i_spec = Spec(index._data.shape, index._data.dtype)
    _check_dims(op, x_spec, i_spec, d, None if src is None else Spec(src._data.shape, src._data.dtype))
    idx = _check_range(op, index._data, d, input._data.shape[d], negative=False)
    return d, _index_of(index, idx, None)


@tensor_method
def gather(input: Tensor, dim: int, index: Tensor, *, sparse_grad: bool = False) -> Tensor:
    """``out[i][j] = input[index[i][j]][j]`` (for dim 0; likewise for any dim).

    >>> import suanli
    >>> x = suanli.tensor([[1, 2], [3, 4]])
    >>> x.gather(1, suanli.tensor([[0, 0], [1, 0]])).tolist()
    [[1, 1], [4, 3]]
    """
    if input._data.ndim == 0:
        return reshape(gather(reshape(input, (1,)), 0, reshape(index, (1,))), ())
    d, idx = _gather_index("gather", input, dim, index)
    return apply(GATHER, input, idx, dim=d)


def _scatter_src(op: str, input: Tensor, index: Tensor, src: Any) -> Tensor:
    if isinstance(src, Tensor):
        return as_tensor(src, input._data.dtype)
    return expand(as_tensor(src, input._data.dtype), index._data.shape)   # a scalar fills


@tensor_method
def scatter(input: Tensor, dim: int, index: Tensor, src: Any = None, *, value: Any = None,
            reduce: str | None = None) -> Tensor:
    """``out[index[i][j]][j] = src[i][j]`` (dim 0; ``src`` may be a number, or pass ``value=``).
    With repeated indices one of the writes wins. ``reduce='add'`` is :func:`scatter_add`.

    >>> import suanli
    >>> suanli.zeros(3).scatter(0, suanli.tensor([2, 0]), suanli.tensor([5.0, 7.0])).tolist()
    [7.0, 0.0, 5.0]
    """
    if src is None:
        src = value
    if src is None:
        raise op_error("scatter", "needs src (a tensor or number) or value=", cls=ValueError)  # type: ignore[arg-type]
    if reduce is not None:
        if reduce != "add":
            raise op_error("scatter", f"reduce={reduce!r} is not supported", expect="None or 'add'",
                           hint="use scatter_add", cls=ValueError)  # type: ignore[arg-type]
        return scatter_add(input, dim, index, _scatter_src("scatter", input, index, src))
    if input._data.ndim == 0:
        return reshape(scatter(reshape(input, (1,)), 0, reshape(index, (1,)),
                               reshape(as_tensor(src, input._data.dtype), (1,))), ())
    src = _scatter_src("scatter", input, index, src)
    d, idx = _gather_index("scatter", input, dim, index, src)
    return apply(SCATTER, input, idx, src, dim=d)


@tensor_method
def scatter_(input: Tensor, dim: int, index: Tensor, src: Any = None, *, value: Any = None,
             reduce: str | None = None) -> Tensor:
    """In-place :func:`scatter`."""
    from .inplace import apply_inplace
    return apply_inplace("scatter_", input, scatter, dim, index, src, value=value, reduce=reduce)


@tensor_method
def scatter_add(input: Tensor, dim: int, index: Tensor, src: Tensor) -> Tensor:
    """``out[index[i][j]][j] += src[i][j]`` (dim 0); repeated indices add up.

    >>> import suanli
    >>> suanli.zeros(3).scatter_add(0, suanli.tensor([2, 2, 0]), suanli.ones(3)).tolist()
    [1.0, 0.0, 2.0]
    """
    if input._data.ndim == 0:
        return reshape(scatter_add(reshape(input, (1,)), 0, reshape(index, (1,)), reshape(src, (1,))), ())
    src = _scatter_src("scatter_add", input, index, src)
    d, idx = _gather_index("scatter_add", input, dim, index, src)
    return apply(SCATTER_ADD, input, idx, src, dim=d)


@tensor_method
def take_along_dim(input: Tensor, indices: Tensor, dim: int | None = None) -> Tensor:
    """Pick values along ``dim`` at ``indices`` (broadcast against ``input`` in the other dims;
    negative indices count from the end). ``dim=None`` works on the flattened tensors.

    >>> import suanli
    >>> x = suanli.tensor([[10, 30, 20], [60, 40, 50]])
    >>> x.take_along_dim(suanli.tensor([[1], [0]]), dim=1).tolist()
    [[30], [60]]
    """
    if dim is None:
        input, indices, d = reshape(input, (-1,)), reshape(indices, (-1,)), 0
    else:
        d = normalize_axis("take_along_dim", dim, input._data.ndim)
    if input._data.ndim != indices._data.ndim:
        raise op_error("take_along_dim", "input and indices must have the same number of dims",
                       actual=f"input {input._data.shape}, indices {indices._data.shape}")
    xs, ixs = list(input._data.shape), list(indices._data.shape)
    if not xs:
        return gather(input, 0, indices)
    n = xs[d]
    xs[d] = ixs[d] = 1
    common = broadcast_shapes("take_along_dim", tuple(xs), tuple(ixs))
    data = indices._data
    if data.dtype.kind not in "iu":
        raise op_error("take_along_dim", "indices must be an integer tensor", actual=f"dtype {data.dtype}",
                       cls=IndexDTypeError)
    idx = _index_of(indices, _check_range("take_along_dim", data, d, n, negative=True), n)
    idx = expand(idx, common[:d] + (indices._data.shape[d],) + common[d + 1:])
    input = expand(input, common[:d] + (n,) + common[d + 1:])
    return gather(input, d, idx)


# -------------------------------------------------------------------------------- masks
def _masked_fill_impl(x, mask, value):
    return np.where(mask, value, x)


def _infer_masked_fill(x: Spec, mask: Spec, value: Spec) -> Spec:
    if mask.dtype != np.bool_:
        raise op_error("masked_fill", "only boolean masks are supported", actual=f"mask dtype {mask.dtype}",
                       hint="compare to get a mask, or .bool() it", cls=DTypeError)
    if value.shape != () or value.dtype != x.dtype:
        raise op_error("masked_fill", "value must be a 0-d tensor of the input's dtype (the public "
                       "function converts numbers)", actual=f"value {tuple(value.shape)} {value.dtype}")
    return Spec(broadcast_shapes("masked_fill", tuple(x.shape), tuple(mask.shape)), x.dtype)


def _masked_fill_vjp(ctx, g):
    from .reduction import sum as _sum
    _, mask, _ = ctx.inputs
    zero = _zeros((), g._data.dtype)
    gx = apply(MASKED_FILL, g, mask, zero) if ctx.needs[0] else None
    gv = _sum(apply(MASKED_FILL, g, _wrap(~mask._data), zero)) if ctx.needs[2] else None
    return gx, None, gv


def _masked_fill_jvp(ctx, t):
    tx, _, tv = t
    if tx is None and tv is None:
        return None
    x, mask, _ = ctx.inputs
    dtype = (tx if tx is not None else tv)._data.dtype
    return apply(MASKED_FILL, _zeros(x._data.shape, dtype) if tx is None else tx, mask,
                 _zeros((), dtype) if tv is None else tv)


MASKED_FILL = defprim("masked_fill", _masked_fill_impl, _infer_masked_fill, vjp=_masked_fill_vjp,
                      jvp=_masked_fill_jvp, saved_inputs=_second, upcast_half=False)


def _scalar_value(op: str, value: Any, dtype: np.dtype) -> Tensor:
    v = as_tensor(value, dtype)
    if v._data.ndim:
        raise op_error(op, "only supports a 0-dimensional value tensor",
                       actual=f"value with {v._data.ndim} dimension(s), shape {v._data.shape}",
                       hint="pass a number, or use torch.where-style selection for tensor values")
    return v


def _mask_arg(op: str, mask: Any) -> Tensor:
    if not isinstance(mask, Tensor) or mask._data.dtype != np.bool_:
        what = f"mask dtype {mask._data.dtype}" if isinstance(mask, Tensor) else type(mask).__name__
        raise op_error(op, "only supports boolean masks", actual=what, hint="compare to get a mask, or .bool() it",
                       cls=DTypeError)
    return mask


@tensor_method
def masked_fill(input: Tensor, mask: Tensor, value: Any) -> Tensor:
    """``value`` where ``mask`` (a bool tensor broadcasting with ``input``) is True, else ``input``.

    >>> import suanli
    >>> x = suanli.tensor([1.0, 2.0, 3.0])
    >>> x.masked_fill(suanli.tensor([False, True, True]), 0.0).tolist()
    [1.0, 0.0, 0.0]
    """
    mask = _mask_arg("masked_fill", mask)
    v = _scalar_value("masked_fill", value, input._data.dtype)
    _infer_masked_fill(Spec(input._data.shape, input._data.dtype), Spec(mask._data.shape, mask._data.dtype),
                       Spec((), v._data.dtype))
    return apply(MASKED_FILL, input, mask, v)


@tensor_method
def masked_select(input: Tensor, mask: Tensor) -> Tensor:
    """The elements where ``mask`` is True, as a 1-d tensor (``input`` and ``mask`` broadcast).

    >>> import suanli
    >>> x = suanli.tensor([[1, 2], [3, 4]])
    >>> x.masked_select(suanli.tensor([True, False])).tolist()
    [1, 3]
    """
    mask = _mask_arg("masked_select", mask)
    shape = broadcast_shapes("masked_select", input._data.shape, mask._data.shape)
    return getitem(expand(input, shape), expand(mask, shape))


@tensor_method
def nonzero(input: Tensor, *, as_tuple: bool = False) -> Tensor | tuple[Tensor, ...]:
    """Indices of the non-zero elements: an ``(n, ndim)`` int64 tensor, or one 1-d tensor per dim.

    >>> import suanli
    >>> suanli.tensor([[0, 1], [2, 0]]).nonzero().tolist()
    [[0, 1], [1, 0]]
    """
    data = input._data
    if as_tuple:
        if data.ndim == 0:
            return (_wrap(np.zeros(int(bool(data)), np.int64)),)
        return tuple(_wrap(i.astype(np.int64)) for i in np.nonzero(data))
    return _wrap(np.argwhere(data).astype(np.int64))


@tensor_method
def argwhere(input: Tensor) -> Tensor:
    """Same as ``nonzero(input)``."""
    return nonzero(input)
