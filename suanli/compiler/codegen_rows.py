"""Native kernels for the compiler's hot non-elementwise nodes: softmax (causal too), its gradient,
the layer-norm core (``standardize``) and its gradient, over the last axis / trailing axes; and
attention's small batched matmuls (:class:`BmmKernel`).

These are the biggest non-GEMM costs of a transformer training step: the NumPy implementations
make 4-6 passes over the whole tensor on one core; the C kernels (``native/kernels/softmax_rows.c``,
``layernorm_rows.c``) make one or two passes per row while the row sits in L1, split between
threads by the compiler's pool (:func:`suanli.compiler.kernels.run_tasks`). The pass
:func:`lower_native_ops` replaces each such primitive node of a plan by a ``fused`` node running its
:class:`RowKernel` (or :class:`BmmKernel`). Sums accumulate in double, so results agree with the NumPy reference to a few
ulps (float32 included); without a C compiler the kernel runs the registry's NumPy ``impl``.

>>> import numpy as np
>>> k = RowKernel("softmax", (2, 3), np.float64, {"dim": 1, "causal": True})
>>> k(np.zeros((2, 3)))[0].tolist()
[[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]]
"""
from __future__ import annotations

import ctypes
import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import native
from ..graph import Graph, Node, has_sym
from ..graph.interpret import run_primitive
from .kernels import PARALLEL_MIN_ELEMENTS, _has_libmvec, bind, compile_flags, num_threads, openblas_libs, run_tasks

__all__ = ["RowKernel", "BmmKernel", "RowGroup", "lower_native_ops", "ROW_OPS"]

_KERNELS = Path(native.__file__).parent / "kernels"
_FILES = {"softmax": "softmax_rows", "softmax_grad": "softmax_rows", "standardize": "layernorm_rows",
          "standardize_grad": "layernorm_rows", "bmm": "attn_bmm"}
ROW_OPS = ("softmax", "softmax_grad", "standardize", "standardize_grad")
_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}


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
        self.n_inputs = {"softmax": 1, "softmax_grad": 2, "standardize": 1, "standardize_grad": 3}[op]
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
        if self._fn is None or self.rows == 0:
            return [run_primitive(self.op, arrays, self.attrs)]
        ins = [a if a.flags.c_contiguous else np.ascontiguousarray(a) for a in arrays]
        out = np.empty(self.shape, self.dtype)
        ptrs = [a.ctypes.data for a in ins] + [out.ctypes.data, self._dims.ctypes.data]
        if not self.op.startswith("softmax"):
            ptrs.append(self._eps.ctypes.data)
        argv = (ctypes.c_void_p * len(ptrs))(*ptrs)
        nt = num_threads() if out.size >= PARALLEL_MIN_ELEMENTS else 1
        run_tasks(self._fn, self._addr, argv, self.rows, nt)
        return [out]

    def __repr__(self) -> str:
        return f"<RowKernel {self.op} {self.shape} {self.dtype} ({'native' if self.native else 'numpy'})>"


@functools.lru_cache(maxsize=1)
def _blas_gemm() -> dict | None:
    """Addresses of the ILP64 ``cblas_[sd]gemm`` of the OpenBLAS NumPy loaded (found in
    ``/proc/self/maps``), or None (another BLAS, another OS): matmuls then stay NumPy's."""
    for lib in openblas_libs():
        for prefix in ("scipy_cblas_", "cblas_"):
            try:
                s, d = getattr(lib, prefix + "sgemm64_"), getattr(lib, prefix + "dgemm64_")
            except AttributeError:
                continue
            return {np.dtype(np.float32): ctypes.cast(s, ctypes.c_void_p).value,
                    np.dtype(np.float64): ctypes.cast(d, ctypes.c_void_p).value}
    return None


BMM_SMALL = 1 << 18     # per-matrix M*N*K below which OpenBLAS runs one thread: we split the batch


def _matrix(a: np.ndarray) -> tuple[np.ndarray, int, int]:
    """(array, leading dimension, transposed?) with unit stride along one of the last two axes."""
    item = a.itemsize
    rs, cs = a.strides[-2], a.strides[-1]
    r, c = a.shape[-2:]
    if all(s % item == 0 and s >= 0 for s in a.strides):
        if cs == item and rs // item >= max(1, c):
            return a, rs // item, 0
        if rs == item and cs // item >= max(1, r):
            return a, cs // item, 1
    a = np.ascontiguousarray(a)
    return a, c, 0


