"""The compiler's GEMM: ``native/kernels/gemm.c`` on strided, batched operands, split into tiles run
by the compiler's thread pool (:func:`suanli.compiler.kernels.run_tasks`).

Why not NumPy's matmul inside compiled plans: NumPy's OpenBLAS runs its AVX2 (Haswell) kernels on
these machines, and its worker threads busy-wait after every call on the second core, so the
kernels that follow (softmax, layer norm, fused elementwise loops) found no free core. The packed,
register-blocked kernel runs AVX-512 and shares one sleeping thread pool with everything else.

:func:`tiling` picks the tile shape per (shape, thread count) with a small cost model (compute on
padded tiles + packing + a per-task cost, summed per thread over the pool's contiguous task chunks),
so a weight gradient (128 x 2048 @ 2048 x 512) is split along its columns and a (2048 x 128) product
along its rows.

>>> import numpy as np
>>> k = GemmKernel((2, 5, 3), (3, 4), np.float64)
>>> a, b = np.arange(30.).reshape(2, 5, 3), np.ones((3, 4))
>>> bool(np.array_equal(k(a, b)[0], a @ b))
True
"""
from __future__ import annotations

import ctypes
import functools
import math
from typing import Any

import numpy as np

from .. import native
from ..native import address as _address
from ..graph.interpret import run_primitive
from . import kernels
from .kernels import bind, num_threads, run_tasks

__all__ = ["GemmKernel", "tiling"]

_SUFFIX = native.KERNEL_SUFFIX


L2_BUDGET = 1 << 19        # bytes of packed A a task may hold


