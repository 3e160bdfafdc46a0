"""MultiheadAttention with torch's parameter names, layout, initialisation and forward semantics.

Parameters: ``in_proj_weight`` (3E, E) holding the query/key/value projections stacked (or
``q_proj_weight``/``k_proj_weight``/``v_proj_weight`` when ``kdim``/``vdim`` differ from E),
``in_proj_bias`` (3E,), ``out_proj.weight``/``out_proj.bias``, and ``bias_k``/``bias_v`` (1, 1, E) with
``add_bias_kv``. A torch ``state_dict`` therefore loads directly.

Masks follow torch's MultiheadAttention convention (the *opposite* of ``scaled_dot_product_attention``'s
bool masks): ``True`` in ``attn_mask`` or ``key_padding_mask`` means "do not attend"; float masks are
added to the scores.

>>> import suanli
>>> from suanli import nn
>>> mha = nn.MultiheadAttention(8, 2, batch_first=True)
>>> [name for name, _ in mha.named_parameters()]
['in_proj_weight', 'in_proj_bias', 'out_proj.weight', 'out_proj.bias']
>>> x = suanli.randn(3, 5, 8)                       # (N, L, E)
>>> out, weights = mha(x, x, x)
>>> out.shape, weights.shape                        # weights averaged over heads: (N, L, S)
((3, 5, 8), (3, 5, 5))
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ... import creation
from ... import dtypes as _dt
from ... import ops as _ops
from ...errors import DTypeError, op_error
from ...tensor import Tensor
from .. import functional as F
from .. import init
from ..module import Module
from ..parameter import Parameter
from .linear import Linear

__all__ = ["MultiheadAttention"]


class NonDynamicallyQuantizableLinear(Linear):
    """A plain Linear; the name is torch's (it appears in ``repr`` of MultiheadAttention)."""


