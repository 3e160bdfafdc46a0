"""The reference interpreter: run a graph by calling each primitive's NumPy ``impl``.

It is the oracle every optimized executor is tested against, and the default executor of
``suanli.compile``. Arrays are freed after their last use. A graph with symbolic dimensions is run
by binding each symbol from the input shapes (``Sym("B")`` at dim 0 of an input of batch 5 means
B = 5); every node's output shape is then checked against its instantiated shape, so a plan that
does not really serve this size fails loudly instead of computing something else.

>>> import numpy as np
>>> from suanli.graph import Graph, Sym, interpret
>>> g = Graph()
>>> x = g.add_input((Sym("B"), 2), np.float64)
>>> g.outputs = [g.add_node("exp", [x], shape=(Sym("B"), 2), dtype=np.float64)]
>>> interpret(g, np.zeros((3, 2)))[0]
array([[1., 1.],
       [1., 1.],
       [1., 1.]])
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ..dtypes import HALF, float32
from ..errors import SuanliError, is_clear_error, op_error
from .ir import Graph, Node, Sym, evaluate_attr, evaluate_dims, has_sym


class InterpretError(SuanliError):
    """A graph could not run on the given arrays (wrong inputs, or a node failed)."""


def bind_symbols(graph: Graph, arrays: Sequence[np.ndarray],
                 bindings: Mapping[str, int] | None = None) -> dict[str, int]:
    """Check input shapes/dtypes against the graph's inputs; return the value of every symbol."""
    env = dict(bindings or {})
    if len(arrays) != len(graph.inputs):
        raise InterpretError(f"interpret: the graph takes {len(graph.inputs)} inputs, got {len(arrays)}")
    for i, (v, a) in enumerate(zip(graph.inputs, arrays)):
        what = f"input {i}{' (' + v.name + ')' if v.name else ''}"
        if a.dtype != v.dtype or a.ndim != len(v.shape):
            raise op_error("interpret", f"{what} has the wrong dtype or rank", expect=v.type_str,
                           actual=f"{a.dtype}{list(a.shape)}", cls=InterpretError)
        for d, n in zip(v.shape, a.shape):
            if isinstance(d, Sym):
                if d.scale != 1 or d.offset != 0:
                    continue                       # derived dims are checked below
                if env.setdefault(d.name, n) != n:
                    raise op_error("interpret", f"{what}: symbol {d.name} is {env[d.name]} elsewhere",
                                   expect=v.type_str, actual=f"{a.dtype}{list(a.shape)}", cls=InterpretError)
        if evaluate_dims(v.shape, env) != a.shape:
            raise op_error("interpret", f"{what} has the wrong shape", expect=v.type_str,
                           actual=f"{a.dtype}{list(a.shape)}", cls=InterpretError)
    return env


def run_primitive(op: str, arrays: Sequence[np.ndarray], attrs: Mapping[str, Any]) -> np.ndarray:
    """One primitive on arrays, exactly as eager ``apply`` computes it (float16 via float32)."""
    from ..ops.registry import registry
    prim = registry[op]
    if prim.upcast_half and arrays and arrays[0].dtype in HALF:
        dtype = arrays[0].dtype
        out = prim.impl(*[a.astype(float32) if a.dtype in HALF else a for a in arrays], **attrs)
        out = out.astype(dtype) if out.dtype == float32 else out
    else:
        out = prim.impl(*arrays, **attrs)
    return out if out.__class__ is np.ndarray else np.asarray(out)


def interpret(graph: Graph, *arrays: np.ndarray, bindings: Mapping[str, int] | None = None) -> list[np.ndarray]:
    """Run ``graph`` on NumPy arrays; return the output arrays."""
    arrays = tuple(np.asarray(a) for a in arrays)
    env = bind_symbols(graph, arrays, bindings)
    return _run(graph, list(arrays), env)


