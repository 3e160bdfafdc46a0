"""The ``suanli`` command.

``suanli demo``       train LeNet-5 on real handwritten digits shipped with suanli (no download): progress
                      bar, test accuracy, checkpoint reloaded into a fresh model, curves PNG, a report
``suanli train``      train from a typed TOML config (configs/*.toml), with --set overrides and --resume
``suanli babygpt``    Karpathy's BabyGPT: a tiny GPT as a Markov chain over 8 states, drawn as a PNG
``suanli showcase``   the autodiff core: gradients three ways, then an MLP on generated spirals
``suanli info``       versions, and the primitive registry with which rules each primitive has;
                      ``suanli info model.onnx``: inputs, outputs, op histogram, parameters, FLOPs
``suanli run``        run an ONNX model on .npy inputs, write each output as .npy
``suanli bench``      latency percentiles and throughput of an ONNX model (suanli vs onnxruntime)
``suanli convert``    ONNX <-> suanli's own graph file (.suanli: JSON graph + safetensors weights)
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Sequence

import numpy as np


class CommandError(Exception):
    """A user-facing failure of a command: printed as ``suanli <cmd>: error: ...``, exit status 2."""


# --------------------------------------------------------------------------------------------------
# suanli demo
# --------------------------------------------------------------------------------------------------

def demo(out: str = "runs/demo", data: str | None = None, seed: int = 0, epochs: int | None = None,
         quick: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train LeNet-5, evaluate, checkpoint, reload into a fresh model, plot; returns a report dict.

    On the embedded digits by default; ``data`` = a folder with the four MNIST IDX files trains on
    MNIST instead. ``quick`` trains one epoch (what the tests use).
    """
    import suanli
    from suanli import io
    from suanli.models import LeNet5
    from suanli.train import config as C
    from suanli.train import recipes

    t0 = time.perf_counter()
    common = {"out_dir": out, "seed": seed, "batch_size": 32, "progress": progress,
              "optim": {"name": "adam", "lr": 2e-3, "schedule": "cosine"}}     # as configs/mnist-lenet5.toml
    if data is None:
        n_epochs = epochs or (1 if quick else 8)
        cfg = C.from_dict({"recipe": "digits-lenet5", "epochs": n_epochs, **common})
        what = "LeNet-5 on 1797 real handwritten digits (UCI, shipped with suanli; 8x8 upsampled to 32x32)"
    else:
        n_epochs = epochs or (1 if quick else 2)
        cfg = C.from_dict({"recipe": "mnist-lenet5", "epochs": n_epochs, "data_dir": data, **common})
        what = f"LeNet-5 on MNIST from {data}"
    print(f"suanli demo: {what}")
    print(f"  {n_epochs} epochs, Adam (lr {cfg.optim.lr:g}, cosine decay), batch {cfg.batch_size}, "
          f"seed {seed}, writing to {out}/\n")
    try:
        trainer, result = recipes.train(cfg)
    except (FileNotFoundError, ValueError) as exc:
        if data is not None and not isinstance(exc, C.ConfigError):
            raise CommandError(f"--data {data}: {exc}") from None
        raise

    # reload the checkpoint into a freshly built model and check it predicts exactly the same
    suanli.manual_seed(seed + 12345)            # different initial weights: everything must come from the file
    fresh = LeNet5()
    io.load_checkpoint(result.files["checkpoint"], model=fresh)
    test_x, test_y = trainer.task.data["test"]
    before = recipes.classify(trainer.model.eval(), test_x, test_y, return_logits=True)
    after = recipes.classify(fresh.eval(), test_x, test_y, return_logits=True)
    identical = bool(np.array_equal(before["logits"], after["logits"]))
    if not identical:
        raise AssertionError("the model reloaded from the checkpoint predicts differently: "
                             f"max |difference| {np.abs(before['logits'] - after['logits']).max():.3g}")
    seconds = time.perf_counter() - t0
    n_params = sum(p.numel() for p in trainer.model.parameters())
    files = result.files
    lines = [
        f"suanli demo: done in {seconds:.1f} s (training {result.seconds:.1f} s)",
        f"  data        {trainer.task.description}",
        f"  model       LeNet-5, {n_params:,} parameters",
        f"  training    {result.steps} steps = {n_epochs} epochs of {trainer.task.steps_per_epoch}, "
        f"Adam lr {cfg.optim.lr:g} cosine, batch {cfg.batch_size}, seed {seed}",
        f"  result      test accuracy {after['accuracy']:.2%} on {len(test_y)} held-out images "
        f"(loss {after['loss']:.4f})",
        f"  checkpoint  {files['checkpoint']}  (model + optimizer + scheduler + RNG + step)",
        f"  reload      a fresh LeNet-5 loaded from it gives identical logits on all {len(test_y)} test images",
        f"  weights     {files['model']}",
        f"  curves      {files.get('curves', '(not drawn: pip install matplotlib)')}",
        f"  history     {files['history']}",
        f"  config      {files['config']}  (run it again: suanli train {files['config']})",
    ]
    report_path = os.path.join(out, "report.txt")
    lines.append(f"  report      {report_path}")
    text = "\n".join(lines) + "\n"
    with io.atomic_write(report_path, "w") as f:
        f.write(text)
    print("\n" + text, end="")
    return {"accuracy": after["accuracy"], "loss": after["loss"], "identical_reload": identical,
            "seconds": seconds, "steps": result.steps, "files": {**files, "report": report_path},
            "history": result.history}


