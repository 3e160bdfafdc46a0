"""Build a fused group into a callable native kernel, with the NumPy reference as its fallback.

``build(group)`` generates C (:mod:`suanli.compiler.codegen`), compiles it once per source + flags
(:func:`suanli.native.compile_source`, OpenMP on, cached on disk) and returns a :class:`FusedKernel`.
Calling it checks the arrays against the group's declared inputs, allocates the outputs and runs the
kernel through ctypes (which releases the GIL). When native code is unavailable -- ``SUANLI_NATIVE=0``,
no C compiler (a note under ``DEBUG=1``), or a failed build (one ``RuntimeWarning``) -- the same call
evaluates the group with each primitive's NumPy ``impl``: the same results, slower.

Threads: a kernel uses :func:`num_threads` threads only when its domain has at least
:data:`PARALLEL_MIN_ELEMENTS` elements; smaller loops run on the calling thread without waking
anyone. The threads are our own small pool (``native/kernels/fused_pool.c``, :func:`run_tasks`), not
OpenMP: the OpenMP runtime is process-wide, and when torch loaded its libgomp first (its spin-wait
policy fixed at load), idle workers spun after every kernel on the cores OpenBLAS needed (a LeNet
step 5 -> 30 ms, the GPT step 88 -> 125 ms). Pool workers sleep between jobs.

Debugging: ``SUANLI_DEBUG_CODEGEN=1`` prints each generated source when it is built.

>>> import numpy as np
>>> from suanli.compiler.group import FusedGroup
>>> from suanli.compiler.kernels import build
>>> g = FusedGroup("scale_relu")
>>> x = g.input((4,), "float32")
>>> g.output(g.call("relu", g.call("mul", x, 2.0)))
>>> build(g)(np.array([-1, 0, 1, 2], np.float32))[0].tolist()
[0.0, 0.0, 2.0, 4.0]
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import hashlib
import os
from typing import Any, Iterator, Sequence

import numpy as np

from .. import native
from ..native import address as _address
from .._config import debug_note
from ..errors import op_error
from ..ops.registry import registry
from .codegen import generate, plan_loops
from .group import FusedGroup

__all__ = ["FusedKernel", "build", "epilogue", "num_threads", "set_num_threads", "run_tasks", "bind", "blas_on_pool",
           "compile_flags", "check_arguments", "PARALLEL_MIN_ELEMENTS"]

PARALLEL_MIN_ELEMENTS = 1 << 15      # below this a parallel region costs more than it saves
_threads: int | None = None


def num_threads() -> int:
    """Threads a large kernel uses: :func:`set_num_threads`, else ``OMP_NUM_THREADS`` /
    ``OPENBLAS_NUM_THREADS`` (suanli never uses more cores than BLAS was allowed), else the core count."""
    if _threads is not None:
        return _threads
    return native.default_threads()


def set_num_threads(n: int | None) -> None:
    """Fix the kernel thread count (``None``: back to the default of :func:`num_threads`)."""
    global _threads
    if n is not None and (not isinstance(n, int) or n < 1):
        raise op_error("codegen.set_num_threads", "needs a positive int or None", actual=repr(n),
                       cls=ValueError)  # type: ignore[arg-type]
    _threads = n


def compile_flags() -> list[str]:
    """Flags of generated kernels: :func:`suanli.native.default_flags` plus ``-fopenmp-simd`` (the
    ``simd`` pragmas, no OpenMP runtime: threads come from :func:`run_tasks`)."""
    return native.default_flags() + ["-fopenmp-simd"]


_TaskFn = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_long, ctypes.c_long)


@functools.lru_cache(maxsize=1)
def _pool() -> Any:
    lib = native.load("fused_pool")
    if lib is None:
        return None
    fn = lib.suanli_parallel
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_long, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


def run_tasks(fn: Any, addr: int, argv: Any, ntasks: int, nt: int) -> None:
    """Run the task function ``fn`` (a ctypes ``void f(void **argv, long t0, long t1)``; ``addr`` its
    address) over ``[0, ntasks)``: on the calling thread when ``nt == 1``, else split between ``nt``
    threads of the pool. ctypes releases the GIL for the call."""
    pool = _pool() if nt > 1 and ntasks > 1 else None
    if pool is None:
        fn(argv, 0, ntasks)
    else:
        pool(addr, argv, ntasks, nt)


def check_arguments(kernel: str, want: Sequence[tuple[str, tuple[int, ...]]], got: Sequence[Any],
                    dtype: np.dtype) -> None:
    """A C kernel built for fixed shapes trusts them: raise a ``ShapeError`` naming the expected and
    actual shapes and dtypes unless each of ``got`` is an array of its ``want`` shape (a tuple) and
    ``dtype``. ~0.5 us when they match (kernels pass a prebuilt ``want``).

    >>> f32 = np.dtype(np.float32)
    >>> check_arguments("RowKernel softmax", [("x", (2, 3))], [np.zeros((2, 3), np.float32)], f32)
    >>> check_arguments("RowKernel softmax", [("x", (2, 3))], [np.zeros((3, 2), np.float32)], f32)
    Traceback (most recent call last):
    ...
    suanli.errors.ShapeError: RowKernel softmax: arguments do not match the shapes and dtype the kernel was built for
      Expect: x (2, 3) float32
      Actual: x (3, 2) float32
      help: build a kernel for these shapes (a compiled plan re-traces on new ones)
    """
    if len(got) == len(want):              # the fast path: every call of a compiled plan comes here
        for a, (_, shape) in zip(got, want):
            if a.__class__ is not np.ndarray or a.shape != shape or a.dtype != dtype:
                break
        else:
            return
    from ..errors import ShapeError
    dt = np.dtype(dtype)
    names = [n for n, _ in want] + ["extra"] * (len(got) - len(want))
    raise op_error(kernel, "arguments do not match the shapes and dtype the kernel was built for",
                   expect=", ".join(f"{n} {tuple(s)} {dt}" for n, s in want),
                   actual=", ".join(f"{n} {getattr(a, 'shape', type(a).__name__)} {getattr(a, 'dtype', '')}"
                                    for n, a in zip(names, got)),
                   hint="build a kernel for these shapes (a compiled plan re-traces on new ones)", cls=ShapeError)


openblas_libs = native.openblas_libs   # shared with the inference session's BLAS thread policy


@functools.lru_cache(maxsize=1)
def _blas_hook() -> tuple[Any, int] | None:
    """(OpenBLAS's set-threads-callback function, our callback's address), or None."""
    pool = native.load("fused_pool") if native.enabled() else None
    if pool is None or os.environ.get("SUANLI_BLAS_POOL", "0") != "1":
        return None
    for lib in openblas_libs():
        for name in ("scipy_openblas_set_threads_callback_function64_", "openblas_set_threads_callback_function64_",
                     "openblas_set_threads_callback_function"):
            setter = getattr(lib, name, None)
            if setter is not None:
                setter.argtypes, setter.restype = [ctypes.c_void_p], None
                return setter, ctypes.cast(pool.suanli_blas_threads, ctypes.c_void_p).value
    return None


@contextlib.contextmanager
def blas_on_pool() -> Iterator[None]:
    """Opt-in (``SUANLI_BLAS_POOL=1``, read once): inside the block OpenBLAS runs its parallel jobs on
    the kernels' pool (a compiled plan's run). Why: OpenBLAS's own workers busy-wait ~0.1 s after
    each GEMM, so the pool's second thread found no free core between GEMMs (with
    ``OPENBLAS_THREAD_TIMEOUT=4`` softmax and the batched matmuls ran ~1.5x faster at 2 threads).
    Off by default: on the 2-core test machine the GPT step was not measurably faster, the wake-up
    of the pool per GEMM costing what the kernels gained. Results are unchanged (OpenBLAS splits the
    work the same way; only the threads differ)."""
    hook = _blas_hook() if num_threads() > 1 else None
    if hook is None:
        yield
        return
    setter, callback = hook
    setter(callback)
    try:
        yield
    finally:
        setter(None)


def bind(lib: Any, symbol: str) -> tuple[Any, int]:
    """``symbol`` of ``lib`` as a task function: (ctypes function, address)."""
    fn = getattr(lib, symbol)
    fn.argtypes = [ctypes.c_void_p, ctypes.c_long, ctypes.c_long]
    fn.restype = None
    return fn, ctypes.cast(fn, ctypes.c_void_p).value


class FusedKernel:
    """A built group: ``kernel(*arrays) -> list of outputs`` (native when possible, else NumPy).

    ``native`` tells which path runs; ``source`` is the generated C.
    """

    def __init__(self, group: FusedGroup, source: str, lib: Any | None, symbol: str = "kernel") -> None:
        self.group = group
        self.source = source
        self._fn = self._addr = self._finish = None
        if lib is not None:
            self._fn, self._addr = bind(lib, symbol)
            if any(n.reduce == "all" for n in group.nodes):
                self._finish = getattr(lib, symbol + "_finish")
                self._finish.argtypes, self._finish.restype = [ctypes.c_void_p], None
        plan = plan_loops(group)
        self._size = plan.outer * plan.L
        self._ntasks = plan.tasks()[0] if group.reduction_axis != "last" else plan.outer
        self._all_reductions = [n for n in group.nodes if n.reduce == "all"]
        self._fallback_noted = False

    @property
    def native(self) -> bool:
        return self._fn is not None

    def __call__(self, *arrays: np.ndarray) -> list[np.ndarray]:
        g = self.group
        g.check_arguments(arrays)
        if self._fn is None:
            if not self._fallback_noted:
                debug_note(1, f"codegen: {g.name} runs the NumPy reference (no native kernel)")
                self._fallback_noted = True
            outs = g.reference(*arrays)
            if g.inplace:                       # keep the contract: output 0 lives in input 0
                np.copyto(arrays[0], outs[0])
                outs[0] = arrays[0]
            return outs
        ins = [a if a.flags.c_contiguous else np.ascontiguousarray(a) for a in arrays]
        if g.inplace and not (arrays[0].flags.c_contiguous and arrays[0].flags.writeable):
            raise op_error(f"codegen[{g.name}]", "an in-place kernel writes into input 0, which must be a "
                           "writeable C-contiguous array", actual=f"flags {arrays[0].flags}",
                           hint="pass np.ascontiguousarray(x) (a fresh GEMM/conv output is)", cls=ValueError)  # type: ignore[arg-type]
        outs = [ins[0] if (g.inplace and i == 0) else np.empty(v.shape, v.dtype) for i, v in enumerate(g.outputs)]
        parts = [np.empty(self._ntasks, n.out.dtype) for n in self._all_reductions]
        args = [_address(a) for a in ins]
        args += [_address(o) for i, o in enumerate(outs) if not (g.inplace and i == 0)]
        args += [_address(p) for p in parts]
        argv = (ctypes.c_void_p * len(args))(*args)
        nt = num_threads() if self._size >= PARALLEL_MIN_ELEMENTS else 1
        run_tasks(self._fn, self._addr, argv, self._ntasks, nt)
        if self._finish is not None:
            self._finish(argv)
        return outs

    def __repr__(self) -> str:
        return f"<FusedKernel {self.group.name} ({'native' if self.native else 'numpy reference'})>"


def build(group: FusedGroup, *, vector_math: bool = True) -> FusedKernel:
    """Generate, compile (cached) and load ``group``'s kernel; falls back to NumPy (see module doc)."""
    group.validate()
    vector_math = vector_math and _has_libmvec()
    source = generate(group, symbol="kernel", vector_math=vector_math)
    if os.environ.get("SUANLI_DEBUG_CODEGEN", "0") not in ("", "0"):
        print(f"[suanli] codegen: source of {group.name}\n{source}")
    lib = native.compile_source(_lib_name(group, source), source, flags=compile_flags(),
                                libs=("mvec",) if vector_math else ())
    return FusedKernel(group, source, lib)


