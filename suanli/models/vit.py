"""Vision Transformer (Dosovitskiy et al. 2020), with the ViT-22B changes (Dehghani et al. 2023) as switches.

An image is cut into ``patch_size`` x ``patch_size`` patches, each linearly embedded (a Conv2d with
stride = kernel = patch size), a learned class token is prepended, learned position embeddings are
added, and pre-norm transformer blocks follow; the class token's final state is classified.
Module and state-dict names follow timm's ``VisionTransformer`` (``patch_embed.proj``, ``cls_token``,
``pos_embed``, ``blocks.0.norm1``, ``blocks.0.attn.qkv``, ``blocks.0.mlp.fc1``, ``norm``, ``head``).

The ViT-22B options (each off by default, giving the original ViT):

* ``parallel_block``: attention and MLP read the *same* LayerNorm'd input and are added together,
  ``y = x + attn(ln(x)) + mlp(ln(x))`` (one norm per block, ``norm1``; no ``norm2``);
* ``qk_layernorm``: LayerNorm over each head's queries and keys before their dot product
  (``attn.q_norm``, ``attn.k_norm``), which kept ViT-22B's attention logits from exploding;
* ``qkv_bias=False``: no bias in the query/key/value projection.

>>> import suanli
>>> from suanli.models import ViT, ViTConfig
>>> _ = suanli.manual_seed(0)
>>> cfg = ViTConfig(image_size=32, patch_size=8, num_classes=10, dim=64, depth=2, num_heads=4,
...                 parallel_block=True, qk_layernorm=True, qkv_bias=False)
>>> model = ViT(cfg)
>>> model(suanli.randn(2, 3, 32, 32)).shape
(2, 10)
>>> model.pos_embed.shape          # 16 patches + the class token
(1, 17, 64)
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import creation
from .. import nn
from ..errors import ShapeError
from ..nn import functional as F
from ..ops import cat
from ..tensor import Tensor

__all__ = ["ViTConfig", "ViT", "PatchEmbed", "Attention", "MLP", "Block"]


@dataclass
class ViTConfig:
    """Hyper-parameters of a ViT (defaults: ViT-B/16 at 224x224 for 1000 classes)."""

    image_size: int = 224
    patch_size: int = 16
    in_channels: int = 3
    num_classes: int = 1000
    dim: int = 768               # embedding width
    depth: int = 12              # number of blocks
    num_heads: int = 12
    mlp_ratio: float = 4.0       # MLP hidden width = mlp_ratio * dim
    dropout: float = 0.0
    norm_eps: float = 1e-6       # LayerNorm eps (timm's and big_vision's ViTs)
    # ViT-22B switches
    parallel_block: bool = False
    qk_layernorm: bool = False
    qkv_bias: bool = True

    def __post_init__(self) -> None:
        for name in ("image_size", "patch_size", "in_channels", "num_classes", "dim", "depth", "num_heads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"ViTConfig: {name} must be a positive int, got {value!r}")
        if self.image_size % self.patch_size:
            lower = self.image_size - self.image_size % self.patch_size
            raise ValueError(f"ViTConfig: image_size {self.image_size} is not divisible by patch_size "
                             f"{self.patch_size}, so the patches would not tile the image\n  help: use "
                             f"image_size={lower or self.patch_size} or {lower + self.patch_size} (resize or crop "
                             f"the images), or a patch_size that divides {self.image_size}")
        if self.dim % self.num_heads:
            raise ValueError(f"ViTConfig: dim ({self.dim}) must be divisible by num_heads ({self.num_heads})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ViTConfig: dropout must be in [0, 1), got {self.dropout}")

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @classmethod
    def tiny(cls, **overrides) -> ViTConfig:
        """ViT-Ti/16 (DeiT-tiny's shape): width 192, 12 blocks of 3 heads."""
        return cls(**{"dim": 192, "depth": 12, "num_heads": 3, **overrides})

    @classmethod
    def base(cls, **overrides) -> ViTConfig:
        """ViT-B/16: width 768, 12 blocks of 12 heads."""
        return cls(**overrides)

    @classmethod
    def vit22b(cls, **overrides) -> ViTConfig:
        """ViT-22B's shape and switches: patch 14, width 6144, 48 blocks of 48 heads, MLP 24576,
        parallel blocks, QK LayerNorm, no QKV bias (22 billion parameters: a config, not for NumPy)."""
        return cls(**{"patch_size": 14, "dim": 6144, "depth": 48, "num_heads": 48, "mlp_ratio": 4.0,
                      "parallel_block": True, "qk_layernorm": True, "qkv_bias": False, **overrides})


class PatchEmbed(nn.Module):
    """(B, C, H, W) -> (B, N, dim): non-overlapping patches, each embedded by one linear map."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.image_size, self.patch_size = config.image_size, config.patch_size
        self.proj = nn.Conv2d(config.in_channels, config.dim, kernel_size=config.patch_size,
                              stride=config.patch_size)

    def forward(self, x: Tensor) -> Tensor:
        x = self.proj(x)                          # (B, dim, H/p, W/p)
        x = x.flatten(2)                          # (B, dim, N)
        return x.transpose(1, 2)                  # (B, N, dim)


class Attention(nn.Module):
    """Multi-head self-attention over all tokens (no mask), optionally with QK LayerNorm."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.num_heads = config.num_heads
        self.head_dim = config.dim // config.num_heads
        self.qkv = nn.Linear(config.dim, 3 * config.dim, bias=config.qkv_bias)
        if config.qk_layernorm:                   # one LayerNorm over head_dim, shared by the heads
            self.q_norm = nn.LayerNorm(self.head_dim, eps=config.norm_eps)
            self.k_norm = nn.LayerNorm(self.head_dim, eps=config.norm_eps)
        else:
            self.q_norm = self.k_norm = None
        self.proj = nn.Linear(config.dim, config.dim)
        self.proj_drop = nn.Dropout(config.dropout)
        self.dropout = config.dropout

    def forward(self, x: Tensor) -> Tensor:
        B, N, C = x.shape                         # batch, tokens, width
        qkv = self.qkv(x).view(B, N, 3, self.num_heads, self.head_dim)        # (B, N, 3, nh, hd)
        qkv = qkv.permute(2, 0, 3, 1, 4)                                      # (3, B, nh, N, hd)
        q, k, v = qkv[0], qkv[1], qkv[2]                                      # each (B, nh, N, hd)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(B, N, C)                                # (B, N, nh*hd) = (B, N, C)
        return self.proj_drop(self.proj(y))


class MLP(nn.Module):
    """dim -> mlp_ratio * dim -> dim with an exact GELU."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        hidden = int(config.dim * config.mlp_ratio)
        self.fc1 = nn.Linear(config.dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, config.dim)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.act(self.fc1(x))))


class Block(nn.Module):
    """Pre-norm block: sequential ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``, or with
    ``parallel_block`` ``x + attn(norm1(x)) + mlp(norm1(x))`` (ViT-22B; one norm, one residual add)."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.parallel = config.parallel_block
        self.norm1 = nn.LayerNorm(config.dim, eps=config.norm_eps)
        self.attn = Attention(config)
        self.norm2 = None if self.parallel else nn.LayerNorm(config.dim, eps=config.norm_eps)
        self.mlp = MLP(config)

    def forward(self, x: Tensor) -> Tensor:
        if self.parallel:
            h = self.norm1(x)
            return x + self.attn(h) + self.mlp(h)
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """Vision Transformer: (B, in_channels, image_size, image_size) -> (B, num_classes) logits.

    Initialisation follows timm: Linear weights truncated-normal (std 0.02) with zero biases, position
    embedding truncated-normal (std 0.02), class token N(0, 1e-6); the patch Conv2d keeps its default.
    """

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        if not isinstance(config, ViTConfig):
            raise TypeError(f"ViT: expected a ViTConfig, got {type(config).__name__}; e.g. ViT(ViTConfig.tiny())")
        self.config = config
        self.patch_embed = PatchEmbed(config)
        self.cls_token = nn.Parameter(creation.zeros(1, 1, config.dim))
        self.pos_embed = nn.Parameter(creation.zeros(1, config.num_patches + 1, config.dim))
        self.pos_drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList([Block(config) for _ in range(config.depth)])
        self.norm = nn.LayerNorm(config.dim, eps=config.norm_eps)
        self.head = nn.Linear(config.dim, config.num_classes)

        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        c = self.config
        if x.ndim != 4 or tuple(x.shape[1:]) != (c.in_channels, c.image_size, c.image_size):
            raise ShapeError(f"ViT: expected images of shape (B, {c.in_channels}, {c.image_size}, {c.image_size}), "
                             f"got {tuple(x.shape)}\n  help: the position embedding is learned for "
                             f"{c.image_size}x{c.image_size} images ({c.num_patches} patches of {c.patch_size}x"
                             f"{c.patch_size}); resize the images or build the model with ViTConfig(image_size=...)")
        B = x.shape[0]
        x = self.patch_embed(x)                                   # (B, N, dim)
        cls = self.cls_token.expand(B, 1, c.dim)                   # (B, 1, dim)
        x = cat([cls, x], dim=1)                                  # (B, N + 1, dim)
        x = self.pos_drop(x + self.pos_embed)                     # (B, N + 1, dim)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)                                          # (B, N + 1, dim)
        return self.head(x[:, 0])                                 # class token -> (B, num_classes)
