"""Self-attention over the sink + window KV cache, and cross-attention over a per-prompt K/V cache."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .kv_cache import CachePlan, KVCache
from .rope import apply_rope


class RMSNorm(nn.Module):
    """RMS norm over the whole feature vector (across heads), computed in float32."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps).type_as(x) * self.weight


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 and cast back, as Wan does under bf16."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = None if self.weight is None else self.weight.float()
        b = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, w, b, self.eps).type_as(x)


@dataclass
class SelfAttnContext:
    """Per-forward inputs shared by every layer's self-attention; no cache means bidirectional.

    ``key_rotation`` is set under relative positions: keys are cached un-rotated and rotated by it after the cache
    hands them out; otherwise keys share the queries' ``rotation`` and are cached rotated.
    """

    rotation: torch.Tensor
    cache: KVCache | None = None
    plan: CachePlan | None = None
    key_rotation: torch.Tensor | None = None


class Projections(nn.Module):
    """q/k/v/o Linears with bias and RMS q/k norms, laid out (and named) as Wan's attention modules."""

    def __init__(self, dim: int, num_heads: int, qk_norm: bool = True, eps: float = 1e-6):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.norm_q = RMSNorm(dim, eps) if qk_norm else nn.Identity()
        self.norm_k = RMSNorm(dim, eps) if qk_norm else nn.Identity()


class SelfAttention(Projections):
    """Wan self-attention: q/k/v/o with bias, RMS q/k norms, 3-axis RoPE; keys cached rotated, or before RoPE."""

    def forward(self, x: torch.Tensor, layer: int, ctx: SelfAttnContext) -> torch.Tensor:
        b, n, _ = x.shape
        shape = (b, n, self.num_heads, self.head_dim)
        q = apply_rope(self.norm_q(self.q(x)).view(shape), ctx.rotation).transpose(1, 2)
        k = self.norm_k(self.k(x)).view(shape)
        if ctx.key_rotation is None:
            k = apply_rope(k, ctx.rotation)
        k = k.transpose(1, 2)
        v = self.v(x).view(shape).transpose(1, 2)
        if ctx.cache is not None:
            k, v = ctx.cache.update_and_view(layer, ctx.plan, k.to(ctx.cache.k.dtype), v.to(ctx.cache.v.dtype))
        if ctx.key_rotation is not None:
            k = apply_rope(k.transpose(1, 2), ctx.key_rotation).transpose(1, 2)
        out = F.scaled_dot_product_attention(q.to(v.dtype), k, v)
        return self.o(out.transpose(1, 2).reshape(b, n, -1).to(x.dtype))


class CrossAttention(Projections):
    """Wan text cross-attention; K/V come from ``project_context`` once per prompt, all positions attended."""

    def project_context(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """K and V [B, H, text_len, D] of an embedded prompt; computed once and reused every forward."""
        b, n, _ = context.shape
        shape = (b, n, self.num_heads, self.head_dim)
        k = self.norm_k(self.k(context)).view(shape).transpose(1, 2)
        v = self.v(context).view(shape).transpose(1, 2)
        return k, v

    def forward(self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        b, n, _ = x.shape
        q = self.norm_q(self.q(x)).view(b, n, self.num_heads, self.head_dim).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, kv[0], kv[1])
        return self.o(out.transpose(1, 2).reshape(b, n, -1))
