"""Tracing by example: run a function on real tensors and record every primitive call as an IR node.

While a :class:`Tracer` is active (``suanli._state.tracer``), ``registry.apply`` hands each call to
:meth:`Tracer.apply`, which runs the op eagerly (so shapes, dtypes and values are concrete, and the
autograd tape is built as usual) and appends a node. Backward passes run through ``apply`` too, so
calling ``loss.backward()`` inside a traced function records the backward graph from the same VJP
rules: one joint graph.

What a tensor that was not produced inside the trace becomes:

* an argument of the traced function: a graph input;
* a parameter or buffer (module state, or any ``Parameter`` / leaf that requires grad the function
  captures): a graph input bound **by reference**, read afresh at every call, so a compiled callable
  sees updated weights;
* anything else (``suanli.zeros(...)`` made inside, masks, a captured plain tensor): a ``constant``
  node holding a copy of its value at trace time. Pass a tensor as an argument if it changes.

What is refused with a :class:`TraceError` (never a silently frozen value):

* turning a traced tensor into a Python value (``if x.sum() > 0:``, ``.item()``, ``.numpy()``,
  ``.tolist()``, ``float(x)``): the error names the file and line and suggests ``suanli.cond`` /
  ``suanli.while_loop``;
* in-place ops on traced tensors or on parameters/buffers/arguments (an optimizer step, BatchNorm
  running statistics in training mode): use the out-of-place op, ``model.eval()``, or run the
  update outside the compiled function;
* drawing random numbers from the default generator (dropout in training mode, ``suanli.rand``):
  the mask would be frozen into the graph; use ``model.eval()``/``p=0`` or pass the mask in;
* re-binding a module global; forward-mode AD (``dual_level``) inside the traced function.

>>> import suanli
>>> from suanli.graph import trace
>>> t = trace(lambda x: (x * 2).exp(), (suanli.ones(3),))
>>> print(t.graph)
graph(%0: float32[3] arg0) {
  %1: float32[] = constant(2.0)
  %2: float32[3] = mul(%0, %1)
  %3: float32[3] = exp(%2)
  return %3
}
"""
from __future__ import annotations

import os
import sys
import linecache
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from .._config import state
from ..errors import SuanliError
from ..tensor import Tensor, _wrap
from .ir import Graph, Node, Value


class TraceError(SuanliError, RuntimeError):
    """Something a traced function does cannot be recorded in a graph (the message says what)."""


_PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def user_location() -> str:
    """``file:line: `source``` of the innermost caller outside suanli's own package (plus the
    suanli frame it went through, if any)."""
    frame = sys._getframe(1)
    inner = None
    while frame is not None:
        path = os.path.abspath(frame.f_code.co_filename)
        if not path.startswith(_PKG_DIR + os.sep) or os.sep + "models" + os.sep in path:
            src = linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()
            where = f"{frame.f_code.co_filename}:{frame.f_lineno}: `{src}`"
            if inner is not None and os.sep + "models" + os.sep not in path:
                where += f" (via {inner})"
            return where
        if inner is None and not path.endswith(("tensor.py", "trace.py")):
            inner = f"{os.path.relpath(path, os.path.dirname(_PKG_DIR))}:{frame.f_lineno}"
        frame = frame.f_back
    return "<unknown location>"


def data_dependent_error(what: str) -> TraceError:
    return TraceError(
        f"compile: {user_location()}\n"
        f"  {what} on a traced tensor turns its value into a Python value -- data-dependent Python "
        "control flow (if/while on a tensor, .item(), .numpy()) cannot be recorded in a graph\n"
        "  help: use suanli.cond(pred, true_fn, false_fn, *operands) for if/else and "
        "suanli.while_loop(cond_fn, body_fn, init) for loops, or compute the value outside the "
        "compiled function and pass it in")


