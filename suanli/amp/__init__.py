"""Mixed precision: ``autocast`` (per-op policy), ``GradScaler`` (dynamic loss scaling) and
``TensorStats`` (activation/gradient range monitoring for float16).

>>> import suanli
>>> from suanli import nn
>>> model = nn.Linear(4, 3)
>>> scaler = suanli.amp.GradScaler()
>>> with suanli.amp.autocast("cpu", dtype=suanli.float16):
...     out = model(suanli.randn(8, 4))       # the matmul runs in float16
...     loss = out.float().pow(2).mean()
>>> scaler.scale(loss).backward()
>>> model.weight.grad.dtype                   # float32 master weights get float32 gradients
dtype('float32')

How suanli's policy relates to torch's (see :mod:`suanli.amp.policy` for the table):

* matmul/einsum/conv run in the low dtype, as torch's on both CPU and CUDA.
* ``sum``, ``prod``, ``cumsum``, ``cumprod``, ``exp``, ``log``, ``pow``... return float32, as torch's
  CUDA autocast (designed for float16); torch's CPU autocast keeps all but ``prod`` in the low dtype.
  With float16 on the CPU that would overflow at 65504 (``exp(12)``), so we take the CUDA lists.
* ``F.softmax``, ``F.log_softmax``, ``F.layer_norm``, ``mean``, ``var``, ``logsumexp`` compute half
  inputs in float32 and round the result to the input dtype -- the dtypes torch's CPU autocast gives.
* losses (cross_entropy, nll, mse, l1, bce_with_logits, kl_div) come out float32, as in torch, because
  their final reduction is a float32 ``sum``. Unlike torch, a loss's elementwise part runs in its
  inputs' dtype (e.g. ``mse_loss`` squares in float16), since the policy is per primitive.
"""
from . import policy
from .autocast import AutocastRegion, autocast, get_autocast_dtype, is_autocast_enabled
from .grad_scaler import GradScaler
from .stats import Alert, PrecisionWarning, Stat, TensorStats, register_stat_hooks

__all__ = ["autocast", "GradScaler", "TensorStats", "register_stat_hooks", "PrecisionWarning", "Stat", "Alert",
           "AutocastRegion", "is_autocast_enabled", "get_autocast_dtype", "policy"]
