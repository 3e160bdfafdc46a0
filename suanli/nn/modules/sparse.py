"""Embedding: a lookup table of ``num_embeddings`` vectors.

>>> import suanli
>>> from suanli import nn
>>> emb = nn.Embedding(10, 3)
>>> emb(suanli.tensor([[1, 2], [3, 4]])).shape
(2, 2, 3)
"""
from __future__ import annotations

from typing import Any

from ... import creation
from ...errors import op_error
from ...tensor import Tensor
from .. import functional as F
from .. import init
from ..module import Module
from ..parameter import Parameter

__all__ = ["Embedding"]


class Embedding(Module):
    """Rows of ``weight`` (num_embeddings, embedding_dim) picked by integer indices; N(0, 1) init."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 max_norm: float | None = None, norm_type: float = 2.0, scale_grad_by_freq: bool = False,
                 sparse: bool = False, _weight: Tensor | None = None, _freeze: bool = False,
                 dtype: Any = None) -> None:
        super().__init__()
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise op_error("Embedding", f"padding_idx {padding_idx} is outside [-{num_embeddings}, "
                                            f"{num_embeddings})")
            padding_idx %= num_embeddings
        if scale_grad_by_freq or sparse:
            raise op_error("Embedding", "scale_grad_by_freq and sparse gradients are not supported",
                           hint="leave them False (dense gradients)")
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.padding_idx, self.max_norm, self.norm_type = padding_idx, max_norm, norm_type
        if _weight is None:
            self.weight = Parameter(creation.empty(num_embeddings, embedding_dim, dtype=dtype),
                                    requires_grad=not _freeze)
            self.reset_parameters()
        else:
            if tuple(_weight.shape) != (num_embeddings, embedding_dim):
                raise op_error("Embedding", "_weight has the wrong shape",
                               expect=f"({num_embeddings}, {embedding_dim})", actual=f"{tuple(_weight.shape)}")
            self.weight = Parameter(_weight, requires_grad=not _freeze)

    def reset_parameters(self) -> None:
        init.normal_(self.weight)
        if self.padding_idx is not None:
            self.weight._data[self.padding_idx] = 0

    @classmethod
    def from_pretrained(cls, embeddings: Tensor, freeze: bool = True, padding_idx: int | None = None,
                        max_norm: float | None = None, norm_type: float = 2.0) -> Embedding:
        if embeddings.ndim != 2:
            raise op_error("Embedding.from_pretrained", "embeddings must be 2-D",
                           actual=f"shape {tuple(embeddings.shape)}")
        rows, cols = embeddings.shape
        return cls(rows, cols, padding_idx, max_norm, norm_type, _weight=embeddings, _freeze=freeze)

    def forward(self, input: Tensor) -> Tensor:
        return F.embedding(input, self.weight, self.padding_idx, self.max_norm, self.norm_type)

    def extra_repr(self) -> str:
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            s += f", padding_idx={self.padding_idx}"
        return s
