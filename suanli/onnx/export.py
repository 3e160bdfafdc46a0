"""``suanli.onnx.export``: trace a model (or function) and write the graph as an ONNX model.

The model is traced by example (:func:`suanli.graph.trace`) in eval mode without gradients, so the
IR holds exactly the registry primitives it ran. Each primitive maps to one or a few ONNX nodes
(the rules in ``_RULES`` below, one small function each); parameters and buffers become named
initializers, captured tensors unnamed ones. Before anything is written, every primitive without a
mapping is listed at once (with the graph line that uses it). The model is checked with
``onnx.checker`` and written atomically.

``dynamic_batch=True`` traces twice (batch b and b + 1, :mod:`suanli.graph.dynamic`) and writes
dim 0 of the inputs as the symbolic ``batch``; sizes that depend on it (a Reshape's target, an
Expand's shape, a Slice's bounds) are computed from the input's runtime shape.

Fused primitives are decomposed into standard ops: ``standardize`` (layer/group norm core) into
ReduceMean/Sub/Mul/Sqrt, exact ``gelu`` into Erf, a causal ``softmax`` into Where + Softmax; so
the exported models run in any ONNX runtime at opset 13 and later.

>>> import os, tempfile, numpy as np, suanli, suanli.onnx
>>> from suanli import nn
>>> model = nn.Sequential(nn.Linear(3, 2), nn.ReLU())
>>> path = os.path.join(tempfile.mkdtemp(), "m.onnx")
>>> proto = export(model, (suanli.ones(4, 3),), path)
>>> sorted({n.op_type for n in proto.graph.node})
['Add', 'Identity', 'MatMul', 'Relu', 'Transpose']
>>> x = np.ones((4, 3), np.float32)
>>> bool(np.allclose(suanli.onnx.load(path)(x).numpy(), model(suanli.tensor(x)).detach().numpy(), atol=1e-6))
True
"""
from __future__ import annotations

import itertools
import os
from typing import Any, Callable, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..graph import Graph, Node, Sym, Value
from .errors import OnnxError, onnx_error

__all__ = ["export", "graph_to_onnx", "exportable_primitives", "ExportError"]

DEFAULT_OPSET = 17
MIN_OPSET = 13          # ReduceSum/Squeeze/Unsqueeze take axes as inputs from 13 on: one code path
MAX_OPSET = onnx.defs.onnx_opset_version()
INT64_MAX = np.iinfo(np.int64).max
INT64_MIN = np.iinfo(np.int64).min


class ExportError(OnnxError):
    """A traced graph cannot be written as ONNX (an unmapped primitive, a bad argument)."""


# ============================================================================ the emitter
class _Emitter:
    """Accumulates ONNX nodes and initializers; names every IR value it has emitted."""

    def __init__(self, opset: int) -> None:
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.names: dict[int, str] = {}          # IR value id -> ONNX name
        self._count = itertools.count()
        self._int_cache: dict[tuple, str] = {}
        self.batch_source: tuple[str, int] | None = None    # (input name, axis) holding the symbol B
        self._batch: str | None = None

    def fresh(self, hint: str) -> str:
        return f"{hint}_{next(self._count)}"

    def op(self, op_type: str, inputs: Sequence[str], n_out: int = 1, **attrs: Any) -> Any:
        """Append one node; returns its output name (or the list of names when ``n_out > 1``)."""
        outs = [self.fresh(op_type) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=outs[0], **attrs))
        return outs[0] if n_out == 1 else outs

    def const(self, array: Any, hint: str = "const", name: str | None = None) -> str:
        name = name or self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def scalar(self, value: Any, dtype: Any) -> str:
        return self.const(np.asarray(value, dtype=dtype), "scalar")

    def ints(self, values: Sequence[Any]) -> str:
        """A 1-d int64 tensor; entries may be :class:`Sym` (computed from the batch at run time)."""
        values = tuple(values)
        if not any(isinstance(v, Sym) for v in values):
            key = tuple(int(v) for v in values)
            if key not in self._int_cache:
                self._int_cache[key] = self.const(np.array(key, np.int64), "ints")
            return self._int_cache[key]
        parts: list[str] = []
        run: list[int] = []
        for v in values:
            if isinstance(v, Sym):
                if run:
                    parts.append(self.ints(run))
                    run = []
                parts.append(self._sym(v))
            else:
                run.append(int(v))
        if run:
            parts.append(self.ints(run))
        return parts[0] if len(parts) == 1 else self.op("Concat", parts, axis=0)

    def _sym(self, s: Sym) -> str:
        """``[scale * B + offset]`` as a 1-element int64 tensor read from an input's shape."""
        if self._batch is None:
            if self.batch_source is None:
                raise onnx_error("export", f"size {s} depends on a symbol no graph input carries",
                                 hint="export with dynamic_batch=False", cls=ExportError)
            name, axis = self.batch_source
            self._batch = self.op("Gather", [self.op("Shape", [name]), self.ints([axis])], axis=0)
        out = self._batch
        if s.scale != 1:
            out = self.op("Mul", [out, self.ints([s.scale])])
        if s.offset:
            out = self.op("Add", [out, self.ints([s.offset])])
        return out

    def reduce(self, op_type: str, x: str, axes: Sequence[int], keepdims: bool) -> str:
        """Reduce* over ``axes``: attribute before opset 18 (ReduceSum: 13), input after."""
        if op_type == "ReduceSum" or self.opset >= 18:
            return self.op(op_type, [x, self.ints(axes)], keepdims=int(keepdims))
        return self.op(op_type, [x], axes=list(axes), keepdims=int(keepdims))


