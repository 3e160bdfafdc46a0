"""suanli's own saved graph format (``.suanli``) and conversion to and from ONNX.

A ``.suanli`` file is one safetensors file (written atomically by :mod:`suanli.io`): the tensors are
the graph's constants (weights), and the ``__metadata__`` holds ``format`` = ``suanli-graph/1`` and
``graph`` = the IR as JSON -- inputs, nodes (registry primitive, input value ids, attributes),
outputs. Attributes are tagged JSON (tuples, dtypes, symbolic dims, non-finite floats), never pickle.
Loading validates the format tag, every referenced value and primitive, and :func:`suanli.graph.verify`
runs on the result; every error names the file.

ONNX -> ``.suanli`` goes through :func:`suanli.onnx.to_graph` (the IR of the model); ``.suanli`` ->
ONNX through the exporter's :func:`graph_to_onnx`.

>>> import os, tempfile, numpy as np
>>> from suanli.graph import Graph, interpret
>>> g = Graph()
>>> x = g.add_input((2,), np.float32, name="x")
>>> g.outputs = [g.add_node("mul", [x, g.add_constant(np.float32([3, 4]))], shape=(2,), dtype=np.float32)]
>>> path = os.path.join(tempfile.mkdtemp(), "m.suanli")
>>> save_graph(g, path)
>>> interpret(load_graph(path), np.float32([1, 1]))[0]
array([3., 4.], dtype=float32)
"""
from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np

from ..graph import Graph, Node, Sym, Value, verify
from .errors import OnnxError, onnx_error

__all__ = ["save_graph", "load_graph", "onnx_to_suanli", "suanli_to_onnx", "FORMAT"]

FORMAT = "suanli-graph/1"


# ---------------------------------------------------------------------------- attributes <-> JSON
def _enc(v: Any, where: str) -> Any:
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else {"float": repr(float(v))}
    if isinstance(v, Sym):
        return {"sym": [v.name, v.scale, v.offset]}
    if isinstance(v, np.dtype) or (isinstance(v, type) and issubclass(v, np.generic)):
        return {"dtype": np.dtype(v).name}
    if isinstance(v, tuple):
        return {"tuple": [_enc(e, where) for e in v]}
    if isinstance(v, list):
        return [_enc(e, where) for e in v]
    raise onnx_error(where, f"attribute value of type {type(v).__name__} cannot be saved",
                     hint="only ints, floats, strings, tuples, dtypes and symbolic dims are saved", cls=OnnxError)


def _dec(v: Any) -> Any:
    if isinstance(v, list):
        return [_dec(e) for e in v]
    if isinstance(v, dict):
        if "tuple" in v:
            return tuple(_dec(e) for e in v["tuple"])
        if "sym" in v:
            name, scale, offset = v["sym"]
            return Sym(str(name), int(scale), int(offset))
        if "dtype" in v:
            return np.dtype(v["dtype"])
        if "float" in v:
            return float(v["float"])
        raise ValueError(f"unknown tagged value {sorted(v)}")
    return v


def _shape(shape: Any) -> Any:
    return [_enc(d, "shape") for d in shape]


# ---------------------------------------------------------------------------- save / load
def save_graph(graph: Graph, path: str | os.PathLike[str]) -> None:
    """Write ``graph`` (primitives and constants only) to ``path`` atomically."""
    from ..io import save_file
    where = os.fspath(path)
    ids: dict[int, int] = {}
    tensors: dict[str, np.ndarray] = {}
    for v in graph.inputs:
        ids[v.id] = len(ids)
    inputs = [{"name": v.name, "shape": _shape(v.shape), "dtype": v.dtype.name} for v in graph.inputs]
    nodes = []
    for i, n in enumerate(graph.nodes):
        if n.op != "constant" and (n.subgraphs or n.op in ("cond", "while_loop", "scan", "fused")):
            raise onnx_error(where, f"node {i} ({n.op}) cannot be saved in {FORMAT}",
                             hint="save the graph before fusion; control flow is not in this format yet", cls=OnnxError)
        entry: dict[str, Any] = {"op": n.op, "inputs": [ids[v.id] for v in n.inputs],
                                 "shape": _shape(n.outputs[0].shape), "dtype": n.outputs[0].dtype.name}
        if n.op == "constant":
            key = f"const{len(tensors)}"
            tensors[key] = np.ascontiguousarray(n.attrs["value"])
            entry["tensor"] = key
            if n.outputs[0].name:
                entry["name"] = n.outputs[0].name
        else:
            entry["attrs"] = {k: _enc(a, f"{where}: node {i} ({n.op}) attribute {k!r}") for k, a in n.attrs.items()}
        ids[n.outputs[0].id] = len(ids)
        nodes.append(entry)
    doc = {"inputs": inputs, "nodes": nodes, "outputs": [ids[v.id] for v in graph.outputs],
           "meta": {k: _enc(v, where) for k, v in graph.meta.items()
                    if k in ("onnx_inputs", "onnx_outputs", "static_reason", "sym_hints") and v is not None
                    and not isinstance(v, dict)}}
    save_file(tensors, path, metadata={"format": FORMAT, "graph": json.dumps(doc, separators=(",", ":"),
                                                                             allow_nan=False)})


