"""Rematerialization: recompute cheap values for the backward instead of keeping them alive.

In a joint forward+backward graph every forward value the backward reads stays alive from the
forward to that read, which is what sets the peak memory of a training step. When such a value is
the output of a cheap elementwise (or view) node whose inputs stay alive until then anyway
(GELU's input is kept for GELU's gradient, LayerNorm's ``gamma`` is a parameter), recomputing it
right before the late uses costs one elementwise pass and frees its buffer for the whole stretch
in between. Uses are split into clusters at gaps of more than ``min_gap`` nodes; each later
cluster gets its own copy of the node.

>>> import numpy as np
>>> from suanli.graph import Graph
>>> g = Graph()
>>> x = g.add_input((4,), np.float32)
>>> y = g.add_node("exp", [x], shape=(4,), dtype=np.float32)
>>> chain = g.add_node("tanh", [y], shape=(4,), dtype=np.float32)
>>> for _ in range(3):
...     chain = g.add_node("sin", [chain], shape=(4,), dtype=np.float32)
>>> g.outputs = [g.add_node("mul", [chain, y], shape=(4,), dtype=np.float32)]   # y read again, late
>>> [n.op for n in rematerialize(g, min_gap=2).nodes]
['exp', 'tanh', 'sin', 'sin', 'sin', 'exp', 'mul']
"""
from __future__ import annotations

import math

from ...graph import Graph, Node, Value
from ..group import ELEMENTWISE_OPS

__all__ = ["rematerialize", "CHEAP_OPS"]

CHEAP_OPS = ELEMENTWISE_OPS | {"reshape", "permute", "expand"}


def _clusters(uses: list[int], min_gap: int) -> list[list[int]]:
    out = [[uses[0]]]
    for u in uses[1:]:
        if u - out[-1][-1] > min_gap:
            out.append([u])
        else:
            out[-1].append(u)
    return out


def rematerialize(graph: Graph, min_gap: int = 24) -> Graph:
    """Recompute single-output cheap nodes before each later cluster of their uses, when all their
    inputs are alive there anyway. Top-level graph only."""
    nodes = graph.nodes
    pinned = {v.id for v in graph.outputs}
    uses: dict[int, list[int]] = {}
    for k, n in enumerate(nodes):
        for v in n.inputs:
            uses.setdefault(v.id, []).append(k)
    forever = {v.id for v in graph.inputs} | pinned
    forever |= {n.outputs[0].id for n in nodes if n.op == "constant"}
    alive_until = {vid: (math.inf if vid in forever else us[-1]) for vid, us in uses.items()}
    for vid in forever:
        alive_until[vid] = math.inf

    inserts: dict[int, list[Node]] = {}         # node index -> clones to place before it
    redirect: dict[tuple[int, int], Value] = {}  # (node index, value id) -> clone to read instead
    for k, node in enumerate(nodes):
        if node.op not in CHEAP_OPS or len(node.outputs) != 1 or node.subgraphs:
            continue
        v = node.outputs[0]
        if v.id in pinned or v.id not in uses:
            continue
        groups = _clusters(sorted(set(uses[v.id])), min_gap)
        if len(groups) < 2:
            continue
        for group in groups[1:]:
            first = group[0]
            if not all(alive_until.get(i.id, -1) >= first for i in node.inputs):
                continue
            clone_out = Value(v.shape, v.dtype)
            inserts.setdefault(first, []).append(Node(node.op, list(node.inputs), dict(node.attrs), [clone_out]))
            for u in group:
                redirect[(u, v.id)] = clone_out
        remaining = [u for u in uses[v.id] if (u, v.id) not in redirect]
        alive_until[v.id] = remaining[-1] if remaining else k
    if not inserts:
        return graph
    new_nodes: list[Node] = []
    for k, n in enumerate(nodes):
        new_nodes.extend(inserts.get(k, ()))
        if any((k, v.id) in redirect for v in n.inputs):
            n.inputs = [redirect.get((k, v.id), v) for v in n.inputs]
        new_nodes.append(n)
    graph.nodes = new_nodes
    return graph
