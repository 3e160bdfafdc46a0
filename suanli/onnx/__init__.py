"""ONNX for suanli: an op table keyed by opset, a graph runner, ``load`` and a conformance backend.

Each ONNX op is a function on suanli Tensors built from suanli ops, so a loaded model is
differentiable and traceable like any suanli code. See ``docs/onnx.md``.

>>> import suanli.onnx
>>> "MatMul" in suanli.onnx.supported_ops()
True
"""
from .errors import OnnxError, OnnxInputError, OnnxOutputError, UnsupportedOpError
from .export import ExportError, export, exportable_primitives
from .load import OnnxModel, load
from .table import supported_ops
from .to_graph import to_graph

__all__ = ["load", "OnnxModel", "supported_ops", "OnnxError", "OnnxInputError", "OnnxOutputError",
           "UnsupportedOpError", "export", "ExportError", "exportable_primitives", "to_graph"]