Rule = Callable[[_Emitter, Node, list[str]], str]
_RULES: dict[str, Rule] = {}


def _rule(*prims: str) -> Callable[[Rule], Rule]:
    def deco(fn: Rule) -> Rule:
        for p in prims:
            _RULES[p] = fn
        return fn
    return deco


def exportable_primitives() -> list[str]:
    """Sorted registry primitives that :func:`export` can write as ONNX.

    >>> {"matmul", "conv2d", "softmax"} <= set(exportable_primitives())
    True
    """
    return sorted(_RULES)


def _dt(node: Node, i: int = 0) -> np.dtype:
    return node.inputs[i].dtype


def _onnx_type(dtype: Any) -> int:
    return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


# ============================================================================ elementwise
_UNARY = {"abs": "Abs", "neg": "Neg", "exp": "Exp", "log": "Log", "sqrt": "Sqrt", "tanh": "Tanh",
          "sigmoid": "Sigmoid", "relu": "Relu", "erf": "Erf", "sin": "Sin", "cos": "Cos",
          "floor": "Floor", "ceil": "Ceil", "sign": "Sign", "reciprocal": "Reciprocal", "atan": "Atan",
          "isnan": "IsNaN", "logical_not": "Not", "copy": "Identity", "hardswish": "HardSwish"}
_BINARY = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "pow": "Pow", "maximum": "Max",
           "minimum": "Min", "eq": "Equal", "lt": "Less", "le": "LessOrEqual", "gt": "Greater",
           "ge": "GreaterOrEqual", "logical_and": "And", "logical_or": "Or", "logical_xor": "Xor",
           "clamp_min": "Max", "clamp_max": "Min", "where": "Where"}
_BITWISE = {"bitwise_and": "BitwiseAnd", "bitwise_or": "BitwiseOr", "bitwise_xor": "BitwiseXor",
            "bitwise_not": "BitwiseNot"}


def _simple(onnx_op: str) -> Rule:
    def rule(e: _Emitter, node: Node, ins: list[str]) -> str:
        return e.op(onnx_op, ins)
    rule.__name__ = f"to_{onnx_op}"
    return rule


for _p, _o in {**_UNARY, **_BINARY}.items():
    _RULES[_p] = _simple(_o)


@_rule(*_BITWISE)
def _bitwise(e: _Emitter, node: Node, ins: list[str]) -> str:
    if e.opset < 18:       # bool tensors: the logical ops are the same thing
        if _dt(node) != np.bool_:
            raise onnx_error("export", f"{node.op} on {_dt(node)} needs opset 18 (Bitwise*)",
                             hint="export with opset=18", cls=ExportError)
        return e.op({"bitwise_and": "And", "bitwise_or": "Or", "bitwise_xor": "Xor",
                     "bitwise_not": "Not"}[node.op], ins)
    return e.op(_BITWISE[node.op], ins)


@_rule("ne")
def _ne(e, node, ins):
    return e.op("Not", [e.op("Equal", ins)])


@_rule("isinf")
def _isinf(e, node, ins):
    return e.op("IsInf", ins)


@_rule("isfinite")
def _isfinite(e, node, ins):
    return e.op("Not", [e.op("Or", [e.op("IsNaN", ins), e.op("IsInf", ins)])])


@_rule("rsqrt")
def _rsqrt(e, node, ins):
    return e.op("Reciprocal", [e.op("Sqrt", ins)])


