"""The torch twins of suanli's models for the side-by-side benchmarks (same layers, same state-dict names).

LeNet-5 as in ``suanli/models/lenet.py``; GPT as nanoGPT's ``model.py`` (which ``suanli/models/gpt.py``
follows), with an optional key/value cache for generation (``KVCache``: preallocated, written in place,
as ``suanli.models.gpt.KVCache``; ``ConcatCache``: past keys/values in, presents out, the form of an ONNX
decode graph). ``load_from_suanli`` copies a suanli model's weights in, so both sides start identical.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class LeNet5(nn.Module):
    """(N, 1, 32, 32) -> (N, 10), as ``suanli.models.LeNet5``: C1 conv 6@5x5, S2 avg-pool, C3 conv 16@5x5,
    S4 avg-pool, C5 conv 120@5x5, F6 Linear 84, output Linear; tanh activations."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 6, 5)
        self.s2 = nn.AvgPool2d(2)
        self.c3 = nn.Conv2d(6, 16, 5)
        self.s4 = nn.AvgPool2d(2)
        self.c5 = nn.Conv2d(16, 120, 5)
        self.f6 = nn.Linear(120, 84)
        self.output = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.s2(torch.tanh(self.c1(x)))            # (N, 6, 14, 14)
        x = self.s4(torch.tanh(self.c3(x)))            # (N, 16, 5, 5)
        x = torch.tanh(self.c5(x))                     # (N, 120, 1, 1)
        x = x.flatten(1)                               # (N, 120)
        x = torch.tanh(self.f6(x))                     # (N, 84)
        return self.output(x)                          # (N, num_classes)


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (nanoGPT's)."""

    def __init__(self, ndim: int, bias: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, bias: bool) -> None:
        super().__init__()
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.n_head, self.n_embd = n_head, n_embd

    def forward(self, x: torch.Tensor, cache=None, layer: int = 0) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)     # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        causal = cache is None or cache.empty      # a cached forward is a prefill from position 0 ...
        if cache is not None:                      # ... or one new token, which sees every cached one
            k, v = cache.update(layer, k, v)                                # (B, nh, start + T, hs)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=causal)      # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)                   # (B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, n_embd: int, bias: bool) -> None:
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=bias)
        self.c_proj = nn.Linear(4 * n_embd, n_embd, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, bias: bool) -> None:
        super().__init__()
        self.ln_1 = LayerNorm(n_embd, bias)
        self.attn = CausalSelfAttention(n_embd, n_head, bias)
        self.ln_2 = LayerNorm(n_embd, bias)
        self.mlp = MLP(n_embd, bias)

    def forward(self, x: torch.Tensor, cache=None, layer: int = 0) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache, layer)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """nanoGPT without dropout: tied input/output embeddings, pre-norm blocks, exact GELU."""

    def __init__(self, vocab_size: int, block_size: int, n_layer: int, n_head: int, n_embd: int,
                 bias: bool = False) -> None:
        super().__init__()
        self.block_size = block_size
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab_size, n_embd),
            wpe=nn.Embedding(block_size, n_embd),
            h=nn.ModuleList([Block(n_embd, n_head, bias) for _ in range(n_layer)]),
            ln_f=LayerNorm(n_embd, bias)))
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight
        self.apply(self._init_weights)
        for pn, p in self.named_parameters():
            if pn.endswith("c_proj.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * n_layer))

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache=None,
                pos: torch.Tensor | None = None):
        """``cache``: a ``KVCache`` (positions continue at ``cache.length``, which advances) or a
        ``ConcatCache`` with ``pos`` (the positions of ``idx``, as a tensor, so an ONNX export keeps it
        an input)."""
        B, T = idx.shape
        if pos is None:
            start = getattr(cache, "length", 0)
            pos = torch.arange(start, start + T, dtype=torch.long)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)          # (B, T, C)
        for layer, block in enumerate(self.transformer.h):
            x = block(x, cache, layer)
        x = self.transformer.ln_f(x)
        if isinstance(cache, KVCache):
            cache.length += T
        if targets is None:
            return self.lm_head(x[:, [-1], :]), None
        logits = self.lm_head(x)                                            # (B, T, V)
        return logits, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


class KVCache:
    """Preallocated keys and values (B, nh, block_size, hs) per layer, written in place at ``length``."""

    def __init__(self, model: GPT, batch_size: int, dtype: torch.dtype = torch.float32) -> None:
        attn = model.transformer.h[0].attn
        shape = (batch_size, attn.n_head, model.block_size, attn.n_embd // attn.n_head)
        self.k = [torch.zeros(shape, dtype=dtype) for _ in model.transformer.h]
        self.v = [torch.zeros(shape, dtype=dtype) for _ in model.transformer.h]
        self.length = 0

    @property
    def empty(self) -> bool:
        return self.length == 0

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        end = self.length + k.shape[2]
        self.k[layer][:, :, self.length:end] = k
        self.v[layer][:, :, self.length:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]


class ConcatCache:
    """``past`` keys/values per layer (or none) in, ``present`` = past + new positions out (``torch.cat``)."""

    def __init__(self, past: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> None:
        self.past, self.present = past, []
        self.empty = past is None

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.past is not None:
            k, v = torch.cat([self.past[layer][0], k], 2), torch.cat([self.past[layer][1], v], 2)
        self.present.append((k, v))
        return k, v


class GPTPrefill(nn.Module):
    """idx (B, T) -> (last logits, keys and values of every layer): the prompt pass, for ONNX export."""

    def __init__(self, gpt: GPT) -> None:
        super().__init__()
        self.gpt = gpt

    def forward(self, idx: torch.Tensor):
        cache = ConcatCache()
        logits, _ = self.gpt(idx, cache=cache)
        return (logits, *[t for kv in cache.present for t in kv])


class GPTDecodeStep(nn.Module):
    """(idx (B, 1), pos (1,), past k0, v0, k1, v1, ...) -> (logits, present k0, v0, ...): one decode step."""

    def __init__(self, gpt: GPT) -> None:
        super().__init__()
        self.gpt = gpt

    def forward(self, idx: torch.Tensor, pos: torch.Tensor, *past: torch.Tensor):
        cache = ConcatCache([(past[i], past[i + 1]) for i in range(0, len(past), 2)])
        logits, _ = self.gpt(idx, cache=cache, pos=pos)
        return (logits, *[t for kv in cache.present for t in kv])


def load_from_suanli(torch_model: nn.Module, suanli_model) -> None:
    """Copy a suanli model's state dict into its torch twin (names must match; shapes are checked)."""
    sd = {k: torch.from_numpy(np.ascontiguousarray(v.numpy())) for k, v in suanli_model.state_dict().items()}
    missing, unexpected = torch_model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.endswith("transformer.wte.weight")]   # tied to lm_head
    if missing or unexpected:
        raise KeyError(f"state dicts differ: missing in suanli {missing}, not in torch {unexpected}")