class Tracer:
    """Records primitive calls into ``graph``; ``parent`` is set for control-flow subgraphs.

    A subgraph tracer lifts values it reads from enclosing traces into extra inputs of its
    subgraph (``captures``: pairs of (outer value, inner input)), so subgraphs stay closed.
    """

    def __init__(self, graph: Graph, parent: Tracer | None = None) -> None:
        self.graph = graph
        self.parent = parent
        self.root: Tracer = self if parent is None else parent.root
        self._by_tensor: dict[int, tuple[Tensor, Value, list[int], int]] = {}
        self._by_array: dict[int, tuple[np.ndarray, Value]] = {}
        self.captures: list[tuple[Value, Value]] = []
        self._captured: dict[int, Value] = {}           # outer value id -> inner input
        # root only: tensors bound by reference (module state, captured parameters)
        self.state_inputs: list[tuple[Tensor, Value]] = []
        self._state_ids: dict[int, Value] = {}
        self.state_names: dict[int, str] = {}
        self.saved_grads: dict[int, tuple[Tensor, Any]] = {}
        self.versions: dict[int, tuple[Tensor, int, str]] = {}

    # ------------------------------------------------------------------ tensor <-> value
    def bind(self, t: Tensor, v: Value) -> None:
        self._by_tensor[id(t)] = (t, v, t._vc, t._vc[0])
        self._by_array[id(t._data)] = (t._data, v)

    def lookup(self, t: Tensor) -> Value | None:
        """The value ``t`` holds in this trace (not its parents), or None."""
        entry = self._by_tensor.get(id(t))
        if entry is not None and entry[0] is t:
            if t._vc[0] != entry[3]:
                raise TraceError(f"compile: {user_location()}\n  a traced tensor "
                                 f"(shape {t._data.shape}, {t._data.dtype}) was modified in place; "
                                 "in-place ops are not recorded in compiled graphs\n"
                                 "  help: use the out-of-place op (x = x + y instead of x += y / x.add_(y))")
            return entry[1]
        entry2 = self._by_array.get(id(t._data))
        if entry2 is not None and entry2[0] is t._data:   # detach()/.data of a traced tensor
            return entry2[1]
        return None

    def is_traced(self, t: Tensor) -> bool:
        tracer: Tracer | None = self
        while tracer is not None:
            if tracer.lookup(t) is not None:
                return True
            tracer = tracer.parent
        return id(t) in self.root._state_ids

    def value_of(self, t: Tensor) -> Value:
        """The value for ``t``, adding a graph input, capture or constant when it is new here."""
        v = self._find(t)
        if v is not None:
            return v
        if _is_state(t):
            self.root.add_state(t)
            return self._find(t)
        self._refuse_derived(t)
        v = self.graph.add_constant(np.array(t._data, copy=True))
        self.bind(t, v)
        return v

    def _find(self, t: Tensor) -> Value | None:
        """``t``'s value in this trace or an enclosing one (capturing through the levels between)."""
        v = self.lookup(t)
        if v is not None:
            return v
        if self.parent is None:
            return self._state_ids.get(id(t))
        outer = self.parent._find(t)
        return None if outer is None else self._capture(outer)

    def _capture(self, outer: Value) -> Value:
        inner = self._captured.get(outer.id)
        if inner is None:
            inner = self.graph.add_input(outer.shape, outer.dtype, name=outer.name)
            self._captured[outer.id] = inner
            self.captures.append((outer, inner))
        return inner

    def add_state(self, t: Tensor, name: str | None = None) -> Value:
        """Bind a parameter/buffer by reference (root trace): a graph input fed at every call."""
        assert self.parent is None
        v = self._state_ids.get(id(t))
        if v is not None:
            return v
        name = name or self.state_names.get(id(t)) or f"captured{len(self.state_inputs)}"
        v = self.graph.add_input(t._data.shape, t._data.dtype, name=name)
        self.state_inputs.append((t, v))
        self._state_ids[id(t)] = v
        self.state_names[id(t)] = name
        self.watch(t, name)
        return v

    def watch(self, t: Tensor, name: str) -> None:
        """Remember ``t``'s version (in-place edits are refused) and clear its ``.grad`` for the trace."""
        self.versions.setdefault(id(t), (t, t._vc[0], name))
        if id(t) not in self.saved_grads:
            self.saved_grads[id(t)] = (t, t.grad)
            t.grad = None

    def _refuse_derived(self, t: Tensor) -> None:
        """A NumPy view of a traced array made outside the ops would be frozen: refuse it."""
        a = t._data.base
        while a is not None:
            tracer: Tracer | None = self
            while tracer is not None:
                entry = tracer._by_array.get(id(a))
                if entry is not None and entry[0] is a:
                    raise TraceError(f"compile: {user_location()}\n  a tensor was derived from a traced "
                                     "tensor's NumPy data outside suanli ops; its value would be frozen "
                                     "into the graph\n  help: compute it with suanli ops")
                tracer = tracer.parent
            a = a.base

    # ------------------------------------------------------------------ the hooks
    def apply(self, prim: Any, inputs: tuple[Tensor, ...], attrs: dict[str, Any]) -> Tensor:
        """Called by ``registry.apply``: run the primitive eagerly, record the node."""
        if state.forward_level:
            raise TraceError(f"compile: {user_location()}\n  forward-mode AD (dual_level) inside a "
                             "compiled function is not supported\n  help: use reverse mode "
                             "(backward / suanli.autograd.grad) or run it eagerly")
        values = [self.value_of(t) for t in inputs]
        out = run_eager(prim, inputs, attrs)
        v = Value(out._data.shape, out._data.dtype)
        self.graph.nodes.append(Node(prim.name, values, attrs, [v]))
        self.bind(out, v)
        return out

    def derive_index(self, t: Tensor, src: Tensor, size: int | None) -> None:
        """Indexing ops validate indices in NumPy and wrap a private int64 copy ``t`` of ``src``;
        record that copy as ops on ``src`` (reshape, cast, wrap negatives) so it is not frozen."""
        if not self.is_traced(src):
            return
        from ..ops import cast, reshape, where
        v = reshape(src, t._data.shape)
        if v.dtype != t._data.dtype:
            v = cast(v, t._data.dtype)
        if size is not None:
            v = where(v < 0, v + size, v)
        self.bind(t, self.value_of(v))

    def refuse_index(self, t: Tensor) -> None:
        """``x[idx]`` with a traced index tensor is not recorded yet: refuse rather than freeze it."""
        if self.is_traced(t):
            raise TraceError(f"compile: {user_location()}\n  indexing with a traced tensor (x[idx]) is not "
                             "recorded in compiled graphs yet; the indices would be frozen\n"
                             "  help: use x.index_select(dim, idx), x.gather(dim, idx) or "
                             "suanli.take_along_dim, which are recorded")

    def check_concrete(self, t: Tensor, what: str) -> None:
        """Called by ``Tensor.item/numpy/__bool__...``: refuse to leak a traced value into Python."""
        if self.is_traced(t):
            raise data_dependent_error(what)


