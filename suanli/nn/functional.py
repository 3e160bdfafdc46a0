"""``torch.nn.functional``-compatible ops, written as composites of primitives.

Nothing here has gradient code of its own: every function is a short formula over suanli ops, so
reverse mode, double backward and forward mode come from the primitives' rules. Where a formula
needs a running maximum for numerical stability (softmax, log-softmax, softplus), that maximum is
*detached*: the result does not depend on it mathematically, so its gradient would be zero anyway.

Signatures, defaults and semantics follow ``torch.nn.functional``; the activations, convolutions
and pools that live in :mod:`suanli.ops` are re-exported, so ``import suanli.nn.functional as F``
reads like torch code.

>>> import suanli
>>> import suanli.nn.functional as F
>>> logits = suanli.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.5]], requires_grad=True)
>>> F.softmax(logits, dim=1).sum(dim=1)
tensor([1., 1.], grad_fn=<SumBackward>)
>>> loss = F.cross_entropy(logits, suanli.tensor([0, 2]))
>>> round(loss.item(), 4)
0.6342
>>> loss.backward()
>>> logits.grad.shape
(2, 3)
"""
from __future__ import annotations

import math
import numbers
import warnings
from typing import Any, Sequence

import numpy as np

from .. import dtypes as _dt
from .. import ops as _ops                 # looked up at call time: op families land independently
from .._config import state as _state
from ..autograd import no_grad
from ..errors import DTypeError, ShapeError, op_error
from ..ops import fused as _fused
from ..ops.registry import tensor_method
from ..random import Generator, rng
from ..tensor import Tensor, _wrap

__all__ = [
    # linear layers
    "linear", "bilinear",
    # softmax family
    "softmax", "log_softmax", "softmin",
    # normalization
    "layer_norm", "batch_norm", "group_norm", "rms_norm", "instance_norm", "normalize",
    # dropout
    "dropout", "dropout1d", "dropout2d", "dropout3d",
    # sparse
    "embedding", "one_hot",
    # losses
    "cross_entropy", "nll_loss", "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss",
    "binary_cross_entropy", "binary_cross_entropy_with_logits", "kl_div",
    # distances
    "cosine_similarity", "pairwise_distance",
    # attention
    "scaled_dot_product_attention",
    # activation that is a composite of the above
    "glu",
]

# Functions torch keeps in ``torch.nn.functional`` but suanli defines in ``suanli.ops`` (activations,
# convolutions, pools, padding). They are served by the module ``__getattr__`` below, so this file
# never needs to change when one of them lands, and only the ones that exist are listed in __all__.
_REEXPORTS = (
    "relu", "gelu", "silu", "sigmoid", "tanh", "leaky_relu", "softplus", "elu", "selu", "celu",
    "hardtanh", "relu6", "hardsigmoid", "hardswish", "mish", "softsign", "tanhshrink", "threshold",
    "logsigmoid", "hardshrink", "softshrink",
    "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "max_pool1d", "max_pool2d",
    "avg_pool1d", "avg_pool2d", "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_max_pool2d",
    "pad", "interpolate", "unfold", "fold", "pixel_shuffle",
)
__all__ += [name for name in _REEXPORTS if hasattr(_ops, name) and name not in __all__]


