"""Inference engine: fast CPU kernels and (later) the Session that plans and runs a graph.

Today: :mod:`suanli.inference.conv_kernels` -- Winograd and direct depthwise convolution kernels and
the per-layer policy :func:`~suanli.inference.conv_kernels.choose_conv_kernel`.
"""
from __future__ import annotations

from .conv_kernels import choose_conv_kernel

__all__ = ["choose_conv_kernel"]
