"""suanli (算力): a complete, readable deep-learning system on NumPy.

>>> import suanli
>>> x = suanli.tensor([1.0, 2.0, 3.0], requires_grad=True)
>>> y = (x ** 2).sum()
>>> y.backward()
>>> x.grad
tensor([2., 4., 6.])
"""
import warnings as _warnings

# NumPy warns on inf*0, log(0)...; torch is silent and so are we (only for calls made from suanli code)
_warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"suanli(\.|$)")

from . import _malloc  # noqa: E402,F401  (allocator thresholds; see _malloc.py)
from . import amp, autograd, data, dtypes, io, models, nn, ops, optim, random  # noqa: E402
from .amp import autocast  # noqa: E402
from ._config import state as _state
from .autograd import enable_grad, inference_mode, is_grad_enabled, no_grad, set_grad_enabled
from .creation import *  # noqa: F401,F403
from .dtypes import (bfloat16, bool_, float16, float32, float64, get_default_dtype, int8, int16, int32,
                     int64, is_floating, promote_types, result_type, set_default_dtype, uint8)
from .errors import AutogradError, DTypeError, ShapeError, SuanliError
from .ops import *  # noqa: F401,F403
from .ops.registry import install_tensor_methods as _install_methods
from .random import Generator, get_rng_state, initial_seed, manual_seed, seed, set_rng_state
from .tensor import Tensor
from .compiler import compile  # noqa: A001,E402  (shadows the builtin only inside this namespace)
from .graph import cond, scan, while_loop  # noqa: E402

_install_methods()
ops.inplace.install({**{k: getattr(ops, k) for k in ops.__all__}, **vars(nn.functional)})

# torch-style dtype aliases (these shadow builtins only inside this namespace)
half, double, long, short = float16, float64, int64, int16
float = float32  # noqa: A001
int = int32  # noqa: A001
bool = bool_  # noqa: A001

__version__ = "0.1.0"

_LAZY = ("onnx", "inference")   # imported on first use: they pull in the onnx package


def __getattr__(name: str):  # noqa: ANN202 - module-level lazy attributes (PEP 562)
    if name in _LAZY:
        import importlib
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'suanli' has no attribute {name!r}")
