"""ONNX Attention (opset 23+) and RotaryEmbedding, built from matmul / softmax / where primitives.

The masks (causal, sliding window, key padding, a boolean ``attn_mask``) are additive biases of 0 and
``-inf``. The structural ones are built with NumPy as constants; a float ``attn_mask`` input stays a
Tensor, so gradients reach it as well as Q, K and V.

>>> import numpy as np, suanli
>>> from suanli.onnx.ops_attention import causal_bias
>>> causal_bias(2, 3, 1, np.float32).tolist()
[[0.0, 0.0, -inf], [0.0, 0.0, 0.0]]
"""
from __future__ import annotations

import numpy as np

from ..tensor import Tensor
from ._util import P, cast, const, expand, np_dtype, permute, reshape, scalar
from .errors import onnx_error
from .table import onnx_op


def causal_bias(q_len: int, kv_len: int, offset, dtype) -> np.ndarray:
    """0 where key ``j <= i + offset`` (bottom-right aligned), else ``-inf``.

    ``offset`` is an int, or a ``(batch,)`` array giving a ``(batch, 1, q, kv)`` bias.
    """
    i = np.arange(q_len).reshape(q_len, 1)
    j = np.arange(kv_len).reshape(1, kv_len)
    if np.ndim(offset):
        allowed = j <= i + np.reshape(offset, (-1, 1, 1))
        return np.where(allowed, 0, -np.inf).astype(dtype)[:, None]
    return np.where(j <= i + int(offset), 0, -np.inf).astype(dtype)


def window_bias(q_len: int, kv_len: int, left: int, right: int, offset, dtype) -> np.ndarray:
    """0 where ``p - left <= j <= p + right`` for the query's absolute position ``p`` (-1: unbounded)."""
    i = np.arange(q_len).reshape(q_len, 1)
    j = np.arange(kv_len).reshape(1, kv_len)
    diff = (i + np.reshape(offset, (-1, 1, 1)) if np.ndim(offset) else i + int(offset)) - j
    allowed = np.ones(diff.shape, bool)
    if left >= 0:
        allowed &= diff <= left
    if right >= 0:
        allowed &= -diff <= right
    bias = np.where(allowed, 0, -np.inf).astype(dtype)
    return bias[:, None] if np.ndim(offset) else bias


