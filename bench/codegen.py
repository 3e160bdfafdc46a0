"""Generated fused kernels vs the NumPy op-by-op path (each primitive's registry impl) vs torch eager,
side by side in one run, at 1 and 2 threads (one child process per thread count; medians).

    python bench/codegen.py                 # all sections, 1 and 2 threads
    python bench/codegen.py --threads 2     # one thread count
    python bench/codegen.py --section spin  # only the OpenMP-vs-OpenBLAS interference check

Sections:
  (a) Linear + GELU (erf) epilogue: (2048, 128) @ (128, 512) + b, float32 -- GEMM then the fused
      bias+GELU in place on its output
  (b) a 6-op elementwise chain on 1M floats: relu(tanh(x * y + 1) * x - y), float32 and float64
  (c) softmax-like row reduction: e = exp(x - m), s = sum(e, -1) on (4096, 256) float32 -- one pass
  (spin) matmul-heavy loop (GEMM, fused epilogue, GEMM) with the OpenMP pool passive (our default)
      vs spinning (OMP_WAIT_POLICY=active), and the GEMMs alone in that process: an OpenMP pool that
      spin-waits between regions steals the cores OpenBLAS needs.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _harness import machine, median_time, print_table  # noqa: E402


def _cases():
    """(section, name, suanli fused fn, suanli numpy fn, torch fn) for the current process."""
    import torch

    from suanli.compiler.group import FusedGroup
    from suanli.compiler.kernels import build, epilogue
    from suanli.ops.registry import registry
    rng = np.random.default_rng(0)
    out = []

    # (a) Linear + bias + GELU
    a, w, b = (rng.standard_normal(s, dtype=np.float32) for s in ((2048, 128), (128, 512), (512,)))
    g = FusedGroup("linear_gelu", inplace=True)
    y, bias = g.input((2048, 512), "float32"), g.input((512,), "float32")
    g.output(g.call("gelu", g.call("add", y, bias), approximate="none"))
    k = build(g)
    matmul, add, gelu = registry["matmul"].impl, registry["add"].impl, registry["gelu"].impl
    ta, tw, tb = map(torch.from_numpy, (a, w, b))
    out.append(("a", "linear+gelu f32", (lambda k=k: epilogue("matmul", [a, w], k, b)),
                lambda: gelu(add(matmul(a, w), b), approximate="none"),
                lambda: torch.nn.functional.gelu(torch.addmm(tb, ta, tw)), k.native))

    # (b) 6-op chain, 1M elements
    for dt in ("float32", "float64"):
        n = 1 << 20
        x, yv = rng.standard_normal(n).astype(dt), rng.standard_normal(n).astype(dt)
        g = FusedGroup(f"chain6_{dt}")
        gx, gy = g.input((n,), dt), g.input((n,), dt)
        v = g.call("relu", g.call("sub", g.call("mul", g.call("tanh", g.call("add", g.call("mul", gx, gy), 1.0)), gx), gy))
        g.output(v)
        k = build(g)
        tx, ty = torch.from_numpy(x), torch.from_numpy(yv)
        out.append(("b", f"6-op chain 1M {dt}", (lambda k=k, x=x, yv=yv: k(x, yv)),
                    (lambda g=g, x=x, yv=yv: g.reference(x, yv)),
                    (lambda tx=tx, ty=ty: torch.relu(torch.tanh(tx * ty + 1) * tx - ty)), k.native))

    # (c) softmax-like: exp(x - rowmax) and its row sums in one pass
    x = rng.standard_normal((4096, 256), dtype=np.float32)
    m = x.max(-1, keepdims=True)
    g = FusedGroup("softmax_stats")
    gx, gm = g.input(x.shape, "float32"), g.input(m.shape, "float32")
    e = g.call("exp", g.call("sub", gx, gm))
    g.output(e, g.reduce("sum", e))
    k = build(g)
    tx, tm = torch.from_numpy(x), torch.from_numpy(m)

    def torch_softmax_stats():
        te = torch.exp(tx - tm)
        return te, te.sum(-1)
    out.append(("c", "exp(x-m), rowsum f32", lambda: k(x, m), lambda: g.reference(x, m), torch_softmax_stats, k.native))
    return out


def child_speed(threads: int) -> list[dict]:
    import torch

    from suanli.compiler.kernels import set_num_threads
    torch.set_num_threads(threads)
    set_num_threads(threads)
    rows = []
    for section, name, fused, numpy_path, torch_fn, is_native in _cases():
        rows.append({"section": section, "case": name, "threads": threads, "native": is_native,
                     "fused": median_time(fused, repeat=9), "numpy": median_time(numpy_path, repeat=9),
                     "torch": median_time(torch_fn, repeat=9)})
    return rows


def child_spin(mode: str) -> dict:
    """A matmul-heavy loop: GEMM, epilogue (fused or NumPy), GEMM. ``mode``: numpy | passive | active."""
    from suanli.compiler.group import FusedGroup
    from suanli.compiler.kernels import build
    from suanli.ops.registry import registry
    rng = np.random.default_rng(0)
    a, w1, w2, b = (rng.standard_normal(s, dtype=np.float32) for s in ((2048, 128), (128, 512), (512, 128), (512,)))
    matmul, add, gelu = registry["matmul"].impl, registry["add"].impl, registry["gelu"].impl
    g = FusedGroup("spin_epilogue", inplace=True)
    y, bias = g.input((2048, 512), "float32"), g.input((512,), "float32")
    g.output(g.call("gelu", g.call("add", y, bias), approximate="tanh"))
    k = build(g) if mode != "numpy" else None

    def step():
        h = matmul(a, w1)
        h = k(h, b)[0] if k is not None else gelu(add(h, b), approximate="tanh")
        return matmul(h, w2)

    def gemms_only():
        return matmul(matmul(a, w1), w2)
    step()
    res = {"mode": mode, "step": median_time(step, repeat=9), "gemms_only": median_time(gemms_only, repeat=9),
           "native": bool(k is not None and k.native)}
    res["gpt_step"] = _gpt_step_after_kernel(k)
    return res


def _gpt_step_after_kernel(k) -> float:
    """Median GPT training step (4 layers, OpenBLAS-heavy) timed right after a 2-thread fused kernel
    returned (``k``; ``None``: no OpenMP in the process): idle spinning workers would slow it."""
    import time

    import suanli
    from suanli import optim
    from suanli.models import GPT, GPTConfig
    suanli.manual_seed(0)
    rng = np.random.default_rng(0)
    model = GPT(GPTConfig(block_size=64, vocab_size=65, n_layer=4, n_head=4, n_embd=128, dropout=0.0, bias=False))
    opt = optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    idx, tgt = suanli.tensor(rng.integers(0, 65, (32, 64))), suanli.tensor(rng.integers(0, 65, (32, 64)))
    x, b = np.ones((2048, 512), np.float32), np.zeros(512, np.float32)
    times = []
    for i in range(12):
        if k is not None:
            k(x, b)                               # wakes the OpenMP pool (2 threads), then returns
        t0 = time.perf_counter()
        opt.zero_grad()
        model(idx, tgt)[1].backward()
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _spawn(args: list[str], env_extra: dict) -> list:
    env = {**os.environ, **env_extra}
    env = {k: v for k, v in env.items() if v is not None}
    proc = subprocess.run([sys.executable, __file__, *args], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"benchmark child {args} failed")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, action="append")
    ap.add_argument("--section", choices=["speed", "spin"], action="append")
    ap.add_argument("--child", choices=["speed", "spin"])
    ap.add_argument("--mode", default="passive")
    args = ap.parse_args()
    threads = args.threads or [1, 2]
    if args.child == "speed":
        print(json.dumps(child_speed(threads[0])))
        return
    if args.child == "spin":
        print(json.dumps(child_spin(args.mode)))
        return
    sections = args.section or ["speed", "spin"]
    print(f"# suanli generated kernels vs NumPy op-by-op vs torch eager\n\n{machine()}; medians of 9; "
          "a shared 2-core machine is noisy.")
    if "speed" in sections:
        rows = []
        for n in threads:
            env = {"OMP_NUM_THREADS": str(n), "OPENBLAS_NUM_THREADS": str(n), "MKL_NUM_THREADS": str(n)}
            for r in _spawn(["--child", "speed", "--threads", str(n)], env):
                rows.append([r["case"], str(r["threads"]), f"{r['fused'] * 1e3:.3f}", f"{r['numpy'] * 1e3:.3f}",
                             f"{r['torch'] * 1e3:.3f}", f"{r['numpy'] / r['fused']:.2f}x", f"{r['torch'] / r['fused']:.2f}x",
                             "yes" if r["native"] else "NO (fallback)"])
        print_table("fused kernels (ms per call; speed-up = other time / fused time)",
                    ["case", "threads", "fused", "numpy op-by-op", "torch eager", "vs numpy", "vs torch", "native"], rows)
    if "spin" in sections:
        rows = []
        env = {"OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2"}
        for mode in ("numpy", "passive", "active"):
            extra = {**env, "OMP_WAIT_POLICY": "active"} if mode == "active" else dict(env)
            if mode != "active":
                extra["OMP_WAIT_POLICY"] = None      # unset: suanli loads libgomp passive
            r = _spawn(["--child", "spin", "--mode", mode], extra)
            rows.append([{"numpy": "NumPy epilogue (no OpenMP)", "passive": "fused, passive pool (default)",
                          "active": "fused, OMP_WAIT_POLICY=active"}[mode], f"{r['step'] * 1e3:.2f}",
                         f"{r['gemms_only'] * 1e3:.2f}", f"{r['gpt_step'] * 1e3:.1f}"])
        print_table("OpenMP vs OpenBLAS at 2 threads (ms): GEMM (2048x128x512) + epilogue + GEMM; the GEMMs alone; "
                    "a GPT training step started right after a fused kernel returned",
                    ["process", "GEMM+epilogue+GEMM", "the two GEMMs alone", "GPT step"], rows)


if __name__ == "__main__":
    main()
