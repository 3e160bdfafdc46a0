"""Inference side by side: suanli's Session, onnxruntime (ORT_ENABLE_ALL) and torch eager, one process
per thread count, medians of whole forward passes timed in alternation (``_harness.interleaved_medians``).

    python bench/inference.py                   # ResNet-18 (batch 1 and 8), a MiniLM-shaped encoder, GPT decode
    python bench/inference.py --case resnet18 --threads 2
    python bench/inference.py --case gpt-decode

Models: ResNet-18 (torchvision layout, 224x224) and a BERT-style encoder of MiniLM-L6 shape (6 post-LN
layers, width 384, 12 heads, FFN 1536, GELU, sequence 128, batch 1). The torch model is the source of
the weights: suanli loads its state_dict, onnxruntime runs its ONNX export; outputs are compared first.
Targets (issue "Inference"): suanli faster than torch eager on each; ResNet-18 within 1.25x of onnxruntime.

``gpt-decode``: greedy generation with a KV cache, batch 1, a 16-token prompt and 48 new tokens, for the
GPT of the training benchmark (4 layers, 4 heads, width 128, context 64, vocabulary 65) and a GPT-2-small-
like shape (6 layers, 6 heads, width 384, context 256). suanli is the source of the weights (``generate``
with its ``KVCache``); torch eager runs the twin of ``_torch_models.py`` with its preallocated cache;
onnxruntime loops the ONNX export of the twin's prefill and single-token decode step (past keys/values in,
present keys/values out). Reported per generated token (prefill included), with suanli without the cache
and a suanli ``Session`` decode step for reference; the three must produce the same tokens.
"""
from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))


def _torch_resnet18():
    import torch.nn as tnn

    class Block(tnn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = tnn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(cout)
            self.relu = tnn.ReLU(inplace=True)
            self.conv2 = tnn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(cout)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = tnn.Sequential(tnn.Conv2d(cin, cout, 1, stride, bias=False), tnn.BatchNorm2d(cout))

        def forward(self, x):
            idt = x if self.downsample is None else self.downsample(x)
            return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))) + idt)

    class ResNet18(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = tnn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = tnn.BatchNorm2d(64)
            self.relu = tnn.ReLU(inplace=True)
            self.maxpool = tnn.MaxPool2d(3, 2, 1)
            widths = [64, 128, 256, 512]
            cin = 64
            for i, w in enumerate(widths):
                stride = 1 if i == 0 else 2
                setattr(self, f"layer{i + 1}", tnn.Sequential(Block(cin, w, stride), Block(w, w, 1)))
                cin = w
            self.avgpool = tnn.AdaptiveAvgPool2d(1)
            self.fc = tnn.Linear(512, 1000)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(self.avgpool(x).flatten(1))
    return ResNet18()


def _encoders():
    """(suanli encoder, torch encoder) of MiniLM-L6 shape with the same parameter names."""
    import torch.nn as tnn

    import suanli.nn as snn
    import suanli.nn.functional as F

    class Layer(snn.Module):            # torch.nn.TransformerEncoderLayer(norm_first=False, gelu)
        def __init__(self, d, h, ff):
            super().__init__()
            self.self_attn = snn.MultiheadAttention(d, h, batch_first=True)
            self.linear1, self.linear2 = snn.Linear(d, ff), snn.Linear(ff, d)
            self.norm1, self.norm2 = snn.LayerNorm(d), snn.LayerNorm(d)

        def forward(self, x):
            x = self.norm1(x + self.self_attn(x, x, x, need_weights=False)[0])
            return self.norm2(x + self.linear2(F.gelu(self.linear1(x))))

    class Encoder(snn.Module):
        def __init__(self, n=6, d=384, h=12, ff=1536):
            super().__init__()
            self.layers = snn.ModuleList([Layer(d, h, ff) for _ in range(n)])

        def forward(self, x):
            for layer in self.layers:
                x = layer(x)
            return x

    class TEncoder(tnn.Module):
        def __init__(self, n=6, d=384, h=12, ff=1536):
            super().__init__()
            self.layers = tnn.ModuleList([tnn.TransformerEncoderLayer(d, h, ff, dropout=0.0, activation="gelu",
                                                                      batch_first=True) for _ in range(n)])

        def forward(self, x):
            for layer in self.layers:
                x = layer(x)
            return x
    return Encoder(), TEncoder()


def _child(case: str, threads: int) -> list[dict]:
    import numpy as np
    import onnxruntime as ort
    import torch

    sys.path.insert(0, HERE)
    import suanli
    from _harness import interleaved_medians
    from suanli.inference.session import Session
    from suanli.models import resnet18

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    if case == "resnet18":
        tmodel, smodel = _torch_resnet18().eval(), resnet18(num_classes=1000)
        batches = [1, 8]
        make = lambda b: rng.standard_normal((b, 3, 224, 224), dtype=np.float32)   # noqa: E731
    else:
        smodel, tmodel = _encoders()
        tmodel = tmodel.eval()
        batches = [1]
        make = lambda b: rng.standard_normal((b, 128, 384), dtype=np.float32)      # noqa: E731
    for m in tmodel.modules():            # non-trivial batch-norm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    smodel.load_state_dict({k: suanli.tensor(v.detach().numpy()) for k, v in tmodel.state_dict().items()})
    smodel.eval()
    results = []
    for b in batches:
        x = make(b)
        with torch.no_grad():
            ref = tmodel(torch.from_numpy(x)).numpy()
        sess = Session(smodel, (suanli.tensor(x),))
        got = sess.run(None, {"input": x})[0]
        err = float(np.abs(got - ref).max() / (np.abs(ref).max() + 1e-12))
        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(tmodel, (torch.from_numpy(x),), buf, dynamo=False, opset_version=17,
                              input_names=["input"])
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        osess = ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])
        ort_err = float(np.abs(osess.run(None, {"input": x})[0] - ref).max() / (np.abs(ref).max() + 1e-12))

        def run_torch():
            with torch.no_grad():
                tmodel(torch.from_numpy(x))
        times = interleaved_medians({"suanli_s": lambda: sess.run(None, {"input": x}),
                                     "ort_s": lambda: osess.run(None, {"input": x}), "torch_s": run_torch})
        res = {"case": case, "batch": b, "threads": threads, "rel_err": err, "ort_rel_err": ort_err, **times}
        results.append(res)
    return results


