"""LongLive's chunk sampler over a KV cache: the one copy that generation and training both run.

A chunk is denoised by the warped steps from noise (each step's x0 re-noised with fresh noise to the next
timestep), then written to the cache by a pass at the context timestep; a prompt switch re-encodes the clean
window under the new prompt (recache). Generation and training differ only through explicit hooks:

- the noise source (a seeded stream, a training run's generator, one generator per batch slot);
- ``stop``: the step at which a chunk's denoising stops (training draws it at random per chunk, the same on
  every process; generation runs every step);
- ``grad``: whether that last step records autograd (the one forward of a rollout that trains);
- ``noisy_context``: whether the clean chunk is re-noised to the context timestep before the cache pass, as the
  reference's training rollout does (its inference caches x0 as it is);
- the cache kind: training's hands attention copies, so autograd's saved tensors survive later cache writes.

Where a rollout stops is the caller's: ``generate`` makes the frames it is asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import torch
from torch import Tensor

from .models.dit import CausalWanDiT, PromptKV
from .models.kv_cache import CachePlan, KVCache
from .schedule import FlowMatchSchedule

if TYPE_CHECKING:
    from .engine import EngineConfig


class NoiseSource(Protocol):
    """Where Gaussian noise comes from; injectable so runs can be replayed exactly."""

    def initial(self, frame: int, shape: tuple[int, ...]) -> Tensor:
        """Starting noise [B, n, C, H, W] for the chunk whose first output frame is ``frame``."""
        ...

    def renoise(self, shape: tuple[int, ...]) -> Tensor:
        """A fresh draw [B*n, C, H, W] to re-noise x0 between denoising steps."""
        ...


class GeneratorNoise:
    """Float32 draws on the CPU from one torch generator: the same numbers on any device."""

    def __init__(self, generator: torch.Generator):
        self.generator = generator

    def initial(self, frame: int, shape: tuple[int, ...]) -> Tensor:
        return torch.randn(shape, generator=self.generator)

    def renoise(self, shape: tuple[int, ...]) -> Tensor:
        return torch.randn(shape, generator=self.generator)


class SeededNoise(GeneratorNoise):
    """Draws from a generator of its own: same seed, same video on any device."""

    def __init__(self, seed: int):
        super().__init__(torch.Generator().manual_seed(seed))


class SlotNoise:
    """One generator per batch slot, so a slot draws the same numbers whichever process trains it."""

    def __init__(self, generators: Sequence[torch.Generator]):
        self.generators = generators

    def initial(self, frame: int, shape: tuple[int, ...]) -> Tensor:
        return torch.stack([torch.randn(shape[1:], generator=g) for g in self.generators])

    def renoise(self, shape: tuple[int, ...]) -> Tensor:
        per_slot = (shape[0] // len(self.generators), *shape[1:])
        return torch.stack([torch.randn(per_slot, generator=g) for g in self.generators]).view(shape)


class TrainingKVCache(KVCache):
    """The engine's cache, handing attention copies rather than views of the shared buffer when autograd records.

    Every layer writes into one buffer, so a view saved for backward by one layer would be invalidated by the
    next layer's write; copies keep autograd's saved tensors intact. Under activation checkpointing a block runs
    again in the backward pass, when the buffer already holds later frames: the first run keeps each layer's buffer
    as it found it in the call's plan, and the rerun attends over that instead of writing again.
    """

    recomputable = False  # set when the model's blocks are checkpointed

    def update_and_view(self, layer: int, plan: CachePlan, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        if not torch.is_grad_enabled():  # nothing is saved for backward: the views are safe
            return super().update_and_view(layer, plan, k, v)
        if not self.recomputable:
            keys, values = super().update_and_view(layer, plan, k, v)
            return keys.clone(), values.clone()
        if layer not in plan.memo:  # the first run: the buffer moves on, the state it was met in is kept
            kb, vb = self.k[layer], self.v[layer]
            self.roll(kb, vb, plan)
            plan.memo[layer] = (kb.clone(), vb.clone())
            self.write(kb, vb, plan, k.detach(), v.detach())
        kb, vb = (t.clone() for t in plan.memo[layer])
        self.write(kb, vb, plan, k, v)
        return self.attended(kb, vb, plan)

    def detach(self) -> None:
        """Cut the graph of the chunk just trained, so the next chunk's gradients stop at the cached context."""
        self.k = self.k.detach()
        self.v = self.v.detach()


def detached(prompt: PromptKV) -> PromptKV:
    """The same keys and values cut from the graph, for passes that must not carry gradient."""
    return PromptKV([(k.detach(), v.detach()) for k, v in prompt.layers])