class MultiheadAttention(Module):
    """``softmax(Q Kᵀ / sqrt(d) + mask) V`` over ``num_heads`` heads of size ``embed_dim // num_heads``.

    Inputs are (L, N, E) — or (N, L, E) with ``batch_first=True`` — or unbatched (L, E). ``forward``
    returns ``(output, weights)``; ``weights`` is None when ``need_weights=False`` (then the fused
    :func:`~suanli.nn.functional.scaled_dot_product_attention` path runs), else (N, L, S) averaged over
    heads or (N, num_heads, L, S) with ``average_attn_weights=False``.

    ``is_causal=True`` says that ``attn_mask`` is the causal mask (torch's hint); unlike torch, it may
    also be given without ``attn_mask``, and the causal mask is then built here. A query row whose keys
    are all masked gives zero output and zero weights (torch's weights path gives NaN there).
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 add_bias_kv: bool = False, add_zero_attn: bool = False, kdim: int | None = None,
                 vdim: int | None = None, batch_first: bool = False, dtype: Any = None) -> None:
        super().__init__()
        for name, v in (("embed_dim", embed_dim), ("num_heads", num_heads)):
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise op_error("MultiheadAttention", f"{name} must be a positive int, got {v!r}", cls=ValueError)
        if embed_dim % num_heads:
            raise op_error("MultiheadAttention", "embed_dim must be divisible by num_heads",
                           actual=f"embed_dim={embed_dim}, num_heads={num_heads}",
                           hint=f"pick num_heads among the divisors of {embed_dim}", cls=ValueError)
        if not 0.0 <= dropout <= 1.0:
            raise op_error("MultiheadAttention", f"dropout must be in [0, 1], got {dropout}", cls=ValueError)
        self.embed_dim, self.num_heads, self.dropout = embed_dim, num_heads, dropout
        self.kdim = embed_dim if kdim is None else kdim
        self.vdim = embed_dim if vdim is None else vdim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.head_dim = embed_dim // num_heads
        self.batch_first, self.add_zero_attn = batch_first, add_zero_attn
        # registration order is torch's, so named_parameters()/state_dict() list the same keys in order
        if self._qkv_same_embed_dim:
            self.in_proj_weight = Parameter(creation.empty(3 * embed_dim, embed_dim, dtype=dtype))
            self.register_parameter("q_proj_weight", None)
            self.register_parameter("k_proj_weight", None)
            self.register_parameter("v_proj_weight", None)
        else:
            self.q_proj_weight = Parameter(creation.empty(embed_dim, embed_dim, dtype=dtype))
            self.k_proj_weight = Parameter(creation.empty(embed_dim, self.kdim, dtype=dtype))
            self.v_proj_weight = Parameter(creation.empty(embed_dim, self.vdim, dtype=dtype))
            self.register_parameter("in_proj_weight", None)
        if bias:
            self.in_proj_bias = Parameter(creation.empty(3 * embed_dim, dtype=dtype))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = NonDynamicallyQuantizableLinear(embed_dim, embed_dim, bias=bias, dtype=dtype)
        if add_bias_kv:
            self.bias_k = Parameter(creation.empty(1, 1, embed_dim, dtype=dtype))
            self.bias_v = Parameter(creation.empty(1, 1, embed_dim, dtype=dtype))
        else:
            self.bias_k = self.bias_v = None
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        # torch: xavier-uniform projections, zero biases; out_proj.weight keeps Linear's default
        if self._qkv_same_embed_dim:
            init.xavier_uniform_(self.in_proj_weight)
        else:
            init.xavier_uniform_(self.q_proj_weight)
            init.xavier_uniform_(self.k_proj_weight)
            init.xavier_uniform_(self.v_proj_weight)
        if self.in_proj_bias is not None:
            init.zeros_(self.in_proj_bias)
            init.zeros_(self.out_proj.bias)
        if self.bias_k is not None:
            init.xavier_normal_(self.bias_k)
            init.xavier_normal_(self.bias_v)

    # ------------------------------------------------------------------ forward
    def forward(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Tensor | None = None,
                need_weights: bool = True, attn_mask: Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[Tensor, Tensor | None]:
        self_attention = query is key and key is value
        batched = self._check_inputs(query, key, value)
        if batched and self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))      # (L|S, N, E)
        if not batched:
            query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        L, N, E = query.shape
        S = key.shape[0]
        H, hd = self.num_heads, self.head_dim
        kpm = self._additive("key_padding_mask", key_padding_mask, query.dtype)
        if is_causal and attn_mask is None:
            attn_mask = creation.tensor(np.triu(np.ones((L, S), dtype=bool), 1))
        mask = self._additive("attn_mask", attn_mask, query.dtype)
        use_causal_kernel = is_causal and kpm is None and not need_weights
        if mask is not None:
            mask = self._check_attn_mask(mask, L, S, N)                                 # (1 | N*H, L, S)

        q, k, v = self._project(query, key, value, self_attention)                   # (L|S, N, E)
        if self.bias_k is not None:
            k = _ops.cat([k, self.bias_k.expand(1, N, E)])                           # (S+1, N, E)
            v = _ops.cat([v, self.bias_v.expand(1, N, E)])
            mask, kpm = _pad_last(mask), _pad_last(kpm)
        q = q.reshape(L, N * H, hd).transpose(0, 1)                                  # (N*H, L, hd)
        k = k.reshape(k.shape[0], N * H, hd).transpose(0, 1)                         # (N*H, S', hd)
        v = v.reshape(v.shape[0], N * H, hd).transpose(0, 1)
        if self.add_zero_attn:
            zeros = creation.zeros(N * H, 1, hd, dtype=k.dtype)
            k, v = _ops.cat([k, zeros], dim=1), _ops.cat([v, zeros], dim=1)          # (N*H, S'+1, hd)
            mask, kpm = _pad_last(mask), _pad_last(kpm)
        S = k.shape[1]
        if kpm is not None:
            if tuple(kpm.shape) != (N, S):
                raise op_error("MultiheadAttention", "key_padding_mask has the wrong shape",
                               expect=f"(N, S) = ({N}, {S}) (or (S,) unbatched)", actual=f"{tuple(kpm.shape)}")
            kpm = kpm.reshape(N, 1, 1, S).expand(N, H, 1, S).reshape(N * H, 1, S)    # (N*H, 1, S)
            mask = kpm if mask is None else mask + kpm
        dropout_p = self.dropout if self.training else 0.0

        if need_weights:
            scores = _ops.matmul(q * math.sqrt(1.0 / hd), k.transpose(-2, -1))       # (N*H, L, S)
            if mask is not None:
                scores = scores + mask
            weights = F._safe_softmax(scores) if mask is not None else F.softmax(scores, -1)
            if dropout_p > 0.0:
                weights = F.dropout(weights, dropout_p)
            out = _ops.matmul(weights, v)                                             # (N*H, L, hd)
            out = out.transpose(0, 1).reshape(L * N, E)                               # (L*N, E)
            weights = weights.reshape(N, H, L, S)
            if average_attn_weights:
                weights = weights.mean(dim=1)                                         # (N, L, S)
        else:
            if mask is not None and not use_causal_kernel:
                # (1, L, S) -> (1, 1, L, S); (N*H, L or 1, S) -> (N, H, L or 1, S)
                mask = mask.unsqueeze(0) if mask.shape[0] == 1 else mask.reshape(N, H, -1, S)
            out = F.scaled_dot_product_attention(
                q.reshape(N, H, L, hd), k.reshape(N, H, S, hd), v.reshape(N, H, S, hd),
                None if use_causal_kernel else mask, dropout_p, is_causal=use_causal_kernel)  # (N, H, L, hd)
            out = out.permute(2, 0, 1, 3).reshape(L * N, E)                          # (L*N, E)
            weights = None
        out = self.out_proj(out).reshape(L, N, E)                                     # (L, N, E)
        if not batched:
            out = out.squeeze(1)
            weights = weights.squeeze(0) if weights is not None else None
        elif self.batch_first:
            out = out.transpose(0, 1)                                                 # (N, L, E)
        return out, weights

    def _project(self, query: Tensor, key: Tensor, value: Tensor, self_attention: bool
                 ) -> tuple[Tensor, Tensor, Tensor]:
        E, b = self.embed_dim, self.in_proj_bias
        bq, bk, bv = (None, None, None) if b is None else (b[:E], b[E:2 * E], b[2 * E:])
        if self._qkv_same_embed_dim:
            w = self.in_proj_weight
            if self_attention:      # one GEMM for all three projections
                return F.linear(query, w, b).chunk(3, dim=-1)
            wq, wk, wv = w[:E], w[E:2 * E], w[2 * E:]
        else:
            wq, wk, wv = self.q_proj_weight, self.k_proj_weight, self.v_proj_weight
        return F.linear(query, wq, bq), F.linear(key, wk, bk), F.linear(value, wv, bv)

    def _check_inputs(self, query: Tensor, key: Tensor, value: Tensor) -> bool:
        op = "MultiheadAttention"
        for name, t in (("query", query), ("key", key), ("value", value)):
            if not isinstance(t, Tensor):
                raise op_error(op, f"{name} must be a suanli Tensor, got {type(t).__name__}", cls=TypeError)
        layout = "(N, L, E)" if self.batch_first else "(L, N, E)"
        if query.ndim not in (2, 3) or key.ndim != query.ndim or value.ndim != query.ndim:
            raise op_error(op, "query, key and value must all be 3-D (batched) or all 2-D (unbatched)",
                           expect=f"query {layout} or (L, E)",
                           actual=f"query {tuple(query.shape)}, key {tuple(key.shape)}, value {tuple(value.shape)}")
        seq = 1 if (self.batch_first and query.ndim == 3) else 0
        sizes = (("query", query, self.embed_dim, "embed_dim"), ("key", key, self.kdim, "kdim"),
                 ("value", value, self.vdim, "vdim"))
        for name, t, dim, attr in sizes:
            if t.shape[-1] != dim:
                raise op_error(op, f"{name}'s last dim must equal {attr}",
                               expect=f"{name}.shape[-1] == {dim}", actual=f"{name} {tuple(t.shape)}",
                               hint="pass kdim/vdim to the constructor when key/value sizes differ from embed_dim")
        if key.shape[seq] != value.shape[seq] or (query.ndim == 3 and not
                                                   query.shape[1 - seq] == key.shape[1 - seq] == value.shape[1 - seq]):
            raise op_error(op, "key and value must have the same sequence length, and all three the same batch",
                           actual=f"query {tuple(query.shape)}, key {tuple(key.shape)}, value {tuple(value.shape)}",
                           hint=f"inputs are {layout}" + ("" if self.batch_first else "; pass batch_first=True "
                                                          "for (N, L, E) inputs"))
        return query.ndim == 3

    def _check_attn_mask(self, mask: Tensor, L: int, S: int, N: int) -> Tensor:
        if mask.ndim == 2:
            if tuple(mask.shape) != (L, S):
                raise op_error("MultiheadAttention", "the 2-D attn_mask has the wrong shape",
                               expect=f"(L, S) = ({L}, {S})", actual=f"{tuple(mask.shape)}")
            return mask.unsqueeze(0)
        if mask.ndim == 3 and tuple(mask.shape) == (N * self.num_heads, L, S):
            return mask
        raise op_error("MultiheadAttention", "attn_mask must be (L, S) or (N * num_heads, L, S)",
                       expect=f"({L}, {S}) or ({N * self.num_heads}, {L}, {S})", actual=f"{tuple(mask.shape)}")

    @staticmethod
    def _additive(name: str, mask: Tensor | None, dtype: np.dtype) -> Tensor | None:
        """torch's canonical mask: bool True -> -inf, float kept (in the query's dtype)."""
        if mask is None:
            return None
        if not isinstance(mask, Tensor):
            raise op_error("MultiheadAttention", f"{name} must be a suanli Tensor or None, got "
                                                 f"{type(mask).__name__}", cls=TypeError)
        if mask.dtype == _dt.bool_:
            return creation.zeros(*mask.shape, dtype=dtype).masked_fill(mask, float("-inf"))
        if mask.dtype not in _dt.FLOATING:
            raise op_error("MultiheadAttention", f"{name} must be bool or floating point",
                           actual=f"{mask.dtype}", hint="True (or -inf) marks positions not to attend",
                           cls=DTypeError)
        return mask.to(dtype)


def _pad_last(mask: Tensor | None) -> Tensor | None:
    """One more key column, not masked (for bias_k/bias_v and add_zero_attn)."""
    return None if mask is None else F.pad(mask, (0, 1))
