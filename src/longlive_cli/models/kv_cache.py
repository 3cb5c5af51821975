"""Static self-attention KV cache with a frame sink and a sliding window, LongLive's rules exactly.

The buffers are allocated once (``[layers, B, heads, capacity, head_dim]``) and never grow or get cloned.
Slots ``0..sink-1`` hold the sink and are never rolled; the rest holds the most recent frames. Bookkeeping is
shared by all layers: ``plan`` decides, from the call's absolute token range, whether it advances the stream
(insert, or roll on overflow) or recomputes slots already written (later denoising steps, the clean pass,
recache), where the new keys go and which slots are attended; each layer applies the plan to its own buffers,
and ``commit`` moves the indices after the forward.

Positions are ``absolute`` (keys stored rotated at their frame number, as ordinary LongLive) or ``relative``
(LongLive's infinite-length mode: keys stored before RoPE, and every call rotates the attended keys by their slot
and each query by the slot its frame occupies, so time positions never exceed the window and a video can run on
without end).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class CachePlan:
    """What one forward does to the cache; token indices into the physical buffer."""

    recompute: bool
    evict: int
    rolled: int
    write_start: int
    write_offset: int
    write_len: int
    local_start: int
    local_end: int
    attend_local_start: int
    current_end: int
    memo: dict = field(default_factory=dict, compare=False, repr=False)  # per layer, for a recomputing trainer


POSITIONS = ("absolute", "relative")


class KVCache:
    """Per-layer keys/values with sink + window semantics; keys are stored rotated unless positions are relative."""

    def __init__(
        self,
        num_layers: int,
        batch: int,
        heads: int,
        head_dim: int,
        frame_tokens: int,
        capacity_frames: int,
        sink_frames: int,
        attend_frames: int | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        positions: str = "absolute",
    ):
        if positions not in POSITIONS:
            raise ValueError(f"positions must be one of {', '.join(POSITIONS)}, got {positions!r}")
        attend_frames = capacity_frames if attend_frames is None else attend_frames
        if not 0 <= sink_frames < attend_frames <= capacity_frames:
            raise ValueError(
                f"need 0 <= sink ({sink_frames}) < window ({attend_frames}) <= capacity ({capacity_frames})"
            )
        self.relative = positions == "relative"
        self.frame_tokens = frame_tokens
        self.capacity = capacity_frames * frame_tokens
        self.sink_tokens = sink_frames * frame_tokens
        self.max_attention = attend_frames * frame_tokens
        shape = (num_layers, batch, heads, self.capacity, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.global_end = 0
        self.local_end = 0

    def reset(self) -> None:
        """Empty the cache as at the start of a video."""
        self.zero()
        self.global_end = 0
        self.local_end = 0

    def zero(self) -> None:
        """Zero keys and values but keep the indices (recache with a re-anchored sink)."""
        self.k.zero_()
        self.v.zero_()

    def plan(self, current_start: int, num_new: int, sink_recache: bool = False) -> CachePlan:
        """Classify a call on tokens [current_start, current_start+num_new) and place its keys."""
        current_end = current_start + num_new
        recompute = current_end <= self.global_end and current_start > 0
        advance = current_end - self.global_end
        evict = rolled = 0
        if current_end > self.global_end and num_new + self.local_end > self.capacity:
            evict = num_new + self.local_end - self.capacity
            rolled = self.local_end - evict - self.sink_tokens
            local_end = self.local_end + advance - evict
            clamp = recompute
        else:
            local_end = self.local_end + advance
            clamp = recompute and not sink_recache
        local_start = local_end - num_new
        if local_start < 0:
            raise ValueError(
                f"cache call at tokens {current_start}..{current_end} reaches before the buffer "
                f"(local start {local_start}); recompute at most the frames still held"
            )
        write_start = max(local_start, self.sink_tokens) if clamp else local_start
        budget = self.max_attention - self.sink_tokens
        return CachePlan(
            recompute=recompute,
            evict=evict,
            rolled=rolled,
            write_start=write_start,
            write_offset=write_start - local_start,
            write_len=max(0, local_end - write_start),
            local_start=local_start,
            local_end=local_end,
            attend_local_start=max(self.sink_tokens, local_end - budget),
            current_end=current_end,
        )

    def attended_slots(self, plan: CachePlan) -> list[tuple[int, int]]:
        """(first slot, frame count) of each run of frame slots ``update_and_view`` returns, in order.

        Under relative positions a key's time index is its slot, so these give the keys' rotation.
        """
        end = plan.local_end // self.frame_tokens
        sink = min(self.sink_tokens, plan.local_end) // self.frame_tokens
        if plan.attend_local_start <= self.sink_tokens:
            return [(0, end)]
        local = plan.attend_local_start // self.frame_tokens
        return [(0, sink), (local, max(0, end - local))]

    @torch.compiler.disable
    def update_and_view(
        self, layer: int, plan: CachePlan, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply ``plan`` to one layer's buffers with new k/v [B, H, n, D]; return the keys/values attended.

        Never compiled: its slicing depends on the plan's integers, which would otherwise be guarded on.
        """
        kb, vb = self.k[layer], self.v[layer]
        self.roll(kb, vb, plan)
        self.write(kb, vb, plan, k, v)
        return self.attended(kb, vb, plan)

    def roll(self, kb: torch.Tensor, vb: torch.Tensor, plan: CachePlan) -> None:
        """Shift the window left over the evicted frames (the sink stays)."""
        if plan.evict:
            src = slice(self.sink_tokens + plan.evict, self.sink_tokens + plan.evict + plan.rolled)
            dst = slice(self.sink_tokens, self.sink_tokens + plan.rolled)
            kb[:, :, dst] = kb[:, :, src].clone()
            vb[:, :, dst] = vb[:, :, src].clone()

    @staticmethod
    def write(kb: torch.Tensor, vb: torch.Tensor, plan: CachePlan, k: torch.Tensor, v: torch.Tensor) -> None:
        """Put the call's new keys and values in their slots."""
        if plan.write_len:
            dst = slice(plan.write_start, plan.write_start + plan.write_len)
            src = slice(plan.write_offset, plan.write_offset + plan.write_len)
            kb[:, :, dst] = k[:, :, src]
            vb[:, :, dst] = v[:, :, src]

    def attended(self, kb: torch.Tensor, vb: torch.Tensor, plan: CachePlan) -> tuple[torch.Tensor, torch.Tensor]:
        """The sink and the window's attended part of one layer's buffers."""
        end = plan.local_end
        sink_end = min(self.sink_tokens, end)
        if plan.attend_local_start <= sink_end:
            return kb[:, :, :end], vb[:, :, :end]
        local = slice(plan.attend_local_start, end)
        return (
            torch.cat((kb[:, :, :sink_end], kb[:, :, local]), dim=2),
            torch.cat((vb[:, :, :sink_end], vb[:, :, local]), dim=2),
        )

    def commit(self, plan: CachePlan) -> None:
        """Advance the indices after a forward that was not a recompute."""
        if not plan.recompute:
            self.global_end = plan.current_end
            self.local_end = plan.local_end
