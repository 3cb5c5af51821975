"""Streaming generation: prompt segments and switches around LongLive's chunk sampler (``sampler.py``).

``StreamingGenerator`` owns a static KV cache and a short history of clean latents (one window), so memory does
not grow with video length. ``stream`` takes prompt segments and yields latent chunks as they finish;
``step`` and ``switch`` drive it interactively.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import Enum

import torch

from .models.dit import CausalWanDiT, PromptKV
from .models.kv_cache import POSITIONS
from .sampler import ChunkSampler, NoiseSource, SeededNoise


class SwitchPolicy(str, Enum):
    """What happens to the KV cache when the prompt changes."""

    RECACHE = "recache"
    KEEP = "keep"
    CLEAR = "clear"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, word: object, shown: str | None = None) -> SwitchPolicy:
        """The policy a user wrote (any case, spaces around), the one parser for timelines, flags and live input.

        Anything else is a ValueError naming the choices and the closest one; ``shown`` is how to quote the value.
        """
        choices = [p.value for p in cls]
        text = word.strip().lower() if isinstance(word, str) else ""
        if text in choices:
            return cls(text)
        if shown is None:
            shown = repr(word) if len(repr(word)) <= 40 else repr(word)[:37] + "..."
        close = difflib.get_close_matches(text, choices, n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"expected one of {', '.join(choices)}, got {shown}{hint}")


class SinkMode(str, Enum):
    """Recache variants of the reference: keep the original sink, or zero the cache and re-anchor it."""

    KEEP = "keep"
    REANCHOR = "reanchor"


@dataclass(frozen=True)
class EngineConfig:
    """Sampling and cache settings; the defaults are LongLive's."""

    chunk_frames: int = 3
    window: int = 12
    sink: int = 3
    steps: tuple[int, ...] = (1000, 750, 500, 250)
    shift: float = 5.0
    context_noise: float = 0.0
    sink_mode: SinkMode = SinkMode.KEEP
    positions: str = "absolute"  # or "relative": window-relative RoPE, LongLive's infinite-length mode

    def __post_init__(self) -> None:
        if self.positions not in POSITIONS:
            raise ValueError(f"positions must be one of {', '.join(POSITIONS)}, got {self.positions!r}")
        if self.chunk_frames < 1:
            raise ValueError(f"chunk_frames must be >= 1, got {self.chunk_frames}")
        if not 0 <= self.sink < self.window:
            raise ValueError(f"need 0 <= sink < window, got sink {self.sink}, window {self.window}")
        if self.window - self.sink < self.chunk_frames:
            raise ValueError(
                f"window {self.window} minus sink {self.sink} must hold a whole chunk of {self.chunk_frames} frames"
            )
        if not self.steps:
            raise ValueError("at least one denoising step is needed")


@dataclass
class Segment:
    """A prompt requested from latent frame ``start`` on, with the policy for switching to it."""

    start: int
    context: torch.Tensor
    policy: SwitchPolicy = SwitchPolicy.RECACHE


@dataclass(frozen=True)
class SwitchEvent:
    """A prompt switch as the engine carried it out, so sidecars report what happened rather than what was asked."""

    latent: int
    policy: SwitchPolicy


@dataclass
class LatentChunk:
    """Clean latents [B, n, C, H, W] of one finished chunk."""

    index: int
    start: int
    latents: torch.Tensor
    segment: int
    switched: bool


class StreamingGenerator:
    """LongLive's autoregressive loop over a static sink + window cache."""

    def __init__(
        self,
        model: CausalWanDiT,
        cfg: EngineConfig,
        latent_shape: tuple[int, int, int],
        noise: NoiseSource,
        batch: int = 1,
    ):
        self.model = model
        self.cfg = cfg
        self.latent_shape = latent_shape
        self.batch = batch
        self.sampler = ChunkSampler(model, cfg, noise)
        self.device, self.dtype = self.sampler.device, self.sampler.dtype
        self.cache = self.sampler.new_cache(batch, latent_shape)
        self.history = torch.zeros(batch, 0, *latent_shape, device=self.device, dtype=self.dtype)
        self.prompt: PromptKV | None = None
        self.frame = 0
        self.emitted = 0
        self.switches: list[SwitchEvent] = []

    def reset(self) -> None:
        """Start a new video: empty cache, no history, positions from 0, no switches."""
        self.cache.reset()
        self.history = self.history[:, :0]
        self.frame = 0
        self.emitted = 0
        self.prompt = None
        self.switches.clear()

    @torch.no_grad()
    def set_prompt(self, context: torch.Tensor) -> None:
        """Condition on text features [B, L, text_dim]; the cross-attention K/V is computed once here."""
        self.prompt = self.model.encode_prompt(context.to(self.device))

    @torch.no_grad()
    def switch(self, context: torch.Tensor, policy: SwitchPolicy = SwitchPolicy.RECACHE) -> None:
        """Change the prompt before the next chunk, treating the cache as ``policy`` says."""
        policy = SwitchPolicy(policy)
        self.switches.append(SwitchEvent(self.emitted, policy))
        self.set_prompt(context)
        if policy is SwitchPolicy.CLEAR:
            self.cache.reset()
            self.history = self.history[:, :0]
            self.frame = 0
        elif policy is SwitchPolicy.RECACHE:
            reanchor = self.cfg.sink_mode is SinkMode.REANCHOR
            self.sampler.recache(self.prompt, self.cache, self.history, self.frame, reanchor)

    @torch.no_grad()
    def step(self, num_frames: int | None = None) -> torch.Tensor:
        """Generate the next chunk and return its clean latents [B, n, C, H, W]."""
        if self.prompt is None:
            raise RuntimeError("set a prompt before generating")
        n = num_frames or self.cfg.chunk_frames
        shape = (self.batch, n, *self.latent_shape)
        x0 = self.sampler.generate(self.prompt, self.cache, self.frame, shape, noise_frame=self.emitted)
        self.history = self.sampler.remember(self.history, x0)
        self.frame += n
        self.emitted += n
        return x0

    def stream(self, segments: Sequence[Segment], num_frames: int) -> Iterator[LatentChunk]:
        """Generate ``num_frames`` latent frames from a new video, switching prompts as segments say.

        A switch fires before the first chunk whose start is at or after the segment's start frame, one
        switch per chunk, as the reference does.
        """
        if not segments or segments[0].start != 0:
            raise ValueError("the first segment must start at frame 0")
        starts = [s.start for s in segments]
        if starts != sorted(starts):
            raise ValueError(f"segment starts must be in order, got {starts}")
        self.reset()
        self.set_prompt(segments[0].context)
        current, index = 0, 0
        while self.emitted < num_frames:
            switched = current + 1 < len(segments) and self.emitted >= segments[current + 1].start
            if switched:
                current += 1
                self.switch(segments[current].context, segments[current].policy)
            start = self.emitted
            n = min(self.cfg.chunk_frames, num_frames - start)
            yield LatentChunk(index, start, self.step(n), current, switched)
            index += 1


@torch.no_grad()
def warm_up(model: CausalWanDiT, cfg: EngineConfig, latent_shape: tuple[int, int, int], context: torch.Tensor) -> None:
    """Meet every shape of a stream once (the window filling, steady chunks, a recache) on a throwaway generator.

    With compiled blocks, compiling then happens here rather than at the first frames and the first prompt switch.
    """
    gen = StreamingGenerator(model, cfg, latent_shape, SeededNoise(0))
    gen.set_prompt(context)
    for _ in range(-(-cfg.window // cfg.chunk_frames) + 1):
        gen.step()
    gen.switch(context, SwitchPolicy.RECACHE)
    gen.step()
