"""Inference side by side: suanli's Session, onnxruntime (ORT_ENABLE_ALL) and torch eager, one process
per thread count, medians of whole forward passes.

    python bench/inference.py                   # ResNet-18 (batch 1 and 8) and a MiniLM-shaped encoder
    python bench/inference.py --case resnet18 --threads 2

Models: ResNet-18 (torchvision layout, 224x224) and a BERT-style encoder of MiniLM-L6 shape (6 post-LN
layers, width 384, 12 heads, FFN 1536, GELU, sequence 128, batch 1). The torch model is the source of
the weights: suanli loads its state_dict, onnxruntime runs its ONNX export; outputs are compared first.
Targets (issue "Inference"): suanli faster than torch eager on each; ResNet-18 within 1.25x of onnxruntime.
"""
from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import subprocess
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
    from _harness import median_time
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
        rep = 7
        res = {"case": case, "batch": b, "threads": threads, "rel_err": err, "ort_rel_err": ort_err,
               "suanli_s": median_time(lambda: sess.run(None, {"input": x}), repeat=rep, min_time=0.3),
               "ort_s": median_time(lambda: osess.run(None, {"input": x}), repeat=rep, min_time=0.3),
               "torch_s": median_time(run_torch, repeat=rep, min_time=0.3)}
        results.append(res)
    return results


CASES = {"resnet18": "ResNet-18 224x224", "encoder": "MiniLM-L6-shaped encoder, seq 128"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, action="append")
    ap.add_argument("--case", choices=sorted(CASES), action="append")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    cases, threads = args.case or list(CASES), args.threads or [1, 2]
    if args.child:
        for case in cases:
            for r in _child(case, threads[0]):
                print(json.dumps(r), flush=True)
        return
    sys.path.insert(0, HERE)
    from _harness import machine, print_table
    print(f"# suanli Session vs onnxruntime vs torch eager ({datetime.date.today()}, {machine()})")
    results = []
    for n in threads:
        env = {**os.environ, "OMP_NUM_THREADS": str(n), "OPENBLAS_NUM_THREADS": str(n), "MKL_NUM_THREADS": str(n)}
        cmd = [sys.executable, __file__, "--child", "--threads", str(n)] + [a for c in cases for a in ("--case", c)]
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            sys.stderr.write(r.stderr)
            raise SystemExit(f"benchmark child with {n} threads failed")
        results += [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    ms = lambda s: f"{s * 1e3:.1f} ms"     # noqa: E731
    rows = [[CASES[r["case"]], str(r["batch"]), str(r["threads"]), ms(r["suanli_s"]), ms(r["ort_s"]), ms(r["torch_s"]),
             f"{r['suanli_s'] / r['ort_s']:.2f}x", f"{r['torch_s'] / r['suanli_s']:.2f}x", f"{r['rel_err']:.1e}"]
            for r in results]
    print_table("forward pass (median)", ["model", "batch", "threads", "suanli", "onnxruntime", "torch eager",
                                          "suanli/ORT time", "speed vs torch", "max rel err vs torch"], rows)


if __name__ == "__main__":
    main()
