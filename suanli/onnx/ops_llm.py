"""ONNX ops of recent LLM / state-space models: LinearAttention, CausalConvWithState, TensorScatter.

All three are built from primitives (matmul, mul, exp, conv, scatter), so a model using them is
differentiable. LinearAttention runs its recurrence step by step in float32, as the reference does.

>>> import numpy as np, suanli
>>> from suanli.onnx.ops_llm import scatter_positions
>>> scatter_positions((2, 4, 3), (2, 2, 3), axis=1, starts=[0, 3], circular=True)[1, :, 0].tolist()
[3, 0]
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..tensor import Tensor
from ._util import P, cast, const, permute, reshape, scalar
from .errors import onnx_error
from .ops_attention import _heads, _repeat_heads
from .ops_nn import conv_nd
from .table import onnx_op


# ------------------------------------------------------------------------------ LinearAttention
def _step(t: Tensor, i: int) -> Tensor:
    """``t[:, :, i]`` of a (B, H, T, D) tensor: (B, H, D)."""
    b, h, _, d = t.shape
    return reshape(P("slice", t, key=((0, b, 1), (0, h, 1), (i, i + 1, 1), (0, d, 1))), (b, h, d))


@onnx_op("LinearAttention", since=27)
def linear_attention(ctx, q, k, v, past_state=None, decay=None, beta=None):
    """Recurrent linear attention; update_rule linear / gated (decay) / delta (beta) / gated_delta."""
    rule = ctx.get("update_rule", "gated_delta")
    qh, kvh = ctx.get("q_num_heads"), ctx.get("kv_num_heads")
    if not qh or not kvh or qh % kvh:
        raise onnx_error(ctx.where, "q_num_heads must be a positive multiple of kv_num_heads",
                         actual=f"q_num_heads={qh}, kv_num_heads={kvh}")
    gating, delta = rule in ("gated", "gated_delta"), rule in ("delta", "gated_delta")
    if rule not in ("linear", "gated", "delta", "gated_delta") or gating != (decay is not None) \
            or delta != (beta is not None):
        raise onnx_error(ctx.where, f"update_rule {rule!r} does not match the inputs given",
                         expect="gated rules need decay, delta rules need beta, and the others must omit them",
                         actual=f"decay {'given' if decay is not None else 'absent'}, "
                                f"beta {'given' if beta is not None else 'absent'}")
    out_dtype = q.dtype
    B, T, _ = q.shape
    f32 = np.float32
    q4, k4, v4 = (cast(_heads(t, n), f32) for t, n in ((q, qh), (k, kvh), (v, kvh)))
    dk, dv = q4.shape[3], v4.shape[3]
    if decay is not None:        # (B, T, H) -> (B, H, T, 1) or (B, T, H*dk) -> (B, H, T, dk)
        decay4 = cast(_heads(decay, kvh) if decay.shape[-1] != kvh else
                      permute(reshape(decay, (B, T, kvh, 1)), (0, 2, 1, 3)), f32)
    if beta is not None:
        beta4 = cast(permute(reshape(beta, (B, T, beta.shape[-1], 1)), (0, 2, 1, 3)), f32)
    state_dtype = past_state.dtype if past_state is not None else out_dtype
    state = cast(past_state, f32) if past_state is not None else const(np.zeros((B, kvh, dk, dv), f32))
    scale = ctx.get("scale") or 1.0 / np.sqrt(dk)
    outs = []
    for i in range(T):
        k_t, v_t = _step(k4, i), _step(v4, i)
        if gating:
            g = _step(decay4, i)
            state = P("mul", state, reshape(P("exp", g), g.shape + (1,)))
        if delta:             # v_t <- beta * (v_t - k_t . state)
            got = reshape(P("matmul", reshape(k_t, (B, kvh, 1, dk)), state), (B, kvh, dv))
            v_t = P("mul", _step(beta4, i), P("sub", v_t, got))
        state = P("add", state, P("mul", reshape(k_t, (B, kvh, dk, 1)), reshape(v_t, (B, kvh, 1, dv))))
        read = state if qh == kvh else _repeat_heads(state, qh // kvh)
        o = P("matmul", reshape(_step(q4, i), (B, qh, 1, dk)), read)                  # (B, Hq, 1, dv)
        outs.append(P("mul", o, scalar(o, scale)))
    y = P("cat", *outs, axis=2)                                                          # (B, Hq, T, dv)
    y = reshape(permute(y, (0, 2, 1, 3)), (B, T, qh * dv))
    return cast(y, out_dtype), cast(state, state_dtype)


# ------------------------------------------------------------------------------ CausalConvWithState
@onnx_op("CausalConvWithState", since=27)
def causal_conv_with_state(ctx, x, w, b=None, past_state=None):
    """Depthwise causal 1-d convolution carrying the last ``k - 1`` inputs as state."""
    act = ctx.get("activation", "none")
    if x.ndim != 3 or w.ndim != 3 or w.shape[0] != x.shape[1] or act not in ("none", "silu", "swish"):
        raise onnx_error(ctx.where, "expects input (B, C, L), weight (C, 1, k), activation none|silu|swish",
                         actual=f"input {x.shape}, weight {w.shape}, activation {act!r}")
    B, C, _ = x.shape
    k = w.shape[2]
    pad = past_state if past_state is not None else const(np.zeros((B, C, k - 1), x.dtype))
    padded = P("cat", pad, x, axis=2)
    y = conv_nd(padded, w, [1], [1], [0, 0], C)
    if b is not None:
        y = P("add", y, reshape(b, (1, C, 1)))
    if act != "none":           # silu in float32, as the reference
        y32 = cast(y, np.float32)
        y = cast(P("mul", y32, P("sigmoid", y32)), x.dtype)
    L = padded.shape[2]
    state = P("slice", padded, key=((0, B, 1), (0, C, 1), (L - (k - 1), L, 1)))
    return y, state


# ------------------------------------------------------------------------------ TensorScatter
def scatter_positions(cache_shape: Sequence[int], update_shape: Sequence[int], axis: int,
                      starts: Sequence[int], circular: bool) -> np.ndarray:
    """For every update element, its index along ``axis`` of the cache (batch ``b`` starts at ``starts[b]``)."""
    n = update_shape[axis]
    pos = np.asarray(starts, np.int64).reshape((-1,) + (1,) * (len(update_shape) - 1)) + \
        np.arange(n).reshape([n if i == axis else 1 for i in range(len(update_shape))])
    if circular:
        pos = pos % cache_shape[axis]
    return np.ascontiguousarray(np.broadcast_to(pos, tuple(update_shape)))


@onnx_op("TensorScatter", since=24)
def tensor_scatter(ctx, cache, update, write_indices=None):
    """Write ``update`` into a KV cache along ``axis`` at each batch entry's write index."""
    axis = ctx.get("axis", -2) % cache.ndim
    mode = ctx.get("mode", "linear")
    ok = all(c == u for i, (c, u) in enumerate(zip(cache.shape, update.shape)) if i != axis)
    if cache.ndim != update.ndim or not ok or update.shape[axis] > cache.shape[axis] or mode not in ("linear", "circular"):
        raise onnx_error(ctx.where, "update must match the cache except along axis, where it is not longer",
                         expect=f"mode linear|circular; cache {cache.shape}", actual=f"update {update.shape}, mode {mode!r}")
    starts = np.zeros(cache.shape[0], np.int64) if write_indices is None else \
        np.asarray(write_indices._data).astype(np.int64).reshape(-1)
    pos = scatter_positions(cache.shape, update.shape, axis, starts, mode == "circular")
    if mode == "linear" and pos.size and pos.max() >= cache.shape[axis]:
        raise onnx_error(ctx.where, "write past the end of the cache in linear mode",
                         expect=f"write_indices + {update.shape[axis]} <= {cache.shape[axis]}", actual=f"{starts.tolist()}",
                         hint="use mode='circular' or a larger cache")
    return P("scatter", cache, const(pos), update, dim=axis)
