"""Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d with torch's parameter layout and init.

>>> import suanli
>>> from suanli import nn
>>> conv = nn.Conv2d(1, 6, 5, padding=2)
>>> conv
Conv2d(1, 6, kernel_size=(5, 5), stride=(1, 1), padding=(2, 2))
>>> conv(suanli.zeros(2, 1, 28, 28)).shape
(2, 6, 28, 28)
"""
from __future__ import annotations

import math
from typing import Any

from ... import creation
from ...errors import op_error
from ...tensor import Tensor
from .. import functional as F
from .. import init
from ..module import Module
from ..parameter import Parameter

__all__ = ["Conv1d", "Conv2d", "ConvTranspose1d", "ConvTranspose2d"]

_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _tuple(layer: str, name: str, value: Any, n: int) -> tuple[int, ...]:
    values = tuple(value) if isinstance(value, (tuple, list)) else (value,) * n
    if len(values) != n or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise op_error(layer, f"{name} must be an int or a tuple of {n} ints, got {value!r}")
    return values


class _ConvNd(Module):
    _n = 2
    _transposed = False

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, dilation: Any = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", output_padding: Any = 0, dtype: Any = None) -> None:
        super().__init__()
        layer, n = type(self).__name__, self._n
        for name, v in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise op_error(layer, f"{name} must be a positive int, got {v!r}")
        if in_channels % groups or out_channels % groups:
            raise op_error(layer, "in_channels and out_channels must both be divisible by groups",
                           actual=f"in_channels={in_channels}, out_channels={out_channels}, groups={groups}")
        if padding_mode not in _PADDING_MODES:
            raise op_error(layer, f"padding_mode {padding_mode!r} is not supported",
                           hint=f"use one of {_PADDING_MODES}")
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise op_error(layer, f"padding {padding!r} is not supported", hint="use 'same', 'valid' or ints")
            if self._transposed:
                raise op_error(layer, "string padding is not supported for transposed convolutions")
            if padding == "same" and _tuple(layer, "stride", stride, n) != (1,) * n:
                raise op_error(layer, "padding='same' is not supported for strided convolutions",
                               actual=f"stride={stride}", hint="use stride=1 or explicit integer padding")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = _tuple(layer, "kernel_size", kernel_size, n)
        self.stride = _tuple(layer, "stride", stride, n)
        self.padding = padding if isinstance(padding, str) else _tuple(layer, "padding", padding, n)
        self.dilation = _tuple(layer, "dilation", dilation, n)
        self.output_padding = _tuple(layer, "output_padding", output_padding, n)
        self.padding_mode = padding_mode
        shape = ((in_channels, out_channels // groups) if self._transposed
                 else (out_channels, in_channels // groups)) + self.kernel_size
        self.weight = Parameter(creation.empty(*shape, dtype=dtype))
        if bias:
            self.bias = Parameter(creation.empty(out_channels, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init._calculate_fan_in_and_fan_out(self.weight)
            if fan_in:
                bound = 1 / math.sqrt(fan_in)
                init.uniform_(self.bias, -bound, bound)

    def _pad_input(self, x: Tensor) -> tuple[Tensor, Any]:
        """Apply a non-zero padding mode with ``F.pad`` (then the convolution itself pads nothing)."""
        if self.padding_mode == "zeros":
            return x, self.padding
        amounts: list[int] = []                 # F.pad order: last dim first, (left, right) each
        for i in reversed(range(self._n)):
            if self.padding == "same":          # torch: total d*(k-1), the extra one on the right
                total = self.dilation[i] * (self.kernel_size[i] - 1)
                amounts += [total // 2, total - total // 2]
            elif self.padding == "valid":
                amounts += [0, 0]
            else:
                amounts += [self.padding[i], self.padding[i]]
        return F.pad(x, tuple(amounts), mode=self.padding_mode), 0

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0,) * self._n:
            s += f", padding={self.padding}"
        if self.dilation != (1,) * self._n:
            s += f", dilation={self.dilation}"
        if self._transposed and self.output_padding != (0,) * self._n:
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s


class Conv1d(_ConvNd):
    """1-D convolution over (N, C, L) inputs."""

    _n = 1

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, dilation: Any = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", dtype: Any = None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, dtype=dtype)

    def forward(self, input: Tensor) -> Tensor:
        x, padding = self._pad_input(input)
        return F.conv1d(x, self.weight, self.bias, self.stride, padding, self.dilation, self.groups)


class Conv2d(_ConvNd):
    """2-D convolution over (N, C, H, W) inputs."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, dilation: Any = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", dtype: Any = None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, dtype=dtype)

    def forward(self, input: Tensor) -> Tensor:
        x, padding = self._pad_input(input)
        return F.conv2d(x, self.weight, self.bias, self.stride, padding, self.dilation, self.groups)


class ConvTranspose1d(_ConvNd):
    """Transposed 1-D convolution (the gradient of Conv1d with respect to its input)."""

    _n = 1
    _transposed = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, output_padding: Any = 0, groups: int = 1, bias: bool = True,
                 dilation: Any = 1, padding_mode: str = "zeros", dtype: Any = None) -> None:
        if padding_mode != "zeros":
            raise op_error("ConvTranspose1d", "only padding_mode='zeros' is supported")
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, output_padding, dtype=dtype)

    def forward(self, input: Tensor) -> Tensor:
        return F.conv_transpose1d(input, self.weight, self.bias, self.stride, self.padding,
                                  self.output_padding, self.groups, self.dilation)


class ConvTranspose2d(_ConvNd):
    """Transposed 2-D convolution (the gradient of Conv2d with respect to its input)."""

    _transposed = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, output_padding: Any = 0, groups: int = 1, bias: bool = True,
                 dilation: Any = 1, padding_mode: str = "zeros", dtype: Any = None) -> None:
        if padding_mode != "zeros":
            raise op_error("ConvTranspose2d", "only padding_mode='zeros' is supported")
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, output_padding, dtype=dtype)

    def forward(self, input: Tensor) -> Tensor:
        return F.conv_transpose2d(input, self.weight, self.bias, self.stride, self.padding,
                                  self.output_padding, self.groups, self.dilation)
