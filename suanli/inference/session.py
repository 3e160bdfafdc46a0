"""``Session``: plan a model once for inference, then run it fast -- the ONNX Runtime of suanli.

A session takes an ``nn.Module`` (with example inputs), a function, or an ONNX model (path, bytes
or ``ModelProto``), turns it into the compiler's graph IR with the parameters frozen into constants,
and runs the inference passes (:data:`suanli.compiler.passes.INFERENCE`: constant folding,
simplification, CSE, batch-norm/scale folding into conv and matmul weights, the exporters' decomposed
LayerNorm/GELU/attention/Linear put back together (``passes/patterns.py``), DCE, elementwise fusion
into generated C kernels, memory planning). Convolutions run the kernel the per-layer policy picks
(:func:`suanli.inference.conv_kernels.choose_conv_kernel`: Winograd F(4x4,3x3), direct depthwise,
or im2col + GEMM). :meth:`Session.profile` times every node and names its kernel.

The API follows onnxruntime's ``InferenceSession``: ``run(output_names, {name: array})``.

>>> import numpy as np, suanli
>>> from suanli import nn
>>> model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.ReLU())
>>> sess = Session(model, (suanli.zeros(2, 4),))
>>> [i.name for i in sess.get_inputs()], [n.op for n in sess.graph.nodes if n.op != "constant"]
(['input'], ['matmul', 'fused'])
>>> y = sess.run(None, {"input": np.ones((2, 4), np.float32)})[0]
>>> bool(np.allclose(y, model.eval()(suanli.ones(2, 4)).detach().numpy(), atol=1e-6))
True
"""
from __future__ import annotations

import contextlib
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .. import native
from ..compiler.gemm import GemmKernel
from ..errors import SuanliError, op_error
from ..graph import Graph, Node, trace, verify
from ..graph.interpret import bind_symbols, run_node

__all__ = ["Session", "NodeArg", "Profile"]


@dataclass(frozen=True)
class NodeArg:
    """An input or output of the session: name, shape (ints or symbol names) and dtype."""

    name: str
    shape: tuple
    type: str


class SessionError(SuanliError):
    """The session cannot be built or was fed the wrong inputs."""


def _model_graph(model: Any, example_inputs: Sequence[Any] | None, input_names: Sequence[str] | None
                 ) -> tuple[Graph, list[str]]:
    """The model as a graph whose only inputs are the model's inputs (parameters are constants)."""
    import suanli
    from ..compiler.passes import freeze
    from ..nn.module import Module
    if isinstance(model, (str, bytes)) or type(model).__name__ == "ModelProto":
        from ..onnx import to_graph
        graph = to_graph(model)
        names = [v.name or f"input{i}" for i, v in enumerate(graph.inputs)]
        return graph, names
    if not callable(model):
        raise SessionError(f"Session: expected an nn.Module, a function or an ONNX model (path, bytes or "
                           f"ModelProto), got {type(model).__name__}")
    if example_inputs is None:
        raise SessionError("Session: a module or function needs example_inputs to trace it\n"
                           "  help: Session(model, (suanli.zeros(1, 3, 224, 224),))")
    if isinstance(model, Module):
        model.eval()
    examples = tuple(example_inputs)
    with suanli.no_grad():
        traced = trace(model, examples)
    n_args = traced.num_args
    values = {n_args + i: t.detach().numpy() for i, t in enumerate(traced.state)}
    graph = freeze(traced.graph, values)
    if input_names is None:
        input_names = ["input"] if n_args == 1 else [f"input{i}" for i in range(n_args)]
    if len(input_names) != n_args:
        raise SessionError(f"Session: {len(input_names)} input names for {n_args} inputs")
    for v, name in zip(graph.inputs, input_names):
        v.name = name
    return graph, list(input_names)