@_rule("expm1")
def _expm1(e, node, ins):
    return e.op("Sub", [e.op("Exp", ins), e.scalar(1, _dt(node))])


@_rule("log1p")
def _log1p(e, node, ins):
    return e.op("Log", [e.op("Add", [ins[0], e.scalar(1, _dt(node))])])


@_rule("trunc")
def _trunc(e, node, ins):
    return e.op("Mul", [e.op("Sign", ins), e.op("Floor", [e.op("Abs", ins)])])


@_rule("round")
def _round(e, node, ins):
    decimals = node.attrs.get("decimals", 0)
    if not decimals:
        return e.op("Round", ins)
    k = e.scalar(10.0 ** decimals, _dt(node))
    return e.op("Div", [e.op("Round", [e.op("Mul", [ins[0], k])]), k])


@_rule("silu")
def _silu(e, node, ins):
    return e.op("Mul", [ins[0], e.op("Sigmoid", ins)])


@_rule("logsigmoid")
def _logsigmoid(e, node, ins):
    return e.op("Neg", [e.op("Softplus", [e.op("Neg", ins)])])


@_rule("softplus")
def _softplus(e, node, ins):
    # torch: x where beta * x > threshold (linear regime), else log(1 + exp(beta x)) / beta
    dt = _dt(node)
    bx = e.op("Mul", [ins[0], e.scalar(node.attrs["beta"], dt)])
    soft = e.op("Div", [e.op("Softplus", [bx]), e.scalar(node.attrs["beta"], dt)])
    return e.op("Where", [e.op("Greater", [bx, e.scalar(node.attrs["threshold"], dt)]), ins[0], soft])


@_rule("leaky_relu")
def _leaky(e, node, ins):
    return e.op("LeakyRelu", ins, alpha=float(node.attrs["negative_slope"]))


@_rule("hardtanh")
def _hardtanh(e, node, ins):
    dt = _dt(node)
    return e.op("Clip", [ins[0], e.scalar(node.attrs["min_val"], dt), e.scalar(node.attrs["max_val"], dt)])


@_rule("hardsigmoid")
def _hardsigmoid(e, node, ins):
    return e.op("HardSigmoid", ins, alpha=1.0 / 6, beta=0.5)      # torch's relu6(x + 3) / 6


@_rule("elu")
def _elu(e, node, ins):
    a, scale, iscale = (float(node.attrs[k]) for k in ("alpha", "scale", "input_scale"))
    if scale == 1.0 and iscale == 1.0:
        return e.op("Elu", ins, alpha=a)
    dt = _dt(node)      # selu / celu-style scales: scale * (x > 0 ? x : alpha * (exp(x * iscale) - 1))
    neg = e.op("Mul", [e.op("Sub", [e.op("Exp", [e.op("Mul", [ins[0], e.scalar(iscale, dt)])]),
                                    e.scalar(1, dt)]), e.scalar(a, dt)])
    pos = e.op("Where", [e.op("Greater", [ins[0], e.scalar(0, dt)]), ins[0], neg])
    return e.op("Mul", [pos, e.scalar(scale, dt)])


@_rule("gelu")
def _gelu(e, node, ins):
    dt, x = _dt(node), ins[0]
    if node.attrs.get("approximate", "none") == "tanh":
        inner = e.op("Mul", [e.op("Add", [x, e.op("Mul", [e.op("Mul", [e.op("Mul", [x, x]), x]),
                                                          e.scalar(0.044715, dt)])]),
                             e.scalar(np.sqrt(2 / np.pi), dt)])
        phi2 = e.op("Add", [e.op("Tanh", [inner]), e.scalar(1, dt)])
    else:
        phi2 = e.op("Add", [e.op("Erf", [e.op("Mul", [x, e.scalar(np.sqrt(0.5), dt)])]), e.scalar(1, dt)])
    return e.op("Mul", [e.op("Mul", [x, phi2]), e.scalar(0.5, dt)])


@_rule("clamp")
def _clamp(e, node, ins):
    return e.op("Min", [e.op("Max", [ins[0], ins[1]]), ins[2]])


@_rule("masked_fill")
def _masked_fill(e, node, ins):
    return e.op("Where", [ins[1], ins[2], ins[0]])


@_rule("cast")
def _cast(e, node, ins):
    return e.op("Cast", ins, to=_onnx_type(node.attrs["dtype"]))


@_rule("fmod")
def _fmod(e, node, ins):
    return e.op("Mod", ins, fmod=1)