class ChunkSampler:
    """The warped few-step sampler, the cache pass and the recache of LongLive, on caches the caller owns."""

    def __init__(self, model: CausalWanDiT, cfg: EngineConfig, noise: NoiseSource, noisy_context: bool = False):
        self.model = model
        self.cfg = cfg
        self.noise = noise
        self.noisy_context = noisy_context
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.schedule = FlowMatchSchedule(cfg.shift)
        self.timesteps: list[float] = self.schedule.warped(cfg.steps).tolist()

    def new_cache(
        self,
        batch: int,
        latent_shape: tuple[int, int, int],
        training: bool = False,
        dtype: torch.dtype | None = None,
    ) -> KVCache:
        """An empty sink + window cache for ``batch`` videos of ``latent_shape`` latents (a training one if asked).

        ``dtype`` overrides the parameters' dtype, for sharded models that keep float32 masters but compute lower.
        """
        mc = self.model.cfg
        kind = TrainingKVCache if training else KVCache
        return kind(
            mc.num_layers,
            batch,
            mc.num_heads,
            mc.head_dim,
            self.model.frame_tokens(*latent_shape[1:]),
            capacity_frames=self.cfg.window,
            sink_frames=self.cfg.sink,
            dtype=dtype or self.dtype,
            device=self.device,
            positions=self.cfg.positions,
        )

    def _time(self, like: Tensor, t: float) -> Tensor:
        return torch.full(like.shape[:2], t, device=self.device)

    def _draw(self, shape: torch.Size) -> Tensor:
        b, n = shape[:2]
        return self.noise.renoise((b * n, *shape[2:])).to(self.device, self.dtype).view(shape)

    def renoised(self, x0: Tensor, step: int) -> Tensor:
        """x0 [B, n, C, H, W] noised with a fresh draw to the timestep of ``step`` (0-based)."""
        return self.schedule.add_noise(x0, self._draw(x0.shape), self._time(x0, self.timesteps[step]))

    def denoise(
        self,
        x: Tensor,
        prompt: PromptKV,
        cache: KVCache,
        start: int,
        first: int = 0,
        stop: int | None = None,
        grad: bool = False,
    ) -> Tensor:
        """Run steps ``first``..``stop`` (default: the last) on x at step ``first``'s noise level; step stop's x0.

        With ``grad`` the forward of step ``stop`` records autograd through ``prompt``; every other runs without.
        """
        stop = len(self.timesteps) - 1 if stop is None else stop
        if not 0 <= first <= stop < len(self.timesteps):
            raise ValueError(f"steps {first}..{stop} are not within the sampler's {len(self.timesteps)} steps")
        frozen = detached(prompt)
        for j in range(first, stop + 1):
            t = self._time(x, self.timesteps[j])
            live = grad and j == stop
            with torch.set_grad_enabled(live):
                flow = self.model(x, t, prompt if live else frozen, cache, start)
                x0 = self.schedule.x0_from_flow(flow, x, t)
            if j < stop:
                x = self.renoised(x0, j + 1)
        return x0

    @torch.no_grad()
    def cache_pass(self, x0: Tensor, prompt: PromptKV, cache: KVCache, start: int) -> None:
        """Write the finished chunk x0 to the cache at the context timestep.

        With ``noisy_context`` x0 is first noised to that timestep with a fresh draw (at 0, the table's nearest
        sigma, about 0.005), as the reference's training rollout does.
        """
        t = self._time(x0, self.cfg.context_noise)
        if self.noisy_context:
            x0 = self.schedule.add_noise(x0, self._draw(x0.shape), t)
        self.model(x0, t, prompt, cache, start, cache_only=True)

    def generate(
        self,
        prompt: PromptKV,
        cache: KVCache,
        start: int,
        shape: tuple[int, ...],
        noise_frame: int | None = None,
        stop: int | None = None,
        grad: bool = False,
    ) -> Tensor:
        """Clean latents of ``shape`` [B, F, C, H, W] from cache position ``start``, chunk by chunk.

        Each chunk of ``chunk_frames`` (the last may be shorter) starts from the noise source's draw for output
        frame ``noise_frame`` (default ``start``) onwards, is denoised up to ``stop`` and written to the cache.
        With ``grad`` each chunk's last step carries gradient and the (training) cache is cut from the graph after it.
        """
        if grad and not isinstance(cache, TrainingKVCache):
            raise ValueError("a rollout with gradient needs a training cache (new_cache(..., training=True))")
        b, frames, *latent = shape
        first = start if noise_frame is None else noise_frame
        outputs = []
        for offset in range(0, frames, self.cfg.chunk_frames):
            n = min(self.cfg.chunk_frames, frames - offset)
            x = self.noise.initial(first + offset, (b, n, *latent)).to(self.device, self.dtype)
            x0 = self.denoise(x, prompt, cache, start + offset, stop=stop, grad=grad)
            self.cache_pass(x0, prompt, cache, start + offset)
            if grad:
                cache.detach()
            outputs.append(x0)
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs, 1)

    def remember(self, history: Tensor | None, x0: Tensor) -> Tensor:
        """The last ``window`` clean frames once x0 follows ``history``: what a recache re-encodes."""
        joined = x0 if history is None else torch.cat((history, x0), dim=1)
        return joined[:, -self.cfg.window :]

    @torch.no_grad()
    def recache(self, prompt: PromptKV, cache: KVCache, history: Tensor, frame: int, reanchor: bool = False) -> None:
        """Re-encode the clean window ending at ``frame`` under ``prompt``; the sink kept, or zeroed and re-anchored."""
        if reanchor:
            cache.zero()
        n = min(self.cfg.window, frame)
        if n == 0:
            return
        frames = history[:, -n:]
        t = self._time(frames, self.cfg.context_noise)
        self.model(frames, t, prompt, cache, frame - n, sink_recache=reanchor, cache_only=True)
