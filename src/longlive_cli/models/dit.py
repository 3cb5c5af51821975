"""Causal Wan DiT: the Wan2.1 transformer with per-frame timesteps and a streaming KV cache.

State-dict keys are the original Wan names (``blocks.N.self_attn.q.weight``, ...), so Wan and LongLive
checkpoints load without a key map. One forward denoises a chunk of latent frames; the cache decides what the
chunk attends to. Without a cache the model is the bidirectional Wan DiT (used as a teacher).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .attention import CrossAttention, LayerNorm, SelfAttention, SelfAttnContext
from .kv_cache import KVCache
from .rope import RopeTables


@dataclass(frozen=True)
class DiTConfig:
    """Sizes of a Wan DiT; the defaults are Wan2.1-T2V-1.3B."""

    dim: int = 1536
    ffn_dim: int = 8960
    num_heads: int = 12
    num_layers: int = 30
    in_dim: int = 16
    out_dim: int = 16
    text_dim: int = 4096
    text_len: int = 512
    freq_dim: int = 256
    patch_size: tuple[int, int, int] = (1, 2, 2)
    qk_norm: bool = True
    cross_attn_norm: bool = True
    eps: float = 1e-6

    def __post_init__(self) -> None:
        if self.dim % self.num_heads:
            raise ValueError(f"dim {self.dim} is not divisible by num_heads {self.num_heads}")
        if self.patch_size[0] != 1:
            raise ValueError("temporal patch size must be 1 for frame-level streaming")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    def to_dict(self) -> dict:
        """Plain dict for JSON configs."""
        return {**asdict(self), "patch_size": list(self.patch_size)}

    @classmethod
    def from_dict(cls, d: dict) -> DiTConfig:
        """Build from our JSON config or a Wan ``config.json`` (unknown keys ignored)."""
        names = {f for f in cls.__dataclass_fields__}
        kw = {k: v for k, v in d.items() if k in names}
        if "patch_size" in kw:
            kw["patch_size"] = tuple(kw["patch_size"])
        return cls(**kw)


def sinusoidal_embedding(dim: int, t: torch.Tensor) -> torch.Tensor:
    """[cos, sin] time embedding of float timesteps, computed in float64 as Wan does."""
    half = dim // 2
    pos = t.to(torch.float64)
    freqs = torch.pow(10000, -torch.arange(half, dtype=torch.float64, device=t.device).div(half))
    angles = torch.outer(pos, freqs)
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


class Block(nn.Module):
    """Self-attention, cross-attention and FFN with per-frame 6-way adaLN modulation."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        dim = cfg.dim
        self.norm1 = LayerNorm(dim, eps=cfg.eps, elementwise_affine=False)
        self.self_attn = SelfAttention(dim, cfg.num_heads, cfg.qk_norm, cfg.eps)
        self.norm3 = LayerNorm(dim, eps=cfg.eps, elementwise_affine=True) if cfg.cross_attn_norm else nn.Identity()
        self.cross_attn = CrossAttention(dim, cfg.num_heads, cfg.qk_norm, cfg.eps)
        self.norm2 = LayerNorm(dim, eps=cfg.eps, elementwise_affine=False)
        self.ffn = nn.Sequential(nn.Linear(dim, cfg.ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(cfg.ffn_dim, dim))
        self.modulation = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)
        self.checkpointed = False  # training: recompute this block's activations in the backward pass

    def project_context(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """This block's cross-attention K/V of an embedded prompt (a method of the block, so FSDP can shard it)."""
        return self.cross_attn.project_context(context)

    def forward(
        self,
        x: torch.Tensor,
        e: torch.Tensor,
        layer: int,
        ctx: SelfAttnContext,
        cross_kv: tuple[torch.Tensor, torch.Tensor],
    ) -> torch.Tensor:
        if self.checkpointed and torch.is_grad_enabled():
            return checkpoint(self._forward, x, e, layer, ctx, cross_kv, use_reentrant=False)
        return self._forward(x, e, layer, ctx, cross_kv)

    def _forward(
        self,
        x: torch.Tensor,
        e: torch.Tensor,
        layer: int,
        ctx: SelfAttnContext,
        cross_kv: tuple[torch.Tensor, torch.Tensor],
    ) -> torch.Tensor:
        b, frames = e.shape[:2]
        shift_sa, scale_sa, gate_sa, shift_ff, scale_ff, gate_ff = (self.modulation.unsqueeze(1) + e).chunk(6, dim=2)

        def mod(h: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
            return (h.unflatten(1, (frames, -1)) * (1 + scale) + shift).flatten(1, 2)

        def gated(y: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
            return (y.unflatten(1, (frames, -1)) * gate).flatten(1, 2)

        x = x + gated(self.self_attn(mod(self.norm1(x), shift_sa, scale_sa), layer, ctx), gate_sa)
        x = x + self.cross_attn(self.norm3(x), cross_kv)
        return x + gated(self.ffn(mod(self.norm2(x), shift_ff, scale_ff)), gate_ff)


class Head(nn.Module):
    """Output head with 2-way modulation from the time embedding (before projection)."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.norm = LayerNorm(cfg.dim, eps=cfg.eps, elementwise_affine=False)
        self.head = nn.Linear(cfg.dim, math.prod(cfg.patch_size) * cfg.out_dim)
        self.modulation = nn.Parameter(torch.randn(1, 2, cfg.dim) / cfg.dim**0.5)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        frames = e.shape[1]
        shift, scale = (self.modulation.unsqueeze(1) + e.unsqueeze(2)).chunk(2, dim=2)
        return self.head((self.norm(x).unflatten(1, (frames, -1)) * (1 + scale) + shift).flatten(1, 2))


@dataclass
class PromptKV:
    """Cross-attention keys/values of one embedded prompt, one pair per layer."""

    layers: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)


class CausalWanDiT(nn.Module):
    """The Wan2.1 DiT, run chunk by chunk over a static KV cache."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.cfg = cfg
        self.patch_embedding = nn.Conv3d(cfg.in_dim, cfg.dim, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.text_embedding = nn.Sequential(
            nn.Linear(cfg.text_dim, cfg.dim), nn.GELU(approximate="tanh"), nn.Linear(cfg.dim, cfg.dim)
        )
        self.time_embedding = nn.Sequential(nn.Linear(cfg.freq_dim, cfg.dim), nn.SiLU(), nn.Linear(cfg.dim, cfg.dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(cfg.dim, cfg.dim * 6))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.head = Head(cfg)
        self.rope = RopeTables(cfg.head_dim)

    def compile_blocks(self, backend: str = "inductor") -> None:
        """torch.compile each block (one graph serves every layer); the cache update stays eager between graphs.

        Layer indices and token counts become symbolic after their first change, so a stream compiles about ten
        graphs in its first chunks and a prompt switch, then none.
        """
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 32)
        for blk in self.blocks:
            blk.compile(backend=backend)

    def frame_tokens(self, height: int, width: int) -> int:
        """Tokens per latent frame of size height x width."""
        _, ph, pw = self.cfg.patch_size
        return (height // ph) * (width // pw)

    def encode_prompt(self, context: torch.Tensor) -> PromptKV:
        """Embed text features [B, L<=text_len, text_dim] and project them for every layer, once per prompt."""
        pad = self.cfg.text_len - context.shape[1]
        if pad < 0:
            raise ValueError(f"text has {context.shape[1]} tokens, the model takes at most {self.cfg.text_len}")
        if pad:
            context = torch.cat([context, context.new_zeros(context.shape[0], pad, context.shape[2])], dim=1)
        ctx = self.text_embedding(context.to(self.patch_embedding.weight.dtype))
        return PromptKV([blk.project_context(ctx) for blk in self.blocks])

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        prompt: PromptKV,
        cache: KVCache | None = None,
        start_frame: int = 0,
        sink_recache: bool = False,
        cache_only: bool = False,
    ) -> torch.Tensor | None:
        """Flow prediction for latents x [B, F, C, H, W] at per-frame timesteps t [B, F].

        ``start_frame`` is the absolute latent index of x's first frame: its cache slot, and its RoPE position
        unless the cache's positions are relative (then positions are slots, so they stay within the window).
        ``cache_only`` runs the blocks for their cache writes and skips the head (the clean pass, recache).
        """
        b, frames, _, height, width = x.shape
        _, ph, pw = self.cfg.patch_size
        gh, gw = height // ph, width // pw
        tokens = self.patch_embedding(x.transpose(1, 2).to(self.patch_embedding.weight.dtype))
        tokens = tokens.flatten(2).transpose(1, 2)
        e = self.time_embedding(sinusoidal_embedding(self.cfg.freq_dim, t.flatten()).to(tokens.dtype))
        e0 = self.time_projection(e).unflatten(1, (6, self.cfg.dim)).unflatten(0, (b, frames))
        ctx = self._attention_context(cache, start_frame, frames, gh, gw, sink_recache, tokens.device)
        for i, blk in enumerate(self.blocks):
            tokens = blk(tokens, e0, i, ctx, prompt.layers[i])
        if cache is not None:
            cache.commit(ctx.plan)
        if cache_only:
            return None
        out = self.head(tokens, e.unflatten(0, (b, frames)))
        return self.unpatchify(out, frames, gh, gw)

    def _attention_context(
        self,
        cache: KVCache | None,
        start_frame: int,
        frames: int,
        gh: int,
        gw: int,
        sink_recache: bool,
        device: torch.device,
    ) -> SelfAttnContext:
        """The call's cache plan and rotations: by frame number, or by cache slot under relative positions."""
        if cache is None:
            return SelfAttnContext(self.rope.for_grid(start_frame, frames, gh, gw, device))
        n = gh * gw
        plan = cache.plan(start_frame * n, frames * n, sink_recache)
        if not cache.relative:
            return SelfAttnContext(self.rope.for_grid(start_frame, frames, gh, gw, device), cache, plan)
        keys = [self.rope.for_grid(s, f, gh, gw, device) for s, f in cache.attended_slots(plan) if f]
        return SelfAttnContext(
            self.rope.for_grid(plan.local_start // n, frames, gh, gw, device),
            cache,
            plan,
            keys[0] if len(keys) == 1 else torch.cat(keys),
        )

    def unpatchify(self, x: torch.Tensor, frames: int, gh: int, gw: int) -> torch.Tensor:
        """Tokens [B, L, p*q*r*C] -> latents [B, F, C, H, W] (channel fastest within a patch)."""
        pt, ph, pw = self.cfg.patch_size
        c = self.cfg.out_dim
        x = x.view(x.shape[0], frames, gh, gw, pt, ph, pw, c)
        x = torch.einsum("bfhwpqrc->bfpchqwr", x)
        return x.reshape(x.shape[0], frames * pt, c, gh * ph, gw * pw)
