"""Convolution and pooling: primitives with their shape rules, fast NumPy kernels, VJPs and JVPs.

Convolution is three bilinear primitives, closed under differentiation (so double backward and
forward-over-reverse need no extra code):

* ``conv2d(x, w)``                -- ``(N, C, H, W) x (O, C/groups, kh, kw) -> (N, O, Ho, Wo)``
* ``conv2d_input_grad(g, w)``     -- the adjoint of ``conv2d`` in ``x`` (= transposed convolution)
* ``conv2d_weight_grad(x, g)``    -- the adjoint of ``conv2d`` in ``w``

Each derivative of one of them is one of the others: for ``y = conv2d(x, w)`` with cotangent ``g``,
``dx = conv2d_input_grad(g, w)`` and ``dw = conv2d_weight_grad(x, g)``, and so on around the triangle.

Kernels: every one is *one GEMM over strided windows* (im2col) per batch chunk, with the columns
laid out ``(C/groups * kh * kw, N * Ho * Wq)`` so the GEMM operands are contiguous. For stride 1 along
the width the windows run over whole padded rows ("wide" columns, ``Wq = Wp``): each window's
``(Ho, Wq)`` block is then one long contiguous run of the padded input, the im2col copy runs at memcpy
speed instead of in ``Wo``-long pieces, and the ``Wq - Wo`` garbage columns are dropped from the result
(the cotangent is zero there, so they add nothing to the gradients).
The input gradient is one GEMM followed by ``kh * kw`` strided slice-adds (col2im), never ``np.add.at``.
Temporaries live in a reusable per-thread workspace: on a VM a fresh multi-megabyte array costs more
in page faults than the copy that fills it (see :class:`_Workspace`).
Where the per-layer policy ``suanli.inference.conv_kernels.choose_conv_kernel`` picks a native kernel
(Winograd F(4x4, 3x3) for wide 3x3 stride-1 layers, direct depthwise, direct small-channel stride-1
convolution without a column matrix), each of the three primitives
runs it instead (:func:`_native`); the GEMM path stays the fallback (no C compiler, ``SUANLI_NATIVE=0``)
and the reference the kernels are tested against.

Pooling: ``max_pool2d`` is a primitive (values); its VJP scatters the cotangent to torch's argmax
positions with the linear pair ``max_pool2d_scatter`` / ``max_pool2d_gather``. ``avg_pool2d`` is a
composite (a window sum by convolution with a constant kernel, divided by torch's divisor), and
``adaptive_avg_pool2d`` applies per-axis averaging matrices ``P_h @ x @ P_w^T``.

>>> import suanli
>>> x = suanli.arange(16.0).reshape(1, 1, 4, 4)
>>> conv2d(x, suanli.ones(1, 1, 2, 2), stride=2).tolist()
[[[[10.0, 18.0], [42.0, 50.0]]]]
>>> max_pool2d(x, 2).tolist(), avg_pool2d(x, 2).tolist()
([[[[5.0, 7.0], [13.0, 15.0]]]], [[[[2.5, 4.5], [10.5, 12.5]]]])
"""
from __future__ import annotations

import functools
import operator
import threading
from typing import Any, NamedTuple, Sequence

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .. import dtypes as _dt
from .. import native
from .._config import debug_note, state
from ..errors import DTypeError, op_error
from ..tensor import Tensor, _wrap
from ._helpers import add_tangents
from .registry import Spec, apply, defprim, other_inputs, spec_str

__all__ = ["conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d",
           "max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d",
           "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_max_pool1d", "adaptive_max_pool2d"]


# =================================================================================== arguments
def _ints(op: str, name: str, value: Any, n: int = 2) -> tuple[int, ...]:
    """An int or a sequence of ``n`` ints (a 1-sequence repeats) as a tuple of ``n`` ints."""
    try:
        if isinstance(value, (int, np.integer)):
            return (operator.index(value),) * n
        out = tuple(operator.index(v) for v in value)
    except TypeError:
        raise op_error(op, f"{name} must be an int or a tuple of {n} ints", actual=f"{name}={value!r}",
                       cls=TypeError) from None  # type: ignore[arg-type]
    if len(out) == 1:
        out = out * n
    if len(out) != n:
        raise op_error(op, f"{name} must be an int or a tuple of {n} ints", actual=f"{name}={value!r}",
                       cls=ValueError)  # type: ignore[arg-type]
    return out


def _positive(op: str, **values: tuple[int, ...]) -> None:
    for name, v in values.items():
        if any(a <= 0 for a in v):
            raise op_error(op, f"{name} must be positive", actual=f"{name}={v}", cls=ValueError)  # type: ignore[arg-type]


