"""Ops: the primitive registry and every public op, grouped by family.

>>> from suanli.ops import registry
>>> print(registry.table().splitlines()[0])
primitive               diff  vjp  jvp  view  lowerings
"""
from . import conv, elementwise, fused, indexing, inplace, linalg, onnx_prims, reduction, shape  # noqa: F401
from . import layout  # noqa: F401  (blocked NCHWc reorders and conv, used by the layout_nchwc pass)
from .conv import *  # noqa: F401,F403
from .elementwise import *  # noqa: F401,F403
from .indexing import *  # noqa: F401,F403
from .linalg import *  # noqa: F401,F403
from .reduction import *  # noqa: F401,F403
from .registry import Node, Primitive, Spec, apply, registry
from .shape import *  # noqa: F401,F403

__all__ = (["registry", "apply", "Primitive", "Spec", "Node"] + elementwise.__all__ + reduction.__all__
           + shape.__all__ + indexing.__all__ + linalg.__all__ + conv.__all__)
