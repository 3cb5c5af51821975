"""Streaming generation: the chunk loop of LongLive (4 warped steps + a clean cache pass) and prompt switches.

``StreamingGenerator`` owns a static KV cache and a short history of clean latents (one window), so memory does
not grow with video length. ``stream`` takes prompt segments and yields latent chunks as they finish;
``step`` and ``switch`` drive it interactively.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

import torch

from .models.dit import CausalWanDiT, PromptKV
from .models.kv_cache import KVCache
from .schedule import FlowMatchSchedule


class SwitchPolicy(str, Enum):
    """What happens to the KV cache when the prompt changes."""

    RECACHE = "recache"
    KEEP = "keep"
    CLEAR = "clear"


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

    def __post_init__(self) -> None:
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


class NoiseSource(Protocol):
    """Where Gaussian noise comes from; injectable so runs can be replayed exactly."""

    def initial(self, frame: int, shape: tuple[int, ...]) -> torch.Tensor:
        """Starting noise [B, n, C, H, W] for the chunk whose first output frame is ``frame``."""
        ...

    def renoise(self, shape: tuple[int, ...]) -> torch.Tensor:
        """A fresh draw [B*n, C, H, W] to re-noise x0 between denoising steps."""
        ...


class SeededNoise:
    """Float32 draws on the CPU from one seeded generator: same seed, same video on any device."""

    def __init__(self, seed: int):
        self.generator = torch.Generator().manual_seed(seed)

    def initial(self, frame: int, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator)

    def renoise(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator)


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
        self.noise = noise
        self.batch = batch
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        mc = model.cfg
        _, height, width = latent_shape
        self.frame_tokens = model.frame_tokens(height, width)
        self.cache = KVCache(
            mc.num_layers,
            batch,
            mc.num_heads,
            mc.head_dim,
            self.frame_tokens,
            capacity_frames=cfg.window,
            sink_frames=cfg.sink,
            dtype=self.dtype,
            device=self.device,
        )
        self.schedule = FlowMatchSchedule(cfg.shift)
        self.timesteps = self.schedule.warped(cfg.steps).tolist()
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
            self._recache()

    def _recache(self) -> None:
        reanchor = self.cfg.sink_mode is SinkMode.REANCHOR
        if reanchor:
            self.cache.zero()
        n = min(self.cfg.window, self.frame)
        if n == 0:
            return
        frames = self.history[:, -n:]
        t = torch.full((self.batch, n), self.cfg.context_noise, device=self.device)
        self.model(frames, t, self.prompt, self.cache, self.frame - n, sink_recache=reanchor, cache_only=True)

    @torch.no_grad()
    def step(self, num_frames: int | None = None) -> torch.Tensor:
        """Generate the next chunk and return its clean latents [B, n, C, H, W]."""
        if self.prompt is None:
            raise RuntimeError("set a prompt before generating")
        n = num_frames or self.cfg.chunk_frames
        b = self.batch
        shape = (b, n, *self.latent_shape)
        x = self.noise.initial(self.emitted, shape).to(self.device, self.dtype)
        start = self.frame
        last = len(self.timesteps) - 1
        for j, t in enumerate(self.timesteps):
            tt = torch.full((b, n), t, device=self.device)
            flow = self.model(x, tt, self.prompt, self.cache, start)
            x0 = self.schedule.x0_from_flow(flow, x, tt)
            if j < last:
                eps = self.noise.renoise((b * n, *self.latent_shape)).to(self.device, self.dtype)
                nxt = torch.full((b, n), self.timesteps[j + 1], device=self.device)
                x = self.schedule.add_noise(x0, eps.view(shape), nxt)
        clean_t = torch.full((b, n), self.cfg.context_noise, device=self.device)
        self.model(x0, clean_t, self.prompt, self.cache, start, cache_only=True)
        self.history = torch.cat((self.history, x0), dim=1)[:, -self.cfg.window :]
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
