"""Native kernels for the compiler's hot non-elementwise nodes: softmax (causal too), its gradient,
the layer-norm core (``standardize``) and its gradient, over the last axis / trailing axes; and
every float matmul / ``linear`` of concrete shape (:class:`~suanli.compiler.gemm.GemmKernel`).

These are the biggest non-GEMM costs of a transformer training step: the NumPy implementations
make 4-6 passes over the whole tensor on one core; the C kernels (``native/kernels/softmax_rows.c``,
``layernorm_rows.c``) make one or two passes per row while the row sits in L1, split between
threads by the compiler's pool (:func:`suanli.compiler.kernels.run_tasks`). The pass
:func:`lower_native_ops` replaces each such primitive node of a plan by a ``fused`` node running its
:class:`RowKernel` (or :class:`~suanli.compiler.gemm.GemmKernel`). Sums accumulate in double, so results agree with the NumPy reference to a few
ulps (float32 included); without a C compiler the kernel runs the registry's NumPy ``impl``.

>>> import numpy as np
>>> k = RowKernel("softmax", (2, 3), np.float64, {"dim": 1, "causal": True})
>>> k(np.zeros((2, 3)))[0].tolist()
[[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]]
"""
from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import native
from ..native import address as _address
from ..graph import Graph, Node, has_sym
from ..graph.interpret import run_primitive
from .gemm import GemmKernel
from .kernels import (PARALLEL_MIN_ELEMENTS, _has_libmvec, bind, check_arguments, compile_flags, num_threads,
                      run_tasks)

__all__ = ["RowKernel", "GemmKernel", "RowGroup", "lower_native_ops", "ROW_OPS"]

_KERNELS = Path(native.__file__).parent / "kernels"
_FILES = {"softmax": "softmax_rows", "softmax_grad": "softmax_rows", "standardize": "layernorm_rows",
          "standardize_grad": "layernorm_rows"}
ROW_OPS = ("softmax", "softmax_grad", "standardize", "standardize_grad")
_SUFFIX = native.KERNEL_SUFFIX


def _library(op: str) -> Any:
    """The compiled kernel file for ``op`` (cached by :func:`suanli.native.compile_source`), or None."""
    name = _FILES[op]
    vector_math = name == "softmax_rows" and _has_libmvec()
    return native.compile_source(name, (_KERNELS / f"{name}.c").read_text(), flags=compile_flags(),
                                 libs=("mvec",) if vector_math else ())


@dataclass(frozen=True)
class _Decl:
    shape: tuple[int, ...]
    dtype: np.dtype


@dataclass
class RowGroup:
    """What a ``fused`` node of a row kernel declares (the verifier checks inputs/outputs)."""

    op: str
    inputs: list[_Decl]
    outputs: list[_Decl]
    attrs: dict

    def __str__(self) -> str:
        return f"row kernel {self.op}{self.attrs}: {[d.shape for d in self.inputs]} -> {self.outputs[0].shape}"


class RowKernel:
    """``kernel(*arrays) -> [out]`` for one of :data:`ROW_OPS` at a fixed shape and dtype (inputs in
    the primitive's order: softmax ``x``; softmax_grad ``y, g``; standardize ``x``;
    standardize_grad ``x, y, g``)."""

    def __init__(self, op: str, shape: tuple[int, ...], dtype: Any, attrs: dict) -> None:
        if op not in ROW_OPS:
            raise ValueError(f"RowKernel: {op!r} is not one of {ROW_OPS}")
        self.op, self.shape, self.dtype, self.attrs = op, tuple(shape), np.dtype(dtype), dict(attrs)
        self._names = {"softmax": ("x",), "softmax_grad": ("y", "g"), "standardize": ("x",),
                       "standardize_grad": ("x", "y", "g")}[op]
        self.n_inputs = len(self._names)
        self._label, self._want = f"RowKernel {op}", [(n, self.shape) for n in self._names]
        if op.startswith("softmax"):
            n = self.shape[-1]
            q = self.shape[-2] if len(self.shape) >= 2 else 1
            self._dims = np.array([n, q, int(bool(attrs.get("causal", False)))], np.int64)
        else:
            n = math.prod(self.shape[len(self.shape) - len(attrs["axes"]):])
            self._dims = np.array([n], np.int64)
            self._eps = np.array([attrs["eps"]], np.float64)
        self.rows = math.prod(self.shape) // n if n else 0
        self._fn = self._addr = None
        lib = _library(op) if self.dtype in _SUFFIX else None
        if lib is not None:
            self._fn, self._addr = bind(lib, f"{op}_{_SUFFIX[self.dtype]}")

    @property
    def native(self) -> bool:
        return self._fn is not None

    def __call__(self, *arrays: np.ndarray) -> list[np.ndarray]:
        # the C kernel trusts the shape it was built for: every input has it (the primitive's rule)
        check_arguments(self._label, self._want, arrays, self.dtype)
        if self._fn is None or self.rows == 0:
            return [run_primitive(self.op, arrays, self.attrs)]
        ins = [a if a.flags.c_contiguous else np.ascontiguousarray(a) for a in arrays]
        out = np.empty(self.shape, self.dtype)
        ptrs = [_address(a) for a in ins] + [_address(out), _address(self._dims)]
        if not self.op.startswith("softmax"):
            ptrs.append(_address(self._eps))
        argv = (ctypes.c_void_p * len(ptrs))(*ptrs)
        nt = num_threads() if out.size >= PARALLEL_MIN_ELEMENTS else 1
        run_tasks(self._fn, self._addr, argv, self.rows, nt)
        return [out]

    def __repr__(self) -> str:
        return f"<RowKernel {self.op} {self.shape} {self.dtype} ({'native' if self.native else 'numpy'})>"


