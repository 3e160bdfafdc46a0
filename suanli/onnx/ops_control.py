"""ONNX control flow (If, Loop, Scan), sequences and optionals.

Bodies run through the same :class:`~suanli.onnx.runner.GraphRunner` in a child scope that sees the
caller's values. Sequences are Python lists of Tensors; an absent optional is ``None``.

>>> from suanli.onnx.table import lookup
>>> lookup("", "Loop", 16).__name__, lookup("", "SequenceAt", 11).__name__
('loop', 'sequence_at')
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import ops as S
from ..tensor import Tensor
from ._util import P, const, ints, np_dtype
from .errors import onnx_error
from .table import onnx_op


def _body(ctx, name: str):
    return ctx.get(name)


def _run(ctx, graph, values: list[Any]) -> list[Any]:
    feeds = {inp.name: v for inp, v in zip(graph.input, values)}
    return ctx.runner.run_subgraph(graph, feeds, ctx.env)


@onnx_op("If")
def if_(ctx, cond):
    branch = ctx.get("then_branch") if bool(np.asarray(cond._data).reshape(-1)[0]) else ctx.get("else_branch")
    outs = _run(ctx, branch, [])
    return tuple(outs)


def _stack(items: list[Tensor], axis: int = 0) -> Tensor:
    return P("cat", *[S.unsqueeze(t, axis) for t in items], axis=axis)


@onnx_op("Loop")
def loop(ctx, max_trip=None, cond=None, *carried):
    body = ctx.get("body")
    n_carried = len(carried)
    trips = None if max_trip is None else int(np.asarray(max_trip._data).reshape(-1)[0])
    keep_going = True if cond is None else bool(np.asarray(cond._data).reshape(-1)[0])
    state = list(carried)
    scans: list[list[Tensor]] = []
    i = 0
    while keep_going and (trips is None or i < trips):
        outs = _run(ctx, body, [const(np.int64(i)), const(np.bool_(keep_going))] + state)
        keep_going = bool(np.asarray(outs[0]._data).reshape(-1)[0])
        state = list(outs[1:1 + n_carried])
        for j, s in enumerate(outs[1 + n_carried:]):
            if len(scans) <= j:
                scans.append([])
            scans[j].append(s)
        i += 1
    n_scan = len(body.output) - 1 - n_carried
    stacked = []
    for j in range(n_scan):
        items = scans[j] if j < len(scans) else []
        if not items:
            t = body.output[1 + n_carried + j].type.tensor_type
            stacked.append(const(np.zeros((0,), np_dtype(t.elem_type) if t.elem_type else np.float32)))
        elif isinstance(items[0], list):
            stacked.append([x for seq in items for x in seq])
        else:
            stacked.append(_stack(items))
    return tuple(state + stacked)


@onnx_op("Scan", since=9)
def scan(ctx, *inputs):
    body = ctx.get("body")
    m = ctx.get("num_scan_inputs")
    n = len(inputs) - m
    state, xs = list(inputs[:n]), inputs[n:]
    in_axes = ctx.get("scan_input_axes") or [0] * m
    in_dirs = ctx.get("scan_input_directions") or [0] * m
    k = len(body.output) - n
    out_axes = ctx.get("scan_output_axes") or [0] * k
    out_dirs = ctx.get("scan_output_directions") or [0] * k
    xs = [S.movedim(x, a % x.ndim, 0) for x, a in zip(xs, in_axes)]
    steps = xs[0].shape[0] if xs else 0
    outs: list[list[Tensor]] = [[] for _ in range(k)]
    for t in range(steps):
        slices = [x[steps - 1 - t if d else t] for x, d in zip(xs, in_dirs)]
        res = _run(ctx, body, state + slices)
        state = list(res[:n])
        for j in range(k):
            outs[j].append(res[n + j])
    stacked = []
    for j in range(k):
        items = outs[j][::-1] if out_dirs[j] else outs[j]
        y = _stack(items)
        stacked.append(S.movedim(y, 0, out_axes[j] % y.ndim) if out_axes[j] else y)
    return tuple(state + stacked)


# ------------------------------------------------------------------------------ sequences
@onnx_op("SequenceEmpty")
def sequence_empty(ctx):
    return []


@onnx_op("SequenceConstruct")
def sequence_construct(ctx, *xs):
    return list(xs)


def _pos(seq: list, pos: Tensor | None, insert: bool = False) -> int:
    n = len(seq)
    if pos is None:
        return n if insert else n - 1
    p = ints(pos)[0]
    p = p + n if p < 0 else p
    if not 0 <= p <= (n if insert else n - 1):
        raise onnx_error("sequence", f"position {ints(pos)[0]} is out of range for a sequence of {n}")
    return p


@onnx_op("SequenceAt")
def sequence_at(ctx, seq, pos):
    return seq[_pos(seq, pos)]


@onnx_op("SequenceInsert")
def sequence_insert(ctx, seq, x, pos=None):
    out = list(seq)
    out.insert(_pos(seq, pos, insert=True), x)
    return out


@onnx_op("SequenceErase")
def sequence_erase(ctx, seq, pos=None):
    out = list(seq)
    del out[_pos(seq, pos)]
    return out


@onnx_op("SequenceLength")
def sequence_length(ctx, seq):
    return const(np.int64(len(seq)))


@onnx_op("SplitToSequence")
def split_to_sequence(ctx, x, split=None):
    axis = ctx.get("axis", 0) % x.ndim
    n = x.shape[axis]
    if split is None:
        parts = [x[(slice(None),) * axis + (i,)] for i in range(n)]
        if ctx.get("keepdims", 1):
            parts = [S.unsqueeze(p, axis) for p in parts]
        return parts
    sizes = ints(split)
    if split.ndim == 0:
        sizes = [sizes[0]] * (n // sizes[0]) + ([n % sizes[0]] if n % sizes[0] else [])
    out, lo = [], 0
    for s in sizes:
        key = tuple((0, d, 1) for d in x.shape[:axis]) + ((lo, lo + s, 1),)
        out.append(P("slice", x, key=key))
        lo += s
    return out


@onnx_op("ConcatFromSequence")
def concat_from_sequence(ctx, seq):
    axis = ctx.get("axis")
    if ctx.get("new_axis", 0):
        axis %= seq[0].ndim + 1
        return P("cat", *[S.unsqueeze(t, axis) for t in seq], axis=axis)
    return P("cat", *seq, axis=axis % seq[0].ndim)


@onnx_op("SequenceMap")
def sequence_map(ctx, seq, *extra):
    body = ctx.get("body")
    n = len(seq)
    results: list[list[Any]] = [[] for _ in body.output]
    for i in range(n):
        args = [seq[i]] + [e[i] if isinstance(e, list) else e for e in extra]
        for j, r in enumerate(_run(ctx, body, args)):
            results[j].append(r)
    return tuple(results)


# ------------------------------------------------------------------------------ optionals
@onnx_op("Optional")
def optional(ctx, x=None):
    return x


@onnx_op("OptionalHasElement")
def optional_has_element(ctx, x=None):
    return const(np.bool_(x is not None))


@onnx_op("OptionalGetElement")
def optional_get_element(ctx, x):
    if x is None:
        raise onnx_error(ctx.where, "the optional is empty", hint="guard with OptionalHasElement")
    return x


@onnx_op("Scan", since=8)
def scan_8(ctx, seq_lens, *inputs):
    """Scan at opset 8: every state and scan input has a leading batch axis, scanned along axis 1.

    Each batch entry runs the body on its own (up to its ``sequence_lens``); scan outputs past an
    entry's length are zero.
    """
    body = ctx.get("body")
    m = ctx.get("num_scan_inputs")
    n = len(inputs) - m
    dirs = ctx.get("directions") or [0] * m
    k = len(body.output) - n
    states, xs = list(inputs[:n]), list(inputs[n:])
    batch = (states or xs)[0].shape[0]
    seq = xs[0].shape[1] if xs else 0
    lens = [seq] * batch if seq_lens is None else ints(seq_lens)
    finals: list[list[Tensor]] = [[] for _ in range(n)]
    outs: list[list[Tensor]] = [[] for _ in range(k)]
    for b in range(batch):
        state = [s[b] for s in states]
        steps: list[list[Tensor]] = [[] for _ in range(k)]
        L = lens[b]
        for t in range(L):
            res = _run(ctx, body, state + [x[b, L - 1 - t if d else t] for x, d in zip(xs, dirs)])
            state = list(res[:n])
            for j in range(k):
                steps[j].append(res[n + j])
        for j in range(n):
            finals[j].append(state[j])
        for j in range(k):
            y = _stack(steps[j]) if steps[j] else None
            if L < seq:        # zero-fill the steps past this entry's length
                like = steps[j][0] if steps[j] else None
                if like is None:
                    raise onnx_error(ctx.where, "a batch entry with sequence length 0 gives no output shape",
                                     actual=f"sequence_lens {lens}")
                pad = const(np.zeros((seq - L,) + tuple(like.shape), like.dtype))
                y = P("cat", y, pad, axis=0)
            outs[j].append(y)
    return tuple([_stack(f) for f in finals] + [_stack(o) for o in outs])