# --------------------------------------------------------------------------------------------------
# suanli train
# --------------------------------------------------------------------------------------------------

def _overrides_from(extra: Sequence[str]) -> list[str]:
    """``--key value`` / ``--key=value`` leftovers of argparse -> ``key=value`` strings."""
    out, i = [], 0
    while i < len(extra):
        tok = extra[i]
        if not tok.startswith("--") or tok == "--":
            raise CommandError(f"unexpected argument {tok!r}; overrides look like --set key=value or --key value")
        key = tok[2:]
        if "=" in key:
            out.append(key)
            i += 1
        elif i + 1 < len(extra):
            out.append(f"{key}={extra[i + 1]}")
            i += 2
        else:
            raise CommandError(f"{tok} needs a value (e.g. {tok} 3 or --set {key}=3)")
    return [o.split("=", 1)[0].replace("-", "_") + "=" + o.split("=", 1)[1] for o in out]


def train(config_path: str, overrides: Sequence[str] = (), resume: str | None = None) -> Any:
    """``suanli train CONFIG``: load the typed config, train the recipe, print where everything went."""
    from suanli.train import config as C
    from suanli.train import recipes

    cfg = C.load(config_path, overrides)
    if resume and not os.path.isfile(resume):
        raise CommandError(f"--resume {resume}: no such checkpoint file")
    print(f"suanli train: recipe {cfg.recipe}, seed {cfg.seed}, writing to {cfg.out_dir}/")
    trainer, result = recipes.train(cfg, resume=resume)
    print(f"\ndone: {result.steps} steps in {result.seconds:.1f} s; "
          + ", ".join(f"{k} {v:.2%}" if k == "accuracy" else f"{k} {v:.4f}" for k, v in result.metrics.items()))
    if "sample" in result.extras:
        print("sample:\n" + result.extras["sample"])
    if "probabilities" in result.extras:
        print(_probability_table(result.extras["probabilities"]))
    for name, path in result.files.items():
        print(f"  {name:<11} {path}")
    return result


# --------------------------------------------------------------------------------------------------
# suanli babygpt
# --------------------------------------------------------------------------------------------------

def _probability_table(probs: dict[str, tuple[float, float]]) -> str:
    rows = ["state  P(next=0)  P(next=1)   -> next states"]
    for s, (p0, p1) in probs.items():
        rows.append(f"{s}    {p0:9.4f}  {p1:9.4f}   -> {s[1:]}0 / {s[1:]}1")
    return "\n".join(rows)


def babygpt(out: str = "runs/babygpt", seed: int = 1337, steps: int = 50, progress: bool = True) -> dict:
    """Karpathy's BabyGPT: train on "111101111011110", print P(next | state) for all 8 states, draw the graph."""
    from suanli.train import config as C
    from suanli.train import recipes

    cfg = C.from_dict({"recipe": "babygpt", "out_dir": out, "seed": seed, "max_steps": steps,
                       "progress": progress})
    print(f"suanli babygpt: a GPT (4 layers, 4 heads, width 16, context 3, vocabulary {{0, 1}}) trained for "
          f"{steps} AdamW steps (lr 1e-3, weight decay 0.1) on every 3-token window of {cfg.sequence!r}\n")
    trainer, result = recipes.train(cfg)
    probs = result.extras["probabilities"]
    print(f"\nafter {result.steps} steps: loss {result.metrics['loss']:.4f}. "
          f"A GPT with context 3 over 2 tokens is a Markov chain on 8 states:\n")
    print(_probability_table(probs))
    print(f"\nstates seen in training: {', '.join(result.extras['training_states'])} "
          f"(the others were never in the data; their probabilities are the model's guesses)")
    if "graph" in result.files:
        print(f"state-transition graph: {result.files['graph']}")
    print(f"checkpoint: {result.files.get('checkpoint')}")
    return {"probabilities": probs, "files": result.files, "loss": result.metrics["loss"]}


