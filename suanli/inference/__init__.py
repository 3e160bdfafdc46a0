"""Inference engine: fast CPU kernels and the Session that plans and runs a graph.

:mod:`suanli.inference.conv_kernels` -- Winograd F(4x4, 3x3) and direct depthwise convolution kernels
(forward and both gradients; ``conv2d`` routes to them) and the per-layer policy
:func:`~suanli.inference.conv_kernels.choose_conv_kernel`; :mod:`suanli.inference.session` -- the Session.
"""
from __future__ import annotations

from typing import Any

from .conv_kernels import choose_conv_kernel

__all__ = ["Session", "choose_conv_kernel"]


def __getattr__(name: str) -> Any:
    # Session pulls in the compiler and ONNX; conv2d imports this package on its first call,
    # so Session is imported on first use rather than here
    if name == "Session":
        from .session import Session
        return Session
    raise AttributeError(f"module 'suanli.inference' has no attribute {name!r}")
