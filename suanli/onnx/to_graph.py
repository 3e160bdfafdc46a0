"""ONNX -> suanli graph IR: trace the op-table runner on example inputs.

Every ONNX op of the table is written with suanli primitives, so running a loaded model under the
tracer (:func:`suanli.graph.trace`) records exactly the primitives it executes. Initializers become
``constant`` nodes; shape arithmetic (``Shape`` -> ``Gather`` -> ``Reshape``) is evaluated while
tracing, so it disappears from the IR. The graph is verified, and then checked against the runner
on a second, different set of random inputs: a model whose computation depends on input *values*
(a Reshape target read from an input tensor, an ``If`` on data) would otherwise be frozen to the
example silently, so that raises instead.

Example inputs come from the declared input shapes. A named or unknown dimension takes its size
from ``dims`` (by name, e.g. ``{"seq": 128}``) or else ``batch``. When the inputs' dim 0 is
symbolic, the model is traced at ``batch`` and ``batch + 1`` and, if the two graphs generalize
(:mod:`suanli.graph.dynamic`), dim 0 becomes the symbol ``B`` in the IR; otherwise the graph is for
the traced sizes and ``graph.meta["static_reason"]`` says why.

>>> import numpy as np, suanli
>>> from onnx import helper, TensorProto as T
>>> from suanli.graph import interpret
>>> g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("Relu", ["y"], ["z"])],
...     "g", [helper.make_tensor_value_info("x", T.FLOAT, ["N", 2])],
...     [helper.make_tensor_value_info("z", T.FLOAT, ["N", 3])],
...     initializer=[helper.make_tensor("w", T.FLOAT, [2, 3], [1, -1, 0, 2, 1, 1])])
>>> graph = to_graph(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
>>> print(graph)
graph(%0: float32[B,2] x) {
  %1: float32[2,3] = constant(<2x3 float32>)
  %2: float32[B,3] = matmul(%0, %1)
  %3: float32[B,3] = relu(%2)
  return %3
}
>>> interpret(graph, np.array([[1, 1]], np.float32))[0]
array([[3., 0., 1.]], dtype=float32)
"""
from __future__ import annotations

import copy
from typing import Any, Mapping

import numpy as np
import onnx

from .._config import state
from ..graph import Graph, interpret, verify
from ..tensor import Tensor, _wrap
from .runner import GraphRunner
from .errors import OnnxError, onnx_error
from .load import OnnxModel, _declared, load

__all__ = ["to_graph", "example_inputs"]


def example_inputs(model: OnnxModel, *, batch: int = 2, dims: Mapping[str, int] | None = None,
                   seed: int = 0) -> list[np.ndarray]:
    """Random arrays of every input's declared dtype and shape (free dims: ``dims[name]`` or ``batch``).

    Integer inputs get small non-negative values (valid as indices into most tables), bools random.
    """
    dims = dict(dims or {})
    rng = np.random.default_rng(seed)
    out = []
    for vi in model.inputs:
        dtype, shape = _declared(vi)
        if dtype is None or shape is None:
            raise onnx_error(model.where, f"input {vi.name!r} declares no tensor type/shape",
                             hint="pass example_inputs=... to to_graph", cls=OnnxError)
        concrete = tuple(d if isinstance(d, int) and d > 0 else int(dims.get(d, batch)) if isinstance(d, str)
                         else batch for d in shape)
        if dtype.kind == "f":
            out.append(rng.standard_normal(concrete).astype(dtype))
        elif dtype.kind in "iu":
            out.append(rng.integers(0, 2, concrete).astype(dtype))
        elif dtype.kind == "b":
            out.append(rng.random(concrete) < 0.5)
        else:
            raise onnx_error(model.where, f"input {vi.name!r} has dtype {dtype}, which to_graph cannot invent",
                             hint="pass example_inputs=... to to_graph", cls=OnnxError)
    return out


class _TraceRunner(GraphRunner):
    """The op-table runner, adapted for tracing.

    A node whose inputs are all integer constants (``Shape`` results, shape initializers) runs
    with the tracer paused: it is folded at trace time and records nothing. The table's Gather indexes with
    ``x[idx]``, which the tracer refuses when ``idx`` is traced (it would freeze the indices); here
    a Gather that reads traced data is recorded as the ``index`` primitive.
    """

    def _run_node(self, node: Any, attrs: dict[str, Any], env: dict[str, Any]) -> None:
        if node.op_type == "Gather" and node.domain in ("", "ai.onnx") and len(node.input) == 2:
            x, idx = env.get(node.input[0]), env.get(node.input[1])
            if isinstance(x, Tensor) and isinstance(idx, Tensor) and state.tracer is not None:
                axis = int(attrs.get("axis", 0))
                if _data_dependent(x) or _data_dependent(idx):
                    env[node.output[0]] = _gather(x, idx, axis)
                else:       # shape arithmetic on constants: evaluate now, nothing to record
                    i = np.asarray(idx._data, np.int64)
                    env[node.output[0]] = _wrap(np.take(x._data, np.where(i < 0, i + x.shape[axis], i), axis=axis))
                return
        if state.tracer is not None and not any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
                                                for a in node.attribute) \
                and all(_shape_constant(env.get(name)) for name in node.input if name):
            # integer constants in only (shape arithmetic): fold now and record nothing, so sizes that
            # depend on the batch end up in attributes (which generalize), not in constants
            tracer, state.tracer = state.tracer, None
            try:
                super()._run_node(node, attrs, env)
            finally:
                state.tracer = tracer
            return
        super()._run_node(node, attrs, env)

    def run_subgraph(self, graph: Any, feeds: Mapping[str, Any], env: Mapping[str, Any]) -> list[Any]:
        return _TraceRunner(graph, self.opsets, parent=self, scope=env).run(feeds)


