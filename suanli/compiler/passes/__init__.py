"""The compiler's named passes: each a small ``Graph -> Graph`` function (they may edit the graph
they are given and return it), registered with :func:`suanli.compiler.compile.register_pass`.

| name               | what it does                                                          | default |
|--------------------|-----------------------------------------------------------------------|---------|
| constant_folding   | evaluate primitives on constants; inline a constant-predicate ``cond`` | yes     |
| simplify           | exact algebraic identities (``x*1``, ``-(-x)``, reshape/permute chains) | yes     |
| cse                | merge repeated computations                                           | yes     |
| dce                | drop nodes whose outputs nobody reads                                 | yes     |
| fold_affine        | batch norm / scale / bias chains folded into a constant conv/matmul weight (inference) | no |
| rematerialize      | recompute cheap forward values for the backward instead of keeping them | yes  |
| lower_native_ops   | softmax / layer norm (+ gradients), small batched matmuls -> native kernels (``fused``) | yes |
| fuse_elementwise   | same-shape elementwise chains -> one generated C kernel (``fused`` node) | yes  |
| plan_memory        | liveness-based buffer assignment; planned peak in ``meta["memory_plan"]`` | yes  |
| layout_nchwc       | conv chains (and max pooling) in blocked NCHW16c layout, reorders only at region boundaries (inference) | no |
| eliminate_shape_ops, fuse_layer_norm, fuse_gelu, fuse_attention, fuse_linear | exporters' decomposed layers -> ``standardize``/``gelu``/``attention``/``linear`` (``patterns.py``, inference) | no |

``INFERENCE`` is the order an inference session uses after :func:`freeze` -ing the parameters.
"""
from __future__ import annotations

from .affine import fold_affine, freeze
from .cleanup import cse, dce
from .fold import constant_folding, simplify
from .fusion import fuse_elementwise
from .fusion import lower_native_ops
from .layout import layout_nchwc
from .memory import MemoryPlan, plan_memory
from .patterns import eliminate_shape_ops, fuse_attention, fuse_gelu, fuse_layer_norm, fuse_linear
from .remat import rematerialize

__all__ = ["constant_folding", "simplify", "cse", "dce", "fold_affine", "freeze", "plan_memory", "MemoryPlan", "rematerialize", "fuse_elementwise",
           "eliminate_shape_ops", "fuse_layer_norm", "fuse_gelu", "fuse_attention", "fuse_linear",
           "DEFAULT", "INFERENCE", "register_all"]

DEFAULT = ["constant_folding", "simplify", "cse", "dce", "rematerialize", "lower_native_ops", "fuse_elementwise", "plan_memory"]
INFERENCE = ["constant_folding", "simplify", "cse", "fold_affine", "constant_folding", "eliminate_shape_ops",
             "fuse_layer_norm", "fuse_gelu", "fuse_attention", "fuse_linear", "dce", "layout_nchwc",
             "lower_native_ops", "fuse_elementwise",
             "dce", "plan_memory"]

_ALL = {"constant_folding": constant_folding, "simplify": simplify, "cse": cse, "dce": dce,
        "fold_affine": fold_affine, "rematerialize": rematerialize, "fuse_elementwise": fuse_elementwise,
        "plan_memory": plan_memory, "eliminate_shape_ops": eliminate_shape_ops,
        "fuse_layer_norm": fuse_layer_norm, "fuse_gelu": fuse_gelu, "fuse_attention": fuse_attention,
        "fuse_linear": fuse_linear}
_ALL["layout_nchwc"] = layout_nchwc   # opt-in (not in INFERENCE): see passes/layout.py and docs/benchmarks.md
_ALL["lower_native_ops"] = lower_native_ops


def register_all() -> None:
    """Register every pass with ``suanli.compile`` (the ``DEFAULT`` ones as defaults)."""
    from ..compile import register_pass
    for name, fn in sorted(_ALL.items(), key=lambda kv: DEFAULT.index(kv[0]) if kv[0] in DEFAULT else len(DEFAULT)):
        register_pass(name, fn, default=name in DEFAULT)