@_rule("remainder")
def _remainder(e, node, ins):
    if _dt(node).kind in "iu":
        return e.op("Mod", ins, fmod=0)
    # float: x - floor(x / y) * y (Python's sign convention; ONNX Mod fmod=0 is integer-only)
    return e.op("Sub", [ins[0], e.op("Mul", [e.op("Floor", [e.op("Div", ins)]), ins[1]])])


@_rule("div_round")
def _div_round(e, node, ins):
    mode = node.attrs["mode"]
    if _dt(node).kind == "f":
        q = e.op("Div", ins)
        return e.op("Floor", [q]) if mode == "floor" else _trunc(e, node, [q])
    if mode == "trunc":
        return e.op("Div", ins)             # ONNX integer Div truncates, as C does
    q = e.op("Div", ins)                    # floor: step down where the remainder's sign differs
    r = e.op("Sub", [ins[0], e.op("Mul", [q, ins[1]])])
    zero = e.scalar(0, _dt(node))
    fix = e.op("And", [e.op("Not", [e.op("Equal", [r, zero])]),
                       e.op("Xor", [e.op("Less", [r, zero]), e.op("Less", [ins[1], zero])])])
    return e.op("Sub", [q, e.op("Cast", [fix], to=_onnx_type(_dt(node)))])


# ============================================================================ reductions
_REDUCE = {"sum": "ReduceSum", "prod": "ReduceProd", "amax": "ReduceMax", "amin": "ReduceMin"}


def _axes(node: Node) -> list[int]:
    axes = node.attrs.get("axes")
    return list(range(len(node.inputs[0].shape))) if axes is None else list(axes)


@_rule(*_REDUCE)
def _reduce(e, node, ins):
    if not _axes(node):
        return e.op("Identity", ins)
    return e.reduce(_REDUCE[node.op], ins[0], _axes(node), node.attrs["keepdims"])


@_rule("all", "any")
def _all_any(e, node, ins):
    as_int = e.op("Cast", ins, to=onnx.TensorProto.INT32)
    red = e.reduce("ReduceMin" if node.op == "all" else "ReduceMax", as_int, _axes(node), node.attrs["keepdims"])
    return e.op("Cast", [red], to=onnx.TensorProto.BOOL)


@_rule("count_nonzero")
def _count_nonzero(e, node, ins):
    nz = e.op("Cast", [e.op("Not", [e.op("Equal", [ins[0], e.scalar(0, _dt(node))])])], to=onnx.TensorProto.INT64)
    return e.reduce("ReduceSum", nz, _axes(node), False)


@_rule("argmax", "argmin")
def _arg(e, node, ins):
    axis, keep = node.attrs["axis"], node.attrs["keepdims"]
    op_type = "ArgMax" if node.op == "argmax" else "ArgMin"
    if axis is None:                     # over the flattened tensor
        flat = e.op("Reshape", [ins[0], e.ints([-1])])
        out = e.op(op_type, [flat], axis=0, keepdims=0)
        if keep:
            out = e.op("Reshape", [out, e.ints([1] * len(node.inputs[0].shape))])
        return out
    return e.op(op_type, ins, axis=int(axis), keepdims=int(keep))


@_rule("cumsum")
def _cumsum(e, node, ins):
    return e.op("CumSum", [ins[0], e.const(np.array(node.attrs["axis"], np.int64))],
                reverse=int(bool(node.attrs.get("reverse", False))))


# ============================================================================ fused / normalisation
@_rule("softmax")
def _softmax(e, node, ins):
    x = ins[0]
    if node.attrs.get("causal"):
        L, S = node.inputs[0].shape[-2:]
        future = np.triu(np.ones((L, S), bool), k=1)       # keys a query may not see (top-left aligned)
        x = e.op("Where", [e.const(future, "causal_mask"), e.scalar(-np.inf, _dt(node)), x])
    return e.op("Softmax", [x], axis=int(node.attrs["dim"]))


@_rule("log_softmax")
def _log_softmax(e, node, ins):
    return e.op("LogSoftmax", ins, axis=int(node.attrs["dim"]))


@_rule("standardize")
def _standardize(e, node, ins):
    # (x - mean) / sqrt(var + eps), biased variance: the core of layer/group/weight norm
    axes, dt = list(node.attrs["axes"]), _dt(node)
    centered = e.op("Sub", [ins[0], e.reduce("ReduceMean", ins[0], axes, True)])
    var = e.reduce("ReduceMean", e.op("Mul", [centered, centered]), axes, True)
    std = e.op("Sqrt", [e.op("Add", [var, e.scalar(node.attrs["eps"], dt)])])
    return e.op("Div", [centered, std])


