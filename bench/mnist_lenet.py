"""LeNet-5 on MNIST for 2 epochs, suanli and torch side by side: test accuracy and wall time.

    python bench/mnist_lenet.py [--data DIR] [--epochs 2] [--threads 2] [--seed 0]

Same everything on both sides: architecture (suanli's LeNet5 and its torch twin), initial weights
(suanli's, copied into torch), data (MNIST normalised and padded to 32x32, the same shuffled batches),
optimizer (Adam lr 2e-3, batch 32, cosine decay to 0 over the run -- configs/mnist-lenet5.toml).
The wall time is the training loop alone; evaluation on the 10000 test images is timed separately.
``--threads N`` re-runs the script with OMP/OPENBLAS/MKL_NUM_THREADS=N so both use N cores.
"""
from __future__ import annotations

import argparse
import datetime
import math
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "data", "mnist"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=DEFAULT_DATA, help=f"folder with the MNIST IDX files (default {DEFAULT_DATA})")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, help="cores for both libraries (re-executes with the env set)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    args = ap.parse_args()
    if args.threads and os.environ.get("OPENBLAS_NUM_THREADS") != str(args.threads):
        n = str(args.threads)
        os.execve(sys.executable, [sys.executable, *sys.argv],
                  {**os.environ, "OMP_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n, "MKL_NUM_THREADS": n})

    import numpy as np
    import torch

    sys.path.insert(0, HERE)
    import suanli
    import suanli.nn.functional as F
    from _harness import machine, print_table
    from _torch_models import LeNet5 as TorchLeNet5
    from _torch_models import load_from_suanli
    from suanli import optim
    from suanli.data import MNIST
    from suanli.models import LeNet5
    from suanli.train.recipes import pad_to_32

    if args.threads:
        torch.set_num_threads(args.threads)
    xs, ys = MNIST(args.data, train=True).arrays()
    xt, yt = MNIST(args.data, train=False).arrays()
    xs, xt = pad_to_32(xs), pad_to_32(xt)
    n, bs = len(ys), args.batch_size
    steps = args.epochs * math.ceil(n / bs)
    orders = [np.random.default_rng([args.seed, e]).permutation(n) for e in range(args.epochs)]

    suanli.manual_seed(args.seed)
    model = LeNet5()
    twin = TorchLeNet5()
    load_from_suanli(twin, model)

    def train_suanli() -> float:
        opt = optim.Adam(model.parameters(), lr=args.lr)
        sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        model.train()
        t0 = time.perf_counter()
        for order in orders:
            for i in range(0, n, bs):
                b = order[i:i + bs]
                loss = F.cross_entropy(model(suanli.tensor(xs[b])), suanli.tensor(ys[b]))
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
        return time.perf_counter() - t0

    def train_torch() -> float:
        opt = torch.optim.Adam(twin.parameters(), lr=args.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        twin.train()
        t0 = time.perf_counter()
        for order in orders:
            for i in range(0, n, bs):
                b = order[i:i + bs]
                loss = torch.nn.functional.cross_entropy(twin(torch.from_numpy(xs[b])), torch.from_numpy(ys[b]))
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
        return time.perf_counter() - t0

    def eval_suanli() -> tuple[float, float]:
        model.eval()
        t0 = time.perf_counter()
        with suanli.no_grad():
            pred = np.concatenate([model(suanli.tensor(xt[i:i + 1000])).argmax(dim=1).numpy()
                                   for i in range(0, len(yt), 1000)])
        return float((pred == yt).mean()), time.perf_counter() - t0

    def eval_torch() -> tuple[float, float]:
        twin.eval()
        t0 = time.perf_counter()
        with torch.no_grad():
            pred = np.concatenate([twin(torch.from_numpy(xt[i:i + 1000])).argmax(dim=1).numpy()
                                   for i in range(0, len(yt), 1000)])
        return float((pred == yt).mean()), time.perf_counter() - t0

    threads = os.environ.get("OPENBLAS_NUM_THREADS", "default")
    print(f"# LeNet-5 on MNIST, {args.epochs} epochs x {math.ceil(n / bs)} steps, batch {bs}, Adam lr {args.lr:g} "
          f"cosine ({datetime.date.today()}, {machine()}, threads {threads}, torch {torch.get_num_threads()})")
    t_s = train_suanli()
    acc_s, e_s = eval_suanli()
    t_t = train_torch()
    acc_t, e_t = eval_torch()
    rows = [["suanli", f"{acc_s:.2%}", f"{t_s:.1f} s", f"{t_s / steps * 1e3:.1f} ms", f"{e_s:.2f} s"],
            ["torch", f"{acc_t:.2%}", f"{t_t:.1f} s", f"{t_t / steps * 1e3:.1f} ms", f"{e_t:.2f} s"]]
    print_table(f"MNIST LeNet-5, {args.epochs} epochs (suanli/torch training time {t_s / t_t:.2f}x)",
                ["library", "test accuracy", "training wall time", "per step", "evaluation"], rows)


if __name__ == "__main__":
    main()
