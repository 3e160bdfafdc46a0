"""ONNX spatial ops: GridSample, AffineGrid, Col2Im, NonMaxSuppression.

GridSample works out, with NumPy, which input pixels each output point reads and with what weight
(1 tap for nearest, 2 per axis for linear, 4 per axis for cubic; out-of-range taps get weight 0 or
are folded back by the padding mode). The values are then one ``gather`` of the input, a multiply
and a sum, so the output is differentiable in X. The grid only chooses the taps: no gradient flows
to it. Col2Im is one ``scatter_add``; AffineGrid one ``matmul`` (differentiable in theta).

>>> import numpy as np
>>> from suanli.onnx.ops_vision import reflect
>>> reflect(np.array([-0.7, 0.2, 2.9]), -0.5, 1.5).round(2).tolist()
[-0.3, 0.2, 0.1]
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..tensor import Tensor
from ._util import P, const, ints, permute, reshape
from .errors import onnx_error
from .table import onnx_op


# ------------------------------------------------------------------------------ GridSample
def reflect(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Fold ``x`` into ``[lo, hi]`` by reflecting at the borders (as many times as needed)."""
    rng = hi - lo
    out = x.copy()
    below, above = x < lo, x > hi
    for mask, dx, near, far in ((below, lo - x, lo, hi), (above, x - hi, hi, lo)):
        n = np.trunc(dx / rng) if rng else np.zeros_like(dx)
        r = dx - n * rng
        sign = 1 if near == lo else -1
        folded = np.where(n % 2 == 0, near + sign * r, far - sign * r)
        out = np.where(mask, folded, out)
    return out


def _cubic_coeffs(t: np.ndarray) -> np.ndarray:
    """Keys cubic convolution weights (a = -0.75) of the 4 taps around fraction ``t``: (..., 4)."""
    a = -0.75
    def near(d):  # |d| <= 1
        return ((a + 2) * d - (a + 3)) * d * d + 1
    def far(d):   # 1 < |d| < 2
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=-1)


def _axis_taps(x: np.ndarray, size: int, mode: str, padding: str, align: bool, dtype):
    """Per output point: (indices, weights) of the taps along one axis, each (P, T)."""
    lo, hi = (0.0, size - 1.0) if align else (-0.5, size - 0.5)
    if mode == "nearest":
        x = np.rint(x)
    out = (x < lo) | (x > hi)
    if padding == "border":
        x = np.where(out, np.clip(x, 0, size - 1), x)
    elif padding == "reflection":
        x = np.where(out, reflect(x, lo, hi), x)
    if mode == "nearest":
        idx = np.trunc(x).astype(np.int64)[:, None]
        w = np.ones(idx.shape, dtype)
    else:
        x0 = np.floor(x)
        t = (x - x0).astype(dtype)
        if mode == "linear":
            idx = x0.astype(np.int64)[:, None] + np.arange(2)
            w = np.stack([1 - t, t], axis=-1)
        else:
            idx = x0.astype(np.int64)[:, None] + np.arange(-1, 3)
            w = _cubic_coeffs(t).astype(dtype)
    # where a tap lands outside the image
    if padding == "zeros":
        valid = (idx >= 0) & (idx < size)
        w = np.where(valid, w, 0).astype(dtype)
        idx = np.clip(idx, 0, size - 1)
    elif padding == "border":
        idx = np.clip(idx, 0, size - 1)
    else:
        idx = np.trunc(reflect(idx.astype(np.float64), lo, hi)).astype(np.int64)
        idx = np.clip(idx, 0, size - 1)
    return idx, w


