"""Core benchmarks, suanli and torch side by side in one run (medians; ratio = how suanli compares).

    python bench/core.py            # all sections
    python bench/core.py overhead   # one section: overhead | matmul | conv | mlp

Targets (issue "Core"): per-op overhead within 1.5x of torch's; float32 matmul >= 0.95x torch's
throughput; conv2d forward+backward >= 0.7x torch's speed; the MLP step is reported.
"""
from __future__ import annotations

import datetime
import sys

import numpy as np
import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import suanli  # noqa: E402
import suanli.nn.functional as F  # noqa: E402
from _harness import machine, median_time, print_table  # noqa: E402


def bench_overhead() -> None:
    rows = []
    a, b = suanli.tensor([1.0]), suanli.tensor([2.0])
    ta, tb = torch.tensor([1.0]), torch.tensor([2.0])
    g, tg = suanli.tensor([1.0], requires_grad=True), torch.tensor([1.0], requires_grad=True)
    for name, s_fn, t_fn in (("add, no grad", lambda: a + b, lambda: ta + tb),
                             ("add, recording grad", lambda: g + b, lambda: tg + tb)):
        s = median_time(s_fn, repeat=9)
        t = median_time(t_fn, repeat=9)
        rows.append([name, f"{s * 1e6:.2f} us", f"{t * 1e6:.2f} us", f"{s / t:.2f}x", "<= 1.5x"])
    print_table("(a) per-op overhead, 1-element float32 add", ["case", "suanli", "torch", "suanli/torch time", "target"], rows)


def bench_matmul() -> None:
    rows = []
    rng = np.random.default_rng(0)
    for n in (256, 512, 1024, 2048):
        x = rng.standard_normal((n, n), dtype=np.float32)
        y = rng.standard_normal((n, n), dtype=np.float32)
        sx, sy = suanli.from_numpy(x), suanli.from_numpy(y)
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        rep = 7 if n <= 1024 else 5
        s = median_time(lambda: sx @ sy, repeat=rep)
        t = median_time(lambda: tx @ ty, repeat=rep)
        flop = 2 * n ** 3
        rows.append([str(n), f"{flop / s / 1e9:.1f}", f"{flop / t / 1e9:.1f}", f"{t / s:.2f}x", ">= 0.95x"])
    print_table("(b) float32 matmul n x n", ["n", "suanli GFLOP/s", "torch GFLOP/s", "suanli/torch throughput", "target"], rows)


CONV_CASES = [
    ("LeNet conv1", (64, 1, 28, 28), (6, 1, 5, 5), 0),
    ("LeNet conv2", (64, 6, 14, 14), (16, 6, 5, 5), 0),
    ("ResNet 64ch 56x56", (8, 64, 56, 56), (64, 64, 3, 3), 1),
    ("ResNet 128ch 28x28", (8, 128, 28, 28), (128, 128, 3, 3), 1),
]


def bench_conv() -> None:
    rows = []
    rng = np.random.default_rng(0)
    for name, xs, ws, pad in CONV_CASES:
        x = rng.standard_normal(xs, dtype=np.float32)
        w = rng.standard_normal(ws, dtype=np.float32) * 0.1
        sx, sw = suanli.tensor(x, requires_grad=True), suanli.tensor(w, requires_grad=True)
        tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)

        def s_step():
            sx.grad = sw.grad = None
            F.conv2d(sx, sw, padding=pad).sum().backward()

        def t_step():
            tx.grad = tw.grad = None
            torch.nn.functional.conv2d(tx, tw, padding=pad).sum().backward()

        rep = 5 if xs[0] * xs[2] > 5000 else 7
        s = median_time(s_step, repeat=rep)
        t = median_time(t_step, repeat=rep)
        rows.append([name, f"{xs}x{ws}", f"{s * 1e3:.2f} ms", f"{t * 1e3:.2f} ms", f"{t / s:.2f}x", ">= 0.7x"])
    print_table("(c) conv2d forward+backward (float32)",
                ["layer", "input x weight", "suanli", "torch", "suanli/torch speed", "target"], rows)


def bench_mlp() -> None:
    rng = np.random.default_rng(0)
    batch, d_in, d_h, d_out = 128, 784, 256, 10
    x = rng.standard_normal((batch, d_in), dtype=np.float32)
    y = rng.integers(0, d_out, batch)
    w1 = (rng.standard_normal((d_h, d_in)) / np.sqrt(d_in)).astype(np.float32)
    w2 = (rng.standard_normal((d_out, d_h)) / np.sqrt(d_h)).astype(np.float32)
    b1, b2 = np.zeros(d_h, np.float32), np.zeros(d_out, np.float32)
    sp = [suanli.tensor(p, requires_grad=True) for p in (w1, b1, w2, b2)]
    tp = [torch.tensor(p, requires_grad=True) for p in (w1, b1, w2, b2)]
    sx, sy, tx, ty = suanli.tensor(x), suanli.tensor(y), torch.tensor(x), torch.tensor(y)

    def s_step():
        loss = F.cross_entropy(F.linear(F.relu(F.linear(sx, sp[0], sp[1])), sp[2], sp[3]), sy)
        for p in sp:
            p.grad = None
        loss.backward()
        with suanli.no_grad():
            for p in sp:
                p.sub_(0.01 * p.grad)

    def t_step():
        tf = torch.nn.functional
        loss = tf.cross_entropy(tf.linear(tf.relu(tf.linear(tx, tp[0], tp[1])), tp[2], tp[3]), ty)
        for p in tp:
            p.grad = None
        loss.backward()
        with torch.no_grad():
            for p in tp:
                p.sub_(0.01 * p.grad)

    s = median_time(s_step, repeat=9)
    t = median_time(t_step, repeat=9)
    print_table("(d) 2-layer MLP training step (784-256-10, batch 128, SGD, float32)",
                ["suanli", "torch", "suanli/torch speed"],
                [[f"{s * 1e3:.3f} ms", f"{t * 1e3:.3f} ms", f"{t / s:.2f}x"]])


SECTIONS = {"overhead": bench_overhead, "matmul": bench_matmul, "conv": bench_conv, "mlp": bench_mlp}


def main(argv: list[str]) -> None:
    print(f"# bench/core.py  {datetime.date.today()}  {machine()}")
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), numpy {np.__version__}, "
          f"suanli {suanli.__version__}")
    for name in argv or list(SECTIONS):
        if name not in SECTIONS:
            raise SystemExit(f"unknown section {name!r}; choose from {sorted(SECTIONS)}")
        SECTIONS[name]()


if __name__ == "__main__":
    main(sys.argv[1:])