GPT_SHAPES = {"gpt 4L/4H/128": dict(block_size=64, vocab_size=65, n_layer=4, n_head=4, n_embd=128),
              "gpt 6L/6H/384": dict(block_size=256, vocab_size=65, n_layer=6, n_head=6, n_embd=384)}
PROMPT, NEW_TOKENS = 16, 48


def _gpt_weights(model, seed: int = 0) -> None:
    """Random weights whose greedy output varies (with GPT's 0.02 init, or token embeddings as large as
    the blocks' output, the tied head repeats one token): token embeddings std 0.3, position embeddings
    std 1, matrices std 2/sqrt(fan_in), LayerNorm gains around 1."""
    import numpy as np

    import suanli
    rng = np.random.default_rng(seed)
    sd = {}
    for name, p in model.state_dict().items():
        if name == "transformer.wte.weight":
            continue
        if name.endswith("weight") and p.ndim == 2:
            std = 1.0 if "wpe" in name else 0.3 if name == "lm_head.weight" else 2.0 * p.shape[1] ** -0.5
            sd[name] = rng.normal(0.0, std, p.shape)
        else:
            sd[name] = 1.0 + 0.1 * rng.standard_normal(p.shape)
    sd["transformer.wte.weight"] = sd["lm_head.weight"]
    model.load_state_dict({k: suanli.tensor(v, dtype=suanli.float32) for k, v in sd.items()})


def _session_decoder(model):
    """The decode step as a fixed-shape function for ``Session``: (idx (1, 1), pos (1,), bias (1, 1, 1,
    block) = 0 for cached positions and -inf after, caches k0, v0, ... (1, nh, block, hs)) -> (logits, new
    k0, v0, ...); the caller writes the new keys/values into its cache. Attention is split between the
    cache and the new position, so no shape depends on the position."""
    import math

    import suanli
    import suanli.nn.functional as F
    cfg = model.config
    nh, C, bs = cfg.n_head, cfg.n_embd, cfg.block_size
    hs = C // nh

    def step(idx, pos, bias, *cache):
        x = model.transformer.wte(idx) + model.transformer.wpe(pos)             # (1, 1, C)
        news = []
        for layer, blk in enumerate(model.transformer.h):
            kc, vc = cache[2 * layer], cache[2 * layer + 1]
            qkv = blk.attn.c_attn(blk.ln_1(x)).view(1, 1, 3, nh, hs).permute(2, 0, 3, 1, 4)
            q, k, v = qkv[0] * (1.0 / math.sqrt(hs)), qkv[1], qkv[2]             # (1, nh, 1, hs)
            w = F.softmax(suanli.cat([q @ kc.transpose(-2, -1) + bias, (q * k).sum(-1, keepdim=True)], -1), -1)
            y = w[..., :bs] @ vc + w[..., bs:] * v                               # (1, nh, 1, hs)
            x = x + blk.attn.c_proj(y.transpose(1, 2).reshape(1, 1, C))
            x = x + blk.mlp(blk.ln_2(x))
            news += [k, v]
        return (model.lm_head(model.transformer.ln_f(x)), *news)
    return step