def _last_uses(graph: Graph) -> dict[int, list[int]]:
    """Node index -> ids of values whose last read is that node (graph outputs are never freed)."""
    last: dict[int, int] = {}
    for k, n in enumerate(graph.nodes):
        for v in n.inputs:
            last[v.id] = k
    keep = {v.id for v in graph.outputs}
    by_node: dict[int, list[int]] = {}
    for vid, k in last.items():
        if vid not in keep:
            by_node.setdefault(k, []).append(vid)
    return by_node


def _run(graph: Graph, arrays: list[np.ndarray], env: Mapping[str, int]) -> list[np.ndarray]:
    frees = _last_uses(graph)     # recomputed per run: passes may edit graphs in place
    symbolic = bool(env)
    values: dict[int, np.ndarray] = {v.id: a for v, a in zip(graph.inputs, arrays)}
    for k, node in enumerate(graph.nodes):
        ins = [values[v.id] for v in node.inputs]
        outs = run_node(node, ins, env)
        for v, a in zip(node.outputs, outs):
            if symbolic and has_sym(v.shape) and a.shape != evaluate_dims(v.shape, env):
                raise InterpretError(f"interpret: node #{k} {node.op} made shape {a.shape}, the plan says "
                                     f"{v.type_str} at {dict(env)}: this plan does not serve these sizes\n"
                                     "  help: compile with dynamic=False")
            values[v.id] = a
        for vid in frees.get(k, ()):
            values.pop(vid, None)
    return [values[v.id] for v in graph.outputs]


def run_node(node: Node, ins: list[np.ndarray], env: Mapping[str, int]) -> list[np.ndarray]:
    """The output arrays of one node (primitive, constant or control flow)."""
    op = node.op
    if op == "constant":
        value = node.attrs["value"]
        fill = node.attrs.get("fill")
        if fill is not None and has_sym(node.outputs[0].shape):
            return [np.full(evaluate_dims(node.outputs[0].shape, env), fill, node.outputs[0].dtype)]
        return [value]
    if op == "cond":
        branch = node.subgraphs["then" if bool(ins[0]) else "else"]
        return _run(branch, ins[1:], env)
    if op == "while_loop":
        return _run_while(node, ins, env)
    if op == "scan":
        return _run_scan(node, ins, env)
    if op == "fused":
        return node.attrs["kernel"](*ins)
    attrs = node.attrs
    if env and any(has_sym(a) for a in attrs.values()):
        attrs = {key: evaluate_attr(a, env) for key, a in attrs.items()}
    try:
        return [run_primitive(op, ins, attrs)]
    except Exception as exc:
        if is_clear_error(exc):
            raise
        shapes = ", ".join(f"{a.dtype}{list(a.shape)}" for a in ins)
        raise InterpretError(f"interpret: node {op}({shapes}) failed: {type(exc).__name__}: {exc}") from exc


def _run_while(node: Node, ins: list[np.ndarray], env: Mapping[str, int]) -> list[np.ndarray]:
    nc = node.attrs["num_carry"]
    carry, consts = ins[:nc], ins[nc:]
    cond, body = node.subgraphs["cond"], node.subgraphs["body"]
    while bool(_run(cond, carry + consts, env)[0]):
        carry = _run(body, carry + consts, env)
    return carry


def _run_scan(node: Node, ins: list[np.ndarray], env: Mapping[str, int]) -> list[np.ndarray]:
    nc, nx, length = node.attrs["num_carry"], node.attrs["num_xs"], node.attrs["length"]
    carry, xs, consts = ins[:nc], ins[nc:nc + nx], ins[nc + nx:]
    body = node.subgraphs["body"]
    ys: list[list[np.ndarray]] = []
    for i in range(length):
        outs = _run(body, carry + [x[i] for x in xs] + consts, env)
        carry, y = outs[:nc], outs[nc:]
        ys.append(y)
    n_y = len(body.outputs) - nc
    stacked = [np.stack([y[j] for y in ys]) if ys else
               np.zeros((0,) + evaluate_dims(body.outputs[nc + j].shape, env), body.outputs[nc + j].dtype)
               for j in range(n_y)]
    return carry + stacked
