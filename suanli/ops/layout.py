"""Channel-blocked layout (NCHW[b]c) for inference convolution chains: reorders and a blocked conv.

A blocked tensor ``(N, ceil(C/b), H, W, b)`` keeps ``b`` consecutive channels of one pixel next to each
other, so a convolution kernel can hold ``b`` output channels in one SIMD register and stream the
input one channel at a time (``native/kernels/conv_nchwc.c``). Three primitives:

* ``to_nchwc(x, block)``        -- ``(N, C, H, W) -> (N, ceil(C/b), H, W, b)``, padded channels are zero
* ``from_nchwc(x, channels)``   -- back to ``(N, channels, H, W)``, the padded channels dropped
* ``conv2d_nchwc(x, w, bias[, residual], stride, padding, dilation, relu)`` -- convolution from blocked
  input to blocked output with the weight blocked once as ``(O/b, C/bi, kh, kw, bi, b)``
  (:func:`block_weight`; the input block ``bi`` is ``b``, or, for an input of fewer channels than a
  block, ``1`` (planar NCHW) or ``C`` (NHWC)), an optional residual added and an optional ReLU, all in
  the kernel's epilogue.

and ``max_pool2d_nchwc`` (``max_pool2d`` on the blocked layout, so a pooling layer inside a region needs
no reorder).

The reorders are linear and each one's VJP is the other (so any order of derivative works);
``conv2d_nchwc`` is an inference primitive (constant, pre-blocked weights made by the compiler pass
``layout_nchwc``) and is not differentiable: train with ``conv2d``. Elementwise ops work unchanged on
blocked tensors when every operand is blocked the same way.

>>> import numpy as np, suanli
>>> x = suanli.arange(2 * 3 * 2 * 2.0).reshape(2, 3, 2, 2)
>>> xb = to_nchwc(x, 2)
>>> xb.shape, xb[0, 1, 0, 0].tolist()            # channel 2, then a zero pad channel
((2, 2, 2, 2, 2), [8.0, 0.0])
>>> bool((from_nchwc(xb, 3) == x).all())
True
>>> w = np.ones((4, 3, 3, 3), np.float32)
>>> y = conv2d_nchwc(xb, suanli.tensor(block_weight(w, 2)), padding=1)
>>> bool(np.allclose(from_nchwc(y, 4).numpy(), suanli.conv2d(x, suanli.tensor(w), padding=1).numpy()))
True
"""
from __future__ import annotations

import ctypes
import functools
import threading
from typing import Any

import numpy as np

from .. import dtypes as _dt
from .. import native
from .._config import debug_note
from ..errors import DTypeError, op_error
from ..tensor import Tensor, _wrap
from .conv import _conv2d_impl, _conv_padding, _ints, _max_pool2d_impl, _pool_args, _positive, pool_geometry
from .registry import Spec, apply, defprim, spec_str

__all__ = ["to_nchwc", "from_nchwc", "conv2d_nchwc", "max_pool2d_nchwc", "block_weight", "block_bias"]

BLOCKS = (8, 16)        # block sizes the native kernel is built for
PAIRS = True            # even output-block counts use the two-block kernel (conv_nchwc_pair; tests compare both)
PAIR_VARIANTS = {"f32_b16"}   # the kernel variants built with the two-block form (see conv_nchwc.c)
REORDER_SPLIT = 1 << 16 # elements from which a reorder or pool is split between threads (on the
#                         spinning C pool: 1x64x56x56 92 -> 56 us; 1x512x7x7 11 -> 13 us, so not there)
PAD_SPLIT = 1 << 17       # elements from which the padding copy is split (1x64x58x58: 25.7 -> 22.8 us)


