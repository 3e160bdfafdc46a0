"""The verifier: is a graph well formed? Run after tracing and after every pass.

Checks, with errors that name the node: every value is defined once and before use (topological
order, SSA), graph outputs are defined, producers are consistent, each primitive node's output
shape and dtype are what the registry's shape rule says, constants match their arrays, control-flow
nodes agree with their subgraphs' signatures, and subgraphs (closed: they see only their own inputs)
verify recursively.

Control-flow signatures (``nc`` = ``attrs["num_carry"]``):

* ``cond(pred, *operands) {then, else}``: both branches take the operands, return the outputs.
* ``while_loop(*carry, *consts) {cond, body}``: ``cond(carry, consts) -> bool[]``,
  ``body(carry, consts) -> carry``; outputs are the final carry.
* ``scan(*carry, *xs, *consts) {body}`` (``attrs["num_xs"]``): ``body(carry, x[i], consts) ->
  (carry, y)``; outputs are the final carry then each ``y`` stacked on a new leading axis.

>>> import numpy as np
>>> from suanli.graph import Graph, verify
>>> g = Graph()
>>> x = g.add_input((2, 3), np.float32)
>>> g.outputs = [g.add_node("exp", [x], shape=(3, 2), dtype=np.float32)]   # wrong shape
>>> try:
...     verify(g)
... except Exception as e:
...     print(str(e).splitlines()[0])
verify: node #0 exp -> %1: the shape rule says float32[2,3], the node says float32[3,2]
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import SuanliError, is_clear_error
from .ir import Graph, Node, Sym, Value, evaluate_attr, evaluate_dims, has_sym


class GraphError(SuanliError):
    """A malformed graph (a bug in a tracer, importer or pass): the message names the node."""


def verify(graph: Graph, bindings: Mapping[str, int] | None = None) -> Graph:
    """Raise :class:`GraphError` if ``graph`` is malformed; return it unchanged otherwise.

    Symbolic dimensions are checked at ``bindings`` (default: ``graph.meta["sym_hints"]``, the sizes
    seen while tracing, else 3 for every symbol).
    """
    if bindings is None:
        bindings = graph.meta.get("sym_hints") or _ProbeBindings()
    _verify(graph, bindings, "graph")
    return graph


class _ProbeBindings(dict):
    def __missing__(self, key: str) -> int:
        return 3


def _sig(values: Sequence[Value]) -> list[tuple[tuple, np.dtype]]:
    return [(tuple(v.shape), v.dtype) for v in values]


def _fmt(v: Value, names: dict[int, int]) -> str:
    return f"%{names.get(v.id, v.id)}"


def _verify(graph: Graph, bindings: Mapping[str, int], where: str) -> None:
    names: dict[int, int] = {}     # value id -> print number (matches the printer's numbering order)
    defined: set[int] = set()

    def define(v: Value, what: str) -> None:
        if v.id in defined:
            raise GraphError(f"verify: {where}: value %{v.id} is defined twice ({what})")
        defined.add(v.id)
        names[v.id] = len(names)

    for v in graph.inputs:
        if v.producer is not None:
            raise GraphError(f"verify: {where}: input %{v.id} has a producer ({v.producer.op}); "
                             "graph inputs must have producer None")
        define(v, "graph input")
    for k, node in enumerate(graph.nodes):
        label = f"node #{k} {node.op}"
        for i, v in enumerate(node.inputs):
            if not isinstance(v, Value):
                raise GraphError(f"verify: {where}: {label}: input {i} is a {type(v).__name__}, not a Value")
            if v.id not in defined:
                raise GraphError(f"verify: {where}: {label}: input {i} (%{v.id}: {v.type_str}) is used "
                                 "before it is defined (or never defined: a dangling value)\n"
                                 "  help: nodes must be in topological order and read only values of "
                                 "this graph (subgraphs take captured values as inputs)")
        for v in node.outputs:
            if v.producer is not node:
                raise GraphError(f"verify: {where}: {label}: output %{v.id}'s producer is not this node")
            define(v, label)
        label = f"{label} -> " + ", ".join(_fmt(v, names) for v in node.outputs)
        _check_node(node, bindings, f"{where}: {label}" if where != "graph" else label)
    for i, v in enumerate(graph.outputs):
        if v.id not in defined:
            raise GraphError(f"verify: {where}: output {i} (%{v.id}: {v.type_str}) is not defined in the graph")


def _check_node(node: Node, bindings: Mapping[str, int], label: str) -> None:
    op = node.op
    if op == "constant":
        return _check_constant(node, label)
    if op == "cond":
        return _check_cond(node, bindings, label)
    if op == "while_loop":
        return _check_while(node, bindings, label)
    if op == "scan":
        return _check_scan(node, bindings, label)
    if op == "fused":
        return _check_fused(node, label)
    from ..ops.registry import Spec, registry
    if op not in registry:
        raise GraphError(f"verify: {label}: unknown op {op!r}\n  help: a node names a registry primitive "
                         "(suanli.ops.registry.names()) or one of constant/cond/while_loop/scan")
    if len(node.outputs) != 1:
        raise GraphError(f"verify: {label}: a primitive node has exactly one output, this one has "
                         f"{len(node.outputs)}")
    specs = [Spec(evaluate_dims(v.shape, bindings), v.dtype) for v in node.inputs]
    attrs = {k: evaluate_attr(a, bindings) for k, a in node.attrs.items()}
    try:
        spec = registry[op].infer(*specs, **attrs)
    except Exception as exc:  # noqa: BLE001 - report any rule failure against this node
        kind = "rejects its inputs" if is_clear_error(exc) else f"failed ({type(exc).__name__})"
        raise GraphError(f"verify: {label}: the shape rule {kind}: {exc}") from exc
    out = node.outputs[0]
    want = evaluate_dims(out.shape, bindings)
    if tuple(spec.shape) != want or np.dtype(spec.dtype) != out.dtype:
        expect = Value(spec.shape, spec.dtype).type_str
        raise GraphError(f"verify: {label}: the shape rule says {expect}, the node says {out.type_str}")


def _check_fused(node: Node, label: str) -> None:
    group = node.attrs.get("group")
    if group is None or "kernel" not in node.attrs:
        raise GraphError(f"verify: {label}: a fused node needs attrs 'group' and 'kernel'")
    for kind, values, declared in (("input", node.inputs, group.inputs), ("output", node.outputs, group.outputs)):
        if [(tuple(v.shape), v.dtype) for v in values] != [(tuple(d.shape), d.dtype) for d in declared]:
            raise GraphError(f"verify: {label}: the fused group's {kind}s are "
                             f"{[(d.shape, str(d.dtype)) for d in declared]}, the node's are "
                             f"{[v.type_str for v in values]}")


def _check_constant(node: Node, label: str) -> None:
    value = node.attrs.get("value")
    if node.inputs or len(node.outputs) != 1:
        raise GraphError(f"verify: {label}: a constant has no inputs and one output")
    if not isinstance(value, np.ndarray):
        raise GraphError(f"verify: {label}: attrs['value'] must be an ndarray, got {type(value).__name__}")
    out = node.outputs[0]
    if has_sym(out.shape) and node.attrs.get("fill") is not None:
        return    # a symbolic-shaped fill constant: its array is rebuilt per binding
    if value.shape != out.shape or value.dtype != out.dtype:
        raise GraphError(f"verify: {label}: the array is {value.dtype}{list(value.shape)}, the value "
                         f"says {out.type_str}")


def _subgraph(node: Node, key: str, label: str) -> Graph:
    if key not in node.subgraphs:
        raise GraphError(f"verify: {label}: missing subgraph {key!r} (has {sorted(node.subgraphs)})")
    return node.subgraphs[key]


def _same(a: Sequence[Any], b: Sequence[Any], what: str, label: str) -> None:
    if len(a) != len(b) or any(x != y for x, y in zip(a, b)):
        fa = ", ".join(f"{d}{list(map(str, s))}" for s, d in a)
        fb = ", ".join(f"{d}{list(map(str, s))}" for s, d in b)
        raise GraphError(f"verify: {label}: {what} differ\n  Expect: ({fa})\n  Actual: ({fb})")


def _check_cond(node: Node, bindings: Mapping[str, int], label: str) -> None:
    if not node.inputs or tuple(node.inputs[0].shape) != () or node.inputs[0].dtype != np.bool_:
        raise GraphError(f"verify: {label}: the predicate (input 0) must be a bool scalar")
    for key in ("then", "else"):
        sub = _subgraph(node, key, label)
        _same(_sig(node.inputs[1:]), _sig(sub.inputs), f"operands and the {key!r} branch's inputs", label)
        _same(_sig(node.outputs), _sig(sub.outputs), f"outputs and the {key!r} branch's outputs", label)
        _verify(sub, bindings, f"{label} [{key}]")


def _check_while(node: Node, bindings: Mapping[str, int], label: str) -> None:
    nc = node.attrs.get("num_carry", len(node.inputs))
    carry = _sig(node.inputs[:nc])
    cond, body = _subgraph(node, "cond", label), _subgraph(node, "body", label)
    for key, sub in (("cond", cond), ("body", body)):
        _same(_sig(node.inputs), _sig(sub.inputs), f"inputs and the {key!r} subgraph's inputs", label)
    if len(cond.outputs) != 1 or _sig(cond.outputs) != [((), np.dtype(np.bool_))]:
        raise GraphError(f"verify: {label}: the 'cond' subgraph must return one bool scalar")
    _same(carry, _sig(body.outputs), "the carried values and the 'body' outputs", label)
    _same(carry, _sig(node.outputs), "the carried values and the node outputs", label)
    _verify(cond, bindings, f"{label} [cond]")
    _verify(body, bindings, f"{label} [body]")


def _check_scan(node: Node, bindings: Mapping[str, int], label: str) -> None:
    nc, nx = node.attrs.get("num_carry", 0), node.attrs.get("num_xs", 0)
    body = _subgraph(node, "body", label)
    carry, xs, consts = node.inputs[:nc], node.inputs[nc:nc + nx], node.inputs[nc + nx:]
    length = node.attrs.get("length")
    for x in xs:
        if not x.shape or x.shape[0] != length:
            raise GraphError(f"verify: {label}: every xs must have the scan length {length} as dim 0, "
                             f"got {x.type_str}")
    want_in = _sig(carry) + [(tuple(x.shape[1:]), x.dtype) for x in xs] + _sig(consts)
    _same(want_in, _sig(body.inputs), "(carry, x slices, consts) and the body's inputs", label)
    _same(_sig(carry), _sig(body.outputs[:nc]), "the carry and the body's carry outputs", label)
    ys = [((length,) + tuple(v.shape), v.dtype) for v in body.outputs[nc:]]
    _same(_sig(carry) + ys, _sig(node.outputs), "(final carry, stacked ys) and the node outputs", label)
    _verify(body, bindings, f"{label} [body]")


__all__ = ["GraphError", "verify", "Sym"]
