"""Dead-code elimination and common-subexpression elimination.

Both rely on every primitive being pure: the tracer refuses in-place ops and random draws, so a
node's outputs depend only on its op, attributes and inputs, and a node nobody reads can go.

>>> import numpy as np
>>> from suanli.graph import Graph
>>> g = Graph()
>>> x = g.add_input((3,), np.float32)
>>> a = g.add_node("exp", [x], shape=(3,), dtype=np.float32)
>>> b = g.add_node("exp", [x], shape=(3,), dtype=np.float32)       # the same value again
>>> dead = g.add_node("log", [x], shape=(3,), dtype=np.float32)    # never read
>>> g.outputs = [g.add_node("add", [a, b], shape=(3,), dtype=np.float32)]
>>> [n.op for n in dce(cse(g)).nodes]
['exp', 'add']
"""
from __future__ import annotations

from typing import Any, Hashable

import numpy as np

from ...graph import Graph

__all__ = ["dce", "cse"]

_CONST_KEY_LIMIT = 1 << 12       # constants up to this many elements are compared by value


def dce(graph: Graph) -> Graph:
    """Remove nodes none of whose outputs is read (by a later node or as a graph output), in this
    graph and in every subgraph (a subgraph's own outputs are its signature and stay)."""
    live = {v.id for v in graph.outputs}
    kept = []
    for node in reversed(graph.nodes):
        if any(v.id in live for v in node.outputs):
            kept.append(node)
            live.update(v.id for v in node.inputs)
            for sub in node.subgraphs.values():
                dce(sub)
    kept.reverse()
    graph.nodes = kept
    return graph


def _attr_key(value: Any) -> Hashable:
    """A hashable stand-in for an attribute value (arrays by content, containers recursively)."""
    if isinstance(value, np.ndarray):
        return ("array", value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(_attr_key(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple(sorted((k, _attr_key(v)) for k, v in value.items())))
    if isinstance(value, np.generic):
        return ("scalar", value.dtype.str, value.item())
    try:
        hash(value)
    except TypeError:
        return ("id", id(value))          # unhashable and unknown: equal only to itself
    return (type(value).__name__, value)


def _node_key(node: Any) -> Hashable | None:
    if node.subgraphs:
        return None                       # control flow: not worth comparing bodies
    if node.op == "constant":
        value = node.attrs["value"]
        if value.size > _CONST_KEY_LIMIT or "fill" in node.attrs:
            return None
        # -0.0 and 0.0, or two NaN payloads, differ in bytes: byte equality never merges unequal values
        return ("constant", value.dtype.str, value.shape, value.tobytes())
    attrs = tuple(sorted((k, _attr_key(v)) for k, v in node.attrs.items()))
    return (node.op, tuple(v.id for v in node.inputs), attrs)


def cse(graph: Graph) -> Graph:
    """Replace each node that repeats an earlier one (same op, same inputs, equal attributes; equal
    small constants) by the earlier node's outputs. Recurses into subgraphs."""
    seen: dict[Hashable, Any] = {}
    kept = []
    rename: dict[int, Any] = {}
    for node in graph.nodes:
        if rename:
            node.inputs = [rename.get(v.id, v) for v in node.inputs]
        for sub in node.subgraphs.values():
            cse(sub)
        key = _node_key(node)
        if key is not None:
            first = seen.get(key)
            if first is not None and all(a.shape == b.shape and a.dtype == b.dtype
                                         for a, b in zip(first.outputs, node.outputs)):
                for old, new in zip(node.outputs, first.outputs):
                    rename[old.id] = new
                continue
            seen[key] = node
        kept.append(node)
    graph.nodes = kept
    if rename:
        graph.outputs = [rename.get(v.id, v) for v in graph.outputs]
    return graph
