"""ONNX signal ops: DFT, STFT, the window functions, MelWeightMatrix.

A DFT is two matmuls with constant cosine / sine matrices, so it is differentiable and runs on the
same primitive as everything else (O(n^2) per transform: meant for the short transforms models
use, not for long signals). Complex values are ONNX's trailing ``[real, imag]`` axis.

>>> import numpy as np
>>> from suanli.onnx.ops_signal import window
>>> window("HannWindow", 4, periodic=True).round(3).tolist()
[0.0, 0.5, 1.0, 0.5]
"""
from __future__ import annotations

import numpy as np

from ..tensor import Tensor
from ._util import P, cast, const, ints, np_dtype, permute, reshape
from .errors import onnx_error
from .table import onnx_op


def _parts(x: Tensor) -> tuple[Tensor, Tensor | None]:
    """Real and imaginary parts of ``(..., 1|2)`` (imag ``None`` for a real signal)."""
    key = tuple((0, n, 1) for n in x.shape[:-1])
    real = reshape(P("slice", x, key=key + ((0, 1, 1),)), x.shape[:-1])
    if x.shape[-1] == 1:
        return real, None
    return real, reshape(P("slice", x, key=key + ((1, 2, 1),)), x.shape[:-1])


def _mm(a: Tensor | None, m: np.ndarray) -> Tensor | None:
    return None if a is None else P("matmul", a, const(m.astype(a.dtype)))


def _f64(t: Tensor | None) -> Tensor | None:
    return None if t is None else cast(t, np.float64)


def _plus(a: Tensor | None, b: Tensor | None, sign: float = 1.0) -> Tensor:
    if b is not None and sign < 0:
        b = P("neg", b)
    if a is None:
        return b
    return a if b is None else P("add", a, b)


def dft_last(re: Tensor, im: Tensor | None, n: int, inverse: bool, onesided: bool) -> tuple[Tensor, Tensor | None]:
    """DFT of length ``n`` along the last axis (input cropped or zero-padded to ``n``).

    Computed in float64 and cast back, as the reference's complex128 FFT: float32 sums of n terms
    would miss the exact zeros the tests expect.
    """
    dtype = re.dtype
    out = _dft_last(_f64(re), _f64(im), n, inverse, onesided)
    return tuple(None if t is None else cast(t, dtype) for t in out)