# ============================================================================ linear algebra, conv, pooling
@_rule("matmul")
def _matmul(e, node, ins):
    return e.op("MatMul", ins)


@_rule("einsum")
def _einsum(e, node, ins):
    return e.op("Einsum", ins, equation=node.attrs["equation"])


def _pads2d(padding: Any) -> list[int]:
    """suanli's ((top, bottom), (left, right)) or (ph, pw) as ONNX's [top, left, bottom, right]."""
    (t, b), (l, r) = [(p, p) if isinstance(p, int) else tuple(p) for p in padding]
    return [int(t), int(l), int(b), int(r)]


@_rule("conv2d")
def _conv2d(e, node, ins):
    a = node.attrs
    return e.op("Conv", ins, strides=list(a["stride"]), pads=_pads2d(a["padding"]),
                dilations=list(a["dilation"]), group=int(a["groups"]), kernel_shape=list(node.inputs[1].shape[2:]))


@_rule("conv2d_input_grad")
def _conv_transpose(e, node, ins):
    a = node.attrs
    pads = _pads2d(a["padding"])
    kh, kw = node.inputs[1].shape[2:]
    ho, wo = node.inputs[0].shape[2:]
    H, W = a["input_size"]
    base = [(n - 1) * s - p0 - p1 + d * (k - 1) + 1
            for n, s, p0, p1, d, k in zip((ho, wo), a["stride"], pads[:2], pads[2:], a["dilation"], (kh, kw))]
    return e.op("ConvTranspose", ins, strides=list(a["stride"]), pads=pads, dilations=list(a["dilation"]),
                group=int(a["groups"]), kernel_shape=[kh, kw],
                output_padding=[int(H) - base[0], int(W) - base[1]])


@_rule("max_pool2d")
def _max_pool(e, node, ins):
    a = node.attrs
    return e.op("MaxPool", ins, kernel_shape=list(a["kernel_size"]), strides=list(a["stride"]),
                pads=_pads2d(a["padding"]), dilations=list(a["dilation"]), ceil_mode=int(a["ceil_mode"]))


@_rule("avg_pool2d_tiles")
def _avg_tiles(e, node, ins):
    k = list(node.attrs["kernel_size"])
    return e.op("AveragePool", ins, kernel_shape=k, strides=k)


@_rule("adaptive_avg_pool2d")
def _adaptive_avg(e, node, ins):
    from ..ops.conv import _averaging_matrix
    oh, ow = node.attrs["output_size"]
    H, W = node.inputs[0].shape[-2:]
    if (oh, ow) == (1, 1) and len(node.inputs[0].shape) == 4:
        return e.op("GlobalAveragePool", ins)
    dt = _dt(node)   # A_h @ x @ A_w.T with the same averaging matrices as the primitive
    y = e.op("MatMul", [ins[0], e.const(_averaging_matrix(W, ow, dt).T, "avg_w")])
    return e.op("MatMul", [e.const(_averaging_matrix(H, oh, dt), "avg_h"), y])


# ============================================================================ shape ops
@_rule("reshape")
def _reshape(e, node, ins):
    shape = list(node.attrs["shape"])
    if sum(isinstance(d, Sym) for d in shape) == 1 and -1 not in shape:
        shape = [-1 if isinstance(d, Sym) else d for d in shape]     # one symbolic size: let ONNX infer it
    return e.op("Reshape", [ins[0], e.ints(shape)])


@_rule("expand")
def _expand(e, node, ins):
    return e.op("Expand", [ins[0], e.ints(node.attrs["shape"])])


@_rule("permute")
def _permute(e, node, ins):
    return e.op("Transpose", ins, perm=list(node.attrs["perm"]))


@_rule("slice")
def _slice(e, node, ins):
    # one Slice for every ranged/selected dim, Squeeze the selected ones, Unsqueeze the new (None) ones
    starts, ends, axes, steps, squeeze, unsqueeze = [], [], [], [], [], []
    d = out = 0
    for entry in node.attrs["key"]:
        if entry is None:
            unsqueeze.append(out)
            out += 1
            continue
        if isinstance(entry, tuple):
            start, stop, step = entry
            out += 1
        else:
            start, stop, step = entry, entry + 1, 1
            squeeze.append(d)
        if not (start == 0 and stop == node.inputs[0].shape[d] and step == 1):
            starts.append(start), ends.append(stop), axes.append(d), steps.append(step)
        d += 1
    x = ins[0]
    if axes:
        x = e.op("Slice", [x, e.ints(starts), e.ints(ends), e.ints(axes), e.ints(steps)])
    if squeeze:
        x = e.op("Squeeze", [x, e.ints(squeeze)])
    if unsqueeze:
        x = e.op("Unsqueeze", [x, e.ints(unsqueeze)])
    return x if x != ins[0] else e.op("Identity", ins)