def _conv_padding(op: str, padding: Any, kernel: tuple[int, ...], stride: tuple[int, ...],
                  dilation: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """torch's ``padding`` argument (int, tuple, ``'same'``, ``'valid'``) as ``((lo, hi), ...)``.

    ``'same'`` pads ``d * (k - 1)`` in total, the odd one at the end (as torch does)."""
    if isinstance(padding, str):
        if padding == "valid":
            return tuple((0, 0) for _ in kernel)
        if padding != "same":
            raise op_error(op, f"invalid padding string {padding!r}", expect="'same' or 'valid'",
                           cls=ValueError)  # type: ignore[arg-type]
        if any(s != 1 for s in stride):
            raise op_error(op, "padding='same' is not supported for strided convolutions",
                           actual=f"stride={stride}", hint="use an explicit padding", cls=ValueError)  # type: ignore[arg-type]
        total = [d * (k - 1) for k, d in zip(kernel, dilation)]
        return tuple((t // 2, t - t // 2) for t in total)
    pads = _ints(op, "padding", padding, len(kernel))
    if any(p < 0 for p in pads):
        raise op_error(op, "negative padding is not supported", actual=f"padding={padding}",
                       cls=ValueError)  # type: ignore[arg-type]
    return tuple((p, p) for p in pads)


def _check_float_pair(op: str, x: Any, w: Any, bias: Any = None) -> tuple[Tensor, Tensor, Tensor | None]:
    """Input/weight/bias: tensors of one floating dtype (torch does not promote here either).
    Returns them, cast to the low dtype inside ``suanli.amp.autocast`` (the whole layer, as torch)."""
    for name, t in (("input", x), ("weight", w), ("bias", bias)):
        if t is not None and not isinstance(t, Tensor):
            raise op_error(op, f"{name} must be a Tensor", actual=f"{type(t).__name__}", cls=TypeError)  # type: ignore[arg-type]
    if state.autocast is not None:
        x, w, bias = state.autocast.lower(x, w, bias)
    if x._data.dtype not in _dt.FLOATING:
        raise op_error(op, "expects a floating-point input", actual=f"input {x.dtype}",
                       hint="convert with .float() first", cls=DTypeError)
    for name, t in (("weight", w), ("bias", bias)):
        if t is not None and t._data.dtype != x._data.dtype:
            raise op_error(op, f"input and {name} must have the same dtype",
                           actual=f"input {x.dtype}, {name} {t.dtype}",
                           hint=f"convert with .to({x.dtype})", cls=DTypeError)
    return x, w, bias


def _check_ndim(op: str, t: Tensor, allowed: tuple[int, ...], what: str) -> None:
    if t._data.ndim not in allowed:
        raise op_error(op, f"expects a {' or '.join(f'{n}-d' for n in allowed)} {what}",
                       actual=f"{what} of shape {tuple(t.shape)}")


# ===================================================================================== geometry
class ConvGeometry(NamedTuple):
    """Every size a 2-d convolution kernel needs (derived once from shapes and attributes)."""

    N: int
    C: int
    H: int
    W: int
    O: int
    groups: int
    kh: int
    kw: int
    sh: int
    sw: int
    pt: int
    pb: int
    pl: int
    pr: int
    dh: int
    dw: int
    Hp: int      # padded height and width
    Wp: int
    Ho: int      # output height and width
    Wo: int
    Wq: int      # GEMM column width per output row: Wp ("wide", stride 1) or Wo
    slack: int   # zeros after the padded buffer that the wide windows may read

    @property
    def out_shape(self) -> tuple[int, int, int, int]:
        return (self.N, self.O, self.Ho, self.Wo)

    @property
    def w_shape(self) -> tuple[int, int, int, int]:
        return (self.O, self.C // self.groups, self.kh, self.kw)


def conv_geometry(op: str, x_shape: Sequence[int], w_shape: Sequence[int], stride: tuple[int, int],
                  padding: tuple[tuple[int, int], tuple[int, int]], dilation: tuple[int, int],
                  groups: int) -> ConvGeometry:
    """Validate a conv2d problem and derive its sizes; errors name the op, both shapes and groups."""
    if len(x_shape) != 4 or len(w_shape) != 4:
        raise op_error(op, "expects a 4-d input (N, C, H, W) and a 4-d weight (O, C/groups, kh, kw)",
                       actual=f"input {tuple(x_shape)}, weight {tuple(w_shape)}",
                       hint="conv1d/conv2d add the missing dims; unbatched inputs are (C, H, W)")
    N, C, H, W = (int(s) for s in x_shape)
    O, Cg, kh, kw = (int(s) for s in w_shape)
    (sh, sw), ((pt, pb), (pl, pr)), (dh, dw) = stride, padding, dilation
    if groups < 1 or min(sh, sw, dh, dw) < 1 or min(pt, pb, pl, pr) < 0:
        raise op_error(op, "groups, stride and dilation must be positive and padding non-negative",
                       actual=f"groups={groups}, stride={stride}, dilation={dilation}, padding={padding}",
                       cls=ValueError)  # type: ignore[arg-type]
    if C != Cg * groups or O % groups:
        raise op_error(op, "input channels do not match the weight",
                       expect="input.shape[1] == weight.shape[1] * groups and weight.shape[0] % groups == 0",
                       actual=f"input {tuple(x_shape)}, weight {tuple(w_shape)}, groups={groups}",
                       hint="check in_channels/out_channels of the layer and the groups argument")
    Hp, Wp = H + pt + pb, W + pl + pr
    eh, ew = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    if kh < 1 or kw < 1 or eh > Hp or ew > Wp:
        raise op_error(op, "kernel size can't be greater than the padded input size",
                       expect=f"dilated kernel ({eh}, {ew}) <= padded input ({Hp}, {Wp})",
                       actual=f"input {tuple(x_shape)}, weight {tuple(w_shape)}, padding={padding}, "
                              f"dilation={dilation}",
                       hint="use a smaller kernel or dilation, more padding, or a larger input")
    Ho, Wo = (Hp - eh) // sh + 1, (Wp - ew) // sw + 1
    wide = sw == 1
    return ConvGeometry(N, C, H, W, O, groups, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw, Hp, Wp, Ho, Wo,
                        Wp if wide else Wo, dw * (kw - 1) if wide else 0)


def _check_cotangent(op: str, geo: ConvGeometry, g_shape: Sequence[int], what: str) -> None:
    if tuple(g_shape) != geo.out_shape:
        raise op_error(op, f"the output gradient does not fit the {what}",
                       expect=f"grad_output of shape {geo.out_shape}",
                       actual=f"grad_output {tuple(g_shape)}")


def _require_float_same(op: str, a: Spec, b: Spec) -> np.dtype:
    if a.dtype not in _dt.FLOATING or a.dtype != b.dtype:
        raise op_error(op, "expects two floating-point tensors of one dtype", actual=spec_str(a, b),
                       cls=DTypeError)
    return a.dtype


# ==================================================================================== workspace
class _Workspace(threading.local):
    """Per-thread scratch buffers for the kernels' temporaries (padded copies, im2col columns, GEMM
    results), reused across calls.

    Why: a fresh multi-megabyte NumPy array is page-faulted in on first touch; measured on the
    2-core benchmark VM, allocating and filling 5 MB costs ~2 ms (8 ms with transparent huge
    pages) against ~0.13 ms for refilling a warm buffer -- more than the LeNet-sized convolution
    itself. Only temporaries live here; every array a kernel returns is freshly allocated. Buffers
    over :attr:`limit` bytes are not kept.
    """

    limit = 1 << 27   # 128 MiB per buffer

    def __init__(self) -> None:
        self.buffers: dict[str, np.ndarray] = {}

    def get(self, name: str, size: int, dtype: np.dtype) -> np.ndarray:
        """A 1-d array of ``size`` elements (contents undefined) that stays valid until the next
        ``get`` of the same ``name`` on this thread."""
        nbytes = size * np.dtype(dtype).itemsize
        if nbytes > self.limit:
            return np.empty(size, dtype)
        buf = self.buffers.get(name)
        if buf is None or buf.nbytes < nbytes:
            buf = self.buffers[name] = np.empty(max(nbytes, 64), np.uint8)
        return buf[:nbytes].view(dtype)

    def clear(self) -> None:
        self.buffers.clear()


_ws = _Workspace()
COLS_BYTES = 1 << 23   # im2col columns per batch chunk (8 MiB): bounds memory; the columns stay in
#                        cache between the copy and the GEMM (measured ~15% faster than 32 MiB on
#                        the ResNet 64ch 56x56 layer)


def clear_workspace() -> None:
    """Release this thread's conv scratch buffers."""
    _ws.clear()


# ====================================================================================== kernels
def _chunks(geo: ConvGeometry, itemsize: int) -> list[tuple[int, int]]:
    """Batch ranges whose im2col columns fit in :data:`COLS_BYTES`."""
    per_sample = geo.C * geo.kh * geo.kw * geo.Ho * geo.Wq * itemsize
    step = max(1, COLS_BYTES // max(per_sample, 1))
    return [(n, min(n + step, geo.N)) for n in range(0, geo.N, step)]


def _padded(name: str, x: np.ndarray, geo: ConvGeometry) -> np.ndarray:
    """``x`` zero-padded into a flat ``(N, C, Hp, Wp)`` buffer followed by ``slack`` zeros."""
    N, C, H, W, pt, pl = geo.N, geo.C, geo.H, geo.W, geo.pt, geo.pl
    size = N * C * geo.Hp * geo.Wp
    flat = _ws.get(name, size + geo.slack, x.dtype)
    buf = flat[:size].reshape(N, C, geo.Hp, geo.Wp)
    if geo.Hp != H or geo.Wp != W:
        buf[:, :, :pt] = 0
        buf[:, :, pt + H:] = 0
        buf[:, :, pt:pt + H, :pl] = 0
        buf[:, :, pt:pt + H, pl + W:] = 0
    buf[:, :, pt:pt + H, pl:pl + W] = x
    flat[size:] = 0
    return flat


def _window_strides(geo: ConvGeometry, itemsize: int) -> dict[str, int]:
    """Byte strides of the padded ``(N, C, Hp, Wp)`` buffer seen as windows: per sample, channel,
    kernel row/column and output row/column."""
    P = geo.Hp * geo.Wp
    return dict(n=geo.C * P * itemsize, c=P * itemsize, i=geo.dh * geo.Wp * itemsize,
                j=geo.dw * itemsize, ho=geo.sh * geo.Wp * itemsize, wq=geo.sw * itemsize)


def _im2col(flat: np.ndarray, geo: ConvGeometry, n0: int, n1: int) -> np.ndarray:
    """Columns ``(groups, C/groups * kh * kw, nb * Ho * Wq)`` of samples ``n0:n1`` (one strided copy;
    with wide columns each ``(Ho, Wq)`` block is one contiguous run of the padded input)."""
    nb, st = n1 - n0, _window_strides(geo, flat.itemsize)
    windows = as_strided(flat[n0 * geo.C * geo.Hp * geo.Wp:],
                         shape=(geo.C, geo.kh, geo.kw, nb, geo.Ho, geo.Wq),
                         strides=(st["c"], st["i"], st["j"], st["n"], st["ho"], st["wq"]), writeable=False)
    cols = _ws.get("cols", windows.size, flat.dtype).reshape(windows.shape)
    np.copyto(cols, windows)
    return cols.reshape(geo.groups, -1, nb * geo.Ho * geo.Wq)


def _grad_channels_first(g: np.ndarray, geo: ConvGeometry, n0: int, n1: int) -> np.ndarray:
    """``g[n0:n1]`` as ``(groups, O/groups, nb * Ho * Wq)``, zero in the wide garbage columns."""
    nb = n1 - n0
    buf = _ws.get("grad", geo.O * nb * geo.Ho * geo.Wq, g.dtype).reshape(geo.O, nb, geo.Ho, geo.Wq)
    buf[..., geo.Wo:] = 0
    buf[..., :geo.Wo] = g[n0:n1].transpose(1, 0, 2, 3)
    return buf.reshape(geo.groups, geo.O // geo.groups, -1)


def _gemm_case(geo: ConvGeometry) -> str | None:
    """Convolutions that are plain matrix products, done without im2col:
    ``'full'`` -- the kernel covers the whole unpadded input (one output pixel, e.g. LeNet's C5);
    ``'1x1'`` -- a 1x1 kernel without padding (ResNet's projection shortcuts)."""
    if geo.groups != 1 or (geo.pt, geo.pb, geo.pl, geo.pr) != (0, 0, 0, 0):
        return None
    if (geo.kh, geo.kw) == (1, 1):
        return "1x1"
    if (geo.kh, geo.kw) == (geo.H, geo.W) and (geo.dh, geo.dw) == (1, 1):
        return "full"
    return None


def _strided_input(x: np.ndarray, geo: ConvGeometry) -> np.ndarray:
    """The input pixels a strided 1x1 kernel reads, as ``(N, C, Ho * Wo)``."""
    if (geo.sh, geo.sw) != (1, 1):
        x = x[:, :, :geo.sh * (geo.Ho - 1) + 1:geo.sh, :geo.sw * (geo.Wo - 1) + 1:geo.sw]
    return np.ascontiguousarray(x).reshape(geo.N, geo.C, geo.Ho * geo.Wo)


# ============================================================================ native kernels
_ck = None


def _conv_kernels():
    """``suanli.inference.conv_kernels``, imported on first use (it sits above ``ops``)."""
    global _ck
    if _ck is None:
        from ..inference import conv_kernels
        _ck = conv_kernels
    return _ck


def _native(which: str, geo: ConvGeometry, a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """The pass ``which`` (``forward``: a=x, b=w; ``input_grad``: a=g, b=w; ``weight_grad``: a=x, b=g)
    by the native kernel the per-layer policy (``inference.conv_kernels.choose_conv_kernel``) picks,
    or ``None`` to keep the GEMM path: the policy chose im2col, the dtype has no kernel, or native
    kernels are off / have no compiler (said under ``DEBUG``)."""
    if a.dtype.type not in (np.float32, np.float64) or not native.enabled():
        return None
    ck = _conv_kernels()
    x_shape, stride, dilation = (geo.N, geo.C, geo.H, geo.W), (geo.sh, geo.sw), (geo.dh, geo.dw)
    pads = ((geo.pt, geo.pb), (geo.pl, geo.pr))
    kernel = ck.choose_conv_kernel(x_shape, geo.w_shape, stride, pads, dilation, geo.groups, which=which)
    if kernel == "im2col":
        return None
    out = ck.run_pass(kernel, which, a, b, x_shape=x_shape, kernel_size=(geo.kh, geo.kw), stride=stride,
                      padding=pads, dilation=dilation)
    if out is None:
        debug_note(1, f"conv2d {which}: the {kernel} kernel is unavailable, using im2col + GEMM")
    return out


def _conv2d_impl(x, w, *, stride, padding, dilation, groups):
    geo = conv_geometry("conv2d", x.shape, w.shape, stride, padding, dilation, groups)
    out = np.empty(geo.out_shape, x.dtype)
    if out.size == 0:
        return out
    case = _gemm_case(geo)
    if case == "full":
        return (x.reshape(geo.N, -1) @ w.reshape(geo.O, -1).T).reshape(geo.out_shape)
    if case == "1x1":
        return np.matmul(w.reshape(geo.O, geo.C), _strided_input(x, geo)).reshape(geo.out_shape)
    fast = _native("forward", geo, x, w)
    if fast is not None:
        return fast
    flat = _padded("input", x, geo)
    wm = np.ascontiguousarray(w).reshape(groups, geo.O // groups, -1)          # (G, O/G, Kg)
    for n0, n1 in _chunks(geo, x.itemsize):
        cols = _im2col(flat, geo, n0, n1)                                         # (G, Kg, L)
        prod = _ws.get("gemm", geo.O * cols.shape[2], x.dtype).reshape(groups, -1, cols.shape[2])
        np.matmul(wm, cols, out=prod)                                             # (G, O/G, L)
        # (O, nb, Ho, Wq) -> drop the garbage columns -> (nb, O, Ho, Wo)
        out[n0:n1] = prod.reshape(geo.O, n1 - n0, geo.Ho, geo.Wq)[..., :geo.Wo].transpose(1, 0, 2, 3)
    return out


def _conv2d_input_grad_impl(g, w, *, input_size, stride, padding, dilation, groups):
    geo = conv_geometry("conv2d_input_grad", (g.shape[0], w.shape[1] * groups, *input_size), w.shape,
                        stride, padding, dilation, groups)
    _check_cotangent("conv2d_input_grad", geo, g.shape, "weight and input size")
    N, C, H, W, Ho, Wq = geo.N, geo.C, geo.H, geo.W, geo.Ho, geo.Wq
    size = N * C * geo.Hp * geo.Wp
    if N * C * H * W == 0 or geo.O == 0:
        return np.zeros((N, C, H, W), g.dtype)
    case = _gemm_case(geo)
    if case == "full":
        return (g.reshape(N, geo.O) @ w.reshape(geo.O, -1)).reshape(N, C, H, W)
    if case == "1x1":
        gi = np.matmul(w.reshape(geo.O, C).T, g.reshape(N, geo.O, -1)).reshape(N, C, Ho, geo.Wo)
        if (geo.sh, geo.sw) == (1, 1):
            return gi
        out = np.zeros((N, C, H, W), g.dtype)
        out[:, :, :geo.sh * (Ho - 1) + 1:geo.sh, :geo.sw * (geo.Wo - 1) + 1:geo.sw] = gi
        return out
    fast = _native("input_grad", geo, g, w)
    if fast is not None:
        return fast
    # without padding the accumulation buffer is the result: allocate it fresh, return a view
    unpadded = (geo.Hp, geo.Wp) == (H, W)
    flat = np.zeros(size + geo.slack, g.dtype) if unpadded else _ws.get("dinput", size + geo.slack, g.dtype)
    if not unpadded:
        flat.fill(0)
    wt = np.ascontiguousarray(w).reshape(groups, geo.O // groups, -1).transpose(0, 2, 1)  # (G, Kg, O/G)
    st = _window_strides(geo, g.itemsize)
    for n0, n1 in _chunks(geo, g.itemsize):
        nb = n1 - n0
        gt = _grad_channels_first(g, geo, n0, n1)                                 # (G, O/G, L)
        cols = _ws.get("gemm", C * geo.kh * geo.kw * gt.shape[2], g.dtype).reshape(groups, -1, gt.shape[2])
        np.matmul(wt, gt, out=cols)                                               # (G, Kg, L)
        cols = cols.reshape(C, geo.kh, geo.kw, nb, Ho, Wq)
        # col2im: window (i, j) of every output position adds back into the padded input. The
        # view overlaps itself across (i, j), so it is only ever written one (i, j) at a time.
        targets = as_strided(flat[n0 * C * geo.Hp * geo.Wp:], shape=(geo.kh, geo.kw, C, nb, Ho, Wq),
                             strides=(st["i"], st["j"], st["c"], st["n"], st["ho"], st["wq"]))
        for i in range(geo.kh):
            for j in range(geo.kw):
                targets[i, j] += cols[:, i, j]
    padded = flat[:size].reshape(N, C, geo.Hp, geo.Wp)
    if unpadded:
        return padded
    return padded[:, :, geo.pt:geo.pt + H, geo.pl:geo.pl + W].copy()


def _conv2d_weight_grad_impl(x, g, *, kernel_size, stride, padding, dilation, groups):
    w_shape = (g.shape[1], x.shape[1] // max(groups, 1), *kernel_size)
    geo = conv_geometry("conv2d_weight_grad", x.shape, w_shape, stride, padding, dilation, groups)
    _check_cotangent("conv2d_weight_grad", geo, g.shape, "input and kernel size")
    if geo.N == 0 or 0 in w_shape:
        return np.zeros(w_shape, x.dtype)
    case = _gemm_case(geo)
    if case == "full":
        return (g.reshape(geo.N, geo.O).T @ x.reshape(geo.N, -1)).reshape(w_shape)
    if case == "1x1":
        xs = _strided_input(x, geo)                                   # (N, C, L)
        gm = g.reshape(geo.N, geo.O, -1)                              # (N, O, L)
        return np.matmul(gm.transpose(1, 0, 2).reshape(geo.O, -1),
                         xs.transpose(0, 2, 1).reshape(-1, geo.C)).reshape(w_shape)
    fast = _native("weight_grad", geo, x, g)
    if fast is not None:
        return fast
    flat = _padded("input", x, geo)
    dw = None
    for n0, n1 in _chunks(geo, x.itemsize):
        cols = _im2col(flat, geo, n0, n1)                                         # (G, Kg, L)
        gt = _grad_channels_first(g, geo, n0, n1)                                 # (G, O/G, L)
        part = np.matmul(gt, cols.transpose(0, 2, 1))                             # (G, O/G, Kg)
        dw = part if dw is None else np.add(dw, part, out=dw)
    return dw.reshape(w_shape)


# =================================================================================== primitives
def _conv_attrs(attrs: dict) -> dict:
    return {k: attrs[k] for k in ("stride", "padding", "dilation", "groups")}


def _infer_conv2d(x: Spec, w: Spec, *, stride, padding, dilation, groups) -> Spec:
    dtype = _require_float_same("conv2d", x, w)
    geo = conv_geometry("conv2d", x.shape, w.shape, stride, padding, dilation, groups)
    return Spec(geo.out_shape, dtype)


def _conv2d_vjp(ctx, g):
    x, w = ctx.inputs
    attrs = ctx.attrs
    gx = (apply(CONV2D_INPUT_GRAD, g, w, input_size=tuple(x.shape[2:]), **attrs)
          if ctx.needs[0] else None)
    gw = (apply(CONV2D_WEIGHT_GRAD, x, g, kernel_size=tuple(w.shape[2:]), **attrs)
          if ctx.needs[1] else None)
    return gx, gw


def _conv2d_jvp(ctx, t):
    x, w = ctx.inputs
    tx, tw = t
    return add_tangents(None if tx is None else apply(CONV2D, tx, w, **ctx.attrs),
                        None if tw is None else apply(CONV2D, x, tw, **ctx.attrs))


CONV2D = defprim("conv2d", _conv2d_impl, _infer_conv2d, vjp=_conv2d_vjp, jvp=_conv2d_jvp,
                 saved_inputs=other_inputs,
                 doc="2-d cross-correlation: (N, C, H, W) x (O, C/groups, kh, kw) -> (N, O, Ho, Wo)")


def _infer_conv2d_input_grad(g: Spec, w: Spec, *, input_size, stride, padding, dilation, groups) -> Spec:
    dtype = _require_float_same("conv2d_input_grad", g, w)
    if len(g.shape) != 4 or len(w.shape) != 4:
        raise op_error("conv2d_input_grad", "expects a 4-d grad_output and a 4-d weight",
                       actual=f"grad_output {tuple(g.shape)}, weight {tuple(w.shape)}")
    x_shape = (g.shape[0], w.shape[1] * groups, *input_size)
    geo = conv_geometry("conv2d_input_grad", x_shape, w.shape, stride, padding, dilation, groups)
    _check_cotangent("conv2d_input_grad", geo, g.shape, "weight and input size")
    return Spec(x_shape, dtype)


def _input_grad_vjp(ctx, c):
    g, w = ctx.inputs
    attrs = _conv_attrs(ctx.attrs)
    dg = apply(CONV2D, c, w, **attrs) if ctx.needs[0] else None
    dw = apply(CONV2D_WEIGHT_GRAD, c, g, kernel_size=tuple(w.shape[2:]), **attrs) if ctx.needs[1] else None
    return dg, dw


def _input_grad_jvp(ctx, t):
    g, w = ctx.inputs
    tg, tw = t
    return add_tangents(None if tg is None else apply(CONV2D_INPUT_GRAD, tg, w, **ctx.attrs),
                        None if tw is None else apply(CONV2D_INPUT_GRAD, g, tw, **ctx.attrs))


CONV2D_INPUT_GRAD = defprim("conv2d_input_grad", _conv2d_input_grad_impl, _infer_conv2d_input_grad,
                            vjp=_input_grad_vjp, jvp=_input_grad_jvp, saved_inputs=other_inputs,
                            doc="adjoint of conv2d in its input (transposed convolution)")


def _infer_conv2d_weight_grad(x: Spec, g: Spec, *, kernel_size, stride, padding, dilation, groups) -> Spec:
    dtype = _require_float_same("conv2d_weight_grad", x, g)
    if len(x.shape) != 4 or len(g.shape) != 4:
        raise op_error("conv2d_weight_grad", "expects a 4-d input and a 4-d grad_output",
                       actual=f"input {tuple(x.shape)}, grad_output {tuple(g.shape)}")
    w_shape = (g.shape[1], x.shape[1] // max(groups, 1), *kernel_size)
    geo = conv_geometry("conv2d_weight_grad", x.shape, w_shape, stride, padding, dilation, groups)
    _check_cotangent("conv2d_weight_grad", geo, g.shape, "input and kernel size")
    return Spec(w_shape, dtype)


def _weight_grad_vjp(ctx, c):
    x, g = ctx.inputs
    attrs = _conv_attrs(ctx.attrs)
    dx = apply(CONV2D_INPUT_GRAD, g, c, input_size=tuple(x.shape[2:]), **attrs) if ctx.needs[0] else None
    dg = apply(CONV2D, x, c, **attrs) if ctx.needs[1] else None
    return dx, dg


def _weight_grad_jvp(ctx, t):
    x, g = ctx.inputs
    tx, tg = t
    return add_tangents(None if tx is None else apply(CONV2D_WEIGHT_GRAD, tx, g, **ctx.attrs),
                        None if tg is None else apply(CONV2D_WEIGHT_GRAD, x, tg, **ctx.attrs))


CONV2D_WEIGHT_GRAD = defprim("conv2d_weight_grad", _conv2d_weight_grad_impl, _infer_conv2d_weight_grad,
                             vjp=_weight_grad_vjp, jvp=_weight_grad_jvp, saved_inputs=other_inputs,
                             doc="adjoint of conv2d in its weight")


# ================================================================================ public: conv
def _unbatched(op: str, x: Tensor, batched_ndim: int) -> tuple[Tensor, bool]:
    """torch accepts unbatched inputs (one dim fewer): add the batch dim and remember to drop it."""
    from .shape import unsqueeze
    _check_ndim(op, x, (batched_ndim - 1, batched_ndim), "input")
    if x._data.ndim == batched_ndim - 1:
        return unsqueeze(x, 0), True
    return x, False


def _add_bias(op: str, out: Tensor, bias: Tensor | None, ndim: int) -> Tensor:
    if bias is None:
        return out
    from .shape import reshape
    if bias._data.shape != (out._data.shape[1],):
        raise op_error(op, "bias must be 1-d with one entry per output channel",
                       expect=f"bias of shape ({out._data.shape[1]},)", actual=f"bias {tuple(bias.shape)}")
    return out + reshape(bias, (1, -1) + (1,) * (ndim - 2))


def conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1, padding: Any = 0,
           dilation: Any = 1, groups: int = 1) -> Tensor:
    """2-d convolution (cross-correlation) over ``(N, C, H, W)`` or unbatched ``(C, H, W)`` input.

    ``weight`` is ``(O, C/groups, kh, kw)``; ``padding`` is an int, a pair, ``'same'`` (stride 1
    only; an odd total puts the extra row/column at the end, like torch) or ``'valid'``.

    >>> import suanli
    >>> x = suanli.ones(1, 2, 3, 3)
    >>> conv2d(x, suanli.ones(4, 2, 3, 3), padding="same").shape
    (1, 4, 3, 3)
    >>> conv2d(x, suanli.ones(2, 1, 2, 2), suanli.tensor([0.0, 1.0]), groups=2)[0, :, 0, 0].tolist()
    [4.0, 5.0]
    """
    input, weight, bias = _check_float_pair("conv2d", input, weight, bias)
    _check_ndim("conv2d", weight, (4,), "weight")
    x, unbatched = _unbatched("conv2d", input, 4)
    stride = _ints("conv2d", "stride", stride)
    dilation = _ints("conv2d", "dilation", dilation)
    _positive("conv2d", stride=stride, dilation=dilation, groups=(groups,))
    pads = _conv_padding("conv2d", padding, tuple(weight.shape[2:]), stride, dilation)
    out = apply(CONV2D, x, weight, stride=stride, padding=pads, dilation=dilation, groups=int(groups))
    out = _add_bias("conv2d", out, bias, 4)
    return out.squeeze(0) if unbatched else out


def conv1d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1, padding: Any = 0,
           dilation: Any = 1, groups: int = 1) -> Tensor:
    """1-d convolution over ``(N, C, L)`` or ``(C, L)``; weight ``(O, C/groups, k)`` (a conv2d of height 1).

    >>> import suanli
    >>> conv1d(suanli.tensor([[[1.0, 2.0, 3.0, 4.0]]]), suanli.tensor([[[1.0, -1.0]]])).tolist()
    [[[-1.0, -1.0, -1.0]]]
    """
    from .shape import unsqueeze
    input, weight, bias = _check_float_pair("conv1d", input, weight, bias)
    _check_ndim("conv1d", weight, (3,), "weight")
    x, unbatched = _unbatched("conv1d", input, 3)
    (s,), (d,) = _ints("conv1d", "stride", stride, 1), _ints("conv1d", "dilation", dilation, 1)
    _positive("conv1d", stride=(s,), dilation=(d,), groups=(groups,))
    (pads,) = _conv_padding("conv1d", padding, tuple(weight.shape[2:]), (s,), (d,))
    _conv1d_channels("conv1d", x, weight, groups)
    out = apply(CONV2D, unsqueeze(x, 2), unsqueeze(weight, 2), stride=(1, s), padding=((0, 0), pads),
                dilation=(1, d), groups=int(groups))
    out = _add_bias("conv1d", out.squeeze(2), bias, 3)
    return out.squeeze(0) if unbatched else out


def _conv1d_channels(op: str, x: Tensor, w: Tensor, groups: int, transposed: bool = False) -> None:
    """Channel check with the 1-d shapes in the message (the conv2d check would show 4-d ones)."""
    C = x._data.shape[1]
    ok = (C == w._data.shape[0] and C % groups == 0) if transposed else \
         (C == w._data.shape[1] * groups and w._data.shape[0] % groups == 0)
    if not ok:
        expect = ("input.shape[1] == weight.shape[0], divisible by groups" if transposed else
                  "input.shape[1] == weight.shape[1] * groups and weight.shape[0] % groups == 0")
        raise op_error(op, "input channels do not match the weight", expect=expect,
                       actual=f"input {tuple(x.shape)}, weight {tuple(w.shape)}, groups={groups}",
                       hint="check in_channels/out_channels of the layer and the groups argument")


def _transposed_input_size(op: str, in_size: tuple[int, ...], kernel: tuple[int, ...], stride, padding,
                           output_padding, dilation) -> tuple[int, ...]:
    for op_, s, d in zip(output_padding, stride, dilation):
        if op_ < 0 or op_ >= max(s, d):
            raise op_error(op, "output padding must be smaller than either stride or dilation",
                           actual=f"output_padding={output_padding}, stride={stride}, dilation={dilation}",
                           cls=ValueError)  # type: ignore[arg-type]
    size = tuple((n - 1) * s - 2 * p + d * (k - 1) + op_ + 1
                 for n, k, s, p, op_, d in zip(in_size, kernel, stride, padding, output_padding, dilation))
    if any(n <= 0 for n in size):
        raise op_error(op, "the output size would be empty",
                       actual=f"input size {in_size}, kernel {kernel}, stride {stride}, padding {padding} "
                              f"give output size {size}", hint="reduce padding")
    return size


def conv_transpose2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1,
                     padding: Any = 0, output_padding: Any = 0, groups: int = 1, dilation: Any = 1) -> Tensor:
    """Transposed 2-d convolution (the adjoint of :func:`conv2d` in its input); weight
    ``(C_in, C_out/groups, kh, kw)`` -- exactly conv2d's weight layout seen from the other side.

    >>> import suanli
    >>> conv_transpose2d(suanli.ones(1, 1, 2, 2), suanli.ones(1, 1, 2, 2), stride=2).shape
    (1, 1, 4, 4)
    >>> conv_transpose2d(suanli.ones(1, 1, 2, 2), suanli.ones(1, 1, 2, 2))[0, 0].tolist()
    [[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]
    """
    input, weight, bias = _check_float_pair("conv_transpose2d", input, weight, bias)
    _check_ndim("conv_transpose2d", weight, (4,), "weight")
    x, unbatched = _unbatched("conv_transpose2d", input, 4)
    out = _conv_transpose(x, weight, stride, padding, output_padding, groups, dilation, "conv_transpose2d")
    out = _add_bias("conv_transpose2d", out, bias, 4)
    return out.squeeze(0) if unbatched else out


def _conv_transpose(x: Tensor, weight: Tensor, stride, padding, output_padding, groups, dilation,
                    op: str) -> Tensor:
    from .shape import pad as _pad
    stride = _ints(op, "stride", stride)
    dilation = _ints(op, "dilation", dilation)
    pads = _ints(op, "padding", padding)
    output_padding = _ints(op, "output_padding", output_padding)
    _positive(op, stride=stride, dilation=dilation, groups=(groups,))
    if min(pads) < 0:
        raise op_error(op, "negative padding is not supported", actual=f"padding={pads}", cls=ValueError)  # type: ignore[arg-type]
    C_in = x._data.shape[1]
    if C_in != weight._data.shape[0] or C_in % groups:
        raise op_error(op, "input channels do not match the weight",
                       expect="input.shape[1] == weight.shape[0], divisible by groups",
                       actual=f"input {tuple(x.shape)}, weight {tuple(weight.shape)}, groups={groups}",
                       hint="the weight of a transposed convolution is (C_in, C_out/groups, kh, kw)")
    kernel = tuple(weight._data.shape[2:])
    size = _transposed_input_size(op, tuple(x._data.shape[2:]), kernel, stride, pads, output_padding, dilation)
    # an output_padding >= stride (allowed when dilation is larger) adds whole zero rows of the
    # adjoint's cotangent: conv2d over `size` has that many more output rows than `x`
    extra = [op_ // s for op_, s in zip(output_padding, stride)]
    if any(extra):
        x = _pad(x, (0, extra[1], 0, extra[0]))
    return apply(CONV2D_INPUT_GRAD, x, weight, input_size=size, stride=stride,
                 padding=tuple((p, p) for p in pads), dilation=dilation, groups=int(groups))


def conv_transpose1d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1,
                     padding: Any = 0, output_padding: Any = 0, groups: int = 1, dilation: Any = 1) -> Tensor:
    """Transposed 1-d convolution over ``(N, C_in, L)``; weight ``(C_in, C_out/groups, k)``.

    >>> import suanli
    >>> conv_transpose1d(suanli.tensor([[[1.0, 2.0]]]), suanli.tensor([[[1.0, 1.0]]])).tolist()
    [[[1.0, 3.0, 2.0]]]
    """
    from .shape import unsqueeze
    input, weight, bias = _check_float_pair("conv_transpose1d", input, weight, bias)
    _check_ndim("conv_transpose1d", weight, (3,), "weight")
    x, unbatched = _unbatched("conv_transpose1d", input, 3)
    _conv1d_channels("conv_transpose1d", x, weight, groups, transposed=True)

    def one(v: Any, name: str, fill: int) -> tuple[int, int]:
        return (fill, _ints("conv_transpose1d", name, v, 1)[0])
    out = _conv_transpose(unsqueeze(x, 2), unsqueeze(weight, 2), one(stride, "stride", 1),
                          one(padding, "padding", 0), one(output_padding, "output_padding", 0), groups,
                          one(dilation, "dilation", 1), "conv_transpose1d")
    out = _add_bias("conv_transpose1d", out.squeeze(2), bias, 3)
    return out.squeeze(0) if unbatched else out


# ================================================================================ pooling: shapes
class PoolGeometry(NamedTuple):
    Ho: int
    Wo: int
    pb: int   # bottom/right padding that makes every (ceil_mode) window fit
    pr: int


def _pool_out_size(n: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """torch's ``pooling_output_shape``: the last window must start inside the input or left padding."""
    out = (n + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1
    return out


def pool_geometry(op: str, shape: Sequence[int], kernel_size, stride, padding, dilation,
                  ceil_mode: bool) -> PoolGeometry:
    """Validate a 2-d pooling problem (torch's rules and messages) and derive its sizes."""
    if len(shape) != 4:
        raise op_error(op, "expects a 4-d input (N, C, H, W)", actual=f"input {tuple(shape)}")
    _positive(op, kernel_size=kernel_size, stride=stride, dilation=dilation)
    H, W = shape[2], shape[3]
    if any(p < 0 or p > k // 2 for p, k in zip(padding, kernel_size)):
        raise op_error(op, "pad should be at most half of effective kernel size",
                       actual=f"padding={padding}, kernel_size={kernel_size}, dilation={dilation}",
                       cls=ValueError)  # type: ignore[arg-type]
    Ho, Wo = (_pool_out_size(n, k, s, p, d, ceil_mode)
              for n, k, s, p, d in zip((H, W), kernel_size, stride, padding, dilation))
    if Ho < 1 or Wo < 1:
        raise op_error(op, "output size is too small",
                       actual=f"input {tuple(shape)}, kernel_size={kernel_size}, stride={stride}, "
                              f"padding={padding}, dilation={dilation} give output ({Ho}, {Wo})",
                       hint="use a smaller kernel or more padding")
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel_size, stride, padding, dilation
    pb = max(0, (Ho - 1) * sh + dh * (kh - 1) + 1 - H - ph)
    pr = max(0, (Wo - 1) * sw + dw * (kw - 1) + 1 - W - pw)
    return PoolGeometry(Ho, Wo, pb, pr)


def _pool_args(op: str, kernel_size, stride, padding, dilation, n: int = 2) -> tuple:
    kernel_size = _ints(op, "kernel_size", kernel_size, n)
    if stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0):   # torch: [] = default
        stride = kernel_size
    else:
        stride = _ints(op, "stride", stride, n)
    return kernel_size, stride, _ints(op, "padding", padding, n), _ints(op, "dilation", dilation, n)


# ============================================================================ pooling: max pool
def _max_windows(x: np.ndarray, kernel_size, stride, padding, dilation, geo: PoolGeometry):
    """Yield ``((i, j), window)``: the ``(N, C, Ho, Wo)`` strided slice at kernel position ``(i, j)``
    of the ``-inf``-padded input."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel_size, stride, padding, dilation
    N, C, H, W = x.shape
    if ph or pw or geo.pb or geo.pr:
        xp = _ws.get("pool", N * C * (H + ph + geo.pb) * (W + pw + geo.pr), x.dtype)
        xp = xp.reshape(N, C, H + ph + geo.pb, W + pw + geo.pr)
        xp.fill(-np.inf)
        xp[:, :, ph:ph + H, pw:pw + W] = x
    else:
        xp = x
    for i in range(kh):
        for j in range(kw):
            yield (i, j), xp[:, :, i * dh:i * dh + (geo.Ho - 1) * sh + 1:sh,
                             j * dw:j * dw + (geo.Wo - 1) * sw + 1:sw]


def _max_pool2d_impl(x, *, kernel_size, stride, padding, dilation, ceil_mode):
    geo = pool_geometry("max_pool2d", x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    out = None
    for _, window in _max_windows(x, kernel_size, stride, padding, dilation, geo):
        if out is None:
            out = window.copy()
        else:
            np.maximum(out, window, out=out)      # propagates NaN, as torch does
    return out


def _max_pool2d_indices_impl(x, *, kernel_size, stride, padding, dilation, ceil_mode):
    """torch's argmax: scan the window row-major, take a value if ``> max`` or NaN, starting from
    the window's first in-bounds position; indices are flat ``h * W + w`` in each input plane."""
    geo = pool_geometry("max_pool2d", x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    W = x.shape[3]
    shape = (x.shape[0], x.shape[1], geo.Ho, geo.Wo)
    top, left = np.arange(geo.Ho) * sh - ph, np.arange(geo.Wo) * sw - pw     # window origins
    i0, j0 = -(np.minimum(top, 0) // dh), -(np.minimum(left, 0) // dw)      # first in-bounds steps
    small = np.int32 if x.shape[2] * W < 2 ** 31 else np.int64
    offset = np.empty(shape, small)                # argmax position relative to the window origin
    offset[...] = (i0 * dh * W)[:, None] + (j0 * dw)[None, :]
    best = np.full(shape, -np.inf, x.dtype)
    take, step = np.empty(shape, bool), np.empty(shape, small)
    for (i, j), window in _max_windows(x, kernel_size, stride, padding, dilation, geo):
        np.greater(window, best, out=take)
        take |= np.isnan(window)
        np.maximum(best, window, out=best)
        # offset = take ? here : offset, branch-free (masked copies are slow on random masks)
        np.subtract(i * dh * W + j * dw, offset, out=step)
        step *= take
        offset += step
    return offset + ((top * W)[:, None] + left[None, :]).astype(np.int64)


def _infer_max_pool2d(x: Spec, *, kernel_size, stride, padding, dilation, ceil_mode) -> Spec:
    if x.dtype not in _dt.FLOATING:
        raise op_error("max_pool2d", "expects a floating-point input", actual=spec_str(x), cls=DTypeError)
    geo = pool_geometry("max_pool2d", x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    return Spec((x.shape[0], x.shape[1], geo.Ho, geo.Wo), x.dtype)


def _infer_max_pool2d_indices(x: Spec, **attrs) -> Spec:
    return Spec(_infer_max_pool2d(x, **attrs).shape, np.dtype(np.int64))


MAX_POOL2D_INDICES = defprim("max_pool2d_indices", _max_pool2d_indices_impl, _infer_max_pool2d_indices,
                             differentiable=False, doc="torch's argmax indices of max_pool2d (h * W + w)")


def _windows_overlap(kernel_size, stride, dilation) -> bool:
    """Can two pooling windows pick the same input position?"""
    return any(s < d * (k - 1) + 1 for k, s, d in zip(kernel_size, stride, dilation))


def _max_pool2d_vjp(ctx, g):
    x, a = ctx.inputs[0], ctx.attrs
    idx = apply(MAX_POOL2D_INDICES, x, **a)
    return (apply(MAX_POOL2D_SCATTER, g, idx, input_size=tuple(x.shape[2:]),
                  overlapping=_windows_overlap(a["kernel_size"], a["stride"], a["dilation"])),)


def _max_pool2d_jvp(ctx, t):
    a = ctx.attrs
    idx = apply(MAX_POOL2D_INDICES, ctx.inputs[0], **a)
    return apply(MAX_POOL2D_GATHER, t[0], idx,
                 overlapping=_windows_overlap(a["kernel_size"], a["stride"], a["dilation"]))


MAX_POOL2D = defprim("max_pool2d", _max_pool2d_impl, _infer_max_pool2d, vjp=_max_pool2d_vjp,
                     jvp=_max_pool2d_jvp, doc="2-d max pooling (values; -inf padding)")


def _only_indices(needs: tuple[bool, ...]) -> tuple[int, ...]:
    """Gather/scatter are linear in their first input: the rules read only the indices."""
    return (1,)


# The pair below carries ``overlapping`` (can two outputs pick one input position?) so that the
# scatter knows whether a plain indexed store suffices; the gather itself does not use it.
def _gather_impl(x, idx, *, overlapping):
    N, C, H, W = x.shape
    planes = np.take_along_axis(x.reshape(N * C, H * W), idx.reshape(N * C, -1), axis=1)
    return planes.reshape(idx.shape)


def _infer_gather(x: Spec, idx: Spec, *, overlapping) -> Spec:
    if len(x.shape) != 4 or len(idx.shape) != 4 or tuple(x.shape[:2]) != tuple(idx.shape[:2]) \
            or idx.dtype != np.int64:
        raise op_error("max_pool2d_gather", "expects (N, C, H, W) values and (N, C, Ho, Wo) int64 indices",
                       actual=spec_str(x, idx))
    return Spec(tuple(idx.shape), x.dtype)


def _gather_vjp(ctx, g):
    x, idx = ctx.inputs
    return apply(MAX_POOL2D_SCATTER, g, idx, input_size=tuple(x.shape[2:]), **ctx.attrs), None


def _gather_jvp(ctx, t):
    return None if t[0] is None else apply(MAX_POOL2D_GATHER, t[0], ctx.inputs[1], **ctx.attrs)


def _scatter_impl(g, idx, *, input_size, overlapping):
    """Sum ``g`` into zero planes at ``idx``. Disjoint windows pick each position at most once, so a
    plain indexed store does; overlapping windows may pick one position twice and need a sum
    (``bincount``, float64 accumulation)."""
    N, C = g.shape[:2]
    plane = input_size[0] * input_size[1]
    if not overlapping:
        out = np.zeros((N * C, plane), g.dtype)
        np.put_along_axis(out, idx.reshape(N * C, -1), g.reshape(N * C, -1), axis=1)
        return out.reshape(N, C, *input_size)
    flat = (idx.reshape(N * C, -1) + np.arange(N * C)[:, None] * plane).ravel()
    out = np.bincount(flat, weights=g.reshape(-1), minlength=N * C * plane)
    return out.astype(g.dtype, copy=False).reshape(N, C, *input_size)


def _infer_scatter(g: Spec, idx: Spec, *, input_size, overlapping) -> Spec:
    if len(g.shape) != 4 or tuple(g.shape) != tuple(idx.shape) or idx.dtype != np.int64:
        raise op_error("max_pool2d_scatter", "expects (N, C, Ho, Wo) values and int64 indices of that shape",
                       actual=spec_str(g, idx))
    return Spec((g.shape[0], g.shape[1], *input_size), g.dtype)


def _scatter_vjp(ctx, c):
    return apply(MAX_POOL2D_GATHER, c, ctx.inputs[1], overlapping=ctx.attrs["overlapping"]), None


def _scatter_jvp(ctx, t):
    return None if t[0] is None else apply(MAX_POOL2D_SCATTER, t[0], ctx.inputs[1], **ctx.attrs)


MAX_POOL2D_GATHER = defprim("max_pool2d_gather", _gather_impl, _infer_gather, vjp=_gather_vjp,
                            jvp=_gather_jvp, saved_inputs=_only_indices,
                            doc="x[n, c].flat[idx[n, c]]: the values at pooling indices (linear in x)")
MAX_POOL2D_SCATTER = defprim("max_pool2d_scatter", _scatter_impl, _infer_scatter, vjp=_scatter_vjp,
                             jvp=_scatter_jvp, saved_inputs=_only_indices,
                             doc="adjoint of max_pool2d_gather: sums g into zeros at the indices")


def _pool2d_input(op: str, input: Tensor) -> tuple[Tensor, bool]:
    if not isinstance(input, Tensor):
        raise op_error(op, "input must be a Tensor", actual=type(input).__name__, cls=TypeError)  # type: ignore[arg-type]
    return _unbatched(op, input, 4)


def max_pool2d(input: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
               ceil_mode: bool = False, return_indices: bool = False) -> Any:
    """2-d max pooling over ``(N, C, H, W)`` or ``(C, H, W)``; ``stride`` defaults to ``kernel_size``.

    Padding counts as ``-inf``. With ``return_indices`` also returns torch's argmax indices (flat
    ``h * W + w`` per plane, the first maximum of each window; NaN wins).

    >>> import suanli
    >>> x = suanli.tensor([[[[1.0, 3.0], [3.0, 2.0]]]])
    >>> values, idx = max_pool2d(x, 2, return_indices=True)
    >>> values.tolist(), idx.tolist()
    ([[[[3.0]]]], [[[[1]]]])
    """
    x, unbatched = _pool2d_input("max_pool2d", input)
    kernel_size, stride, padding, dilation = _pool_args("max_pool2d", kernel_size, stride, padding, dilation)
    attrs = dict(kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation,
                 ceil_mode=bool(ceil_mode))
    _infer_max_pool2d(Spec(x._data.shape, x._data.dtype), **attrs)
    out = apply(MAX_POOL2D, x, **attrs)
    if not return_indices:
        return out.squeeze(0) if unbatched else out
    idx = apply(MAX_POOL2D_INDICES, x, **attrs)
    return (out.squeeze(0), idx.squeeze(0)) if unbatched else (out, idx)


def max_pool1d(input: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
               ceil_mode: bool = False, return_indices: bool = False) -> Any:
    """1-d max pooling over ``(N, C, L)`` or ``(C, L)`` (a max_pool2d of height 1).

    >>> import suanli
    >>> max_pool1d(suanli.tensor([[[1.0, 5.0, 2.0, 0.0]]]), 2).tolist()
    [[[5.0, 2.0]]]
    """
    from .shape import unsqueeze
    x, unbatched = _unbatched("max_pool1d", input, 3)
    k, s, p, d = _pool_args("max_pool1d", kernel_size, stride, padding, dilation, n=1)
    res = max_pool2d(unsqueeze(x, 2), (1, k[0]), (1, s[0]), (0, p[0]), (1, d[0]), ceil_mode, return_indices)
    res = tuple(r.squeeze(2) for r in res) if return_indices else (res.squeeze(2),)
    if unbatched:
        res = tuple(r.squeeze(0) for r in res)
    return res if return_indices else res[0]


# ============================================================================ pooling: avg pool
def avg_pool2d(input: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override: int | None = None) -> Tensor:
    """2-d average pooling with torch's divisor rules (``count_include_pad``, ``ceil_mode`` windows
    clipped to the padded input, ``divisor_override``). A composite: window sums by a convolution
    with a constant kernel, divided by a constant divisor map.

    >>> import suanli
    >>> x = suanli.arange(9.0).reshape(1, 1, 3, 3)
    >>> avg_pool2d(x, 2, ceil_mode=True).tolist()
    [[[[2.0, 3.5], [6.5, 8.0]]]]
    >>> avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)[0, 0, 0].tolist()
    [2.0, 2.5, 3.0]
    """
    from .shape import reshape
    x, unbatched = _pool2d_input("avg_pool2d", input)
    if x._data.dtype not in _dt.FLOATING:
        raise op_error("avg_pool2d", "expects a floating-point input", actual=f"input {x.dtype}", cls=DTypeError)
    kernel_size, stride, padding, _ = _pool_args("avg_pool2d", kernel_size, stride, padding, 1)
    N, C, H, W = x._data.shape
    geo = pool_geometry("avg_pool2d", x._data.shape, kernel_size, stride, padding, (1, 1), ceil_mode)
    if divisor_override is not None and divisor_override == 0:
        raise op_error("avg_pool2d", "divisor must be not zero", cls=ValueError)  # type: ignore[arg-type]
    dtype = x._data.dtype
    if stride == kernel_size and padding == (0, 0) and divisor_override is None and not ceil_mode:
        out = _tiled_mean(x, kernel_size, geo.Ho, geo.Wo)
        return out.squeeze(0) if unbatched else out
    ones = _wrap(np.ones((1, 1) + kernel_size, dtype))
    pads = ((padding[0], geo.pb), (padding[1], geo.pr))
    sums = apply(CONV2D, reshape(x, (N * C, 1, H, W)), ones, stride=stride, padding=pads, dilation=(1, 1),
                 groups=1)
    if divisor_override is not None:
        divisor = np.asarray(divisor_override, dtype)
    else:
        counts = [_window_counts(n, k, s, p, o, count_include_pad)
                  for n, k, s, p, o in zip((H, W), kernel_size, stride, padding, (geo.Ho, geo.Wo))]
        divisor = np.multiply.outer(*counts).astype(dtype)
    out = reshape(sums / _wrap(divisor), (N, C, geo.Ho, geo.Wo))
    return out.squeeze(0) if unbatched else out


def _tiled_mean(x: Tensor, kernel_size: tuple[int, int], Ho: int, Wo: int) -> Tensor:
    """Non-overlapping windows (stride == kernel, no padding): kh*kw strided adds instead of the
    window-sum convolution -- the same windows, ~10x cheaper."""
    return apply(AVG_POOL2D_TILES, x, kernel_size=tuple(kernel_size))


def _avg_tiles_impl(x, *, kernel_size):
    kh, kw = kernel_size
    Ho, Wo = x.shape[-2] // kh, x.shape[-1] // kw
    if x.shape[-2:] == (Ho * kh, Wo * kw) and x.flags.c_contiguous and x.size:
        # tiles exactly cover the planes: sum the kh rows of each tile row as (M, Wo, kw) slabs,
        # then the kw columns -- contiguous adds, ~30% faster than kh * kw strided ones (LeNet S2)
        rows = x.reshape(-1, kh, Wo, kw)
        acc = rows[:, 0] + rows[:, 1] if kh > 1 else rows[:, 0].copy()
        for i in range(2, kh):
            acc += rows[:, i]
        out = acc[..., 0] + acc[..., 1] if kw > 1 else acc[..., 0].copy()
        for j in range(2, kw):
            out += acc[..., j]
        out *= out.dtype.type(1.0 / (kh * kw))
        return out.reshape(*x.shape[:-2], Ho, Wo)
    out = np.array(x[..., 0:Ho * kh:kh, 0:Wo * kw:kw])
    for i in range(kh):
        for j in range(kw):
            if i or j:
                out += x[..., i:Ho * kh:kh, j:Wo * kw:kw]
    out *= out.dtype.type(1.0 / (kh * kw))
    return out


def _avg_tiles_grad_impl(g, *, kernel_size, input_size):
    kh, kw = kernel_size
    H, W = input_size
    Ho, Wo = g.shape[-2:]
    if (H, W) == (Ho * kh, Wo * kw):       # two np.repeat passes beat kh * kw strided stores by ~25%
        share = g * g.dtype.type(1.0 / (kh * kw))
        return np.repeat(np.repeat(share, kw, axis=-1), kh, axis=-2)
    out = np.empty(g.shape[:-2] + (H, W), g.dtype)
    if (H, W) != (Ho * kh, Wo * kw):
        out[..., Ho * kh:, :] = 0
        out[..., :, Wo * kw:] = 0
    share = g * g.dtype.type(1.0 / (kh * kw))
    for i in range(kh):
        for j in range(kw):
            out[..., i:Ho * kh:kh, j:Wo * kw:kw] = share
    return out


def _infer_avg_tiles(x: Spec, *, kernel_size) -> Spec:
    if len(x.shape) != 4 or x.dtype not in _dt.FLOATING:
        raise op_error("avg_pool2d_tiles", "expects a floating (N, C, H, W) input", actual=spec_str(x))
    kh, kw = kernel_size
    return Spec((*x.shape[:2], x.shape[2] // kh, x.shape[3] // kw), x.dtype)


def _infer_avg_tiles_grad(g: Spec, *, kernel_size, input_size) -> Spec:
    if len(g.shape) != 4 or g.dtype not in _dt.FLOATING:
        raise op_error("avg_pool2d_tiles_grad", "expects a floating (N, C, Ho, Wo) cotangent", actual=spec_str(g))
    return Spec((*g.shape[:2], *input_size), g.dtype)


def _avg_tiles_vjp(ctx, g):
    return (apply(AVG_POOL2D_TILES_GRAD, g, kernel_size=ctx.attrs["kernel_size"],
                  input_size=tuple(ctx.inputs[0].shape[-2:])),)


def _avg_tiles_jvp(ctx, t):
    return apply(AVG_POOL2D_TILES, t[0], **ctx.attrs)


def _avg_tiles_grad_vjp(ctx, c):
    return (apply(AVG_POOL2D_TILES, c, kernel_size=ctx.attrs["kernel_size"]),)


def _avg_tiles_grad_jvp(ctx, t):
    return apply(AVG_POOL2D_TILES_GRAD, t[0], **ctx.attrs)


AVG_POOL2D_TILES = defprim("avg_pool2d_tiles", _avg_tiles_impl, _infer_avg_tiles, vjp=_avg_tiles_vjp,
                           jvp=_avg_tiles_jvp, save_inputs=False,
                           doc="average of non-overlapping kh x kw tiles (avg_pool2d, stride == kernel, no padding)")
AVG_POOL2D_TILES_GRAD = defprim("avg_pool2d_tiles_grad", _avg_tiles_grad_impl, _infer_avg_tiles_grad,
                                vjp=_avg_tiles_grad_vjp, jvp=_avg_tiles_grad_jvp, save_inputs=False,
                                doc="adjoint of avg_pool2d_tiles: each cotangent spread evenly over its tile")


def _window_counts(n: int, k: int, s: int, p: int, out: int, count_include_pad: bool) -> np.ndarray:
    """Per-axis window sizes torch divides by (windows are clipped to the padded input, and to the
    input itself when padding is not counted)."""
    start = np.arange(out) * s - p
    end = np.minimum(start + k, n + p)
    if count_include_pad:
        return end - start
    return np.minimum(end, n) - np.maximum(start, 0)


def avg_pool1d(input: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False,
               count_include_pad: bool = True) -> Tensor:
    """1-d average pooling over ``(N, C, L)`` or ``(C, L)``.

    >>> import suanli
    >>> avg_pool1d(suanli.tensor([[[1.0, 3.0, 5.0, 7.0]]]), 2).tolist()
    [[[2.0, 6.0]]]
    """
    from .shape import unsqueeze
    x, unbatched = _unbatched("avg_pool1d", input, 3)
    k, s, p, _ = _pool_args("avg_pool1d", kernel_size, stride, padding, 1, n=1)
    out = avg_pool2d(unsqueeze(x, 2), (1, k[0]), (1, s[0]), (0, p[0]), ceil_mode, count_include_pad).squeeze(2)
    return out.squeeze(0) if unbatched else out


# ======================================================================= pooling: adaptive pools
def _adaptive_bounds(n: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """torch's adaptive windows: ``[floor(i * n / out), ceil((i + 1) * n / out))``."""
    i = np.arange(out)
    return (i * n) // out, -((-(i + 1) * n) // out)


@functools.lru_cache(maxsize=64)
def _averaging_matrix(n: int, out: int, dtype: np.dtype) -> np.ndarray:
    """``P`` of shape ``(out, n)``: row ``i`` averages torch's adaptive window ``i``."""
    start, end = _adaptive_bounds(n, out)
    cols = np.arange(n)
    inside = (cols[None, :] >= start[:, None]) & (cols[None, :] < end[:, None])
    P = inside / (end - start)[:, None]
    P = P.astype(dtype)
    P.flags.writeable = False
    return P


def _rows_times(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for a tall ``a``; an outer product (inner size 1, the adjoint of a global pool)
    is a broadcast multiply, which BLAS does far slower as a GEMM."""
    return a * b if a.shape[1] == 1 else a @ b


def _apply_plane_matrices(x: np.ndarray, A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``A @ x @ B.T`` over the last two dims, as two GEMMs over all planes at once."""
    lead, (h, w) = x.shape[:-2], x.shape[-2:]
    ho, wo = A.shape[0], B.shape[0]
    y = _rows_times(np.ascontiguousarray(x).reshape(-1, w), B.T)                 # (M * h, wo)
    y = _rows_times(y.reshape(-1, h, wo).transpose(0, 2, 1).reshape(-1, h), A.T)  # (M * wo, ho)
    return np.ascontiguousarray(y.reshape(-1, wo, ho).transpose(0, 2, 1)).reshape(*lead, ho, wo)


def _adaptive_avg_impl(x, *, output_size):
    H, W = x.shape[-2:]
    return _apply_plane_matrices(x, _averaging_matrix(H, output_size[0], x.dtype),
                                 _averaging_matrix(W, output_size[1], x.dtype))


def _adaptive_avg_grad_impl(c, *, input_size):
    Ho, Wo = c.shape[-2:]
    return _apply_plane_matrices(c, _averaging_matrix(input_size[0], Ho, c.dtype).T,
                                 _averaging_matrix(input_size[1], Wo, c.dtype).T)


def _infer_adaptive(op: str, x: Spec, size: tuple[int, int]) -> Spec:
    if len(x.shape) not in (3, 4) or x.dtype not in _dt.FLOATING:
        raise op_error(op, "expects a floating-point 3-d or 4-d input", actual=spec_str(x))
    if min(size) < 0:
        raise op_error(op, "output size must be non-negative", actual=f"size {size}")
    return Spec(tuple(x.shape[:-2]) + tuple(size), x.dtype)


def _infer_adaptive_avg(x: Spec, *, output_size) -> Spec:
    if 0 in tuple(x.shape[-2:]) and min(output_size) > 0:
        raise op_error("adaptive_avg_pool2d", "expects a non-empty input plane", actual=spec_str(x))
    return _infer_adaptive("adaptive_avg_pool2d", x, output_size)


def _infer_adaptive_avg_grad(c: Spec, *, input_size) -> Spec:
    return _infer_adaptive("adaptive_avg_pool2d_grad", c, input_size)


def _adaptive_avg_vjp(ctx, g):
    return (apply(ADAPTIVE_AVG_POOL2D_GRAD, g, input_size=tuple(ctx.inputs[0].shape[-2:])),)


def _adaptive_avg_jvp(ctx, t):
    return apply(ADAPTIVE_AVG_POOL2D, t[0], **ctx.attrs)


def _adaptive_avg_grad_vjp(ctx, c):
    return (apply(ADAPTIVE_AVG_POOL2D, c, output_size=tuple(ctx.inputs[0].shape[-2:])),)


def _adaptive_avg_grad_jvp(ctx, t):
    return apply(ADAPTIVE_AVG_POOL2D_GRAD, t[0], **ctx.attrs)


ADAPTIVE_AVG_POOL2D = defprim("adaptive_avg_pool2d", _adaptive_avg_impl, _infer_adaptive_avg,
                              vjp=_adaptive_avg_vjp, jvp=_adaptive_avg_jvp, save_inputs=False,
                              doc="P_h @ x @ P_w^T with torch's adaptive averaging windows")
ADAPTIVE_AVG_POOL2D_GRAD = defprim("adaptive_avg_pool2d_grad", _adaptive_avg_grad_impl,
                                   _infer_adaptive_avg_grad, vjp=_adaptive_avg_grad_vjp,
                                   jvp=_adaptive_avg_grad_jvp, save_inputs=False,
                                   doc="adjoint of adaptive_avg_pool2d: P_h^T @ g @ P_w")


def _adaptive_size(op: str, output_size: Any, in_size: tuple[int, ...]) -> tuple[int, ...]:
    """An int or a tuple whose ``None`` entries keep the input size."""
    n = len(in_size)
    if output_size is None or isinstance(output_size, (int, np.integer)):
        output_size = (output_size,) * n
    output_size = tuple(output_size)
    if len(output_size) == 1:
        output_size = output_size * n
    if len(output_size) != n:
        raise op_error(op, f"output_size must be an int or a tuple of {n}", actual=f"output_size={output_size}",
                       cls=ValueError)  # type: ignore[arg-type]
    size = tuple(int(i) if o is None else operator.index(o) for o, i in zip(output_size, in_size))
    if any(s < 0 for s in size):
        raise op_error(op, "output_size must be non-negative", actual=f"output_size={output_size}",
                       cls=ValueError)  # type: ignore[arg-type]
    return size


def adaptive_avg_pool2d(input: Tensor, output_size: Any) -> Tensor:
    """Average pooling to a fixed output size (any sizes; windows ``[floor(i*H/Ho), ceil((i+1)*H/Ho))``).

    >>> import suanli
    >>> adaptive_avg_pool2d(suanli.arange(6.0).reshape(1, 2, 3), (1, 2)).tolist()
    [[[2.0, 3.0]]]
    """
    _check_ndim("adaptive_avg_pool2d", input, (3, 4), "input")
    size = _adaptive_size("adaptive_avg_pool2d", output_size, tuple(input._data.shape[-2:]))
    return apply(ADAPTIVE_AVG_POOL2D, input, output_size=size)


def adaptive_avg_pool1d(input: Tensor, output_size: Any) -> Tensor:
    """1-d adaptive average pooling over ``(N, C, L)`` or ``(C, L)``.

    >>> import suanli
    >>> adaptive_avg_pool1d(suanli.tensor([[1.0, 2.0, 3.0, 4.0]]), 2).tolist()
    [[1.5, 3.5]]
    """
    from .shape import unsqueeze
    _check_ndim("adaptive_avg_pool1d", input, (2, 3), "input")
    (size,) = _adaptive_size("adaptive_avg_pool1d", output_size, tuple(input._data.shape[-1:]))
    return apply(ADAPTIVE_AVG_POOL2D, unsqueeze(input, -2), output_size=(1, size)).squeeze(-2)


def _adaptive_max_indices_impl(x, *, output_size):
    """First maximum (row-major) of each adaptive window; max is separable: per row, then rows."""
    N, C, H, W = x.shape
    Ho, Wo = output_size
    hs, he = _adaptive_bounds(H, Ho)
    ws, we = _adaptive_bounds(W, Wo)
    idx = np.empty((N, C, Ho, Wo), np.int64)
    for j in range(Wo):
        cols = x[:, :, :, ws[j]:we[j]]
        col_arg = np.argmax(cols, axis=3)                                  # (N, C, H), first max per row
        col_max = np.take_along_axis(cols, col_arg[..., None], axis=3)[..., 0]
        for i in range(Ho):
            rows = col_max[:, :, hs[i]:he[i]]
            r = np.argmax(rows, axis=2)                                    # first row with the max
            h = hs[i] + r
            w = ws[j] + np.take_along_axis(col_arg, h[..., None], axis=2)[..., 0]
            idx[:, :, i, j] = h * W + w
    return idx


def _infer_adaptive_max_indices(x: Spec, *, output_size) -> Spec:
    if len(x.shape) != 4 or x.dtype not in _dt.FLOATING or 0 in tuple(x.shape[-2:]) or min(output_size) < 1:
        raise op_error("adaptive_max_pool2d", "expects a floating-point 4-d input with non-empty planes "
                       "and a positive output size", actual=f"{spec_str(x)}, output_size={output_size}")
    return Spec(tuple(x.shape[:2]) + tuple(output_size), np.dtype(np.int64))


ADAPTIVE_MAX_POOL2D_INDICES = defprim("adaptive_max_pool2d_indices", _adaptive_max_indices_impl,
                                      _infer_adaptive_max_indices, differentiable=False,
                                      doc="argmax indices (h * W + w) of adaptive max pooling")


def adaptive_max_pool2d(input: Tensor, output_size: Any, return_indices: bool = False) -> Any:
    """Max pooling to a fixed output size: the values are a gather at the argmax indices, so the
    gradient is max_pool2d's scatter.

    >>> import suanli
    >>> adaptive_max_pool2d(suanli.arange(6.0).reshape(1, 1, 2, 3), 1).tolist()
    [[[[5.0]]]]
    """
    x, unbatched = _pool2d_input("adaptive_max_pool2d", input)
    size = _adaptive_size("adaptive_max_pool2d", output_size, tuple(x._data.shape[-2:]))
    idx = apply(ADAPTIVE_MAX_POOL2D_INDICES, x, output_size=size)
    overlapping = any(n % o != 0 for n, o in zip(x._data.shape[2:], size))
    out = apply(MAX_POOL2D_GATHER, x, idx, overlapping=overlapping)
    if unbatched:
        out, idx = out.squeeze(0), idx.squeeze(0)
    return (out, idx) if return_indices else out


def adaptive_max_pool1d(input: Tensor, output_size: Any, return_indices: bool = False) -> Any:
    """1-d adaptive max pooling over ``(N, C, L)`` or ``(C, L)``.

    >>> import suanli
    >>> adaptive_max_pool1d(suanli.tensor([[[1.0, 4.0, 2.0, 3.0]]]), 2).tolist()
    [[[4.0, 3.0]]]
    """
    from .shape import unsqueeze
    x, unbatched = _unbatched("adaptive_max_pool1d", input, 3)
    (size,) = _adaptive_size("adaptive_max_pool1d", output_size, tuple(x._data.shape[-1:]))
    res = adaptive_max_pool2d(unsqueeze(x, 2), (1, size), return_indices)
    res = tuple(r.squeeze(2) for r in res) if return_indices else (res.squeeze(2),)
    if unbatched:
        res = tuple(r.squeeze(0) for r in res)
    return res if return_indices else res[0]
