"""GPT with a KV cache: the logits of every cached step equal the uncached model's and a torch GPT with a
KV cache (float64 1e-10, float32 1e-5), cached generation gives the very tokens of uncached generation
(greedy and sampled, also past block_size), and misuse of a cache is a clear error."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as TF

import suanli
from suanli.errors import ShapeError
from suanli.models import GPT, GPTConfig
from suanli.models.gpt import KVCache

TOL = {"float64": dict(rtol=1e-10, atol=1e-10), "float32": dict(rtol=1e-5, atol=1e-5)}
CFG = {"bias": GPTConfig(block_size=12, vocab_size=11, n_layer=2, n_head=2, n_embd=16, bias=True),
       "nobias": GPTConfig(block_size=10, vocab_size=7, n_layer=3, n_head=4, n_embd=16, bias=False)}


pytestmark = pytest.mark.usefixtures("torch_single_thread")   # see conftest.py


# ============================================================================ torch oracle with a cache
class TorchGPT(tnn.Module):
    """nanoGPT's model.py with a preallocated KV cache (keys/values written in place at ``length``)."""

    class Block(tnn.Module):
        def __init__(self, c: GPTConfig) -> None:
            super().__init__()
            self.ln_1, self.ln_2 = tnn.LayerNorm(c.n_embd, bias=c.bias), tnn.LayerNorm(c.n_embd, bias=c.bias)
            self.attn = tnn.Module()
            self.attn.c_attn = tnn.Linear(c.n_embd, 3 * c.n_embd, bias=c.bias)
            self.attn.c_proj = tnn.Linear(c.n_embd, c.n_embd, bias=c.bias)
            self.mlp = tnn.Module()
            self.mlp.c_fc = tnn.Linear(c.n_embd, 4 * c.n_embd, bias=c.bias)
            self.mlp.c_proj = tnn.Linear(4 * c.n_embd, c.n_embd, bias=c.bias)
            self.nh = c.n_head

        def forward(self, x, cache, layer):
            B, T, C = x.shape
            q, k, v = self.attn.c_attn(self.ln_1(x)).split(C, dim=2)
            q, k, v = (t.view(B, T, self.nh, C // self.nh).transpose(1, 2) for t in (q, k, v))
            start = cache["length"]
            cache["k"][layer][:, :, start:start + T] = k
            cache["v"][layer][:, :, start:start + T] = v
            keep = torch.ones(T, start + T, dtype=torch.bool).tril(start)   # query i sees keys 0..start+i
            y = TF.scaled_dot_product_attention(q, cache["k"][layer][:, :, :start + T],
                                                cache["v"][layer][:, :, :start + T], attn_mask=keep)
            x = x + self.attn.c_proj(y.transpose(1, 2).reshape(B, T, C))
            return x + self.mlp.c_proj(TF.gelu(self.mlp.c_fc(self.ln_2(x))))

    def __init__(self, c: GPTConfig) -> None:
        super().__init__()
        self.c = c
        self.transformer = tnn.ModuleDict(dict(
            wte=tnn.Embedding(c.vocab_size, c.n_embd), wpe=tnn.Embedding(c.block_size, c.n_embd),
            h=tnn.ModuleList([TorchGPT.Block(c) for _ in range(c.n_layer)]),
            ln_f=tnn.LayerNorm(c.n_embd, bias=c.bias)))
        self.lm_head = tnn.Linear(c.n_embd, c.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight

    def new_cache(self, B: int) -> dict:
        shape = (B, self.c.n_head, self.c.block_size, self.c.n_embd // self.c.n_head)
        return {"k": [torch.zeros(shape, dtype=torch.float64) for _ in range(self.c.n_layer)],
                "v": [torch.zeros(shape, dtype=torch.float64) for _ in range(self.c.n_layer)], "length": 0}

    def forward(self, idx, cache):
        T, start = idx.shape[1], cache["length"]
        x = self.transformer.wte(idx) + self.transformer.wpe(torch.arange(start, start + T))
        for layer, block in enumerate(self.transformer.h):
            x = block(x, cache, layer)
        cache["length"] = start + T
        return self.lm_head(self.transformer.ln_f(x))                       # (B, T, V): every position


def models(case: str, dtype: str) -> tuple[GPT, TorchGPT]:
    """A suanli GPT in ``dtype`` with O(1) logits (weights larger than GPT's init, so steps differ) and its
    float64 torch twin with the same weights."""
    cfg = CFG[case]
    _ = suanli.manual_seed(0)
    model = GPT(cfg).eval()
    rng = np.random.default_rng(1)
    sd = {}
    for name, p in model.state_dict().items():                  # the tied wte/lm_head get one matrix
        if name == "transformer.wte.weight":
            continue
        gain = name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight"))
        sd[name] = suanli.tensor(float(gain) + (0.4 if p.ndim == 2 else 0.2) * rng.standard_normal(p.shape),
                                 dtype=suanli.float32)
    sd["transformer.wte.weight"] = sd["lm_head.weight"]
    model.load_state_dict(sd)
    if dtype == "float64":
        model.double()
    t_model = TorchGPT(cfg).double()
    sd = {k: torch.from_numpy(np.asarray(v.numpy(), dtype=np.float64)) for k, v in model.state_dict().items()}
    t_model.load_state_dict(sd)
    return model, t_model


def _logits(model: GPT, idx: np.ndarray, cache: KVCache | None = None) -> np.ndarray:
    """Logits of every position of ``idx`` (targets make forward return them all)."""
    with suanli.no_grad():
        logits, _ = model(suanli.tensor(idx), suanli.zeros(*idx.shape, dtype=suanli.int64), kv_cache=cache)
    return logits.numpy()


# ============================================================================================ tests
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", list(CFG))
def test_cached_steps_match_uncached_and_torch(case, dtype):
    model, t_model = models(case, dtype)
    cfg, B = model.config, 2
    tokens = np.random.default_rng(2).integers(0, cfg.vocab_size, (B, cfg.block_size))
    cache, t_cache = KVCache(cfg, B, dtype=dtype), t_model.new_cache(B)
    # prefill 4, a chunk of 3 (start > 0: the offset causal mask), then one token at a time to block_size
    chunks = [(0, 4), (4, 7)] + [(t, t + 1) for t in range(7, cfg.block_size)]
    for a, b in chunks:
        got = _logits(model, tokens[:, a:b], cache)                         # (B, b - a, V)
        assert cache.length == b
        uncached = _logits(model, tokens[:, :b])[:, a:b]
        with torch.no_grad():
            ref = t_model(torch.from_numpy(tokens[:, a:b]), t_cache).numpy()
        np.testing.assert_allclose(got, uncached, **TOL[dtype])
        np.testing.assert_allclose(got, ref, **TOL[dtype])
        with suanli.no_grad():                                              # the inference form: last only
            cache.length = a
            last, _ = model(suanli.tensor(tokens[:, a:b]), kv_cache=cache)
        np.testing.assert_allclose(last.numpy()[:, 0], got[:, -1], **TOL[dtype])
    assert np.abs(ref).max() > 0.5          # the weights make non-trivial logits


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", list(CFG))
def test_generate_with_cache_gives_the_same_tokens(case, dtype):
    model, t_model = models(case, dtype)
    cfg = model.config
    prompt = suanli.tensor(np.random.default_rng(3).integers(0, cfg.vocab_size, (2, 3)))
    n_new = 2 * cfg.block_size                          # past block_size: the crop-and-prefill path
    greedy = model.generate(prompt, n_new, top_k=1, use_cache=True).numpy()
    np.testing.assert_array_equal(greedy, model.generate(prompt, n_new, top_k=1, use_cache=False).numpy())
    for seed in range(3):
        kw = dict(temperature=0.8, top_k=5 if seed else None)
        a = model.generate(prompt, n_new, generator=suanli.Generator(seed), use_cache=True, **kw).numpy()
        b = model.generate(prompt, n_new, generator=suanli.Generator(seed), use_cache=False, **kw).numpy()
        np.testing.assert_array_equal(a, b)
    # torch's greedy decode with its cache picks the same tokens up to block_size
    t_tokens, t_cache = torch.from_numpy(prompt.numpy()), t_model.new_cache(2)
    with torch.no_grad():
        logits = t_model(t_tokens, t_cache)
        while t_tokens.shape[1] < cfg.block_size:
            nxt = logits[:, -1].argmax(-1, keepdim=True)
            t_tokens = torch.cat([t_tokens, nxt], 1)
            logits = t_model(nxt, t_cache)
    np.testing.assert_array_equal(greedy[:, :cfg.block_size], t_tokens.numpy())
    assert len(np.unique(greedy)) > 1                   # not a constant sequence


def test_long_prompt_is_cropped():
    model, _ = models("nobias", "float64")
    prompt = suanli.tensor(np.random.default_rng(4).integers(0, 7, (1, 25)))      # > block_size 10
    a = model.generate(prompt, 4, top_k=1, use_cache=True).numpy()
    np.testing.assert_array_equal(a, model.generate(prompt, 4, top_k=1, use_cache=False).numpy())
    assert a.shape == (1, 29)


def test_cache_misuse_is_a_clear_error():
    model, _ = models("bias", "float32")
    idx = suanli.tensor([[1, 2, 3]])
    with suanli.no_grad():
        with pytest.raises(ShapeError, match=r"(?s)cache does not fit.*KVCache\(model.config, batch_size=1"):
            model(idx, kv_cache=KVCache(model.config, batch_size=2))
        with pytest.raises(TypeError, match="cache dtype float64 differs from the model's float32"):
            model(idx, kv_cache=KVCache(model.config, batch_size=1, dtype=suanli.float64))
        with pytest.raises(ShapeError, match="cache does not fit"):
            model(idx, kv_cache=KVCache(CFG["nobias"], batch_size=1))
        with pytest.raises(TypeError, match="expected a KVCache"):
            model(idx, kv_cache={"k": []})
        cache = KVCache(model.config, batch_size=1)
        cache.length = 10
        with pytest.raises(ShapeError, match=r"3 new positions after the 10 cached ones go past block_size 12"):
            model(idx, kv_cache=cache)
        assert cache.length == 10                                           # nothing was written
    with pytest.raises(RuntimeError, match="(?s)inference only.*no_grad"):
        model(idx, kv_cache=KVCache(model.config, batch_size=1))
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        KVCache(model.config, batch_size=0)
