"""Convolution kernels side by side in one run: suanli's im2col + GEMM path, each native kernel that
applies (Winograd F(4x4,3x3), direct depthwise, direct small-channel), the per-layer policy (what
``F.conv2d`` runs), torch, and onnxruntime (a single-Conv ONNX model, ORT_ENABLE_ALL), at 1 and 2
threads. Medians; the ratio columns are speeds relative to the policy's time (> 1: the policy is faster).

    python bench/conv_kernels.py                 # both thread counts (one child process each)
    python bench/conv_kernels.py --threads 1     # one thread count
    python bench/conv_kernels.py --train         # also forward + backward (routed vs im2col vs torch)

The thread count is set before NumPy loads (``OPENBLAS_NUM_THREADS``), hence a process per count.
"""
from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys


def _layers() -> list[tuple[str, tuple, tuple, int, int, int]]:
    """(name, input shape, weight shape, stride, padding, groups)."""
    resnet = [
        ("conv1 7x7/2", (3, 224, 224), (64, 3, 7, 7), 2, 3),
        ("layer1 3x3", (64, 56, 56), (64, 64, 3, 3), 1, 1),
        ("layer2.0 3x3/2", (64, 56, 56), (128, 64, 3, 3), 2, 1),
        ("layer2.0 down 1x1/2", (64, 56, 56), (128, 64, 1, 1), 2, 0),
        ("layer2 3x3", (128, 28, 28), (128, 128, 3, 3), 1, 1),
        ("layer3.0 3x3/2", (128, 28, 28), (256, 128, 3, 3), 2, 1),
        ("layer3 3x3", (256, 14, 14), (256, 256, 3, 3), 1, 1),
        ("layer4.0 3x3/2", (256, 14, 14), (512, 256, 3, 3), 2, 1),
        ("layer4 3x3", (512, 7, 7), (512, 512, 3, 3), 1, 1),
    ]
    rows = [(f"ResNet-18 {n} b{b}", (b, *x), w, s, p, 1) for b in (1, 8) for n, x, w, s, p in resnet]
    rows += [("LeNet c1 b64", (64, 1, 32, 32), (6, 1, 5, 5), 1, 0, 1),
             ("LeNet c3 b64", (64, 6, 14, 14), (16, 6, 5, 5), 1, 0, 1),
             ("CIFAR 3->16 3x3 b8", (8, 3, 32, 32), (16, 3, 3, 3), 1, 1, 1),
             ("CIFAR 32 3x3 b8", (8, 32, 32, 32), (32, 32, 3, 3), 1, 1, 1)]
    rows += [("depthwise 3x3 b8", (8, 32, 112, 112), (32, 1, 3, 3), 1, 1, 32),
             ("depthwise 3x3/2 b8", (8, 96, 112, 112), (96, 1, 3, 3), 2, 1, 96),
             ("depthwise 5x5 b8", (8, 240, 28, 28), (240, 1, 5, 5), 1, 2, 240),
             ("depthwise 3x3 b1", (1, 512, 14, 14), (512, 1, 3, 3), 1, 1, 512)]
    return rows


