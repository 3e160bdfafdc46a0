"""What the inference pattern passes buy on an ONNX-imported transformer: a MiniLM-L6-shaped encoder
(6 post-LN layers, width 384, 12 heads, FFN 1536, exact GELU, sequence 128, batch 1) exported from
torch with the TorchScript exporter at opset 14, where LayerNorm is decomposed
(ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div/Mul/Add), GELU is Div/Erf/Add/Mul/Mul, attention is
MatMul/Div/Add/Softmax/MatMul and Linear is MatMul + Add.

Side by side in one process, interleaved rounds, medians: suanli ``Session`` with the inference
passes but without the pattern passes ("before"), with them ("after"), onnxruntime (ORT_ENABLE_ALL)
and torch eager. Outputs are compared with torch first.

    python bench/patterns.py                 # 1 thread
    python bench/patterns.py --threads 2 --rounds 15
"""
from __future__ import annotations

import argparse
import io
import math
import os
import statistics
import sys
import time
import warnings


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=11, help="interleaved rounds (the median is reported)")
    ap.add_argument("--number", type=int, default=5, help="forward passes per timing sample")
    ap.add_argument("--opset", type=int, default=14)
    return ap.parse_args()


ARGS = _args() if __name__ == "__main__" else None
if ARGS is not None:        # thread counts must be fixed before NumPy/torch load their BLAS
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


PATTERNS = ("eliminate_shape_ops", "fuse_layer_norm", "fuse_gelu", "fuse_attention", "fuse_linear")


def minilm(layers: int = 6, width: int = 384, heads: int = 12, ffn: int = 1536):
    """A BERT-style encoder (HF BertLayer's operations) taking embeddings (B, T, width) and an
    attention mask (B, T) of ones and zeros."""
    import torch
    import torch.nn as nn

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.k, self.v, self.o = (nn.Linear(width, width) for _ in range(4))
            self.ln1, self.ln2 = nn.LayerNorm(width, eps=1e-12), nn.LayerNorm(width, eps=1e-12)
            self.f1, self.f2 = nn.Linear(width, ffn), nn.Linear(ffn, width)

        def forward(self, x, mask):
            b, t, d = x.shape
            hd = d // heads

            def split(y):                                            # (B, T, D) -> (B, H, T, hd)
                return y.view(b, t, heads, hd).permute(0, 2, 1, 3)
            q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
            scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(hd) + mask
            ctx = torch.matmul(torch.softmax(scores, -1), v)           # (B, H, T, hd)
            ctx = ctx.permute(0, 2, 1, 3).contiguous().view(b, t, d)
            x = self.ln1(x + self.o(ctx))
            return self.ln2(x + self.f2(nn.functional.gelu(self.f1(x))))

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([Layer() for _ in range(layers)])

        def forward(self, x, attention_mask):
            mask = (1.0 - attention_mask[:, None, None, :]) * -10000.0   # (B, 1, 1, T), HF's additive mask
            for layer in self.layers:
                x = layer(x, mask)
            return x

    torch.manual_seed(0)
    model = Encoder().eval()
    with torch.no_grad():                      # non-trivial LayerNorm affines, so nothing folds away
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
    return model


def export(model, inputs, opset: int, names=("x", "attention_mask")) -> bytes:
    import torch
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, inputs, buf, dynamo=False, opset_version=opset,
                          input_names=list(names), output_names=["y"])
    return buf.getvalue()


def pieces():
    """(name, torch module, example inputs, input names): each pattern alone at the encoder's sizes."""
    import torch
    import torch.nn as nn

    class Attention(nn.Module):
        def forward(self, q, k, v, mask):
            return torch.matmul(torch.softmax(torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(32) + mask, -1), v)

    class Gelu(nn.Module):
        def forward(self, x):
            return nn.functional.gelu(x)

    class Linear(nn.Module):                    # as q/k/v: the bias add is read by a reshape
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(384, 384)

        def forward(self, x):
            return self.lin(x).view(1, 128, 12, 32)

    ln = nn.LayerNorm(384, eps=1e-12)
    with torch.no_grad():
        ln.weight.uniform_(0.5, 1.5)
        ln.bias.normal_(0, 0.1)
    qkv = [torch.randn(1, 12, 128, 32) for _ in range(3)]
    return [("LayerNorm (1,128,384)", ln.eval(), (torch.randn(1, 128, 384),), ["x"]),
            ("GELU (1,128,1536)", Gelu(), (torch.randn(1, 128, 1536),), ["x"]),
            ("attention (1,12,128,32)", Attention(), (*qkv, torch.zeros(1, 1, 1, 128)), ["q", "k", "v", "mask"]),
            ("Linear 384->384 + view", Linear().eval(), (torch.randn(1, 128, 384),), ["x"])]