def _data_dependent(t: Tensor) -> bool:
    """True when ``t`` is computed (in the active trace) from graph inputs, not only from constants."""
    tracer = state.tracer
    if tracer is None:
        return False
    v = tracer.lookup(t)
    return v is not None and not (v.producer is not None and v.producer.op == "constant")


def _shape_constant(value: Any) -> bool:
    """An integer/bool tensor not computed from graph inputs (or an absent optional input)."""
    if value is None:
        return True
    return isinstance(value, Tensor) and value.dtype.kind in "iub" and not _data_dependent(value)


def _gather(x: Tensor, idx: Tensor, axis: int) -> Tensor:
    from ._util import P, cast, scalar
    axis %= x.ndim
    idx = cast(idx, np.int64)
    n = scalar(idx, x.shape[axis])
    idx = P("where", P("lt", idx, scalar(idx, 0)), P("add", idx, n), idx)     # ONNX allows negatives
    return P("index", x, idx, adv=(-1,) * axis + (0,))


def _trace(model: OnnxModel, arrays: list[np.ndarray]) -> Graph:
    from ..autograd.grad_mode import no_grad
    from ..graph import trace
    from ..tensor import _wrap
    names = model.input_names
    model = copy.copy(model)
    model.runner = _TraceRunner(model.proto.graph, model.opsets)

    def run(*xs):
        return model.run(dict(zip(names, xs)), check_outputs=True)

    with no_grad():
        traced = trace(run, tuple(_wrap(a) for a in arrays))
    graph = traced.graph
    for v, name in zip(graph.inputs, names):
        v.name = name
    return graph


def to_graph(source: Any, *, batch: int = 2, dims: Mapping[str, int] | None = None,
             example_inputs_: list[np.ndarray] | None = None, check: bool = True) -> Graph:
    """The suanli IR of an ONNX model (path, bytes, ModelProto or :class:`OnnxModel`).

    ``graph.inputs`` are the model's (non-initializer) inputs in declared order, named as in the
    model; ``graph.outputs`` its outputs. ``graph.meta``: ``onnx_inputs``/``onnx_outputs`` (names),
    ``static_reason`` (why dim 0 is not symbolic, when it is not).
    """
    model = source if isinstance(source, OnnxModel) else load(source)
    arrays = example_inputs_ if example_inputs_ is not None else example_inputs(model, batch=batch, dims=dims)
    graph = _trace(model, arrays)
    free0 = [i for i, vi in enumerate(model.inputs) if _dim0_free(vi)]
    static_reason = "the inputs' dim 0 is fixed in the model" if not free0 else ""
    if free0 and example_inputs_ is None:
        from ..graph.dynamic import generalize
        grown = [np.concatenate([a, a[:1]]) if i in free0 else a for i, a in enumerate(arrays)]
        try:
            other = _trace(model, grown)
            general, why = generalize(graph, other, batch)
        except Exception as exc:  # noqa: BLE001 - the model may accept only one batch size
            general, why = None, f"tracing at batch {batch + 1} failed: {str(exc).splitlines()[0]}"
        if general is not None:
            graph = general
            graph.meta["sym_hints"] = {"B": batch}
        else:
            static_reason = why
    graph.meta["onnx_inputs"] = model.input_names
    graph.meta["onnx_outputs"] = model.output_names
    graph.meta["static_reason"] = static_reason
    verify(graph)
    if check:
        _check_against_runner(model, graph, arrays)
    return graph


def _dim0_free(vi: Any) -> bool:
    shape = _declared(vi)[1]
    return bool(shape) and not (isinstance(shape[0], int) and shape[0] > 0)


def _random_like(arrays: list[np.ndarray], seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for a in arrays:
        if a.dtype.kind == "f":
            out.append(rng.standard_normal(a.shape).astype(a.dtype))
        elif a.dtype.kind in "iu":
            out.append(rng.integers(0, 2, a.shape).astype(a.dtype))
        elif a.dtype.kind == "b":
            out.append(rng.random(a.shape) < 0.5)
        else:
            out.append(a)
    return out


def _check_against_runner(model: OnnxModel, graph: Graph, arrays: list[np.ndarray]) -> None:
    """The IR must compute what the runner computes on *other* inputs (catches frozen data)."""
    from ..autograd.grad_mode import no_grad
    probe = _random_like(arrays, seed=1)
    got = interpret(graph, *probe)
    with no_grad():
        want = model.run(dict(zip(model.input_names, probe)), check_outputs=False)
    for name, g, w in zip(model.output_names, got, want):
        w = np.asarray(w._data)
        if g.shape != w.shape or not np.allclose(g, w, rtol=1e-5, atol=1e-6, equal_nan=True):
            raise onnx_error(model.where, f"output {name!r} depends on input values the trace froze "
                             "(data-dependent shapes or control flow), so the model has no static IR",
                             actual=f"IR gives {g.shape}, the runner {w.shape} on other random inputs",
                             hint="run it with suanli.onnx.load(...) (the node-by-node runner) instead",
                             cls=OnnxError)