def __getattr__(name: str) -> Any:
    """``F.relu`` and friends: looked up in :mod:`suanli.ops` when first asked for."""
    if name in _REEXPORTS:
        try:
            return getattr(_ops, name)
        except AttributeError:
            pass
    raise AttributeError(f"module 'suanli.nn.functional' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | {n for n in _REEXPORTS if hasattr(_ops, n)})


# ====================================================================================== helpers
_REDUCTIONS = ("none", "mean", "sum")


def _legacy_reduction(op: str, size_average: bool | None, reduce: bool | None, reduction: str) -> str:
    """torch's ``size_average``/``reduce`` arguments, mapped onto ``reduction`` (with torch's warning)."""
    if size_average is None and reduce is None:
        return reduction
    warnings.warn(f"{op}: size_average and reduce args will be deprecated, please use reduction="
                  f"'{_legacy_string(size_average, reduce)}' instead.", stacklevel=3)
    return _legacy_string(size_average, reduce)


def _legacy_string(size_average: bool | None, reduce: bool | None) -> str:
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    if not reduce:
        return "none"
    return "mean" if size_average else "sum"


def _check_reduction(op: str, reduction: str, allowed: Sequence[str] = _REDUCTIONS) -> None:
    if reduction not in allowed:
        raise op_error(op, f"{reduction!r} is not a valid value for reduction",
                       expect=" | ".join(repr(r) for r in allowed), cls=ValueError)  # type: ignore[arg-type]


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return _mean(loss)
    if reduction == "sum":
        return _ops.sum(loss)
    return loss


def _mean(x: Tensor, axes: Sequence[int] | None = None, keepdim: bool = False) -> Tensor:
    """Mean over ``axes`` (all if ``None``) as sum / count: a composite of two primitives."""
    axes = tuple(range(x.ndim)) if axes is None else tuple(axes)
    count = math.prod(x.shape[a] for a in axes)
    return _ops.sum(x, axes, keepdim=keepdim) / count


def _require_tensor(op: str, **named: Any) -> None:
    for name, value in named.items():
        if value is not None and not isinstance(value, Tensor):
            raise op_error(op, f"argument '{name}' must be a Tensor, not {type(value).__name__}",
                           hint="wrap the data with suanli.tensor(...)", cls=DTypeError)


def _require_float(op: str, **named: Tensor | None) -> None:
    _require_tensor(op, **named)
    for name, t in named.items():
        if t is not None and t.dtype not in _dt.FLOATING:
            raise op_error(op, f"'{name}' must be a floating-point tensor",
                           expect=f"dtype in {[str(d) for d in _dt.FLOATING]}",
                           actual=f"{name}: {t.shape} {t.dtype}", hint="convert with .float() first",
                           cls=DTypeError)


def _upcast(x: Tensor) -> Tensor:
    """float16/bfloat16 statistics are computed in float32 (as torch's CPU kernels do)."""
    return _ops.cast(x, _dt.float32) if x.dtype in _dt.HALF else x


def _downcast(y: Tensor, like: Tensor) -> Tensor:
    return _ops.cast(y, like.dtype) if y.dtype != like.dtype else y


def _const(array: np.ndarray) -> Tensor:
    """A constant tensor (masks, scales) built from data that carries no gradient."""
    return _wrap(np.ascontiguousarray(array))


def _shape_str(t: Tensor) -> str:
    return f"{tuple(t.shape)} {t.dtype}"


def _channel_view(t: Tensor, ndim: int) -> Tensor:
    """A per-channel (C,) tensor reshaped to (1, C, 1, ..., 1) so it broadcasts over (N, C, *)."""
    return _ops.reshape(t, (1, t.shape[0]) + (1,) * (ndim - 2))


# ====================================================================================== linear
def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``input @ weight.T + bias`` for ``input`` of shape (*, in_features), ``weight`` (out, in).

    >>> import suanli
    >>> x = suanli.ones(2, 3)
    >>> w = suanli.tensor([[1.0, 2.0, 3.0]])
    >>> linear(x, w, suanli.tensor([0.5]))
    tensor([[6.5],
            [6.5]])
    """
    _require_float("linear", input=input, weight=weight, bias=bias)
    if _state.autocast is not None:     # mixed precision: the whole layer, bias too, in the low dtype (torch's)
        input, weight, bias = _state.autocast.lower(input, weight, bias)
    if weight.ndim not in (1, 2) or input.ndim == 0 or input.shape[-1] != weight.shape[-1]:
        raise op_error("linear", "input features do not match the weight",
                       expect="input (*, in_features) and weight (out_features, in_features) or (in_features,)",
                       actual=f"input {tuple(input.shape)}, weight {tuple(weight.shape)}",
                       hint="check the layer's in_features against the previous layer's output size")
    if input.dtype != weight.dtype:
        raise op_error("linear", "input and weight must have the same dtype",
                       actual=f"input {_shape_str(input)}, weight {_shape_str(weight)}",
                       hint=f"convert the input with .to({weight.dtype})", cls=DTypeError)
    if weight.ndim == 2:
        out = _ops.matmul(input, _ops.transpose(weight, 0, 1))    # (*, in) @ (in, out) -> (*, out)
    else:
        out = _ops.matmul(input, weight)                            # (*, in) @ (in,) -> (*)
    return out if bias is None else out + bias


def bilinear(input1: Tensor, input2: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``y[..., o] = sum_ij input1[..., i] * weight[o, i, j] * input2[..., j] + bias[o]``.

    >>> import suanli
    >>> w = suanli.ones(1, 2, 3)
    >>> bilinear(suanli.ones(4, 2), suanli.ones(4, 3), w).shape
    (4, 1)
    """
    _require_float("bilinear", input1=input1, input2=input2, weight=weight, bias=bias)
    if (weight.ndim != 3 or input1.ndim == 0 or input2.ndim == 0 or input1.shape[-1] != weight.shape[1]
            or input2.shape[-1] != weight.shape[2] or input1.shape[:-1] != input2.shape[:-1]):
        raise op_error("bilinear", "input shapes do not match the weight",
                       expect="input1 (*, in1), input2 (*, in2), weight (out, in1, in2)",
                       actual=f"input1 {tuple(input1.shape)}, input2 {tuple(input2.shape)}, "
                              f"weight {tuple(weight.shape)}")
    out_f, in1, in2 = weight.shape
    w = _ops.reshape(_ops.transpose(weight, 0, 1), (in1, out_f * in2))    # (in1, out * in2)
    t = _ops.reshape(_ops.matmul(input1, w), input1.shape[:-1] + (out_f, in2))   # (*, out, in2)
    x2 = _ops.reshape(input2, input2.shape[:-1] + (1, in2))               # (*, 1, in2)
    out = _ops.sum(t * x2, -1)                                            # (*, out)
    return out if bias is None else out + bias


# ====================================================================================== softmax
def _softmax_input(op: str, input: Tensor, dim: int | None, dtype: Any) -> tuple[Tensor, int]:
    _require_tensor(op, input=input)
    if dim is None:
        dim = 0 if input.ndim in (0, 1, 3) else 1
        warnings.warn(f"Implicit dimension choice for {op} has been deprecated. "
                      "Change the call to include dim=X as an argument.", stacklevel=3)
    if dtype is not None:
        input = _ops.cast(input, dtype)
    if input.dtype not in _dt.FLOATING:
        raise op_error(op, "expects a floating-point tensor", actual=_shape_str(input),
                       hint="pass dtype=suanli.float32 or convert with .float()", cls=DTypeError)
    from ..ops._helpers import normalize_axis
    normalize_axis(op, int(dim), input.ndim)      # the error names softmax, not an inner op
    return input, dim


def _as_vector(fn, x: Tensor, dim: int) -> Tensor:
    """A 0-d input is one class: compute on shape (1,) and give back a 0-d result (as torch does)."""
    return _ops.reshape(fn(_ops.reshape(x, (1,)), 0), ())


def _shift_by_max(x: Tensor, dim: int) -> Tensor:
    """``x - max(x, dim)`` with the max detached: exp() of it never overflows."""
    return x - _ops.amax(x.detach(), dim, keepdim=True)


def softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype: Any = None) -> Tensor:
    """``exp(x) / sum(exp(x), dim)``, computed as ``exp(x - max)`` so it never overflows.

    ``dtype`` casts the input first (as torch does). A row that is all ``-inf`` gives NaN, as in torch.

    >>> import suanli
    >>> softmax(suanli.tensor([1000.0, 1000.0]), dim=0)
    tensor([0.5, 0.5])
    """
    x, dim = _softmax_input("softmax", input, dim, dtype)
    if x.ndim == 0:
        return _as_vector(softmax, x, dim)
    return _downcast(_fused.softmax(_upcast(x), dim), x)


def log_softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype: Any = None) -> Tensor:
    """``x - logsumexp(x, dim)``: exact for large logits where ``log(softmax(x))`` would give -inf.

    >>> import suanli
    >>> log_softmax(suanli.tensor([0.0, 200.0]), dim=0)
    tensor([-200.,    0.])
    """
    x, dim = _softmax_input("log_softmax", input, dim, dtype)
    if x.ndim == 0:
        return _as_vector(log_softmax, x, dim)
    return _downcast(_fused.log_softmax(_upcast(x), dim), x)


def softmin(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype: Any = None) -> Tensor:
    """``softmax(-input)``.

    >>> import suanli
    >>> softmin(suanli.tensor([0.0, 0.0]), dim=0)
    tensor([0.5, 0.5])
    """
    x, dim = _softmax_input("softmin", input, dim, dtype)
    return softmax(-x, dim)


@tensor_method("softmax")
def _softmax_method(self: Tensor, dim: int, dtype: Any = None) -> Tensor:
    """``x.softmax(dim)``: see :func:`suanli.nn.functional.softmax`."""
    return softmax(self, dim, dtype=dtype)


@tensor_method("log_softmax")
def _log_softmax_method(self: Tensor, dim: int, dtype: Any = None) -> Tensor:
    """``x.log_softmax(dim)``: see :func:`suanli.nn.functional.log_softmax`."""
    return log_softmax(self, dim, dtype=dtype)