def _dft_last(re: Tensor, im: Tensor | None, n: int, inverse: bool, onesided: bool) -> tuple[Tensor, Tensor | None]:
    L = re.shape[-1]
    t = np.arange(L)[:, None]
    if inverse and onesided:        # irfft: Hermitian half spectrum in, real signal out
        k = np.arange(L)[:, None]
        out_t = np.arange(n)[None, :]
        theta = 2 * np.pi * k * out_t / n
        w = np.where((k == 0) | ((n % 2 == 0) & (k == n // 2)), 1.0, 2.0) * (k <= n // 2)
        cos, sin = w * np.cos(theta) / n, -w * np.sin(theta) / n
        sin[0] = 0
        if n % 2 == 0 and n // 2 < L:
            sin[n // 2] = 0
        return _plus(_mm(re, cos), _mm(im, sin)), None
    bins = n // 2 + 1 if onesided else n
    theta = 2 * np.pi * t * np.arange(bins)[None, :] / n
    used = t < n                    # samples past n are dropped (np.fft crops)
    cos, sin = np.where(used, np.cos(theta), 0), np.where(used, np.sin(theta), 0)
    if inverse:                     # x_t = 1/n sum_k X_k e^{+i theta}
        cos, sin = cos / n, sin / n
        return _plus(_mm(re, cos), _mm(im, sin), -1), _plus(_mm(re, sin), _mm(im, cos))
    return _plus(_mm(re, cos), _mm(im, sin)), _plus(_mm(im, cos), _mm(re, sin), -1)


def _complex(re: Tensor, im: Tensor | None) -> Tensor:
    if im is None:
        return reshape(re, re.shape + (1,))
    return P("cat", reshape(re, re.shape + (1,)), reshape(im, im.shape + (1,)), axis=re.ndim)


def _dft(ctx, x: Tensor, n: int | None, axis: int) -> Tensor:
    if x.shape[-1] not in (1, 2) or x.ndim < 2:
        raise onnx_error(ctx.where, "input must end in a [real] or [real, imag] axis",
                         expect="(..., 1) or (..., 2)", actual=f"{x.shape}")
    axis %= x.ndim
    if axis == x.ndim - 1:
        raise onnx_error(ctx.where, "axis may not be the last (complex) axis", actual=f"axis {axis}, input {x.shape}")
    inverse, onesided = bool(ctx.get("inverse", 0)), bool(ctx.get("onesided", 0))
    if n is None:
        n = 2 * (x.shape[axis] - 1) if inverse and onesided else x.shape[axis]
    perm = [i for i in range(x.ndim - 1) if i != axis] + [axis]       # transform axis last
    re, im = _parts(x)
    re = permute(re, perm)
    im = None if im is None else permute(im, perm)
    re, im = dft_last(re, im, n, inverse, onesided)
    back = list(np.argsort(perm))
    re = permute(re, back)
    return _complex(re, None if im is None else permute(im, back))


@onnx_op("DFT", since=17)
def dft_17(ctx, x, dft_length=None):
    n = ints(dft_length)[0] if dft_length is not None else None
    return _dft(ctx, x, n, ctx.get("axis", 1))


@onnx_op("DFT", since=20)
def dft_20(ctx, x, dft_length=None, axis=None):
    n = ints(dft_length)[0] if dft_length is not None and dft_length.numel() else None
    return _dft(ctx, x, n, ints(axis)[0] if axis is not None else -2)


@onnx_op("STFT", since=17)
def stft(ctx, x, frame_step, window_=None, frame_length=None):
    """Frames of ``frame_length`` every ``frame_step`` samples, windowed, each DFT'd: (B, frames, bins, 2)."""
    step = ints(frame_step)[0]
    length = ints(frame_length)[0] if frame_length is not None else (
        window_.shape[0] if window_ is not None else x.shape[-2])
    B, L = x.shape[:2]
    frames = 1 + (L - length) // step
    if frames < 1 or step < 1:
        raise onnx_error(ctx.where, "no complete frame fits the signal",
                         expect=f"signal length >= frame_length {length}, frame_step >= 1", actual=f"signal {x.shape}")
    starts = np.arange(frames)[:, None] * step + np.arange(length)[None, :]           # (frames, length)
    index = np.broadcast_to(starts.reshape(1, -1, 1), (B, frames * length, x.shape[-1]))
    framed = reshape(P("gather", x, const(np.ascontiguousarray(index)), dim=1), (B, frames, length, x.shape[-1]))
    if window_ is not None:
        framed = P("mul", framed, reshape(window_, (1, 1, length, 1)))
    re, im = _parts(framed)
    re, im = dft_last(re, im, length, False, bool(ctx.get("onesided", 1)))
    return _complex(re, im)


# ------------------------------------------------------------------------------ windows, mel filters
def window(op: str, size: int, periodic: bool) -> np.ndarray:
    """Hann, Hamming or Blackman window of ``size`` samples (float64)."""
    n, N = np.arange(size), size if periodic else size - 1
    if op == "HannWindow":
        return np.sin(n * np.pi / N) ** 2
    if op == "HammingWindow":
        alpha = 25.0 / 46.0
        return alpha - np.cos(n * np.pi * 2 / N) * (1 - alpha)
    return 0.42 - 0.5 * np.cos(n * 2 * np.pi / N) + 0.08 * np.cos(n * 4 * np.pi / N)


def _window_op(op: str):
    def fn(ctx, size):
        out = window(op, ints(size)[0], bool(ctx.get("periodic", 1)))
        return const(out.astype(np_dtype(ctx.get("output_datatype", 1))))
    fn.__name__ = op
    return fn


for _op in ("HannWindow", "HammingWindow", "BlackmanWindow"):
    onnx_op(_op, since=17)(_window_op(_op))


@onnx_op("MelWeightMatrix", since=17)
def mel_weight_matrix(ctx, num_mel_bins, dft_length, sample_rate, lower_hz, upper_hz):
    """Triangular mel filters, (dft_length // 2 + 1, num_mel_bins), with the reference's integer bin edges."""
    mels, n_fft, rate = ints(num_mel_bins)[0], ints(dft_length)[0], ints(sample_rate)[0]
    lo, hi = (float(np.asarray(t._data).reshape(-1)[0]) for t in (lower_hz, upper_hz))
    to_mel = lambda f: 2595 * np.log1p(f / 700) / np.log(10)
    step = (to_mel(hi) - to_mel(lo)) / (mels + 2)
    hz = 700 * np.expm1((np.arange(mels + 2) * step + to_mel(lo)) / 2595 * np.log(10))
    edges = (((n_fft + 1) * hz) // rate).astype(int)
    out = np.zeros((n_fft // 2 + 1, mels))
    for i in range(mels):
        left, center, right = edges[i:i + 3]
        if center == left:
            out[center, i] = 1
        else:
            j = np.arange(left, center + 1)
            out[j, i] = (j - left) / (center - left)
        if right > center:
            j = np.arange(center, right)
            out[j, i] = (right - j) / (right - center)
    return const(out.astype(np_dtype(ctx.get("output_datatype", 1))))