# =================================================================================== reorders
def _blocks(c: int, block: int) -> int:
    return -(-c // block)


def _reorder(name: str, src: np.ndarray, dst: np.ndarray, C: int, block: int) -> bool:
    """``nchwc_to`` / ``nchwc_from`` of ``native/kernels/conv_nchwc.c`` over (n, block) rows, split
    between the kernels' pool threads when large; False when native kernels are unavailable."""
    suffix = native.KERNEL_SUFFIX.get(src.dtype)
    if not (suffix and native.enabled() and src.size and native.load("conv_nchwc") is not None):
        return False
    from ..compiler.kernels import num_threads, run_tasks
    N, HW, Cb = dst.shape[0], src.shape[2] * src.shape[3], _blocks(C, block)
    fn, addr = _task(f"{name}_task_{suffix}")
    dims = np.array([C, HW, block, Cb], np.int64)
    argv = (ctypes.c_void_p * 3)(native.address(src), native.address(dst), native.address(dims))
    run_tasks(fn, addr, argv, N * Cb, num_threads() if src.size >= REORDER_SPLIT else 1)
    return True


def _to_nchwc_impl(x: np.ndarray, *, block: int) -> np.ndarray:
    N, C, H, W = x.shape
    if block == 1:              # blocks of one channel are NCHW itself: a view, no copy
        return np.ascontiguousarray(x).reshape(N, C, H, W, 1)
    out = np.empty((N, _blocks(C, block), H, W, block), x.dtype)
    if not _reorder("nchwc_to", np.ascontiguousarray(x), out, C, block):
        full = C // block
        # (N, C, H, W) -> (N, C/b, b, H, W) -> (N, C/b, H, W, b): one strided copy
        out[:, :full] = x[:, :full * block].reshape(N, full, block, H, W).transpose(0, 1, 3, 4, 2)
        if full < out.shape[1]:                       # the last, partial block: zero pad channels
            rest = C - full * block
            out[:, full, ..., rest:] = 0
            out[:, full, ..., :rest] = x[:, full * block:].transpose(0, 2, 3, 1)
    return out


def _from_nchwc_impl(x: np.ndarray, *, channels: int) -> np.ndarray:
    N, Cb, H, W, b = x.shape
    out = np.empty((N, channels, H, W), x.dtype)
    if not _reorder("nchwc_from", np.ascontiguousarray(x), out, channels, b):
        full = channels // b
        out[:, :full * b] = x[:, :full].transpose(0, 1, 4, 2, 3).reshape(N, full * b, H, W)
        if full * b < channels:
            out[:, full * b:] = x[:, full, ..., :channels - full * b].transpose(0, 3, 1, 2)
    return out


def _infer_to_nchwc(x: Spec, *, block: int) -> Spec:
    if len(x.shape) != 4:
        raise op_error("to_nchwc", "expects a 4-d (N, C, H, W) tensor", actual=f"input {spec_str(x)}",
                       hint="blocked layouts are for conv2d activations")
    if not isinstance(block, int) or block < 1:
        raise op_error("to_nchwc", "block must be a positive int", actual=f"block={block!r}", cls=ValueError)  # type: ignore[arg-type]
    N, C, H, W = x.shape
    return Spec((N, _blocks(C, block), H, W, block), x.dtype)


def _infer_from_nchwc(x: Spec, *, channels: int) -> Spec:
    if len(x.shape) != 5:
        raise op_error("from_nchwc", "expects a 5-d blocked (N, C/b, H, W, b) tensor", actual=f"input {spec_str(x)}",
                       hint="make one with to_nchwc(x, block)")
    N, Cb, H, W, b = x.shape
    if not isinstance(channels, int) or not (Cb - 1) * b < channels <= Cb * b:
        raise op_error("from_nchwc", "channels does not fit the number of blocks",
                       expect=f"{(Cb - 1) * b} < channels <= {Cb * b} for {Cb} blocks of {b}",
                       actual=f"channels={channels!r}, input {spec_str(x)}", cls=ValueError)  # type: ignore[arg-type]
    return Spec((N, channels, H, W), x.dtype)


def _to_vjp(ctx, g):
    return (apply(FROM_NCHWC, g, channels=int(ctx.inputs[0].shape[1])),)


def _to_jvp(ctx, t):
    return apply(TO_NCHWC, t[0], **ctx.attrs)


def _from_vjp(ctx, g):
    return (apply(TO_NCHWC, g, block=int(ctx.inputs[0].shape[4])),)


def _from_jvp(ctx, t):
    return apply(FROM_NCHWC, t[0], **ctx.attrs)


TO_NCHWC = defprim("to_nchwc", _to_nchwc_impl, _infer_to_nchwc, vjp=_to_vjp, jvp=_to_jvp, save_inputs=False,
                   doc="(N, C, H, W) -> (N, ceil(C/b), H, W, b), padded channels zero")
FROM_NCHWC = defprim("from_nchwc", _from_nchwc_impl, _infer_from_nchwc, vjp=_from_vjp, jvp=_from_jvp,
                     save_inputs=False, doc="(N, C/b, H, W, b) -> (N, channels, H, W)")


# ==================================================================================== blocked conv
def block_weight(w: np.ndarray, block: int, in_block: int | None = None) -> np.ndarray:
    """A conv2d weight ``(O, C, kh, kw)`` as ``(ceil(O/b), ceil(C/bi), kh, kw, bi, b)``, zero where the
    channel counts are not multiples of the blocks (done once, at compile time). The input block ``bi``
    is ``block`` unless given: ``in_block=1`` reads planar NCHW (``to_nchwc(x, 1)`` is a view), which
    is how the layout pass runs a first layer with 3 channels; ``in_block=C`` reads NHWC (one block of
    all C channels).

    >>> block_weight(np.ones((3, 2, 1, 1)), 4).shape, block_weight(np.ones((16, 3, 7, 7)), 16, 3).shape
    ((1, 1, 1, 1, 4, 4), (1, 1, 7, 7, 3, 16))
    """
    O, C, kh, kw = w.shape
    bi = block if in_block is None else in_block
    Ob, Cb = _blocks(O, block), _blocks(C, bi)
    wp = np.zeros((Ob * block, Cb * bi, kh, kw), w.dtype)
    wp[:O, :C] = w
    # (Ob, bo, Cb, bi, kh, kw) -> (Ob, Cb, kh, kw, bi, bo)
    return np.ascontiguousarray(wp.reshape(Ob, block, Cb, bi, kh, kw).transpose(0, 2, 4, 5, 3, 1))


def block_bias(b: np.ndarray | None, channels: int, block: int, dtype: Any) -> np.ndarray:
    """A per-channel bias (or none) as the ``(ceil(C/b) * b,)`` vector ``conv2d_nchwc`` reads."""
    out = np.zeros(_blocks(channels, block) * block, dtype)
    if b is not None:
        out[:channels] = np.asarray(b).reshape(-1)
    return out


def _out_size(n: int, k: int, s: int, p: int, d: int) -> int:
    return (n + p - d * (k - 1) - 1) // s + 1


def _infer_conv2d_nchwc(x: Spec, w: Spec, b: Spec, *res: Spec, stride, padding, dilation, relu) -> Spec:
    op = "conv2d_nchwc"
    if x.dtype not in _dt.FLOATING or any(s.dtype != x.dtype for s in (w, b, *res)):
        raise op_error(op, "expects floating-point input, weight, bias (and residual) of one dtype",
                       actual=spec_str(x, w, b, *res), hint="cast the weight to the input's dtype", cls=DTypeError)
    if len(x.shape) != 5 or len(w.shape) != 6 or len(b.shape) != 1 or len(res) > 1:
        raise op_error(op, "expects blocked input (N, C/bi, H, W, bi), weight (O/b, C/bi, kh, kw, bi, b), "
                           "bias (O/b * b,) and at most one residual", actual=spec_str(x, w, b, *res),
                       hint="block the weight with suanli.ops.layout.block_weight")
    N, Cb, H, W, bx = x.shape
    Ob, Cw, kh, kw, bi, blk = w.shape
    if Cw != Cb or bi != bx or b.shape[0] != Ob * blk:
        raise op_error(op, "input, weight and bias blocks do not match",
                       expect="weight.shape[1] == input.shape[1], weight.shape[4] == input.shape[4], "
                              "bias (weight.shape[0] * weight.shape[5],)",
                       actual=spec_str(x, w, b))
    (sh, sw), ((pt, pb), (pl, pr)), (dh, dw) = stride, padding, dilation
    Ho, Wo = _out_size(H, kh, sh, pt + pb, dh), _out_size(W, kw, sw, pl + pr, dw)
    if min(sh, sw, dh, dw) < 1 or min(pt, pb, pl, pr) < 0 or Ho < 1 or Wo < 1:
        raise op_error(op, "stride/dilation must be positive, padding non-negative, and the kernel must fit",
                       actual=f"input {spec_str(x)}, weight {tuple(w.shape)}, stride={stride}, "
                              f"padding={padding}, dilation={dilation}", cls=ValueError)  # type: ignore[arg-type]
    out = (N, Ob, Ho, Wo, blk)
    if res and tuple(res[0].shape) != out:
        raise op_error(op, "the residual must have the output's shape", expect=f"residual {out}",
                       actual=f"residual {tuple(res[0].shape)}")
    return Spec(out, x.dtype)


def _reference(x, w, b, res, *, stride, padding, dilation, relu):
    """The NumPy path: unblock, ``conv2d``'s own kernel, epilogue, block again."""
    N, Cb, H, W, bi = x.shape
    Ob, _, kh, kw, _, blk = w.shape
    xn = _from_nchwc_impl(x, channels=Cb * bi)
    wn = w.transpose(0, 5, 1, 4, 2, 3).reshape(Ob * blk, Cb * bi, kh, kw)
    y = _conv2d_impl(xn, np.ascontiguousarray(wn), stride=stride, padding=padding, dilation=dilation, groups=1)
    y = _to_nchwc_impl(y, block=blk)
    y += b.reshape(Ob, 1, 1, blk)
    if res is not None:
        y += res
    if relu:
        np.maximum(y, 0, out=y)
    return y


class _Geo(ctypes.Structure):
    _fields_ = [(name, ctypes.c_long) for name in
                ("N", "Cb", "Hp", "Wp", "Ob", "kh", "kw", "sh", "sw", "dh", "dw", "Ho", "Wo", "relu", "bi")]


class _Scratch(threading.local):
    """The padded input, reused across calls (a fresh array is page-faulted in on every call)."""

    def __init__(self) -> None:
        self.buf = np.empty(0, np.uint8)

    def get(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        size = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if self.buf.nbytes < size:
            self.buf = np.empty(size, np.uint8)
        return self.buf[:size].view(dtype).reshape(shape)


_scratch = _Scratch()


@functools.lru_cache(maxsize=None)
def _task(symbol: str) -> tuple[Any, int]:
    """A pool task function of ``kernels/conv_nchwc.c`` (bound once, not per layer call)."""
    from ..compiler.kernels import bind
    return bind(native.load("conv_nchwc"), symbol)


def _padded(x: np.ndarray, padding, suffix: str | None = None, dims: np.ndarray | None = None) -> np.ndarray:
    """``x`` zero-padded spatially (a reused scratch buffer); rows copied on the kernels' pool when
    ``suffix`` names the native kernel's dtype variant (``dims``: its geometry, when cached)."""
    (pt, pb), (pl, pr) = padding
    if pt == pb == pl == pr == 0:
        return np.ascontiguousarray(x)
    N, Cb, H, W, b = x.shape
    xp = _scratch.get((N, Cb, H + pt + pb, W + pl + pr, b), x.dtype)   # b: the input's block
    if suffix is not None and x.flags.c_contiguous:
        from ..compiler.kernels import num_threads, run_tasks
        fn, addr = _task(f"nchwc_pad_{suffix}")
        if dims is None:
            dims = np.array([H, W, b, pt, pb, pl, pr], np.int64)
        argv = (ctypes.c_void_p * 3)(native.address(x), native.address(xp), native.address(dims))
        run_tasks(fn, addr, argv, N * Cb * (H + pt + pb), num_threads() if xp.size >= PAD_SPLIT else 1)
        return xp
    xp[:, :, :pt] = 0
    xp[:, :, pt + H:] = 0
    xp[:, :, pt:pt + H, :pl] = 0
    xp[:, :, pt:pt + H, pl + W:] = 0
    xp[:, :, pt:pt + H, pl:pl + W] = x
    return xp


class _ConvCall:
    """What one conv2d_nchwc geometry needs at every call, worked out once: the kernel (one- or
    two-block form), the geometry struct, the padding geometry, the output shape and work items.
    Per call only the output is allocated and six pointers filled (the per-call Python cost of a
    layer went from ~13 to ~7 us; ResNet-18 runs 20 of them)."""

    def __init__(self, xs, ws, dtype, stride, padding, dilation, relu) -> None:
        self.suffix = native.KERNEL_SUFFIX[dtype]
        N, Cb, H, W, bi = xs
        Ob, _, kh, kw, _, blk = ws
        (sh, sw), ((pt, pb), (pl, pr)), (dh, dw) = stride, padding, dilation
        self.pair = PAIRS and f"{self.suffix}_b{blk}" in PAIR_VARIANTS and Ob % 2 == 0 and bi in (blk, 1) \
            and sw in (1, 2)
        self.symbol = f"conv_nchwc_{'pair' if self.pair else 'task'}_{self.suffix}_b{blk}"
        Ho, Wo = _out_size(H, kh, sh, pt + pb, dh), _out_size(W, kw, sw, pl + pr, dw)
        self.out_shape = (N, Ob, Ho, Wo, blk)
        self.geo = _Geo(N, Cb, H + pt + pb, W + pl + pr, Ob, kh, kw, sh, sw, dh, dw, Ho, Wo, int(bool(relu)), bi)
        self.padding = padding
        self.pad_dims = np.array([H, W, bi, pt, pb, pl, pr], np.int64)
        self.items = N * (Ob // 2 if self.pair else Ob) * Ho

    def __call__(self, x, w, b, res) -> np.ndarray:
        from ..compiler.kernels import num_threads, run_tasks
        xp = _padded(x, self.padding, self.suffix, self.pad_dims)
        w, b = np.ascontiguousarray(w), np.ascontiguousarray(b)
        res = None if res is None else np.ascontiguousarray(res)
        fn, addr = _task(self.symbol)
        y = np.empty(self.out_shape, x.dtype)
        argv = (ctypes.c_void_p * 6)(native.address(xp), native.address(w), native.address(b),
                                     None if res is None else native.address(res), native.address(y),
                                     ctypes.addressof(self.geo))
        # one work item per output row (per pair of output blocks), split on the kernels' pool: the
        # same workers as the GEMM and the fused loops, so no second pool competes for cores
        run_tasks(fn, addr, argv, self.items, num_threads())
        return y


@functools.lru_cache(maxsize=512)
def _conv_call(specs: tuple, stride, padding, dilation, relu) -> _ConvCall | None:
    """The checked call plan of one geometry (``specs``: (shape, dtype) of x, w, b[, residual]), or
    None where the native kernel does not serve it. The check raises for bad shapes or dtypes; being
    keyed on every shape and dtype, a cached plan stands for a passed check. Whether native kernels
    are enabled and built is asked per call, not cached (``native.disabled()`` may change it)."""
    _infer_conv2d_nchwc(*[Spec(sh, dt) for sh, dt in specs], stride=stride, padding=padding,
                        dilation=dilation, relu=relu)
    (xs, dtype), (ws, _) = specs[0], specs[1]
    if not (int(np.prod(xs)) and int(np.prod(ws))) or dtype not in native.KERNEL_SUFFIX or ws[5] not in BLOCKS:
        return None
    return _ConvCall(xs, ws, dtype, stride, padding, dilation, relu)


def _conv2d_nchwc_impl(x, w, b, *res, stride, padding, dilation, relu):
    r = res[0] if res else None
    # the C kernel trusts shapes and dtypes: every call is checked (once per geometry, see _conv_call)
    key = (tuple((a.shape, a.dtype) for a in (x, w, b, *res)), stride, padding, dilation, relu)
    try:
        call = _conv_call(*key)
    except TypeError:                 # attributes given as lists (unhashable): the same plan, not cached
        call = _conv_call.__wrapped__(*key)
    if call is not None and native.enabled():
        if native.load("conv_nchwc") is not None:
            return call(x, w, b, r)
        debug_note(1, "conv2d_nchwc: native kernel unavailable, using the NumPy path")
    return _reference(x, w, b, r, stride=stride, padding=padding, dilation=dilation, relu=relu)


CONV2D_NCHWC = defprim("conv2d_nchwc", _conv2d_nchwc_impl, _infer_conv2d_nchwc, differentiable=False,
                       doc="blocked conv2d (inference): (N, C/b, H, W, b) x (O/b, C/b, kh, kw, b, b) "
                           "+ bias [+ residual] [-> relu] -> (N, O/b, Ho, Wo, b)")


# ==================================================================================== blocked pool
class _PoolGeo(ctypes.Structure):
    _fields_ = [(name, ctypes.c_long) for name in
                ("N", "Cb", "H", "W", "kh", "kw", "sh", "sw", "ph", "pw", "dh", "dw", "Ho", "Wo")]


def _infer_max_pool2d_nchwc(x: Spec, *, kernel_size, stride, padding, dilation, ceil_mode) -> Spec:
    if len(x.shape) != 5 or x.dtype not in _dt.FLOATING:
        raise op_error("max_pool2d_nchwc", "expects a floating-point blocked (N, C/b, H, W, b) tensor",
                       actual=f"input {spec_str(x)}", hint="make one with to_nchwc(x, block)")
    N, Cb, H, W, b = x.shape
    geo = pool_geometry("max_pool2d_nchwc", (N, Cb, H, W), kernel_size, stride, padding, dilation, ceil_mode)
    return Spec((N, Cb, geo.Ho, geo.Wo, b), x.dtype)


def _max_pool2d_nchwc_impl(x, *, kernel_size, stride, padding, dilation, ceil_mode):
    out_spec = _infer_max_pool2d_nchwc(Spec(x.shape, x.dtype), kernel_size=kernel_size, stride=stride,
                                       padding=padding, dilation=dilation, ceil_mode=ceil_mode)
    N, Cb, H, W, b = x.shape
    Ho, Wo = out_spec.shape[2:4]
    suffix = native.KERNEL_SUFFIX.get(x.dtype)
    lib = native.load("conv_nchwc") if suffix and b in BLOCKS and native.enabled() and x.size else None
    if lib is None:       # the NumPy path: max_pool2d's own kernel on the unblocked tensor
        y = _max_pool2d_impl(_from_nchwc_impl(x, channels=Cb * b), kernel_size=kernel_size, stride=stride,
                             padding=padding, dilation=dilation, ceil_mode=ceil_mode)
        return _to_nchwc_impl(y, block=b)
    from ..compiler.kernels import num_threads, run_tasks
    x = np.ascontiguousarray(x)
    y = np.empty(out_spec.shape, x.dtype)
    geo = _PoolGeo(N, Cb, H, W, *kernel_size, *stride, *padding, *dilation, Ho, Wo)
    fn, addr = _task(f"maxpool_nchwc_task_{suffix}_b{b}")
    argv = (ctypes.c_void_p * 3)(native.address(x), native.address(y), ctypes.addressof(geo))
    run_tasks(fn, addr, argv, N * Cb * Ho, num_threads() if x.size >= REORDER_SPLIT else 1)
    return y


MAX_POOL2D_NCHWC = defprim("max_pool2d_nchwc", _max_pool2d_nchwc_impl, _infer_max_pool2d_nchwc,
                           differentiable=False,
                           doc="max_pool2d on a blocked (N, C/b, H, W, b) tensor (inference)")


# ========================================================================================= public
def _tensor(op: str, name: str, t: Any) -> Tensor:
    if not isinstance(t, Tensor):
        raise op_error(op, f"{name} must be a Tensor", actual=type(t).__name__, cls=TypeError)  # type: ignore[arg-type]
    return t


def to_nchwc(x: Tensor, block: int = 16) -> Tensor:
    """``(N, C, H, W) -> (N, ceil(C/block), H, W, block)``; the padded channels of the last block are zero.

    >>> import suanli
    >>> to_nchwc(suanli.ones(1, 20, 3, 3)).shape
    (1, 2, 3, 3, 16)
    """
    return apply(TO_NCHWC, _tensor("to_nchwc", "input", x), block=int(block))


def from_nchwc(x: Tensor, channels: int) -> Tensor:
    """``(N, C/b, H, W, b) -> (N, channels, H, W)``, dropping the padded channels.

    >>> import suanli
    >>> from_nchwc(to_nchwc(suanli.ones(1, 20, 3, 3)), 20).shape
    (1, 20, 3, 3)
    """
    return apply(FROM_NCHWC, _tensor("from_nchwc", "input", x), channels=int(channels))


def conv2d_nchwc(x: Tensor, weight: Tensor, bias: Tensor | None = None, residual: Tensor | None = None,
                 stride: Any = 1, padding: Any = 0, dilation: Any = 1, relu: bool = False) -> Tensor:
    """Convolution on blocked tensors: ``act(conv2d(x, w) + bias + residual)`` with ``x`` and the result
    in ``(N, C/b, H, W, b)`` layout and ``weight`` from :func:`block_weight`; ``bias`` is per output
    channel (``(O,)`` or already ``(ceil(O/b) * b,)``), ``residual`` has the output's shape. One group only.

    >>> import numpy as np, suanli
    >>> x = to_nchwc(suanli.ones(1, 8, 4, 4), 8)
    >>> w = suanli.tensor(block_weight(np.ones((8, 8, 1, 1), np.float32), 8))
    >>> float(conv2d_nchwc(x, w, suanli.ones(8), relu=True)[0, 0, 0, 0, 0])
    9.0
    """
    op = "conv2d_nchwc"
    x, weight = _tensor(op, "input", x), _tensor(op, "weight", weight)
    if weight._data.ndim != 6:
        raise op_error(op, "expects a blocked 6-d weight (O/b, C/b, kh, kw, b, b)",
                       actual=f"weight {tuple(weight.shape)}", hint="block it with block_weight(w, b)")
    stride, dilation = _ints(op, "stride", stride), _ints(op, "dilation", dilation)
    _positive(op, stride=stride, dilation=dilation)
    pads = _conv_padding(op, padding, tuple(weight.shape[2:4]), stride, dilation)
    n_out = weight.shape[0] * weight.shape[5]
    if bias is None:
        bias = _wrap(np.zeros(n_out, x.dtype))
    elif tuple(bias.shape) != (n_out,):
        bias = _wrap(block_bias(_tensor(op, "bias", bias).numpy(), bias.shape[0], weight.shape[5], bias.dtype))
    inputs = (x, weight, bias) + (() if residual is None else (_tensor(op, "residual", residual),))
    return apply(CONV2D_NCHWC, *inputs, stride=stride, padding=pads, dilation=dilation, relu=bool(relu))


def max_pool2d_nchwc(x: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
                     ceil_mode: bool = False) -> Tensor:
    """``max_pool2d`` (torch's arguments) on a blocked ``(N, C/b, H, W, b)`` tensor.

    >>> import suanli
    >>> x = suanli.arange(16.0).reshape(1, 1, 4, 4)
    >>> from_nchwc(max_pool2d_nchwc(to_nchwc(x, 8), 2), 1).tolist()
    [[[[5.0, 7.0], [13.0, 15.0]]]]
    """
    kernel_size, stride, padding, dilation = _pool_args("max_pool2d_nchwc", kernel_size, stride, padding, dilation)
    return apply(MAX_POOL2D_NCHWC, _tensor("max_pool2d_nchwc", "input", x), kernel_size=kernel_size,
                 stride=stride, padding=padding, dilation=dilation, ceil_mode=bool(ceil_mode))