def _ort_session(w, stride: int, pad: int, groups: int, x_shape: tuple, threads: int):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    node = helper.make_node("Conv", ["X", "W"], ["Y"], strides=[stride, stride], pads=[pad] * 4,
                            group=groups, kernel_shape=list(w.shape[2:]))
    graph = helper.make_graph([node], "conv", [helper.make_tensor_value_info("X", TensorProto.FLOAT, list(x_shape))],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def run(threads: int, train: bool) -> None:
    import numpy as np
    import torch

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import suanli
    import suanli.nn.functional as F
    from suanli import native
    from suanli.inference import conv_kernels as ck
    from _harness import machine, median_time, print_table

    torch.set_num_threads(threads)
    ck.set_num_threads(threads)
    print(f"# bench/conv_kernels.py  {datetime.date.today()}  {machine()}")
    print(f"threads={threads} (OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}, torch, "
          f"onnxruntime intra-op, suanli transforms); OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}")
    rng = np.random.default_rng(0)
    rows, train_rows = [], []
    for name, xs, ws, stride, pad, groups in _layers():
        x = rng.standard_normal(xs, dtype=np.float32)
        w = (rng.standard_normal(ws) / np.sqrt(np.prod(ws[1:]))).astype(np.float32)
        pads = ((pad, pad), (pad, pad))
        sx, sw = suanli.tensor(x), suanli.tensor(w)
        tx, tw = torch.from_numpy(x), torch.from_numpy(w)
        kw = dict(stride=stride, padding=pad, groups=groups)
        policy = ck.choose_conv_kernel(xs, ws, (stride, stride), pads, (1, 1), groups)
        with suanli.no_grad():
            t_policy = median_time(lambda: F.conv2d(sx, sw, **kw), repeat=5)
            with native.disabled():
                t_im2col = median_time(lambda: F.conv2d(sx, sw, **kw), repeat=5)
        t_wino = t_dw = t_direct = None
        if ck.winograd_applies(xs, ws, (stride, stride), pads, (1, 1), groups):
            t_wino = median_time(lambda: ck.winograd_conv2d(x, w, pads), repeat=5)
        if groups > 1 and ck.depthwise_applies(xs, ws, groups):
            t_dw = median_time(lambda: ck.depthwise_conv2d(x, w, (stride, stride), pads, (1, 1)), repeat=5)
        if ck.direct_applies(xs, ws, groups) and (stride == 1 or policy == "direct"):
            t_direct = median_time(lambda: ck.direct_conv2d(x, w, (stride, stride), pads, (1, 1)), repeat=5)
        with torch.no_grad():
            t_torch = median_time(lambda: torch.nn.functional.conv2d(tx, tw, **kw), repeat=5)
        sess = _ort_session(w, stride, pad, groups, xs, threads)
        t_ort = median_time(lambda: sess.run(None, {"X": x}), repeat=5)

        def ms(t):
            return "-" if t is None else f"{t * 1e3:.2f}"

        rows.append([name, f"{xs}x{ws[0]}x{ws[2]}x{ws[3]}", policy, ms(t_im2col), ms(t_wino), ms(t_dw),
                     ms(t_direct), ms(t_policy), ms(t_torch), ms(t_ort), f"{t_im2col / t_policy:.2f}x",
                     f"{t_torch / t_policy:.2f}x", f"{t_ort / t_policy:.2f}x"])
        print(" | ".join(rows[-1]), file=sys.stderr, flush=True)
        if train and policy != "im2col":
            train_rows.append(_train_row(name, x, w, kw, policy, median_time))
    print_table(f"conv2d forward, float32, {threads} thread(s), ms (median)",
                ["layer", "input x weight", "policy", "im2col", "winograd", "depthwise", "direct", "policy ms",
                 "torch", "onnxruntime", "vs im2col", "vs torch", "vs ORT"], rows)
    if train_rows:
        print_table(f"conv2d forward + backward (input and weight gradients), float32, {threads} thread(s)",
                    ["layer", "kernel", "im2col", "policy", "torch", "vs im2col", "vs torch"], train_rows)


def _train_row(name, x, w, kw, policy, median_time):
    import torch

    import suanli
    import suanli.nn.functional as F
    from suanli import native
    sx, sw = suanli.tensor(x, requires_grad=True), suanli.tensor(w, requires_grad=True)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)

    def s_step():
        sx.grad = sw.grad = None
        F.conv2d(sx, sw, **kw).sum().backward()

    def t_step():
        tx.grad = tw.grad = None
        torch.nn.functional.conv2d(tx, tw, **kw).sum().backward()

    t_new = median_time(s_step, repeat=5)
    with native.disabled():
        t_old = median_time(s_step, repeat=5)
    t_torch = median_time(t_step, repeat=5)
    return [name, policy, f"{t_old * 1e3:.2f}", f"{t_new * 1e3:.2f}", f"{t_torch * 1e3:.2f}",
            f"{t_old / t_new:.2f}x", f"{t_torch / t_new:.2f}x"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, choices=(1, 2), help="one thread count (default: 1 then 2)")
    parser.add_argument("--train", action="store_true", help="also time forward + backward of routed layers")
    args = parser.parse_args()
    if args.threads is None:
        for t in (1, 2):
            env = dict(os.environ, OPENBLAS_NUM_THREADS=str(t))
            cmd = [sys.executable, os.path.abspath(__file__), "--threads", str(t)] + (["--train"] if args.train else [])
            subprocess.run(cmd, env=env, check=True)
        return
    if os.environ.get("OPENBLAS_NUM_THREADS") != str(args.threads):
        os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)
        os.execv(sys.executable, [sys.executable, os.path.abspath(__file__), *sys.argv[1:]])
    run(args.threads, args.train)


if __name__ == "__main__":
    main()
