"""The ``suanli`` command.

``suanli demo``   an end-to-end showcase of the core on generated data (no downloads)
``suanli info``   versions, and the primitive registry with which rules each primitive has
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence

import numpy as np


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


def demo(steps: int = 300, seed: int = 0) -> dict:
    """Autodiff showcase: check gradients three ways, then train a 2-layer MLP on spirals."""
    import suanli
    import suanli.nn.functional as F
    from suanli.autograd.functional import hessian, jacobian

    report: dict = {}
    print("suanli demo: the core (Tensor, op registry, reverse- and forward-mode autodiff)\n")
    print(f"1. registry: {len(suanli.ops.registry)} primitives, each with shape rule, NumPy impl, VJP, JVP; "
          f"missing rules: {suanli.ops.registry.missing_rules() or 'none'}")

    # 2. gradients three ways on f(x) = sum(tanh(x) * exp(x / 2))
    x = suanli.tensor([0.3, -1.2, 0.7], dtype=suanli.float64)
    f = lambda v: (v.tanh() * (v / 2).exp()).sum()  # noqa: E731
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
    print("\ndone: the core works end to end. Next layers (nn, optim, compiler, ONNX) build on it.")
    return report


def info() -> None:
    import numpy

    import suanli
    print(f"suanli {suanli.__version__}  numpy {numpy.__version__}  python {sys.version.split()[0]}")
    print(suanli.ops.registry.table())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="suanli", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="end-to-end showcase on generated data")
    d.add_argument("--steps", type=int, default=300, help="training steps (default 300)")
    d.add_argument("--seed", type=int, default=0)
    sub.add_parser("info", help="versions and the primitive registry")
    args = parser.parse_args(argv)
    if args.command == "demo":
        if args.steps < 5:
            parser.error("--steps must be at least 5")
        demo(args.steps, args.seed)
    elif args.command == "info":
        info()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
