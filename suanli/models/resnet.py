"""ResNets: torchvision's ResNet-18/34 (post-activation, BatchNorm) and BiT's ResNet-v2 (pre-activation,
GroupNorm + Weight Standardization).

``ResNet`` follows torchvision's ``resnet.py``: the same modules, state-dict names (``conv1``, ``bn1``,
``layer1.0.conv1``, ``layer2.0.downsample.0``, ..., ``fc``) and initialisation (Kaiming-normal,
``mode="fan_out"`` for convolutions; BatchNorm weight 1, bias 0), so torchvision checkpoints load
with ``load_state_dict``.

``ResNetV2`` follows Google's big_transfer (``bit_pytorch/models.py``), the BiT paper's model:
every convolution is a :class:`StdConv2d` (weights standardised per output channel), every norm is
``GroupNorm(32, C)``, blocks are pre-activation (norm -> ReLU -> conv, the shortcut taken after the
first norm when it needs a projection), and the names are BiT's (``root.conv``,
``body.block1.unit01.gn1``, ..., ``head.conv``). With bottleneck units (depth 50/101/152) it is BiT-R50x1
etc. exactly; depth 18/34 use pre-activation *basic* units -- a small variant that BiT itself does
not ship, for experiments and tests on small inputs.

>>> import suanli
>>> from suanli.models import resnet18, bit_resnet_v2
>>> _ = suanli.manual_seed(0)
>>> model = resnet18(num_classes=10)
>>> model(suanli.randn(2, 3, 32, 32)).shape
(2, 10)
>>> bit = bit_resnet_v2(18, num_classes=10)
>>> bit(suanli.randn(1, 3, 32, 32)).shape
(1, 10)

References: He et al. 2015 "Deep Residual Learning" (ResNet), He et al. 2016 "Identity Mappings in
Deep Residual Networks" (pre-activation, v2), Qiao et al. 2019 "Weight Standardization", Kolesnikov
et al. 2019 "Big Transfer (BiT)".
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

from .. import nn
from ..errors import ShapeError
from ..nn import functional as F
from ..tensor import Tensor

__all__ = ["BasicBlock", "ResNet", "resnet18", "resnet34",
           "StdConv2d", "PreActBasic", "PreActBottleneck", "ResNetV2", "bit_resnet_v2"]


def _check_images(model: str, x: Tensor, channels: int = 3) -> None:
    if x.ndim != 4 or x.shape[1] != channels:
        raise ShapeError(f"{model}: expected images of shape (N, {channels}, H, W), got {tuple(x.shape)}\n"
                         f"  help: add a batch dim with x[None]; grayscale images can be repeated to 3 channels")


# ==================================================================================================
# torchvision's ResNet (v1: conv -> BN -> ReLU, BasicBlock)
# ==================================================================================================
def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1 and no bias (the BatchNorm after it has one)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution without bias (the projection shortcut)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and a shortcut: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample       # conv1x1 + BatchNorm when the shape changes, else None
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """ResNet for (N, 3, H, W) images: a 7x7/2 stem, max-pool, four stages of ``layers[i]`` blocks
    (64, 128, 256, 512 channels; stages 2-4 halve the resolution), global average pool, ``fc``.

    ``zero_init_residual`` starts each block's last BatchNorm at 0, so every block begins as the
    identity (torchvision's option; Goyal et al. 2017).
    """

    def __init__(self, block: type[BasicBlock], layers: list[int], num_classes: int = 1000,
                 zero_init_residual: bool = False) -> None:
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"ResNet: layers must list the number of blocks of the 4 stages, got {layers}")
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    nn.init.constant_(m.bn2.weight, 0)

    def _make_layer(self, block: type[BasicBlock], planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        _check_images("ResNet", x)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))      # (N, 64, H/4, W/4)
        x = self.layer1(x)                                         # (N, 64, H/4, W/4)
        x = self.layer2(x)                                         # (N, 128, H/8, W/8)
        x = self.layer3(x)                                         # (N, 256, H/16, W/16)
        x = self.layer4(x)                                         # (N, 512, H/32, W/32)
        x = self.avgpool(x)                                        # (N, 512, 1, 1)
        x = x.flatten(1)                                           # (N, 512)
        return self.fc(x)                                          # (N, num_classes)


def resnet18(num_classes: int = 1000, **kwargs: Any) -> ResNet:
    """ResNet-18: BasicBlock x [2, 2, 2, 2], 11.7M parameters at 1000 classes."""
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes=num_classes, **kwargs)


def resnet34(num_classes: int = 1000, **kwargs: Any) -> ResNet:
    """ResNet-34: BasicBlock x [3, 4, 6, 3], 21.8M parameters at 1000 classes."""
    return ResNet(BasicBlock, [3, 4, 6, 3], num_classes=num_classes, **kwargs)


# ==================================================================================================
# BiT's ResNet-v2 (pre-activation, GroupNorm + Weight Standardization)
# ==================================================================================================
class StdConv2d(nn.Conv2d):
    """Conv2d whose weight is standardised per output channel before use (Weight Standardization):
    ``w_hat[o] = (w[o] - mean(w[o])) / sqrt(var(w[o]) + eps)`` over (C_in, kh, kw), biased variance.

    ``eps=1e-10`` is big_transfer's (``bit_pytorch/models.py``), needed to reproduce BiT's released
    weights; timm's BiT port uses 1e-8 (pass ``eps=1e-8`` to match timm). The parameter stays the raw
    ``weight``; gradients flow through the standardisation.
    """

    def __init__(self, *args: Any, eps: float = 1e-10, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        # layer_norm without affine over (C_in, kh, kw) is exactly (w - mean) / sqrt(var + eps) per row
        w = F.layer_norm(self.weight, self.weight.shape[1:], eps=self.eps)      # (C_out, C_in, kh, kw)
        x, padding = self._pad_input(x)          # padding_mode other than zeros, as Conv2d
        return F.conv2d(x, w, self.bias, self.stride, padding, self.dilation, self.groups)


def std_conv3x3(cin: int, cout: int, stride: int = 1) -> StdConv2d:
    return StdConv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


def std_conv1x1(cin: int, cout: int, stride: int = 1) -> StdConv2d:
    return StdConv2d(cin, cout, kernel_size=1, stride=stride, padding=0, bias=False)


class PreActBottleneck(nn.Module):
    """BiT's unit: GN-ReLU-conv1x1, GN-ReLU-conv3x3 (stride here), GN-ReLU-conv1x1, plus the shortcut
    (a strided 1x1 StdConv of the first pre-activation when the shape changes)."""

    def __init__(self, cin: int, cout: int, cmid: int, stride: int = 1, num_groups: int = 32) -> None:
        super().__init__()
        self.gn1 = nn.GroupNorm(num_groups, cin)
        self.conv1 = std_conv1x1(cin, cmid)
        self.gn2 = nn.GroupNorm(num_groups, cmid)
        self.conv2 = std_conv3x3(cmid, cmid, stride)
        self.gn3 = nn.GroupNorm(num_groups, cmid)
        self.conv3 = std_conv1x1(cmid, cout)
        self.relu = nn.ReLU()
        if stride != 1 or cin != cout:
            self.downsample = std_conv1x1(cin, cout, stride)
        else:
            self.downsample = None

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.gn1(x))
        residual = x if self.downsample is None else self.downsample(out)
        out = self.conv1(out)
        out = self.conv2(self.relu(self.gn2(out)))
        out = self.conv3(self.relu(self.gn3(out)))
        return out + residual


class PreActBasic(nn.Module):
    """The basic-block counterpart: GN-ReLU-conv3x3 (stride here), GN-ReLU-conv3x3, plus the shortcut."""

    def __init__(self, cin: int, cout: int, cmid: int | None = None, stride: int = 1, num_groups: int = 32) -> None:
        super().__init__()
        self.gn1 = nn.GroupNorm(num_groups, cin)
        self.conv1 = std_conv3x3(cin, cout, stride)
        self.gn2 = nn.GroupNorm(num_groups, cout)
        self.conv2 = std_conv3x3(cout, cout)
        self.relu = nn.ReLU()
        if stride != 1 or cin != cout:
            self.downsample = std_conv1x1(cin, cout, stride)
        else:
            self.downsample = None

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.gn1(x))
        residual = x if self.downsample is None else self.downsample(out)
        out = self.conv1(out)
        out = self.conv2(self.relu(self.gn2(out)))
        return out + residual


class ConstantPad2d(nn.Module):
    """Pad the last two dims by ``padding`` on every side with ``value`` (BiT pads 0 before its
    stem max-pool, which differs from MaxPool2d's -inf padding)."""

    def __init__(self, padding: int, value: float = 0.0) -> None:
        super().__init__()
        self.padding, self.value = padding, value

    def forward(self, x: Tensor) -> Tensor:
        p = self.padding
        return F.pad(x, (p, p, p, p), value=self.value)

    def extra_repr(self) -> str:
        return f"padding={self.padding}, value={self.value}"


class ResNetV2(nn.Module):
    """BiT's ResNet-v2. ``block_units``: units per stage; ``width_factor`` scales every width (BiT's
    R50x1, R50x3, ...; here also fractions such as 0.5 for small models, as long as the stem width
    64 * width_factor stays a multiple of ``num_groups``); ``bottleneck`` picks :class:`PreActBottleneck`
    (BiT) or :class:`PreActBasic`; ``num_groups`` is GroupNorm's (BiT: 32; fewer allow narrower models).
    The head is GN-ReLU-global-average-pool and a 1x1 conv with bias (``head.conv``).
    """

    def __init__(self, block_units: list[int], width_factor: float = 1, head_size: int = 1000,
                 bottleneck: bool = True, zero_head: bool = False, num_groups: int = 32) -> None:
        super().__init__()
        if len(block_units) != 4:
            raise ValueError(f"ResNetV2: block_units must list the units of the 4 stages, got {block_units}")
        wf = width_factor
        width = int(64 * wf)
        if width <= 0 or width % num_groups:
            raise ValueError(f"ResNetV2: width_factor={wf} gives a stem width of {width}; it must be a positive "
                             f"multiple of num_groups={num_groups} (GroupNorm(num_groups, C))\n  help: use "
                             f"width_factor={max(num_groups, 32) / 64:g} or 1, or fewer groups (num_groups=8)")
        unit, expansion = (PreActBottleneck, 4) if bottleneck else (PreActBasic, 1)
        self.root = nn.Sequential(OrderedDict([
            ("conv", StdConv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)),
            ("pad", ConstantPad2d(1, 0.0)),
            ("pool", nn.MaxPool2d(kernel_size=3, stride=2, padding=0)),
        ]))
        stages, cin = [], width
        for i, units in enumerate(block_units):
            cmid = width * 2 ** i                     # 64, 128, 256, 512 (x wf)
            cout = cmid * expansion
            stride = 1 if i == 0 else 2
            stage = OrderedDict([(f"unit{j + 1:02d}", unit(cin if j == 0 else cout, cout, cmid,
                                                           stride if j == 0 else 1, num_groups))
                                 for j in range(units)])
            stages.append((f"block{i + 1}", nn.Sequential(stage)))
            cin = cout
        self.body = nn.Sequential(OrderedDict(stages))
        self.head = nn.Sequential(OrderedDict([
            ("gn", nn.GroupNorm(num_groups, cin)),
            ("relu", nn.ReLU()),
            ("avg", nn.AdaptiveAvgPool2d(output_size=1)),
            ("conv", nn.Conv2d(cin, head_size, kernel_size=1, bias=True)),
        ]))
        if zero_head:                              # BiT fine-tuning starts from a zero head
            nn.init.zeros_(self.head.conv.weight)
            nn.init.zeros_(self.head.conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        _check_images("ResNetV2", x)
        x = self.root(x)                           # (N, w, H/4, W/4)
        x = self.body(x)                           # (N, 8w or 32w, H/32, W/32)
        x = self.head(x)                           # (N, head_size, 1, 1)
        return x.flatten(1)                        # (N, head_size)


_BIT_UNITS = {18: ([2, 2, 2, 2], False), 34: ([3, 4, 6, 3], False),
              50: ([3, 4, 6, 3], True), 101: ([3, 4, 23, 3], True), 152: ([3, 8, 36, 3], True)}


def bit_resnet_v2(depth: int = 50, num_classes: int = 1000, width_factor: float = 1, **kwargs: Any) -> ResNetV2:
    """A BiT ResNet-v2 of ``depth`` 50/101/152 (bottleneck units: BiT-R50x1 etc.) or 18/34 (basic
    pre-activation units, small and quick to test).

    >>> from suanli.models import bit_resnet_v2
    >>> [n for n, _ in bit_resnet_v2(50, width_factor=0.5).named_parameters()][1:4]
    ['body.block1.unit01.gn1.weight', 'body.block1.unit01.gn1.bias', 'body.block1.unit01.conv1.weight']
    """
    if depth not in _BIT_UNITS:
        raise ValueError(f"bit_resnet_v2: depth must be one of {sorted(_BIT_UNITS)}, got {depth}")
    units, bottleneck = _BIT_UNITS[depth]
    return ResNetV2(units, width_factor, head_size=num_classes, bottleneck=bottleneck, **kwargs)
