"""Pattern passes for inference: the decomposed layers an ONNX exporter writes, put back together.

Exporters spell a layer as a string of small ops: LayerNorm as ReduceMean/Sub/Pow/ReduceMean/Add/
Sqrt/Div, exact GELU as Div/Erf/Add/Mul/Mul, attention as MatMul/Div/Add/Softmax/MatMul, Linear as
MatMul + Add. After :func:`suanli.onnx.to_graph` these are chains of registry primitives (ReduceMean
is ``sum`` then ``div`` by the count). Each pass below finds one such chain ending at a value ``y``
and computes ``y`` with one primitive instead:

| pass                 | matched (any operand order)                                  | becomes |
|----------------------|--------------------------------------------------------------|---------|
| eliminate_shape_ops  | reshape of reshape, permute of permute, identity reshape/permute/expand/cast, cast(cast(x, wider), x.dtype), an expand only read by broadcasting ops | fewer shape ops |
| fuse_layer_norm      | ``d = x - mean(x); d / sqrt(mean(d*d) + eps)`` (``d**2``, ``* rsqrt``, ``* 1/sqrt``) | ``standardize`` |
| fuse_gelu            | ``0.5 * x * (1 + erf(x / sqrt 2))``; the tanh form               | ``gelu`` |
| fuse_attention       | ``softmax(q @ kt * c (+ mask)) @ v``, 4-D                        | ``attention`` |
| fuse_linear          | ``x @ W + b``, constant ``W`` (K, N), ``b`` (N,)                 | ``linear`` |

A pass rewrites only when every constant, axis, ``keepdims`` and dtype checks out (a near miss --
mean over another axis, an eps that is not one number, a mask that would widen the scores -- is
left alone); the rewrite then computes the same real-number function, up to float rounding. The
replacement node takes over ``y`` itself, so readers need no renaming; the bypassed nodes are left
for DCE (they stay if something else reads them). The layer norm's scale and shift stay as the
``mul``/``add`` that follow ``standardize`` and the elementwise fusion pass takes them, as it takes
a ``linear``'s activation. ``fuse_linear`` therefore leaves a bias add alone when an elementwise op
reads it: ``matmul`` + one fused ``add+gelu`` kernel is one pass over the output, ``linear`` +
``gelu`` two.

>>> import numpy as np
>>> from suanli.graph import Graph, interpret
>>> g = Graph()
>>> x = g.add_input((1, 3), np.float32)
>>> def node(op, *ins, **attrs):
...     return g.add_node(op, list(ins), attrs, shape=(1, 3), dtype=np.float32)
>>> c = lambda v: g.add_constant(np.float32(v))
>>> e = node("erf", node("div", x, c(2 ** 0.5)))
>>> g.outputs = [node("mul", node("mul", x, node("add", e, c(1.0))), c(0.5))]
>>> [n.op for n in dce(fuse_gelu(g)).nodes]
['gelu']
>>> [round(v, 4) for v in interpret(g, np.array([[0, 1, -1]], np.float32))[0][0].tolist()]
[0.0, 0.8413, -0.1587]
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from ...graph import Graph, Node, Value
from ...ops import fused_layers  # noqa: F401 - registers ``linear`` and ``attention``
from ..group import ELEMENTWISE_OPS
from .cleanup import dce

__all__ = ["eliminate_shape_ops", "fuse_layer_norm", "fuse_gelu", "fuse_attention", "fuse_linear"]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
# broadcasting primitives: an operand broadcast by expand can be broadcast by the op itself
_BROADCASTING = frozenset({"add", "sub", "mul", "div", "pow", "maximum", "minimum", "where", "eq", "ne",
                           "lt", "le", "gt", "ge", "logical_and", "logical_or"})


# ------------------------------------------------------------------------------------------ helpers
def _const(v: Value) -> np.ndarray | None:
    p = v.producer
    if p is None or p.op != "constant" or "fill" in p.attrs:
        return None
    return p.attrs["value"]


def _scalar(v: Value) -> float | None:
    """The value of a one-element float constant, else None."""
    c = _const(v)
    if c is None or c.size != 1 or c.dtype.kind != "f":
        return None
    return float(c.reshape(()))


def _close(a: float | None, b: float, rtol: float = 1e-6) -> bool:
    return a is not None and abs(a - b) <= rtol * abs(b)


def _op(v: Value, *ops: str) -> Node | None:
    """The producer of ``v`` when it is one of ``ops`` (with a single output)."""
    p = v.producer
    return p if p is not None and p.op in ops and len(p.outputs) == 1 else None


def _split(node: Node, pred: Callable[[Value], bool]) -> tuple[Value, Value] | None:
    """For a binary node: (the operand satisfying ``pred``, the other one), trying both orders."""
    if len(node.inputs) != 2:
        return None
    a, b = node.inputs
    if pred(b):
        return b, a
    if pred(a):
        return a, b
    return None


def _shape(v: Value) -> tuple:
    return tuple(v.shape)


def _keeps_shape(node: Node, x: Value) -> bool:
    """The node's output has ``x``'s shape and dtype (a broadcast operand did not widen it)."""
    out = node.outputs[0]
    return _shape(out) == _shape(x) and out.dtype == x.dtype


def _rewrite(graph: Graph, match: Callable[[Node], list[Node] | None]) -> Graph:
    """Replace each node for which ``match`` returns new nodes (the last one producing the node's
    output value) by those nodes; recurse into subgraphs; drop what became unread."""
    nodes: list[Node] = []
    changed = False
    for node in graph.nodes:
        for sub in node.subgraphs.values():
            _rewrite(sub, match)
        new = match(node) if len(node.outputs) == 1 and not node.subgraphs else None
        if new:
            out = node.outputs[0]
            new[-1].outputs = [out]
            out.producer = new[-1]
            nodes.extend(new)
            changed = True
        else:
            nodes.append(node)
    graph.nodes = nodes
    return dce(graph) if changed else graph


def _new(op: str, inputs: list[Value], attrs: dict, like: Value) -> Node:
    return Node(op, inputs, attrs, [Value(like.shape, like.dtype)])


def _const_node(array: np.ndarray) -> Node:
    return Node("constant", [], {"value": array}, [Value(array.shape, array.dtype)])


# ------------------------------------------------------------------------------------ shape ops
def _identity(node: Node) -> Value | None:
    """The input ``node`` returns unchanged (same shape, dtype and element order), else None."""
    x = node.inputs[0] if node.inputs else None
    if x is None or node.op not in ("reshape", "permute", "expand", "cast") or not _keeps_shape(node, x):
        return None
    if node.op == "permute":
        # a permutation moving only size-1 axes keeps the element order
        moved = [d for k, d in enumerate(node.attrs["perm"]) if d != k]
        return x if all(x.shape[d] == 1 for d in moved) else None
    return x


def eliminate_shape_ops(graph: Graph) -> Graph:
    """Remove or merge shape-only ops: reshape(reshape(x)) -> one reshape, permute(permute(x)) -> one
    permute, identity reshape/permute/expand/cast dropped, ``cast(cast(x, wide), x.dtype)`` -> ``x``
    when the first cast is exact (float32 -> float64, an integer into a wider one), and an ``expand``
    whose readers all broadcast its input to the same result reads the input directly. A graph
    output that would become a graph input is kept (callers may write into outputs).

    >>> import numpy as np
    >>> from suanli.graph import Graph
    >>> g = Graph()
    >>> x = g.add_input((2, 3, 4), np.float32)
    >>> a = g.add_node("permute", [x], {"perm": (0, 2, 1)}, shape=(2, 4, 3), dtype=np.float32)
    >>> b = g.add_node("permute", [a], {"perm": (0, 2, 1)}, shape=(2, 3, 4), dtype=np.float32)
    >>> g.outputs = [g.add_node("exp", [b], shape=(2, 3, 4), dtype=np.float32)]
    >>> [n.op for n in eliminate_shape_ops(g).nodes]
    ['exp']
    """
    inputs = {v.id for v in graph.inputs}
    outputs = {v.id for v in graph.outputs}
    rename: dict[int, Value] = {}
    users: dict[int, list[Node]] = {}
    for n in graph.nodes:
        for v in n.inputs:
            users.setdefault(v.id, []).append(n)
    for node in graph.nodes:
        if rename:
            node.inputs = [rename.get(v.id, v) for v in node.inputs]
        for sub in node.subgraphs.values():
            eliminate_shape_ops(sub)
        if len(node.outputs) != 1 or not node.inputs:
            continue
        out, src = node.outputs[0], node.inputs[0].producer
        if node.op == "reshape" and _op(node.inputs[0], "reshape"):
            node.inputs = [src.inputs[0]]                               # the target shape is absolute
        elif node.op == "permute" and _op(node.inputs[0], "permute"):
            inner, outer = src.attrs["perm"], node.attrs["perm"]
            node.inputs = [src.inputs[0]]
            node.attrs = {**node.attrs, "perm": tuple(inner[i] for i in outer)}
        elif node.op == "cast" and _op(node.inputs[0], "cast"):
            x = src.inputs[0]
            if x.dtype == out.dtype and _exact_cast(x.dtype, src.outputs[0].dtype):
                node.inputs = [x]                                       # the round trip is exact
        elif node.op == "expand" and out.id not in outputs:
            _unexpand(node, users.get(out.id, []))
        same = _identity(node)
        if same is not None and not (out.id in outputs and same.id in inputs):
            rename[out.id] = same
    if rename:
        graph.outputs = [rename.get(v.id, v) for v in graph.outputs]
    return dce(graph)


def _exact_cast(src: np.dtype, mid: np.dtype) -> bool:
    """Every ``src`` value survives a round trip through ``mid`` (NumPy's "safe" is not enough:
    it calls int64 -> float64 safe, which rounds above 2**53)."""
    if src == mid or src.kind == "b":
        return True
    if src.kind == "f" and mid.kind == "f":
        return mid.itemsize >= src.itemsize
    if src.kind in "iu" and mid.kind in "iu":
        return bool(np.can_cast(src, mid, "safe"))
    if src.kind in "iu" and mid.kind == "f":
        return np.iinfo(src).bits - (src.kind == "i") <= np.finfo(mid).nmant + 1
    return False


def _unexpand(node: Node, readers: list[Node]) -> None:
    """Make the readers of ``expand(x)`` read ``x`` when each broadcasts it to the same output."""
    x, out = node.inputs[0], node.outputs[0]
    if not readers:
        return
    for r in readers:
        if r.op not in _BROADCASTING or len(r.outputs) != 1:
            return
        shapes = [_shape(x) if v is out else _shape(v) for v in r.inputs]
        try:
            if np.broadcast_shapes(*shapes) != _shape(r.outputs[0]):
                return
        except (ValueError, TypeError):        # symbolic dims or not broadcastable: leave it
            return
    for r in readers:
        r.inputs = [x if v is out else v for v in r.inputs]


# ------------------------------------------------------------------------------------ layer norm
def _mean_of(v: Value) -> tuple[Value, tuple[int, ...]] | None:
    """``v = sum(x, axes, keepdims=True) / count`` (or ``* 1/count``): (x, axes)."""
    node = _op(v, "div", "mul")
    if node is None or len(node.inputs) != 2:
        return None
    s, c = node.inputs
    if node.op == "mul" and _op(s, "sum") is None:
        c, s = s, c
    red = _op(s, "sum")
    if red is None or not red.attrs.get("keepdims") or red.outputs[0].dtype not in _FLOATS:
        return None
    x = red.inputs[0]
    axes = tuple(sorted(a % len(x.shape) for a in red.attrs["axes"])) if x.shape else ()
    dims = [x.shape[a] for a in axes]
    if not axes or not all(isinstance(d, int) for d in dims) or not _keeps_shape(node, s):
        return None
    count = math.prod(dims)
    if not _close(_scalar(c), count if node.op == "div" else 1.0 / count):
        return None
    return x, axes


def _layer_norm_match(node: Node) -> list[Node] | None:
    # y = d / sqrt(var + eps)  or  y = d * rsqrt(var + eps)
    if node.op == "div":
        d, den = node.inputs
        sq = _op(den, "sqrt")
    elif node.op == "mul" and len(node.inputs) == 2:
        def inv_root(v: Value) -> Node | None:       # rsqrt(u) or reciprocal(sqrt(u)): the rsqrt/sqrt node
            if (r := _op(v, "rsqrt")) is not None:
                return r
            if (r := _op(v, "reciprocal")) is not None:
                return _op(r.inputs[0], "sqrt")
            r = _op(v, "div")                        # ONNX Reciprocal is div(1, u)
            return None if r is None or _scalar(r.inputs[0]) != 1.0 else _op(r.inputs[1], "sqrt")
        pair = _split(node, lambda v: inv_root(v) is not None)
        if pair is None:
            return None
        den, d = pair
        sq = inv_root(den)
    else:
        return None
    sub = _op(d, "sub")
    if sq is None or sub is None or not _keeps_shape(node, d):
        return None
    x, mean = sub.inputs
    m = _mean_of(mean)
    if m is None or m[0] is not x or not _keeps_shape(sub, x) or x.dtype not in _FLOATS:
        return None
    axes = m[1]
    add = _op(sq.inputs[0], "add")
    pair = None if add is None else _split(add, lambda v: _scalar(v) is not None)
    if pair is None or not _keeps_shape(add, pair[1]):
        return None
    eps, var = _scalar(pair[0]), pair[1]
    mv = _mean_of(var)
    if mv is None or mv[1] != axes:
        return None
    square = mv[0].producer
    if square is None or not (square.op == "mul" and square.inputs == [d, d]
                              or square.op == "pow" and square.inputs[0] is d and _scalar(square.inputs[1]) == 2.0):
        return None
    return [_new("standardize", [x], {"axes": axes, "eps": eps}, node.outputs[0])]


def fuse_layer_norm(graph: Graph) -> Graph:
    """``(x - mean(x)) / sqrt(mean((x - mean(x))**2) + eps)`` over the same axes (``keepdims``, the
    count matching those axes, ``d*d`` or ``d**2``, ``/ sqrt``, ``* rsqrt`` or ``* (1 / sqrt)``, ``eps`` one number)
    -> ``standardize(x, axes, eps)``; a following ``* gamma + beta`` stays for elementwise fusion.

    >>> import numpy as np, torch
    >>> from suanli.graph import trace, interpret
    >>> import suanli
    >>> def ln(x):
    ...     d = x - x.sum(-1, keepdim=True) / 4
    ...     return d / ((d * d).sum(-1, keepdim=True) / 4 + 1e-5).sqrt()
    >>> g = trace(ln, (suanli.ones(2, 4),)).graph
    >>> [n.op for n in fuse_layer_norm(g).nodes if n.op != "constant"]
    ['standardize']
    >>> x = np.arange(8, dtype=np.float32).reshape(2, 4)
    >>> bool(np.allclose(interpret(g, x)[0], torch.nn.functional.layer_norm(torch.tensor(x), (4,)).numpy(), atol=1e-6))
    True
    """
    return _rewrite(graph, _layer_norm_match)


# ------------------------------------------------------------------------------------------ gelu
def _triples(v: Value) -> list[tuple[Value, Value, Value]]:
    """Ways to read ``v`` as a product of three factors ``a * (b * c)`` or ``(a * b) * c``."""
    node = _op(v, "mul")
    if node is None or len(node.inputs) != 2:
        return []
    a, b = node.inputs
    out = []
    for left, right in ((a, b), (b, a)):
        inner = _op(left, "mul")
        if inner is not None and len(inner.inputs) == 2:
            out.append((inner.inputs[0], inner.inputs[1], right))
    return out


def _one_plus(v: Value, op: str) -> Value | None:
    """``v = 1 + op(arg)``: arg, else None."""
    add = _op(v, "add")
    pair = None if add is None else _split(add, lambda u: _scalar(u) == 1.0)
    inner = None if pair is None else _op(pair[1], op)
    return None if inner is None or not _keeps_shape(add, pair[1]) else inner.inputs[0]


def _scaled(v: Value, factor: float) -> Value | None:
    """``v = u * factor`` or ``u / (1/factor)`` (the constant one number): u, else None."""
    node = _op(v, "mul", "div")
    if node is None or len(node.inputs) != 2:
        return None
    if node.op == "div":
        u, ok = node.inputs[0], _close(_scalar(node.inputs[1]), 1.0 / factor)
    else:
        pair = _split(node, lambda w: _close(_scalar(w), factor))
        u, ok = (None, False) if pair is None else (pair[1], True)
    return u if ok and _keeps_shape(node, u) else None


def _is_cube_of(v: Value, x: Value) -> bool:
    """``v = x**3`` as ``pow(x, 3)`` or two multiplications."""
    if (p := _op(v, "pow")) is not None:
        return p.inputs[0] is x and _scalar(p.inputs[1]) == 3.0
    return any(all(f is x for f in t) for t in _triples(v))


def _tanh_inner_ok(u: Value, x: Value) -> bool:
    """``u = x + 0.044715 * x**3``."""
    add = _op(u, "add")
    if add is None or len(add.inputs) != 2:
        return False
    for a, b in (add.inputs, add.inputs[::-1]):
        if a is x:
            cube = _scaled(b, 0.044715)
            return cube is not None and _is_cube_of(cube, x)
    return False


def _gelu_match(node: Node) -> list[Node] | None:
    if node.op != "mul":
        return None
    out = node.outputs[0]
    if out.dtype not in _FLOATS:
        return None
    for factors in _triples(out):
        rest = [f for f in factors if _scalar(f) != 0.5]
        if len(rest) != 2:
            continue
        for x, other in (rest, rest[::-1]):
            if not _keeps_shape(node, x):
                continue
            arg = _one_plus(other, "erf")
            if arg is not None and _scaled(arg, 1 / math.sqrt(2)) is x:
                return [_new("gelu", [x], {"approximate": "none"}, out)]
            arg = _one_plus(other, "tanh")
            if arg is not None and (u := _scaled(arg, math.sqrt(2 / math.pi))) is not None and _tanh_inner_ok(u, x):
                return [_new("gelu", [x], {"approximate": "tanh"}, out)]
    return None


def fuse_gelu(graph: Graph) -> Graph:
    """``0.5 * x * (1 + erf(x / sqrt(2)))`` -> ``gelu(x)``; ``0.5 * x * (1 + tanh(sqrt(2/pi) *
    (x + 0.044715 * x**3)))`` -> ``gelu(x, approximate="tanh")``. The three factors may be multiplied
    in any order and grouping; ``x / sqrt 2`` may be ``x * (1/sqrt 2)``; constants must match to
    1e-6 (they are stored in float32)."""
    return _rewrite(graph, _gelu_match)


# ------------------------------------------------------------------------------------- attention
def _scores(v: Value) -> tuple[Value, Value, float] | None:
    """``v = (q @ kt) * c`` with scalar constant factors on the product, ``q`` or ``kt`` (or a
    division by one): (q, kt, c)."""
    scale = 1.0
    sc = _op(v, "mul", "div")
    if sc is not None:
        if sc.op == "mul":
            pair = _split(sc, lambda u: _scalar(u) is not None)
        else:
            pair = (sc.inputs[1], sc.inputs[0]) if _scalar(sc.inputs[1]) not in (None, 0.0) else None
        if pair is None or not _keeps_shape(sc, pair[1]):
            return None
        c = _scalar(pair[0])
        scale, v = (c if sc.op == "mul" else 1.0 / c), pair[1]
    mm = _op(v, "matmul")
    if mm is None:
        return None
    ops = list(mm.inputs)
    for side in (0, 1):                         # a scalar multiplier on q or on k^T joins the scale
        p = _op(ops[side], "mul")
        pair = None if p is None else _split(p, lambda u: _scalar(u) is not None)
        if pair is not None and _keeps_shape(p, pair[1]):
            scale *= _scalar(pair[0])
            ops[side] = pair[1]
    return ops[0], ops[1], scale


def _attention_match(node: Node) -> list[Node] | None:
    if node.op != "matmul":
        return None
    probs, v = node.inputs
    sm = _op(probs, "softmax")
    out = node.outputs[0]
    if sm is None or out.dtype not in _FLOATS or any(len(t.shape) != 4 for t in (out, probs, v)) \
            or sm.attrs["dim"] % 4 != 3:
        return None
    scores, found, mask = sm.inputs[0], _scores(sm.inputs[0]), []
    add = _op(scores, "add")
    if found is None and add is not None and len(add.inputs) == 2:
        for s, m in (add.inputs, add.inputs[::-1]):
            if m.dtype == s.dtype and _keeps_shape(add, s) and (found := _scores(s)) is not None:
                mask = [m]
                break
    if found is None:
        return None
    q, kt, scale = found
    lead = _shape(q)[:2]
    if (len(q.shape) != 4 or len(kt.shape) != 4 or _shape(kt)[:2] != lead or _shape(v)[:2] != lead
            or len({q.dtype, kt.dtype, v.dtype}) != 1):
        return None
    return [_new("attention", [q, kt, v, *mask], {"scale": scale, "causal": bool(sm.attrs.get("causal", False))},
                 out)]


def fuse_attention(graph: Graph) -> Graph:
    """``softmax(q @ kt * c + mask, dim=-1) @ v`` with 4-D ``q`` (B, H, L, E), ``kt`` (B, H, E, S), ``v``
    (B, H, S, Ev) -> ``attention(q, kt, v, mask, scale=c, causal=...)``. ``c`` is the product of
    scalar constants multiplying the scores (or dividing them), ``q`` or ``kt``; the mask is an
    additive operand of the scores' dtype that does not widen them; without the ``add`` there is no
    mask. When something else reads the scores or the weights, those nodes stay for it (still
    correct, less saved)."""
    return _rewrite(graph, _attention_match)


# ---------------------------------------------------------------------------------------- linear
def fuse_linear(graph: Graph) -> Graph:
    """``matmul(x, W) + b`` (either order) with a constant float ``W`` (K, N), a constant ``b`` of N
    elements broadcast along the last axis, and the product read only by that add -> ``linear(x, W,
    b)``. Left alone when an elementwise op reads the sum (the elementwise fusion pass merges the
    bias add with it into one kernel, which is cheaper)."""
    readers: dict[int, list[Node]] = {}
    for n in graph.nodes:
        for v in n.inputs:
            readers.setdefault(v.id, []).append(n)
    outputs = {v.id for v in graph.outputs}

    def match(node: Node) -> list[Node] | None:
        if node.op != "add" or len(node.inputs) != 2:
            return None
        pair = _split(node, lambda u: _op(u, "matmul") is not None)
        if pair is None:
            return None
        prod, bias = pair
        mm = prod.producer
        x, w = mm.inputs
        wc, bc = _const(w), _const(bias)
        out = node.outputs[0]
        if (wc is None or bc is None or wc.ndim != 2 or len(x.shape) < 2 or out.dtype not in _FLOATS
                or len({x.dtype, w.dtype, bias.dtype}) != 1 or not _keeps_shape(node, prod)
                or bc.size != wc.shape[1] or (bc.ndim and bc.shape[-1] != wc.shape[1])
                or prod.id in outputs or len(readers.get(prod.id, [])) != 1):
            return None
        if out.id not in outputs and any(r.op in ELEMENTWISE_OPS for r in readers.get(out.id, [])):
            return None
        b = _const_node(np.ascontiguousarray(bc.reshape(-1)))
        return [b, _new("linear", [x, w, b.outputs[0]], {}, out)]

    return _rewrite(graph, match)
