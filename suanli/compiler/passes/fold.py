"""Constant folding and algebraic simplification.

``constant_folding`` evaluates every primitive whose inputs are all constants (with the same NumPy
implementation eager mode uses, so folding never changes a result) and inlines the taken branch of
a ``cond`` whose predicate is constant. ``simplify`` removes operations that provably return their
input unchanged. Neither pass deletes the nodes it bypasses: DCE does.

>>> import numpy as np
>>> from suanli.graph import Graph
>>> g = Graph()
>>> x = g.add_input((2,), np.float64)
>>> one = g.add_constant(np.float64(1.0))
>>> two = g.add_node("add", [one, one], shape=(), dtype=np.float64)      # 1 + 1: folded to 2
>>> y = g.add_node("mul", [x, one], shape=(2,), dtype=np.float64)         # x * 1: is x
>>> g.outputs = [g.add_node("mul", [y, two], shape=(2,), dtype=np.float64)]
>>> from suanli.compiler.passes import dce
>>> print(dce(simplify(constant_folding(g))))
graph(%0: float64[2]) {
  %1: float64[] = constant(2.0)
  %2: float64[2] = mul(%0, %1)
  return %2
}
"""
from __future__ import annotations

import numpy as np

from ...graph import Graph, Node, Value, has_sym, run_primitive

__all__ = ["constant_folding", "simplify"]

# A folded constant may not be much bigger than what it was computed from: folding
# ``expand(scalar, (4096, 4096))`` would store 64 MiB in the plan instead of a 4-byte scalar.
FOLD_GROWTH_LIMIT = 1 << 16


def _const(node: Node | None) -> np.ndarray | None:
    if node is None or node.op != "constant" or "fill" in node.attrs:
        return None
    return node.attrs["value"]


def constant_folding(graph: Graph) -> Graph:
    """Evaluate primitives on constant inputs at compile time; inline constant-predicate ``cond``s.
    Recurses into subgraphs."""
    nodes: list[Node] = []
    rename: dict[int, Value] = {}
    for node in graph.nodes:
        if rename:
            node.inputs = [rename.get(v.id, v) for v in node.inputs]
        for sub in node.subgraphs.values():
            constant_folding(sub)
        consts = [_const(v.producer) for v in node.inputs]
        if node.op == "cond" and consts and consts[0] is not None:
            branch = node.subgraphs["then" if bool(consts[0]) else "else"]
            outs = _inline(branch, node.inputs[1:], nodes)
            for old, new in zip(node.outputs, outs):
                rename[old.id] = new
            continue
        if (node.op in ("constant", "cond", "while_loop", "scan") or node.subgraphs or not node.inputs
                or any(c is None for c in consts) or any(has_sym(a) for a in node.attrs.values())
                or has_sym(node.outputs[0].shape)):
            nodes.append(node)
            continue
        out = node.outputs[0]
        size = int(np.prod(out.shape)) if out.shape else 1
        if size > max(FOLD_GROWTH_LIMIT, sum(c.size for c in consts)):
            nodes.append(node)
            continue
        value = run_primitive(node.op, consts, node.attrs)
        nodes.append(Node("constant", [], {"value": value}, [out]))
    graph.nodes = nodes
    if rename:
        graph.outputs = [rename.get(v.id, v) for v in graph.outputs]
    return graph


def _inline(branch: Graph, operands: list[Value], into: list[Node]) -> list[Value]:
    """Append copies of ``branch``'s nodes reading ``operands``; return the copied outputs."""
    mapping: dict[int, Value] = {v.id: o for v, o in zip(branch.inputs, operands)}
    for n in branch.nodes:
        outs = [Value(v.shape, v.dtype, None, v.name) for v in n.outputs]
        for old, new in zip(n.outputs, outs):
            mapping[old.id] = new
        into.append(Node(n.op, [mapping.get(v.id, v) for v in n.inputs], dict(n.attrs), outs,
                         dict(n.subgraphs)))
    return [mapping.get(v.id, v) for v in branch.outputs]


