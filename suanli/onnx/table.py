"""The ONNX op table: ``(domain, op_type)`` -> implementations keyed by the opset they start at.

An implementation is ``fn(ctx, *inputs) -> Tensor | tuple``: ``inputs`` are suanli Tensors (``None``
for an omitted optional input; a list of Tensors for a sequence) and ``ctx`` is the node's
:class:`NodeContext` (attributes, opset, subgraph runner). Numeric work is done with suanli ops, so
a model runs through ``registry.apply`` -- differentiable and traceable. Shape arithmetic (a Reshape's
target, a Slice's starts) reads concrete values.

>>> from suanli.onnx.table import lookup
>>> lookup("", "Relu", 14).__name__
'relu'
"""
from __future__ import annotations

import bisect
from typing import Any, Callable

OpFn = Callable[..., Any]

_TABLE: dict[tuple[str, str], list[tuple[int, OpFn]]] = {}
_DOMAIN_ALIASES = {"ai.onnx": ""}


def onnx_op(*op_types: str, since: int = 1, domain: str = "") -> Callable[[OpFn], OpFn]:
    """Decorator: register ``fn`` for ``op_types`` from opset ``since`` on (until a later entry)."""
    def deco(fn: OpFn) -> OpFn:
        for op_type in op_types:
            versions = _TABLE.setdefault((domain, op_type), [])
            if any(v == since for v, _ in versions):
                raise ValueError(f"ONNX op {domain or 'ai.onnx'}::{op_type} registered twice for opset {since}")
            bisect.insort(versions, (since, fn), key=lambda e: e[0])
        return fn
    return deco


def lookup(domain: str, op_type: str, opset: int) -> OpFn | None:
    """The implementation of ``op_type`` valid at ``opset`` (``None`` if there is none)."""
    _load_ops()
    versions = _TABLE.get((_DOMAIN_ALIASES.get(domain, domain), op_type))
    if not versions:
        return None
    fn = None
    for since, impl in versions:
        if since <= opset:
            fn = impl
    return fn


def supported_ops(domain: str = "") -> list[str]:
    """Sorted op types of ``domain`` that the table implements (at some opset).

    >>> "Conv" in supported_ops()
    True
    """
    _load_ops()
    return sorted(op for d, op in _TABLE if d == domain)


def _load_ops() -> None:
    # the op modules register themselves on import; imported lazily to keep `import suanli` light
    from . import (ops_attention, ops_control, ops_llm, ops_math, ops_nn, ops_quant,  # noqa: F401
                   ops_rnn, ops_shape, ops_signal, ops_string, ops_vision)


class NodeContext:
    """What an op implementation sees besides its inputs: the node, its attributes, the opset."""

    __slots__ = ("node", "attrs", "opset", "runner", "n_outputs", "env")

    def __init__(self, node: Any, attrs: dict[str, Any], opset: int, runner: Any,
                 env: dict[str, Any] | None = None) -> None:
        self.node = node
        self.env = env or {}        # the calling scope: control-flow bodies read outer values from it
        self.attrs = attrs
        self.opset = opset
        self.runner = runner
        self.n_outputs = len(node.output)

    def get(self, name: str, default: Any = None) -> Any:
        """Attribute ``name`` (decoded to Python/NumPy/GraphProto), or ``default``."""
        return self.attrs.get(name, default)

    @property
    def where(self) -> str:
        """``OpType node 'name'`` for error messages."""
        return f"{self.node.op_type} node {self.node.name!r}"