def glu(input: Tensor, dim: int = -1) -> Tensor:
    """Gated linear unit: split ``input`` in two halves ``a, b`` along ``dim``; ``a * sigmoid(b)``.

    >>> import suanli
    >>> glu(suanli.tensor([[1.0, 2.0, 0.0, 0.0]]))
    tensor([[0.5, 1. ]])
    """
    _require_float("glu", input=input)
    n = input.shape[dim] if input.ndim else 0
    if input.ndim == 0 or n % 2:
        raise op_error("glu", "the halved dimension must have an even size",
                       actual=f"input {tuple(input.shape)}, dim={dim}")
    a, b = _ops.split(input, n // 2, dim)
    return a * _ops.sigmoid(b)


def _softplus(z: Tensor) -> Tensor:
    """``log(1 + exp(z))`` as ``m + log(exp(-m) + exp(z - m))`` with ``m = max(z, 0)`` detached.

    Exact gradient (``sigmoid(z)``) everywhere, including ``z = 0``, and no overflow: both
    exponents are <= 0. (The threshold trick of ``F.softplus`` would cost accuracy here.)
    """
    m = _ops.clamp(z.detach(), min=0.0)
    return m + _ops.log(_ops.exp(-m) + _ops.exp(z - m))


# ====================================================================================== normalization
def _normalized_axes(op: str, input: Tensor, normalized_shape: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Validate ``normalized_shape`` against the trailing dims; return (shape, axes)."""
    shape = (int(normalized_shape),) if isinstance(normalized_shape, numbers.Integral) \
        else tuple(int(s) for s in normalized_shape)
    k = len(shape)
    if k == 0 or k > input.ndim or tuple(input.shape[input.ndim - k:]) != shape:
        raise op_error(op, "normalized_shape must match the trailing dimensions of the input",
                       expect=f"input of shape (*, {', '.join(map(str, shape))})",
                       actual=f"input {tuple(input.shape)}, normalized_shape {list(shape)}")
    return shape, tuple(range(input.ndim - k, input.ndim))


def _check_param(op: str, name: str, t: Tensor | None, shape: tuple[int, ...]) -> None:
    if t is not None and tuple(t.shape) != tuple(shape):
        raise op_error(op, f"'{name}' has the wrong shape", expect=str(tuple(shape)),
                       actual=f"{name} {tuple(t.shape)}")


def _affine(y: Tensor, weight: Tensor | None, bias: Tensor | None) -> Tensor:
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def _standardize(x: Tensor, axes: tuple[int, ...], eps: float) -> Tensor:
    """``(x - mean) / sqrt(var + eps)`` over ``axes``, with the biased variance."""
    return _fused.standardize(x, tuple(a % max(x.ndim, 1) for a in axes), eps)


def layer_norm(input: Tensor, normalized_shape: Any, weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Normalize over the trailing ``normalized_shape`` dims (biased variance), then scale and shift.

    >>> import suanli
    >>> y = layer_norm(suanli.tensor([[1.0, 2.0, 3.0]]), (3,))
    >>> [round(v, 4) for v in y.tolist()[0]]
    [-1.2247, 0.0, 1.2247]
    """
    _require_float("layer_norm", input=input, weight=weight, bias=bias)
    shape, axes = _normalized_axes("layer_norm", input, normalized_shape)
    _check_param("layer_norm", "weight", weight, shape)
    _check_param("layer_norm", "bias", bias, shape)
    y = _standardize(_upcast(input), axes, eps)
    return _downcast(_affine(y, weight, bias), input)


def rms_norm(input: Tensor, normalized_shape: Any, weight: Tensor | None = None,
             eps: float | None = None) -> Tensor:
    """``x / sqrt(mean(x**2) + eps) * weight`` over the trailing dims; ``eps=None`` means the machine
    epsilon of the computation dtype (float32 for float16/bfloat16 inputs), as in torch.

    >>> import suanli
    >>> rms_norm(suanli.tensor([[3.0, 4.0]]), [2], eps=0.0)
    tensor([[0.8485, 1.1314]])
    """
    _require_float("rms_norm", input=input, weight=weight)
    shape, axes = _normalized_axes("rms_norm", input, normalized_shape)
    _check_param("rms_norm", "weight", weight, shape)
    x = _upcast(input)
    if eps is None:                       # float16/bfloat16 are computed in float32: its eps, as torch
        eps = float(np.finfo(x.dtype).eps)
    y = x * _ops.rsqrt(_mean(x * x, axes, keepdim=True) + eps)
    return _downcast(_affine(y, weight, None), input)


def _check_channels(op: str, input: Tensor, **params: Tensor | None) -> int:
    if input.ndim < 2:
        raise op_error(op, "expects an input of shape (N, C, *)", actual=f"input {tuple(input.shape)}",
                       hint="add a batch dimension with unsqueeze(0)")
    c = input.shape[1]
    for name, t in params.items():
        _check_param(op, name, t, (c,))
    return c


def _update_running(running: Tensor, batch_stat: Tensor, momentum: float) -> None:
    """``running = (1 - momentum) * running + momentum * batch_stat``, in place, no gradient."""
    with no_grad():
        running.copy_(running * (1.0 - momentum) + _ops.cast(batch_stat.detach(), running.dtype) * momentum)


def _check_momentum(op: str, momentum: Any) -> float:
    if momentum is None or not isinstance(momentum, numbers.Real):
        raise op_error(op, f"momentum must be a number, not {type(momentum).__name__}",
                       hint="a cumulative average (momentum=None) is kept by nn.BatchNorm, which passes "
                            "momentum=1/num_batches_tracked", cls=TypeError)  # type: ignore[arg-type]
    return float(momentum)


def batch_norm(input: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
               weight: Tensor | None = None, bias: Tensor | None = None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Normalize each channel (dim 1) of an (N, C, *) input.

    ``training=True``: statistics of this batch (biased variance); the running statistics, when
    given, are updated in place without gradient -- ``running_var`` with the *unbiased* variance.
    ``training=False``: the running statistics are used.

    >>> import suanli
    >>> x = suanli.tensor([[1.0], [3.0]])
    >>> rm, rv = suanli.zeros(1), suanli.ones(1)
    >>> batch_norm(x, rm, rv, training=True, eps=0.0)
    tensor([[-1.],
            [ 1.]])
    >>> rm, rv
    (tensor([0.2]), tensor([1.1]))
    """
    _require_float("batch_norm", input=input, weight=weight, bias=bias)
    _require_tensor("batch_norm", running_mean=running_mean, running_var=running_var)
    c = _check_channels("batch_norm", input, running_mean=running_mean, running_var=running_var,
                        weight=weight, bias=bias)
    if (running_mean is None) != (running_var is None):
        raise op_error("batch_norm", "running_mean and running_var must both be given or both be None",
                       cls=ValueError)  # type: ignore[arg-type]
    momentum = _check_momentum("batch_norm", momentum)
    nd = input.ndim
    axes = (0,) + tuple(range(2, nd))                    # every dim but the channels
    x = _upcast(input)
    if training:
        n = input.numel() // c
        if n <= 1:
            raise op_error("batch_norm", "expected more than 1 value per channel when training",
                           actual=f"input size {tuple(input.shape)}", hint="use a batch of 2 or more",
                           cls=ValueError)  # type: ignore[arg-type]
        mean = _mean(x, axes, keepdim=True)              # (1, C, 1, ...)
        centered = x - mean
        var = _mean(centered * centered, axes, keepdim=True)
        y = centered * _ops.rsqrt(var + eps)
        if running_mean is not None:
            _update_running(running_mean, _ops.reshape(mean, (c,)), momentum)
            _update_running(running_var, _ops.reshape(var, (c,)) * (n / (n - 1)), momentum)
    else:
        if running_mean is None:
            raise op_error("batch_norm", "running_mean and running_var must be defined in evaluation mode",
                           hint="pass training=True to normalize with batch statistics",
                           cls=ValueError)  # type: ignore[arg-type]
        mean = _channel_view(running_mean, nd)
        var = _channel_view(running_var, nd)
        y = (x - mean) * _ops.rsqrt(var + eps)
    y = _affine(y, None if weight is None else _channel_view(weight, nd),
                None if bias is None else _channel_view(bias, nd))
    return _downcast(y, input)


def instance_norm(input: Tensor, running_mean: Tensor | None = None, running_var: Tensor | None = None,
                  weight: Tensor | None = None, bias: Tensor | None = None, use_input_stats: bool = True,
                  momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Normalize each (sample, channel) plane of an (N, C, *) input over its spatial dims.

    With ``use_input_stats`` the running statistics (if given) are updated with the mean over the
    batch of the per-instance statistics (unbiased variance), as torch does.

    >>> import suanli
    >>> instance_norm(suanli.tensor([[[1.0, 3.0]]]), eps=0.0)
    tensor([[[-1.,  1.]]])
    """
    _require_float("instance_norm", input=input, weight=weight, bias=bias)
    _require_tensor("instance_norm", running_mean=running_mean, running_var=running_var)
    c = _check_channels("instance_norm", input, running_mean=running_mean, running_var=running_var,
                        weight=weight, bias=bias)
    if input.ndim < 3:
        raise op_error("instance_norm", "expects an input of shape (N, C, L) or more dims",
                       actual=f"input {tuple(input.shape)}")
    momentum = _check_momentum("instance_norm", momentum)
    nd = input.ndim
    axes = tuple(range(2, nd))
    x = _upcast(input)
    if use_input_stats:
        n = math.prod(input.shape[2:])
        if n <= 1:
            raise op_error("instance_norm", "expected more than 1 spatial element when training",
                           actual=f"input size {tuple(input.shape)}", cls=ValueError)  # type: ignore[arg-type]
        mean = _mean(x, axes, keepdim=True)             # (N, C, 1, ...)
        centered = x - mean
        var = _mean(centered * centered, axes, keepdim=True)
        y = centered * _ops.rsqrt(var + eps)
        flat = (input.shape[0], c)
        if running_mean is not None:
            _update_running(running_mean, _mean(_ops.reshape(mean, flat), (0,)), momentum)
        if running_var is not None:
            _update_running(running_var, _mean(_ops.reshape(var, flat), (0,)) * (n / (n - 1)), momentum)
    else:
        if running_mean is None or running_var is None:
            raise op_error("instance_norm", "running_mean and running_var must be defined when "
                           "use_input_stats=False", cls=ValueError)  # type: ignore[arg-type]
        y = (x - _channel_view(running_mean, nd)) * _ops.rsqrt(_channel_view(running_var, nd) + eps)
    y = _affine(y, None if weight is None else _channel_view(weight, nd),
                None if bias is None else _channel_view(bias, nd))
    return _downcast(y, input)


def group_norm(input: Tensor, num_groups: int, weight: Tensor | None = None, bias: Tensor | None = None,
               eps: float = 1e-5) -> Tensor:
    """Split the C channels into ``num_groups`` groups; normalize each (sample, group) over its
    channels and spatial positions; then per-channel scale and shift.

    >>> import suanli
    >>> group_norm(suanli.tensor([[[1.0], [3.0]]]), 1, eps=0.0)
    tensor([[[-1.],
             [ 1.]]])
    """
    _require_float("group_norm", input=input, weight=weight, bias=bias)
    c = _check_channels("group_norm", input, weight=weight, bias=bias)
    if not isinstance(num_groups, numbers.Integral) or num_groups <= 0 or c % num_groups:
        raise op_error("group_norm", "the number of channels must be divisible by num_groups",
                       actual=f"input {tuple(input.shape)} ({c} channels), num_groups={num_groups}")
    x = _upcast(input)
    grouped = _ops.reshape(x, (input.shape[0], num_groups, -1))     # (N, G, C/G * spatial)
    y = _ops.reshape(_standardize(grouped, (2,), eps), input.shape)  # back to (N, C, *)
    nd = input.ndim
    y = _affine(y, None if weight is None else _channel_view(weight, nd),
                None if bias is None else _channel_view(bias, nd))
    return _downcast(y, input)


def _vector_norm(x: Tensor, p: float, dim: int, keepdim: bool) -> Tensor:
    return _ops.norm(x, p, dim, keepdim=keepdim)


def normalize(input: Tensor, p: float = 2.0, dim: int = 1, eps: float = 1e-12,
              out: Tensor | None = None) -> Tensor:
    """``input / max(||input||_p, eps)`` along ``dim``.

    >>> import suanli
    >>> normalize(suanli.tensor([[3.0, 4.0]]))
    tensor([[0.6, 0.8]])
    """
    _require_float("normalize", input=input)
    if out is not None:
        raise op_error("normalize", "out= is not supported", hint="use the returned tensor",
                       cls=ValueError)  # type: ignore[arg-type]
    denom = _ops.clamp(_vector_norm(input, p, dim, True), min=eps)
    return input / denom


# ====================================================================================== dropout
def _check_p(op: str, p: float) -> float:
    if not isinstance(p, numbers.Real) or not 0.0 <= p <= 1.0:
        raise op_error(op, f"dropout probability has to be between 0 and 1, but got {p}",
                       cls=ValueError)  # type: ignore[arg-type]
    return float(p)


def _keep_mask(input: Tensor, shape: tuple[int, ...], p: float, generator: Generator | None) -> Tensor:
    """Bernoulli(1 - p) keep-mask scaled by 1 / (1 - p), as a constant in ``input``'s dtype."""
    keep = rng(generator).random(shape) >= p
    return _const((keep * (1.0 / (1.0 - p))).astype(input.dtype))


def _apply_dropout(op: str, input: Tensor, p: float, training: bool, inplace: bool,
                   generator: Generator | None, mask_shape: tuple[int, ...]) -> Tensor:
    _require_float(op, input=input)
    p = _check_p(op, p)
    if not training or p == 0.0:
        return input
    if p == 1.0:
        scale = _const(np.zeros(mask_shape, dtype=input.dtype))       # everything dropped
    else:
        scale = _keep_mask(input, mask_shape, p, generator)
    return input.mul_(scale) if inplace else input * scale


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False, *,
            generator: Generator | None = None) -> Tensor:
    """Inverted dropout: zero each element with probability ``p``, scale the rest by ``1/(1-p)``.

    The mask comes from suanli's seeded default generator (or ``generator``), so runs repeat
    exactly after ``suanli.manual_seed``. ``p=0`` or ``training=False`` returns ``input`` itself.

    >>> import suanli
    >>> x = suanli.ones(8)
    >>> dropout(x, 0.5, training=False) is x
    True
    >>> sorted(set(dropout(x, 0.5).tolist()) | {0.0, 2.0})
    [0.0, 2.0]
    """
    return _apply_dropout("dropout", input, p, training, inplace, generator, tuple(input.shape))


def _feature_dropout(op: str, input: Tensor, p: float, training: bool, inplace: bool,
                     generator: Generator | None, batched_ndim: int) -> Tensor:
    """Drop whole channels: one mask value per (sample, channel), broadcast over the rest."""
    _require_tensor(op, input=input)
    nd = input.ndim
    if nd not in (batched_ndim, batched_ndim - 1):
        raise op_error(op, f"expects a {batched_ndim - 1}-d (unbatched) or {batched_ndim}-d (batched) input",
                       actual=f"input {tuple(input.shape)}")
    lead = 2 if nd == batched_ndim else 1          # (N, C, *) or unbatched (C, *)
    mask_shape = tuple(input.shape[:lead]) + (1,) * (nd - lead)
    return _apply_dropout(op, input, p, training, inplace, generator, mask_shape)


def dropout1d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False, *,
              generator: Generator | None = None) -> Tensor:
    """Zero whole channels of an (N, C, L) or (C, L) input with probability ``p``.

    >>> import suanli
    >>> dropout1d(suanli.ones(2, 3, 4), 0.5).shape
    (2, 3, 4)
    """
    return _feature_dropout("dropout1d", input, p, training, inplace, generator, 3)


def dropout2d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False, *,
              generator: Generator | None = None) -> Tensor:
    """Zero whole channels of an (N, C, H, W) or (C, H, W) input with probability ``p``.

    (torch reads a 3-d input as batched (N, C, L) with a warning; suanli reads it as unbatched.)

    >>> import suanli
    >>> y = dropout2d(suanli.ones(1, 8, 2, 2), 0.5)
    >>> sorted({tuple(plane) for plane in y.reshape(8, 4).tolist()})
    [(0.0, 0.0, 0.0, 0.0), (2.0, 2.0, 2.0, 2.0)]
    """
    return _feature_dropout("dropout2d", input, p, training, inplace, generator, 4)


