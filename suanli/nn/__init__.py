"""Neural-network building blocks: Module, Parameter, the layers, ``init`` and ``functional``.

>>> import suanli
>>> from suanli import nn
>>> model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))
>>> model(suanli.zeros(2, 1, 8, 8)).shape
(2, 10)
"""
import importlib as _importlib

from . import functional, init
from .module import IncompatibleKeys, Module, RemovableHandle
from .modules import *  # noqa: F401,F403
from .modules import __all__ as _layers
from .parameter import Buffer, Parameter
from .transfer import TransferReport, transfer

__all__ = ["functional", "init", "Module", "Parameter", "Buffer", "RemovableHandle", "IncompatibleKeys",
           "transfer", "TransferReport", *_layers]


def __getattr__(name: str):
    # subpackages written later in the stack (utils) load on first use
    if name in ("utils",):
        return _importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'suanli.nn' has no attribute {name!r}")
