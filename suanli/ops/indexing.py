"""Indexing primitives: basic/advanced getitem, index_put (setitem), gather, scatter_add..."""
from __future__ import annotations

__all__: list[str] = []