def load_graph(path: str | os.PathLike[str]) -> Graph:
    """Read a ``.suanli`` file; the graph is verified. Errors name the file."""
    from ..io import load_numpy
    from ..io.safetensors import read_metadata
    from ..ops.registry import registry
    where = os.fspath(path)
    meta = read_metadata(path)
    if meta.get("format") != FORMAT:
        raise onnx_error(where, "is not a suanli graph file", expect=f"metadata format={FORMAT!r}",
                         actual=f"format={meta.get('format')!r}",
                         hint="write it with `suanli convert model.onnx out.suanli`", cls=OnnxError)
    arrays = load_numpy(path)
    try:
        doc = json.loads(meta["graph"])
        g = Graph()
        values: list[Value] = []
        for e in doc["inputs"]:
            values.append(g.add_input(tuple(_dec(e["shape"])), np.dtype(e["dtype"]), name=e["name"]))
        for i, e in enumerate(doc["nodes"]):
            if e["op"] == "constant":
                values.append(g.add_constant(arrays[e["tensor"]], name=e.get("name")))
                continue
            if e["op"] not in registry:
                raise ValueError(f"node {i}: unknown primitive {e['op']!r}")
            ins = [values[j] for j in e["inputs"]]
            out = Value(tuple(_dec(e["shape"])), np.dtype(e["dtype"]))
            g.nodes.append(Node(e["op"], ins, {k: _dec(a) for k, a in e["attrs"].items()}, [out]))
            values.append(out)
        g.outputs = [values[j] for j in doc["outputs"]]
        g.meta.update({k: _dec(v) for k, v in doc.get("meta", {}).items()})
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise onnx_error(where, "the graph in this suanli file is malformed",
                         actual=f"{type(exc).__name__}: {exc}", hint="re-create it with `suanli convert`",
                         cls=OnnxError) from None
    try:
        return verify(g)
    except Exception as exc:
        raise onnx_error(where, "the saved graph does not verify", actual=str(exc), cls=OnnxError) from exc


# ---------------------------------------------------------------------------- conversions
def onnx_to_suanli(src: str | os.PathLike[str], dst: str | os.PathLike[str], **to_graph_kwargs: Any) -> Graph:
    """ONNX file -> ``.suanli`` file (through :func:`suanli.onnx.to_graph`); returns the graph."""
    from .to_graph import to_graph
    graph = to_graph(src, **to_graph_kwargs)
    save_graph(graph, dst)
    return graph


def suanli_to_onnx(src: str | os.PathLike[str], dst: str | os.PathLike[str], opset: int = 17) -> Any:
    """``.suanli`` file -> ONNX file (checked with ``onnx.checker``, written atomically)."""
    import onnx

    from ..io.atomic import atomic_write
    from .export import graph_to_onnx
    graph = load_graph(src)
    names_in = graph.meta.get("onnx_inputs") or [v.name or f"input{i}" for i, v in enumerate(graph.inputs)]
    names_out = graph.meta.get("onnx_outputs") or [f"output{i}" for i in range(len(graph.outputs))]
    model = graph_to_onnx(graph, num_args=len(graph.inputs), input_names=list(names_in),
                          output_names=list(names_out), opset=opset)
    onnx.checker.check_model(model)
    with atomic_write(dst, "wb") as f:
        f.write(model.SerializeToString())
    return model