def sample_taps(grid: np.ndarray, spatial: Sequence[int], mode: str, padding: str, align: bool, dtype):
    """Flat input index and weight of every tap: (N, P, T) each, P = output points, T = taps."""
    k = len(spatial)
    n = grid.shape[0]
    # float32 grids in float32, as the reference does (rounding of nearest ties depends on it)
    ct = np.float64 if grid.dtype == np.float64 else np.float32
    g = grid.reshape(n, -1, k).astype(ct)
    idx = np.zeros((n, g.shape[1], 1), np.int64)
    w = np.ones((n, g.shape[1], 1), dtype)
    for axis, size in enumerate(spatial):
        v = g[..., k - 1 - axis].reshape(-1)               # the grid's last dim lists (x, y, z): reversed
        x = (v + 1) / ct(2) * ct(size - 1) if align else ((v + 1) * size - 1) / ct(2)
        ai, aw = _axis_taps(x, size, mode, padding, align, dtype)
        ai, aw = ai.reshape(n, -1, ai.shape[-1]), aw.reshape(n, -1, aw.shape[-1])
        idx = (idx[..., :, None] * size + ai[..., None, :]).reshape(n, g.shape[1], -1)
        w = (w[..., :, None] * aw[..., None, :]).reshape(n, g.shape[1], -1)
    return idx, w


@onnx_op("GridSample", since=16)
def grid_sample(ctx, x, grid):
    mode = ctx.get("mode", "bilinear" if ctx.opset < 20 else "linear")
    mode = {"bilinear": "linear", "bicubic": "cubic"}.get(mode, mode)
    padding = ctx.get("padding_mode", "zeros")
    align = bool(ctx.get("align_corners", 0))
    spatial = x.shape[2:]
    if grid.ndim != x.ndim or grid.shape[0] != x.shape[0] or grid.shape[-1] != len(spatial):
        raise onnx_error(ctx.where, "grid must be (N, *out_spatial, k) for X (N, C, *k spatial dims)",
                         actual=f"X {x.shape}, grid {grid.shape}")
    if mode not in ("nearest", "linear", "cubic") or padding not in ("zeros", "border", "reflection"):
        raise onnx_error(ctx.where, f"unsupported mode={mode!r} / padding_mode={padding!r}",
                         expect="mode nearest|linear|cubic, padding_mode zeros|border|reflection")
    N, C = x.shape[:2]
    out_spatial = grid.shape[1:-1]
    idx, w = sample_taps(np.asarray(grid._data), spatial, mode, padding, align, x.dtype)
    P_, T = idx.shape[1:]
    flat = reshape(x, (N, C, -1))
    index = np.broadcast_to(idx.reshape(N, 1, P_ * T), (N, C, P_ * T))
    taps = reshape(P("gather", flat, const(np.ascontiguousarray(index)), dim=2), (N, C, P_, T))
    y = P("sum", P("mul", taps, const(w.reshape(N, 1, P_, T))), axes=(3,), keepdims=False)
    return reshape(y, (N, C) + tuple(out_spatial))


# ------------------------------------------------------------------------------ AffineGrid
def base_grid(size: Sequence[int], align: bool) -> np.ndarray:
    """Homogeneous normalized coordinates ``(*size, k+1)``, last dim (x, y[, z], 1)."""
    axes = []
    for n in size:
        if align:
            axes.append(np.linspace(-1, 1, n) if n > 1 else np.zeros(1))
        else:
            axes.append((2 * np.arange(n) + 1) / n - 1)
    mesh = np.meshgrid(*axes, indexing="ij")                     # (D,) H, W
    return np.stack(list(mesh[::-1]) + [np.ones(tuple(size))], axis=-1)


@onnx_op("AffineGrid", since=20)
def affine_grid(ctx, theta, size):
    dims = ints(size)
    spatial = dims[2:]
    k = len(spatial)
    if theta.ndim != 3 or theta.shape[1:] != (k, k + 1) or theta.shape[0] != dims[0]:
        raise onnx_error(ctx.where, "theta must be (N, k, k+1) for a size (N, C, *k spatial dims)",
                         actual=f"theta {theta.shape}, size {dims}")
    base = const(base_grid(spatial, bool(ctx.get("align_corners", 0))).reshape(-1, k + 1).astype(theta.dtype))
    grid = P("matmul", reshape(base, (1, -1, k + 1)), permute(theta, (0, 2, 1)))   # (N, points, k)
    return reshape(grid, (dims[0], *spatial, k))