@_rule("cat")
def _cat(e, node, ins):
    return e.op("Concat", ins, axis=int(node.attrs["axis"]))


@_rule("pad")
def _pad(e, node, ins):
    pads = node.attrs["pads"]
    flat = [lo for lo, _ in pads] + [hi for _, hi in pads]
    return e.op("Pad", [ins[0], e.ints(flat), e.scalar(node.attrs["value"], _dt(node))], mode="constant")


@_rule("flip")
def _flip(e, node, ins):
    dims = list(node.attrs["dims"])
    n = len(dims)
    return e.op("Slice", [ins[0], e.ints([-1] * n), e.ints([INT64_MIN] * n), e.ints(dims), e.ints([-1] * n)])


@_rule("roll")
def _roll(e, node, ins):
    x = ins[0]
    for shift, dim in zip(node.attrs["shifts"], node.attrs["dims"]):
        n = node.inputs[0].shape[dim]
        s = int(shift) % n if n else 0
        if s:
            tail = e.op("Slice", [x, e.ints([n - s]), e.ints([n]), e.ints([dim])])
            head = e.op("Slice", [x, e.ints([0]), e.ints([n - s]), e.ints([dim])])
            x = e.op("Concat", [tail, head], axis=int(dim))
    return x if x != ins[0] else e.op("Identity", ins)


@_rule("tril", "triu")
def _trilu(e, node, ins):
    return e.op("Trilu", [ins[0], e.const(np.array(node.attrs["k"], np.int64))], upper=int(node.op == "triu"))


# ============================================================================ indexing
@_rule("gather")
def _gather(e, node, ins):
    return e.op("GatherElements", ins, axis=int(node.attrs["dim"]))


@_rule("scatter", "scatter_add")
def _scatter(e, node, ins):
    extra = {"reduction": "add"} if node.op == "scatter_add" else {}
    if extra and e.opset < 16:
        raise onnx_error("export", "scatter_add needs opset 16 (ScatterElements reduction='add')",
                         hint="export with opset=16 or later", cls=ExportError)
    return e.op("ScatterElements", ins, axis=int(node.attrs["dim"]), **extra)


@_rule("index")
def _index(e, node, ins):
    adv = node.attrs["adv"]
    pos = [i for i, a in enumerate(adv) if a >= 0]
    x, idx = ins[0], [ins[1 + adv[p]] for p in pos]
    if len(pos) == 1:                        # x[:, ..., idx]: one Gather (negative indices wrap, as in ONNX)
        return e.op("Gather", [x, idx[0]], axis=pos[0])
    if pos != list(range(pos[0], pos[-1] + 1)):
        raise onnx_error("export", f"index with non-adjacent index tensors at dims {pos}",
                         hint="index one dim at a time, or make the indexed dims adjacent", cls=ExportError)
    # adjacent index tensors: move their dims to the front, GatherND with the stacked indices, move back
    ndim = len(node.inputs[0].shape)
    front = pos + [i for i in range(ndim) if i not in pos]
    xt = x if front == list(range(ndim)) else e.op("Transpose", [x], perm=front)
    shapes = [node.inputs[1 + adv[p]].shape for p in pos]
    b = np.broadcast_shapes(*shapes)
    stacked = e.op("Concat", [e.op("Unsqueeze", [e.op("Expand", [i, e.ints(b)]), e.ints([-1])]) for i in idx],
                   axis=-1)
    y = e.op("GatherND", [xt, stacked])     # (b..., rest dims in original order)
    if pos[0] == 0:
        return y
    nb = len(b)                             # put the broadcast dims back where the first index was
    perm = list(range(nb, nb + pos[0])) + list(range(nb)) + list(range(nb + pos[0], nb + ndim - len(pos)))
    return e.op("Transpose", [y], perm=perm)


# ============================================================================ the graph
def _value_info(name: str, v: Value, sym_names: dict[str, str]) -> onnx.ValueInfoProto:
    dims = [sym_names.get(d.name, d.name) if isinstance(d, Sym) and d.scale == 1 and not d.offset
            else (str(d) if isinstance(d, Sym) else int(d)) for d in v.shape]
    return helper.make_tensor_value_info(name, _onnx_type(v.dtype), dims)


