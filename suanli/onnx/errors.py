"""Errors of the ONNX layer: each names the file or node, what was expected, what was given, a remedy."""
from __future__ import annotations

from ..errors import SuanliError


class OnnxError(SuanliError, ValueError):
    """A model file, graph, node or input that suanli cannot run as given."""


class UnsupportedOpError(OnnxError, NotImplementedError):
    """The model uses op types (or domains/opsets) the op table lacks; raised before anything runs."""


class OnnxInputError(OnnxError):
    """Inputs passed to a model do not match its declared names, shapes or dtypes."""


class OnnxOutputError(OnnxError):
    """What a model computed disagrees with its declared output shapes/dtypes."""


def onnx_error(where: str, message: str, *, expect: str | None = None, actual: str | None = None,
               hint: str | None = None, cls: type[OnnxError] = OnnxError) -> OnnxError:
    """Build an error in the house format (see :func:`suanli.errors.op_error`).

    >>> print(onnx_error("model.onnx", "not an ONNX model", hint="check the path"))
    model.onnx: not an ONNX model
      help: check the path
    """
    lines = [f"{where}: {message}"]
    if expect:
        lines.append(f"  Expect: {expect}")
    if actual:
        lines.append(f"  Actual: {actual}")
    if hint:
        lines.append(f"  help: {hint}")
    return cls("\n".join(lines))
