"""``suanli.onnx.load``: read an ONNX model (path, bytes or ModelProto) into a callable model.

Everything that can be checked before running is checked at load time: the file parses, the graph
is well formed, and every op is in the op table (all unsupported ops listed at once). Calls check
the inputs' names, dtypes and shapes against the declared ones, and the outputs against theirs.

>>> import numpy as np, suanli
>>> from onnx import helper, TensorProto as T
>>> g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
...                       [helper.make_tensor_value_info("x", T.FLOAT, ["N", 2])],
...                       [helper.make_tensor_value_info("y", T.FLOAT, ["N", 2])])
>>> m = load(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
>>> m(x=np.array([[-1.0, 2.0]], np.float32))
tensor([[0., 2.]])
"""
from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np
import onnx
from google.protobuf.message import DecodeError

from ..tensor import Tensor, _wrap
from .errors import OnnxError, OnnxInputError, OnnxOutputError, onnx_error
from .runner import GraphRunner, check_supported, describe, opset_map


def _read(source: Any) -> tuple[onnx.ModelProto, str]:
    if isinstance(source, onnx.ModelProto):
        return source, f"model {source.graph.name!r}"
    if isinstance(source, (bytes, bytearray)):
        where = "<bytes>"
        data = bytes(source)
        base = None
    else:
        where = os.fspath(source)
        if not os.path.exists(where):
            raise onnx_error(where, "no such file", hint="check the path")
        with open(where, "rb") as f:
            data = f.read()
        base = os.path.dirname(os.path.abspath(where))
    if not data:
        raise onnx_error(where, "the file is empty, not an ONNX model")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise onnx_error(where, "is not a valid ONNX model (protobuf parse failed; truncated or another format?)",
                         actual=f"{len(data)} bytes, starting {data[:16]!r}; {exc}",
                         hint="re-export the model; `python -c 'import onnx; onnx.checker.check_model(PATH)'` "
                              "explains protobuf problems") from None
    if not model.graph.node and not model.graph.output or not model.opset_import:
        raise onnx_error(where, "parsed, but holds no ONNX graph (no opset_import, nodes or outputs)",
                         actual=f"{len(data)} bytes, starting {data[:16]!r}",
                         hint="is this really an .onnx file? (a protobuf of another kind parses as empty)")
    if base is not None and any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        from onnx.external_data_helper import load_external_data_for_model
        load_external_data_for_model(model, base)
    return model, where


def _declared(vi: onnx.ValueInfoProto) -> tuple[np.dtype | None, tuple[Any, ...] | None]:
    """(dtype, shape with None/str for free dims) of a tensor-typed graph input/output."""
    t = vi.type
    if not t.HasField("tensor_type"):
        return None, None
    tt = t.tensor_type
    dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)) if tt.elem_type else None
    if not tt.HasField("shape"):
        return dtype, None
    dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim)
    return dtype, dims


