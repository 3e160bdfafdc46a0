"""The graph IR shared by the tracer, the passes, the executors and ONNX: values, nodes, graphs.

A :class:`Graph` is a list of :class:`Node` in topological order between its ``inputs`` and
``outputs`` (both lists of :class:`Value`). A node names a registry primitive (``"add"``,
``"matmul"``...) with its attributes, or one of the structural ops in :data:`STRUCTURAL_OPS`:
``"constant"`` (the array in ``attrs["value"]``) and the control-flow ops ``"cond"``,
``"while_loop"``, ``"scan"`` whose bodies are :class:`Graph` objects in ``node.subgraphs``, and
``"fused"`` (a group of elementwise primitives run as one generated kernel: ``attrs["group"]``,
``attrs["kernel"]``; made by the fusion pass).
Registry primitives have exactly one output; structural ops may have several.

A dimension of a shape is an ``int`` or a :class:`Sym` (``Sym("B")``, or affine like ``64*B``):
``suanli.compile(..., dynamic=True)`` makes the batch dimension symbolic.

>>> import numpy as np
>>> from suanli.graph import Graph, Sym
>>> g = Graph()
>>> x = g.add_input((Sym("B"), 3), np.float32, name="x")
>>> w = g.add_constant(np.ones((3, 2), np.float32))
>>> y = g.add_node("matmul", [x, w], shape=(Sym("B"), 2), dtype=np.float32)
>>> g.outputs = [y]
>>> print(g)
graph(%0: float32[B,3] x) {
  %1: float32[3,2] = constant(<3x2 float32>)
  %2: float32[B,2] = matmul(%0, %1)
  return %2
}
>>> g.users(x)[0].op
'matmul'
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

STRUCTURAL_OPS = ("constant", "cond", "while_loop", "scan", "fused")

_ids = itertools.count()     # value ids are unique across all graphs of the process


@dataclass(frozen=True)
class Sym:
    """A symbolic dimension ``scale * name + offset`` (ints), e.g. ``B``, ``64*B``, ``B+1``.

    >>> b = Sym("B")
    >>> str(b * 64 + 1), (b * 64 + 1).evaluate({"B": 2})
    ('64*B+1', 129)
    """

    name: str
    scale: int = 1
    offset: int = 0

    def evaluate(self, bindings: Mapping[str, int]) -> int:
        try:
            return self.scale * int(bindings[self.name]) + self.offset
        except KeyError:
            raise KeyError(f"symbolic dimension {self.name!r} has no value; bindings: {dict(bindings)}") from None

    def __mul__(self, k: int) -> Sym:
        return Sym(self.name, self.scale * k, self.offset * k)

    __rmul__ = __mul__

    def __add__(self, k: int) -> Sym:
        return Sym(self.name, self.scale, self.offset + k)

    def __str__(self) -> str:
        s = self.name if self.scale == 1 else f"{self.scale}*{self.name}"
        if self.offset:
            s += f"{self.offset:+d}"
        return s


Dim = int | Sym


def evaluate_dims(shape: Sequence[Dim], bindings: Mapping[str, int]) -> tuple[int, ...]:
    """A concrete shape from a possibly symbolic one."""
    return tuple(d.evaluate(bindings) if isinstance(d, Sym) else int(d) for d in shape)


def evaluate_attr(value: Any, bindings: Mapping[str, int]) -> Any:
    """An attribute with every :class:`Sym` inside (nested tuples/lists) replaced by its value."""
    if isinstance(value, Sym):
        return value.evaluate(bindings)
    if isinstance(value, tuple):
        return tuple(evaluate_attr(v, bindings) for v in value)
    if isinstance(value, list):
        return [evaluate_attr(v, bindings) for v in value]
    return value


def has_sym(value: Any) -> bool:
    """True when ``value`` (a shape or attribute) contains a :class:`Sym`."""
    if isinstance(value, Sym):
        return True
    if isinstance(value, (tuple, list)):
        return any(has_sym(v) for v in value)
    return False


class Value:
    """One SSA value: produced once (by ``producer``, or a graph input when ``producer`` is None)."""

    __slots__ = ("id", "shape", "dtype", "producer", "name")

    def __init__(self, shape: Sequence[Dim], dtype: Any, producer: Node | None = None,
                 name: str | None = None) -> None:
        self.id = next(_ids)
        self.shape: tuple[Dim, ...] = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.producer = producer
        self.name = name

    @property
    def type_str(self) -> str:
        """``float32[B,10]``: the dtype and shape as the printer shows them."""
        return f"{self.dtype}[{','.join(str(d) for d in self.shape)}]"

    def __repr__(self) -> str:
        return f"<Value %{self.id}: {self.type_str}{' ' + self.name if self.name else ''}>"


class Node:
    """One operation: ``outputs = op(*inputs, **attrs)``, with ``subgraphs`` for control flow."""

    __slots__ = ("op", "inputs", "attrs", "outputs", "subgraphs")

    def __init__(self, op: str, inputs: Sequence[Value], attrs: Mapping[str, Any] | None = None,
                 outputs: Sequence[Value] = (), subgraphs: Mapping[str, Graph] | None = None) -> None:
        self.op = op
        self.inputs: list[Value] = list(inputs)
        self.attrs: dict[str, Any] = dict(attrs or {})
        self.outputs: list[Value] = list(outputs)
        self.subgraphs: dict[str, Graph] = dict(subgraphs or {})
        for v in self.outputs:
            v.producer = self

    @property
    def output(self) -> Value:
        """The single output of a primitive node."""
        if len(self.outputs) != 1:
            raise ValueError(f"node '{self.op}' has {len(self.outputs)} outputs; use .outputs")
        return self.outputs[0]

    def __repr__(self) -> str:
        return f"<Node {self.op} ({len(self.inputs)} in, {len(self.outputs)} out)>"


class Graph:
    """Inputs, topologically ordered nodes, outputs; ``meta`` holds free-form facts for passes."""

    def __init__(self, inputs: Sequence[Value] = (), nodes: Sequence[Node] = (),
                 outputs: Sequence[Value] = ()) -> None:
        self.inputs: list[Value] = list(inputs)
        self.nodes: list[Node] = list(nodes)
        self.outputs: list[Value] = list(outputs)
        self.meta: dict[str, Any] = {}

    # ---------------------------------------------------------------- building
    def add_input(self, shape: Sequence[Dim], dtype: Any, name: str | None = None) -> Value:
        v = Value(shape, dtype, None, name)
        self.inputs.append(v)
        return v

    def add_node(self, op: str, inputs: Sequence[Value], attrs: Mapping[str, Any] | None = None, *,
                 shape: Sequence[Dim] = (), dtype: Any = np.float32,
                 subgraphs: Mapping[str, Graph] | None = None) -> Value:
        """Append a single-output node and return its output value."""
        out = Value(shape, dtype)
        self.nodes.append(Node(op, inputs, attrs, [out], subgraphs))
        return out

    def add_constant(self, array: np.ndarray, name: str | None = None) -> Value:
        array = np.asarray(array)
        out = Value(array.shape, array.dtype, name=name)
        self.nodes.append(Node("constant", [], {"value": array}, [out]))
        return out

    # ---------------------------------------------------------------- queries and rewrites
    def users(self, value: Value) -> list[Node]:
        """Nodes of this graph (not of subgraphs) that read ``value``, in order."""
        return [n for n in self.nodes if any(i is value for i in n.inputs)]

    def replace_all_uses(self, old: Value, new: Value) -> None:
        """Every read of ``old`` (node inputs and graph outputs) reads ``new`` instead."""
        for n in self.nodes:
            n.inputs = [new if i is old else i for i in n.inputs]
        self.outputs = [new if o is old else o for o in self.outputs]

    def values(self) -> Iterator[Value]:
        """Inputs, then every node output, in order."""
        yield from self.inputs
        for n in self.nodes:
            yield from n.outputs

    def walk(self) -> Iterator[Node]:
        """Every node, including those of subgraphs (pre-order)."""
        for n in self.nodes:
            yield n
            for sub in n.subgraphs.values():
                yield from sub.walk()

    def copy(self) -> Graph:
        """A deep copy with fresh values (constants' arrays are shared: they are never mutated)."""
        return _copy_graph(self, {})

    def __str__(self) -> str:
        from .printer import format_graph
        return format_graph(self)

    def __repr__(self) -> str:
        return f"<Graph {len(self.inputs)} inputs, {len(self.nodes)} nodes, {len(self.outputs)} outputs>"


def _copy_graph(graph: Graph, mapping: dict[int, Value]) -> Graph:
    """Copy ``graph``; ``mapping`` (id -> new value) resolves values captured from outside."""
    def fresh(v: Value) -> Value:
        new = Value(v.shape, v.dtype, None, v.name)
        mapping[v.id] = new
        return new

    def get(v: Value) -> Value:
        return mapping.get(v.id, v)

    out = Graph([fresh(v) for v in graph.inputs])
    for n in graph.nodes:
        inputs = [get(v) for v in n.inputs]
        subs = {k: _copy_graph(g, dict(mapping)) for k, g in n.subgraphs.items()}
        out.nodes.append(Node(n.op, inputs, dict(n.attrs), [fresh(v) for v in n.outputs], subs))
    out.outputs = [get(v) for v in graph.outputs]
    out.meta = dict(graph.meta)
    return out


def graph_from_nodes(inputs: Iterable[Value], nodes: Iterable[Node], outputs: Iterable[Value]) -> Graph:
    """Assemble a graph from parts (no copy)."""
    return Graph(list(inputs), list(nodes), list(outputs))