def unmapped_report(graph: Graph) -> list[str]:
    """One line per node whose primitive has no ONNX mapping (empty when everything maps)."""
    lines = []
    for i, n in enumerate(graph.nodes):
        if n.op != "constant" and n.op not in _RULES:
            attrs = ", ".join(f"{k}={v!r}" for k, v in n.attrs.items())
            producers = [v.producer.op if v.producer is not None else (v.name or "input") for v in n.inputs]
            lines.append(f"node {i}: {n.op}({', '.join(v.type_str for v in n.inputs)}{', ' if attrs else ''}"
                         f"{attrs}) -> {', '.join(v.type_str for v in n.outputs)}; "
                         f"inputs from: {', '.join(producers) or '-'}")
    return lines


def graph_to_onnx(graph: Graph, *, num_args: int, input_names: Sequence[str], output_names: Sequence[str],
                  opset: int = DEFAULT_OPSET, name: str = "suanli") -> onnx.ModelProto:
    """Write an IR graph as an ONNX ModelProto: the first ``num_args`` inputs are graph inputs, the
    rest (parameters/buffers, named by ``graph.meta['state_names']``) become initializers whose
    values are taken from ``graph.meta['state_values']``."""
    missing = unmapped_report(graph)
    if missing:
        prims = sorted({n.op for n in graph.nodes if n.op != "constant" and n.op not in _RULES})
        raise onnx_error("export", f"{len(prims)} primitive(s) have no ONNX mapping: {', '.join(prims)}",
                         actual="\n    " + "\n    ".join(missing),
                         hint="export the model in eval mode without backward/in-place ops, or add a rule "
                              "in suanli/onnx/export.py (see exportable_primitives())", cls=ExportError)
    e = _Emitter(opset)
    state_names = list(graph.meta.get("state_names", []))
    state_values = list(graph.meta.get("state_values", []))
    inputs = []
    used: set[str] = set()
    for i, v in enumerate(graph.inputs):
        if i < num_args:
            nm = input_names[i]
            e.names[v.id] = nm
            inputs.append(_value_info(nm, v, {"B": "batch"}))
            for axis, d in enumerate(v.shape):
                if isinstance(d, Sym) and d.scale == 1 and not d.offset and e.batch_source is None:
                    e.batch_source = (nm, axis)
        else:
            nm = state_names[i - num_args] if i - num_args < len(state_names) else f"state{i}"
            while nm in used:
                nm += "_"
            e.names[v.id] = e.const(np.asarray(state_values[i - num_args]), name=nm)
        used.add(e.names[v.id])
    for n in graph.nodes:
        if n.op == "constant":
            e.names[n.outputs[0].id] = e.const(np.asarray(n.attrs["value"]), "const")
            continue
        ins = [e.names[v.id] for v in n.inputs]
        e.names[n.outputs[0].id] = _RULES[n.op](e, n, ins)
    outputs = []
    for nm, v in zip(output_names, graph.outputs):
        e.nodes.append(helper.make_node("Identity", [e.names[v.id]], [nm], name=f"output_{nm}"))
        outputs.append(_value_info(nm, v, {"B": "batch"}))
    read = {i for n in e.nodes for i in n.input}          # unread state (BatchNorm's step count) is dropped
    g = helper.make_graph(e.nodes, name, inputs, outputs, initializer=[t for t in e.initializers if t.name in read])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="suanli")
    model.ir_version = min(model.ir_version, 8 if opset <= 17 else model.ir_version)   # onnxruntime-friendly
    return model


# ============================================================================ export
def _trace_for_export(fn: Callable, args: tuple, named_state: list, dynamic_batch: bool) -> tuple[Any, Graph]:
    from ..autograd.grad_mode import no_grad
    from ..compiler.compile import _grow
    from ..graph import trace
    from ..graph.dynamic import generalize
    with no_grad():
        traced = trace(fn, args, state_tensors=named_state)
        if not dynamic_batch:
            return traced, traced.graph
        batch = {a.shape[0] for a in args if a.ndim}
        if len(batch) != 1 or 0 in batch:
            raise onnx_error("export", "dynamic_batch needs every example input to share a non-zero dim 0",
                             actual=f"shapes {[tuple(a.shape) for a in args]}", cls=ExportError)
        try:
            other = trace(fn, tuple(_grow(a) for a in args), state_tensors=named_state)
        except Exception as exc:  # noqa: BLE001 - the model may not accept another batch size
            raise onnx_error("export", "the model is not batch-polymorphic, so dim 0 cannot be made symbolic",
                             actual=f"tracing at batch size {batch.pop() + 1} failed: {type(exc).__name__}: "
                                    f"{str(exc).splitlines()[0]}",
                             hint="export with dynamic_batch=False (one fixed batch size)", cls=ExportError) from exc
    graph, why = generalize(traced.graph, other.graph, batch.pop())
    if graph is None:
        raise onnx_error("export", "the model is not batch-polymorphic, so dim 0 cannot be made symbolic",
                         actual=why, hint="export with dynamic_batch=False (one fixed batch size)", cls=ExportError)
    return traced, graph


