"""Reference models, one file each, written like nanoGPT's ``model.py``: a dataclass config (or
torchvision-style constructor arguments), a shape comment on every reshape, and state-dict names that
match the usual torch definitions, so their checkpoints load with ``load_state_dict``.

| file         | models                                          | state-dict names follow       |
|--------------|-------------------------------------------------|-------------------------------|
| ``gpt.py``    | ``GPT``, ``GPTConfig`` (BabyGPT, shakespeare_char) | nanoGPT                       |
| ``lenet.py``  | ``LeNet5``                                       | the 1998 paper's layer names  |
| ``resnet.py`` | ``resnet18``, ``resnet34``, ``bit_resnet_v2``       | torchvision; big_transfer     |
| ``vit.py``    | ``ViT``, ``ViTConfig`` (ViT-22B switches)          | timm                          |

>>> import suanli
>>> from suanli.models import LeNet5
>>> LeNet5()(suanli.zeros(2, 1, 32, 32)).shape
(2, 10)
"""
from .gpt import GPT, GPTConfig, KVCache
from .lenet import LeNet5
from .resnet import BasicBlock, ResNet, ResNetV2, StdConv2d, bit_resnet_v2, resnet18, resnet34
from .vit import ViT, ViTConfig

__all__ = ["GPT", "GPTConfig", "KVCache", "LeNet5", "ResNet", "BasicBlock", "resnet18", "resnet34", "ResNetV2",
           "StdConv2d", "bit_resnet_v2", "ViT", "ViTConfig"]
