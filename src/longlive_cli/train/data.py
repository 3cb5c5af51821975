"""ShapesWorld training data: clips rendered on the fly, and a pool of encoded clips cached once per run.

Pool clips change prompt (at most once) exactly where a chunk of latent frames starts, which is where the
streaming engine applies a switch. Only attributes are stored; prompt text is drawn fresh for every batch, so the
model sees many phrasings of each clip.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from longlive_cli.models.vae import WanVAEConfig, pixel_frames
from longlive_cli.train.checkpoint import load_checkpoint, save_checkpoint
from longlive_cli.train.latents import normalize, object_weight, world_latents
from longlive_cli.train.recipe import PoolRecipe
from longlive_cli.world.grammar import Attributes, describe, describe_change
from longlive_cli.world.scene import (
    FPS,
    LINEAR_SPEED,
    ORBIT_PERIOD,
    ORBIT_RADIUS,
    RADIUS,
    SceneState,
    render_frames,
    step,
)
from longlive_cli.world.timelines import prompt_index, random_attributes, random_change, simulate, training_clip

CHUNK_FRAMES = 3  # latent frames per streaming chunk: where pool clips may change prompt
ENCODE_BATCH = 16
SAVE_EVERY = 64


def to_video(frames: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> float [3, N, H, W] in [-1, 1], the VAE's pixel convention."""
    return torch.from_numpy(frames).permute(3, 0, 1, 2).float().div(127.5).sub(1.0)


def random_videos(rng: np.random.Generator, batch: int, frames: int, size: int) -> torch.Tensor:
    """[B, 3, frames, size, size] of fresh training clips (some with a prompt change), for autoencoder training."""
    return torch.stack([to_video(training_clip(rng, frames, size, change_prob=0.3).frames) for _ in range(batch)])


def pool_clip(pool: PoolRecipe, index: int, size: int) -> tuple[np.ndarray, list[Attributes], int]:
    """Clip ``index`` of a pool: frames, attributes per prompt, and the latent frame of its change (-1: none).

    Each clip has its own seed, so the pool can be built in any order and resumed part way.
    """
    rng = np.random.default_rng([pool.seed, index])
    first = random_attributes(rng, held_out=False)
    timeline = [(0.0, first)]
    change = -1
    chunks = pool.latent_frames // CHUNK_FRAMES
    if chunks - 1 > pool.first_change_chunk and rng.random() < pool.change_prob:
        change = CHUNK_FRAMES * int(rng.integers(pool.first_change_chunk, chunks - 1))
        first_pixel = pixel_frames(change)  # latent k >= 1 covers pixel frames 4k-3 .. 4k
        timeline.append((first_pixel / FPS, random_change(first, rng, held_out=False)))
    frames = pixel_frames(pool.latent_frames)
    if pool.centred_start:
        states = simulate_from(centred_start(first), timeline, frames, pool.rest_frames)
    else:
        states = simulate(timeline, frames, FPS, seed=int(rng.integers(2**31)))
    return render_frames(states, size), [attrs for _, attrs in timeline], change


def centred_start(attrs: Attributes) -> SceneState:
    """The one start the tiny model learns: frame centre, heading right or down, circling clockwise from the right.

    With random starts, the first chunk's flow target at high noise averages over every position and the 4-step
    sampler of a model that is not distribution-matched (no DMD) renders that average: a blank background. The
    object may also rest for the first chunk (``PoolRecipe.rest_frames``): a causal model sees the frames of its
    first chunk only relative to each other, through RoPE, so from pure noise it cannot tell which of them should
    have moved furthest, and renders all of them at the average place; with context behind a chunk it can.
    """
    radius = RADIUS[attrs.size]
    if attrs.motion == "circling":
        return SceneState(attrs, 0.5 + ORBIT_RADIUS, 0.5, cx=0.5, cy=0.5, phase=0.0, spin=1, radius=radius)
    vx = LINEAR_SPEED if attrs.motion == "horizontal" else 0.0
    vy = LINEAR_SPEED if attrs.motion == "vertical" else 0.0
    return SceneState(attrs, 0.5, 0.5, vx, vy, radius=radius)


