"""Blocked NCHW16c layout (compiler pass ``layout_nchwc``) side by side with the plain inference session
and onnxruntime, in one process.

    python bench/layout.py                 # ResNet-18 batch 1 and 8: Session, Session + layout_nchwc, ORT
    python bench/layout.py --layers        # per layer: conv2d (its own kernel policy) vs conv2d_nchwc
    python bench/layout.py --batch 1 --rounds 15
    python bench/layout.py --layers --single-thread   # 1 thread each, CPU time of the calling thread
    python bench/layout.py --single-thread            # ResNet-18 likewise (ORT with 1 intra-op thread)

``--single-thread`` (OPENBLAS_NUM_THREADS=1, the C kernels on one thread, ``time.thread_time``) is the
comparison least disturbed by other processes on a shared machine: it counts the CPU time the kernel
itself used, not the time it waited for a core.

The three ResNet-18 runners are timed in interleaved rounds (one call of each per round), so a burst
of load from other processes hits all of them; medians and min over rounds and the ratios of the
medians are printed. Outputs are compared first (float32, relative to the largest logit).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if "--single-thread" in sys.argv:          # before NumPy loads OpenBLAS
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import numpy as np  # noqa: E402

from _harness import machine, print_table  # noqa: E402


def resnet18_with_statistics():
    """torchvision-layout ResNet-18 in eval mode with non-trivial batch-norm statistics (folded biases
    not zero); the layout tests build their ResNet with it too."""
    import suanli
    from suanli import nn
    from suanli.models import resnet
    suanli.manual_seed(0)
    model = resnet.resnet18().eval()
    rng = np.random.default_rng(0)
    for mod in model.modules():
        if isinstance(mod, nn.BatchNorm2d):
            C = mod.running_mean.shape[0]
            mod.running_mean._data[:] = rng.normal(0, 0.1, C)
            mod.running_var._data[:] = rng.uniform(0.5, 1.5, C)
            mod.bias._data[:] = rng.normal(0, 0.1, C)
    return model


def layout_passes():
    """The ``INFERENCE`` pass list with ``layout_nchwc`` inserted before elementwise fusion."""
    from suanli.compiler import passes as P
    names = list(P.INFERENCE)
    if "layout_nchwc" not in names:
        at = names.index("fuse_elementwise")
        names = names[:at] + ["layout_nchwc"] + names[at:]
    return [getattr(P, n) for n in names]


def _interleaved(runners: dict, rounds: int, clock=time.perf_counter) -> dict:
    for fn in runners.values():
        fn()
        fn()
    times = {k: [] for k in runners}
    for _ in range(rounds):
        for k, fn in runners.items():
            t0 = clock()
            fn()
            times[k].append(clock() - t0)
    return times


def bench_resnet(batches: list[int], rounds: int, single_thread: bool) -> None:
    import suanli
    from suanli.inference import Session
    from suanli.inference.conv_kernels import set_num_threads
    clock = time.perf_counter
    if single_thread:
        set_num_threads(1)
        clock = time.thread_time
    model = resnet18_with_statistics()
    rows = []
    for B in batches:
        x = suanli.randn(B, 3, 224, 224)
        xa = x.numpy()
        plain = Session(model, (x,))
        blocked = Session(model, (x,), passes=layout_passes())
        runners = {"session": lambda: plain.run(None, {"input": xa}),
                   "session+nchwc": lambda: blocked.run(None, {"input": xa})}
        try:
            import onnxruntime as ort
            import suanli.onnx
            proto = suanli.onnx.export(model, (x,))
            opts = ort.SessionOptions()
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            if single_thread:                   # ops then run on the calling thread (thread_time sees them)
                opts.intra_op_num_threads = opts.inter_op_num_threads = 1
            ort_sess = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
            name = ort_sess.get_inputs()[0].name
            runners["onnxruntime"] = lambda: ort_sess.run(None, {name: xa})
        except ImportError:
            print("onnxruntime not installed: its column is left out")
        ref = runners["session"]()[0]
        scale = float(np.abs(ref).max())
        for k, fn in runners.items():
            err = float(np.abs(fn()[0] - ref).max()) / scale
            print(f"batch {B}: {k:<14} max |diff| vs session / max |logit| = {err:.1e}")
        ops = [n.op for n in blocked.graph.nodes]
        print(f"batch {B}: layout pass: {ops.count('conv2d_nchwc')} blocked convs, {ops.count('conv2d')} NCHW, "
              f"{ops.count('to_nchwc')} to_nchwc, {ops.count('from_nchwc')} from_nchwc")
        times = _interleaved(runners, rounds, clock)
        med = {k: statistics.median(v) for k, v in times.items()}
        for k, v in times.items():
            rows.append([str(B), k, f"{med[k] * 1e3:.1f}", f"{min(v) * 1e3:.1f}",
                         f"{med['session'] / med[k]:.2f}x",
                         f"{med[k] / med['onnxruntime']:.2f}x" if "onnxruntime" in med else "-"])
    how = "1 thread, CPU time" if single_thread else "2 threads, wall time"
    print_table(f"ResNet-18 224x224 float32, {how}, {rounds} interleaved rounds ({machine()})",
                ["batch", "runner", "median ms", "min ms", "speed-up vs session", "time / ORT"], rows)


LAYERS = [  # N, C, H, W, O, k, stride, pad: ResNet-18's layers
    (1, 64, 56, 56, 64, 3, 1, 1), (1, 64, 56, 56, 128, 3, 2, 1), (1, 64, 56, 56, 128, 1, 2, 0),
    (1, 128, 28, 28, 128, 3, 1, 1), (1, 128, 28, 28, 256, 3, 2, 1), (1, 128, 28, 28, 256, 1, 2, 0),
    (1, 256, 14, 14, 256, 3, 1, 1), (1, 256, 14, 14, 512, 3, 2, 1), (1, 256, 14, 14, 512, 1, 2, 0),
    (1, 512, 7, 7, 512, 3, 1, 1), (1, 3, 224, 224, 64, 7, 2, 3),
    (8, 64, 56, 56, 64, 3, 1, 1), (8, 128, 28, 28, 128, 3, 1, 1), (8, 256, 14, 14, 256, 3, 1, 1),
    (8, 512, 7, 7, 512, 3, 1, 1), (8, 64, 56, 56, 128, 3, 2, 1), (8, 256, 14, 14, 512, 1, 2, 0),
]


def bench_layers(rounds: int, block: int, single_thread: bool) -> None:
    from suanli.compiler.passes.layout import choose_layout
    from suanli.inference.conv_kernels import choose_conv_kernel, set_num_threads
    clock = time.perf_counter
    if single_thread:
        set_num_threads(1)
        clock = time.thread_time
    from suanli.ops import layout as L
    from suanli.ops.conv import _conv2d_impl
    rng = np.random.default_rng(0)
    rows = []
    for N, C, H, W, O, k, s, p in LAYERS:
        x = rng.standard_normal((N, C, H, W)).astype(np.float32)
        w = (rng.standard_normal((O, C, k, k)) / np.sqrt(C * k * k)).astype(np.float32)
        attrs = dict(stride=(s, s), padding=((p, p), (p, p)), dilation=(1, 1))
        bi = block if C >= block else 1          # as the pass: a narrow input (the RGB stem) is read planar
        xb, wb = L._to_nchwc_impl(x, block=bi), L.block_weight(w, block, bi)
        b = np.zeros(wb.shape[0] * block, np.float32)
        runners = {"conv2d": lambda: _conv2d_impl(x, w, groups=1, **attrs),
                   "nchwc": lambda: L._conv2d_nchwc_impl(xb, wb, b, relu=False, **attrs)}
        ref = runners["conv2d"]()
        got = L._from_nchwc_impl(runners["nchwc"](), channels=O)
        err = float(np.abs(got - ref).max() / np.abs(ref).max())
        times = _interleaved(runners, rounds, clock)
        t0, t1 = statistics.median(times["conv2d"]), statistics.median(times["nchwc"])
        flops = 2 * N * O * C * k * k * ref.shape[2] * ref.shape[3]
        kernel = choose_conv_kernel(x.shape, w.shape, (s, s), attrs["padding"], (1, 1), 1)
        choice = choose_layout(x.shape, w.shape, (s, s), attrs["padding"], (1, 1), 1, block)
        rows.append([f"({N}, {C}, {H}, {W}) -> {O}, {k}x{k} s{s}", kernel, f"{t0 * 1e3:.3f}",
                     f"{min(times['conv2d']) * 1e3:.3f}", f"{t1 * 1e3:.3f}", f"{min(times['nchwc']) * 1e3:.3f}",
                     f"{t0 / t1:.2f}x", f"{flops / t1 / 1e9:.0f}", f"{err:.0e}", choice])
    how = "1 thread, CPU time" if single_thread else "2 threads, wall time"
    print_table(f"conv2d vs conv2d_nchwc (block {block}), float32, {how}, {rounds} interleaved rounds ({machine()})",
                ["layer", "conv2d kernel", "conv2d med ms", "min", "nchwc med ms", "min", "speed-up",
                 "nchwc GFLOP/s", "rel err", "policy"], rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", action="store_true", help="per-layer kernel comparison instead of ResNet-18")
    ap.add_argument("--batch", type=int, action="append", help="ResNet-18 batch size (repeatable; default 1 and 8)")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--block", type=int, default=16, choices=[8, 16])
    ap.add_argument("--single-thread", action="store_true", help="one thread everywhere, CPU time of the caller")
    args = ap.parse_args()
    if args.layers:
        bench_layers(args.rounds, args.block, args.single_thread)
    else:
        bench_resnet(args.batch or [1, 8], args.rounds, args.single_thread)


if __name__ == "__main__":
    main()
