"""Inference rewrites: freeze parameters into constants, then fold per-channel affine chains
(batch norm in eval mode, bias adds, scalings) into the preceding convolution or matmul weight.

Eval-mode batch norm traces to ``(y - mean) * rsqrt(var + eps) * gamma + beta`` with per-channel
constants. After :func:`freeze` and constant folding these are ``sub/mul/add`` nodes with constant
``(1, C, 1, 1)`` operands right after a ``conv2d``; :func:`fold_affine` collects the chain as
``y * a + b`` per output channel, scales the kernel by ``a`` and leaves one ``add`` of ``b``. The
same holds for ``matmul(x, W)`` with a constant ``(K, N)`` weight and ``(N,)`` operands (Linear +
BatchNorm1d, or Linear followed by a scale). Only training-free graphs qualify: a weight that is a
graph input (a live parameter) is never folded.

>>> import numpy as np
>>> from suanli.graph import Graph, interpret
>>> g = Graph()
>>> x = g.add_input((1, 2), np.float64)
>>> w = g.add_constant(np.array([[1.0, 2.0], [3.0, 4.0]]))
>>> y = g.add_node("matmul", [x, w], shape=(1, 2), dtype=np.float64)
>>> s = g.add_constant(np.array([10.0, 100.0]))
>>> g.outputs = [g.add_node("mul", [y, s], shape=(1, 2), dtype=np.float64)]
>>> before = interpret(g, np.ones((1, 2)))[0]
>>> from suanli.compiler.passes import dce
>>> [n.op for n in dce(fold_affine(g)).nodes if n.op != "constant"]
['matmul']
>>> bool(np.allclose(interpret(g, np.ones((1, 2)))[0], before))
True
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from ...graph import Graph, Node, Value

__all__ = ["freeze", "fold_affine"]


def freeze(graph: Graph, values: Mapping[int, np.ndarray]) -> Graph:
    """Turn the graph inputs at the given positions into constants holding ``values[position]``
    (for inference: parameters stop being live inputs, so folding passes can see them)."""
    keep, consts = [], []
    for i, v in enumerate(graph.inputs):
        if i in values:
            array = np.asarray(values[i])
            if array.shape != tuple(v.shape) or array.dtype != v.dtype:
                raise ValueError(f"freeze: input {i} is {v.type_str}, the value is {array.dtype}{list(array.shape)}")
            consts.append(Node("constant", [], {"value": array}, [v]))
        else:
            keep.append(v)
    graph.inputs = keep
    graph.nodes = consts + graph.nodes
    return graph


def _const(v: Value) -> np.ndarray | None:
    p = v.producer
    if p is None or p.op != "constant" or "fill" in p.attrs:
        return None
    return p.attrs["value"]


def _channel_vector(c: np.ndarray, out_ndim: int, axis: int, channels: int) -> np.ndarray | None:
    """``c`` as a length-``channels`` vector if, broadcast against the output, it varies along
    ``axis`` only (or is a scalar); else None."""
    if c.ndim > out_ndim or c.size == 0:
        return None
    shape = (1,) * (out_ndim - c.ndim) + c.shape
    if any(d != 1 for k, d in enumerate(shape) if k != axis) or shape[axis] not in (1, channels):
        return None
    return np.broadcast_to(c.reshape(-1), (channels,))


def _collect(graph: Graph, start: Value, axis: int, channels: int, outputs: set[int],
             users: dict[int, list[Node]]) -> tuple[np.ndarray, np.ndarray, Value, list[Node]]:
    """Follow single-use ``add/sub/mul/div``-by-per-channel-constant nodes from ``start``."""
    a = np.ones(channels)
    b = np.zeros(channels)
    cur, chain = start, []
    while cur.id not in outputs and len(users.get(cur.id, ())) == 1:
        node = users[cur.id][0]
        if node.op not in ("add", "sub", "mul", "div") or len(node.inputs) != 2:
            break
        out = node.outputs[0]
        if tuple(out.shape) != tuple(cur.shape) or out.dtype != cur.dtype:
            break
        first = node.inputs[0] is cur
        other = node.inputs[1] if first else node.inputs[0]
        c = _const(other)
        vec = None if c is None else _channel_vector(c, len(cur.shape), axis, channels)
        if vec is None or (node.inputs[0] is cur and node.inputs[1] is cur):
            break
        vec = vec.astype(np.float64)
        if node.op == "add":
            b = b + vec
        elif node.op == "mul":
            a, b = a * vec, b * vec
        elif node.op == "sub":
            a, b = (a, b - vec) if first else (-a, vec - b)
        elif first:                                       # div: only y / c is affine in y
            a, b = a / vec, b / vec
        else:
            break
        chain.append(node)
        cur = out
    return a, b, cur, chain


def fold_affine(graph: Graph) -> Graph:
    """Fold per-output-channel affine chains after ``conv2d`` / ``matmul`` with constant weights
    into the weight and one bias ``add``. Run constant folding first and DCE after."""
    from .cleanup import dce
    dce(graph)                     # nodes bypassed by earlier passes must not count as users
    outputs = {v.id for v in graph.outputs}
    users: dict[int, list[Node]] = {}
    for n in graph.nodes:
        for v in n.inputs:
            users.setdefault(v.id, []).append(n)
    new_nodes: list[Node] = []
    replaced: dict[int, Value] = {}
    for node in graph.nodes:
        if replaced:
            node.inputs = [replaced.get(v.id, v) for v in node.inputs]
        new_nodes.append(node)
        if node.op not in ("conv2d", "matmul") or len(node.inputs) != 2:
            continue
        w = _const(node.inputs[1])
        out = node.outputs[0]
        if w is None or w.dtype.kind != "f" or not out.shape:
            continue
        if node.op == "conv2d":
            axis, channels = 1, w.shape[0]
            if len(out.shape) != 4:
                continue
        else:
            if w.ndim != 2 or len(node.inputs[0].shape) < 2:
                continue
            axis, channels = len(out.shape) - 1, w.shape[1]
        a, b, last, chain = _collect(graph, out, axis, channels, outputs, users)
        if not chain or (len(chain) == 1 and chain[0].op == "add"):
            continue                                   # nothing to gain
        scale = a.reshape((-1, 1, 1, 1)) if node.op == "conv2d" else a.reshape(1, -1)
        w_new = (w.astype(np.float64) * scale).astype(w.dtype)
        w_val = Value(w_new.shape, w_new.dtype)
        new_nodes.insert(len(new_nodes) - 1, Node("constant", [], {"value": w_new}, [w_val]))
        node.inputs = [node.inputs[0], w_val]
        result = out
        if np.any(b != 0):
            bias_shape = (1, channels, 1, 1) if node.op == "conv2d" else (channels,)
            b_arr = b.astype(w.dtype).reshape(bias_shape)
            b_val = Value(b_arr.shape, b_arr.dtype)
            new_nodes.append(Node("constant", [], {"value": b_arr}, [b_val]))
            result = Value(out.shape, out.dtype)
            new_nodes.append(Node("add", [out, b_val], {}, [result]))
        replaced[last.id] = result                     # the chain's nodes are now unread: DCE drops them
    graph.nodes = new_nodes
    if replaced:
        graph.outputs = [replaced.get(v.id, v) for v in graph.outputs]
    return graph
