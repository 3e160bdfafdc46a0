"""Linear algebra: batched broadcasting matmul, einsum."""
from __future__ import annotations

__all__: list[str] = []
