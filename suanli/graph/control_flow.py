"""Structured control flow with JAX-like semantics: :func:`cond`, :func:`while_loop`, :func:`scan`.

Eagerly they simply run (Python ``if`` / ``while`` / ``for``), so gradients flow through the
normal tape. Under ``suanli.compile`` tracing, they become ``cond`` / ``while_loop`` / ``scan``
nodes whose bodies are traced into subgraphs (both branches of a ``cond``); tensors the bodies read
from outside are lifted into extra subgraph inputs, so subgraphs stay closed. Bodies must return
tensors of the same shapes and dtypes as required (branches alike; loop carries unchanged).

Not supported yet, with a clear error: reverse-mode gradients through these nodes *inside a
compiled function* (an operand or captured tensor requires grad while grad mode is on) -- run such
code eagerly, or under ``no_grad`` when no gradient is needed.

>>> import suanli
>>> x = suanli.tensor([1.0, -2.0])
>>> suanli.cond(x.sum() > 0, lambda v: v * 2, lambda v: -v, x)
tensor([-1.,  2.])
>>> suanli.while_loop(lambda c: c[0] < 5, lambda c: (c[0] + 1, c[1] * 2), (suanli.tensor(0), suanli.tensor(1.0)))
(tensor(5), tensor(32.))
>>> carry, ys = suanli.scan(lambda c, v: (c + v, c * v), suanli.tensor(0.0), suanli.tensor([1.0, 2.0, 3.0]))
>>> carry, ys
(tensor(6.), tensor([0., 2., 9.]))
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from .._config import state
from ..tensor import Tensor, _wrap
from .interpret import run_node
from .ir import Graph, Node, Value
from .trace import TraceError, Tracer, TreeDef, flatten, unflatten, user_location


def _leaves(obj: Any, what: str) -> tuple[list[Tensor], TreeDef]:
    return flatten(obj, allow_static=False, where=what)


class _Sub:
    """One traced body: its graph, output values and structure, and whether it reads grads."""

    def __init__(self, parent: Tracer, fn: Callable, args: Sequence[Any], arg_tree: TreeDef,
                 examples: Sequence[np.ndarray], what: str) -> None:
        self.tracer = Tracer(Graph(), parent)
        tensors = []
        for a in examples:
            # the body sees stand-ins with example values (so shapes are concrete) and no history
            w = _wrap(np.array(a, copy=True))
            self.tracer.bind(w, self.tracer.graph.add_input(a.shape, a.dtype))
            tensors.append(w)
        self.num_base = len(tensors)
        call = unflatten(arg_tree, tensors)
        prev = state.tracer
        state.tracer = self.tracer
        try:
            result = fn(*call)
            outs, self.out_tree = _leaves(result, f"the result of {what}")
            self.tracer.graph.outputs = [self.tracer.value_of(t) for t in outs]
        finally:
            state.tracer = prev
        self.graph = self.tracer.graph

    def finish(self, union: list[Value]) -> None:
        """Inputs = base inputs, then one per captured outer value in ``union`` order."""
        inner = {outer.id: v for outer, v in self.tracer.captures}
        base = self.graph.inputs[:self.num_base]
        extra = [inner.get(o.id) or Value(o.shape, o.dtype, None, o.name) for o in union]
        self.graph.inputs = base + extra


def _union(subs: Sequence[_Sub]) -> list[Value]:
    seen: dict[int, Value] = {}
    for s in subs:
        for outer, _ in s.tracer.captures:
            seen.setdefault(outer.id, outer)
    return list(seen.values())


def _specs(tensors: Sequence[Tensor]) -> list[np.ndarray]:
    return [t._data for t in tensors]


def _sig(values: Sequence[Value]) -> list[tuple[tuple, np.dtype]]:
    return [(tuple(v.shape), v.dtype) for v in values]


def _refuse_grad(op: str, tensors: Sequence[Tensor], subs: Sequence[_Sub]) -> None:
    if not state.grad_enabled:
        return
    if any(t._requires_grad for t in tensors) or any(_captures_grad(s) for s in subs):
        raise TraceError(f"compile: {user_location()}\n  gradients through suanli.{op} inside a compiled "
                         "function are not supported yet (an operand or a captured tensor requires grad)\n"
                         f"  help: run this code eagerly (suanli.{op} is differentiable there), or wrap it "
                         "in suanli.no_grad() if no gradient is needed")


def _captures_grad(sub: _Sub) -> bool:
    root = sub.tracer.root
    grads = {v.id for t, v in root.state_inputs if t._requires_grad}
    grads |= {entry[1].id for entry in root._by_tensor.values() if entry[0]._requires_grad}
    return any(outer.id in grads for outer, _ in sub.tracer.captures)


def _emit(tracer: Tracer, op: str, inputs: Sequence[Tensor], extra: Sequence[Value], attrs: dict[str, Any],
          subgraphs: dict[str, Graph], out_values: Sequence[Value]) -> list[Tensor]:
    """Append the node to the current graph and compute its real outputs with the interpreter."""
    values = [tracer.value_of(t) for t in inputs] + list(extra)
    node = Node(op, values, attrs, list(out_values), subgraphs)
    arrays = [t._data for t in inputs] + [_outer_array(tracer, v) for v in extra]
    outs = run_node(node, arrays, {})
    tracer.graph.nodes.append(node)
    results = []
    for v, a in zip(node.outputs, outs):
        t = _wrap(np.array(a, copy=True))
        tracer.bind(t, v)
        results.append(t)
    return results


def _outer_array(tracer: Tracer, v: Value) -> np.ndarray:
    """The real array held by value ``v`` of ``tracer``'s graph (following captures outwards)."""
    level: Tracer | None = tracer
    while level is not None:
        for entry in level._by_tensor.values():
            if entry[1] is v:
                return entry[0]._data
        if level.parent is None:
            for t, val in level.state_inputs:
                if val is v:
                    return t._data
            break
        outer = next((o for o, i in level.captures if i is v), None)
        if outer is None:
            break
        v, level = outer, level.parent
    raise TraceError(f"compile: internal error: no array for captured value {v!r}")