class Session:
    """An inference session over one model; see the module docstring.

    ``optimize=False`` runs the traced graph with no passes (for comparisons).
    """

    def __init__(self, model: Any, example_inputs: Sequence[Any] | None = None, *, optimize: bool = True,
                 input_names: Sequence[str] | None = None, passes: Sequence[Callable[[Graph], Graph]] | None = None
                 ) -> None:
        from ..compiler import passes as P
        graph, self._input_names = _model_graph(model, example_inputs, input_names)
        self.traced_graph = graph.copy()
        if optimize:
            chosen = passes if passes is not None else [getattr(P, name) for name in P.INFERENCE]
            for p in chosen:
                graph = verify(p(graph))
        self.graph = graph
        self._output_names = [v.name or f"output{i}" for i, v in enumerate(graph.outputs)]
        # the threading policy: when most FLOPs run in our own kernels, OpenBLAS gets one thread
        # while the graph runs (its spinning workers would take our kernels' second core)
        ours, blas = flop_split(graph)
        self.blas_single_threaded = ours > blas
        # the compiler's executor: per-node work (slots, bound impls, frees) done once here, not per
        # run -- what a small model's step is made of (a 4-layer GPT decode step: ~120 nodes); graphs
        # with symbolic sizes or control flow keep the reference interpreter
        from ..compiler.compile import plan_executor
        self._runner = plan_executor(graph)

    # ------------------------------------------------------------------------------ metadata
    def get_inputs(self) -> list[NodeArg]:
        return [NodeArg(n, tuple(str(d) if not isinstance(d, int) else d for d in v.shape), str(v.dtype))
                for n, v in zip(self._input_names, self.graph.inputs)]

    def get_outputs(self) -> list[NodeArg]:
        return [NodeArg(n, tuple(str(d) if not isinstance(d, int) else d for d in v.shape), str(v.dtype))
                for n, v in zip(self._output_names, self.graph.outputs)]

    # ------------------------------------------------------------------------------ running
    def _arrays(self, feed: Mapping[str, Any]) -> list[np.ndarray]:
        if not isinstance(feed, Mapping):
            raise SessionError(f"Session.run: inputs must be a dict name -> array, got {type(feed).__name__}")
        unknown = sorted(set(feed) - set(self._input_names))
        missing = [n for n in self._input_names if n not in feed]
        if unknown or missing:
            raise op_error("Session.run", "input names do not match the model",
                           expect=f"{self._input_names}", actual=f"{sorted(feed)}",
                           hint=f"missing {missing}; unknown {unknown}", cls=SessionError)
        arrays = [np.asarray(feed[n]) for n in self._input_names]
        bind_symbols(self.graph, arrays)            # names, dtypes and shapes, with expected vs actual
        return arrays

    def run(self, output_names: Sequence[str] | None, input_feed: Mapping[str, Any]) -> list[np.ndarray]:
        """Outputs (all, or those named) for ``input_feed`` (name -> array), as NumPy arrays."""
        arrays = self._arrays(input_feed)
        with self._threading():
            outs = self._runner(arrays)
        if output_names is None:
            return outs
        index = {n: i for i, n in enumerate(self._output_names)}
        bad = [n for n in output_names if n not in index]
        if bad:
            raise op_error("Session.run", f"unknown output names {bad}", expect=f"{self._output_names}",
                           cls=SessionError)
        return [outs[index[n]] for n in output_names]

    def __call__(self, *arrays: Any) -> list[np.ndarray]:
        """Positional form: ``sess(x)`` -> list of outputs."""
        return self.run(None, dict(zip(self._input_names, [np.asarray(a) for a in arrays])))

    def _threading(self) -> Any:
        return native.blas_threads(1) if self.blas_single_threaded else contextlib.nullcontext()

    # ------------------------------------------------------------------------------ profiling
    def _profile_runs(self, arrays: list[np.ndarray], env: Any, runs: int, times: dict[int, list[float]]) -> None:
        for _ in range(runs):
            values = {v.id: a for v, a in zip(self.graph.inputs, arrays)}
            for k, node in enumerate(self.graph.nodes):
                ins = [values[v.id] for v in node.inputs]
                t0 = time.perf_counter()
                outs = run_node(node, ins, env)
                times.setdefault(k, []).append(time.perf_counter() - t0)
                for v, a in zip(node.outputs, outs):
                    values[v.id] = a

    def profile(self, input_feed: Mapping[str, Any], runs: int = 10) -> Profile:
        """Run ``runs`` times timing every node; the median per node and the kernel that ran it."""
        arrays = self._arrays(input_feed)
        env = bind_symbols(self.graph, arrays)
        times: dict[int, list[float]] = {}
        with self._threading():
            self._profile_runs(arrays, env, runs, times)
        rows = []
        for k, node in enumerate(self.graph.nodes):
            if node.op == "constant":
                continue
            shape = "x".join(map(str, node.outputs[0].shape)) if node.outputs else ""
            rows.append(ProfileRow(k, node.attrs.get("ops", node.op) if node.op == "fused" else node.op, shape,
                                   kernel_of(node), statistics.median(times[k])))
        return Profile(rows)

    def explain(self) -> str:
        """The traced graph, the optimized graph and the memory plan."""
        plan = self.graph.meta.get("memory_plan")
        ours, blas = flop_split(self.graph)
        parts = ["=== traced ===", str(self.traced_graph), "=== optimized ===", str(self.graph),
                 f"=== threads ===\nsuanli kernels {ours / 1e9:.2f} GFLOP, OpenBLAS {blas / 1e9:.2f} GFLOP: "
                 + ("OpenBLAS runs single-threaded during run()" if self.blas_single_threaded
                    else "OpenBLAS keeps its threads")]
        if plan is not None:
            parts += ["=== memory ===", plan.summary()]
        return "\n".join(parts)


