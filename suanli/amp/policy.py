"""The autocast policy: one table saying, for every primitive, which dtype it runs in under autocast.

Three kinds, named after PyTorch's autocast lists:

| kind      | inside ``autocast(dtype=low)``                               | for                              |
|-----------|--------------------------------------------------------------|----------------------------------|
| ``lower`` | float32 (and the other half type) inputs are cast to ``low`` | GEMM-shaped work: matmul, conv   |
| ``float32``| float16/bfloat16 inputs are cast up to float32              | range- or accumulation-sensitive |
| ``promote``| float inputs are cast to their widest dtype (often a no-op) | everything else                  |

float64 inputs are never cast (as in torch), nor are integer/bool inputs.

Why these primitives are ``float32``: float16's largest value is 65504, so ``exp(12)``, a sum of
a few thousand activations or ``x ** 2`` for ``|x| > 256`` overflow; reductions also lose the low
bits of small addends. ``softmax``/``log_softmax`` are the building blocks of attention and of the
cross-entropy/NLL losses, ``standardize`` is the core of ``layer_norm``/``group_norm``,
``softplus``/``logsigmoid`` are those of the BCE-with-logits loss. This follows torch's CUDA
autocast lists, which are the ones designed for float16 (torch's CPU lists, made for bfloat16, keep
``sum``, ``exp``, ``log``, ``pow``, ``cumsum`` in the low dtype; see :mod:`suanli.amp`). Composites that already compute half inputs in float32 and round the result back to the
input dtype (``F.softmax``, ``F.log_softmax``, ``F.layer_norm``, ``mean``, ``var``, ``logsumexp``)
keep doing so, which is what torch's CPU autocast does for them too; losses come out in float32
because their final reduction is a ``sum``.

A primitive missing from the table runs as ``promote`` (the safe choice: no precision is lost), and
``tests/test_amp.py`` fails until the new primitive is classified here.

>>> from suanli.amp import policy
>>> policy.kind_of("matmul"), policy.kind_of("sum"), policy.kind_of("relu")
('lower', 'float32', 'promote')
"""
from __future__ import annotations

LOWER = "lower"
FLOAT32 = "float32"
PROMOTE = "promote"
KINDS = (LOWER, FLOAT32, PROMOTE)

# ------------------------------------------------------------------ lower: where the speed and memory are
_LOWER_OPS = (
    "matmul", "einsum",                                        # linear layers, attention, bmm
    "conv2d", "conv2d_input_grad", "conv2d_weight_grad",       # conv1d/2d, conv_transpose and adjoints
    "conv2d_nchwc",                                            # blocked inference conv (ops/layout.py)
    "linear", "attention",                                     # ops/fused_layers.py (inference pattern passes)
)

# ------------------------------------------------------------------ float32: range and accumulation
_FLOAT32_OPS = (
    "sum", "prod", "cumsum", "cumprod",                        # reductions (mean/var/norms/losses use sum)
    "exp", "expm1", "log", "log1p", "pow", "reciprocal", "rsqrt",   # overflow/underflow-prone maths
    "softmax", "log_softmax",                                  # attention, cross_entropy, nll_loss
    "standardize",                                             # layer_norm, group_norm, instance_norm
    "softplus", "logsigmoid",                                  # binary_cross_entropy_with_logits
)

# ------------------------------------------------------------------ promote: exact, or fine in half
_PROMOTE_OPS = (
    # arithmetic and elementwise maths
    "add", "sub", "mul", "div", "neg", "abs", "sign", "sqrt", "sin", "cos", "tanh", "sigmoid", "erf",
    "floor", "ceil", "trunc", "round", "maximum", "minimum", "fmod", "remainder", "div_round",
    "clamp", "clamp_min", "clamp_max", "where", "masked_fill", "cast", "copy",
    # comparisons, logic, bits (no float output)
    "eq", "ne", "lt", "le", "gt", "ge", "isnan", "isinf", "isfinite",
    "logical_and", "logical_or", "logical_xor", "logical_not",
    "bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_not",
    # activations (computed in float32 internally for half inputs, rounded back)
    "relu", "leaky_relu", "hardtanh", "hardsigmoid", "hardswish", "elu", "gelu", "silu",
    # first-order backward kernels: they follow the dtype of their forward
    "softmax_grad", "log_softmax_grad", "standardize_grad", "gelu_grad",
    # exact reductions and index results
    "amax", "amin", "argmax", "argmin", "all", "any", "count_nonzero",
    # shapes, views and indexing (data movement only)
    "reshape", "expand", "permute", "slice", "cat", "pad", "flip", "roll", "tril", "triu", "diagonal",
    "index", "index_put", "gather", "scatter", "scatter_add",
    # pooling (max is exact; the averages accumulate in float32 internally)
    "max_pool2d", "max_pool2d_indices", "max_pool2d_gather", "max_pool2d_scatter",
    "avg_pool2d_tiles", "avg_pool2d_tiles_grad", "adaptive_avg_pool2d", "adaptive_avg_pool2d_grad",
    "adaptive_max_pool2d_indices",
    # suanli/ops/onnx_prims.py (ONNX op table)
    "atan", "index_reduce",
    # suanli/ops/layout.py (blocked NCHWc layout: reorders, max pooling)
    "to_nchwc", "from_nchwc", "max_pool2d_nchwc",
)


def _build() -> dict[str, str]:
    table: dict[str, str] = {}
    for kind, names in ((LOWER, _LOWER_OPS), (FLOAT32, _FLOAT32_OPS), (PROMOTE, _PROMOTE_OPS)):
        for name in names:
            if name in table:
                raise ValueError(f"amp policy: primitive {name!r} is listed twice")
            table[name] = kind
    return table


#: primitive name -> ``'lower'`` | ``'float32'`` | ``'promote'``
POLICY: dict[str, str] = _build()


def kind_of(name: str) -> str:
    """The policy kind of primitive ``name`` (``'promote'`` if it is not in the table)."""
    return POLICY.get(name, PROMOTE)


def unclassified(names: list[str] | None = None) -> list[str]:
    """Registered primitives (or ``names``) that have no entry in :data:`POLICY` (should be empty).

    >>> unclassified(["matmul", "my_new_op"])
    ['my_new_op']
    """
    if names is None:
        from ..ops.registry import registry
        names = registry.names()
    return sorted(n for n in names if n not in POLICY)


def table() -> str:
    """The policy as text, one line per kind.

    >>> print(table().splitlines()[0][:19])
    lower   : attention
    """
    lines = []
    for kind in KINDS:
        names = sorted(n for n, k in POLICY.items() if k == kind)
        lines.append(f"{kind:<8}: {', '.join(names)}")
    return "\n".join(lines)