class BmmKernel:
    """``kernel(a, b) -> [a @ b]`` for batched matmuls with one or two equal batch dims (no
    broadcasting), float32/float64: one BLAS call per matrix on strided views (no copies for
    transposed operands), the batch split between threads when the matrices are small."""

    def __init__(self, a_shape: tuple, b_shape: tuple, dtype: Any, heads_last: bool = False) -> None:
        self.dtype = np.dtype(dtype)
        self.batch = tuple(a_shape[:-2])
        self.M, self.K = a_shape[-2:]
        self.N = b_shape[-1]
        # heads_last: (B, H, M, N) products written as (B, M, H, N) -- attention's output, already in
        # the layout its ``permute(0, 2, 1, 3)`` + ``reshape`` wants (the reshape becomes free)
        self.heads_last = heads_last and len(self.batch) == 2
        self.out_shape = self.batch + (self.M, self.N) if not self.heads_last else \
            (self.batch[0], self.M, self.batch[1], self.N)
        self.H = self.batch[1] if len(self.batch) == 2 else 1
        self.count = math.prod(self.batch)
        gemm = _blas_gemm()
        self._gemm = None if gemm is None else gemm.get(self.dtype)
        self._fn = self._addr = None
        lib = _library("bmm") if self._gemm is not None and self.dtype in _SUFFIX else None
        if lib is not None:
            self._fn, self._addr = bind(lib, f"attn_bmm_{_SUFFIX[self.dtype]}")

    @property
    def native(self) -> bool:
        return self._fn is not None

    def __call__(self, a: np.ndarray, b: np.ndarray) -> list[np.ndarray]:
        if self._fn is None or self.count == 0 or 0 in (self.M, self.N, self.K):
            out = run_primitive("matmul", [a, b], {})
            return [np.ascontiguousarray(out.transpose(0, 2, 1, 3)) if self.heads_last else out]
        a, lda, ta = _matrix(a)
        b, ldb, tb = _matrix(b)
        out = np.empty(self.out_shape, self.dtype)
        (ab, ah), (bb, bh) = _bstrides(a, self.H), _bstrides(b, self.H)
        if self.heads_last:
            cb, ch, ldc = self.M * self.H * self.N, self.N, self.H * self.N
        else:
            (cb, ch), ldc = _bstrides(out, self.H), self.N
        params = np.array([self.H, self.M, self.N, self.K, ab, ah, lda, ta, bb, bh, ldb, tb, cb, ch, ldc, 1],
                          np.int64)
        argv = (ctypes.c_void_p * 5)(a.ctypes.data, b.ctypes.data, out.ctypes.data, params.ctypes.data, self._gemm)
        small = self.M * self.N * self.K <= BMM_SMALL
        run_tasks(self._fn, self._addr, argv, self.count, num_threads() if small else 1)
        return [out]

    def __repr__(self) -> str:
        return f"<BmmKernel {self.batch} x ({self.M}x{self.K} @ {self.K}x{self.N}) {self.dtype}>"


GEMM_CHUNK_ROWS = 96     # rows of a per task (a multiple of the kernel's 6-row block)


class GemmKernel:
    """``kernel(a, b) -> [a @ b]`` for ``a`` (..., K) and a 2-D ``b`` (K, N), float32/float64: the
    register-blocked AVX-512 GEMM of ``native/kernels/conv_winograd.c`` (``wino_gemm``), rows of ``a``
    split between the kernel threads. Why not OpenBLAS: NumPy's OpenBLAS runs its AVX2 (Haswell)
    kernels on these machines; on the GPT's Linear shapes ((2048, 128..512) @ (128..512, 65..512),
    one thread) it gave 113-115 GFLOP/s against 174-219 for this kernel. Transposed operands are
    copied first (the weight, or a (K, M) view of the activations in a weight gradient)."""

    def __init__(self, a_shape: tuple, b_shape: tuple, dtype: Any) -> None:
        self.dtype = np.dtype(dtype)
        self.lead = tuple(a_shape[:-1])
        self.M, self.K, self.N = math.prod(self.lead), a_shape[-1], b_shape[-1]
        from ..inference import conv_kernels
        self._conv_kernels = conv_kernels
        self._fn = conv_kernels._symbol("conv_winograd", "wino_gemm", self.dtype)

    @property
    def native(self) -> bool:
        return self._fn is not None

    def __call__(self, a: np.ndarray, b: np.ndarray) -> list[np.ndarray]:
        if self._fn is None or 0 in (self.M, self.N, self.K):
            return [run_primitive("matmul", [a, b], {})]
        a2 = np.ascontiguousarray(a).reshape(self.M, self.K)
        b = np.ascontiguousarray(b)
        out = np.empty((self.M, self.N), self.dtype)
        L = ctypes.c_long
        rows, full = GEMM_CHUNK_ROWS, self.M // GEMM_CHUNK_ROWS
        ptr = lambda x, off=0: ctypes.c_void_p(x.ctypes.data + off)   # noqa: E731
        if full:
            self._conv_kernels._parallel(self._fn, full, ptr(a2), L(rows * self.K), ptr(b), L(0), ptr(out),
                                         L(rows * self.N), L(rows), L(self.K), L(self.N))
        rest = self.M - full * rows
        if rest:
            start = full * rows
            self._fn(ptr(a2, start * self.K * a2.itemsize), L(0), ptr(b), L(0),
                     ptr(out, start * self.N * out.itemsize), L(0), L(rest), L(self.K), L(self.N), L(0), L(1))
        return [out.reshape(self.lead + (self.N,))]

    def __repr__(self) -> str:
        return f"<GemmKernel ({self.M}x{self.K} @ {self.K}x{self.N}) {self.dtype}>"