@functools.lru_cache(maxsize=1)
def _has_libmvec() -> bool:
    """glibc's SIMD math library (exp/tanh/... on vectors); without it loops call scalar libm."""
    return ctypes.util.find_library("mvec") is not None


def _lib_name(group: FusedGroup, source: str) -> str:
    safe = "".join(c if c.isalnum() or c == "_" else "_" for c in group.name)[:40] or "fused"
    return f"fused_{safe}_{hashlib.sha256(source.encode()).hexdigest()[:8]}"


def epilogue(op: str, operands: Sequence[np.ndarray], kernel: FusedKernel, *extra: np.ndarray,
             **attrs: Any) -> list[np.ndarray]:
    """Run ``op`` (``matmul`` or ``conv2d``, the registry's BLAS-backed impl), then ``kernel`` on its
    result *in place* (bias add + activation without another pass over memory for a temporary).

    ``kernel.group`` must be ``inplace`` with input 0 of the GEMM/conv output's shape; ``extra`` are
    its other inputs (the bias...).

    >>> import numpy as np
    >>> from suanli.compiler.group import FusedGroup
    >>> g = FusedGroup("bias_relu", inplace=True)
    >>> y, b = g.input((2, 2), "float64"), g.input((2,), "float64")
    >>> g.output(g.call("relu", g.call("add", y, b)))
    >>> epilogue("matmul", [np.eye(2), np.array([[1., -2.], [3., 4.]])], build(g), np.array([0., 1.]))[0].tolist()
    [[1.0, 0.0], [3.0, 5.0]]
    """
    if op not in ("matmul", "conv2d"):
        raise op_error("codegen.epilogue", "epilogues follow matmul or conv2d", actual=op, cls=ValueError)  # type: ignore[arg-type]
    if not kernel.group.inplace:
        raise op_error("codegen.epilogue", "the epilogue group must be built with inplace=True",
                       actual=kernel.group.name, hint="FusedGroup(name, inplace=True)", cls=ValueError)  # type: ignore[arg-type]
    primary = np.ascontiguousarray(registry[op].impl(*operands, **attrs))
    return kernel(primary, *extra)