class LayerNormGradKernel:
    """``kernel(x, y, g, w) -> [gx, dw]`` for a layer norm with weight ``w`` (over the trailing
    axes): ``gx = standardize_grad(x, y, g * w)`` and ``dw = sum(g * y)`` over the leading axes (in
    ``dw_shape``), one pass over the rows instead of two multiplies, a reduction and the gradient.
    ``dw`` is summed per block of rows (in double), then the blocks in order: the same bits at any
    thread count."""

    ROWS_PER_TASK = 32

    def __init__(self, shape: tuple, dtype: Any, axes: tuple, eps: float, dw_shape: tuple) -> None:
        self.shape, self.dtype, self.dw_shape = tuple(shape), np.dtype(dtype), tuple(dw_shape)
        self.attrs = {"axes": tuple(axes), "eps": eps}
        self.n = math.prod(self.shape[len(self.shape) - len(axes):])
        self.rows = math.prod(self.shape) // self.n if self.n else 0
        self.tasks = -(-self.rows // self.ROWS_PER_TASK)
        self._dims = np.array([self.n, self.rows, self.ROWS_PER_TASK], np.int64)
        trailing = self.shape[len(self.shape) - len(axes):]
        self._want = [("x", self.shape), ("y", self.shape), ("g", self.shape), ("w", trailing)]
        self._eps = np.array([eps], np.float64)
        self._fn = self._addr = None
        lib = _library("standardize") if self.dtype in _SUFFIX else None
        if lib is not None:
            self._fn, self._addr = bind(lib, f"standardize_grad_affine_{_SUFFIX[self.dtype]}")

    @property
    def native(self) -> bool:
        return self._fn is not None

    def __call__(self, x: np.ndarray, y: np.ndarray, g: np.ndarray, w: np.ndarray) -> list[np.ndarray]:
        check_arguments("LayerNormGradKernel", self._want, (x, y, g, w), self.dtype)
        if self._fn is None or self.rows == 0:
            gw = run_primitive("mul", [g, w], {})
            lead = tuple(range(len(self.shape) - len(self.attrs["axes"])))
            dw = run_primitive("sum", [run_primitive("mul", [g, y], {})], {"axes": lead, "keepdims": True})
            return [run_primitive("standardize_grad", [x, y, gw], self.attrs), dw.reshape(self.dw_shape)]
        ins = [a if a.flags.c_contiguous else np.ascontiguousarray(a) for a in (x, y, g, w)]
        out = np.empty(self.shape, self.dtype)
        part = np.empty((self.tasks, self.n), np.float64)
        ptrs = [_address(a) for a in ins] + [_address(out), _address(part), _address(self._dims),
                                                _address(self._eps)]
        argv = (ctypes.c_void_p * len(ptrs))(*ptrs)
        nt = num_threads() if out.size >= PARALLEL_MIN_ELEMENTS else 1
        run_tasks(self._fn, self._addr, argv, self.tasks, nt)
        return [out, part.sum(axis=0).astype(self.dtype).reshape(self.dw_shape)]

    def __repr__(self) -> str:
        return f"<LayerNormGradKernel {self.shape} {self.dtype}>"


def _layer_norm_backward(node: Node, users: dict[int, list[Node]], returned: set[int]) -> tuple | None:
    """For ``standardize_grad(x, y, mul(g, w))`` whose graph also has ``sum(mul(g, y))`` over the
    leading axes (LayerNorm's weight gradient), (gw mul node, gy mul node, sum node); else None."""
    if node.op != "standardize_grad" or not _lowerable(node):
        return None
    x, y, gw = node.inputs
    nd, axes = len(x.shape), tuple(node.attrs["axes"])
    trailing = tuple(x.shape[nd - len(axes):])
    m = gw.producer
    if m is None or m.op != "mul" or len(users.get(gw.id, ())) != 1 or gw.id in returned:
        return None
    a, b = m.inputs
    g, w = (a, b) if tuple(b.shape) == trailing and tuple(a.shape) == tuple(x.shape) else (b, a)
    if tuple(w.shape) != trailing or tuple(g.shape) != tuple(x.shape) or w.dtype != x.dtype or g.dtype != x.dtype:
        return None
    lead = tuple(range(nd - len(axes)))
    for p in users.get(g.id, ()):
        if p.op == "mul" and p is not m and {v.id for v in p.inputs} == {g.id, y.id} and len(p.inputs) == 2:
            prod = p.outputs[0]
            readers = users.get(prod.id, ())
            if len(readers) == 1 and prod.id not in returned and readers[0].op == "sum" \
                    and tuple(readers[0].attrs.get("axes", ())) == lead:
                return m, p, readers[0]
    return None


def _native_matmul(node: Node) -> bool:
    """A two-operand matmul of concrete shapes whose operands and result share a float32/float64 dtype."""
    if node.op != "matmul" or len(node.inputs) != 2:
        return False
    a, b = node.inputs
    out = node.outputs[0]
    return (not any(has_sym(v.shape) for v in (a, b, out)) and np.dtype(out.dtype) in _SUFFIX
            and a.dtype == out.dtype and b.dtype == out.dtype)


GEMM_MIN_ROWS = 6    # the micro-kernel's row block: fewer rows (a decode step's GEMV) stay OpenBLAS's


def _lowerable_matmul(node: Node) -> bool:
    """A matmul :class:`~suanli.compiler.gemm.GemmKernel` runs: ``a`` (..., M, K) by a 2-D ``b``, or
    equal batch dims (one or two) on both, nothing empty, at least :data:`GEMM_MIN_ROWS` rows."""
    if not _native_matmul(node):
        return False
    a, b = node.inputs
    if 0 in tuple(node.outputs[0].shape) or len(a.shape) < 2:
        return False
    if (math.prod(a.shape[:-1]) if len(b.shape) == 2 else a.shape[-2]) < GEMM_MIN_ROWS:
        return False
    if len(b.shape) == 2:
        return True
    return len(a.shape) in (3, 4) and len(b.shape) == len(a.shape) and tuple(a.shape[:-2]) == tuple(b.shape[:-2])


def _constant(v: Any) -> np.ndarray | None:
    """The array of a value made by a ``constant`` node of its dtype (a frozen weight), else None."""
    p = v.producer
    if p is None or p.op != "constant":
        return None
    value = np.asarray(p.attrs["value"])
    return value if value.dtype == np.dtype(v.dtype) and value.shape == tuple(v.shape) else None


def _lowerable_linear(node: Node) -> bool:
    """A ``linear(x, w, b)`` (inference graphs) with ``x`` at least 2-D, float32/float64, concrete."""
    if node.op != "linear" or len(node.inputs) != 3:
        return False
    x, w, b = node.inputs
    out = node.outputs[0]
    return (len(x.shape) >= 2 and not any(has_sym(v.shape) for v in (x, w, b, out))
            and np.dtype(out.dtype) in _SUFFIX and all(v.dtype == out.dtype for v in (x, w, b))
            and 0 not in tuple(out.shape) and math.prod(x.shape[:-1]) >= GEMM_MIN_ROWS)


def _lowerable(node: Node) -> bool:
    if node.op not in ROW_OPS or len(node.outputs) != 1:
        return False
    out = node.outputs[0]
    if has_sym(out.shape) or np.dtype(out.dtype) not in _SUFFIX or any(v.dtype != out.dtype for v in node.inputs):
        return False
    if any(tuple(v.shape) != tuple(out.shape) for v in node.inputs):
        return False
    nd = len(out.shape)
    if node.op.startswith("softmax"):
        return nd >= 1 and node.attrs.get("dim") == nd - 1
    axes = tuple(node.attrs.get("axes", ()))
    return bool(axes) and axes == tuple(range(nd - len(axes), nd))


def lower_native_ops(graph: Graph) -> Graph:
    """Replace softmax / softmax_grad (last axis) and standardize / standardize_grad (trailing axes)
    nodes of float32/float64 and concrete shape by ``fused`` nodes running a native
    :class:`RowKernel`, and matmuls (by a 2-D matrix, or 3-d/4-d with equal batch dims) and
    ``linear`` nodes by a :class:`~suanli.compiler.gemm.GemmKernel` -- a constant 2-D operand (a
    frozen weight) packed once, a ``matmul`` read only by ``permute(0, 2, 1, 3)`` written in that
    layout directly (top level only; nothing changes when native code is unavailable)."""
    if not native.enabled() or native.compiler() is None:
        return graph
    new_nodes = []
    decl = lambda v: _Decl(tuple(v.shape), np.dtype(v.dtype))   # noqa: E731
    users: dict[int, list[Node]] = {}
    for node in graph.nodes:
        for v in node.inputs:
            users.setdefault(v.id, []).append(node)
    returned = {v.id for v in graph.outputs}
    absorbed: dict[int, Node] = {}          # id(node) -> the fused node replacing it there
    skip: set[int] = set()                  # nodes folded into a fused node placed elsewhere
    position = {id(n): k for k, n in enumerate(graph.nodes)}
    defined_at = {v.id: position[id(n)] for n in graph.nodes for v in n.outputs}
    for node in graph.nodes:
        found = _layer_norm_backward(node, users, returned)
        if found is None:
            continue
        m, p, total = found
        x, y, gw = node.inputs
        g, w = (m.inputs if m.inputs[1].shape == tuple(x.shape[len(x.shape) - len(node.attrs["axes"]):])
                else m.inputs[::-1])
        at = min(position[id(node)], position[id(total)])
        if any(defined_at.get(v.id, -1) >= at for v in (x, y, g, w)):
            continue                        # an input is made after the first of the two: keep as is
        kernel = LayerNormGradKernel(tuple(x.shape), x.dtype, tuple(node.attrs["axes"]), node.attrs["eps"],
                                     tuple(total.outputs[0].shape))
        if not kernel.native:
            continue
        outs = [node.outputs[0], total.outputs[0]]
        group = RowGroup("layer_norm_backward", [decl(v) for v in (x, y, g, w)], [decl(v) for v in outs],
                         dict(node.attrs))
        fused = Node("fused", [x, y, g, w], {"ops": "standardize_grad+weight_grad[native]", "group": group,
                                             "kernel": kernel}, outs)
        first = node if position[id(node)] == at else total
        absorbed[id(first)] = fused
        skip.update({id(m), id(p), id(node), id(total)} - {id(first)})
    for node in graph.nodes:
        if id(node) in absorbed:
            new_nodes.append(absorbed[id(node)])
            continue
        if id(node) in skip:
            continue
        if _lowerable_matmul(node) or _lowerable_linear(node):
            a, b, *bias = node.inputs
            out = node.outputs[0]
            readers = users.get(out.id, [])
            perm = readers[0] if (len(readers) == 1 and readers[0].op == "permute" and out.id not in returned
                                  and len(a.shape) == 4 and len(b.shape) == 4
                                  and tuple(readers[0].attrs.get("perm", ())) == (0, 2, 1, 3)) else None
            weight = _constant(b) if len(b.shape) == 2 else None
            gemm = GemmKernel(tuple(a.shape), tuple(b.shape), out.dtype, heads_last=perm is not None, weight=weight)
            if gemm.native:
                final = perm.outputs[0] if perm is not None else out
                inputs = [a, *bias] if weight is not None else [a, b, *bias]
                group = RowGroup(node.op, [decl(v) for v in inputs], [decl(final)], {})
                label = (node.op + "[native" + (", packed weight]" if weight is not None else "]")
                         + ("+permute(0, 2, 1, 3)" if perm else ""))
                fused = Node("fused", inputs, {"ops": label, "group": group, "kernel": gemm}, [final])
                if perm is not None:
                    absorbed[id(perm)] = fused      # runs where the permute was (its inputs are ready)
                else:
                    new_nodes.append(fused)
                continue
        if not _lowerable(node):
            new_nodes.append(node)
            continue
        out = node.outputs[0]
        kernel = RowKernel(node.op, tuple(out.shape), out.dtype, dict(node.attrs))
        if not kernel.native:
            new_nodes.append(node)
            continue
        group = RowGroup(node.op, [decl(v) for v in node.inputs], [decl(out)], dict(node.attrs))
        label = node.op + ("(causal)" if node.attrs.get("causal") else "") + "[native]"
        new_nodes.append(Node("fused", list(node.inputs), {"ops": label, "group": group, "kernel": kernel},
                              list(node.outputs)))
    graph.nodes = new_nodes
    return graph
