"""``torch.nn.functional``-compatible ops, written as composites of primitives."""
from __future__ import annotations

__all__: list[str] = []