# --------------------------------------------------------------------------------------------------
# suanli showcase (the autodiff core) and suanli info
# --------------------------------------------------------------------------------------------------

def _spirals(n_per_class: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A classic non-linearly-separable toy set: interleaved 2-D spirals, generated (nothing to download)."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for c in range(classes):
        r = np.linspace(0.05, 1.0, n_per_class)
        theta = np.linspace(c * 4.0, (c + 1) * 4.0, n_per_class) + rng.normal(0, 0.2, n_per_class)
        xs.append(np.stack([r * np.sin(theta), r * np.cos(theta)], axis=1))
        ys.append(np.full(n_per_class, c))
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.int64)


def showcase(steps: int = 300, seed: int = 0) -> dict:
    """Autodiff showcase: check gradients three ways, then train a 2-layer MLP on spirals."""
    import suanli
    import suanli.nn.functional as F
    from suanli.autograd.functional import hessian, jacobian

    report: dict = {}
    print("suanli showcase: the core (Tensor, op registry, reverse- and forward-mode autodiff)\n")
    print(f"1. registry: {len(suanli.ops.registry)} primitives, each with shape rule, NumPy impl, VJP, JVP; "
          f"missing rules: {suanli.ops.registry.missing_rules() or 'none'}")

    # 2. gradients three ways on f(x) = sum(tanh(x) * exp(x / 2))
    x = suanli.tensor([0.3, -1.2, 0.7], dtype=suanli.float64)

    def f(v: Any) -> Any:
        return (v.tanh() * (v / 2).exp()).sum()

    rev = jacobian(f, x)
    fwd = jacobian(f, x, strategy="forward-mode")
    eps = 1e-6
    fd = np.array([(f(x + eps * e).item() - f(x - eps * e).item()) / (2 * eps)
                   for e in suanli.eye(3, dtype=suanli.float64)])
    err = max(np.abs(rev.numpy() - fd).max(), np.abs(fwd.numpy() - fd).max())
    print(f"2. gradient of sum(tanh(x)·exp(x/2)) at {x.tolist()}:\n"
          f"   reverse {np.round(rev.numpy(), 6).tolist()}\n   forward {np.round(fwd.numpy(), 6).tolist()}\n"
          f"   finite differences agree to {err:.1e}")
    H = hessian(f, x)
    print(f"   Hessian diagonal (reverse-over-reverse): {np.round(np.diag(H.numpy()), 6).tolist()}")
    report["gradient_max_error"] = float(err)

    # 3. train a 2-layer MLP with plain SGD written against autograd
    suanli.manual_seed(seed)
    xs, ys = _spirals(200, 3, seed)
    X, Y = suanli.tensor(xs), suanli.tensor(ys)
    hidden = 64
    w1 = (suanli.randn(2, hidden) * (1 / np.sqrt(2))).requires_grad_()
    b1 = suanli.zeros(hidden, requires_grad=True)
    w2 = (suanli.randn(hidden, 3) * (1 / np.sqrt(hidden))).requires_grad_()
    b2 = suanli.zeros(3, requires_grad=True)
    params = [w1, b1, w2, b2]
    lr, t0, losses = 0.5, time.perf_counter(), []
    for step in range(steps):
        logits = (X @ w1 + b1).tanh() @ w2 + b2
        loss = F.cross_entropy(logits, Y)
        for p in params:
            p.grad = None
        loss.backward()
        with suanli.no_grad():
            for p in params:
                p.sub_(lr * p.grad)
        losses.append(loss.item())
        if step % (steps // 5) == 0 or step == steps - 1:
            print(f"   step {step:4d}  loss {loss.item():.4f}")
    with suanli.no_grad():
        acc = ((X @ w1 + b1).tanh() @ w2 + b2).argmax(dim=1).eq(Y).float().mean().item()
    dt = time.perf_counter() - t0
    print(f"3. trained a 2-64-3 MLP on {len(ys)} generated spiral points: loss {losses[0]:.3f} -> "
          f"{losses[-1]:.3f}, accuracy {acc:.1%} in {dt:.2f}s")
    report.update(first_loss=losses[0], final_loss=losses[-1], accuracy=acc, seconds=dt)
    return report


def info() -> None:
    import numpy

    import suanli
    print(f"suanli {suanli.__version__}  numpy {numpy.__version__}  python {sys.version.split()[0]}")
    print(suanli.ops.registry.table())


# --------------------------------------------------------------------------------------------------
# suanli info/run/bench/convert on ONNX models
# --------------------------------------------------------------------------------------------------

def _shape_str(vi: Any) -> str:
    from suanli.onnx.load import _declared
    dtype, shape = _declared(vi)
    dims = "?" if shape is None else ", ".join("?" if d is None else str(d) for d in shape)
    return f"{dtype} [{dims}]"


def _flops(proto: Any) -> tuple[int, list[str]]:
    """2 * multiply-adds of Conv/ConvTranspose/MatMul/Gemm from inferred shapes (free input dims = 1);
    also the nodes it could not size."""
    import onnx
    fixed = onnx.ModelProto()
    fixed.CopyFrom(proto)
    for vi in list(fixed.graph.input) + list(fixed.graph.output):   # free dims (batch) count as 1
        for d in vi.type.tensor_type.shape.dim if vi.type.HasField("tensor_type") else []:
            if not d.HasField("dim_value"):
                d.dim_value = 1
    try:
        inferred = onnx.shape_inference.infer_shapes(fixed)
    except Exception:  # noqa: BLE001 - a model shape inference cannot handle: no FLOPs, not a crash
        inferred = proto
    g = inferred.graph
    shapes: dict[str, tuple] = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        dims = vi.type.tensor_type.shape.dim if vi.type.HasField("tensor_type") else []
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[vi.name] = tuple(d.dim_value for d in dims)
    for t in g.initializer:
        shapes[t.name] = tuple(t.dims)
    total, unknown = 0, []
    for n in g.node:
        if n.op_type not in ("Conv", "ConvTranspose", "MatMul", "Gemm"):
            continue
        a, b = (shapes.get(n.input[0]), shapes.get(n.input[1]))
        out = shapes.get(n.output[0])
        if a is None or b is None or (out is None and n.op_type != "ConvTranspose"):
            unknown.append(n.name or n.op_type)
            continue
        if n.op_type == "Conv":
            total += 2 * int(np.prod(out)) * int(np.prod(b[1:]))
        elif n.op_type == "ConvTranspose":
            total += 2 * int(np.prod(a)) * int(np.prod(b[1:]))
        elif n.op_type == "MatMul":
            total += 2 * int(np.prod(out)) * int(a[-1])
        else:
            trans_a = any(x.name == "transA" and x.i for x in n.attribute)
            total += 2 * int(np.prod(out)) * int(a[0] if trans_a else a[-1])
    return total, unknown


def onnx_info(path: str) -> dict[str, Any]:
    """Print (and return) what an ONNX model takes, gives and costs."""
    from collections import Counter

    import onnx

    import suanli.onnx as so
    model = so.load(path)
    g = model.proto.graph
    hist = Counter(n.op_type for n in g.node)
    # parameters: floating-point initializers that are not scalars (int64 shape vectors and the
    # 0-d constants of decomposed ops are not weights)
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}
    params = sum(int(np.prod(t.dims)) for t in g.initializer if t.data_type in floats and len(t.dims) > 0)
    flops, unknown = _flops(model.proto)
    print(f"{path}: opset {dict(model.opsets)}, {len(g.node)} nodes, producer {model.proto.producer_name or '?'}")
    print("inputs:")
    for vi in model.inputs:
        print(f"  {vi.name:<24} {_shape_str(vi)}")
    print("outputs:")
    for vi in model.outputs:
        print(f"  {vi.name:<24} {_shape_str(vi)}")
    print(f"parameters: {params:,} (floating-point initializers; {len(g.initializer)} initializers in all)")
    print(f"FLOPs (Conv/MatMul/Gemm, 2 per multiply-add; free dims taken as 1): {flops:,}"
          + (f" (+ {len(unknown)} nodes of unknown shape)" if unknown else ""))
    print("op histogram:")
    for op, n in sorted(hist.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"  {op:<24} {n}")
    return {"inputs": model.input_names, "outputs": model.output_names, "ops": dict(hist), "params": params,
            "flops": flops, "flops_unknown": unknown}


