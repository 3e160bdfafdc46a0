"""GPT: a decoder-only transformer, laid out exactly like nanoGPT's ``model.py``.

Same modules, same state-dict names (``transformer.wte``, ``transformer.h.0.attn.c_attn``, ...,
``lm_head``), same initialisation, so a nanoGPT checkpoint loads with ``load_state_dict`` and gives the
same logits. ``lm_head.weight`` *is* ``transformer.wte.weight`` (weight tying); the state dict lists it
under both names, as torch does.

>>> import suanli
>>> from suanli.models import GPT, GPTConfig
>>> _ = suanli.manual_seed(0)
>>> model = GPT(GPTConfig.babygpt())
>>> idx = suanli.tensor([[0, 1, 1], [1, 1, 1]])
>>> logits, loss = model(idx, targets=suanli.tensor([[1, 1, 1], [1, 1, 0]]))
>>> logits.shape, round(loss.item(), 2)
((2, 3, 2), 0.62)
>>> model.generate(idx, max_new_tokens=2, generator=suanli.Generator(0)).shape
(2, 5)

Generation keeps a :class:`KVCache` (the keys and values of every position seen so far), so each new
token costs one position's work instead of the whole context's:

>>> cache = KVCache(model.config, batch_size=2)
>>> with suanli.no_grad():
...     first, _ = model(idx, kv_cache=cache)                  # prefill: positions 0..2
>>> cache.length
3

References: Karpathy's nanoGPT ``model.py`` (the layout), GPT-2 (pre-norm blocks, the
``1/sqrt(2 * n_layer)`` scaling of residual projections), and Karpathy's "GPT as a finite-state
Markov chain" (the BabyGPT preset).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import creation
from .. import dtypes as _dt
from ..autograd import is_grad_enabled, no_grad
from ..errors import ShapeError
from ..random import Generator, rng
from ..tensor import Tensor, _wrap
from .. import nn
from ..nn import functional as F

__all__ = ["GPTConfig", "GPT", "KVCache", "CausalSelfAttention", "MLP", "Block"]


@dataclass
class GPTConfig:
    """Hyper-parameters of a GPT (nanoGPT's defaults are GPT-2 small's).

    ``block_size`` is the longest context; ``bias`` adds biases to the Linear layers and LayerNorms
    (GPT-2 has them; ``False`` is a little better and faster).
    """

    block_size: int = 1024
    vocab_size: int = 50304      # GPT-2's 50257 padded up to a multiple of 64
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True

    def __post_init__(self) -> None:
        for name in ("block_size", "vocab_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"GPTConfig: {name} must be a positive int, got {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"GPTConfig: n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}): "
                             f"each head gets n_embd // n_head channels; e.g. n_embd="
                             f"{self.n_head * max(1, round(self.n_embd / self.n_head))}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig: dropout must be in [0, 1), got {self.dropout}")

    @classmethod
    def babygpt(cls) -> GPTConfig:
        """Karpathy's BabyGPT: 2 tokens, context 3, 4 layers of 4 heads at width 16, no dropout or bias.

        A GPT this small is a Markov chain over the 2**3 = 8 possible contexts.
        """
        return cls(block_size=3, vocab_size=2, n_layer=4, n_head=4, n_embd=16, dropout=0.0, bias=False)

    @classmethod
    def shakespeare_char(cls, vocab_size: int = 65) -> GPTConfig:
        """nanoGPT's shakespeare_char run sized for a CPU (its README's settings): 4 layers, 4 heads,
        width 128, context 64, no dropout or bias; ``vocab_size`` is the number of distinct characters
        (65 for tinyshakespeare)."""
        return cls(block_size=64, vocab_size=vocab_size, n_layer=4, n_head=4, n_embd=128, dropout=0.0, bias=False)

    @classmethod
    def benchmark(cls) -> GPTConfig:
        """The configuration of the GPT training benchmark against torch (``bench/``): 4 layers, 4 heads,
        width 128, context 64, vocabulary 65 -- the same as :meth:`shakespeare_char`."""
        return cls.shakespeare_char(vocab_size=65)


class KVCache:
    """The keys and values of every layer for the positions generated so far, for incremental decoding.

    ``k[l]`` and ``v[l]`` are preallocated NumPy arrays of shape (B, n_head, block_size, head_size);
    a forward pass with ``kv_cache=`` writes its T new positions in place at ``length``..``length + T``
    and attends over positions 0..``length + T``, then advances ``length``. Values only: the cache
    holds no autograd history, so it is for eager inference (under ``suanli.no_grad()``; it cannot be
    traced). Set ``length`` back (``reset()`` for 0) to rewind.

    >>> from suanli.models import GPTConfig
    >>> cache = KVCache(GPTConfig.babygpt(), batch_size=2)
    >>> len(cache.k), cache.k[0].shape, cache.length
    (4, (2, 4, 3, 4), 0)
    """

    def __init__(self, config: GPTConfig, batch_size: int, dtype: Any = _dt.float32) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"KVCache: batch_size must be a positive int, got {batch_size!r}")
        self.dtype = _dt.as_dtype(dtype)
        self.block_size = config.block_size
        shape = (batch_size, config.n_head, config.block_size, config.n_embd // config.n_head)
        self.k = [np.zeros(shape, self.dtype) for _ in range(config.n_layer)]
        self.v = [np.zeros(shape, self.dtype) for _ in range(config.n_layer)]
        self.length = 0

    def reset(self) -> None:
        """Forget every position (the arrays are kept and overwritten)."""
        self.length = 0

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write ``k``, ``v`` (B, nh, T, hs) at positions ``length``.. of ``layer``; return the keys and
        values of positions 0..length+T as tensors viewing the cache (no copy)."""
        end = self.length + k.shape[2]
        self.k[layer][:, :, self.length:end] = k.numpy()
        self.v[layer][:, :, self.length:end] = v.numpy()
        return _wrap(self.k[layer][:, :, :end]), _wrap(self.v[layer][:, :, :end])


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position t sees positions 0..t.

    One ``c_attn`` matmul makes queries, keys and values for all heads at once; the attention itself
    is ``F.scaled_dot_product_attention(is_causal=True)`` (a fused causal softmax, no mask tensor).
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        assert config.n_embd % config.n_head == 0
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)   # q, k, v for all heads
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)       # output projection
        self.attn_dropout = nn.Dropout(config.dropout)     # nanoGPT keeps it (unused with fused attention)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout

    def forward(self, x: Tensor, kv_cache: KVCache | None = None, layer: int = 0) -> Tensor:
        B, T, C = x.shape        # batch, sequence length, embedding width (n_embd)
        hs = C // self.n_head    # head size
        qkv = self.c_attn(x)                                                  # (B, T, 3C)
        qkv = qkv.view(B, T, 3, self.n_head, hs).permute(2, 0, 3, 1, 4)       # (3, B, nh, T, hs)
        q, k, v = qkv[0], qkv[1], qkv[2]                                      # each (B, nh, T, hs)
        if kv_cache is None:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0,
                                               is_causal=True)                # (B, nh, T, hs)
        else:
            start = kv_cache.length
            k, v = kv_cache.update(layer, k, v)                               # each (B, nh, start + T, hs)
            if T == 1:       # one new position sees every cached one: no mask
                y = F.scaled_dot_product_attention(q, k, v)
            elif start == 0:
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:            # new position i (absolute start + i) sees keys 0..start + i
                keep = creation.tensor(np.tri(T, start + T, start, dtype=bool))
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
        y = y.transpose(1, 2).reshape(B, T, C)                                # (B, T, nh*hs) = (B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    """Position-wise feed-forward: width C -> 4C -> C with an exact (erf) GELU."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """A pre-norm transformer block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: Tensor, kv_cache: KVCache | None = None, layer: int = 0) -> Tensor:
        x = x + self.attn(self.ln_1(x), kv_cache, layer)
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):
    """A GPT language model: token + position embeddings, ``n_layer`` blocks, a final LayerNorm and a
    head tied to the token embedding.

    ``forward(idx, targets=None)`` takes token ids ``idx`` (B, T) with T <= ``block_size`` and returns
    ``(logits, loss)``: with ``targets`` (B, T) the logits of every position (B, T, vocab) and the mean
    cross entropy (targets equal to -1 are ignored); without, only the last position's logits
    (B, 1, vocab) -- all that generation needs -- and ``None``.

    ``kv_cache`` (a :class:`KVCache`, inference only) makes ``idx`` the continuation of the positions
    already in the cache: they get positions ``kv_cache.length``.., attend to the cached keys and
    values, and are appended to the cache.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"GPT: expected a GPTConfig, got {type(config).__name__}; "
                            f"e.g. GPT(GPTConfig.shakespeare_char())")
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # weight tying: one matrix embeds tokens and scores them (https://paperswithcode.com/method/weight-tying)
        self.transformer.wte.weight = self.lm_head.weight

        self.apply(self._init_weights)
        # GPT-2: residual projections get std 0.02 / sqrt(2 * n_layer) (two residual adds per block)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def get_num_params(self, non_embedding: bool = True) -> int:
        """Number of parameters; by default without the position embedding (the token embedding is
        counted once, as the tied ``lm_head``)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.transformer.wpe.weight.numel()
        return n

    def forward(self, idx: Tensor, targets: Tensor | None = None, *, kv_cache: KVCache | None = None
                ) -> tuple[Tensor, Tensor | None]:
        if not isinstance(idx, Tensor) or idx.ndim != 2 or idx.dtype not in (_dt.int64, _dt.int32):
            raise ShapeError(f"GPT.forward: idx must be an int64 tensor of token ids with shape (B, T), got "
                             f"{type(idx).__name__ if not isinstance(idx, Tensor) else f'{idx.shape} {idx.dtype}'}"
                             f"\n  help: suanli.tensor([[...]], dtype=suanli.int64); add a batch dim with idx[None]")
        B, T = idx.shape
        if T > self.config.block_size:
            raise ShapeError(f"GPT.forward: cannot forward a sequence of length {T}: block_size is only "
                             f"{self.config.block_size}\n  help: pass the last {self.config.block_size} tokens "
                             f"(idx[:, -{self.config.block_size}:]) or build the model with a larger "
                             f"GPTConfig.block_size")
        start = 0 if kv_cache is None else self._check_cache(kv_cache, B, T)
        pos = creation.arange(start, start + T, dtype=_dt.int64)               # (T,)
        tok_emb = self.transformer.wte(idx)                                    # (B, T, C)
        pos_emb = self.transformer.wpe(pos)                                    # (T, C)
        x = self.transformer.drop(tok_emb + pos_emb)                           # (B, T, C)
        for layer, block in enumerate(self.transformer.h):
            x = block(x, kv_cache, layer)
        x = self.transformer.ln_f(x)                                           # (B, T, C)
        if kv_cache is not None:
            kv_cache.length = start + T

        if targets is not None:
            if tuple(targets.shape) != (B, T):
                raise ShapeError(f"GPT.forward: targets must have idx's shape {(B, T)}, got {tuple(targets.shape)}"
                                 f"\n  help: targets[b, t] is the token that follows idx[b, :t + 1]")
            logits = self.lm_head(x)                                           # (B, T, V)
            loss = F.cross_entropy(logits.view(B * T, -1), targets.reshape(B * T),   # (B*T, V), (B*T,)
                                   ignore_index=-1)
        else:
            # inference: the last position only, as a list index to keep the time dim
            logits = self.lm_head(x[:, -1:, :])                                # (B, 1, V)
            loss = None
        return logits, loss

    def _check_cache(self, cache: KVCache, B: int, T: int) -> int:
        """The first position of the new tokens; raises unless ``cache`` fits this model and input."""
        where = "GPT.forward(kv_cache=...)"
        if not isinstance(cache, KVCache):
            raise TypeError(f"{where}: expected a KVCache, got {type(cache).__name__}\n"
                            f"  help: cache = KVCache(model.config, batch_size=B, dtype=model.lm_head.weight.dtype)")
        if is_grad_enabled():
            raise RuntimeError(f"{where}: the KV cache stores values without autograd history, so it is for "
                               f"inference only\n  help: run under `with suanli.no_grad():` (generate() does)")
        cfg, dtype = self.config, self.lm_head.weight.dtype
        want = (B, cfg.n_head, cfg.block_size, cfg.n_embd // cfg.n_head)
        if len(cache.k) != cfg.n_layer or cache.k[0].shape != want:
            raise ShapeError(f"{where}: the cache does not fit: it holds {len(cache.k)} layers of "
                             f"{cache.k[0].shape if cache.k else ()}, this model and idx {(B, T)} need "
                             f"{cfg.n_layer} layers of {want} (batch, heads, block_size, head size)"
                             f"\n  help: KVCache(model.config, batch_size={B}, dtype={dtype})")
        if cache.dtype != dtype:
            raise TypeError(f"{where}: cache dtype {cache.dtype} differs from the model's {dtype}"
                            f"\n  help: KVCache(model.config, batch_size={B}, dtype={dtype})")
        if cache.length < 0 or cache.length + T > cfg.block_size:
            raise ShapeError(f"{where}: {T} new positions after the {cache.length} cached ones go past "
                             f"block_size {cfg.block_size}\n  help: start again with cache.reset() and the "
                             f"last {cfg.block_size} tokens (generate() does this)")
        return cache.length

    def crop_block_size(self, block_size: int) -> None:
        """Shrink the context (e.g. a pretrained model used with shorter sequences): keeps the first
        ``block_size`` position embeddings."""
        if not 0 < block_size <= self.config.block_size:
            raise ValueError(f"GPT.crop_block_size: block_size must be in 1..{self.config.block_size}, "
                             f"got {block_size}")
        self.config.block_size = block_size
        self.transformer.wpe.weight = nn.Parameter(self.transformer.wpe.weight.detach()[:block_size].clone())
        self.transformer.wpe.num_embeddings = block_size

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """nanoGPT's optimizer groups: weight decay on every >= 2-D parameter (matmul weights and
        embeddings), none on 1-D ones (biases, LayerNorm gains). Each parameter appears once (the
        tied ``lm_head``/``wte`` matrix too).

        >>> from suanli.models import GPT, GPTConfig
        >>> groups = GPT(GPTConfig.babygpt()).param_groups(0.1)
        >>> [(g["weight_decay"], len(g["params"])) for g in groups]
        [(0.1, 18), (0.0, 9)]
        """
        params = [p for p in self.parameters() if p.requires_grad]
        return [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
                {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]

    def configure_optimizers(self, weight_decay: float, learning_rate: float,
                             betas: tuple[float, float] = (0.9, 0.95)) -> Any:
        """AdamW over :meth:`param_groups` (nanoGPT's ``configure_optimizers``)."""
        from .. import optim
        return optim.AdamW(self.param_groups(weight_decay), lr=learning_rate, betas=betas)

    @no_grad()
    def generate(self, idx: Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 generator: Generator | None = None, use_cache: bool = True) -> Tensor:
        """Append ``max_new_tokens`` sampled tokens to ``idx`` (B, T) and return (B, T + max_new_tokens).

        Each step takes the logits of the last position given the last ``block_size`` tokens, divides
        them by ``temperature``, keeps the ``top_k`` largest (if given) and samples from the softmax
        with ``generator`` (the default generator if ``None``; ``top_k=1`` is greedy). Call
        ``model.eval()`` first when the model has dropout.

        ``use_cache=True`` keeps a :class:`KVCache`: the prompt is run once (prefill), then each step
        runs only the new token. Once the sequence is longer than ``block_size`` the window slides, so
        every position shifts; each step then crops to the last ``block_size`` tokens and prefills again,
        exactly what ``use_cache=False`` computes (as nanoGPT).
        """
        if temperature <= 0:
            raise ValueError(f"GPT.generate: temperature must be > 0, got {temperature}; for greedy decoding "
                             f"use top_k=1")
        if top_k is not None and top_k < 1:
            raise ValueError(f"GPT.generate: top_k must be >= 1 or None, got {top_k}")
        draw = rng(generator)
        tokens = np.asarray(idx.numpy(), dtype=np.int64)                      # (B, T)
        bs = self.config.block_size
        cache = KVCache(self.config, len(tokens), self.lm_head.weight.dtype) if use_cache else None
        for _ in range(max_new_tokens):
            n = tokens.shape[1]
            if cache is not None and cache.length == n - 1 and n <= bs:
                new = tokens[:, -1:]                 # the cache holds every earlier position: decode one
            else:
                new = tokens[:, -bs:]                # no cache, first step, or the window slid: (re)prefill
                if cache is not None:
                    cache.reset()
            logits, _ = self(creation.tensor(new, dtype=_dt.int64), kv_cache=cache)
            logits = logits.numpy()[:, -1, :].astype(np.float64) / temperature  # (B, V)
            if top_k is not None and top_k < logits.shape[-1]:
                kth = np.partition(logits, -top_k, axis=-1)[:, [-top_k]]       # (B, 1): the k-th largest
                logits = np.where(logits < kth, -np.inf, logits)
            probs = np.exp(logits - logits.max(-1, keepdims=True))
            cdf = np.cumsum(probs, axis=-1)                                     # (B, V), unnormalised
            u = draw.random((len(cdf), 1)) * cdf[:, -1:]                        # (B, 1)
            nxt = np.minimum((cdf <= u).sum(-1, keepdims=True), cdf.shape[-1] - 1)   # (B, 1)
            tokens = np.concatenate([tokens, nxt], axis=1)                      # (B, T + 1)
        return creation.tensor(tokens, dtype=_dt.int64)
