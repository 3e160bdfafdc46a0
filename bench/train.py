"""Training-step benchmarks, suanli and torch eager side by side, at 1 and 2 threads (medians; ratio).

    python bench/train.py                 # both cases at 1 and 2 threads
    python bench/train.py --threads 2     # one thread count
    python bench/train.py --case gpt      # one case: lenet | gpt

Each thread count runs in its own subprocess with OMP_NUM_THREADS / OPENBLAS_NUM_THREADS /
MKL_NUM_THREADS set before NumPy and torch load (and ``torch.set_num_threads``), so both libraries get
the same number of cores. A step is: zero the gradients, forward, cross-entropy, backward, optimizer step.

Cases (issue "Training"), target suanli <= 1.3x torch's time:
* LeNet-5, batch 64 of (1, 32, 32), Adam lr 1e-3.
* GPT (nanoGPT layout) 4 layers, 4 heads, width 128, block 64, vocab 65, batch 32, AdamW lr 1e-3 wd 0.1.
Both sides start from the same weights (suanli's initialisation copied into the torch twin).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TARGET = 1.3


def _child(case: str, threads: int) -> dict:
    import numpy as np
    import torch

    sys.path.insert(0, HERE)
    import suanli
    import suanli.nn.functional as F
    from _harness import median_time
    from _torch_models import GPT as TorchGPT
    from _torch_models import LeNet5 as TorchLeNet5
    from _torch_models import load_from_suanli
    from suanli import optim
    from suanli.models import GPT, GPTConfig, LeNet5

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    suanli.manual_seed(0)
    if case == "lenet":
        x = rng.standard_normal((64, 1, 32, 32), dtype=np.float32)
        y = rng.integers(0, 10, 64)
        model = LeNet5()
        twin = TorchLeNet5()
        load_from_suanli(twin, model)
        opt = optim.Adam(model.parameters(), lr=1e-3)
        topt = torch.optim.Adam(twin.parameters(), lr=1e-3)
        sx, sy = suanli.tensor(x), suanli.tensor(y)
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)

        def s_step() -> None:
            opt.zero_grad()
            F.cross_entropy(model(sx), sy).backward()
            opt.step()

        def t_step() -> None:
            topt.zero_grad()
            torch.nn.functional.cross_entropy(twin(tx), ty).backward()
            topt.step()
        repeat = 9
    else:
        cfg = GPTConfig(block_size=64, vocab_size=65, n_layer=4, n_head=4, n_embd=128, dropout=0.0, bias=False)
        idx = rng.integers(0, 65, (32, 64))
        tgt = rng.integers(0, 65, (32, 64))
        model = GPT(cfg)
        twin = TorchGPT(65, 64, 4, 4, 128, bias=False)
        load_from_suanli(twin, model)
        opt = optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
        topt = torch.optim.AdamW(twin.parameters(), lr=1e-3, weight_decay=0.1)
        si, st = suanli.tensor(idx), suanli.tensor(tgt)
        ti, tt = torch.from_numpy(idx), torch.from_numpy(tgt)

        def s_step() -> None:
            opt.zero_grad()
            model(si, st)[1].backward()
            opt.step()

        def t_step() -> None:
            topt.zero_grad()
            twin(ti, tt)[1].backward()
            topt.step()
        repeat = 7
    s_step()   # first steps allocate optimizer state
    t_step()
    s = median_time(s_step, repeat=repeat, min_time=0.2)
    t = median_time(t_step, repeat=repeat, min_time=0.2)
    return {"case": case, "threads": threads, "suanli_s": s, "torch_s": t}


CASES = {"lenet": "LeNet-5 train step, batch 64, Adam",
         "gpt": "GPT 4L/4H/128, block 64, vocab 65, batch 32, AdamW"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, action="append", help="thread counts (default 1 and 2)")
    ap.add_argument("--case", choices=sorted(CASES), action="append")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    cases = args.case or list(CASES)
    threads = args.threads or [1, 2]
    if args.child:
        for case in cases:
            print(json.dumps(_child(case, threads[0])), flush=True)
        return

    sys.path.insert(0, HERE)
    from _harness import machine, print_table, run_children

    print(f"# suanli vs torch eager: training steps ({datetime.date.today()}, {machine()})")
    results = run_children(__file__, threads, cases)
    rows = []
    for res in sorted(results, key=lambda d: (list(CASES).index(d["case"]), d["threads"])):
        ratio = res["suanli_s"] / res["torch_s"]
        rows.append([CASES[res["case"]], str(res["threads"]), f"{res['suanli_s'] * 1e3:.1f} ms",
                     f"{res['torch_s'] * 1e3:.1f} ms", f"{ratio:.2f}x",
                     f"<= {TARGET}x {'ok' if ratio <= TARGET else 'MISSED'}"])
    print_table("training step (median)", ["case", "threads", "suanli", "torch", "suanli/torch time", "target"], rows)


if __name__ == "__main__":
    main()