def flop_split(graph: Graph) -> tuple[float, float]:
    """(FLOPs in suanli's own conv and GEMM kernels, FLOPs in OpenBLAS GEMMs) of ``graph``'s top-level nodes
    (nodes with symbolic shapes are not counted)."""
    ours = blas = 0.0
    for node in graph.nodes:
        try:
            out = float(np.prod([int(d) for d in node.outputs[0].shape])) if node.outputs else 0.0
            if node.op in ("conv2d", "conv2d_nchwc"):
                w = [int(d) for d in node.inputs[1].shape]
                n_out = w[0] * (w[-1] if node.op == "conv2d_nchwc" else 1)
                flops = 2.0 * out * float(np.prod(w)) / n_out
                if node.op == "conv2d" and kernel_of(node) in ("im2col + GEMM", "1x1 GEMM"):
                    blas += flops
                else:
                    ours += flops
            elif node.op in ("matmul", "linear", "einsum", "attention"):
                blas += 2.0 * out * int(node.inputs[0].shape[-1])
            elif node.op == "fused" and isinstance(node.attrs["kernel"], GemmKernel) and node.attrs["kernel"].native:
                ours += node.attrs["kernel"].flops
        except (TypeError, ValueError, IndexError):
            continue
    return ours, blas


def kernel_of(node: Node) -> str:
    """Which implementation runs ``node`` (what :meth:`Session.profile` reports)."""
    if node.op == "fused":
        if not node.attrs["kernel"].native:
            return "NumPy (no compiler)"
        return "packed AVX-512 GEMM" if isinstance(node.attrs["kernel"], GemmKernel) else "generated C"
    if node.op == "conv2d":
        from .conv_kernels import choose_conv_kernel
        x, w = node.inputs[0].shape, node.inputs[1].shape
        a = node.attrs
        try:
            choice = choose_conv_kernel(x, w, a["stride"], a["padding"], a["dilation"], a["groups"])
        except Exception:  # noqa: BLE001 - symbolic shapes: the policy decides at run time
            return "conv (policy at run time)"
        kh, kw = w[2], w[3]
        if choice == "im2col" and a["groups"] == 1 and (kh, kw) == (1, 1):
            return "1x1 GEMM"
        return {"winograd": "Winograd F(4x4,3x3)", "depthwise": "direct depthwise",
                "direct": "direct small-channel", "im2col": "im2col + GEMM"}[choice]
    if node.op == "conv2d_nchwc":
        return "direct NCHW16c"
    if node.op == "max_pool2d_nchwc":
        return "blocked max pool"
    if node.op in ("matmul", "einsum", "linear"):
        return "OpenBLAS GEMM"
    if node.op == "attention":
        return "GEMM + in-place softmax"
    return "NumPy"


@dataclass
class ProfileRow:
    index: int
    op: str
    shape: str
    kernel: str
    seconds: float


@dataclass
class Profile:
    """Per-node medians; ``str(profile)`` is a table sorted by time."""

    rows: list[ProfileRow]

    @property
    def total(self) -> float:
        return sum(r.seconds for r in self.rows)

    def __str__(self) -> str:
        total = self.total or 1.0
        lines = [f"{'#':>4}  {'op':<28} {'output':<18} {'kernel':<22} {'ms':>8} {'%':>6}"]
        for r in sorted(self.rows, key=lambda r: -r.seconds):
            lines.append(f"{r.index:>4}  {r.op[:28]:<28} {r.shape[:18]:<18} {r.kernel:<22} "
                         f"{r.seconds * 1e3:>8.3f} {100 * r.seconds / total:>5.1f}%")
        lines.append(f"total {self.total * 1e3:.3f} ms over {len(self.rows)} nodes")
        return "\n".join(lines)
