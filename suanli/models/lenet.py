"""LeNet-5 (LeCun, Bottou, Bengio, Haffner 1998, "Gradient-based learning applied to document recognition").

The classic layer list with the paper's layer names: C1 convolution, S2 subsampling, C3, S4, C5
(a convolution whose 5x5 kernel covers the whole 5x5 input, so it acts as a fully connected layer),
F6, and the output layer. Modern simplifications, as in most re-implementations: tanh instead of
the scaled ``1.7159 tanh(2x/3)``, average pooling without the trainable coefficient, C3 connected to
all six S2 maps (the paper's sparse connection table is dropped), a Linear output instead of the RBF
units. Layers keep torch's default initialisation.

>>> import suanli
>>> from suanli.models import LeNet5
>>> _ = suanli.manual_seed(0)
>>> model = LeNet5(num_classes=10)
>>> [name for name, _ in model.named_parameters()][:4]
['c1.weight', 'c1.bias', 'c3.weight', 'c3.bias']
>>> model(suanli.randn(4, 1, 32, 32)).shape
(4, 10)
"""
from __future__ import annotations

from .. import nn
from ..errors import ShapeError
from ..tensor import Tensor

__all__ = ["LeNet5"]


class LeNet5(nn.Module):
    """(N, 1, 32, 32) images -> (N, num_classes) logits; 61,706 parameters for 10 classes."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes <= 0:
            raise ValueError(f"LeNet5: num_classes must be a positive int, got {num_classes!r}")
        self.num_classes = num_classes
        self.c1 = nn.Conv2d(1, 6, 5)              # (N, 1, 32, 32) -> (N, 6, 28, 28)
        self.s2 = nn.AvgPool2d(2)                 # -> (N, 6, 14, 14)
        self.c3 = nn.Conv2d(6, 16, 5)             # -> (N, 16, 10, 10)
        self.s4 = nn.AvgPool2d(2)                 # -> (N, 16, 5, 5)
        self.c5 = nn.Conv2d(16, 120, 5)           # -> (N, 120, 1, 1)
        self.f6 = nn.Linear(120, 84)
        self.output = nn.Linear(84, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, 32, 32):
            raise ShapeError(f"LeNet5: expected images of shape (N, 1, 32, 32), got {tuple(x.shape)}\n"
                             f"  help: pad 28x28 MNIST digits by 2 pixels on each side "
                             f"(F.pad(x, (2, 2, 2, 2))); add a batch dim with x[None]")
        x = self.s2(self.c1(x).tanh())            # (N, 6, 14, 14)
        x = self.s4(self.c3(x).tanh())            # (N, 16, 5, 5)
        x = self.c5(x).tanh()                     # (N, 120, 1, 1)
        x = x.flatten(1)                          # (N, 120)
        x = self.f6(x).tanh()                     # (N, 84)
        return self.output(x)                     # (N, num_classes)
