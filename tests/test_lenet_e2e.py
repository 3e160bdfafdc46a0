"""End-to-end proof: LeNet-5 trained 100 steps in suanli and in torch gives the same losses.

Same initial weights (torch's init, carried over through a safetensors file read by suanli's own
reader), the same batches of real handwritten digits (the 8x8 set shipped with suanli, upsampled to
32x32), the same optimizer (``suanli.optim`` vs ``torch.optim``), float64 on both sides: every one of
the 100 losses agrees to a relative 1e-9, and so do the final weights.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as TF
from safetensors.torch import save_file as torch_save_file

import suanli
import suanli.nn.functional as F
from suanli import io as sio
from suanli import optim
from suanli.data import Digits
from suanli.models import LeNet5

STEPS, BATCH = 100, 32


class TorchLeNet5(tnn.Module):
    """suanli.models.LeNet5 in torch: same layers, same names."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.s2 = tnn.Conv2d(1, 6, 5), tnn.AvgPool2d(2)
        self.c3, self.s4 = tnn.Conv2d(6, 16, 5), tnn.AvgPool2d(2)
        self.c5 = tnn.Conv2d(16, 120, 5)
        self.f6, self.output = tnn.Linear(120, 84), tnn.Linear(84, 10)

    def forward(self, x):
        x = self.s2(torch.tanh(self.c1(x)))
        x = self.s4(torch.tanh(self.c3(x)))
        x = torch.tanh(self.c5(x)).flatten(1)
        return self.output(torch.tanh(self.f6(x)))


pytestmark = pytest.mark.usefixtures("torch_single_thread")   # see conftest.py


def digits_float64() -> tuple[np.ndarray, np.ndarray]:
    """The 1437 training digits as standardised float64 (N, 1, 32, 32) images and int64 labels."""
    x, y = (t.numpy() for t in Digits(size=32, split="train").tensors)
    x = x.astype(np.float64)
    return (x - x.mean()) / x.std(), y.astype(np.int64)


OPTIMIZERS = {
    "sgd-momentum": (lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=5e-4),
                     lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=5e-4)),
    "adam": (lambda ps: optim.Adam(ps, lr=2e-3),
             lambda ps: torch.optim.Adam(ps, lr=2e-3)),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_lenet5_100_steps_match_torch(name, tmp_path):
    x, y = digits_float64()
    torch.manual_seed(0)
    t_model = TorchLeNet5().double()
    path = str(tmp_path / "init.safetensors")
    torch_save_file({k: v.contiguous() for k, v in t_model.state_dict().items()}, path)
    model = LeNet5().double()
    model.load_state_dict(sio.load_file(path))

    make_opt, make_t_opt = OPTIMIZERS[name]
    opt, t_opt = make_opt(model.parameters()), make_t_opt(t_model.parameters())
    order = np.random.default_rng(0).permutation(np.resize(np.arange(len(y)), STEPS * BATCH))
    losses, t_losses = [], []
    for step in range(STEPS):
        idx = order[step * BATCH:(step + 1) * BATCH]
        xb, yb = x[idx], y[idx]

        opt.zero_grad()
        loss = F.cross_entropy(model(suanli.tensor(xb)), suanli.tensor(yb))
        loss.backward()
        opt.step()
        losses.append(loss.item())

        t_opt.zero_grad()
        t_loss = TF.cross_entropy(t_model(torch.tensor(xb)), torch.tensor(yb))
        t_loss.backward()
        t_opt.step()
        t_losses.append(t_loss.item())

    np.testing.assert_allclose(losses, t_losses, rtol=1e-9, atol=0)
    for key, value in t_model.state_dict().items():
        np.testing.assert_allclose(model.state_dict()[key].numpy(), value.numpy(), rtol=1e-8, atol=1e-11,
                                   err_msg=key)
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10])          # it did learn