def _check_same(a: Sequence[Value], b: Sequence[Value], what: str) -> None:
    if _sig(a) != _sig(b):
        fa = ", ".join(v.type_str for v in a)
        fb = ", ".join(v.type_str for v in b)
        raise TraceError(f"compile: {user_location()}\n  {what}\n  Expect: ({fa})\n  Actual: ({fb})\n"
                         "  help: return tensors of the same shapes and dtypes (cast or broadcast explicitly)")


# ------------------------------------------------------------------------------------------ cond
def cond(pred: Any, true_fn: Callable, false_fn: Callable, *operands: Any) -> Any:
    """``true_fn(*operands)`` if ``pred`` else ``false_fn(*operands)``; both branches are traced
    when compiling, and must return the same structure, shapes and dtypes."""
    tracer = state.tracer
    if tracer is None or not (isinstance(pred, Tensor) and tracer.is_traced(pred)):
        if isinstance(pred, Tensor):
            _check_pred(pred)
            pred = bool(pred._data.reshape(()))
        return true_fn(*operands) if pred else false_fn(*operands)
    _check_pred(pred)
    from ..ops import reshape
    if pred._data.dtype != np.bool_:
        pred = pred != 0
    if pred._data.shape != ():
        pred = reshape(pred, ())
    ops, tree = _leaves(tuple(operands), "an operand of cond ")
    then = _Sub(tracer, true_fn, ops, tree, _specs(ops), "cond's true_fn")
    other = _Sub(tracer, false_fn, ops, tree, _specs(ops), "cond's false_fn")
    if then.out_tree != other.out_tree:
        raise TraceError(f"compile: {user_location()}\n  cond: the branches return different structures "
                         f"({then.out_tree} vs {other.out_tree})")
    _check_same(then.graph.outputs, other.graph.outputs, "cond: the branches return different shapes/dtypes")
    _refuse_grad("cond", ops, (then, other))
    union = _union((then, other))
    then.finish(union)
    other.finish(union)
    outs = [Value(v.shape, v.dtype) for v in then.graph.outputs]
    results = _emit(tracer, "cond", [pred] + ops, union, {}, {"then": then.graph, "else": other.graph}, outs)
    return unflatten(then.out_tree, results)


