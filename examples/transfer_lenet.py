"""Transfer learning: reuse a trained LeNet-5 inside a deeper LeNet-6.

LeNet-6 is LeNet-5 with one more hidden layer (``f7``) before a narrower ``output`` layer. Its first
four layers (``c1``, ``c3``, ``c5``, ``f6``) have LeNet-5's names and shapes, so ``suanli.nn.transfer``
copies them; ``f7`` is new (reported *missing*) and ``output`` changed shape (reported *skipped*).
Then only the new layers are trained, on top of the frozen LeNet-5 features.

    python examples/transfer_lenet.py            # a few seconds
    python examples/transfer_lenet.py --steps 30 # quicker, lower accuracy
"""
from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np

import suanli
import suanli.nn.functional as F
from suanli import nn
from suanli.io import save_file
from suanli.models import LeNet5   # c1, s2, c3, s4, c5, f6, output


class LeNet6(nn.Module):
    """LeNet-5 plus a hidden layer ``f7`` (84 -> 42) before a 42 -> 10 ``output`` layer."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 6, 5)
        self.s2 = nn.AvgPool2d(2)
        self.c3 = nn.Conv2d(6, 16, 5)
        self.s4 = nn.AvgPool2d(2)
        self.c5 = nn.Conv2d(16, 120, 5)
        self.f6 = nn.Linear(120, 84)
        self.f7 = nn.Linear(84, 42)
        self.output = nn.Linear(42, 10)

    def forward(self, x: suanli.Tensor) -> suanli.Tensor:
        x = self.s2(self.c1(x).tanh())                       # (N, 6, 14, 14)
        x = self.s4(self.c3(x).tanh())                       # (N, 16, 5, 5)
        x = self.c5(x).tanh().flatten(1)                     # (N, 120, 1, 1) -> (N, 120)
        x = self.f6(x).tanh()                                # (N, 84)
        return self.output(self.f7(x).tanh())                # (N, 42) -> (N, 10)


def digits_32x32() -> tuple[suanli.Tensor, suanli.Tensor, suanli.Tensor, suanli.Tensor]:
    """The bundled 8x8 digits enlarged to LeNet's 32x32, split 1437 train / 360 test."""
    from suanli.data import load_digits, upsample
    images, labels = load_digits()
    x = upsample(images, 4)                                  # (1797, 1, 32, 32)
    return x[:1437], labels[:1437], x[1437:], labels[1437:]


def train(model: nn.Module, x: suanli.Tensor, y: suanli.Tensor, steps: int, lr: float = 0.2,
          batch: int = 64, seed: int = 0) -> float:
    """Plain minibatch SGD on the parameters that require grad; returns the last loss."""
    rng = np.random.default_rng(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    loss = suanli.tensor(float("nan"))
    for _ in range(steps):
        idx = suanli.tensor(rng.choice(len(y), size=batch, replace=False))
        loss = F.cross_entropy(model(x[idx]), y[idx])
        model.zero_grad()
        loss.backward()
        with suanli.no_grad():
            for p in params:
                p.sub_(lr * p.grad)
    return loss.item()


def accuracy(model: nn.Module, x: suanli.Tensor, y: suanli.Tensor) -> float:
    with suanli.no_grad():
        return float((model(x).argmax(1) == y).float().mean().item())


def main(steps: int = 150, seed: int = 0, verbose: bool = True) -> dict:
    suanli.manual_seed(seed)
    x_train, y_train, x_test, y_test = digits_32x32()
    say = print if verbose else (lambda *a, **k: None)

    lenet5 = LeNet5()
    train(lenet5, x_train, y_train, steps, seed=seed)
    acc5 = accuracy(lenet5, x_test, y_test)
    say(f"LeNet-5 after {steps} steps: test accuracy {acc5:.3f}")

    # a checkpoint on disk, as it would arrive from another run (or another framework)
    path = os.path.join(tempfile.mkdtemp(), "lenet5.safetensors")
    save_file(lenet5.state_dict(), path)

    lenet6 = LeNet6()
    report = nn.transfer(lenet6, path)
    say(report)

    for name in ("c1", "c3", "c5", "f6"):                    # keep the transferred features fixed
        getattr(lenet6, name).requires_grad_(False)
    train(lenet6, x_train, y_train, steps, seed=seed + 1)
    acc6 = accuracy(lenet6, x_test, y_test)
    say(f"LeNet-6 (new layers trained {steps} steps on frozen LeNet-5 features): test accuracy {acc6:.3f}")
    return {"report": report, "lenet5": lenet5, "lenet6": lenet6, "acc5": acc5, "acc6": acc6, "path": path}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150, help="SGD steps for each model")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(args.steps, args.seed)
