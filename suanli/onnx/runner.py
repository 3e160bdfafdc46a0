"""Run an ONNX graph node by node through the op table (the reference interpreter).

Values live in one dict per graph scope: a Tensor, a list of Tensors (an ONNX sequence) or ``None``
(an absent optional). Subgraphs (``If``/``Loop``/``Scan`` bodies) run in a child scope that can read
the enclosing scopes' values, as ONNX specifies.

>>> import numpy as np, onnx, suanli
>>> from onnx import helper, TensorProto as T
>>> g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
...                       [helper.make_tensor_value_info("x", T.FLOAT, [2])],
...                       [helper.make_tensor_value_info("y", T.FLOAT, [2])])
>>> GraphRunner(g, {"": 17}).run({"x": suanli.tensor([-1.0, 2.0])})
[tensor([0., 2.])]
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import is_clear_error
from ..tensor import Tensor, _wrap
from .errors import OnnxError, UnsupportedOpError, onnx_error
from .table import NodeContext, lookup

Value = Any   # Tensor | list[Tensor] | None


def tensor_from_proto(proto: onnx.TensorProto) -> Tensor:
    """An ONNX TensorProto (initializer or attribute) as a suanli Tensor."""
    return _wrap(np.array(numpy_helper.to_array(proto)))


def decode_attribute(attr: onnx.AttributeProto) -> Any:
    """Attribute value as Python: ints/floats/strings (str), NumPy arrays for tensors, GraphProtos kept."""
    A = onnx.AttributeProto
    t = attr.type
    if t == A.FLOAT:
        return float(attr.f)
    if t == A.INT:
        return int(attr.i)
    if t == A.STRING:
        return attr.s.decode("utf-8", errors="replace")
    if t == A.TENSOR:
        return numpy_helper.to_array(attr.t)
    if t == A.GRAPH:
        return attr.g
    if t == A.FLOATS:
        return [float(v) for v in attr.floats]
    if t == A.INTS:
        return [int(v) for v in attr.ints]
    if t == A.STRINGS:
        return [s.decode("utf-8", errors="replace") for s in attr.strings]
    if t == A.TENSORS:
        return [numpy_helper.to_array(v) for v in attr.tensors]
    if t == A.GRAPHS:
        return list(attr.graphs)
    if t == A.SPARSE_TENSOR:
        return numpy_helper.to_array(onnx.numpy_helper.to_array(attr.sparse_tensor))  # pragma: no cover
    if t == A.TYPE_PROTO:
        return attr.tp
    raise onnx_error(f"attribute {attr.name!r}", f"unsupported attribute type {t}")


def opset_map(opset_imports: Iterable[onnx.OperatorSetIdProto]) -> dict[str, int]:
    """``{domain: version}`` with ``ai.onnx`` spelled ``''``."""
    return {("" if o.domain == "ai.onnx" else o.domain): int(o.version) for o in opset_imports}


def unsupported_nodes(graph: onnx.GraphProto, opsets: Mapping[str, int]) -> list[tuple[str, str, str, int]]:
    """Every node (subgraphs included) the op table cannot run: ``(op_type, node name, domain, opset)``."""
    missing = []
    stack = [graph]
    while stack:
        g = stack.pop()
        for node in g.node:
            domain = "" if node.domain == "ai.onnx" else node.domain
            version = opsets.get(domain)
            if version is None or lookup(domain, node.op_type, version) is None:
                missing.append((node.op_type, node.name, domain or "ai.onnx", version or 0))
            for attr in node.attribute:
                stack.extend([attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs))
    return missing


def check_supported(graph: onnx.GraphProto, opsets: Mapping[str, int], where: str = "model") -> None:
    """Raise :class:`UnsupportedOpError` listing every unsupported op before anything runs."""
    missing = unsupported_nodes(graph, opsets)
    if not missing:
        return
    by_type: dict[tuple[str, str, int], list[str]] = {}
    for op, name, domain, version in missing:
        by_type.setdefault((domain, op, version), []).append(name or "<unnamed>")
    lines = [f"{domain}::{op} (opset {version}): nodes {', '.join(repr(n) for n in names)}"
             for (domain, op, version), names in sorted(by_type.items())]
    raise onnx_error(where, f"{len(by_type)} unsupported op type(s) in the graph",
                     actual="\n    " + "\n    ".join(lines),
                     hint="see suanli.onnx.supported_ops() for what the op table implements",
                     cls=UnsupportedOpError)


def describe(value: Value) -> str:
    """Short description of a runtime value for error messages."""
    if value is None:
        return "None"
    if isinstance(value, list):
        return f"sequence[{', '.join(describe(v) for v in value)}]"
    return f"{tuple(value.shape)} {value.dtype}"


class GraphRunner:
    """Execute one GraphProto; ``parent`` is the enclosing scope for subgraphs."""

    def __init__(self, graph: onnx.GraphProto, opsets: Mapping[str, int],
                 parent: GraphRunner | None = None, scope: Mapping[str, Value] | None = None) -> None:
        self.graph = graph
        self.opsets = dict(opsets)
        self.parent = parent
        self.outer: Mapping[str, Value] = scope or {}   # values visible from enclosing scopes
        self.initializers = {init.name: tensor_from_proto(init) for init in graph.initializer}
        for sparse in graph.sparse_initializer:
            self.initializers[sparse.values.name] = _wrap(np.array(numpy_helper.to_array(sparse)))
        self._attrs = [{a.name: decode_attribute(a) for a in node.attribute} for node in graph.node]

    def run(self, feeds: Mapping[str, Value]) -> list[Value]:
        """Run every node in order; returns the graph outputs in declared order."""
        env: dict[str, Value] = dict(self.outer)
        env.update(self.initializers)
        env.update(feeds)
        env[""] = None
        for node, attrs in zip(self.graph.node, self._attrs):
            self._run_node(node, attrs, env)
        try:
            return [env[o.name] for o in self.graph.output]
        except KeyError as exc:
            raise onnx_error(f"graph {self.graph.name!r}", f"output {exc.args[0]!r} is never computed",
                             hint="the model is malformed: no node produces this output") from None

    def run_subgraph(self, graph: onnx.GraphProto, feeds: Mapping[str, Value], env: Mapping[str, Value]) -> list[Value]:
        """Run a control-flow body; it sees ``env`` (the calling scope) plus ``feeds``."""
        return GraphRunner(graph, self.opsets, parent=self, scope=env).run(feeds)

    def _run_node(self, node: onnx.NodeProto, attrs: dict[str, Any], env: dict[str, Value]) -> None:
        domain = "" if node.domain == "ai.onnx" else node.domain
        opset = self.opsets.get(domain, 0)
        fn = lookup(domain, node.op_type, opset)
        if fn is None:
            raise onnx_error(f"{node.op_type} node {node.name!r}", f"not supported at opset {opset}",
                             cls=UnsupportedOpError)
        try:
            inputs = [env[name] for name in node.input]
        except KeyError as exc:
            raise onnx_error(f"{node.op_type} node {node.name!r}", f"input {exc.args[0]!r} is not defined",
                             hint="the graph is not topologically sorted or names a missing value") from None
        ctx = NodeContext(node, attrs, opset, self, env)
        try:
            out = fn(ctx, *inputs)
        except OnnxError:
            raise
        except Exception as exc:
            detail = str(exc) if is_clear_error(exc) else f"{type(exc).__name__}: {exc}"
            raise onnx_error(f"{node.op_type} node {node.name!r} (opset {opset})", "failed",
                             actual=f"inputs {', '.join(describe(v) for v in inputs)}\n  {detail}",
                             cls=OnnxError) from exc
        outs = out if isinstance(out, tuple) else (out,)
        for name, value in zip(node.output, outs):
            if name:
                env[name] = value
