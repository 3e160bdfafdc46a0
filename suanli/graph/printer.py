"""Readable text for graphs: ``%3: float32[B,10] = matmul(%1, %2)``.

Values are numbered in order of appearance at print time (ids are process-wide and large), so the
text of a graph is stable and two prints of equal graphs are equal -- ``explain()`` diffs rely on it.

>>> import numpy as np
>>> from suanli.graph import Graph
>>> g = Graph()
>>> x = g.add_input((2,), np.float64, name="x")
>>> two = g.add_constant(np.array(2.0))
>>> g.outputs = [g.add_node("mul", [x, two], shape=(2,), dtype=np.float64)]
>>> print(g)
graph(%0: float64[2] x) {
  %1: float64[] = constant(2.0)
  %2: float64[2] = mul(%0, %1)
  return %2
}
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .ir import Graph, Value


def format_graph(graph: Graph) -> str:
    """The whole graph (subgraphs indented inside their node) as text."""
    names: dict[int, str] = {}
    lines: list[str] = []
    _format(graph, "graph", names, lines, indent="")
    return "\n".join(lines)


def _name(v: Value, names: dict[int, str]) -> str:
    if v.id not in names:
        names[v.id] = f"%{len(names)}"
    return names[v.id]


def _decl(v: Value, names: dict[int, str]) -> str:
    return f"{_name(v, names)}: {v.type_str}" + (f" {v.name}" if v.name else "")


def _format(graph: Graph, title: str, names: dict[int, str], lines: list[str], indent: str) -> None:
    lines.append(f"{indent}{title}({', '.join(_decl(v, names) for v in graph.inputs)}) {{")
    inner = indent + "  "
    for n in graph.nodes:
        outs = ", ".join(_decl(v, names) for v in n.outputs)
        if n.op == "constant":
            args = format_constant(n.attrs.get("value"))
        elif n.op == "fused":
            args = ", ".join([_name(v, names) for v in n.inputs] + [f"ops={n.attrs.get('ops')}"])
        else:
            args = ", ".join([_name(v, names) if v.id in names else f"<undefined %{v.id}>" for v in n.inputs]
                             + [f"{k}={format_attr(a)}" for k, a in n.attrs.items()])
        if n.subgraphs:
            lines.append(f"{inner}{outs} = {n.op}({args}) {{")
            for key, sub in n.subgraphs.items():
                _format(sub, key, names, lines, inner + "  ")
            lines.append(f"{inner}}}")
        else:
            lines.append(f"{inner}{outs} = {n.op}({args})")
    rets = ", ".join(_name(v, names) if v.id in names else f"<undefined %{v.id}>" for v in graph.outputs)
    lines.append(f"{inner}return {rets}")
    lines.append(f"{indent}}}")


def format_constant(value: Any) -> str:
    """Scalars print their value; arrays print their shape and dtype."""
    if isinstance(value, np.ndarray):
        if value.size == 1 and value.ndim == 0:
            return repr(value.item())
        return f"<{'x'.join(map(str, value.shape)) or 'scalar'} {value.dtype}>"
    return repr(value)


def format_attr(value: Any) -> str:
    if isinstance(value, np.dtype):
        return str(value)
    if isinstance(value, type) and issubclass(value, np.generic):
        return np.dtype(value).name
    if isinstance(value, np.ndarray):
        return format_constant(value)
    if isinstance(value, tuple):
        inner = ", ".join(format_attr(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, list):
        return "[" + ", ".join(format_attr(v) for v in value) + "]"
    return str(value) if not isinstance(value, str) else repr(value)