def run_eager(prim: Any, inputs: Sequence[Tensor], attrs: dict[str, Any]) -> Tensor:
    """``registry.apply`` with tracing and autocast paused (inputs were already cast)."""
    from ..ops.registry import apply
    tracer, autocast = state.tracer, state.autocast
    state.tracer = state.autocast = None
    try:
        return apply(prim, *inputs, **attrs)
    finally:
        state.tracer, state.autocast = tracer, autocast


def _is_state(t: Tensor) -> bool:
    """Parameters and leaves that require grad are bound by reference, not frozen."""
    from ..nn.parameter import Parameter
    return isinstance(t, Parameter) or (t._requires_grad and t._node is None)


# --------------------------------------------------------------------------- pytrees of tensors
@dataclass(frozen=True)
class TreeDef:
    """The static structure of nested tuples/lists/dicts with tensor leaves (``None`` = a tensor slot)."""

    kind: str                      # "tensor", "tuple", "list", "dict", "static"
    children: tuple = ()
    keys: tuple = ()
    static: Any = None


def flatten(obj: Any, *, allow_static: bool, where: str) -> tuple[list[Tensor], TreeDef]:
    """Tensor leaves and the structure; non-tensor leaves are static (part of the cache key) when
    ``allow_static``, else refused."""
    leaves: list[Tensor] = []

    def go(o: Any, path: str) -> TreeDef:
        if isinstance(o, Tensor):
            leaves.append(o)
            return TreeDef("tensor")
        if isinstance(o, (tuple, list)):
            return TreeDef(type(o).__name__, tuple(go(x, f"{path}[{i}]") for i, x in enumerate(o)))
        if isinstance(o, dict):
            keys = tuple(o)
            return TreeDef("dict", tuple(go(o[k], f"{path}[{k!r}]") for k in keys), keys)
        if o is None or allow_static:
            try:
                hash(o)
            except TypeError:
                raise TraceError(f"compile: {where}{path} is a {type(o).__name__}, which is neither a tensor "
                                 "nor hashable, so it cannot be part of the plan's signature\n"
                                 "  help: pass tensors, numbers, strings or tuples of them") from None
            return TreeDef("static", static=o)
        raise TraceError(f"compile: {where}{path} is a {type(o).__name__}; a compiled function may return "
                         "only tensors (in tuples/lists/dicts, or None): a Python value computed while "
                         "tracing would be frozen into the plan\n  help: return it as a tensor")

    return leaves, go(obj, "")


def unflatten(tree: TreeDef, leaves: Sequence[Any]) -> Any:
    it = iter(leaves)

    def go(t: TreeDef) -> Any:
        if t.kind == "tensor":
            return next(it)
        if t.kind == "static":
            return t.static
        items = [go(c) for c in t.children]
        if t.kind == "dict":
            return dict(zip(t.keys, items))
        return tuple(items) if t.kind == "tuple" else items

    return go(tree)


# --------------------------------------------------------------------------- tracing a function
@dataclass
class Traced:
    """A traced function: the graph and how to feed it and read its results back.

    ``graph.inputs`` = one per tensor argument leaf, then one per ``state`` tensor (by reference).
    ``graph.outputs`` = the function's tensor outputs (``out_tree``), then one gradient per entry
    of ``grad_targets`` (indices into ``graph.inputs``) to accumulate into that tensor's ``.grad``.
    """

    graph: Graph
    in_tree: TreeDef
    out_tree: TreeDef
    num_args: int
    state: list[Tensor]
    grad_targets: list[int] = field(default_factory=list)