def _check_pred(pred: Tensor) -> None:
    if pred._data.size != 1:
        from ..errors import op_error
        raise op_error("cond", "the predicate must be a one-element tensor",
                       actual=f"shape {pred._data.shape}", hint="reduce it first (.any(), .all(), .sum() > 0)")


# ------------------------------------------------------------------------------------ while_loop
def while_loop(cond_fn: Callable, body_fn: Callable, init: Any) -> Any:
    """``val = init; while cond_fn(val): val = body_fn(val); return val`` (``val``: a tensor or a
    tuple/list/dict of tensors whose shapes and dtypes the body keeps). Not reverse-differentiable
    inside compiled functions."""
    tracer = state.tracer
    leaves, tree = _leaves(init, "while_loop's init ")
    if tracer is None:
        val = init
        while _truth(cond_fn(val), "while_loop's cond_fn"):
            val = body_fn(val)
        return val
    c = _Sub(tracer, lambda *a: cond_fn(unflatten(tree, a)), leaves, _flat_tree(len(leaves)),
             _specs(leaves), "while_loop's cond_fn")
    b = _Sub(tracer, lambda *a: body_fn(unflatten(tree, a)), leaves, _flat_tree(len(leaves)),
             _specs(leaves), "while_loop's body_fn")
    if len(c.graph.outputs) != 1 or c.graph.outputs[0].shape != () and np.prod(c.graph.outputs[0].shape) != 1:
        raise TraceError(f"compile: {user_location()}\n  while_loop: cond_fn must return one one-element tensor")
    _to_bool_scalar(c)
    if b.out_tree != tree:
        raise TraceError(f"compile: {user_location()}\n  while_loop: body_fn must return the structure of "
                         f"init ({tree}), got {b.out_tree}")
    _check_same(leaves and [Value(t._data.shape, t._data.dtype) for t in leaves], b.graph.outputs,
                "while_loop: body_fn changes the shapes/dtypes of the carried values")
    _refuse_grad("while_loop", leaves, (c, b))
    union = _union((c, b))
    c.finish(union)
    b.finish(union)
    outs = [Value(t._data.shape, t._data.dtype) for t in leaves]
    results = _emit(tracer, "while_loop", leaves, union, {"num_carry": len(leaves)},
                    {"cond": c.graph, "body": b.graph}, outs)
    return unflatten(tree, results)


def _flat_tree(n: int) -> TreeDef:
    return TreeDef("tuple", tuple(TreeDef("tensor") for _ in range(n)))


def _truth(value: Any, what: str) -> bool:
    if isinstance(value, Tensor):
        if value._data.size != 1:
            from ..errors import op_error
            raise op_error("while_loop", f"{what} must return a one-element tensor or a bool",
                           actual=f"shape {value._data.shape}")
        return bool(value._data.reshape(()))
    return bool(value)


def _to_bool_scalar(sub: _Sub) -> None:
    """Make the cond subgraph return bool[] (cast/reshape recorded inside it)."""
    out = sub.graph.outputs[0]
    g = sub.graph
    if out.dtype != np.bool_:
        zero = g.add_constant(np.zeros((), out.dtype))
        out = g.add_node("ne", [out, zero], shape=out.shape, dtype=np.bool_)
    if out.shape != ():
        out = g.add_node("reshape", [out], {"shape": ()}, shape=(), dtype=np.bool_)
    g.outputs = [out]