def _lowerable_gemm(node: Node) -> bool:
    """A matmul of ``a`` (..., K) by a 2-D ``b``, float32/float64, concrete shapes, big enough, in a
    process whose native kernels run on one thread."""
    if not _native_matmul(node):
        return False
    a, b = node.inputs
    out = node.outputs[0]
    if len(a.shape) < 2 or len(b.shape) != 2:
        return False
    from ..inference.conv_kernels import num_threads as kernel_threads
    # one thread only: there it is 1.6-1.9x OpenBLAS's; with two, OpenBLAS's own split (220-230 GFLOP/s)
    # matched or beat ours (160-310), and the GPT step got slower (73 -> 87 ms), so OpenBLAS keeps them
    return 0 not in tuple(out.shape) and math.prod(a.shape[:-1]) >= GEMM_CHUNK_ROWS and kernel_threads() == 1


def _bstrides(a: np.ndarray, H: int) -> tuple[int, int]:
    """Element strides of the (outer, inner) batch dims (inner 0 when there is one batch dim)."""
    s = [st // a.itemsize for st in a.strides[:-2]]
    return (s[0], s[1]) if len(s) == 2 else (s[0], 0)


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
        self._eps = np.array([eps], np.float64)
        self._fn = self._addr = None
        lib = _library("standardize") if self.dtype in _SUFFIX else None
        if lib is not None:
            self._fn, self._addr = bind(lib, f"standardize_grad_affine_{_SUFFIX[self.dtype]}")

    @property
    def native(self) -> bool:
        return self._fn is not None

    def __call__(self, x: np.ndarray, y: np.ndarray, g: np.ndarray, w: np.ndarray) -> list[np.ndarray]:
        if self._fn is None or self.rows == 0:
            gw = run_primitive("mul", [g, w], {})
            lead = tuple(range(len(self.shape) - len(self.attrs["axes"])))
            dw = run_primitive("sum", [run_primitive("mul", [g, y], {})], {"axes": lead, "keepdims": True})
            return [run_primitive("standardize_grad", [x, y, gw], self.attrs), dw.reshape(self.dw_shape)]
        ins = [a if a.flags.c_contiguous else np.ascontiguousarray(a) for a in (x, y, g, w)]
        out = np.empty(self.shape, self.dtype)
        part = np.empty((self.tasks, self.n), np.float64)
        ptrs = [a.ctypes.data for a in ins] + [out.ctypes.data, part.ctypes.data, self._dims.ctypes.data,
                                                self._eps.ctypes.data]
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


def _lowerable_matmul(node: Node) -> bool:
    if not _native_matmul(node):
        return False
    a, b = node.inputs
    if len(a.shape) not in (3, 4) or len(b.shape) != len(a.shape):
        return False
    return tuple(a.shape[:-2]) == tuple(b.shape[:-2]) and 0 not in tuple(node.outputs[0].shape)


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
    :class:`RowKernel`, batched matmuls (3-d/4-d, equal batch dims) by a :class:`BmmKernel`, and, at
    one kernel thread, matmuls by a 2-D matrix by a :class:`GemmKernel`
    (top level only; nothing changes when native code or the BLAS entry point is unavailable)."""
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
        if _lowerable_matmul(node):
            a, b = node.inputs
            out = node.outputs[0]
            readers = users.get(out.id, [])
            perm = readers[0] if (len(readers) == 1 and readers[0].op == "permute" and out.id not in returned
                                  and tuple(readers[0].attrs.get("perm", ())) == (0, 2, 1, 3)) else None
            bmm = BmmKernel(tuple(a.shape), tuple(b.shape), out.dtype, heads_last=perm is not None)
            if bmm.native:
                final = perm.outputs[0] if perm is not None else out
                group = RowGroup("matmul", [decl(a), decl(b)], [decl(final)], {})
                fused = Node("fused", [a, b], {"ops": "batched_matmul[native]" + ("+permute(0, 2, 1, 3)" if perm else ""),
                                               "group": group, "kernel": bmm}, [final])
                if perm is not None:
                    absorbed[id(perm)] = fused      # runs where the permute was (its inputs are ready)
                else:
                    new_nodes.append(fused)
                continue
        if _lowerable_gemm(node):
            a, b = node.inputs
            gemm = GemmKernel(tuple(a.shape), tuple(b.shape), node.outputs[0].dtype)
            if gemm.native:
                group = RowGroup("matmul", [decl(a), decl(b)], [decl(node.outputs[0])], {})
                new_nodes.append(Node("fused", [a, b], {"ops": "matmul[native gemm]", "group": group,
                                                        "kernel": gemm}, list(node.outputs)))
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