def timed(runs: dict, rounds: int, number: int, base: str | None = None) -> tuple[dict, dict]:
    """Medians and relative spreads (max - min) / median over interleaved rounds; with ``base``,
    also ``ratio``: the median over rounds of each runtime's time / ``base``'s time in that round
    (paired, so load that comes and goes cancels better than in a ratio of medians)."""
    for f in runs.values():
        f()
    samples: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(rounds):                    # interleaved: drift of the shared machine hits all alike
        for k, f in runs.items():
            t0 = time.perf_counter()
            for _ in range(number):
                f()
            samples[k].append((time.perf_counter() - t0) / number)
    med = {k: statistics.median(v) for k, v in samples.items()}
    spread = {k: (max(v) - min(v)) / med[k] for k, v in samples.items()}
    if base is not None:
        med["ratio"] = {k: statistics.median(a / b for a, b in zip(v, samples[base])) for k, v in samples.items()}
    return med, spread


def main() -> None:
    import onnxruntime as ort
    import torch
    from _harness import machine, print_table

    from suanli.compiler import passes as P
    from suanli.inference import Session

    torch.set_num_threads(ARGS.threads)
    model = minilm()
    x = torch.randn(1, 128, 384)
    am = torch.ones(1, 128)
    am[:, 100:] = 0                                                   # some padding, so the mask matters
    onnx_bytes = export(model, (x, am), ARGS.opset)
    feed = {"x": x.numpy(), "attention_mask": am.numpy()}
    with torch.no_grad():
        want = model(x, am).numpy()

    before = Session(onnx_bytes, passes=[getattr(P, n) for n in P.INFERENCE if n not in PATTERNS])
    after = Session(onnx_bytes)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads, so.inter_op_num_threads = ARGS.threads, 1
    ort_sess = ort.InferenceSession(onnx_bytes, so, providers=["CPUExecutionProvider"])

    def count(sess):
        return sum(n.op != "constant" for n in sess.graph.nodes)

    runs = {
        "suanli before": lambda: before.run(None, feed)[0],
        "suanli after": lambda: after.run(None, feed)[0],
        "onnxruntime": lambda: ort_sess.run(None, feed)[0],
    }
    errors = {k: float(np.max(np.abs(f() - want))) for k, f in runs.items()}

    def eager():
        with torch.no_grad():
            return model(x, am)
    runs["torch eager"] = eager
    med, spread = timed(runs, ARGS.rounds, ARGS.number, base="suanli after")
    print(f"machine: {machine()}; threads {ARGS.threads}; {ARGS.rounds} rounds x {ARGS.number} runs; "
          f"ONNX opset {ARGS.opset}")
    print(f"nodes (non-constant): before {count(before)}, after {count(after)}")
    rows = [[k, f"{med[k] * 1e3:.2f}", f"{spread[k] * 100:.0f}%", f"{med['ratio'][k]:.2f}",
             "-" if k == "torch eager" else f"{errors[k]:.1e}"] for k in runs]
    print_table("MiniLM-L6-shaped encoder, batch 1, seq 128 (median forward)",
                ["runtime", "ms", "spread (max-min)/median", "x suanli after (paired)", "max |err| vs torch"], rows)


def main_pieces() -> None:
    import torch
    from _harness import print_table

    from suanli.compiler import passes as P
    from suanli.inference import Session
    import onnxruntime as ort

    rows = []
    for name, module, args, names in pieces():
        data = export(module, args, ARGS.opset, names)
        feed = {n: a.numpy() for n, a in zip(names, args)}
        before = Session(data, passes=[getattr(P, n) for n in P.INFERENCE if n not in PATTERNS])
        after = Session(data)
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = ARGS.threads, 1
        ort_sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
        with torch.no_grad():
            want = module(*args).numpy()
        err = float(np.max(np.abs(after.run(None, feed)[0] - want)))
        med, _ = timed({"before": lambda: before.run(None, feed), "after": lambda: after.run(None, feed),
                        "ort": lambda: ort_sess.run(None, feed)}, ARGS.rounds, 4 * ARGS.number, base="after")
        ops_of = lambda s: "+".join(sorted(n.attrs.get("ops", n.op) for n in s.graph.nodes if n.op != "constant"))
        rows.append([name, ops_of(before)[:40], ops_of(after), f"{med['before'] * 1e6:.0f}", f"{med['after'] * 1e6:.0f}",
                     f"{med['ratio']['before']:.2f}", f"{med['ort'] * 1e6:.0f}", f"{err:.1e}"])
    print_table("each pattern alone (median us per run)", ["piece", "before", "after", "before us", "after us",
                                                         "speed-up (paired)", "onnxruntime us", "max |err| vs torch"], rows)


if __name__ == "__main__":
    main()
    main_pieces()