def _is_scalar_const(v: Value, number: float) -> bool:
    c = _const(v.producer)
    return c is not None and c.size <= 1 << 12 and c.size > 0 and bool(np.all(c == number)) \
        and not np.any(np.signbit(c) != np.signbit(np.asarray(number, c.dtype)))


def _identity_of(node: Node) -> Value | None:
    """The input ``node`` returns unchanged, if it provably does; else None."""
    op, ins, out = node.op, node.inputs, node.outputs[0] if len(node.outputs) == 1 else None
    if out is None or node.subgraphs:
        return None

    def same(v: Value) -> bool:
        return tuple(v.shape) == tuple(out.shape) and v.dtype == out.dtype

    if op in ("copy", "cast", "expand", "reshape") and same(ins[0]):
        return ins[0]
    if op == "permute" and list(node.attrs["perm"]) == list(range(len(out.shape))):
        return ins[0]
    if op in ("mul", "div", "pow") and len(ins) == 2 and same(ins[0]) and _is_scalar_const(ins[1], 1.0):
        return ins[0]
    if op == "mul" and len(ins) == 2 and same(ins[1]) and _is_scalar_const(ins[0], 1.0):
        return ins[1]
    # x + 0 is x except for x = -0.0 (gives +0.0); the constant must be +0.0 for that reason
    if op in ("add", "sub") and len(ins) == 2 and same(ins[0]) and _is_scalar_const(ins[1], 0.0):
        return ins[0] if op == "sub" or not _may_be_negative_zero(ins[0]) else None
    if op == "add" and len(ins) == 2 and same(ins[1]) and _is_scalar_const(ins[0], 0.0):
        return ins[1] if not _may_be_negative_zero(ins[1]) else None
    if op == "neg" and ins[0].producer is not None and ins[0].producer.op == "neg" and same(ins[0].producer.inputs[0]):
        return ins[0].producer.inputs[0]
    return None


def _may_be_negative_zero(v: Value) -> bool:
    """x + 0.0 differs from x only where x is -0.0; sums and products of the same sign cannot make
    one from non-zero data, but we do not track signs: integers are the only safe case."""
    return v.dtype.kind == "f"


def _fuse_chain(node: Node) -> None:
    """reshape(reshape(x)) -> reshape(x); permute(permute(x)) -> one permute (in place)."""
    src = node.inputs[0].producer if node.inputs else None
    if src is None or src.op != node.op:
        return
    if node.op == "reshape":
        node.inputs = [src.inputs[0]]
    elif node.op == "permute":
        inner, outer = src.attrs["perm"], node.attrs["perm"]
        node.inputs = [src.inputs[0]]
        node.attrs = {**node.attrs, "perm": tuple(inner[i] for i in outer)}


def simplify(graph: Graph) -> Graph:
    """Algebraic simplification (exact rewrites only; recurses into subgraphs):
    ``copy/cast/expand/reshape`` to the same shape and dtype, identity ``permute``, ``x*1``,
    ``1*x``, ``x/1``, ``x**1``, ``x-0``, integer ``x+0``, ``-(-x)`` become ``x``; chains of
    ``reshape`` or of ``permute`` collapse into one. A rewrite that would make a graph output the
    very array of a graph input is skipped (callers may mutate outputs)."""
    inputs = {v.id for v in graph.inputs}
    outputs = {v.id for v in graph.outputs}
    rename: dict[int, Value] = {}
    for node in graph.nodes:
        if rename:
            node.inputs = [rename.get(v.id, v) for v in node.inputs]
        for sub in node.subgraphs.values():
            simplify(sub)
        if node.op in ("reshape", "permute"):
            _fuse_chain(node)
        src = _identity_of(node)
        if src is None:
            continue
        out = node.outputs[0]
        if out.id in outputs and src.id in inputs:
            continue
        rename[out.id] = src
    if rename:
        graph.outputs = [rename.get(v.id, v) for v in graph.outputs]
    return graph