# ------------------------------------------------------------------------------ Col2Im
@onnx_op("Col2Im", since=18)
def col2im(ctx, x, image_shape, block_shape):
    image, block = ints(image_shape), ints(block_shape)
    k = len(image)
    strides = ctx.get("strides") or [1] * k
    dilations = ctx.get("dilations") or [1] * k
    pads = ctx.get("pads") or [0] * (2 * k)
    n_block = int(np.prod(block))
    N, CK, L = x.shape
    padded = [image[i] + pads[i] + pads[i + k] for i in range(k)]
    blocks = [(padded[i] - dilations[i] * (block[i] - 1) - 1) // strides[i] + 1 for i in range(k)]
    if CK % n_block or int(np.prod(blocks)) != L:
        raise onnx_error(ctx.where, "input does not match image_shape / block_shape",
                         expect=f"(N, C*{n_block}, {int(np.prod(blocks))} blocks {blocks})", actual=f"{x.shape}")
    C = CK // n_block
    # padded-image position of column (kernel offset, block position), per axis, then flattened
    pos = np.zeros((n_block, int(np.prod(blocks))), np.int64)
    for i, (off, blk) in enumerate(zip(np.indices(block).reshape(k, -1), np.indices(blocks).reshape(k, -1))):
        pos = pos * padded[i] + off[:, None] * dilations[i] + blk[None, :] * strides[i]
    index = np.broadcast_to(pos.reshape(1, 1, -1), (N, C, pos.size))
    cols = reshape(x, (N, C, n_block * L))
    out = P("scatter_add", const(np.zeros((N, C, int(np.prod(padded))), x.dtype)), const(np.ascontiguousarray(index)),
            cols, dim=2)
    out = reshape(out, (N, C, *padded))
    key = ((0, N, 1), (0, C, 1)) + tuple((pads[i], pads[i] + image[i], 1) for i in range(k))
    return P("slice", out, key=key)


# ------------------------------------------------------------------------------ NonMaxSuppression
def _corners(boxes: np.ndarray, center: bool) -> np.ndarray:
    """(M, 4) boxes as (y_min, x_min, y_max, x_max)."""
    if center:
        cx, cy, w, h = boxes.T
        return np.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], axis=1)
    y1, x1, y2, x2 = boxes.T
    return np.stack([np.minimum(y1, y2), np.minimum(x1, x2), np.maximum(y1, y2), np.maximum(x1, x2)], axis=1)


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    ih = np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0])
    iw = np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1])
    inter = np.where((ih > 0) & (iw > 0), ih * iw, 0)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    union = area + areas - inter
    ok = (inter > 0) & (area > 0) & (areas > 0) & (union > 0)
    return np.where(ok, inter / np.where(ok, union, 1), 0)


@onnx_op("NonMaxSuppression", since=10)
def non_max_suppression(ctx, boxes, scores, max_out=None, iou_threshold=None, score_threshold=None):
    """Greedy NMS per (batch, class): selected ``(batch, class, box)`` indices, int64 (not differentiable)."""
    b, s = np.asarray(boxes._data), np.asarray(scores._data)
    if b.ndim != 3 or b.shape[2] != 4 or s.ndim != 3 or s.shape[0] != b.shape[0] or s.shape[2] != b.shape[1]:
        raise onnx_error(ctx.where, "boxes must be (B, M, 4) and scores (B, classes, M)",
                         actual=f"boxes {b.shape}, scores {s.shape}")
    limit = max(ints(max_out)[0], 0) if max_out is not None and max_out.numel() else 0
    iou_t = float(np.asarray(iou_threshold._data).reshape(-1)[0]) if iou_threshold is not None and iou_threshold.numel() else 0.0
    has_score_t = score_threshold is not None and score_threshold.numel()
    score_t = float(np.asarray(score_threshold._data).reshape(-1)[0]) if has_score_t else None
    center = bool(ctx.get("center_point_box", 0))
    selected = []
    for bi in range(b.shape[0]):
        corners = _corners(b[bi].astype(np.float64), center)
        for ci in range(s.shape[1]):
            sc = s[bi, ci]
            cand = np.arange(sc.size) if score_t is None else np.nonzero(sc > score_t)[0]
            cand = cand[np.lexsort((cand, -sc[cand]))]          # score descending, lower index first
            keep: list[int] = []
            for j in cand:
                if len(keep) >= limit:
                    break
                if not keep or not (_iou(corners[j], corners[keep]) > iou_t).any():
                    keep.append(int(j))
            selected += [(bi, ci, j) for j in keep]
    return const(np.array(selected, np.int64).reshape(-1, 3))


