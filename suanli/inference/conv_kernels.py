"""Fast CPU convolution kernels (native C, compiled at run time by ``suanli.native``) and the
per-layer policy that picks one.

Kernels (each returns a fresh array, or ``None`` when native kernels are unavailable -- no C
compiler or ``SUANLI_NATIVE=0`` -- so the caller keeps its NumPy path):

* :func:`winograd_conv2d`, :func:`winograd_conv2d_input_grad`, :func:`winograd_conv2d_weight_grad`:
  Winograd F(4x4, 3x3) for 3x3 stride-1 undilated ungrouped convolutions, forward and both
  gradients. The transforms are C (``native/kernels/conv_winograd.c``); the 36 element-wise products
  summed over channels are 36 GEMMs ``(O, C) @ (C, tiles)``, done by a register-blocked C kernel
  (GCC vector extensions: AVX-512 with ``-march=native``, where NumPy's OpenBLAS is pinned to AVX2
  here) in the forward pass and by OpenBLAS in the weight gradient. Work is chunked over the batch
  so the transformed input and products stay in cache (:data:`V_BYTES`). The input gradient is the forward
  Winograd on the cotangent with the flipped, transposed kernel; the weight gradient is the adjoint
  of the forward algorithm in ``w``: ``dw = G^T [sum_tiles (A g A^T) (B^T d B)] G``.
* :func:`depthwise_conv2d`: direct depthwise convolution (``groups == C == O``), any kernel size,
  stride and dilation (``native/kernels/conv_depthwise.c``).
* :func:`direct_conv2d`, :func:`direct_conv2d_input_grad`, :func:`direct_conv2d_weight_grad`: direct
  ungrouped convolution for the layers below Winograd's reach (few channels, 5x5 kernels, LeNet):
  each sample is zero-padded into a small buffer and the three passes are register-blocked products
  over whole padded rows, so no batch-sized im2col matrix is written or read back
  (``native/kernels/conv_direct.c``). The batch is cut into pieces that the threads take in turn.

:func:`choose_conv_kernel` picks one per layer from its shapes; its docstring holds the measured
reasons. Every C call is split (over channels, the 36 GEMMs, or batch pieces) between
:func:`num_threads` Python threads: ctypes releases the GIL, and the C code itself stays single-threaded (see ``suanli.native``).

>>> import numpy as np
>>> x = np.arange(2 * 3 * 6 * 6, dtype=np.float32).reshape(2, 3, 6, 6) / 100
>>> w = np.ones((4, 3, 3, 3), np.float32)
>>> y = winograd_conv2d(x, w, ((1, 1), (1, 1)))
>>> y is None or bool(np.allclose(y[0, 0, 1, 1], x[0, :, :3, :3].sum(), rtol=1e-5))
True
>>> choose_conv_kernel((8, 64, 56, 56), (64, 64, 3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), 1)
'winograd'
"""
from __future__ import annotations

import ctypes
import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .. import native
from ..errors import DTypeError, op_error

__all__ = ["winograd_conv2d", "winograd_conv2d_input_grad", "winograd_conv2d_weight_grad", "winograd_applies",
           "depthwise_conv2d", "depthwise_conv2d_input_grad", "depthwise_conv2d_weight_grad",
           "depthwise_applies", "direct_conv2d", "direct_conv2d_input_grad", "direct_conv2d_weight_grad",
           "direct_applies", "choose_conv_kernel", "run_pass", "set_num_threads", "num_threads",
           "clear_scratch"]

Padding = tuple[tuple[int, int], tuple[int, int]]
_SUFFIX = native.KERNEL_SUFFIX
_TILE = 4                      # F(4x4, 3x3): 4x4 output tiles from 6x6 input patches
V_BYTES = 1 << 20              # transformed input per batch chunk: 1 MiB keeps V and M in L2/L3 between
#                                the transforms and the GEMMs (64ch 56x56 batch 8: 5.4 ms, 16 MiB: 12 ms)
MIN_CHUNK_TILES = 128          # ... but at least this many tiles per GEMM (the GEMM works in 32-tile blocks)


# ===================================================================================== threads
_threads = native.default_threads()   # OMP_NUM_THREADS / OPENBLAS_NUM_THREADS, else the cores
_pool: ThreadPoolExecutor | None = None
_pool_pid = 0                  # a forked child inherits the pool object but not its threads
_pool_lock = threading.Lock()


def set_num_threads(n: int) -> None:
    """Split the C kernels over ``n`` threads (default: ``OMP_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS``
    when set, else the cores; see ``suanli.native.default_threads``). OpenBLAS's own thread count
    (``OPENBLAS_NUM_THREADS``) governs the weight-gradient GEMMs.

    >>> n = num_threads(); set_num_threads(1); num_threads()
    1
    >>> set_num_threads(n)
    """
    global _threads, _pool
    if int(n) < 1:
        raise op_error("conv_kernels.set_num_threads", "needs at least one thread", actual=f"n={n}",
                       cls=ValueError)  # type: ignore[arg-type]
    with _pool_lock:
        _threads = int(n)
        if _pool is not None:
            _pool.shutdown()
            _pool = None


def num_threads() -> int:
    """Threads the C kernels are split over."""
    return _threads


def _get_pool() -> ThreadPoolExecutor:
    global _pool, _pool_pid
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid():
            _pool = ThreadPoolExecutor(_threads, thread_name_prefix="suanli-conv")
            _pool_pid = os.getpid()
        return _pool