def dropout3d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False, *,
              generator: Generator | None = None) -> Tensor:
    """Zero whole channels of an (N, C, D, H, W) or (C, D, H, W) input with probability ``p``.

    >>> import suanli
    >>> dropout3d(suanli.ones(1, 2, 1, 1, 1), 0.0).shape
    (1, 2, 1, 1, 1)
    """
    return _feature_dropout("dropout3d", input, p, training, inplace, generator, 5)


# ====================================================================================== embedding
_INDEX_DTYPES = (np.dtype(np.int64), np.dtype(np.int32))


def _check_indices(op: str, name: str, index: Tensor, size: int, allowed: Sequence[np.dtype] = _INDEX_DTYPES,
                   ignore: int | None = None) -> None:
    _require_tensor(op, **{name: index})
    if index.dtype not in allowed:
        raise op_error(op, f"'{name}' must hold integer class/row indices",
                       expect=f"dtype in {[str(d) for d in allowed]}", actual=_shape_str(index),
                       hint="convert with .long()", cls=DTypeError)
    data = index._data if ignore is None else index._data[index._data != ignore]
    if data.size and (data.min() < 0 or data.max() >= size):
        bad = data.min() if data.min() < 0 else data.max()
        raise op_error(op, f"index {int(bad)} is out of bounds", expect=f"indices in [0, {size - 1}]",
                       actual=f"{name} {_shape_str(index)} with values in [{int(data.min())}, {int(data.max())}]",
                       cls=IndexError)  # type: ignore[arg-type]


