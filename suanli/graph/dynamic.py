"""Symbolic batch dimension from two traces: the same function traced at batch ``b`` and ``b + 1``.

Tracing by example sees only concrete sizes (user code does ``B, T, C = x.shape`` and
``reshape(B * T, C)``). Two traces that differ only in the batch size give two graphs of the same
structure; every size that differs between them is fitted as ``scale * B + offset`` (exact with two
points, integers required), every attribute likewise. Constants must be equal, or be fills of one
value whose shape depends on B. Anything else -- a different structure, a float attribute or a
constant value that depends on B -- means the graph is not batch-polymorphic and ``generalize``
says why. At run time the interpreter re-checks every node's shape against the fitted sizes, so a
fit that happens to be wrong for another size fails loudly.

>>> import suanli
>>> from suanli.graph import trace
>>> from suanli.graph.dynamic import generalize
>>> f = lambda x: x.reshape(-1).exp()
>>> g1, g2 = (trace(f, (suanli.ones(b, 3),)).graph for b in (2, 3))
>>> g, why = generalize(g1, g2, 2)
>>> print(g)
graph(%0: float32[B,3] arg0) {
  %1: float32[3*B] = reshape(%0, shape=(3*B,))
  %2: float32[3*B] = exp(%1)
  return %2
}
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .ir import Graph, Node, Sym, Value


class _Mismatch(Exception):
    pass


def _fit(a: int, b: int, batch: int, sym: str) -> int | Sym:
    if a == b:
        return a
    scale = b - a                         # the second trace is at batch + 1
    offset = a - scale * batch
    return Sym(sym, scale, offset) if (scale, offset) != (1, 0) else Sym(sym)


def _fit_attr(a: Any, b: Any, batch: int, sym: str, where: str) -> Any:
    if type(a) is not type(b):
        raise _Mismatch(f"{where}: attribute types differ ({a!r} vs {b!r})")
    if isinstance(a, (tuple, list)):
        if len(a) != len(b):
            raise _Mismatch(f"{where}: attribute lengths differ ({a!r} vs {b!r})")
        return type(a)(_fit_attr(x, y, batch, sym, where) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        if a.shape != b.shape or a.dtype != b.dtype or not np.array_equal(a, b, equal_nan=True):
            raise _Mismatch(f"{where}: an array attribute depends on the batch size")
        return a
    if a == b or (a != a and b != b):
        return a
    if isinstance(a, int) and not isinstance(a, bool):
        return _fit(a, b, batch, sym)
    raise _Mismatch(f"{where}: attribute {a!r} becomes {b!r} at batch + 1 (not an integer size)")


def _uniform(a: np.ndarray) -> bool:
    return a.size > 0 and bool(np.all(a == a.flat[0]))


def generalize(g1: Graph, g2: Graph, batch: int, sym: str = "B") -> tuple[Graph | None, str]:
    """A graph with symbolic sizes from traces at ``batch`` (``g1``) and ``batch + 1`` (``g2``), or
    ``(None, reason)`` when they are not the same graph up to batch-affine sizes."""
    try:
        graph = _generalize(g1, g2, batch, sym, {})
    except _Mismatch as exc:
        return None, str(exc)
    graph.meta["sym_hints"] = {sym: batch}
    return graph, ""


def _generalize(g1: Graph, g2: Graph, batch: int, sym: str, outer: dict[int, Value]) -> Graph:
    mapping: dict[int, Value] = dict(outer)      # g1 value id -> new value
    partner: dict[int, int] = {}                 # g1 value id -> g2 value id

    def new_value(v1: Value, v2: Value, where: str) -> Value:
        if v1.dtype != v2.dtype or len(v1.shape) != len(v2.shape):
            raise _Mismatch(f"{where}: {v1.type_str} vs {v2.type_str}")
        shape = tuple(_fit(a, b, batch, sym) for a, b in zip(v1.shape, v2.shape))
        v = Value(shape, v1.dtype, None, v1.name)
        mapping[v1.id] = v
        partner[v1.id] = v2.id
        return v

    def same_input(a: Value, b: Value, where: str) -> Value:
        if a.id not in mapping or partner.get(a.id) != b.id:
            raise _Mismatch(f"{where}: the two traces read different values")
        return mapping[a.id]

    if len(g1.inputs) != len(g2.inputs) or len(g1.nodes) != len(g2.nodes) or len(g1.outputs) != len(g2.outputs):
        raise _Mismatch("the two traces have different structure (control flow depends on the batch size?)")
    out = Graph([new_value(a, b, f"input {i}") for i, (a, b) in enumerate(zip(g1.inputs, g2.inputs))])
    for k, (n1, n2) in enumerate(zip(g1.nodes, g2.nodes)):
        where = f"node #{k} {n1.op}"
        if n1.op != n2.op or len(n1.inputs) != len(n2.inputs) or len(n1.outputs) != len(n2.outputs) \
                or set(n1.attrs) != set(n2.attrs) or set(n1.subgraphs) != set(n2.subgraphs):
            raise _Mismatch(f"{where}: the two traces differ ({n1.op} vs {n2.op})")
        ins = [same_input(a, b, where) for a, b in zip(n1.inputs, n2.inputs)]
        attrs = _node_attrs(n1, n2, batch, sym, where)
        subs = {key: _generalize(n1.subgraphs[key], n2.subgraphs[key], batch, sym, {}) for key in n1.subgraphs}
        outs = [new_value(a, b, where) for a, b in zip(n1.outputs, n2.outputs)]
        out.nodes.append(Node(n1.op, ins, attrs, outs, subs))
    out.outputs = [same_input(a, b, "the outputs") for a, b in zip(g1.outputs, g2.outputs)]
    out.meta = dict(g1.meta)
    return out


def _node_attrs(n1: Node, n2: Node, batch: int, sym: str, where: str) -> dict[str, Any]:
    if n1.op != "constant":
        return {k: _fit_attr(n1.attrs[k], n2.attrs[k], batch, sym, where) for k in n1.attrs}
    a, b = n1.attrs["value"], n2.attrs["value"]
    if a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True):
        return dict(n1.attrs)
    if a.dtype == b.dtype and a.ndim == b.ndim and _uniform(a) and _uniform(b) and a.flat[0] == b.flat[0]:
        return {"value": a, "fill": a.flat[0]}        # e.g. ones of shape (B,): rebuilt per batch size
    raise _Mismatch(f"{where}: a constant's value depends on the batch size "
                    f"({a.dtype}{list(a.shape)} vs {b.dtype}{list(b.shape)})")
