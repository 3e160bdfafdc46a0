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
| fuse_elementwise   | same-shape elementwise chains -> one generated C kernel (``fused`` node) | yes  |
| plan_memory        | liveness-based buffer assignment; planned peak in ``meta["memory_plan"]`` | yes  |

``INFERENCE`` is the order an inference session uses after :func:`freeze` -ing the parameters.
"""
from __future__ import annotations

from .affine import fold_affine, freeze
from .cleanup import cse, dce
from .fold import constant_folding, simplify
from .fusion import fuse_elementwise
from .memory import MemoryPlan, plan_memory
from .remat import rematerialize

__all__ = ["constant_folding", "simplify", "cse", "dce", "fold_affine", "freeze", "plan_memory", "MemoryPlan", "rematerialize", "fuse_elementwise",
           "DEFAULT", "INFERENCE", "register_all"]

DEFAULT = ["constant_folding", "simplify", "cse", "dce", "rematerialize", "fuse_elementwise", "plan_memory"]
INFERENCE = ["constant_folding", "simplify", "cse", "fold_affine", "constant_folding", "dce", "fuse_elementwise",
             "dce", "plan_memory"]

_ALL = {"constant_folding": constant_folding, "simplify": simplify, "cse": cse, "dce": dce,
        "fold_affine": fold_affine, "rematerialize": rematerialize, "fuse_elementwise": fuse_elementwise,
        "plan_memory": plan_memory}


def register_all() -> None:
    """Register every pass with ``suanli.compile`` (the ``DEFAULT`` ones as defaults)."""
    from ..compile import register_pass
    for name, fn in _ALL.items():
        register_pass(name, fn, default=name in DEFAULT)