def _embedding_renorm_(weight: Tensor, indices: Tensor, max_norm: float, norm_type: float) -> None:
    """Rescale, in place and without gradient, the looked-up rows whose norm exceeds ``max_norm``."""
    rows = np.unique(indices._data)
    data = weight._data[rows].astype(np.float64)
    norms = np.linalg.norm(data, ord=norm_type, axis=1)
    scale = np.where(norms > max_norm, max_norm / (norms + 1e-7), 1.0)
    new = weight._data.copy()
    new[rows] = (data * scale[:, None]).astype(weight.dtype)
    with no_grad():
        weight.copy_(_const(new))


def embedding(input: Tensor, weight: Tensor, padding_idx: int | None = None, max_norm: float | None = None,
              norm_type: float = 2.0, scale_grad_by_freq: bool = False, sparse: bool = False) -> Tensor:
    """Rows of ``weight`` (num_embeddings, dim) picked by the integer ``input``: shape ``input.shape + (dim,)``.

    Gradients of repeated indices accumulate; the ``padding_idx`` row gets no gradient;
    ``scale_grad_by_freq`` divides each row's gradient by its count in ``input``; ``max_norm``
    renormalizes the looked-up rows in place first. ``sparse`` is accepted; the gradient is dense.

    >>> import suanli
    >>> w = suanli.tensor([[0.0, 0.0], [1.0, 2.0]], requires_grad=True)
    >>> embedding(suanli.tensor([[1, 1, 0]]), w, padding_idx=0).sum().backward()
    >>> w.grad
    tensor([[0., 0.],
            [2., 2.]])
    """
    _require_tensor("embedding", input=input, weight=weight)
    if weight.ndim != 2:
        raise op_error("embedding", "weight must be a 2-d (num_embeddings, embedding_dim) tensor",
                       actual=f"weight {tuple(weight.shape)}")
    num = weight.shape[0]
    _check_indices("embedding", "input", input, num)
    if padding_idx is not None:
        if not -num <= padding_idx < num:
            raise op_error("embedding", "padding_idx must be within num_embeddings",
                           expect=f"padding_idx in [{-num}, {num - 1}]", actual=f"padding_idx={padding_idx}",
                           cls=ValueError)  # type: ignore[arg-type]
        padding_idx %= num
    if max_norm is not None:
        _embedding_renorm_(weight, input, max_norm, norm_type)
    flat = _ops.reshape(input, (-1,))
    out = _ops.reshape(_ops.index_select(weight, 0, flat), tuple(input.shape) + (weight.shape[1],))
    if padding_idx is None and not scale_grad_by_freq:
        return out
    # Same values, gradient scaled per looked-up position: d + (out - d) * s with d = out.detach()
    # equals out exactly, and its gradient is s times out's (0 for padding, 1/count for frequency).
    idx = input._data
    scale = np.ones(idx.shape, dtype=weight.dtype)
    if scale_grad_by_freq:
        _, inverse, counts = np.unique(idx, return_inverse=True, return_counts=True)
        scale = (1.0 / counts[inverse.reshape(idx.shape)]).astype(weight.dtype)
    if padding_idx is not None:
        scale = np.where(idx == padding_idx, 0, scale).astype(weight.dtype)
    held = out.detach()
    return held + (out - held) * _const(scale[..., None])


def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    """int64 one-hot encoding: shape ``tensor.shape + (num_classes,)``; ``-1`` means ``max + 1``.

    >>> import suanli
    >>> one_hot(suanli.tensor([0, 2]))
    tensor([[1, 0, 0],
            [0, 0, 1]])
    """
    _require_tensor("one_hot", tensor=tensor)
    if tensor.dtype != _dt.int64:
        raise op_error("one_hot", "is only applicable to index tensors of dtype int64",
                       actual=_shape_str(tensor), hint="convert with .long()", cls=DTypeError)
    data = tensor._data
    if num_classes == -1:
        if data.size == 0:
            raise op_error("one_hot", "can not infer total number of classes from an empty tensor",
                           hint="pass num_classes", cls=ValueError)  # type: ignore[arg-type]
        num_classes = int(data.max()) + 1
    if data.size and data.min() < 0:
        raise op_error("one_hot", "class values must be non-negative", actual=f"min value {int(data.min())}",
                       cls=ValueError)  # type: ignore[arg-type]
    if data.size and data.max() >= num_classes:
        raise op_error("one_hot", "class values must be smaller than num_classes",
                       actual=f"max value {int(data.max())}, num_classes={num_classes}",
                       cls=ValueError)  # type: ignore[arg-type]
    classes = _const(np.arange(num_classes, dtype=np.int64))
    return _ops.cast(_ops.unsqueeze(tensor, -1) == classes, _dt.int64)


# ====================================================================================== classification losses
_CLASS_TARGET_DTYPES = (np.dtype(np.int64), np.dtype(np.uint8))


def _class_layout(op: str, input: Tensor, target: Tensor, *, probs_allowed: bool) -> tuple[int, bool]:
    """Validate (input, target) shapes; return (class dim, whether target holds probabilities)."""
    _require_float(op, input=input)
    _require_tensor(op, target=target)
    if input.ndim == 0:
        raise op_error(op, "input must have a class dimension", expect="input (C,), (N, C) or (N, C, d1, ...)",
                       actual=f"input {_shape_str(input)}")
    class_dim = 0 if input.ndim == 1 else 1
    index_shape = tuple(s for i, s in enumerate(input.shape) if i != class_dim)
    is_probs = probs_allowed and target.dtype in _dt.FLOATING
    forms = (f"class indices: int64 target of shape {index_shape} (input's shape without dim {class_dim})")
    if probs_allowed:
        forms += f", or class probabilities: float target of shape {tuple(input.shape)} (same as input)"
    if is_probs:
        ok = tuple(target.shape) == tuple(input.shape)
    else:
        ok = tuple(target.shape) == index_shape and target.dtype in _CLASS_TARGET_DTYPES
    if not ok:
        what = "target dtype" if tuple(target.shape) == index_shape else "target shape"
        raise op_error(op, f"{what} does not match the input", expect=forms,
                       actual=f"input {_shape_str(input)}, target {_shape_str(target)}",
                       hint="class-index targets must be int64 (.long()); probability targets float",
                       cls=DTypeError if what == "target dtype" else ShapeError)
    return class_dim, is_probs