# ------------------------------------------------------------------------------------------ scan
def scan(fn: Callable, init: Any, xs: Any) -> tuple[Any, Any]:
    """``carry = init; for x in xs: carry, y = fn(carry, x)``; returns ``(carry, ys)`` with the ys
    stacked on a new leading axis (``xs``: a tensor or tuple of tensors scanned along dim 0)."""
    tracer = state.tracer
    c_leaves, c_tree = _leaves(init, "scan's init ")
    x_leaves, x_tree = _leaves(xs, "scan's xs ")
    lengths = {t._data.shape[0] if t._data.ndim else None for t in x_leaves}
    if len(lengths) != 1 or None in lengths:
        from ..errors import op_error
        raise op_error("scan", "every xs must have the same leading (scanned) dimension",
                       actual=", ".join(str(t._data.shape) for t in x_leaves) or "no xs")
    length = lengths.pop()
    if tracer is None:
        return _scan_eager(fn, init, x_leaves, x_tree, length)
    nc = len(c_leaves)
    specs = _specs(c_leaves) + [t._data[0] if length else np.zeros(t._data.shape[1:], t._data.dtype)
                                for t in x_leaves]
    holder: dict[str, TreeDef] = {}

    def body(*a: Tensor) -> Any:
        carry, y = _pair(fn(unflatten(c_tree, a[:nc]), unflatten(x_tree, a[nc:])))
        cl, ct = _leaves(carry, "scan's new carry ")
        yl, yt = _leaves(y, "scan's y ")
        holder["carry"], holder["y"] = ct, yt
        return tuple(cl) + tuple(yl)

    sub = _Sub(tracer, body, c_leaves + x_leaves, _flat_tree(len(specs)), specs, "scan's fn")
    if holder["carry"] != c_tree:
        raise TraceError(f"compile: {user_location()}\n  scan: fn must return a carry with init's structure "
                         f"({c_tree}), got {holder['carry']}")
    _check_same([Value(t._data.shape, t._data.dtype) for t in c_leaves], sub.graph.outputs[:nc],
                "scan: fn changes the shapes/dtypes of the carry")
    _refuse_grad("scan", c_leaves + x_leaves, (sub,))
    union = _union((sub,))
    sub.finish(union)
    outs = [Value(v.shape, v.dtype) for v in sub.graph.outputs[:nc]] + \
           [Value((length,) + tuple(v.shape), v.dtype) for v in sub.graph.outputs[nc:]]
    results = _emit(tracer, "scan", c_leaves + x_leaves, union,
                    {"num_carry": nc, "num_xs": len(x_leaves), "length": length}, {"body": sub.graph}, outs)
    return unflatten(c_tree, results[:nc]), unflatten(holder["y"], results[nc:])


def _pair(result: Any) -> tuple[Any, Any]:
    if not (isinstance(result, tuple) and len(result) == 2):
        raise TraceError("scan: fn must return a pair (new_carry, y)")
    return result


def _scan_eager(fn: Callable, init: Any, x_leaves: list[Tensor], x_tree: TreeDef, length: int) -> tuple[Any, Any]:
    from ..ops import stack
    carry, ys = init, []
    for i in range(length):
        carry, y = _pair(fn(carry, unflatten(x_tree, [t[i] for t in x_leaves])))
        ys.append(y)
    if not ys:
        raise TraceError("scan: xs of length 0 are not supported eagerly (the ys' shapes are unknown)")
    y_leaves = [_leaves(y, "scan's y ")[0] for y in ys]
    y_tree = _leaves(ys[0], "scan's y ")[1]
    stacked = [stack([yl[j] for yl in y_leaves]) for j in range(len(y_leaves[0]))]
    return carry, unflatten(y_tree, stacked)