def export(model_or_fn: Any, example_inputs: Any, path: str | os.PathLike[str] | None = None, *,
           opset: int = DEFAULT_OPSET, input_names: Sequence[str] | None = None,
           output_names: Sequence[str] | None = None, dynamic_batch: bool = False) -> onnx.ModelProto:
    """Trace ``model_or_fn(*example_inputs)`` and write it to ``path`` as ONNX; returns the ModelProto.

    A :class:`suanli.nn.Module` is traced in eval mode (its training flag is restored afterwards);
    its parameters and buffers become initializers named by their state-dict paths. The function
    may return one tensor or a tuple/list of tensors. ``opset`` may be 13 to the newest the
    installed ``onnx`` knows. The model is validated with ``onnx.checker`` before it is written.
    """
    from ..nn.module import Module
    from ..tensor import Tensor, _wrap
    if not MIN_OPSET <= int(opset) <= MAX_OPSET:
        raise onnx_error("export", f"opset {opset} is not supported", expect=f"{MIN_OPSET}..{MAX_OPSET}",
                         actual=str(opset), hint=f"use opset={DEFAULT_OPSET}", cls=ExportError)
    if isinstance(example_inputs, (Tensor, np.ndarray)):
        example_inputs = (example_inputs,)
    args = tuple(a if isinstance(a, Tensor) else _wrap(np.asarray(a)) if isinstance(a, np.ndarray) else a
                 for a in example_inputs)
    bad = [f"#{i}: {type(a).__name__}" for i, a in enumerate(args) if not isinstance(a, Tensor)]
    if bad:
        raise onnx_error("export", "example_inputs must be tensors or NumPy arrays", actual=", ".join(bad),
                         hint="pass non-tensor settings through a closure: export(lambda x: f(x, k=3), (x,), path)",
                         cls=ExportError)
    named_state: list[tuple[str, Tensor]] = []
    modules: list[tuple[Module, bool]] = []
    if isinstance(model_or_fn, Module):
        named_state = list(model_or_fn.named_parameters()) + list(model_or_fn.named_buffers())
        modules = [(m, m.training) for m in model_or_fn.modules()]
        model_or_fn.eval()
    try:
        traced, graph = _trace_for_export(model_or_fn, args, named_state, dynamic_batch)
    finally:
        for m, was_training in modules:
            m.training = was_training
    n_out = len(graph.outputs)
    input_names = list(input_names) if input_names is not None else (
        ["input"] if len(args) == 1 else [f"input{i}" for i in range(len(args))])
    output_names = list(output_names) if output_names is not None else (
        ["output"] if n_out == 1 else [f"output{i}" for i in range(n_out)])
    for what, names, n in (("input_names", input_names, len(args)), ("output_names", output_names, n_out)):
        if len(names) != n or len(set(names)) != n:
            raise onnx_error("export", f"{what} must name each of the {n} {what[:-6]}s once",
                             actual=str(names), cls=ExportError)
    graph.meta["state_values"] = [t._data for t in traced.state]
    model = graph_to_onnx(graph, num_args=traced.num_args, input_names=input_names, output_names=output_names,
                          opset=int(opset), name=type(model_or_fn).__name__ if isinstance(model_or_fn, Module)
                          else getattr(model_or_fn, "__name__", "suanli"))
    try:
        onnx.checker.check_model(model, full_check=model.ByteSize() < 2 ** 31 - 2 ** 20)
    except onnx.checker.ValidationError as exc:   # pragma: no cover - a bug in a rule above
        raise onnx_error("export", "onnx.checker rejected the exported model (a bug in suanli's export)",
                         actual=str(exc).splitlines()[0], cls=ExportError) from exc
    if path is not None:
        from ..io.atomic import atomic_write
        with atomic_write(path, "wb") as f:
            f.write(model.SerializeToString())
    return model