def _heads(x: Tensor, n_heads: int) -> Tensor:
    """(B, S, H*D) -> (B, H, S, D)."""
    b, s, hidden = x.shape
    return permute(reshape(x, (b, s, n_heads, hidden // n_heads)), (0, 2, 1, 3))


def _repeat_heads(x: Tensor, reps: int) -> Tensor:
    """Interleave-repeat each KV head ``reps`` times: [h0, h0, h1, h1, ...] (grouped-query attention)."""
    b, h, s, d = x.shape
    return reshape(expand(reshape(x, (b, h, 1, s, d)), (b, h, reps, s, d)), (b, h * reps, s, d))


def _bool_to_bias(mask: Tensor, dtype) -> Tensor:
    return P("where", mask, const(0, dtype), const(-np.inf, dtype))


@onnx_op("Attention", since=23)
def attention(ctx, q, k, v, attn_mask=None, past_key=None, past_value=None, nonpad_kv_seqlen=None):
    if q.ndim not in (3, 4) or k.ndim != q.ndim or v.ndim != q.ndim:
        raise onnx_error(ctx.where, "Q, K and V must all be 3-d (B, S, hidden) or all 4-d (B, H, S, D)",
                         actual=f"Q {q.shape}, K {k.shape}, V {v.shape}")
    if (past_key is None) != (past_value is None):
        raise onnx_error(ctx.where, "past_key and past_value must be given together",
                         hint="pass both caches or neither")
    dtype = q.dtype
    three_d = q.ndim == 3
    if three_d:
        qh, kvh = ctx.get("q_num_heads"), ctx.get("kv_num_heads")
        if not qh or not kvh:
            raise onnx_error(ctx.where, "3-d inputs need the q_num_heads and kv_num_heads attributes",
                             actual=f"q_num_heads={qh}, kv_num_heads={kvh}")
        q, k, v = _heads(q, qh), _heads(k, kvh), _heads(v, kvh)

    scale = ctx.get("scale")
    if scale is None:
        scale = 1 / np.sqrt(q.shape[3])
    # Q and K are each scaled by sqrt(scale), in Q's dtype, as the reference and its expansion do
    root = scalar(q, np.sqrt(scale))

    if past_key is not None:
        k = P("cat", past_key, k, axis=2)
        v = P("cat", past_value, v, axis=2)
    present_key, present_value = k, v
    q_len, kv_len = q.shape[2], k.shape[2]

    bias = _bias(ctx, attn_mask, past_key, nonpad_kv_seqlen, q_len, kv_len, dtype)

    if q.shape[1] != k.shape[1] and q.shape[1] % k.shape[1] == 0 and k.shape[1] == v.shape[1]:
        reps = q.shape[1] // k.shape[1]
        k, v = _repeat_heads(k, reps), _repeat_heads(v, reps)

    qk = P("matmul", P("mul", q, root), permute(P("mul", k, root), (0, 1, 3, 2)))
    softcap = ctx.get("softcap")
    if softcap is not None and softcap > 0:
        qk = P("mul", P("tanh", P("div", qk, scalar(qk, softcap))), scalar(qk, softcap))
    with_bias = P("add", qk, bias)

    # a row whose bias is all -inf attends to nothing: its probabilities are 0 (not NaN)
    bias_np = np.asarray(bias._data)
    dead_np = np.isneginf(bias_np.max(axis=-1, keepdims=True)) if bias_np.size else np.zeros((1, 1), bool)
    logits = with_bias
    if dead_np.any():
        logits = P("where", const(dead_np), scalar(with_bias, 0), with_bias)
    precision = ctx.get("softmax_precision")
    if precision is not None:
        logits = cast(logits, np_dtype(precision))
    probs = P("softmax", logits, dim=logits.ndim - 1)
    if dead_np.any():
        probs = P("where", const(dead_np), scalar(probs, 0), probs)
    probs = cast(probs, dtype)

    mode = ctx.get("qk_matmul_output_mode", 0)
    qk_out = {2: with_bias, 3: probs}.get(mode, qk)

    y = P("matmul", probs, v)
    if three_d:
        b, h, s, d = y.shape
        y = reshape(permute(y, (0, 2, 1, 3)), (b, s, h * d))
    return y, present_key, present_value, cast(qk_out, dtype)


def _bias(ctx, attn_mask, past_key, nonpad_kv_seqlen, q_len: int, kv_len: int, dtype) -> Tensor:
    """The additive attention bias: attn_mask + causal + sliding window + key padding."""
    mask = attn_mask
    if mask is not None and mask.shape[-1] < kv_len:
        # a shorter mask covers the first keys only; the rest are masked out
        fill = False if mask.dtype == np.bool_ else -np.inf
        pads = ((0, 0),) * (mask.ndim - 1) + ((0, kv_len - mask.shape[-1]),)
        mask = P("pad", mask, pads=pads, value=fill)
    if mask is not None and mask.dtype == np.bool_:
        mask = _bool_to_bias(mask, dtype)
    bias = const(np.zeros((q_len, kv_len), dtype))
    if mask is not None:
        bias = P("add", bias, mask)

    if past_key is None and nonpad_kv_seqlen is not None:
        offset = np.asarray(nonpad_kv_seqlen._data).reshape(-1) - q_len          # per batch
    else:
        offset = past_key.shape[2] if past_key is not None else 0
    if ctx.get("is_causal", 0):
        bias = P("add", bias, const(causal_bias(q_len, kv_len, offset, dtype)))
    left, right = ctx.get("left_window_size", -1), ctx.get("right_window_size", -1)
    if left >= 0 or right >= 0:
        bias = P("add", bias, const(window_bias(q_len, kv_len, left, right, offset, dtype)))
    if nonpad_kv_seqlen is not None:
        lens = np.asarray(nonpad_kv_seqlen._data).reshape(-1, 1)
        pad = np.where(np.arange(kv_len) < lens, 0, -np.inf).astype(dtype)
        bias = P("add", bias, const(pad.reshape(-1, 1, 1, kv_len)))
    return bias


def _last(x: Tensor, start: int, stop: int, step: int = 1) -> Tensor:
    """``x[..., start:stop:step]``."""
    return P("slice", x, key=tuple((0, n, 1) for n in x.shape[:-1]) + ((start, stop, step),))


@onnx_op("RotaryEmbedding", since=23)
def rotary_embedding(ctx, x, cos_cache, sin_cache, position_ids=None):
    """Rotate the first ``rotary_embedding_dim`` features of each head by the cached angles."""
    shape = x.shape
    if x.ndim == 4:                                   # (B, H, S, D) -> (B, S, H, D)
        x = permute(x, (0, 2, 1, 3))
    elif x.ndim == 3:
        heads = ctx.get("num_heads")
        if not heads:
            raise onnx_error(ctx.where, "3-d input (B, S, hidden) needs the num_heads attribute",
                             actual=f"input {shape}")
        x = reshape(x, (shape[0], shape[1], heads, shape[2] // heads))
    else:
        raise onnx_error(ctx.where, "input must be 3-d (B, S, hidden) or 4-d (B, H, S, D)", actual=f"{shape}")
    head = x.shape[3]
    rot = ctx.get("rotary_embedding_dim", 0) or head
    half = rot // 2
    if position_ids is not None:
        pos = const(np.asarray(position_ids._data).astype(np.int64))
        cos_cache = _take_rows(cos_cache, pos)
        sin_cache = _take_rows(sin_cache, pos)
    if cos_cache.shape[-1] != half or sin_cache.shape[-1] != half:
        raise onnx_error(ctx.where, "cos/sin cache width must be rotary_embedding_dim / 2",
                         expect=f"last dim {half}", actual=f"cos {cos_cache.shape}, sin {sin_cache.shape}")
    cos = reshape(cos_cache, cos_cache.shape[:2] + (1, half))          # (B, S, 1, half)
    sin = reshape(sin_cache, sin_cache.shape[:2] + (1, half))
    interleaved = ctx.get("interleaved", 0)
    if interleaved:
        x1, x2 = _last(x, 0, rot, 2), _last(x, 1, rot, 2)
    else:
        x1, x2 = _last(x, 0, half), _last(x, half, rot)
    real = P("sub", P("mul", cos, x1), P("mul", sin, x2))
    imag = P("add", P("mul", sin, x1), P("mul", cos, x2))
    if interleaved:       # pairs (real_i, imag_i) side by side
        rotated = reshape(P("cat", reshape(real, real.shape + (1,)), reshape(imag, imag.shape + (1,)), axis=4),
                          x.shape[:3] + (rot,))
    else:
        rotated = P("cat", real, imag, axis=3)
    out = rotated if rot == head else P("cat", rotated, _last(x, rot, head), axis=3)
    if len(shape) == 3:
        return reshape(out, shape)
    return permute(out, (0, 2, 1, 3))


def _take_rows(cache: Tensor, pos: Tensor) -> Tensor:
    """``cache[pos]`` for a (max_pos, half) cache and (B, S) positions: (B, S, half)."""
    b, s = pos.shape
    idx = np.broadcast_to(np.asarray(pos._data).reshape(b * s, 1), (b * s, cache.shape[1]))
    return reshape(P("gather", cache, const(np.ascontiguousarray(idx)), dim=0), (b, s, cache.shape[1]))
