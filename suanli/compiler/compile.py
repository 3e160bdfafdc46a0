"""``suanli.compile``: trace a function or module to a graph, run named passes, execute the plan.

The compiled callable keeps one :class:`Plan` per input signature (tensor shapes, dtypes,
requires_grad, static arguments, grad mode, module training mode, default dtype, autocast, and the
identity/shape of the module's parameters) and re-traces on a new one. ``dynamic=True`` makes dim 0
of every tensor argument a symbol ``B``: the function is traced at the call's batch size and at one
more; where the two graphs differ only by sizes affine in the batch (``B``, ``64*B``...) one plan
serves every batch size. Otherwise (a shape that is not affine in the batch, a constant whose values
depend on it) the plan stays per shape, with a note under ``DEBUG`` and in ``explain()``.

Extension points for the rest of the compiler:

* **passes**: ``compile(..., passes=[...])`` takes names registered with :func:`register_pass`,
  ``(name, fn)`` pairs or plain ``Graph -> Graph`` functions; the default is every pass registered
  with ``default=True``. The verifier runs after each pass.
* **executor**: a factory ``executor(graph) -> run(arrays) -> arrays`` (default: the reference
  interpreter); a native executor with fused kernels plugs in here.
* **explain**: ``compiled.explain()`` shows the graph after tracing and after each pass, then one
  section per entry of ``plan.report`` (e.g. the kernel list, planned peak memory) and of
  :data:`EXPLAIN_HOOKS`.

Training steps: call ``loss.backward()`` (or ``suanli.autograd.grad``) inside the function; the
backward is recorded into the same graph and the compiled call accumulates into ``.grad`` of the
parameters (and of arguments that require grad) exactly as eager does. Optimizer steps mutate
parameters in place and stay outside (eager NumPy). Outputs of a compiled call carry no autograd
history.

>>> import suanli
>>> f = suanli.compile(lambda x, y: (x * y).sum(dim=1))
>>> f(suanli.ones(2, 3), suanli.ones(2, 3))
tensor([3., 3.])
>>> f.stats["traces"], f(suanli.ones(2, 3), suanli.ones(2, 3)) is not None, f.stats["traces"]
(1, True, 1)
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from .._config import debug_note, state
from ..dtypes import get_default_dtype
from ..errors import SuanliError
from ..graph import Graph, interpret, verify
from ..graph.printer import format_graph
from ..graph.trace import TraceError, Traced, TreeDef, flatten, trace, unflatten
from ..tensor import Tensor, _wrap
from ..graph.dynamic import generalize

Pass = Callable[[Graph], Graph]
Runner = Callable[[Sequence[np.ndarray]], list[np.ndarray]]
Executor = Callable[[Graph], Runner]

_PASSES: dict[str, tuple[Pass, bool]] = {}
EXPLAIN_HOOKS: list[Callable[[Plan], str | None]] = []


def register_pass(name: str, fn: Pass, *, default: bool = False) -> Pass:
    """Make a ``Graph -> Graph`` pass available by ``name`` (and in the default list if ``default``)."""
    if name in _PASSES and _PASSES[name][0] is not fn:
        raise ValueError(f"register_pass: a pass named {name!r} is already registered")
    _PASSES[name] = (fn, default)
    return fn


def default_passes() -> list[tuple[str, Pass]]:
    return [(name, fn) for name, (fn, default) in _PASSES.items() if default]


def _resolve_passes(passes: Sequence[Any] | None) -> list[tuple[str, Pass]]:
    if passes is None:
        return default_passes()
    out = []
    for p in passes:
        if isinstance(p, str):
            if p not in _PASSES:
                raise SuanliError(f"compile: unknown pass {p!r}; registered: {sorted(_PASSES) or 'none'}\n"
                                  "  help: register it with suanli.compiler.register_pass(name, fn)")
            out.append((p, _PASSES[p][0]))
        elif isinstance(p, tuple) and len(p) == 2 and callable(p[1]):
            out.append((str(p[0]), p[1]))
        elif callable(p):
            out.append((getattr(p, "__name__", repr(p)), p))
        else:
            raise SuanliError(f"compile: passes must be names, (name, fn) pairs or functions, got {p!r}")
    return out


def interpreter_executor(graph: Graph) -> Runner:
    """The default executor: the reference interpreter."""
    return lambda arrays: interpret(graph, *arrays)


@dataclass
class Plan:
    """One compiled signature: the traced graph, the optimized graph, and how to run it."""

    traced: Traced
    graph: Graph
    run: Runner
    stages: list[tuple[str, str]]
    dynamic: bool = False
    compile_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    report: dict[str, str] = field(default_factory=dict)   # extra explain() sections, by title

    def explain(self) -> str:
        parts = []
        for name, text in self.stages:
            parts.append(f"=== {name} ===\n{text}")
        for title, text in self.report.items():
            parts.append(f"=== {title} ===\n{text}")
        for hook in EXPLAIN_HOOKS:
            text = hook(self)
            if text:
                parts.append(text)
        if self.notes:
            parts.append("=== notes ===\n" + "\n".join(self.notes))
        parts.append(f"compile time: {self.compile_seconds:.3f} s; dynamic batch: {self.dynamic}")
        return "\n".join(parts)


class CompiledFunction:
    """The callable returned by :func:`compile`."""

    def __init__(self, fn: Callable, *, dynamic: bool, explain: bool, passes: Sequence[Any] | None,
                 executor: Executor | None) -> None:
        from ..nn.module import Module
        if not callable(fn):
            raise TypeError(f"compile: expected a function or Module, got {type(fn).__name__}")
        self.fn = fn
        self.module = fn if isinstance(fn, Module) else None
        self.dynamic = dynamic
        self._explain = explain
        self.passes = _resolve_passes(passes)
        self.executor = executor or interpreter_executor
        self._plans: dict[tuple, Plan] = {}
        self._static_only: set[tuple] = set()   # dynamic keys whose graphs did not generalize
        self.last_plan: Plan | None = None
        self.stats = {"traces": 0, "calls": 0, "cache_hits": 0}

    # ------------------------------------------------------------------ signature
    def _state(self) -> list[tuple[str, Tensor]]:
        if self.module is None:
            return []
        return list(self.module.named_parameters()) + list(self.module.named_buffers())

    def _key(self, leaves: list[Tensor], in_tree: TreeDef, named_state: list[tuple[str, Tensor]],
             dynamic: bool) -> tuple:
        specs = tuple((("B",) + t._data.shape[1:] if dynamic and t._data.ndim else t._data.shape,
                       t._data.dtype.str, t._requires_grad) for t in leaves)
        st = tuple((id(t), t._data.shape, t._data.dtype.str, t._requires_grad) for _, t in named_state)
        mode = (state.grad_enabled, get_default_dtype().str,
                None if state.autocast is None else str(getattr(state.autocast, "dtype", state.autocast)),
                None if self.module is None else self.module.training)
        return (dynamic, in_tree, specs, st, mode)

    # ------------------------------------------------------------------ call
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if state.tracer is not None:
            raise TraceError("compile: a compiled function was called while tracing another one; "
                             "nested compile is not supported\n  help: compile only the outer function")
        self.stats["calls"] += 1
        leaves, in_tree = flatten((tuple(args), kwargs), allow_static=True, where="argument ")
        named_state = self._state()
        dynamic = self.dynamic and any(t._data.ndim for t in leaves)
        key = self._key(leaves, in_tree, named_state, dynamic)
        if dynamic and key in self._static_only:
            key = self._key(leaves, in_tree, named_state, False)
        plan = self._plans.get(key)
        if plan is not None and not _state_still_valid(plan):
            plan = None
        if plan is None:
            plan = self._build(args, kwargs, leaves, named_state, key, dynamic)
        else:
            self.stats["cache_hits"] += 1
        self.last_plan = plan
        return _run_plan(plan, leaves)

    def _build(self, args: tuple, kwargs: dict, leaves: list[Tensor], named_state: list[tuple[str, Tensor]],
               key: tuple, dynamic: bool) -> Plan:
        start = time.perf_counter()
        traced = trace(self.fn, args, kwargs, state_tensors=named_state)
        self.stats["traces"] += 1
        notes: list[str] = []
        is_dynamic = False
        if dynamic:
            general, why = self._generalize(traced, args, kwargs, leaves, named_state)
            if general is not None:
                traced, is_dynamic = general, True
            else:
                notes.append(f"dynamic=True: one plan per batch size ({why})")
                debug_note(1, f"compile: {notes[-1]}")
                self._static_only.add(key)
                key = self._key(leaves, key[1], named_state, False)
        verify(traced.graph)
        graph = traced.graph
        stages = [("traced", format_graph(graph))]
        for name, fn in self.passes:
            new = fn(graph)
            if not isinstance(new, Graph):
                raise SuanliError(f"compile: pass {name!r} returned {type(new).__name__}, not a Graph")
            new.meta.setdefault("sym_hints", graph.meta.get("sym_hints"))
            try:
                verify(new)
            except Exception as exc:
                raise SuanliError(f"compile: the graph is malformed after pass {name!r}: {exc}") from exc
            graph = new
            stages.append((f"after {name}", format_graph(graph)))
        plan = Plan(traced, graph, self.executor(graph), stages, is_dynamic,
                    time.perf_counter() - start, notes)
        self._plans[key] = plan
        if self._explain:
            print(plan.explain())
        return plan

    def _generalize(self, traced: Traced, args: tuple, kwargs: dict, leaves: list[Tensor],
                    named_state: list[tuple[str, Tensor]]) -> tuple[Traced | None, str]:
        """Trace again at batch + 1 and fit sizes affine in the batch; (None, why) if impossible."""
        batch = {t._data.shape[0] for t in leaves if t._data.ndim}
        if len(batch) != 1:
            return None, f"tensor arguments disagree on dim 0 ({sorted(batch)})"
        b = batch.pop()
        if b == 0:
            return None, "batch size 0"
        grown = [_grow(t) for t in leaves]
        _, in_tree = flatten((tuple(args), kwargs), allow_static=True, where="argument ")
        args2, kwargs2 = unflatten(in_tree, grown)
        try:
            other = trace(self.fn, args2, kwargs2, state_tensors=named_state)
        except Exception as exc:  # noqa: BLE001 - the function may not accept another batch size
            return None, f"tracing at batch {b + 1} failed: {type(exc).__name__}: {str(exc).splitlines()[0]}"
        self.stats["traces"] += 1
        if [id(t) for t in other.state] != [id(t) for t in traced.state] or \
                other.grad_targets != traced.grad_targets:
            return None, "the two traces bind different state"
        graph, why = generalize(traced.graph, other.graph, b)
        if graph is None:
            return None, why
        return Traced(graph, traced.in_tree, traced.out_tree, traced.num_args, traced.state,
                      traced.grad_targets), ""

    # ------------------------------------------------------------------ introspection
    def explain(self) -> str:
        """The latest plan: graph after tracing and after each pass, plus reports (kernels, memory)."""
        if self.last_plan is None:
            return "no plan yet: call the compiled function once"
        return self.last_plan.explain()

    @property
    def plans(self) -> list[Plan]:
        return list(self._plans.values())

    def __repr__(self) -> str:
        return f"<compiled {getattr(self.fn, '__name__', type(self.fn).__name__)}: {len(self._plans)} plan(s)>"


def _grow(t: Tensor) -> Tensor:
    """``t`` with its first row appended (batch + 1), same requires_grad."""
    a = t._data
    if a.ndim == 0:
        out = _wrap(a)
    else:
        out = _wrap(np.concatenate([a, a[:1]], axis=0))
    out._requires_grad = t._requires_grad
    return out


def _state_still_valid(plan: Plan) -> bool:
    """Captured state tensors (found while tracing a plain function) must keep shape/dtype/grad."""
    g = plan.traced.graph
    for t, v in zip(plan.traced.state, g.inputs[plan.traced.num_args:]):
        if t._data.shape != v.shape or t._data.dtype != v.dtype:
            return False
    return True


def _run_plan(plan: Plan, leaves: list[Tensor]) -> Any:
    traced = plan.traced
    feeds = leaves + traced.state
    outs = plan.run([t._data for t in feeds])
    n = len(outs) - len(traced.grad_targets)
    ins = {id(t._data) for t in feeds}
    seen: set[int] = set()
    results = []
    for a in outs[:n]:
        if id(a) in ins or id(a) in seen or not a.flags.writeable:
            a = np.array(a, copy=True)   # never hand out an input's or a constant's memory
        seen.add(id(a))
        results.append(_wrap(a))
    for idx, g in zip(traced.grad_targets, outs[n:]):
        _accumulate_grad(feeds[idx], g, seen)
    return unflatten(traced.out_tree, results)


def _accumulate_grad(t: Tensor, g: np.ndarray, claimed: set[int]) -> None:
    """``t.grad += g`` with the eager engine's ownership rules (the stored grad owns its memory)."""
    if g.dtype != t._data.dtype:
        g = g.astype(t._data.dtype)
    old = t.grad
    if old is None:
        if g.base is not None or not g.flags.writeable or not g.flags.c_contiguous or id(g) in claimed:
            g = np.array(g, copy=True, order="C")
        claimed.add(id(g))
        t.grad = _wrap(g)
    elif old._data.flags.writeable and old._data.shape == g.shape and old._node is None:
        np.add(old._data, g, out=old._data, casting="unsafe")
    else:
        t.grad = _wrap(old._data + g)


def compile(fn: Callable | None = None, *, dynamic: bool = False, explain: bool = False,
            passes: Sequence[Any] | None = None, executor: Executor | None = None) -> Any:
    """Compile ``fn`` (a function or ``nn.Module``) into a callable that runs traced plans.

    ``dynamic``: one plan for every batch size (dim 0 of the tensor arguments is symbolic).
    ``explain``: print each new plan's graphs (also available as ``compiled.explain()``).
    ``passes``: graph passes to run (see :func:`register_pass`); ``executor``: how plans run.
    Usable as a decorator, with or without arguments.

    >>> import suanli
    >>> @suanli.compile(dynamic=True)
    ... def f(x):
    ...     return x.relu().sum(dim=1)
    >>> f(suanli.tensor([[1.0, -2.0]])), f(suanli.ones(3, 2))
    (tensor([1.]), tensor([2., 2., 2.]))
    >>> len(f.plans)
    1
    """
    if fn is None:
        return lambda f: CompiledFunction(f, dynamic=dynamic, explain=explain, passes=passes, executor=executor)
    return CompiledFunction(fn, dynamic=dynamic, explain=explain, passes=passes, executor=executor)