def _parallel(fn, total: int, *args, split: bool = True) -> None:
    """``fn(*args, lo, hi)`` over ``[0, total)``, split in :func:`num_threads` contiguous ranges
    unless ``split`` is false. Worker threads block on a queue between calls (no spinning that would
    steal OpenBLAS's cores)."""
    parts = min(_threads, total) if split else 1
    if parts <= 1:
        fn(*args, ctypes.c_long(0), ctypes.c_long(total))
        return
    pool = _get_pool()
    bounds = [total * i // parts for i in range(parts + 1)]
    futures = [pool.submit(fn, *args, ctypes.c_long(lo), ctypes.c_long(hi))
               for lo, hi in zip(bounds[1:-1], bounds[2:])]
    fn(*args, ctypes.c_long(bounds[0]), ctypes.c_long(bounds[1]))   # this thread takes the first part
    for f in futures:
        f.result()


def _over_chunks(work, chunks: list[tuple[int, int]]) -> list:
    """``work(share, split)`` on shares of the batch chunks; returns each call's result. With at
    least as many chunks as threads, each thread takes whole chunks (``split=False``: one
    synchronisation per layer; splitting every C call of every chunk cost ~3 thread hand-offs per
    chunk, ~1 ms of a 7 ms layer); otherwise one call gets all chunks and splits its C calls."""
    if _threads <= 1 or len(chunks) < _threads:
        return [work(chunks, True)]
    shares = [chunks[i::_threads] for i in range(_threads)]
    futures = [_get_pool().submit(work, share, False) for share in shares[1:]]
    return [work(shares[0], False)] + [f.result() for f in futures]


def _check_cotangent(op: str, g: np.ndarray, geo: Any, what: str) -> None:
    """A gradient kernel's cotangent must have the forward output's shape (N, O, Ho, Wo)."""
    if g.shape != (geo.N, geo.O, geo.Ho, geo.Wo):
        raise op_error(op, what, expect=f"g of shape {(geo.N, geo.O, geo.Ho, geo.Wo)}", actual=f"g {tuple(g.shape)}")


# ================================================================================ native access
def _symbol(lib_name: str, name: str, dtype: np.dtype):
    """The C function ``name_<f32|f64>`` of ``kernels/<lib_name>.c``, or None (no compiler, native off,
    or a dtype without a kernel)."""
    suffix = _SUFFIX.get(np.dtype(dtype))
    lib = native.load(lib_name) if suffix else None
    if lib is None:
        return None
    return getattr(lib, f"{name}_{suffix}")


def _ptr(a: np.ndarray) -> ctypes.c_void_p:
    return ctypes.c_void_p(a.ctypes.data)


def _longs(*values: int) -> list[ctypes.c_long]:
    return [ctypes.c_long(int(v)) for v in values]


class _Scratch(threading.local):
    """Per-thread reusable transform buffers (a fresh multi-MB array is page-faulted in on every call,
    which costs more than the transform; see ``ops/conv.py: _Workspace``)."""

    def __init__(self) -> None:
        self.buffers: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        size = int(np.prod(shape)) * np.dtype(dtype).itemsize
        buf = self.buffers.get(name)
        if buf is None or buf.nbytes < size:
            buf = self.buffers[name] = np.empty(max(size, 64), np.uint8)
        return buf[:size].view(dtype).reshape(shape)


_scratch = _Scratch()


def clear_scratch() -> None:
    """Release this thread's transform buffers (they keep the largest size seen, e.g. 37 MiB for the
    transformed weight of a 512x512 3x3 layer)."""
    _scratch.buffers.clear()


def _check_arrays(op: str, *arrays: np.ndarray) -> np.dtype:
    dtype = arrays[0].dtype
    if any(a.dtype != dtype for a in arrays) or dtype not in _SUFFIX:
        raise op_error(op, "expects float32 or float64 arrays of one dtype",
                       actual=", ".join(f"{a.dtype}{tuple(a.shape)}" for a in arrays),
                       hint="cast with .astype(np.float32)", cls=DTypeError)
    return dtype


# ==================================================================================== Winograd
def winograd_applies(x_shape: Sequence[int], w_shape: Sequence[int], stride: Sequence[int],
                     padding: Padding, dilation: Sequence[int], groups: int) -> bool:
    """True for the convolutions Winograd F(4x4, 3x3) computes here: 3x3 kernel, stride 1, no
    dilation, one group, padding <= 2 on every side (the input gradient pads by ``2 - p``).

    >>> winograd_applies((1, 8, 9, 9), (8, 8, 3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), 1)
    True
    >>> winograd_applies((1, 8, 9, 9), (8, 8, 3, 3), (2, 2), ((1, 1), (1, 1)), (1, 1), 1)
    False
    """
    return (len(x_shape) == 4 and tuple(w_shape[2:]) == (3, 3) and tuple(stride) == (1, 1)
            and tuple(dilation) == (1, 1) and groups == 1 and x_shape[1] == w_shape[1]
            and all(0 <= p <= 2 for pair in padding for p in pair)
            and x_shape[2] + sum(padding[0]) >= 3 and x_shape[3] + sum(padding[1]) >= 3)


def _tiles(Ho: int, Wo: int) -> tuple[int, int]:
    return -(-Ho // _TILE), -(-Wo // _TILE)


def _planes(rows: int, T: int, dtype: np.dtype, name: str | None = None) -> tuple[np.ndarray, int]:
    """A ``(36, rows, T)`` array (scratch if ``name`` is given, else fresh) whose 36 planes lie ``es`` elements apart, with ``es`` an odd
    number of cache lines: the transforms write all 36 planes at once, and planes a multiple of
    4 KiB apart would all land in one cache set (measured 5x slower)."""
    itemsize = np.dtype(dtype).itemsize
    lines = -(-rows * T * itemsize // 64) | 1
    es = lines * 64 // itemsize
    flat = _scratch.get(name, (36 * es,), dtype) if name else np.empty(36 * es, dtype)
    return as_strided(flat, (36, rows, T), (es * itemsize, T * itemsize, itemsize)), es


def _batch_chunks(N: int, per_sample_bytes: int, tiles_per_sample: int) -> list[tuple[int, int]]:
    """Batch ranges whose transformed input fits in :data:`V_BYTES` (so V and M stay in cache between
    the transforms and the GEMMs) but hold at least :data:`MIN_CHUNK_TILES` tiles (GEMM width)."""
    step = max(1, V_BYTES // max(per_sample_bytes, 1), -(-MIN_CHUNK_TILES // max(tiles_per_sample, 1)))
    return [(n, min(n + step, N)) for n in range(0, N, step)]


def _weight_transform(w: np.ndarray) -> np.ndarray | None:
    fn = _symbol("conv_winograd", "wino_weight", w.dtype)
    if fn is None:
        return None
    O, C = w.shape[:2]
    w = np.ascontiguousarray(w)
    U, es = _planes(O, C, w.dtype, "U")
    fn(_ptr(w), _ptr(U), *_longs(es, O, C))
    return U


def _winograd_forward(x: np.ndarray, U: np.ndarray, pads: Padding) -> np.ndarray | None:
    """``y = conv(x, w)`` from the transformed weight ``U = G w G^T`` (36, O, C)."""
    fin = _symbol("conv_winograd", "wino_input", x.dtype)
    fout = _symbol("conv_winograd", "wino_output", x.dtype)
    fgemm = _symbol("conv_winograd", "wino_gemm", x.dtype)
    if fin is None or fout is None or fgemm is None:
        return None
    es_u = U.strides[0] // U.itemsize
    (pt, pb), (pl, pr) = pads
    N, C, H, W = x.shape
    O = U.shape[1]
    Ho, Wo = H + pt + pb - 2, W + pl + pr - 2
    th, tw = _tiles(Ho, Wo)
    y = np.empty((N, O, Ho, Wo), x.dtype)
    if y.size == 0:
        return y
    x = np.ascontiguousarray(x)

    def chunks(share: list[tuple[int, int]], split: bool) -> None:     # scratch buffers are per thread
        for n0, n1 in share:
            nb, T = n1 - n0, (n1 - n0) * th * tw
            V, es_v = _planes(C, T, x.dtype, "V")
            _parallel(fin, C, _ptr(x[n0:n1]), _ptr(V), *_longs(es_v, T, 1, nb, C, H, W, pt, pl, th, tw),
                      split=split)
            M, es_m = _planes(O, T, x.dtype, "M")
            _parallel(fgemm, 36, _ptr(U), *_longs(es_u), _ptr(V), *_longs(es_v), _ptr(M),
                      *_longs(es_m, O, C, T), split=split)              # 36 GEMMs (O, C) @ (C, T)
            _parallel(fout, O, _ptr(M), _ptr(y[n0:n1]), *_longs(es_m, nb, O, Ho, Wo, th, tw), split=split)

    _over_chunks(chunks, _batch_chunks(N, 36 * max(C, O) * th * tw * x.itemsize, th * tw))
    return y


def winograd_conv2d(x: np.ndarray, w: np.ndarray, padding: Padding) -> np.ndarray | None:
    """3x3 stride-1 convolution ``(N, C, H, W) x (O, C, 3, 3) -> (N, O, Ho, Wo)`` by Winograd
    F(4x4, 3x3); ``None`` when native kernels are unavailable. ``padding`` is ``((top, bottom),
    (left, right))``, each <= 2 (see :func:`winograd_applies`).

    Accuracy: the transforms scale values by up to ~100 and back, so float32 results carry an error
    of a few 1e-6 relative to the output's magnitude (tested against torch in float64).

    >>> x, w = np.ones((1, 1, 4, 4), np.float32), np.ones((1, 1, 3, 3), np.float32)
    >>> y = winograd_conv2d(x, w, ((0, 0), (0, 0)))
    >>> y is None or np.allclose(y, 9.0)
    True
    """
    _check_arrays("winograd_conv2d", x, w)
    if not winograd_applies(x.shape, w.shape, (1, 1), padding, (1, 1), 1):
        raise op_error("winograd_conv2d", "needs a 3x3 stride-1 ungrouped convolution with padding <= 2",
                       actual=f"input {tuple(x.shape)}, weight {tuple(w.shape)}, padding={padding}",
                       hint="ask choose_conv_kernel() which kernel fits this layer")
    U = _weight_transform(w)
    return None if U is None else _winograd_forward(x, U, padding)


def winograd_conv2d_input_grad(g: np.ndarray, w: np.ndarray, input_size: Sequence[int],
                               padding: Padding) -> np.ndarray | None:
    """Gradient of :func:`winograd_conv2d` in its input: the cotangent ``g`` (N, O, Ho, Wo)
    convolved with the flipped, transposed kernel ``(C, O, 3, 3)`` under padding ``2 - p``.

    >>> g, w = np.ones((1, 1, 2, 2), np.float32), np.ones((1, 1, 3, 3), np.float32)
    >>> dx = winograd_conv2d_input_grad(g, w, (4, 4), ((0, 0), (0, 0)))
    >>> dx is None or np.allclose(dx[0, 0], [[1, 2, 2, 1], [2, 4, 4, 2], [2, 4, 4, 2], [1, 2, 2, 1]])
    True
    """
    _check_arrays("winograd_conv2d_input_grad", g, w)
    (pt, pb), (pl, pr) = padding
    H, W = input_size
    if g.ndim != 4 or g.shape[1] != w.shape[0] or g.shape[2:] != (H + pt + pb - 2, W + pl + pr - 2) \
            or not winograd_applies((g.shape[0], w.shape[1], H, W), w.shape, (1, 1), padding, (1, 1), 1):
        raise op_error("winograd_conv2d_input_grad", "the cotangent does not fit the weight and input size",
                       expect="g of shape (N, O, H + pt + pb - 2, W + pl + pr - 2), 3x3 kernel, padding <= 2",
                       actual=f"g {tuple(g.shape)}, weight {tuple(w.shape)}, input size {tuple(input_size)}, "
                              f"padding={padding}")
    flipped = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))   # (C, O, 3, 3)
    U = _weight_transform(flipped)
    return None if U is None else _winograd_forward(g, U, ((2 - pt, 2 - pb), (2 - pl, 2 - pr)))


def winograd_conv2d_weight_grad(x: np.ndarray, g: np.ndarray, padding: Padding) -> np.ndarray | None:
    """Gradient of :func:`winograd_conv2d` in its weight, ``(O, C, 3, 3)``: the adjoint of the
    forward algorithm, ``dw = G^T [sum over tiles of (A g A^T)(B^T d B)] G`` -- 36 GEMMs
    ``(O, T) @ (T, C)``.

    >>> x, g = np.ones((1, 1, 4, 4), np.float32), np.ones((1, 1, 2, 2), np.float32)
    >>> dw = winograd_conv2d_weight_grad(x, g, ((0, 0), (0, 0)))
    >>> dw is None or np.allclose(dw, 4.0)
    True
    """
    _check_arrays("winograd_conv2d_weight_grad", x, g)
    (pt, pb), (pl, pr) = padding
    N, C, H, W = x.shape if x.ndim == 4 else (0, 0, 0, 0)
    Ho, Wo = H + pt + pb - 2, W + pl + pr - 2
    if x.ndim != 4 or g.ndim != 4 or g.shape[0] != N or g.shape[2:] != (Ho, Wo) \
            or not winograd_applies(x.shape, (g.shape[1], C, 3, 3), (1, 1), padding, (1, 1), 1):
        raise op_error("winograd_conv2d_weight_grad", "the cotangent does not fit the input",
                       expect="x (N, C, H, W) and g (N, O, H + pt + pb - 2, W + pl + pr - 2), padding <= 2",
                       actual=f"x {tuple(x.shape)}, g {tuple(g.shape)}, padding={padding}")
    fin = _symbol("conv_winograd", "wino_input", x.dtype)
    fgt = _symbol("conv_winograd", "wino_output_t", x.dtype)
    fwt = _symbol("conv_winograd", "wino_weight_t", x.dtype)
    fgemm = _symbol("conv_winograd", "wino_gemm", x.dtype)
    if fin is None or fgt is None or fwt is None or fgemm is None:
        return None
    O = g.shape[1]
    th, tw = _tiles(Ho, Wo)
    x, g = np.ascontiguousarray(x), np.ascontiguousarray(g)

    def chunks(share: list[tuple[int, int]], split: bool) -> np.ndarray:
        """The sum over ``share``'s chunks of the 36 products dU (the caller adds the threads' sums)."""
        dU = np.empty((36, O, C), x.dtype)
        for n0, n1 in share:
            nb, T = n1 - n0, (n1 - n0) * th * tw
            Vt, es_v = _planes(T, C, x.dtype, "V")                      # V^T: (36, T, C) planes
            _parallel(fin, C, _ptr(x[n0:n1]), _ptr(Vt), *_longs(es_v, 1, C, nb, C, H, W, pt, pl, th, tw),
                      split=split)
            Mg, es_m = _planes(O, T, x.dtype, "M")
            _parallel(fgt, O, _ptr(g[n0:n1]), _ptr(Mg), *_longs(es_m, nb, O, Ho, Wo, th, tw), split=split)
            # 36 GEMMs (O, T) @ (T, C) by the C kernel (OpenBLAS here would leave its spin-waiting
            # worker competing with the next chunk's transforms for the second core)
            part = dU if n0 == share[0][0] else _scratch.get("part", (36, O, C), x.dtype)
            _parallel(fgemm, 36, _ptr(Mg), *_longs(es_m), _ptr(Vt), *_longs(es_v), _ptr(part),
                      *_longs(O * C, O, T, C), split=split)
            if part is not dU:
                dU += part
        return dU

    sums = _over_chunks(chunks, _batch_chunks(N, 36 * max(C, O) * th * tw * x.itemsize, th * tw))
    dU = sums[0]
    for part in sums[1:]:
        dU += part
    dw = np.empty((O, C, 3, 3), x.dtype)
    fwt(_ptr(dU), _ptr(dw), *_longs(O * C, O, C))
    return dw


# =================================================================================== depthwise
class _DwGeo(ctypes.Structure):
    _fields_ = [(name, ctypes.c_long) for name in
                ("N", "C", "H", "W", "O", "kh", "kw", "sh", "sw", "pt", "pl", "dh", "dw", "Ho", "Wo")]


def depthwise_applies(x_shape: Sequence[int], w_shape: Sequence[int], groups: int) -> bool:
    """True for depthwise convolutions: one group per input channel (``groups == C``), each output
    channel ``o`` reading input channel ``o // (O // C)``.

    >>> depthwise_applies((1, 32, 8, 8), (32, 1, 3, 3), 32), depthwise_applies((1, 32, 8, 8), (32, 1, 3, 3), 1)
    (True, False)
    """
    return (len(x_shape) == 4 and len(w_shape) == 4 and groups == x_shape[1] and groups > 0
            and w_shape[1] == 1 and w_shape[0] % groups == 0)


def _dw_geometry(op: str, x_shape: Sequence[int], w_shape: Sequence[int], stride: Sequence[int],
                 padding: Padding, dilation: Sequence[int]) -> _DwGeo:
    N, C, H, W = x_shape
    O, _, kh, kw = w_shape
    (pt, pb), (pl, pr) = padding
    (sh, sw), (dh, dw) = stride, dilation
    Ho = (H + pt + pb - dh * (kh - 1) - 1) // sh + 1
    Wo = (W + pl + pr - dw * (kw - 1) - 1) // sw + 1
    if not depthwise_applies(x_shape, w_shape, C) or min(sh, sw, dh, dw, kh, kw) < 1 \
            or min(pt, pb, pl, pr) < 0 or Ho < 1 or Wo < 1:
        raise op_error(op, "not a valid depthwise convolution",
                       expect="input (N, C, H, W), weight (C * m, 1, kh, kw), positive stride/dilation, "
                              "padding >= 0, a kernel that fits the padded input",
                       actual=f"input {tuple(x_shape)}, weight {tuple(w_shape)}, stride={tuple(stride)}, "
                              f"padding={padding}, dilation={tuple(dilation)}",
                       hint="ask choose_conv_kernel() which kernel fits this layer")
    return _DwGeo(N, C, H, W, O, kh, kw, sh, sw, pt, pl, dh, dw, Ho, Wo)


def _dw_call(name: str, dtype: np.dtype, parts: int, *arrays: np.ndarray, geo: _DwGeo) -> bool:
    fn = _symbol("conv_depthwise", name, dtype)
    if fn is None:
        return False
    _parallel(fn, parts, *[_ptr(a) for a in arrays], ctypes.byref(geo))
    return True


def depthwise_conv2d(x: np.ndarray, w: np.ndarray, stride: Sequence[int], padding: Padding,
                     dilation: Sequence[int]) -> np.ndarray | None:
    """Depthwise convolution ``(N, C, H, W) x (C * m, 1, kh, kw) -> (N, C * m, Ho, Wo)`` (``groups = C``),
    computed directly; ``None`` when native kernels are unavailable.

    >>> x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    >>> y = depthwise_conv2d(x, np.ones((1, 1, 2, 2), np.float32), (2, 2), ((0, 0), (0, 0)), (1, 1))
    >>> y is None or y[0, 0].tolist() == [[10.0, 18.0], [42.0, 50.0]]
    True
    """
    _check_arrays("depthwise_conv2d", x, w)
    geo = _dw_geometry("depthwise_conv2d", x.shape, w.shape, stride, padding, dilation)
    x, w = np.ascontiguousarray(x), np.ascontiguousarray(w)
    y = np.empty((geo.N, geo.O, geo.Ho, geo.Wo), x.dtype)
    return y if _dw_call("dwconv", x.dtype, geo.N * geo.O, x, w, y, geo=geo) else None


def depthwise_conv2d_input_grad(g: np.ndarray, w: np.ndarray, input_shape: Sequence[int],
                                stride: Sequence[int], padding: Padding,
                                dilation: Sequence[int]) -> np.ndarray | None:
    """Gradient of :func:`depthwise_conv2d` in its input of shape ``input_shape`` (N, C, H, W): each
    cotangent row scattered back tap by tap.

    >>> g, w = np.ones((1, 1, 2, 2), np.float32), np.ones((1, 1, 2, 2), np.float32)
    >>> dx = depthwise_conv2d_input_grad(g, w, (1, 1, 3, 3), (1, 1), ((0, 0), (0, 0)), (1, 1))
    >>> dx is None or dx[0, 0].tolist() == [[1, 2, 1], [2, 4, 2], [1, 2, 1]]
    True
    """
    _check_arrays("depthwise_conv2d_input_grad", g, w)
    geo = _dw_geometry("depthwise_conv2d_input_grad", tuple(input_shape), w.shape, stride, padding, dilation)
    _check_cotangent("depthwise_conv2d_input_grad", g, geo, "the cotangent does not fit the weight and input size")
    g, w = np.ascontiguousarray(g), np.ascontiguousarray(w)
    dx = np.empty((geo.N, geo.C, geo.H, geo.W), g.dtype)
    return dx if _dw_call("dwconv_input_t", g.dtype, geo.N * geo.C, g, w, dx, geo=geo) else None


def depthwise_conv2d_weight_grad(x: np.ndarray, g: np.ndarray, kernel_size: Sequence[int],
                                 stride: Sequence[int], padding: Padding,
                                 dilation: Sequence[int]) -> np.ndarray | None:
    """Gradient of :func:`depthwise_conv2d` in its weight, ``(O, 1, kh, kw)``.

    >>> x, g = np.ones((1, 1, 3, 3), np.float32), np.ones((1, 1, 2, 2), np.float32)
    >>> dw = depthwise_conv2d_weight_grad(x, g, (2, 2), (1, 1), ((0, 0), (0, 0)), (1, 1))
    >>> dw is None or dw.tolist() == [[[[4.0, 4.0], [4.0, 4.0]]]]
    True
    """
    _check_arrays("depthwise_conv2d_weight_grad", x, g)
    w_shape = (g.shape[1] if g.ndim == 4 else 0, 1, *kernel_size)
    geo = _dw_geometry("depthwise_conv2d_weight_grad", x.shape, w_shape, stride, padding, dilation)
    _check_cotangent("depthwise_conv2d_weight_grad", g, geo, "the cotangent does not fit the input")
    x, g = np.ascontiguousarray(x), np.ascontiguousarray(g)
    dw = np.empty(w_shape, x.dtype)
    return dw if _dw_call("dwconv_weight_t", x.dtype, geo.O, x, g, dw, geo=geo) else None


# ====================================================================================== direct
class _DirectGeo(ctypes.Structure):
    _fields_ = [(name, ctypes.c_long) for name in
                ("N", "C", "H", "W", "O", "kh", "kw", "sh", "sw", "pt", "pb", "pl", "pr", "dh", "dw", "Ho", "Wo")]


def direct_applies(x_shape: Sequence[int], w_shape: Sequence[int], groups: int) -> bool:
    """True for the convolutions the direct kernel computes: ungrouped 4-d, any kernel size, stride,
    padding and dilation (strides cost ``stride**2`` times the work: see ``conv_direct.c``).

    >>> direct_applies((64, 6, 14, 14), (16, 6, 5, 5), 1), direct_applies((1, 4, 8, 8), (4, 2, 3, 3), 2)
    (True, False)
    """
    return len(x_shape) == 4 and len(w_shape) == 4 and groups == 1 and x_shape[1] == w_shape[1]


def _direct_geometry(op: str, x_shape: Sequence[int], w_shape: Sequence[int], stride: Sequence[int],
                     padding: Padding, dilation: Sequence[int]) -> _DirectGeo:
    N, C, H, W = (int(v) for v in x_shape)
    O, _, kh, kw = (int(v) for v in w_shape)
    (pt, pb), (pl, pr) = padding
    (sh, sw), (dh, dw) = stride, dilation
    Ho = (H + pt + pb - dh * (kh - 1) - 1) // sh + 1
    Wo = (W + pl + pr - dw * (kw - 1) - 1) // sw + 1
    if not direct_applies(x_shape, w_shape, 1) or min(sh, sw, dh, dw, kh, kw) < 1 \
            or min(pt, pb, pl, pr) < 0 or Ho < 1 or Wo < 1:
        raise op_error(op, "not a valid ungrouped convolution",
                       expect="input (N, C, H, W), weight (O, C, kh, kw), positive stride/dilation, "
                              "padding >= 0, a kernel that fits the padded input",
                       actual=f"input {tuple(x_shape)}, weight {tuple(w_shape)}, stride={tuple(stride)}, "
                              f"padding={padding}, dilation={tuple(dilation)}",
                       hint="ask choose_conv_kernel() which kernel fits this layer")
    return _DirectGeo(N, C, H, W, O, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw, Ho, Wo)


def _direct_pieces(geo: _DirectGeo) -> int:
    """Batch pieces of a direct-kernel call: a few per thread (see :func:`_direct_call`), or one when
    the call is too small to pay for waking a thread (:data:`DIRECT_MIN_SPLIT`)."""
    macs = geo.N * geo.O * geo.C * geo.kh * geo.kw * ((geo.Ho - 1) * geo.sh + 1) * (geo.W + geo.pl + geo.pr)
    if _threads <= 1 or macs < DIRECT_MIN_SPLIT:
        return 1
    return max(1, min(geo.N, DIRECT_PIECES_PER_THREAD * _threads))


def _direct_call(op: str, name: str, geo: _DirectGeo, ins: tuple[np.ndarray, ...], out) -> bool:
    """Run ``dconv_<name>`` over the batch cut in :func:`_direct_pieces` sample ranges, which the
    :func:`num_threads` threads take from a shared counter; ``out(i)`` is the output array of piece
    ``i``. Taking pieces rather than fixed halves: when the other core is busy (other processes), a
    worker thread that is late to start (the second core busy with another process, or with
    OpenBLAS's spin-waiting worker after a GEMM) costs a piece, not half the call (measured on the
    shared VM: fixed halves spent up to 0.6 ms per call waiting for the worker). The pieces and their results do
    not depend on which thread ran them, so results are deterministic. False when native kernels are
    unavailable."""
    fn = _symbol("conv_direct", name, ins[0].dtype)
    if fn is None:
        return False
    pieces = _direct_pieces(geo)
    bounds = [geo.N * i // pieces for i in range(pieces + 1)]
    args = [_ptr(a) for a in ins]
    ticket = itertools.count()          # next() on a count is atomic under the GIL

    def work() -> list[int]:
        codes = []
        for i in iter(ticket.__next__, None):
            if i >= pieces:
                return codes
            codes.append(fn(*args, _ptr(out(i)), ctypes.byref(geo), *_longs(bounds[i], bounds[i + 1])))
        return codes

    futures = [_get_pool().submit(work) for _ in range(min(_threads, pieces) - 1)]
    codes = work() + [c for f in futures for c in f.result()]
    if any(codes):
        raise op_error(op, "could not allocate its scratch buffers", cls=MemoryError)  # type: ignore[arg-type]
    return True


def direct_conv2d(x: np.ndarray, w: np.ndarray, stride: Sequence[int], padding: Padding,
                  dilation: Sequence[int]) -> np.ndarray | None:
    """Ungrouped convolution ``(N, C, H, W) x (O, C, kh, kw) -> (N, O, Ho, Wo)`` computed directly from
    each zero-padded sample (no im2col matrix); ``None`` when native kernels are unavailable.

    >>> x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    >>> y = direct_conv2d(x, np.ones((1, 1, 2, 2), np.float32), (2, 2), ((0, 0), (0, 0)), (1, 1))
    >>> y is None or y[0, 0].tolist() == [[10.0, 18.0], [42.0, 50.0]]
    True
    """
    _check_arrays("direct_conv2d", x, w)
    geo = _direct_geometry("direct_conv2d", x.shape, w.shape, stride, padding, dilation)
    x, w = np.ascontiguousarray(x), np.ascontiguousarray(w)
    y = np.empty((geo.N, geo.O, geo.Ho, geo.Wo), x.dtype)
    if y.size == 0 or x.size == 0:
        return y if x.size else np.zeros_like(y)
    return y if _direct_call("direct_conv2d", "dconv_fwd", geo, (x, w), lambda i: y) else None


def direct_conv2d_input_grad(g: np.ndarray, w: np.ndarray, input_shape: Sequence[int], stride: Sequence[int],
                             padding: Padding, dilation: Sequence[int]) -> np.ndarray | None:
    """Gradient of :func:`direct_conv2d` in its input of shape ``input_shape`` (N, C, H, W).

    >>> g, w = np.ones((1, 1, 2, 2), np.float32), np.ones((1, 1, 2, 2), np.float32)
    >>> dx = direct_conv2d_input_grad(g, w, (1, 1, 3, 3), (1, 1), ((0, 0), (0, 0)), (1, 1))
    >>> dx is None or dx[0, 0].tolist() == [[1, 2, 1], [2, 4, 2], [1, 2, 1]]
    True
    """
    _check_arrays("direct_conv2d_input_grad", g, w)
    geo = _direct_geometry("direct_conv2d_input_grad", tuple(input_shape), w.shape, stride, padding, dilation)
    _check_cotangent("direct_conv2d_input_grad", g, geo, "the cotangent does not fit the weight and input size")
    g, w = np.ascontiguousarray(g), np.ascontiguousarray(w)
    dx = np.empty((geo.N, geo.C, geo.H, geo.W), g.dtype)
    if dx.size == 0 or g.size == 0:
        return np.zeros_like(dx)
    return dx if _direct_call("direct_conv2d_input_grad", "dconv_dx", geo, (g, w), lambda i: dx) else None


def direct_conv2d_weight_grad(x: np.ndarray, g: np.ndarray, kernel_size: Sequence[int], stride: Sequence[int],
                              padding: Padding, dilation: Sequence[int]) -> np.ndarray | None:
    """Gradient of :func:`direct_conv2d` in its weight, ``(O, C, kh, kw)`` (each thread sums its share
    of the batch; the shares are added here).

    >>> x, g = np.ones((1, 1, 3, 3), np.float32), np.ones((1, 1, 2, 2), np.float32)
    >>> dw = direct_conv2d_weight_grad(x, g, (2, 2), (1, 1), ((0, 0), (0, 0)), (1, 1))
    >>> dw is None or dw.tolist() == [[[[4.0, 4.0], [4.0, 4.0]]]]
    True
    """
    _check_arrays("direct_conv2d_weight_grad", x, g)
    O = g.shape[1] if g.ndim == 4 else 0
    w_shape = (O, x.shape[1] if x.ndim == 4 else 0, *kernel_size)
    geo = _direct_geometry("direct_conv2d_weight_grad", x.shape, w_shape, stride, padding, dilation)
    _check_cotangent("direct_conv2d_weight_grad", g, geo, "the cotangent does not fit the input")
    if x.size == 0 or g.size == 0:
        return np.zeros(w_shape, x.dtype)
    x, g = np.ascontiguousarray(x), np.ascontiguousarray(g)
    parts = np.empty((_direct_pieces(geo), *w_shape), x.dtype)
    if not _direct_call("direct_conv2d_weight_grad", "dconv_dw", geo, (x, g), lambda i: parts[i]):
        return None
    return parts[0].copy() if len(parts) == 1 else np.add.reduce(parts, axis=0)


def run_pass(kernel: str, which: str, a: np.ndarray, b: np.ndarray, *, x_shape: Sequence[int],
             kernel_size: Sequence[int], stride: Sequence[int], padding: Padding,
             dilation: Sequence[int]) -> np.ndarray | None:
    """One pass of a convolution by ``kernel`` (``'winograd'`` or ``'depthwise'``, as chosen by
    :func:`choose_conv_kernel`): ``which='forward'`` takes ``(x, w)``, ``'input_grad'`` takes
    ``(g, w)``, ``'weight_grad'`` takes ``(x, g)``. ``None`` when native kernels are unavailable.

    >>> x, w = np.ones((1, 2, 5, 5), np.float32), np.ones((2, 1, 3, 3), np.float32)
    >>> y = run_pass("depthwise", "forward", x, w, x_shape=x.shape, kernel_size=(3, 3), stride=(1, 1),
    ...              padding=((1, 1), (1, 1)), dilation=(1, 1))
    >>> y is None or (y.shape, float(y[0, 0, 2, 2]), float(y[0, 0, 0, 0]))
    ((1, 2, 5, 5), 9.0, 4.0)
    """
    if kernel == "winograd" and which == "forward":
        return winograd_conv2d(a, b, padding)
    if kernel == "winograd" and which == "input_grad":
        return winograd_conv2d_input_grad(a, b, tuple(x_shape[2:]), padding)
    if kernel == "winograd" and which == "weight_grad":
        return winograd_conv2d_weight_grad(a, b, padding)
    if kernel == "depthwise" and which == "forward":
        return depthwise_conv2d(a, b, stride, padding, dilation)
    if kernel == "depthwise" and which == "input_grad":
        return depthwise_conv2d_input_grad(a, b, x_shape, stride, padding, dilation)
    if kernel == "depthwise" and which == "weight_grad":
        return depthwise_conv2d_weight_grad(a, b, kernel_size, stride, padding, dilation)
    if kernel == "direct" and which == "forward":
        return direct_conv2d(a, b, stride, padding, dilation)
    if kernel == "direct" and which == "input_grad":
        return direct_conv2d_input_grad(a, b, x_shape, stride, padding, dilation)
    if kernel == "direct" and which == "weight_grad":
        return direct_conv2d_weight_grad(a, b, kernel_size, stride, padding, dilation)
    raise op_error("conv_kernels.run_pass", f"no kernel {kernel!r} for pass {which!r}",
                   expect="kernel in ('winograd', 'depthwise', 'direct'), "
                          "which in ('forward', 'input_grad', 'weight_grad')",
                   cls=ValueError)  # type: ignore[arg-type]


# ====================================================================================== policy
WINOGRAD_MIN_CHANNELS = 64     # below this the 36 GEMMs are too small to beat one im2col GEMM on 2 threads
WINOGRAD_MIN_TILES = 32        # tiles N * ceil(Ho/4) * ceil(Wo/4); with fewer, transforming the weight
#                                (36 / 9 = 4x the weight) costs more than the GEMMs save
DEPTHWISE_MIN_PLANE = 256      # output pixels per plane; smaller planes: per-row overhead > GEMM
DIRECT_PIECES_PER_THREAD = 2   # batch pieces per thread for the direct kernel's dynamic split (LeNet C3
#                                fwd+bwd, quiet machine: 1 or 2 pieces 0.82 ms, 4 pieces 0.86 ms)
DIRECT_MIN_SPLIT = 1 << 22     # multiply-adds (over whole padded rows) below which a direct call stays on
#                                one thread: ~60 us of work, about what waking the second thread costs
DIRECT_MAX_WEIGHT = 8192       # weight elements for the direct weight gradient: its per-block partial sums
#                                (64 bytes per element) stay in L2 up to here; (1, 512, 7, 7) 3x3: 0.2x


def choose_conv_kernel(x_shape: Sequence[int], w_shape: Sequence[int], stride: Sequence[int],
                       padding: Padding, dilation: Sequence[int], groups: int, *,
                       which: str = "forward") -> str:
    """The kernel for one conv2d layer and pass (``which``: ``'forward'``, ``'input_grad'`` or
    ``'weight_grad'``): ``'winograd'``, ``'depthwise'``, ``'direct'`` or ``'im2col'`` (the GEMM path of
    ``suanli.ops.conv``, which also covers unpadded 1x1 and whole-input kernels as plain GEMMs before
    asking this policy).

    Measured on the 2-core AVX-512 VM (OpenBLAS pinned to Haswell kernels), float32, speed-up =
    im2col time / kernel time, min of 7 repeats, 1 thread (``OPENBLAS_NUM_THREADS=1``) and 2 threads.
    The machine was shared with other jobs during the measurements, so 2-thread figures spread
    (ranges are over runs); ``bench/conv_kernels.py`` has the side-by-side medians with torch and ORT.

    =========================  =====  =================  =================  =================  ==============
    layer (N, C, H, W), 3x3    tiles  forward 1t / 2t    input grad         weight grad        choice
    =========================  =====  =================  =================  =================  ==============
    (8, 64, 56, 56) s1         1568   3.2x / 2.5-5.5x    3.2x / 2.8-5.9x    2.7x / 2.6-3.2x    winograd
    (8, 128, 28, 28) s1        392    3.4x / 2.4-2.6x    3.4x / 2.8x        2.6x / 2.5-2.6x    winograd
    (8, 256, 14, 14) s1        128    2.2x / 2.1x        2.2x / 1.5-1.9x    1.8x / 1.6-2.3x    winograd
    (8, 512, 7, 7) s1          32     1.6-2.2x/1.4-2.2x  1.8x / 1.3-1.9x    1.6x / 1.2-2.0x    winograd
    (1, 64, 56, 56) s1         196    3.1x / 1.4-2.0x    3.0x / 1.5-2.2x    2.6x / 1.5-2.4x    winograd
    (1, 128, 28, 28) s1        49     2.7x / 1.3x        2.7x / 1.4x        2.2x / 1.35x       winograd
    (8, 32, 32, 32) s1         512    1.8x / 0.9-1.3x    2.1x / 1.2-1.6x    1.7x / 0.9-1.5x    im2col (channels)
    (1, 32, 32, 32) s1         64     1.5x / 0.9-1.1x    1.7x / 1.3-1.7x    1.5x / 1.05x       im2col (channels)
    (1, 256, 14, 14) s1        16     0.6-1.4x / mixed   0.6-1.1x           0.9-1.25x          direct
    (1, 512, 7, 7) s1          4      0.25x / 0.3x       0.2x               0.1-0.4x           direct
    (8, 16, 32, 32) s1         512    1.2x / 0.7-1.0x    1.6x / 1.3x        1.2x / 0.8-1.1x    direct
    dw (8, 32, 112, 112) s1    --     1.9x / 2.7x        11x                2.3x               depthwise
    dw (8, 96, 112, 112) s2    --     1.6-3x / 2.5-5x    5x                 1.9-2.4x           depthwise
    dw (8, 240, 28, 28) 5x5    --     1.6x / 1.2x        4-8x               1.3-1.7x           depthwise
    dw (1, 512, 14, 14) s1     --     0.4-0.7x           3.6x               0.5x               im2col; dx dw
    =========================  =====  =================  =================  =================  ==============

    The direct kernel against im2col (same measurement, 1 thread; the machine was busy, so these
    spread by ~20%). It wins on every stride-1 layer measured, down to one input channel, because it
    never writes the ``kh*kw``-times larger column matrix; it is also faster than im2col on the
    layers above where Winograd is not chosen. Strided layers stay on im2col (the direct kernel works
    on the stride-1 grid: ``stride**2`` the work), and weight gradients of large weights too (its
    per-block partial sums, 64 bytes per weight element, leave L2 above :data:`DIRECT_MAX_WEIGHT`).

    ==============================  =========  ==========  ===========  ======================
    layer (N, C, H, W) x (O, kh)    forward    input grad  weight grad  choice
    ==============================  =========  ==========  ===========  ======================
    LeNet C1 (64, 1, 32, 32) x 6 5  3.6x       3.1x        4.4x         direct
    LeNet C3 (64, 6, 14, 14) x 16 5 2.9x       2.4x        2.2x         direct
    (8, 3, 32, 32) x 16 3           2.6x       2.7x        3.1x         direct
    (8, 16, 32, 32) x 16 3          2.7x       2.4x        2.8x         direct
    (8, 32, 32, 32) x 32 3          2.5x       2.3x        2.5x         direct
    (1, 32, 32, 32) x 32 3          2.4x       2.3x        1.9x         direct
    (64, 16, 28, 28) x 32 3         2.5x       2.5x        2.6x         direct
    (1, 256, 14, 14) x 256 3        2.1x       1.7x        0.3-0.9x     direct; dw im2col
    (1, 512, 7, 7) x 512 3          2.3x       1.6x        0.15-0.4x    direct; dw im2col
    (8, 64, 56, 56) x 128 3 s2      0.6x       0.6x        1.1x         im2col (stride)
    (8, 3, 64, 64) x 16 7 s2        1.1x       1.0x        1.7x         im2col (stride)
    ==============================  =========  ==========  ===========  ======================

    >>> choose_conv_kernel((8, 64, 56, 56), (64, 64, 3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), 1)
    'winograd'
    >>> choose_conv_kernel((1, 512, 7, 7), (512, 512, 3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), 1,
    ...                    which="weight_grad")
    'im2col'
    >>> choose_conv_kernel((8, 32, 112, 112), (32, 1, 3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), 32)
    'depthwise'
    >>> choose_conv_kernel((64, 6, 14, 14), (16, 6, 5, 5), (1, 1), ((0, 0), (0, 0)), (1, 1), 1)
    'direct'
    """
    if which not in ("forward", "input_grad", "weight_grad"):
        raise op_error("choose_conv_kernel", f"unknown pass {which!r}",
                       expect="'forward', 'input_grad' or 'weight_grad'", cls=ValueError)  # type: ignore[arg-type]
    N, C, H, W = (int(v) for v in x_shape)
    O, kh, kw = int(w_shape[0]), int(w_shape[2]), int(w_shape[3])
    (pt, pb), (pl, pr) = padding
    Ho = (H + pt + pb - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    Wo = (W + pl + pr - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    if groups > 1 and depthwise_applies(x_shape, w_shape, groups):
        if Ho * Wo >= DEPTHWISE_MIN_PLANE or which == "input_grad":
            return "depthwise"
        return "im2col"
    if winograd_applies(x_shape, w_shape, stride, padding, dilation, groups) \
            and min(C, O) >= WINOGRAD_MIN_CHANNELS \
            and N * _tiles(Ho, Wo)[0] * _tiles(Ho, Wo)[1] >= WINOGRAD_MIN_TILES:
        return "winograd"
    if groups == 1 and tuple(stride) == (1, 1) and direct_applies(x_shape, w_shape, groups) \
            and (which != "weight_grad" or O * C * kh * kw <= DIRECT_MAX_WEIGHT):
        return "direct"
    return "im2col"
