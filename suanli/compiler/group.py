"""The input of the code generator: a *fused group* -- broadcast inputs, a DAG of elementwise
primitive calls (by registry name), optional reductions at the end, and the outputs.

The group is self-contained (no graph IR needed): the fusion pass maps an IR group onto it by
replaying its nodes through :meth:`FusedGroup.call`. Every call runs the primitive's own shape/dtype
rule from the registry, so a group that builds is one the registry accepts. :meth:`FusedGroup.reference`
evaluates the DAG with each primitive's NumPy ``impl``: the oracle and the fallback of generated code.

>>> import numpy as np
>>> from suanli.compiler.group import FusedGroup
>>> g = FusedGroup("bias_gelu")
>>> x, b = g.input((2, 3), "float32"), g.input((3,), "float32")
>>> g.output(g.call("gelu", g.call("add", x, b), approximate="tanh"))
>>> print(g)
fused group bias_gelu: domain (2, 3)
  in0: (2, 3) float32
  in1: (3,) float32
  v2 = add(in0, in1)  (2, 3) float32
  v3 = gelu(v2, approximate='tanh')  (2, 3) float32
  outputs: v3
>>> [o.shape for o in g.reference(np.zeros((2, 3), np.float32), np.ones(3, np.float32))]
[(2, 3)]
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..errors import ShapeError, SuanliError, op_error
from ..ops._helpers import broadcast_shapes
from ..ops.registry import Spec, registry

__all__ = ["FusedGroup", "Value", "Const", "Node", "ELEMENTWISE_OPS", "REDUCTIONS"]

# primitives the code generator can lower (each has a C template in codegen.py)
ELEMENTWISE_OPS = frozenset({
    "add", "sub", "mul", "div", "neg", "exp", "log", "log1p", "expm1", "tanh", "sigmoid", "relu", "gelu",
    "silu", "erf", "sqrt", "rsqrt", "reciprocal", "abs", "sin", "cos", "pow", "maximum", "minimum",
    "clamp_min", "clamp_max", "leaky_relu", "where", "eq", "ne", "lt", "le", "gt", "ge", "cast",
    "logical_not", "logical_and", "logical_or"})
REDUCTIONS = {"sum": "sum", "max": "amax", "mean": "sum"}    # group reduction -> registry primitive
_DTYPES = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.bool_))


@dataclass(frozen=True)
class Value:
    """A value of the group: an input (``op is None``), a node result or a reduction result."""

    id: int
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def name(self) -> str:
        return f"v{self.id}"


@dataclass(frozen=True)
class Const:
    """A Python scalar operand, held in the dtype of the call's tensor operands."""

    value: float
    dtype: np.dtype


@dataclass(frozen=True)
class Node:
    """``out = op(*args, **attrs)``; ``reduce`` is set for a reduction (``axis`` 'last' or 'all')."""

    op: str
    args: tuple[Value | Const, ...]
    attrs: tuple[tuple[str, Any], ...]
    out: Value
    reduce: str | None = None
    keepdims: bool = False