def simulate_from(
    start: SceneState, timeline: list[tuple[float, Attributes]], frames: int, rest: int = 0
) -> list[SceneState]:
    """``world.timelines.simulate`` from a given first state, held for the first ``rest`` frames."""
    active = prompt_index([at for at, _ in timeline], frames, FPS)
    states = [start] * min(max(rest, 1), frames)
    for i in range(len(states), frames):
        states.append(step(states[-1], timeline[active[i]][1], 1.0 / FPS))
    return states


@dataclass
class LatentPool:
    """Normalised latents [N, F, C, h, w] of the pool clips, their attributes and change frames."""

    latents: torch.Tensor
    attributes: list[list[Attributes]]
    change: list[int]
    mean: tuple[float, ...]  # the normalisation, for reading raw statistics back
    std: tuple[float, ...]

    def weights(self, latents: torch.Tensor, weight: float) -> torch.Tensor:
        """Loss weights [B, F, h, w] of pool latents [B, F, C, h, w]: ``weight`` around the object, 1 elsewhere."""
        return object_weight(latents, self.mean, self.std, weight)

    def indices(self, changed: int | None = None) -> np.ndarray:
        """Clips whose change lands at latent frame ``changed`` (-1: no change); None: every clip."""
        return np.array([i for i, c in enumerate(self.change) if changed is None or c == changed])

    def change_frames(self) -> list[int]:
        """Distinct change frames in the pool (-1 for clips without a change)."""
        return sorted(set(self.change))


def pool_path(run_dir: Path, pool: PoolRecipe, size: int, vae: WanVAEConfig) -> Path:
    """Cache file of a pool: one per pool settings, size, latent statistics and world motion constants."""
    world = {"speed": LINEAR_SPEED, "orbit": [ORBIT_RADIUS, ORBIT_PERIOD]}
    key = {"pool": asdict(pool), "size": size, "mean": vae.latent_mean, "std": vae.latent_std, "world": world}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return run_dir / "pool" / f"pool-{digest}.pt"


def build_pool(
    path: Path, pool: PoolRecipe, size: int, vae: WanVAEConfig, note: Callable[[str], None] = lambda m: None
) -> LatentPool:
    """Load the pool cached at ``path``, rendering and encoding whatever part of it is missing first."""
    state = load_checkpoint(path) if path.exists() else {"latents": [], "attributes": [], "change": []}
    done = len(state["change"])
    if done < pool.clips:
        note(f"encoding pool clips {done}..{pool.clips - 1} into {path}")
    while done < pool.clips:
        batch = [pool_clip(pool, i, size) for i in range(done, min(done + ENCODE_BATCH, pool.clips))]
        video = torch.stack([to_video(frames) for frames, _, _ in batch])
        latents = normalize(world_latents(video, vae.z_dim), vae.latent_mean, vae.latent_std).transpose(1, 2)
        state["latents"].extend(latents)
        state["attributes"].extend([[asdict(a) for a in attrs] for _, attrs, _ in batch])
        state["change"].extend(change for _, _, change in batch)
        done += len(batch)
        if done % SAVE_EVERY < ENCODE_BATCH or done == pool.clips:
            save_checkpoint(path, state)
            note(f"pool: {done}/{pool.clips} clips encoded")
    return LatentPool(
        torch.stack(state["latents"]),
        [[Attributes(**a) for a in attrs] for attrs in state["attributes"]],
        list(state["change"]),
        vae.latent_mean,
        vae.latent_std,
    )


def prompts_for(rng: np.random.Generator, attributes: list[Attributes], describe_change_prob: float) -> list[str]:
    """Fresh wording for each prompt of a clip; a change is worded in full or as what changed."""
    texts = [describe(attributes[0], rng)]
    for old, new in zip(attributes, attributes[1:], strict=False):
        follow_up = rng.random() < describe_change_prob
        texts.append(describe_change(old, new, rng) if follow_up else describe(new, rng))
    return texts
