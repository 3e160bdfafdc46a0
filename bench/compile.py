"""The compiler, side by side: suanli eager, suanli compiled, torch eager and torch.compile, at 1 and 2
threads (medians of whole training steps), plus compile times and the GPT step's memory.

    python bench/compile.py                    # everything (torch.compile takes ~20-40 s per model)
    python bench/compile.py --case gpt --threads 2
    python bench/compile.py --no-torch-compile # skip torch.compile (fast)
    python bench/compile.py --case gpt --threads 2 --no-torch-compile --profile   # + per-node plan profile

A step is: zero the gradients, forward, cross-entropy, backward, optimizer step. suanli compiles the
forward+loss+backward function (`suanli.compile(step)`) and keeps the optimizer eager; torch.compile
compiles the model (AOTAutograd compiles its backward too). Same weights on every side.

Targets (issue "Compiler"): compiled suanli beats torch eager on both steps (ratio >= 1.0) and torch.compile
on the GPT step; compiled >= 1.3x faster than suanli eager on the GPT step; first compile < 10 s, a cached
one < 1 s; planned peak activation memory of the GPT step >= 30% below eager's peak.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def _child(case: str, threads: int, torch_compile: bool, profile: bool = False) -> dict:
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
        x, y = rng.standard_normal((64, 1, 32, 32), dtype=np.float32), rng.integers(0, 10, 64)
        model, twin = LeNet5(), TorchLeNet5()
        make_opt, make_topt = (lambda ps: optim.Adam(ps, lr=1e-3)), (lambda ps: torch.optim.Adam(ps, lr=1e-3))

        def loss_fn(m, a, b):
            return F.cross_entropy(m(a), b)

        def t_loss_fn(m, a, b):
            return torch.nn.functional.cross_entropy(m(a), b)
        repeat = 9
    else:
        cfg = GPTConfig(block_size=64, vocab_size=65, n_layer=4, n_head=4, n_embd=128, dropout=0.0, bias=False)
        x, y = rng.integers(0, 65, (32, 64)), rng.integers(0, 65, (32, 64))
        model, twin = GPT(cfg), TorchGPT(65, 64, 4, 4, 128, bias=False)
        make_opt = lambda ps: optim.AdamW(ps, lr=1e-3, weight_decay=0.1)              # noqa: E731
        make_topt = lambda ps: torch.optim.AdamW(ps, lr=1e-3, weight_decay=0.1)       # noqa: E731

        def loss_fn(m, a, b):
            return m(a, b)[1]

        def t_loss_fn(m, a, b):
            return m(a, b)[1]
        repeat = 7
    load_from_suanli(twin, model)
    sx, sy, tx, ty = suanli.tensor(x), suanli.tensor(y), torch.from_numpy(x), torch.from_numpy(y)
    opt, topt = make_opt(model.parameters()), make_topt(twin.parameters())

    def fwd_bwd(a, b):
        loss = loss_fn(model, a, b)
        loss.backward()
        return loss

    def s_eager() -> None:
        opt.zero_grad()
        fwd_bwd(sx, sy)
        opt.step()

    t0 = time.perf_counter()
    compiled = suanli.compile(fwd_bwd)
    opt.zero_grad()
    compiled(sx, sy)
    first_compile = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = suanli.compile(fwd_bwd)          # a new compiled object: the kernel cache is on disk
    opt.zero_grad()
    again(sx, sy)
    cached_compile = time.perf_counter() - t0

    def s_compiled() -> None:
        opt.zero_grad()
        compiled(sx, sy)
        opt.step()

    def t_eager() -> None:
        topt.zero_grad()
        t_loss_fn(twin, tx, ty).backward()
        topt.step()

    res = {"case": case, "threads": threads, "first_compile_s": first_compile, "cached_compile_s": cached_compile}
    s_eager(), t_eager()
    res["suanli_eager_s"] = median_time(s_eager, repeat=repeat, min_time=0.2)
    res["suanli_compiled_s"] = median_time(s_compiled, repeat=repeat, min_time=0.2)
    res["torch_eager_s"] = median_time(t_eager, repeat=repeat, min_time=0.2)
    if torch_compile:
        ctwin = torch.compile(twin)

        def t_compiled() -> None:
            topt.zero_grad()
            t_loss_fn(ctwin, tx, ty).backward()
            topt.step()
        t0 = time.perf_counter()
        t_compiled()
        res["torch_compile_s"] = time.perf_counter() - t0
        res["torch_compiled_s"] = median_time(t_compiled, repeat=repeat, min_time=0.2)
    if case == "gpt" and threads == 1:
        res.update(_memory(model, sx, sy, fwd_bwd))
    if profile:
        opt.zero_grad()
        res["profile"] = compiled.profile(sx, sy, runs=15)
        opt.zero_grad()
    return res


def _memory(model, sx, sy, fwd_bwd) -> dict:
    """Eager peak (tracemalloc: NumPy reports its buffers) vs the plan's arena, above the baseline
    of parameters and inputs."""
    import tracemalloc

    from suanli.compiler.passes import constant_folding, cse, dce, plan_memory, rematerialize, simplify
    from suanli.graph import trace
    for p in model.parameters():
        p.grad = None
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    fwd_bwd(sx, sy)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    for p in model.parameters():
        p.grad = None
    graph = trace(fwd_bwd, (sx, sy)).graph
    for p in (constant_folding, simplify, cse, dce, rematerialize, plan_memory):
        graph = p(graph)
    plan = graph.meta["memory_plan"]
    return {"eager_peak_bytes": peak, "planned_bytes": plan.arena_bytes, "live_peak_bytes": plan.live_peak_bytes}


CASES = {"lenet": "LeNet-5 step, batch 64, Adam", "gpt": "GPT 4L/4H/128, batch 32, AdamW"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, action="append", help="thread counts (default 1 and 2)")
    ap.add_argument("--case", choices=sorted(CASES), action="append")
    ap.add_argument("--no-torch-compile", action="store_true")
    ap.add_argument("--profile", action="store_true", help="print the compiled plan's per-node profile")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    cases, threads = args.case or list(CASES), args.threads or [1, 2]
    if args.child:
        for case in cases:
            print(json.dumps(_child(case, threads[0], not args.no_torch_compile, args.profile)), flush=True)
        return
    sys.path.insert(0, HERE)
    from _harness import machine, print_table, run_children
    print(f"# suanli.compile vs torch ({datetime.date.today()}, {machine()})")
    extra = (["--no-torch-compile"] if args.no_torch_compile else []) + (["--profile"] if args.profile else [])
    results = run_children(__file__, threads, cases, extra)
    ms = lambda s: f"{s * 1e3:.1f} ms"     # noqa: E731
    rows = []
    for r in sorted(results, key=lambda d: (list(CASES).index(d["case"]), d["threads"])):
        tc = r.get("torch_compiled_s")
        rows.append([CASES[r["case"]], str(r["threads"]), ms(r["suanli_eager_s"]), ms(r["suanli_compiled_s"]),
                     ms(r["torch_eager_s"]), ms(tc) if tc else "-",
                     f"{r['torch_eager_s'] / r['suanli_compiled_s']:.2f}x",
                     f"{tc / r['suanli_compiled_s']:.2f}x" if tc else "-",
                     f"{r['suanli_eager_s'] / r['suanli_compiled_s']:.2f}x"])
    print_table("training step (median); speed ratios > 1 mean compiled suanli is faster",
                ["case", "threads", "suanli eager", "suanli compiled", "torch eager", "torch.compile",
                 "vs torch eager", "vs torch.compile", "vs suanli eager"], rows)
    rows = [[CASES[r["case"]], str(r["threads"]), f"{r['first_compile_s']:.2f} s", f"{r['cached_compile_s']:.2f} s",
             f"{r['torch_compile_s']:.1f} s" if "torch_compile_s" in r else "-"] for r in results]
    print_table("compile time (first call, incl. one step)", ["case", "threads", "suanli first", "suanli cached",
                                                              "torch.compile first"], rows)
    for r in results:
        if "profile" in r:
            print(f"\n## {CASES[r['case']]}, {r['threads']} thread(s): compiled plan profile\n\n```\n{r['profile']}\n```")
    for r in results:
        if "eager_peak_bytes" in r:
            mib = 1 / (1 << 20)
            print(f"\nGPT step memory: eager peak {r['eager_peak_bytes'] * mib:.1f} MiB, planned arena "
                  f"{r['planned_bytes'] * mib:.1f} MiB ({1 - r['planned_bytes'] / r['eager_peak_bytes']:.0%} below; "
                  f"live-set lower bound {r['live_peak_bytes'] * mib:.1f} MiB)")


if __name__ == "__main__":
    main()