def _child_gpt(threads: int) -> list[dict]:
    import numpy as np
    import onnxruntime as ort
    import torch

    sys.path.insert(0, HERE)
    import suanli
    from _harness import interleaved_medians
    from _torch_models import GPT as TorchGPT, GPTDecodeStep, GPTPrefill, KVCache as TorchKVCache, load_from_suanli
    from suanli.inference.session import Session
    from suanli.models import GPT, GPTConfig
    from suanli.models.gpt import KVCache

    torch.set_num_threads(threads)
    results = []
    for label, shape in GPT_SHAPES.items():
        _ = suanli.manual_seed(0)
        cfg = GPTConfig(**shape, dropout=0.0, bias=False)
        model = GPT(cfg).eval()
        _gpt_weights(model)
        twin = TorchGPT(cfg.vocab_size, cfg.block_size, cfg.n_layer, cfg.n_head, cfg.n_embd).eval()
        load_from_suanli(twin, model)
        prompt = np.random.default_rng(1).integers(0, cfg.vocab_size, (1, PROMPT))
        L = cfg.n_layer

        def run_suanli():
            return model.generate(suanli.tensor(prompt), NEW_TOKENS, top_k=1).numpy()[0, PROMPT:]

        def run_suanli_nocache():
            return model.generate(suanli.tensor(prompt), NEW_TOKENS, top_k=1, use_cache=False).numpy()[0, PROMPT:]

        def run_torch():
            with torch.no_grad():
                cache, out = TorchKVCache(twin, 1), []
                logits, _ = twin(torch.from_numpy(prompt), cache=cache)
                for t in range(NEW_TOKENS):
                    nxt = logits[:, -1].argmax(-1, keepdim=True)                  # (1, 1)
                    out.append(int(nxt))
                    if t + 1 < NEW_TOKENS:
                        logits, _ = twin(nxt, cache=cache)
            return np.array(out)

        # onnxruntime: the twin's prefill and decode step, exported with torch.onnx (legacy exporter)
        kv_names = [f"{kind}{i}" for i in range(L) for kind in ("k", "v")]
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            buf = io.BytesIO()
            torch.onnx.export(GPTPrefill(twin), (torch.from_numpy(prompt),), buf, dynamo=False, opset_version=17,
                              input_names=["idx"], output_names=["logits"] + [f"present_{n}" for n in kv_names])
            prefill = ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])
            past = [torch.zeros(1, cfg.n_head, PROMPT, cfg.n_embd // cfg.n_head) for _ in kv_names]
            buf = io.BytesIO()
            torch.onnx.export(GPTDecodeStep(twin), (torch.zeros(1, 1, dtype=torch.long),
                                                    torch.tensor([PROMPT]), *past), buf,
                              dynamo=False, opset_version=17,
                              input_names=["idx", "pos"] + [f"past_{n}" for n in kv_names],
                              output_names=["logits"] + [f"present_{n}" for n in kv_names],
                              dynamic_axes={**{f"past_{n}": {2: "past"} for n in kv_names},
                                            **{f"present_{n}": {2: "total"} for n in kv_names}})
            decode = ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])

        def run_ort():
            logits, *kv = prefill.run(None, {"idx": prompt})
            out = []
            for t in range(NEW_TOKENS):
                nxt = logits[:, -1].argmax(-1)[:, None]
                out.append(int(nxt[0, 0]))
                if t + 1 < NEW_TOKENS:
                    feed = {"idx": nxt, "pos": np.array([PROMPT + t], dtype=np.int64)}
                    feed.update({f"past_{n}": a for n, a in zip(kv_names, kv)})
                    logits, *kv = decode.run(None, feed)
            return np.array(out)

        # suanli, prefill eager + a Session decode step over the full-size cache (reference for item 2)
        cache = KVCache(cfg, 1)
        examples = [suanli.zeros(1, 1, dtype=suanli.int64), suanli.zeros(1, dtype=suanli.int64),
                    suanli.zeros(1, 1, 1, cfg.block_size)] + [suanli.tensor(a) for i in range(L)
                                                                for a in (cache.k[i], cache.v[i])]
        sess = Session(_session_decoder(model), examples)

        def run_session():
            cache.reset()
            with suanli.no_grad():
                logits, _ = model(suanli.tensor(prompt), kv_cache=cache)
            logits, arrays, out = logits.numpy(), [a for i in range(L) for a in (cache.k[i], cache.v[i])], []
            bias = np.full((1, 1, 1, cfg.block_size), -np.inf, np.float32)
            for t in range(NEW_TOKENS):
                nxt = logits[:, -1].argmax(-1)[:, None]
                out.append(int(nxt[0, 0]))
                if t + 1 < NEW_TOKENS:
                    pos = PROMPT + t
                    bias[..., :pos] = 0.0
                    logits, *news = sess(nxt, np.array([pos]), bias, *arrays)
                    for a, new in zip(arrays, news):
                        a[:, :, pos] = new[:, :, 0]
            return np.array(out)

        tokens = {name: f() for name, f in [("suanli", run_suanli), ("torch", run_torch), ("ort", run_ort),
                                            ("session", run_session), ("nocache", run_suanli_nocache)]}
        with torch.no_grad(), suanli.no_grad():
            ref = twin(torch.from_numpy(prompt))[0].numpy()
            got = model(suanli.tensor(prompt))[0].numpy()
        ort_got = prefill.run(None, {"idx": prompt})[0]
        res = {"case": "gpt-decode", "model": label, "batch": 1, "threads": threads,
               "rel_err": float(np.abs(got - ref).max() / np.abs(ref).max()),
               "ort_rel_err": float(np.abs(ort_got - ref).max() / np.abs(ref).max()),
               "same_tokens": {k: bool((v == tokens["torch"]).all()) for k, v in tokens.items()},
               "distinct_tokens": len(set(tokens["torch"].tolist()))}
        # round-robin: one whole generation of each per round, so load from other processes hits all alike
        times = interleaved_medians({"suanli_s": run_suanli, "ort_s": run_ort, "torch_s": run_torch,
                                     "session_s": run_session, "nocache_s": run_suanli_nocache},
                                    rounds=15, min_time=0.0, settle=False)
        res.update({k: t / NEW_TOKENS for k, t in times.items()})
        results.append(res)
    return results