@dataclass
class FusedGroup:
    """A fused kernel's description; build it with :meth:`input`, :meth:`call`, :meth:`reduce`,
    :meth:`output`.

    ``inplace=True`` (a GEMM/conv epilogue) writes output 0 into input 0's buffer: input 0 must have
    the domain's shape and output 0's dtype, and the group must not reduce.
    """

    name: str = "fused"
    inplace: bool = False
    inputs: list[Value] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    outputs: list[Value] = field(default_factory=list)

    # ------------------------------------------------------------------------------ building
    def input(self, shape: Sequence[int], dtype: Any) -> Value:
        """Declare the next kernel argument (a C-contiguous array of this shape and dtype)."""
        if self.nodes:
            raise self._error("declare every input before the first call", actual=f"input after {len(self.nodes)} node(s)")
        dt = np.dtype(dtype)
        if dt not in _DTYPES:
            raise self._error("inputs must be float32, float64 or bool", actual=f"{dt}",
                              hint="cast outside the group, or run this op unfused")
        shape = tuple(int(d) for d in shape)
        if any(d < 0 for d in shape):
            raise self._error("dimensions must be >= 0", actual=f"shape {shape}")
        v = Value(len(self.inputs), shape, dt)
        self.inputs.append(v)
        return v

    def call(self, op: str, *args: Value | float | bool, **attrs: Any) -> Value:
        """Append ``op(*args, **attrs)``; scalars become constants of the tensor operands' dtype.
        The primitive's registry shape rule validates the call."""
        if op not in ELEMENTWISE_OPS:
            raise self._error(f"{op!r} cannot be lowered to C", actual=op,
                              hint=f"supported: {', '.join(sorted(ELEMENTWISE_OPS))}; run it unfused")
        operands = self._operands(op, args)
        if op == "pow" and not (len(operands) == 2 and isinstance(operands[1], Const)):
            raise self._error("pow is lowered for a constant exponent only", actual=f"pow{tuple(map(str, args))}",
                              hint="pass the exponent as a Python number, or run pow unfused")
        if op == "cast":
            attrs["dtype"] = np.dtype(attrs["dtype"])
            if attrs["dtype"] not in _DTYPES:
                raise self._error("cast targets float32, float64 or bool", actual=str(attrs["dtype"]))
        specs = [Spec(a.shape if isinstance(a, Value) else (), a.dtype) for a in operands]
        spec = registry[op].infer(*specs, **attrs)
        return self._append(Node(op, operands, tuple(sorted(attrs.items())), self._new(spec.shape, spec.dtype)))

    def reduce(self, kind: str, value: Value, axis: str = "last", keepdims: bool = False) -> Value:
        """``sum``/``max``/``mean`` of ``value`` (which must span the domain) over its last axis or all axes."""
        if kind not in REDUCTIONS or axis not in ("last", "all"):
            raise self._error("reductions are sum/max/mean over axis 'last' or 'all'", actual=f"{kind} over {axis!r}")
        if value.dtype == np.bool_:
            raise self._error("reduce a float value", actual=f"{kind} of bool {value.name}", hint="cast it first")
        shape = value.shape
        axes = tuple(range(len(shape))) if axis == "all" else (len(shape) - 1,)
        if axis == "last" and not shape:
            raise self._error("a last-axis reduction needs at least one dimension", actual=f"{value.name}: ()")
        if kind == "max" and any(shape[a] == 0 for a in axes):
            raise op_error(f"codegen[{self.name}]", "max over a zero-size axis has no identity",
                           actual=f"{value.name}: {shape}", cls=ShapeError)
        out_shape = tuple(1 if i in axes else d for i, d in enumerate(shape)) if keepdims else \
            tuple(d for i, d in enumerate(shape) if i not in axes)
        return self._append(Node(kind, (value,), (), self._new(out_shape, value.dtype), axis, keepdims))

    def output(self, *values: Value) -> None:
        """Mark results to return (in this order)."""
        for v in values:
            if not isinstance(v, Value) or v.id >= self._count():
                raise self._error("outputs must be values of this group", actual=repr(v))
            self.outputs.append(v)

    # ------------------------------------------------------------------------------ queries
    @property
    def domain(self) -> tuple[int, ...]:
        """The loop shape: every elementwise value broadcasts into it."""
        shapes = [v.shape for v in self.inputs] + [n.out.shape for n in self.nodes if n.reduce is None]
        return broadcast_shapes(f"codegen[{self.name}]", *shapes) if shapes else ()

    @property
    def reduction_axis(self) -> str | None:
        kinds = {n.reduce for n in self.nodes if n.reduce}
        return kinds.pop() if kinds else None

    def validate(self) -> None:
        """Check what the C loop assumes; raises a clear error naming the group otherwise."""
        if not self.outputs:
            raise self._error("the group has no outputs", hint="call group.output(value)")
        domain = self.domain
        reduced = {n.out.id for n in self.nodes if n.reduce}
        if len({n.reduce for n in self.nodes if n.reduce}) > 1:
            raise self._error("all reductions of one group use the same axis", actual="'last' and 'all'")
        for n in self.nodes:
            if n.reduce is None and any(isinstance(a, Value) and a.id in reduced for a in n.args):
                raise self._error("a reduction must be terminal (its result cannot feed an elementwise op)",
                                  actual=f"{n.op} reads {[a.name for a in n.args if isinstance(a, Value)]}",
                                  hint="split the group after the reduction")
            if n.reduce and n.args[0].shape != domain:
                raise self._error("a reduction's input must span the loop domain", actual=f"{n.args[0].shape} vs {domain}")
        for v in self.outputs:
            if v.id not in reduced and v.shape != domain:
                raise self._error("elementwise outputs must have the domain's shape",
                                  actual=f"{v.name}: {v.shape}, domain {domain}",
                                  hint="broadcast the value inside the group (e.g. add a zero input)")
        if self.inplace:
            first = self.inputs[0] if self.inputs else None
            if (reduced or first is None or first.shape != domain or first.dtype != self.outputs[0].dtype):
                raise self._error("inplace needs input 0 of the domain's shape and output 0's dtype, and no reduction",
                                  actual=f"input 0 {first and (first.shape, str(first.dtype))}, "
                                         f"output 0 {self.outputs[0].dtype}, domain {domain}")

    # ------------------------------------------------------------------------------ evaluation
    def reference(self, *arrays: np.ndarray) -> list[np.ndarray]:
        """Run the DAG with each primitive's NumPy ``impl`` (the oracle and the fallback)."""
        self.validate()
        self.check_arguments(arrays)
        env: dict[int, np.ndarray] = {v.id: np.asarray(a) for v, a in zip(self.inputs, arrays)}
        with np.errstate(all="ignore"):         # inf/nan arise silently, as in torch and the C kernel
            self._run(env)
        outs = [env[v.id] for v in self.outputs]
        return [np.array(np.broadcast_to(o, v.shape), order="C") for o, v in zip(outs, self.outputs)]

    def _run(self, env: dict[int, np.ndarray]) -> None:
        for n in self.nodes:
            args = [np.asarray(a.value, a.dtype) if isinstance(a, Const) else env[a.id] for a in n.args]
            if n.reduce is None:
                env[n.out.id] = np.asarray(registry[n.op].impl(*args, **dict(n.attrs)))
                continue
            x = args[0]
            axes = tuple(range(x.ndim)) if n.reduce == "all" else (x.ndim - 1,)
            out = np.asarray(registry[REDUCTIONS[n.op]].impl(x, axes=axes, keepdims=n.keepdims))
            if n.op == "mean":                       # as suanli.mean: sum / count
                out = np.asarray(np.true_divide(out, x.dtype.type(math.prod(x.shape[a] for a in axes))))
            env[n.out.id] = out

    def check_arguments(self, arrays: Sequence[np.ndarray]) -> None:
        """The arrays must match the declared inputs in number, shape and dtype."""
        if len(arrays) != len(self.inputs):
            raise self._error(f"takes {len(self.inputs)} arrays", actual=f"{len(arrays)} given")
        for v, a in zip(self.inputs, arrays):
            if not isinstance(a, np.ndarray) or a.shape != v.shape or a.dtype != v.dtype:
                got = f"{a.shape} {a.dtype}" if isinstance(a, np.ndarray) else type(a).__name__
                raise op_error(f"codegen[{self.name}]", f"argument {v.id} must be a {v.shape} {v.dtype} array",
                               actual=got, hint="the kernel was built for the declared shapes; build another "
                               "group for other shapes", cls=ShapeError)

    # ------------------------------------------------------------------------------ helpers
    def __str__(self) -> str:
        lines = [f"fused group {self.name}: domain {self.domain}" + (" (in place)" if self.inplace else "")]
        lines += [f"  in{v.id}: {v.shape} {v.dtype}" for v in self.inputs]
        for n in self.nodes:
            args = ", ".join(_arg_name(a, len(self.inputs)) for a in n.args)
            attrs = "".join(f", {k}={v!r}" if k != "dtype" else f", dtype={v}" for k, v in n.attrs)
            red = f", axis={n.reduce!r}" + (", keepdims=True" if n.keepdims else "") if n.reduce else ""
            lines.append(f"  v{n.out.id} = {n.op}({args}{attrs}{red})  {n.out.shape} {n.out.dtype}")
        lines.append("  outputs: " + ", ".join(_arg_name(v, len(self.inputs)) for v in self.outputs))
        return "\n".join(lines)

    def _operands(self, op: str, args: Sequence[Any]) -> tuple[Value | Const, ...]:
        values = [a for a in args if isinstance(a, Value)]
        reduced = {n.out.id for n in self.nodes if n.reduce}
        for v in values:
            if v.id >= self._count():
                raise self._error("operands must be values of this group", actual=repr(v))
            if v.id in reduced:
                raise self._error("a reduction must be terminal (its result cannot feed an elementwise op)",
                                  actual=f"{op} reads {v.name}", hint="split the group after the reduction")
        if not values:
            raise self._error(f"{op} needs at least one tensor operand", actual=f"constants {args}",
                              hint="fold constant expressions before building the group")
        # a scalar takes the dtype of the float operands (where(cond, x, 0.0): x's dtype, not bool)
        floats = [v.dtype for v in values if v.dtype != np.bool_]
        dtype = floats[0] if floats else values[0].dtype
        out: list[Value | Const] = []
        for a in args:
            if isinstance(a, Value):
                out.append(a)
            elif isinstance(a, (bool, int, float, np.number, np.bool_)):
                out.append(Const(float(a) if dtype != np.bool_ else bool(a), dtype))
            else:
                raise self._error(f"{op}: operands are group values or Python scalars", actual=type(a).__name__)
        return tuple(out)

    def _count(self) -> int:
        return len(self.inputs) + len(self.nodes)

    def _new(self, shape: tuple[int, ...], dtype: np.dtype) -> Value:
        if np.dtype(dtype) not in _DTYPES:
            raise self._error("values must be float32, float64 or bool", actual=str(dtype))
        return Value(self._count(), tuple(shape), np.dtype(dtype))

    def _append(self, node: Node) -> Value:
        self.nodes.append(node)
        return node.out

    def _error(self, message: str, *, actual: str | None = None, hint: str | None = None) -> SuanliError:
        return op_error(f"codegen[{self.name}]", message, actual=actual, hint=hint, cls=ValueError)  # type: ignore[arg-type]


def _arg_name(a: Value | Const, n_inputs: int) -> str:
    if isinstance(a, Const):
        return repr(a.value)
    return f"in{a.id}" if a.id < n_inputs else a.name