def _parse_feeds(specs: Sequence[str]) -> dict[str, np.ndarray]:
    feeds = {}
    for spec in specs:
        name, sep, file = spec.partition("=")
        if not sep or not name or not file:
            raise CommandError(f"--input {spec!r}: expected NAME=FILE.npy")
        if not os.path.exists(file):
            raise CommandError(f"--input {name}={file}: no such file")
        try:
            feeds[name] = np.load(file, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise CommandError(f"--input {name}={file}: not a readable .npy array ({exc})") from None
    return feeds


def run_onnx(path: str, inputs: Sequence[str], out: str = ".") -> dict[str, str]:
    """Run an ONNX model on ``NAME=FILE.npy`` inputs; write ``OUT/<output>.npy``; returns name -> file."""
    import suanli.onnx as so
    from suanli.io.atomic import atomic_write
    model = so.load(path)
    feeds = _parse_feeds(inputs)
    unknown = [k for k in feeds if k not in model.input_names]
    if unknown:
        raise CommandError(f"{path}: unknown input name(s) {unknown}; the model takes {model.input_names}")
    outs = model.run(feeds)
    os.makedirs(out, exist_ok=True)
    written = {}
    for name, value in zip(model.output_names, outs):
        file = os.path.join(out, "".join(c if c.isalnum() or c in "._-" else "_" for c in name) + ".npy")
        with atomic_write(file, "wb") as f:
            np.save(f, np.asarray(value.numpy() if hasattr(value, "numpy") else value), allow_pickle=False)
        written[name] = file
        print(f"{name}: {tuple(value.shape)} {value.dtype} -> {file}")
    return written


def _percentiles(times: Sequence[float]) -> dict[str, float]:
    t = np.asarray(times) * 1e3
    return {"p50_ms": float(np.percentile(t, 50)), "p90_ms": float(np.percentile(t, 90)),
            "p99_ms": float(np.percentile(t, 99)), "throughput_per_s": float(1e3 / np.percentile(t, 50))}


def bench_onnx(path: str, runs: int = 20, batch: int = 1, warmup: int = 2) -> dict[str, dict[str, float]]:
    """Latency percentiles and throughput (runs/s at the median) of suanli's runner and onnxruntime."""
    import suanli.onnx as so
    from suanli.onnx.to_graph import example_inputs
    model = so.load(path)
    feeds = dict(zip(model.input_names, example_inputs(model, batch=batch)))
    engines: dict[str, Any] = {"suanli": lambda: model.run(feeds)}
    try:
        import onnxruntime as ort
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(model.proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        engines["onnxruntime"] = lambda: sess.run(None, feeds)
    except ImportError:
        pass
    results: dict[str, dict[str, float]] = {}
    for name, fn in engines.items():
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        results[name] = _percentiles(times)
    print(f"{path}: batch {batch}, {runs} runs after {warmup} warm-up (inputs: "
          f"{', '.join(f'{k} {v.shape}' for k, v in feeds.items())})")
    print(f"  {'engine':<12} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9} {'runs/s':>9}")
    for name, r in results.items():
        print(f"  {name:<12} {r['p50_ms']:9.3f} {r['p90_ms']:9.3f} {r['p99_ms']:9.3f} {r['throughput_per_s']:9.1f}")
    if "onnxruntime" in results:
        print(f"  suanli / onnxruntime (p50): {results['suanli']['p50_ms'] / results['onnxruntime']['p50_ms']:.2f}x")
    else:
        print("  (onnxruntime is not installed: no side-by-side figure)")
    return results


def convert(src: str, dst: str, opset: int = 17) -> None:
    """``.onnx`` -> ``.suanli`` or ``.suanli`` -> ``.onnx``, by the file extensions."""
    from suanli.onnx.convert import onnx_to_suanli, suanli_to_onnx
    kinds = (os.path.splitext(src)[1].lower(), os.path.splitext(dst)[1].lower())
    if kinds == (".onnx", ".suanli"):
        graph = onnx_to_suanli(src, dst)
        print(f"{src} -> {dst}: {len(graph.nodes)} IR nodes")
    elif kinds == (".suanli", ".onnx"):
        model = suanli_to_onnx(src, dst, opset=opset)
        print(f"{src} -> {dst}: {len(model.graph.node)} ONNX nodes, opset {opset}")
    else:
        raise CommandError(f"cannot convert {src} to {dst}: use model.onnx -> out.suanli or in.suanli -> out.onnx")


# --------------------------------------------------------------------------------------------------
# argument parsing
# --------------------------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="suanli", description=__doc__, allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", allow_abbrev=False, help="train LeNet-5 on embedded handwritten digits, checkpoint, reload, plot")
    d.add_argument("--out", default="runs/demo", metavar="DIR", help="output folder (default runs/demo)")
    d.add_argument("--data", metavar="DIR", help="train on the MNIST IDX files in DIR instead")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--epochs", type=int, help="epochs (default 8 on digits, 2 on MNIST)")
    d.add_argument("--quick", action="store_true", help="one epoch (for tests)")
    d.add_argument("--no-progress", action="store_true", help="no progress bar")

    t = sub.add_parser("train", allow_abbrev=False, help="train from a TOML config (configs/*.toml)",
                       description="Train from a typed TOML config. Override any key with --set key=value "
                                   "(dotted for tables: --set optim.lr=3e-4) or --key value.")
    t.add_argument("config", help="a TOML config file, e.g. configs/mnist-lenet5.toml")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (repeatable)")
    t.add_argument("--resume", metavar="CHECKPOINT", help="continue from a checkpoint.safetensors")
    t.add_argument("--no-progress", action="store_true", help="no progress bar (same as --set progress=false)")

    b = sub.add_parser("babygpt", allow_abbrev=False, help="Karpathy's BabyGPT: a tiny GPT as a Markov chain, drawn as a PNG")
    b.add_argument("--out", default="runs/babygpt", metavar="DIR")
    b.add_argument("--seed", type=int, default=1337)
    b.add_argument("--steps", type=int, default=50, help="AdamW steps (default 50, as in the original)")
    b.add_argument("--no-progress", action="store_true")

    s = sub.add_parser("showcase", allow_abbrev=False, help="the autodiff core: gradients three ways, an MLP on spirals")
    s.add_argument("--steps", type=int, default=300, help="training steps (default 300)")
    s.add_argument("--seed", type=int, default=0)

    i = sub.add_parser("info", allow_abbrev=False, help="versions and the primitive registry, or an ONNX model's summary")
    i.add_argument("model", nargs="?", help="an .onnx file: inputs, outputs, op histogram, parameters, FLOPs")

    r = sub.add_parser("run", allow_abbrev=False, help="run an ONNX model on .npy inputs, write the outputs as .npy")
    r.add_argument("model")
    r.add_argument("--input", dest="inputs", action="append", default=[], metavar="NAME=FILE.npy")
    r.add_argument("--out", default=".", metavar="DIR", help="where to write <output>.npy (default .)")

    be = sub.add_parser("bench", allow_abbrev=False, help="latency/throughput of an ONNX model, vs onnxruntime")
    be.add_argument("model")
    be.add_argument("--runs", type=int, default=20)
    be.add_argument("--batch", type=int, default=1, help="size of free (symbolic) dims of the inputs")

    c = sub.add_parser("convert", allow_abbrev=False, help="model.onnx <-> model.suanli (JSON graph + safetensors)")
    c.add_argument("src")
    c.add_argument("dst")
    c.add_argument("--opset", type=int, default=17, help="opset when writing ONNX (default 17)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from suanli.errors import is_clear_error

    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "train":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.command == "demo":
            if args.epochs is not None and args.epochs < 1:
                parser.error("--epochs must be at least 1")
            demo(args.out, args.data, args.seed, args.epochs, args.quick, not args.no_progress)
        elif args.command == "train":
            overrides = [*args.overrides, *_overrides_from(extra)] + (["progress=false"] if args.no_progress else [])
            train(args.config, overrides, args.resume)
        elif args.command == "babygpt":
            if args.steps < 1:
                parser.error("--steps must be at least 1")
            babygpt(args.out, args.seed, args.steps, not args.no_progress)
        elif args.command == "showcase":
            if args.steps < 5:
                parser.error("--steps must be at least 5")
            showcase(args.steps, args.seed)
        elif args.command == "info":
            onnx_info(args.model) if args.model else info()
        elif args.command == "run":
            if not args.inputs:
                parser.error("run: give the inputs with --input NAME=FILE.npy")
            run_onnx(args.model, args.inputs, args.out)
        elif args.command == "bench":
            if args.runs < 1 or args.batch < 1:
                parser.error("--runs and --batch must be at least 1")
            bench_onnx(args.model, args.runs, args.batch)
        elif args.command == "convert":
            convert(args.src, args.dst, args.opset)
    except CommandError as exc:
        print(f"suanli {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:   # errors suanli raises on purpose are messages, not tracebacks
        if not is_clear_error(exc):
            raise
        print(f"suanli {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