# ------------------------------------------------------------------------------ DeformConv
def _bilinear_taps(pos: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Index and weight of the 2 linear taps of pixel coordinates ``pos``; taps off the image weigh 0."""
    lo = np.floor(pos)
    t = pos - lo
    idx = lo.astype(np.int64)[..., None] + np.arange(2)
    w = np.stack([1 - t, t], axis=-1)
    valid = (idx >= 0) & (idx < size)
    return np.clip(idx, 0, size - 1), np.where(valid, w, 0.0)


@onnx_op("DeformConv", since=19)
def deform_conv(ctx, x, w, offset, b=None, mask=None):
    """2-d deformable convolution: bilinear samples at the offset kernel positions, then a grouped matmul.

    Gradients reach X, W, B and the mask; the offsets only choose where to sample.
    """
    if x.ndim != 4 or w.ndim != 4:
        raise onnx_error(ctx.where, "only 2-d DeformConv is implemented", expect="X (N, C, H, W)",
                         actual=f"X {x.shape}, W {w.shape}")
    N, C, H, Wd = x.shape
    OC, Cg, KH, KW = w.shape
    group, og = ctx.get("group", 1), ctx.get("offset_group", 1)
    strides = ctx.get("strides") or [1, 1]
    dil = ctx.get("dilations") or [1, 1]
    pads = ctx.get("pads") or [0, 0, 0, 0]
    OH, OW = offset.shape[2:]
    K = KH * KW
    if C != Cg * group or OC % group or C % og or offset.shape[1] != og * K * 2:
        raise onnx_error(ctx.where, "X, W and offset shapes disagree with group / offset_group",
                         expect=f"C = W.shape[1] * group, offset (N, offset_group*{K}*2, OH, OW)",
                         actual=f"X {x.shape}, W {w.shape}, offset {offset.shape}, group {group}, offset_group {og}")
    off = np.asarray(offset._data, np.float64).reshape(N, og, KH, KW, 2, OH, OW)
    kh = (np.arange(KH) * dil[0]).reshape(1, 1, KH, 1, 1, 1)
    kw = (np.arange(KW) * dil[1]).reshape(1, 1, 1, KW, 1, 1)
    ph = -pads[0] + strides[0] * np.arange(OH).reshape(1, 1, 1, 1, OH, 1) + kh + off[:, :, :, :, 0]
    pw = -pads[1] + strides[1] * np.arange(OW).reshape(1, 1, 1, 1, 1, OW) + kw + off[:, :, :, :, 1]
    ih, wh = _bilinear_taps(ph, H)                 # (N, og, KH, KW, OH, OW, 2)
    iw, ww = _bilinear_taps(pw, Wd)
    flat = (ih[..., :, None] * Wd + iw[..., None, :]).reshape(N, og, K * OH * OW * 4)
    wt = (wh[..., :, None] * ww[..., None, :]).reshape(N, og, 1, K * OH * OW, 4).astype(x.dtype)
    cpg = C // og                                  # channels per offset group
    index = np.broadcast_to(flat[:, :, None, :], (N, og, cpg, flat.shape[-1])).reshape(N, C, -1)
    taps = P("gather", reshape(x, (N, C, H * Wd)), const(np.ascontiguousarray(index)), dim=2)
    taps = reshape(taps, (N, og, cpg, K * OH * OW, 4))
    cols = P("sum", P("mul", taps, const(wt)), axes=(4,), keepdims=False)      # (N, og, cpg, K*OH*OW)
    if mask is not None:
        cols = P("mul", cols, reshape(mask, (N, og, 1, K * OH * OW)))
    cols = reshape(cols, (N, group, Cg * K, OH * OW))                           # channel-major, then kernel
    wm = reshape(w, (1, group, OC // group, Cg * K))
    y = reshape(P("matmul", wm, cols), (N, OC, OH, OW))
    if b is not None:
        y = P("add", y, reshape(b, (1, OC, 1, 1)))
    return y


# ------------------------------------------------------------------------------ RoiAlign
def _roi_taps(start: float, bin_size: float, bins: int, grid: int,
              size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Along one axis: the (low, high) pixel and (1-frac, frac) weight of each (bin, sample), (bins*grid, 2),
    and whether the sample lies outside.

    Samples more than one pixel outside the image get weight 0 (the reference's rule); others are
    clamped to the image as in the reference's bilinear interpolation.
    """
    pos = start + np.arange(bins)[:, None] * bin_size + (np.arange(grid)[None, :] + 0.5) * bin_size / grid
    pos = pos.reshape(-1)
    outside = (pos < -1.0) | (pos > size)
    pos = np.maximum(pos, 0)
    low = np.floor(pos).astype(np.int64)
    edge = low >= size - 1
    low = np.where(edge, size - 1, low)
    pos = np.where(edge, low, pos)
    high = np.where(edge, low, low + 1)
    frac = pos - low
    w = np.stack([1 - frac, frac], axis=1)
    return np.stack([low, high], axis=1), np.where(outside[:, None], 0.0, w), outside


@onnx_op("RoiAlign", since=10)
def roi_align(ctx, x, rois, batch_indices):
    """Average (or max) of bilinear samples on a regular grid in each output bin of each region."""
    if x.ndim != 4 or rois.ndim != 2 or rois.shape[1] != 4 or batch_indices.shape != (rois.shape[0],):
        raise onnx_error(ctx.where, "expects X (N, C, H, W), rois (R, 4), batch_indices (R,)",
                         actual=f"X {x.shape}, rois {rois.shape}, batch_indices {batch_indices.shape}")
    N, C, H, W = x.shape
    oh, ow = ctx.get("output_height", 1), ctx.get("output_width", 1)
    ratio, scale = ctx.get("sampling_ratio", 0), ctx.get("spatial_scale", 1.0)
    half = ctx.get("coordinate_transformation_mode", "half_pixel" if ctx.opset >= 16 else "output_half_pixel")
    half = half.lower() == "half_pixel"
    mode = ctx.get("mode", "avg").lower()
    boxes = np.asarray(rois._data, np.float64)
    outs = []
    for r, b in enumerate(ints(batch_indices)):
        x0, y0, x1, y1 = boxes[r] * scale - (0.5 if half else 0.0)
        rh, rw = y1 - y0, x1 - x0
        if not half:
            rh, rw = max(rh, 1.0), max(rw, 1.0)
        gh = int(ratio) if ratio > 0 else int(np.ceil(rh / oh))
        gw = int(ratio) if ratio > 0 else int(np.ceil(rw / ow))
        iy, wy, out_y = _roi_taps(y0, rh / oh, oh, gh, H)                  # (oh*gh, 2)
        ix, wx, out_x = _roi_taps(x0, rw / ow, ow, gw, W)                  # (ow*gw, 2)
        flat = iy[:, None, :, None] * W + ix[None, :, None, :]               # (oh*gh, ow*gw, 2, 2)
        wt = wy[:, None, :, None] * wx[None, :, None, :]
        wt = np.where((out_y[:, None] | out_x[None, :])[..., None, None], 0.0, wt)
        # (oh, gh, ow, gw, 4) -> (oh, ow, gh*gw, 4)
        order = lambda a: a.reshape(oh, gh, ow, gw, 4).transpose(0, 2, 1, 3, 4).reshape(oh, ow, gh * gw, 4)
        flat, wt = order(flat), order(wt)
        img = reshape(P("slice", x, key=((b, b + 1, 1), (0, C, 1), (0, H, 1), (0, W, 1))), (C, H * W))
        taps = P("gather", img, const(np.ascontiguousarray(np.broadcast_to(flat.reshape(1, -1), (C, flat.size)))), dim=1)
        taps = P("mul", reshape(taps, (C,) + flat.shape), const(wt.astype(x.dtype)))
        if mode == "avg":
            y = P("div", P("sum", taps, axes=(3, 4), keepdims=False), const(np.asarray(max(gh * gw, 1), x.dtype)))
        else:   # the reference's max: the largest weighted tap over every sample
            y = P("amax", taps, axes=(3, 4), keepdims=False)
        outs.append(reshape(y, (1, C, oh, ow)))
    if not outs:
        return const(np.zeros((0, C, oh, ow), x.dtype))
    return outs[0] if len(outs) == 1 else P("cat", *outs, axis=0)