def _check_class_weight(op: str, weight: Tensor | None, c: int) -> None:
    _require_float(op, weight=weight)
    if weight is not None and tuple(weight.shape) != (c,):
        raise op_error(op, "weight must hold one value per class", expect=f"shape ({c},)",
                       actual=f"weight {tuple(weight.shape)}")


def _target_parts(target: Tensor, ignore_index: int) -> tuple[Tensor, Tensor]:
    """(valid mask, safe target): ignored positions point at class 0 and are masked out later."""
    target = _ops.cast(target, _dt.int64)         # uint8 targets: compare without overflow
    valid = target != ignore_index
    return valid, _ops.where(valid, target, 0)


def _class_weights(weight: Tensor | None, safe: Tensor, valid: Tensor, dtype: np.dtype) -> Tensor:
    """Per-position weight ``weight[target]``, 0 where the target is ignored."""
    if weight is None:
        return _ops.cast(valid, dtype)
    picked = _ops.reshape(_ops.index_select(weight, 0, _ops.reshape(safe, (-1,))), tuple(safe.shape))
    return _ops.where(valid, picked, 0.0)


def nll_loss(input: Tensor, target: Tensor, weight: Tensor | None = None, size_average: bool | None = None,
             ignore_index: int = -100, reduce: bool | None = None, reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of the target classes under log-probabilities ``input``.

    ``input`` (C,), (N, C) or (N, C, d1, ...); ``target`` the class indices, shape of ``input``
    without dim 1. ``reduction='mean'`` is the *weighted* mean ``sum(w[t] * loss) / sum(w[t])``
    over the positions whose target is not ``ignore_index``.

    >>> import suanli
    >>> logp = suanli.tensor([[-0.5, -1.0], [-2.0, -0.1]])
    >>> nll_loss(logp, suanli.tensor([0, 1]))
    tensor(0.3)
    """
    reduction = _legacy_reduction("nll_loss", size_average, reduce, reduction)
    _check_reduction("nll_loss", reduction)
    class_dim, _ = _class_layout("nll_loss", input, target, probs_allowed=False)
    c = input.shape[class_dim]
    _check_class_weight("nll_loss", weight, c)
    _check_indices("nll_loss", "target", target, c, _CLASS_TARGET_DTYPES, ignore=ignore_index)
    valid, safe = _target_parts(target, ignore_index)
    picked = _ops.gather(input, class_dim, _ops.unsqueeze(safe, class_dim))     # log p[target]
    picked = _ops.reshape(picked, tuple(target.shape))
    w = _class_weights(weight, safe, valid, input.dtype)
    loss = -picked * w
    if reduction == "mean":
        return _weighted_mean(_ops.sum(loss), _ops.sum(w))
    return _reduce(loss, reduction)


def _weighted_mean(total: Tensor, weight_sum: Tensor) -> Tensor:
    """``total / weight_sum``; when every target is ignored (``weight_sum == 0``) the value is NaN,
    as in torch, but the gradient is zero rather than NaN, so one empty batch cannot poison the model."""
    empty = weight_sum == 0
    return total / _ops.where(empty, 1.0, weight_sum) + _ops.where(empty, float("nan"), 0.0)


def cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None, size_average: bool | None = None,
                  ignore_index: int = -100, reduce: bool | None = None, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> Tensor:
    """Cross entropy between logits ``input`` and ``target``: ``nll_loss(log_softmax(input, 1), target)``.

    ``target`` is either class indices (int64, ``input``'s shape without dim 1, honouring
    ``ignore_index`` and ``weight``) or class probabilities (float, ``input``'s shape).
    ``label_smoothing=e`` mixes the target with the uniform distribution: ``(1-e) * nll + e/C * smooth``.

    >>> import suanli
    >>> logits = suanli.tensor([[0.0, 0.0], [0.0, 0.0]])
    >>> round(cross_entropy(logits, suanli.tensor([0, 1])).item(), 4)
    0.6931
    >>> round(cross_entropy(logits, suanli.tensor([[1.0, 0.0], [0.5, 0.5]])).item(), 4)
    0.6931
    """
    reduction = _legacy_reduction("cross_entropy", size_average, reduce, reduction)
    _check_reduction("cross_entropy", reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise op_error("cross_entropy", f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}",
                       cls=ValueError)  # type: ignore[arg-type]
    class_dim, is_probs = _class_layout("cross_entropy", input, target, probs_allowed=True)
    c = input.shape[class_dim]
    _check_class_weight("cross_entropy", weight, c)
    logp = log_softmax(input, class_dim)
    w_view = None
    if weight is not None:        # (C,) -> broadcastable over the class dim of (N, C, d1, ...)
        w_view = weight if input.ndim == 1 else _channel_view(weight, input.ndim)
    if is_probs:
        if ignore_index != -100:
            raise op_error("cross_entropy", "ignore_index is not supported for floating point target",
                           hint="zero the rows of the probability target instead", cls=ValueError)  # type: ignore[arg-type]
        if label_smoothing > 0:
            target = target * (1.0 - label_smoothing) + label_smoothing / c
        terms = logp * target if w_view is None else logp * target * w_view
        loss = -_ops.sum(terms, class_dim)                  # input's shape without the class dim
        if reduction == "mean":
            return _ops.sum(loss) / (input.numel() // c)   # mean over the positions, not the weights
        return _reduce(loss, reduction)
    nll = nll_loss(logp, target, weight, ignore_index=ignore_index, reduction=reduction)
    if label_smoothing == 0.0:
        return nll
    # The uniform part: -sum_c w_c log p_c per position (0 where ignored), reduced like nll_loss.
    valid, safe = _target_parts(target, ignore_index)
    smooth = -_ops.sum(logp if w_view is None else logp * w_view, class_dim)
    smooth = _ops.where(valid, smooth, 0.0)
    if reduction == "mean":
        smooth = _weighted_mean(_ops.sum(smooth), _ops.sum(_class_weights(weight, safe, valid, input.dtype)))
    else:
        smooth = _reduce(smooth, reduction)
    return nll * (1.0 - label_smoothing) + smooth * (label_smoothing / c)


def _check_same_shape(op: str, input: Tensor, target: Tensor, message: str) -> None:
    if tuple(input.shape) != tuple(target.shape):
        raise op_error(op, message.format(target=tuple(target.shape), input=tuple(input.shape)),
                       actual=f"input {_shape_str(input)}, target {_shape_str(target)}",
                       hint="reshape the target to the input's shape", cls=ValueError)  # type: ignore[arg-type]


def _log_clamped(x: Tensor) -> Tensor:
    """``max(log(x), -100)`` like torch's BCE; ``x == 0`` gives -100 with a zero (not NaN) gradient."""
    positive = x > 0
    safe = _ops.where(positive, x, 1.0)
    return _ops.where(positive, _ops.clamp(_ops.log(safe), min=-100.0), -100.0)


def binary_cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None,
                         size_average: bool | None = None, reduce: bool | None = None,
                         reduction: str = "mean") -> Tensor:
    """``-(t * log(x) + (1 - t) * log(1 - x))`` for probabilities ``x``; logs clamped at -100.

    >>> import suanli
    >>> round(binary_cross_entropy(suanli.tensor([0.5, 0.5]), suanli.tensor([1.0, 0.0])).item(), 4)
    0.6931
    """
    reduction = _legacy_reduction("binary_cross_entropy", size_average, reduce, reduction)
    _check_reduction("binary_cross_entropy", reduction)
    _require_float("binary_cross_entropy", input=input, target=target, weight=weight)
    _check_same_shape("binary_cross_entropy", input, target,
                      "Using a target size {target} that is different to the input size {input} is "
                      "deprecated. Please ensure they have the same size.")
    data = input._data
    if data.size and not (np.all(data >= 0) and np.all(data <= 1)):
        raise op_error("binary_cross_entropy", "all elements of input should be between 0 and 1",
                       actual=f"values in [{float(np.nanmin(data))}, {float(np.nanmax(data))}]",
                       hint="apply sigmoid first, or use binary_cross_entropy_with_logits on the logits",
                       cls=ValueError)  # type: ignore[arg-type]
    loss = -(target * _log_clamped(input) + (1.0 - target) * _log_clamped(1.0 - input))
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def binary_cross_entropy_with_logits(input: Tensor, target: Tensor, weight: Tensor | None = None,
                                     size_average: bool | None = None, reduce: bool | None = None,
                                     reduction: str = "mean", pos_weight: Tensor | None = None) -> Tensor:
    """``binary_cross_entropy(sigmoid(x), t)`` computed stably from the logits ``x``:
    ``(1 - t) * x + (1 + (pos_weight - 1) * t) * softplus(-x)``.

    >>> import suanli
    >>> binary_cross_entropy_with_logits(suanli.tensor([100.0, -100.0]), suanli.tensor([1.0, 0.0]))
    tensor(0.)
    """
    reduction = _legacy_reduction("binary_cross_entropy_with_logits", size_average, reduce, reduction)
    _check_reduction("binary_cross_entropy_with_logits", reduction)
    _require_float("binary_cross_entropy_with_logits", input=input, target=target, weight=weight,
                   pos_weight=pos_weight)
    _check_same_shape("binary_cross_entropy_with_logits", input, target,
                      "Target size {target} must be the same as input size {input}")
    softplus_neg = _softplus(-input)                          # -log(sigmoid(x))
    if pos_weight is None:
        loss = (1.0 - target) * input + softplus_neg
    else:
        loss = (1.0 - target) * input + ((pos_weight - 1.0) * target + 1.0) * softplus_neg
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def _xlogy_self(t: Tensor) -> Tensor:
    """``t * log(t)`` with ``0 * log(0) = 0`` (and no NaN gradient there)."""
    zero = t == 0
    return _ops.where(zero, 0.0, t * _ops.log(_ops.where(zero, 1.0, t)))


def kl_div(input: Tensor, target: Tensor, size_average: bool | None = None, reduce: bool | None = None,
           reduction: str = "mean", log_target: bool = False) -> Tensor:
    """KL divergence ``sum t * (log t - input)`` with ``input`` given as log-probabilities.

    ``log_target=True``: ``target`` is log-probabilities too. ``reduction='batchmean'`` divides the
    sum by the batch size (the mathematically correct KL); ``'mean'`` divides by every element.

    >>> import suanli
    >>> p = suanli.tensor([[0.5, 0.5]])
    >>> kl_div(p.log(), p, reduction="batchmean")
    tensor(0.)
    """
    reduction = _legacy_reduction("kl_div", size_average, reduce, reduction)
    _check_reduction("kl_div", reduction, _REDUCTIONS + ("batchmean",))
    _require_float("kl_div", input=input, target=target)
    if reduction == "mean":
        warnings.warn("reduction: 'mean' divides the total loss by both the batch size and the support "
                      "size.'batchmean' divides only by the batch size, and aligns with the KL div math "
                      "definition.'mean' will be changed to behave the same as 'batchmean' in the next "
                      "major release.", stacklevel=2)
    if log_target:
        loss = _ops.exp(target) * (target - input)
    else:
        loss = _xlogy_self(target) - target * input
    if reduction == "batchmean":
        total = _ops.sum(loss)
        return total / input.shape[0] if input.ndim else total
    return _reduce(loss, reduction)


# ====================================================================================== regression losses
def _regression_pair(op: str, input: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    _require_float(op, input=input, target=target)
    if tuple(input.shape) != tuple(target.shape):
        warnings.warn(f"Using a target size {tuple(target.shape)} that is different to the input size "
                      f"{tuple(input.shape)}. This will likely lead to incorrect results due to "
                      "broadcasting. Please ensure they have the same size.", stacklevel=3)
    return input, target


def _weighted(op: str, loss: Tensor, input: Tensor, weight: Tensor | None, reduction: str,
              mean_by_weight: bool) -> Tensor:
    """torch's per-element ``weight`` (same shape as input). mse/l1 take the weighted mean
    ``sum(w * l) / sum(w)``; huber the plain mean of ``w * l`` -- torch's own difference."""
    if weight is None:
        return _reduce(loss, reduction)
    _require_float(op, weight=weight)
    if tuple(weight.shape) != tuple(input.shape):
        raise op_error(op, "Weights and input must have the same size.",
                       actual=f"weight {tuple(weight.shape)}, input {tuple(input.shape)}",
                       cls=ValueError)  # type: ignore[arg-type]
    loss = loss * weight
    if reduction == "mean" and mean_by_weight:
        return _ops.sum(loss) / _ops.sum(weight)
    return _reduce(loss, reduction)


def mse_loss(input: Tensor, target: Tensor, size_average: bool | None = None, reduce: bool | None = None,
             reduction: str = "mean", weight: Tensor | None = None) -> Tensor:
    """Mean squared error ``(input - target)**2``, reduced.

    >>> import suanli
    >>> mse_loss(suanli.tensor([1.0, 2.0]), suanli.tensor([0.0, 0.0]))
    tensor(2.5)
    """
    reduction = _legacy_reduction("mse_loss", size_average, reduce, reduction)
    _check_reduction("mse_loss", reduction)
    input, target = _regression_pair("mse_loss", input, target)
    diff = input - target
    return _weighted("mse_loss", diff * diff, input, weight, reduction, mean_by_weight=True)


def l1_loss(input: Tensor, target: Tensor, size_average: bool | None = None, reduce: bool | None = None,
            reduction: str = "mean", weight: Tensor | None = None) -> Tensor:
    """Mean absolute error ``|input - target|``, reduced.

    >>> import suanli
    >>> l1_loss(suanli.tensor([1.0, -2.0]), suanli.tensor([0.0, 0.0]))
    tensor(1.5)
    """
    reduction = _legacy_reduction("l1_loss", size_average, reduce, reduction)
    _check_reduction("l1_loss", reduction)
    input, target = _regression_pair("l1_loss", input, target)
    return _weighted("l1_loss", _ops.abs(input - target), input, weight, reduction, mean_by_weight=True)


def smooth_l1_loss(input: Tensor, target: Tensor, size_average: bool | None = None, reduce: bool | None = None,
                   reduction: str = "mean", beta: float = 1.0) -> Tensor:
    """``0.5 * d**2 / beta`` where ``|d| < beta``, else ``|d| - 0.5 * beta`` (``d = input - target``).

    >>> import suanli
    >>> smooth_l1_loss(suanli.tensor([0.5, 3.0]), suanli.tensor([0.0, 0.0]), reduction="none")
    tensor([0.125, 2.5  ])
    """
    reduction = _legacy_reduction("smooth_l1_loss", size_average, reduce, reduction)
    _check_reduction("smooth_l1_loss", reduction)
    if beta < 0:
        raise op_error("smooth_l1_loss", "smooth_l1_loss does not support negative values for beta.",
                       actual=f"beta={beta}", cls=ValueError)  # type: ignore[arg-type]
    input, target = _regression_pair("smooth_l1_loss", input, target)
    d = input - target
    ad = _ops.abs(d)
    if beta == 0.0:
        return _reduce(ad, reduction)
    loss = _ops.where(ad < beta, d * d * (0.5 / beta), ad - 0.5 * beta)
    return _reduce(loss, reduction)


def huber_loss(input: Tensor, target: Tensor, reduction: str = "mean", delta: float = 1.0,
               weight: Tensor | None = None) -> Tensor:
    """``0.5 * d**2`` where ``|d| < delta``, else ``delta * (|d| - 0.5 * delta)``.

    >>> import suanli
    >>> huber_loss(suanli.tensor([0.5, 3.0]), suanli.tensor([0.0, 0.0]), reduction="none", delta=2.0)
    tensor([0.125, 4.   ])
    """
    _check_reduction("huber_loss", reduction)
    if delta <= 0:
        raise op_error("huber_loss", "huber_loss does not support non-positive values for delta.",
                       actual=f"delta={delta}", cls=ValueError)  # type: ignore[arg-type]
    input, target = _regression_pair("huber_loss", input, target)
    d = input - target
    ad = _ops.abs(d)
    loss = _ops.where(ad < delta, d * d * 0.5, (ad - 0.5 * delta) * delta)
    return _weighted("huber_loss", loss, input, weight, reduction, mean_by_weight=False)


# ====================================================================================== distances
def cosine_similarity(x1: Tensor, x2: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """``sum(x1 * x2) / (max(||x1||, eps) * max(||x2||, eps))`` along ``dim`` (inputs broadcast).

    >>> import suanli
    >>> cosine_similarity(suanli.tensor([[1.0, 0.0]]), suanli.tensor([[1.0, 1.0]]))
    tensor([0.7071])
    """
    _require_float("cosine_similarity", x1=x1, x2=x2)
    n1 = _ops.clamp(_vector_norm(x1, 2.0, dim, True), min=eps)
    n2 = _ops.clamp(_vector_norm(x2, 2.0, dim, True), min=eps)
    return _ops.sum((x1 / n1) * (x2 / n2), dim)


def pairwise_distance(x1: Tensor, x2: Tensor, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False) -> Tensor:
    """``||x1 - x2 + eps||_p`` over the last dimension.

    >>> import suanli
    >>> pairwise_distance(suanli.tensor([[3.0, 0.0]]), suanli.tensor([[0.0, 4.0]]), eps=0.0)
    tensor([5.])
    """
    _require_float("pairwise_distance", x1=x1, x2=x2)
    return _vector_norm(x1 - x2 + eps, p, -1, keepdim)


# ====================================================================================== attention
def scaled_dot_product_attention(query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None,
                                 dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None,
                                 enable_gqa: bool = False, *, generator: Generator | None = None) -> Tensor:
    """``softmax(q @ k^T * scale + bias) @ v`` for query (..., L, E), key (..., S, E), value (..., S, Ev).

    ``attn_mask``: bool (True = attend) or float (added to the scores), broadcastable to (..., L, S).
    ``is_causal``: query i attends to keys 0..i (top-left aligned when L != S, as in torch); combined
    with ``attn_mask`` if both are given. ``scale`` defaults to ``1/sqrt(E)``. A query row with every
    key masked out gives zeros (torch's behaviour), not NaN. ``enable_gqa`` repeats key/value heads
    (dim -3) to match the query's.

    >>> import suanli
    >>> q = k = v = suanli.ones(1, 2, 3, 4)
    >>> scaled_dot_product_attention(q, k, v, is_causal=True).shape
    (1, 2, 3, 4)
    """
    op = "scaled_dot_product_attention"
    _require_float(op, query=query, key=key, value=value)
    _require_tensor(op, attn_mask=attn_mask)
    if query.ndim < 2 or key.ndim < 2 or value.ndim < 2 or query.shape[-1] != key.shape[-1] \
            or key.shape[-2] != value.shape[-2]:
        raise op_error(op, "query, key and value shapes do not fit together",
                       expect="query (..., L, E), key (..., S, E), value (..., S, Ev)",
                       actual=f"query {tuple(query.shape)}, key {tuple(key.shape)}, value {tuple(value.shape)}")
    if not (query.dtype == key.dtype == value.dtype):
        raise op_error(op, "query, key and value must have the same dtype",
                       actual=f"query {query.dtype}, key {key.dtype}, value {value.dtype}", cls=DTypeError)
    if attn_mask is not None and attn_mask.dtype != _dt.bool_ and attn_mask.dtype != query.dtype:
        raise op_error(op, "attn_mask must be bool or have the query's dtype",
                       actual=f"attn_mask {attn_mask.dtype}, query {query.dtype}",
                       hint=f"convert the mask with .to({query.dtype}) or build a bool mask", cls=DTypeError)
    L, S = query.shape[-2], key.shape[-2]
    if enable_gqa:
        key, value = _repeat_kv_heads(op, query, key), _repeat_kv_heads(op, query, value)
    factor = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = _ops.matmul(query * factor, _ops.transpose(key, -2, -1))      # (..., L, S)
    keep = None                                                             # bool (..., L, S) or None
    if attn_mask is None:
        # no mask or causal only: every row keeps key 0, so the fused (causal) softmax is safe
        weights = _fused.softmax(scores, -1, causal=is_causal)
        if dropout_p > 0.0:
            weights = dropout(weights, dropout_p, training=True, generator=generator)
        return _ops.matmul(weights, value)                                  # (..., L, Ev)
    if is_causal:
        keep = _const(np.tril(np.ones((L, S), dtype=bool)))
    if attn_mask is not None:
        if attn_mask.dtype == _dt.bool_:
            keep = attn_mask if keep is None else keep & attn_mask
        else:
            scores = scores + attn_mask
    if keep is not None:
        scores = _ops.where(keep, scores, float("-inf"))
    weights = _safe_softmax(scores)
    if dropout_p > 0.0:
        weights = dropout(weights, dropout_p, training=True, generator=generator)
    return _ops.matmul(weights, value)                                      # (..., L, Ev)


def _safe_softmax(scores: Tensor) -> Tensor:
    """Softmax over the last dim where a row of all ``-inf`` gives zeros, with zero (not NaN) gradient."""
    m = _ops.amax(scores.detach(), -1, keepdim=True)
    m = _ops.where(m == float("-inf"), 0.0, m)          # fully masked row: exp(-inf - 0) = 0
    e = _ops.exp(scores - m)
    total = _ops.sum(e, -1, keepdim=True)
    return e / _ops.where(total == 0, 1.0, total)


def _repeat_kv_heads(op: str, query: Tensor, kv: Tensor) -> Tensor:
    """(..., Hkv, S, E) -> (..., Hq, S, E), each key/value head repeated Hq / Hkv times in a row."""
    if query.ndim < 3 or kv.ndim < 3 or query.shape[-3] % kv.shape[-3]:
        raise op_error(op, "with enable_gqa the query heads must be a multiple of the key/value heads",
                       actual=f"query {tuple(query.shape)}, key/value {tuple(kv.shape)}")
    rep = query.shape[-3] // kv.shape[-3]
    if rep == 1:
        return kv
    *lead, h, s, e = kv.shape
    x = _ops.unsqueeze(kv, -3)                                               # (..., Hkv, 1, S, E)
    x = _ops.expand(x, (*lead, h, rep, s, e))                                # (..., Hkv, rep, S, E)
    return _ops.reshape(x, (*lead, h * rep, s, e))                           # (..., Hq, S, E)
