"""umT5 encoder in Wan's layout, so `models_t5_umt5-xxl-enc-bf16.pth` loads with no key map."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class UMT5Config:
    vocab: int = 256384
    dim: int = 4096
    dim_attn: int = 4096
    dim_ffn: int = 10240
    num_heads: int = 64
    num_layers: int = 24
    num_buckets: int = 32
    max_distance: int = 128
    eps: float = 1e-6

    @classmethod
    def from_state_dict(cls, sd: dict[str, Tensor], max_distance: int = 128) -> UMT5Config:
        """Read the sizes off Wan-layout weights, so tiny or full checkpoints load the same way."""
        vocab, dim = sd["token_embedding.weight"].shape
        num_buckets, num_heads = sd["blocks.0.pos_embedding.embedding.weight"].shape
        layers = {int(k.split(".")[1]) for k in sd if k.startswith("blocks.")}
        return cls(
            vocab=vocab,
            dim=dim,
            dim_attn=sd["blocks.0.attn.q.weight"].shape[0],
            dim_ffn=sd["blocks.0.ffn.fc1.weight"].shape[0],
            num_heads=num_heads,
            num_layers=len(layers),
            num_buckets=num_buckets,
            max_distance=max_distance,
        )


def relative_position_bucket(rel_pos: Tensor, num_buckets: int = 32, max_distance: int = 128) -> Tensor:
    """Bidirectional T5 bucketing of key-minus-query offsets, half the buckets per sign."""
    half = num_buckets // 2
    buckets = (rel_pos > 0).long() * half
    rel_pos = rel_pos.abs()
    max_exact = half // 2
    scaled = torch.log(rel_pos.clamp(min=max_exact).float() / max_exact) / math.log(max_distance / max_exact)
    large = (max_exact + (scaled * (half - max_exact)).long()).clamp(max=half - 1)
    return buckets + torch.where(rel_pos < max_exact, rel_pos, large)


def _fp16_clamp(x: Tensor) -> Tensor:
    """Keep fp16 residuals finite the way Wan does, only when an overflow happened."""
    if x.dtype == torch.float16 and torch.isinf(x).any():
        limit = torch.finfo(x.dtype).max - 1000
        x = x.clamp(-limit, limit)
    return x


class T5LayerNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x.float() * torch.rsqrt(x.float().pow(2).mean(dim=-1, keepdim=True) + self.eps)
        if self.weight.dtype in (torch.float16, torch.bfloat16):
            x = x.type_as(self.weight)
        return self.weight * x


class T5RelativeEmbedding(nn.Module):
    def __init__(self, num_buckets: int, num_heads: int, max_distance: int):
        super().__init__()
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.embedding = nn.Embedding(num_buckets, num_heads)

    def forward(self, length: int) -> Tensor:
        """Position bias [1, heads, L, L] for self-attention over `length` tokens."""
        pos = torch.arange(length, device=self.embedding.weight.device)
        rel = relative_position_bucket(pos[None, :] - pos[:, None], self.num_buckets, self.max_distance)
        return self.embedding(rel).permute(2, 0, 1).unsqueeze(0)


class T5Attention(nn.Module):
    def __init__(self, dim: int, dim_attn: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim_attn, bias=False)
        self.k = nn.Linear(dim, dim_attn, bias=False)
        self.v = nn.Linear(dim, dim_attn, bias=False)
        self.o = nn.Linear(dim_attn, dim, bias=False)

    def forward(self, x: Tensor, pos_bias: Tensor, mask: Tensor | None) -> Tensor:
        b, length, _ = x.shape
        q, k, v = (proj(x).view(b, length, self.num_heads, -1).transpose(1, 2) for proj in (self.q, self.k, self.v))
        bias = pos_bias.to(x.dtype).expand(b, -1, -1, -1)
        if mask is not None:
            bias = bias.masked_fill(mask.view(b, 1, 1, length) == 0, torch.finfo(x.dtype).min)
        logits = q @ k.transpose(-1, -2) + bias
        attn = F.softmax(logits.float(), dim=-1).type_as(logits)
        return self.o((attn @ v).transpose(1, 2).reshape(b, length, -1))


class T5FeedForward(nn.Module):
    def __init__(self, dim: int, dim_ffn: int):
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(dim, dim_ffn, bias=False), nn.GELU(approximate="tanh"))
        self.fc1 = nn.Linear(dim, dim_ffn, bias=False)
        self.fc2 = nn.Linear(dim_ffn, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.fc1(x) * self.gate(x))


class T5Block(nn.Module):
    def __init__(self, cfg: UMT5Config):
        super().__init__()
        self.norm1 = T5LayerNorm(cfg.dim, cfg.eps)
        self.attn = T5Attention(cfg.dim, cfg.dim_attn, cfg.num_heads)
        self.norm2 = T5LayerNorm(cfg.dim, cfg.eps)
        self.ffn = T5FeedForward(cfg.dim, cfg.dim_ffn)
        self.pos_embedding = T5RelativeEmbedding(cfg.num_buckets, cfg.num_heads, cfg.max_distance)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        x = _fp16_clamp(x + self.attn(self.norm1(x), self.pos_embedding(x.shape[1]), mask))
        return _fp16_clamp(x + self.ffn(self.norm2(x)))


class UMT5Encoder(nn.Module):
    def __init__(self, cfg: UMT5Config):
        super().__init__()
        self.cfg = cfg
        self.token_embedding = nn.Embedding(cfg.vocab, cfg.dim)
        self.blocks = nn.ModuleList(T5Block(cfg) for _ in range(cfg.num_layers))
        self.norm = T5LayerNorm(cfg.dim, cfg.eps)

    def forward(self, ids: Tensor, mask: Tensor | None = None) -> Tensor:
        """Encode token ids [B, L] into [B, L, dim]; masked keys are ignored, masked rows are not zeroed."""
        x = self.token_embedding(ids)
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x)


_HF_PREFIXES = (
    ("shared.", "token_embedding."),
    ("encoder.embed_tokens.", "token_embedding."),
    ("encoder.final_layer_norm.", "norm."),
)
_HF_BLOCK = re.compile(r"encoder\.block\.(\d+)\.layer\.(.+)")
_HF_LAYER = {
    "0.layer_norm.": "norm1.",
    "0.SelfAttention.relative_attention_bias.": "pos_embedding.embedding.",
    "0.SelfAttention.": "attn.",
    "1.layer_norm.": "norm2.",
    "1.DenseReluDense.wi_0.": "ffn.gate.0.",
    "1.DenseReluDense.wi_1.": "ffn.fc1.",
    "1.DenseReluDense.wo.": "ffn.fc2.",
}


def _hf_to_wan(key: str) -> str:
    for old, new in _HF_PREFIXES:
        if key.startswith(old):
            return new + key[len(old) :]
    m = _HF_BLOCK.fullmatch(key)
    if m is None:
        return key
    block, tail = m.groups()
    for old, new in _HF_LAYER.items():
        if tail.startswith(old):
            return f"blocks.{block}.{new}{tail[len(old) :]}"
    return key


def remap_hf_umt5_keys(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename HF `UMT5EncoderModel` keys (diffusers `text_encoder/`) to Wan's; other keys pass unchanged."""
    return {_hf_to_wan(k): v for k, v in sd.items()}