class OnnxModel:
    """A loaded ONNX model; call it with inputs by name or position, get Tensors back."""

    def __init__(self, model: onnx.ModelProto, where: str = "model") -> None:
        self.proto = model
        self.where = where
        self.opsets = opset_map(model.opset_import)
        check_supported(model.graph, self.opsets, where)
        self.runner = GraphRunner(model.graph, self.opsets)
        init = {i.name for i in model.graph.initializer}
        self.inputs = [vi for vi in model.graph.input if vi.name not in init]
        self.outputs = list(model.graph.output)

    @property
    def input_names(self) -> list[str]:
        return [vi.name for vi in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [vi.name for vi in self.outputs]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run; returns one Tensor for a single output, else a tuple (sequences as lists)."""
        outs = self.run(self._bind(args, kwargs))
        return outs[0] if len(outs) == 1 else tuple(outs)

    def run(self, feeds: Mapping[str, Any], check_outputs: bool = True) -> list[Any]:
        """Run on ``{name: array/Tensor}``; returns the outputs in declared order."""
        dims: dict[str, int] = {}
        values = {vi.name: self._check_input(vi, feeds[vi.name], dims) for vi in self.inputs if vi.name in feeds}
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise onnx_error(self.where, "missing inputs", expect=f"inputs {self.input_names}",
                             actual=f"given {sorted(feeds)}", hint=f"pass {missing}", cls=OnnxInputError)
        outs = self.runner.run(values)
        if check_outputs:
            for vi, out in zip(self.outputs, outs):
                self._check_output(vi, out, dims)
        return outs

    def _bind(self, args: tuple, kwargs: dict) -> dict[str, Any]:
        names = self.input_names
        if len(args) > len(names):
            raise onnx_error(self.where, "too many positional inputs", expect=f"at most {len(names)}: {names}",
                             actual=f"{len(args)} given", cls=OnnxInputError)
        feeds = dict(zip(names, args))
        unknown = [k for k in kwargs if k not in names]
        if unknown:
            raise onnx_error(self.where, f"unknown input name(s) {unknown}", expect=f"one of {names}",
                             actual=f"given {sorted(kwargs)}", hint="check the spelling of the input names",
                             cls=OnnxInputError)
        feeds.update(kwargs)
        return feeds

    def _check_input(self, vi: onnx.ValueInfoProto, value: Any, dims: dict[str, int]) -> Any:
        if value is None:
            return value
        if isinstance(value, list):     # an ONNX sequence
            return [v if isinstance(v, Tensor) else _wrap(np.asarray(v)) for v in value]
        t = value if isinstance(value, Tensor) else _wrap(np.asarray(value))
        dtype, shape = _declared(vi)
        if dtype is not None and t.dtype != dtype:
            raise onnx_error(self.where, f"input {vi.name!r} has the wrong dtype", expect=str(dtype),
                             actual=f"{t.dtype} with shape {tuple(t.shape)}",
                             hint=f"convert it, e.g. x.astype(np.{dtype})", cls=OnnxInputError)
        if shape is not None:
            self._match_shape(f"input {vi.name!r}", shape, tuple(t.shape), dims, OnnxInputError)
        return t

    def _check_output(self, vi: onnx.ValueInfoProto, value: Any, dims: dict[str, int]) -> None:
        if not isinstance(value, Tensor):
            return
        dtype, shape = _declared(vi)
        if dtype is not None and value.dtype != dtype:
            raise onnx_error(self.where, f"output {vi.name!r} was computed as {value.dtype}, the model declares {dtype}",
                             expect=str(dtype), actual=describe(value),
                             hint="the model's output type annotation is wrong, or an op misbehaved", cls=OnnxOutputError)
        if shape is not None:
            self._match_shape(f"output {vi.name!r}", shape, tuple(value.shape), dims, OnnxOutputError)

    def _match_shape(self, what: str, declared: tuple, actual: tuple, dims: dict[str, int], cls) -> None:
        ok = len(declared) == len(actual)
        if ok:
            for d, a in zip(declared, actual):
                if isinstance(d, int) and d > 0 and d != a:
                    ok = False
                elif isinstance(d, str):
                    if dims.setdefault(d, a) != a:
                        ok = False
        if not ok:
            shown = tuple(d if d is not None else "?" for d in declared)
            bound = {k: v for k, v in dims.items() if k in declared}
            raise onnx_error(self.where, f"{what} has the wrong shape", expect=f"{shown}" + (f" with {bound}" if bound else ""),
                             actual=str(actual), hint="inputs must match the model's declared shapes"
                             if cls is OnnxInputError else "the model's declared output shape disagrees with what "
                             "it computes; fix the annotation (suanli does not reshape silently)", cls=cls)


def load(source: Any) -> OnnxModel:
    """Load an ONNX model from a path, bytes or a ``ModelProto``; unsupported ops raise at once."""
    model, where = _read(source)
    try:
        return OnnxModel(model, where)
    except OnnxError:
        raise