def _globals_of(fn: Callable) -> tuple[dict | None, list]:
    from ..nn.module import Module
    target = type(fn).forward if isinstance(fn, Module) else getattr(fn, "__func__", fn)
    cells = list(getattr(target, "__closure__", None) or ())
    return getattr(target, "__globals__", None), cells


def _snapshot(globs: dict | None, cells: list) -> tuple[dict, list]:
    g = {k: id(v) for k, v in globs.items() if not k.startswith("__")} if globs is not None else {}
    c = []
    for cell in cells:
        try:
            c.append(id(cell.cell_contents))
        except ValueError:
            c.append(None)
    return g, c


def trace(fn: Callable, args: Sequence[Any], kwargs: dict[str, Any] | None = None, *,
          state_tensors: Sequence[tuple[str, Tensor]] = ()) -> Traced:
    """Run ``fn(*args, **kwargs)`` once under a tracer and return the recorded :class:`Traced`.

    ``state_tensors`` (name, tensor) are bound by reference as graph inputs (a module's parameters
    and buffers); other captured parameters are added as they are met. The function's side effects
    on ``.grad`` are not kept: the caller runs the plan for real.
    """
    from ..random import default_generator
    kwargs = kwargs or {}
    leaves, in_tree = flatten((tuple(args), kwargs), allow_static=True, where="argument ")
    graph = Graph()
    tracer = Tracer(graph)
    wrapped: list[Tensor] = []
    for i, t in enumerate(leaves):
        w = _wrap(t._data)      # a fresh leaf on the same data: the trace's view of the argument
        w._requires_grad = t._requires_grad
        tracer.bind(w, graph.add_input(t._data.shape, t._data.dtype, name=f"arg{i}"))
        tracer.watch(w, f"argument {i}")
        wrapped.append(w)
    for name, t in state_tensors:
        tracer.add_state(t, name)
    call_args, call_kwargs = unflatten(in_tree, wrapped)
    globs, cells = _globals_of(fn)
    before = _snapshot(globs, cells)
    rng_before = default_generator.get_state()
    prev = state.tracer
    if prev is not None:
        raise TraceError("compile: a compiled function was called while tracing another one; "
                         "nested compile is not supported\n  help: compile only the outer function")
    state.tracer = tracer
    try:
        result = fn(*call_args, **call_kwargs)
        out_leaves, out_tree = flatten(result, allow_static=False, where="the result")
        graph.outputs = [tracer.value_of(t) for t in out_leaves]
        grad_targets = []
        index = {v.id: i for i, v in enumerate(graph.inputs)}
        for key, (t, _old) in tracer.saved_grads.items():
            if t.grad is not None:
                graph.outputs.append(tracer.value_of(t.grad))
                grad_targets.append(index[(tracer.lookup(t) or tracer._state_ids[key]).id])
    finally:
        state.tracer = prev
        for t, old in tracer.saved_grads.values():
            t.grad = old
    _check_side_effects(tracer, globs, cells, before, rng_before, default_generator.get_state())
    graph.meta["state_names"] = [tracer.state_names[id(t)] for t, _ in tracer.state_inputs]
    return Traced(graph, in_tree, out_tree, len(leaves), [t for t, _ in tracer.state_inputs], grad_targets)


def _check_side_effects(tracer: Tracer, globs: dict | None, cells: list, before: tuple, rng_before: dict,
                        rng_after: dict) -> None:
    after = _snapshot(globs, cells)
    if after[0] != before[0]:
        changed = sorted(k for k in set(before[0]) | set(after[0]) if before[0].get(k) != after[0].get(k))
        raise TraceError(f"compile: the traced function re-binds the global(s) {', '.join(changed)}; "
                         "mutating Python globals is not supported (it would happen only once, while "
                         "tracing)\n  help: return the value instead, or keep the state in a tensor argument")
    if after[1] != before[1]:
        raise TraceError("compile: the traced function re-binds a variable of an enclosing function "
                         "(nonlocal); this is not supported (it would happen only while tracing)\n"
                         "  help: return the value instead")
    if rng_after != rng_before:
        raise TraceError("compile: the traced function draws random numbers (dropout in training mode, "
                         "suanli.rand/randn...); the draw would be frozen into the plan\n"
                         "  help: call model.eval() or set dropout p=0, or draw the mask outside and "
                         "pass it as an argument")
    for t, version, name in tracer.versions.values():
        if t._vc[0] != version:
            raise TraceError(f"compile: the traced function modifies {name} (shape {t._data.shape}) in "
                             "place (e.g. an optimizer step, or BatchNorm running statistics in training "
                             "mode); compiled functions cannot mutate state yet\n"
                             "  help: run the optimizer step outside the compiled function, or call "
                             "model.eval()")