@functools.lru_cache(maxsize=None)
def tiling(count: int, M: int, N: int, K: int, itemsize: int, threads: int, packed_b: bool = False
           ) -> tuple[int, int]:
    """(rows per tile, columns per tile) for ``count`` products of (M, K) @ (K, N) on ``threads``
    threads: the candidate with the least modelled time of the busiest thread (cycles: padded
    compute at 2 vector FMAs per cycle, packing at ~2 elements per cycle -- none for a prepacked
    ``b`` --, reading a tile's B once from L3 and its packed A once per column block from L2, and
    ~3000 per task), among row tiles whose packed A fits half of a 1 MiB L2."""
    vl = 64 // itemsize
    nb = 2 * vl
    blocks_n = -(-N // nb)
    best, best_cost = (96, nb * blocks_n), math.inf
    for mt in range(6, 6 * min(32, -(-M // 6)) + 1, 6):
        if mt > 6 and mt * K * itemsize > L2_BUDGET:
            break
        tiles_m = -(-M // mt)
        rows = np.full(tiles_m, mt)
        rows[-1] = M - mt * (tiles_m - 1)
        rows_pad = -(-rows // 6) * 6
        for cb in sorted({1, 2, 4, 8, blocks_n, -(-blocks_n // 2), -(-blocks_n // threads)}):
            if cb > blocks_n:
                continue
            nct = cb * nb
            tiles_n = -(-N // nct)
            cols = np.full(tiles_n, nct)
            cols[-1] = N - nct * (tiles_n - 1)
            cols_pad = -(-cols // nb) * nb
            r, c = rows_pad[:, None], cols_pad[None, :]
            tile = (r * c * K / (2 * vl)                           # FMAs
                    + r * K / 2 + (0 if packed_b else c * K / 2)   # packing
                    + c * K / 8 + r * K * (c // nb) / 16           # B from L3 once, A from L2 per block
                    + 3000).ravel()
            tasks = np.tile(tile, count)
            t = min(threads, tasks.size)
            bounds = [tasks.size * i // t for i in range(t + 1)]
            cost = max(tasks[lo:hi].sum() for lo, hi in zip(bounds[:-1], bounds[1:]))
            if cost < best_cost:
                best, best_cost = (mt, nct), cost
    return best


@functools.lru_cache(maxsize=None)
def _gemm_fn(dtype: np.dtype) -> tuple[Any, int] | None:
    lib = native.load("gemm") if dtype in _SUFFIX else None
    return None if lib is None else bind(lib, f"gemm_{_SUFFIX[dtype]}")


def _batch_strides(x: np.ndarray, lead: int) -> tuple[int, int]:
    """Element strides of the (outer, inner) batch axes among the first ``lead`` axes (0 if absent)."""
    s = [st // x.itemsize for st in x.strides[:lead]]
    return (0, 0) if lead == 0 else (0, s[0]) if lead == 1 else (s[0], s[1])


class GemmKernel:
    """``kernel(a, b) -> [a @ b]``, float32/float64, for ``a`` (..., M, K) by a 2-D ``b`` (K, N), or
    with equal batch dims (one or two) on both; ``heads_last`` writes a (B, H, M, N) product as
    (B, M, H, N) (attention's output, ready for its ``permute(0, 2, 1, 3)`` + ``reshape``).
    Operands may be any strided views (transposes are absorbed by the packing).

    ``weight``: a constant 2-D ``b`` (an inference graph's weight), packed once here; the kernel is
    then called without it, ``kernel(a[, bias])``. Packing ``b`` on every call cost as much as a
    third of the GEMM on a 128-row activation (each thread packs the whole weight)."""

    def __init__(self, a_shape: tuple, b_shape: tuple, dtype: Any, heads_last: bool = False,
                 weight: np.ndarray | None = None) -> None:
        self.dtype = np.dtype(dtype)
        self.a_shape, self.b_shape = tuple(a_shape), tuple(b_shape)
        self.shared_b = len(b_shape) == 2
        if not self.shared_b and (len(a_shape) != len(b_shape) or a_shape[:-2] != b_shape[:-2]
                                  or len(a_shape) not in (3, 4)):
            raise ValueError(f"GemmKernel: unsupported operand shapes {a_shape} @ {b_shape}")
        self.M, self.K, self.N = a_shape[-2], a_shape[-1], b_shape[-1]
        self.batch = tuple(a_shape[:-2])
        self.heads_last = heads_last and len(self.batch) == 2 and not self.shared_b
        self.out_shape = (self.batch + (self.M, self.N) if not self.heads_last
                          else (self.batch[0], self.M, self.batch[1], self.N))
        self.flops = 2 * math.prod(self.batch) * self.M * self.N * self.K
        self._want = [("a", self.a_shape), ("b", self.b_shape)]          # what each call is checked against
        self._want_bias = self._want + [("bias", (self.N,))]
        found = _gemm_fn(self.dtype)
        self._fn, self._addr = found if found is not None else (None, None)
        self.weight = self._packed = None
        if weight is not None:
            if not self.shared_b or tuple(weight.shape) != self.b_shape:
                raise ValueError(f"GemmKernel: a packed weight must be the 2-D b {self.b_shape}, got {weight.shape}")
            self.weight = weight
            if self._fn is not None:
                nb = 2 * (64 // self.dtype.itemsize)
                blocks = -(-self.N // nb)
                padded = np.zeros((self.K, blocks * nb), self.dtype)
                padded[:, :self.N] = weight
                self._packed = np.ascontiguousarray(padded.reshape(self.K, blocks, nb).transpose(1, 0, 2))

    @property
    def native(self) -> bool:
        return self._fn is not None

    def __call__(self, a: np.ndarray, *rest: np.ndarray) -> list[np.ndarray]:
        """``kernel(a, b) -> [a @ b]``, or ``kernel(a, b, bias) -> [a @ b + bias]`` for a 2-D ``b``
        and a bias of shape (N,) (the ``linear`` primitive: the bias is added to each finished tile
        of C); with a packed ``weight``, ``b`` is left out."""
        if self.weight is not None:
            b, bias = self.weight, rest
        else:
            b, bias = rest[0], rest[1:]
        self._check(a, b, bias)
        if self._fn is None or 0 in (self.M, self.N, self.K) or 0 in self.batch:
            if bias:
                return [run_primitive("linear", [a, b, bias[0]], {})]
            out = run_primitive("matmul", [a, b], {})
            return [np.ascontiguousarray(out.transpose(0, 2, 1, 3)) if self.heads_last else out]
        if any(s % a.itemsize for s in a.strides + b.strides):      # unaligned views: no element strides
            a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
        b_vec = np.ascontiguousarray(bias[0]) if bias else None
        out = np.empty(self.out_shape, self.dtype)
        item = a.itemsize
        M, lead = self.M, len(self.batch)
        a_m = a.strides[-2] // item
        if self.shared_b:
            # a 2-D b: all rows of a as one (prod(...) * M, K) matrix (copied when they do not sit at
            # one stride: a per-row batch would pack b once per row)
            a_m = _row_stride(a)
            if a_m is None:
                a = np.ascontiguousarray(a)
                a_m = self.K
            M, nb1, nb2 = math.prod(self.batch) * M, 1, 1
            ab1 = ab2 = bb1 = bb2 = cb1 = cb2 = 0
        else:
            nb1, nb2 = (1, self.batch[0]) if lead == 1 else self.batch
            ab1, ab2 = _batch_strides(a, lead)
            bb1, bb2 = _batch_strides(b, lead)
            if self.heads_last:
                cb1, cb2 = M * self.batch[1] * self.N, self.N
            else:
                cb1, cb2 = _batch_strides(out, lead)
        c_m = self.batch[1] * self.N if self.heads_last else self.N
        count = nb1 * nb2
        flops = 2 * count * M * self.N * self.K
        # below ~2^18 flops one thread does it (a pool hand-off costs ~10 us)
        threads = num_threads() if flops >= 8 * kernels.PARALLEL_MIN_ELEMENTS else 1
        mt, nct = tiling(count, M, self.N, self.K, item, threads, self._packed is not None)
        tiles_m, tiles_n = -(-M // mt), -(-self.N // nct)
        params = np.array([M, self.K, self.N, nb2, tiles_m, tiles_n, mt, nct,
                           ab1, ab2, a_m, a.strides[-1] // item,
                           bb1, bb2, b.strides[-2] // item, b.strides[-1] // item,
                           cb1, cb2, c_m], np.int64)
        argv = (ctypes.c_void_p * 6)(_address(a), _address(b), _address(out), _address(params),
                                     None if b_vec is None else _address(b_vec),
                                     None if self._packed is None else _address(self._packed))
        run_tasks(self._fn, self._addr, argv, count * tiles_m * tiles_n, threads)
        return [out]

    def _check(self, a: np.ndarray, b: np.ndarray, bias: tuple) -> None:
        """The C kernel trusts the shapes it was built for: check them (and dtypes) on every call."""
        kernels.check_arguments("GemmKernel", self._want_bias if bias else self._want, (a, b, *bias), self.dtype)

    def __repr__(self) -> str:
        return f"<GemmKernel {self.a_shape} @ {self.b_shape} {self.dtype}{' heads_last' if self.heads_last else ''}>"


def _row_stride(a: np.ndarray) -> int | None:
    """The element stride at which all rows of ``a`` (..., M, K) sit, or None when no single stride
    reaches them all (axes of size 1 do not count)."""
    axes = [(n, st) for n, st in zip(a.shape[:-1], a.strides[:-1]) if n != 1]
    if not axes:
        return a.shape[-1]
    for (_, outer), (n, inner) in zip(axes[:-1], axes[1:]):
        if outer != inner * n:
            return None
    return axes[-1][1] // a.itemsize