CASES = {"resnet18": "ResNet-18 224x224", "encoder": "MiniLM-L6-shaped encoder, seq 128",
         "gpt-decode": "GPT greedy decode with a KV cache"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, action="append")
    ap.add_argument("--case", choices=sorted(CASES), action="append")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    cases, threads = args.case or list(CASES), args.threads or [1, 2]
    if args.child:
        for case in cases:
            for r in (_child_gpt(threads[0]) if case == "gpt-decode" else _child(case, threads[0])):
                print(json.dumps(r), flush=True)
        return
    sys.path.insert(0, HERE)
    from _harness import machine, print_table, run_children
    print(f"# suanli Session vs onnxruntime vs torch eager ({datetime.date.today()}, {machine()})")
    results = run_children(__file__, threads, cases)
    ms = lambda s: f"{s * 1e3:.1f} ms"     # noqa: E731
    rows = [[CASES[r["case"]], str(r["batch"]), str(r["threads"]), ms(r["suanli_s"]), ms(r["ort_s"]), ms(r["torch_s"]),
             f"{r['suanli_s'] / r['ort_s']:.2f}x", f"{r['torch_s'] / r['suanli_s']:.2f}x", f"{r['rel_err']:.1e}"]
            for r in results if r["case"] != "gpt-decode"]
    if rows:
        print_table("forward pass (median)", ["model", "batch", "threads", "suanli", "onnxruntime", "torch eager",
                                              "suanli/ORT time", "speed vs torch", "max rel err vs torch"], rows)
    ms = lambda s: f"{s * 1e3:.2f} ms"     # noqa: E731
    rows = [[r["model"], str(r["threads"]), ms(r["suanli_s"]), ms(r["ort_s"]), ms(r["torch_s"]),
             f"{r['suanli_s'] / r['ort_s']:.2f}x", f"{r['torch_s'] / r['suanli_s']:.2f}x", ms(r["session_s"]),
             ms(r["nocache_s"]), "yes" if all(r["same_tokens"].values()) else str(r["same_tokens"]),
             f"{r['rel_err']:.1e}"]
            for r in results if r["case"] == "gpt-decode"]
    if rows:
        print_table(f"GPT greedy generation, KV cache, batch 1, prompt {PROMPT}, {NEW_TOKENS} new tokens: time per "
                    f"token (median)", ["model", "threads", "suanli", "onnxruntime", "torch eager", "suanli/ORT time",
                                        "speed vs torch", "suanli Session step", "suanli no cache", "same tokens",
                                        "max rel err vs torch"], rows)


if __name__ == "__main__":
    main()
