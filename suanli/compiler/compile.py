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
* **executor**: a factory ``executor(graph) -> run(arrays) -> arrays`` (default:
  :func:`plan_executor`, the interpreter's semantics with the per-node bookkeeping precomputed;
  ``interpreter_executor`` is the reference interpreter itself).
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

import functools
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
    """The reference interpreter as an executor (``compile(..., executor=interpreter_executor)``)."""
    return lambda arrays: interpret(graph, *arrays)


def plan_executor(graph: Graph) -> Runner:
    """The default executor: the interpreter's semantics with its per-run work done once -- each
    node becomes (callable, input slots, output slots, slots freed after it) over a flat list of
    arrays, primitives bound to their ``impl`` and attributes. Graphs with symbolic sizes or
    control flow, and half-precision primitives, keep the reference interpreter (per graph / node).
    A failing node is re-run by the interpreter for its error message. With
    ``SUANLI_BLAS_POOL=1`` OpenBLAS's threads are the kernels' pool while the plan runs
    (:func:`suanli.compiler.kernels.blas_on_pool`).

    >>> import numpy as np
    >>> from suanli.graph import Graph
    >>> g = Graph()
    >>> x = g.add_input((2,), np.float64)
    >>> g.outputs = [g.add_node("exp", [g.add_node("neg", [x], shape=(2,), dtype=np.float64)], shape=(2,), dtype=np.float64)]
    >>> plan_executor(g)([np.zeros(2)])[0].tolist()
    [1.0, 1.0]
    """
    from ..graph import has_sym
    from ..graph.interpret import run_node, run_primitive
    from ..ops.registry import registry
    from .. import native
    from .gemm import GemmKernel
    from .kernels import blas_on_pool
    if any(n.subgraphs or n.op in ("cond", "while_loop", "scan") for n in graph.nodes) or \
            any(has_sym(v.shape) for v in graph.inputs) or \
            any(has_sym(v.shape) for n in graph.nodes for v in n.outputs):
        return interpreter_executor(graph)
    slot: dict[int, int] = {v.id: i for i, v in enumerate(graph.inputs)}
    n_inputs = len(graph.inputs)
    consts: list[tuple[int, np.ndarray]] = []
    steps: list[tuple] = []
    last: dict[int, int] = {}
    for k, n in enumerate(graph.nodes):
        for v in n.inputs:
            last[v.id] = k
    keep = {v.id for v in graph.outputs}
    for k, n in enumerate(graph.nodes):
        for v in n.outputs:
            slot[v.id] = len(slot)
        outs = tuple(slot[v.id] for v in n.outputs)
        if n.op == "constant":
            consts.append((outs[0], n.attrs["value"]))
            continue
        ins = tuple(slot[v.id] for v in n.inputs)
        frees = tuple(sorted({slot[v.id] for v in n.inputs if last[v.id] == k and v.id not in keep}
                             - set(range(n_inputs))))
        if n.op == "fused":
            fn, multi = n.attrs["kernel"], True
        else:
            prim = registry[n.op]
            if prim.upcast_half and any(str(v.dtype) in ("float16", "bfloat16") for v in n.inputs):
                fn = (lambda op, attrs: lambda *a: run_primitive(op, a, attrs))(n.op, dict(n.attrs))
            else:
                fn = functools.partial(prim.impl, **n.attrs) if n.attrs else prim.impl
            multi = False
        steps.append((fn, ins, outs, frees, multi, n))
    out_slots = [slot[v.id] for v in graph.outputs]
    size = len(slot)
    # matmuls run in our GEMM: OpenBLAS (what is left of it) on one thread, so its workers do not
    # busy-wait on the core the pool's second thread needs (our GEMM went 360 -> 170 GFLOP/s)
    own_gemm = any(isinstance(n.attrs.get("kernel"), GemmKernel) for n in graph.nodes if n.op == "fused")

    def run(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        with native.blas_threads(1) if own_gemm else blas_on_pool():
            return _run(arrays)

    def _run(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        env: list[Any] = [None] * size
        env[:n_inputs] = arrays
        for i, value in consts:
            env[i] = value
        for fn, ins, outs, frees, multi, node in steps:
            args = [env[i] for i in ins]
            try:
                res = fn(*args)
            except Exception:  # noqa: BLE001 - the interpreter raises the same, clear error
                run_node(node, args, {})
                raise
            if multi:
                for i, a in zip(outs, res):
                    env[i] = a
            else:
                env[outs[0]] = res if res.__class__ is np.ndarray else np.asarray(res)
            for i in frees:
                env[i] = None
        return [env[i] for i in out_slots]

    return run


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
        self.executor = executor or plan_executor
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

    def profile(self, *args: Any, runs: int = 10, top: int = 25, **kwargs: Any) -> str:
        """Per-node timing of the plan for these arguments: the graph is run node by node ``runs``
        times (the reference interpreter's ``run_node``, so Python overhead is included), and the
        median time of every node is summed per kind (primitive name, or a fused node's ``ops``)
        and input shapes. Nothing is written to ``.grad``. Returns a table, slowest first.

        >>> import suanli
        >>> f = suanli.compile(lambda x: (x * 2).exp().sum())
        >>> "exp" in f.profile(suanli.ones(3), runs=2)
        True
        """
        from statistics import median

        from ..graph.interpret import run_node
        self(*args, **kwargs)                        # builds (or finds) the plan
        plan = self.last_plan
        leaves, _ = flatten((tuple(args), kwargs), allow_static=True, where="argument ")
        feeds = [t._data for t in leaves + plan.traced.state]
        graph = plan.graph
        times: dict[int, list[float]] = {}
        for _ in range(max(1, runs)):
            values = {v.id: a for v, a in zip(graph.inputs, feeds)}
            for k, node in enumerate(graph.nodes):
                ins = [values[v.id] for v in node.inputs]
                t0 = time.perf_counter()
                outs = run_node(node, ins, {})
                times.setdefault(k, []).append(time.perf_counter() - t0)
                values.update((v.id, a) for v, a in zip(node.outputs, outs))
        rows: dict[str, list[float]] = {}
        for k, node in enumerate(graph.nodes):
            kind = node.op if node.op != "fused" else f"fused:{node.attrs.get('ops', '')}"
            key = f"{kind} {[tuple(v.shape) for v in node.inputs]}"
            row = rows.setdefault(key, [0.0, 0])
            row[0] += median(times[k])
            row[1] += 1
        total = sum(r[0] for r in rows.values())
        lines = [f"plan profile: {len(graph.nodes)} nodes, {total * 1e3:.2f} ms (sum of per-node medians)",
                 f"{'ms':>8} {'share':>6} {'count':>5}  node"]
        for key, (sec, count) in sorted(rows.items(), key=lambda kv: -kv[1][0])[:top]:
            lines.append(f"{sec * 1e3:8.3f} {sec / total if total else 0:6.1%} {count:5d}  {key}")
        return "\n".join(lines)

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
