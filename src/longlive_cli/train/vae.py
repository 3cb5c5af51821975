"""Stage ``vae``: a narrow Wan-layout VAE that encodes into and decodes from the tiny model's latent space.

The Wan classes and key names are kept, only the widths shrink, so the layout is Wan's (16 channels, 8x space,
4x time). The space itself is ``latents.world_latents``: the encoder regresses it, the decoder reconstructs frames
from it (plus a little noise, as generated latents are never exact), with the object's pixels weighted up since it
covers a few percent of a frame. Its per-channel mean and std over fresh clips become the config's
``latent_mean``/``latent_std``, so ``encode`` returns unit-scale latents as Wan's constants do for Wan.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from longlive_cli.models.vae import FeatureCache, WanVAE, WanVAEConfig
from longlive_cli.train.artifacts import FINAL, load_weights, save_weights, write_summary
from longlive_cli.train.checkpoint import Randomness
from longlive_cli.train.data import random_videos
from longlive_cli.train.latents import world_latents
from longlive_cli.train.loop import Session, TrainState, pick_device
from longlive_cli.train.optim import adamw
from longlive_cli.train.recipe import VAERecipe, recipe_dict

STATS_FRAMES = 21  # pixel frames per clip when measuring latent statistics
FOREGROUND_THRESHOLD = 0.1


def vae_config(recipe: VAERecipe) -> WanVAEConfig:
    """The recipe's widths as a Wan VAE config (lists from YAML become tuples)."""
    return WanVAEConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in recipe.vae.items()})


def encode_mean(vae: WanVAE, video: Tensor) -> Tensor:
    """Differentiable encode to the raw latent mean (what ``encode`` returns before normalising).

    Frame 0 goes alone, then the rest, as ``encode`` does; the log-variance half of ``conv1`` is not used.
    """
    cache: FeatureCache = [None] * vae.encoder.num_slots
    h = torch.cat([vae.encoder(video[:, :, :1], cache), vae.encoder(video[:, :, 1:], cache)], 2)
    return vae.conv1(h)[:, : vae.cfg.z_dim]


def decode_raw(vae: WanVAE, z: Tensor) -> Tensor:
    """Differentiable decode of a raw latent: the first latent alone (one frame), then the rest together."""
    cache: FeatureCache = [None] * vae.decoder.num_slots
    x = vae.conv2(z)
    return torch.cat([vae.decoder(x[:, :, :1], cache), vae.decoder(x[:, :, 1:], cache)], 2)


def foreground(video: Tensor) -> Tensor:
    """[B, 1, T, H, W] mask of pixels unlike the frame's corner, which ShapesWorld keeps background."""
    return ((video - video[..., :1, :1]).abs().amax(dim=1, keepdim=True) > FOREGROUND_THRESHOLD).float()


def random_crop(video: Tensor, crop: int, rng) -> Tensor:
    """The same random square window of every frame of each clip."""
    size = video.shape[-1]
    out = []
    for clip in video:
        top, left = (int(v) for v in rng.integers(0, size - crop + 1, size=2))
        out.append(clip[..., top : top + crop, left : left + crop])
    return torch.stack(out)


def latent_stats(videos: Tensor, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of the raw latents of ``videos`` [B, 3, T, H, W]."""
    raw = world_latents(videos, channels)
    mean = raw.mean(dim=(0, 2, 3, 4))
    std = raw.std(dim=(0, 2, 3, 4)).clamp_min(1e-3)
    return tuple(round(float(v), 6) for v in mean), tuple(round(float(v), 6) for v in std)


def vae_config_of(run_dir: Path) -> WanVAEConfig:
    """The finished stage's VAE config (latent channels and statistics), without building the model."""
    _, config = load_weights(Path(run_dir) / "vae" / FINAL)
    return WanVAEConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in config["vae"].items()})


def load_vae(run_dir: Path, device: torch.device | str = "cpu") -> WanVAE:
    """The finished stage's VAE (with its latent statistics), ready to encode."""
    parts, _ = load_weights(Path(run_dir) / "vae" / FINAL)
    vae = WanVAE(vae_config_of(run_dir))
    vae.load_state_dict(parts["vae"])
    return vae.to(device).eval().requires_grad_(False)


def run(recipe: VAERecipe, run_dir: Path, resume: bool = False, console=None) -> Path:
    """Train, measure the latent statistics, and write ``vae/final.safetensors``."""
    device = pick_device()
    torch.manual_seed(recipe.seed)
    vae = WanVAE(vae_config(recipe)).to(device)
    rand = Randomness(recipe.seed)
    optimizer, scheduler = adamw(list(vae.parameters()), recipe.lr, 20, recipe.steps)
    state = TrainState({"vae": vae}, optimizer, scheduler, rand)

    def step(_: int) -> dict[str, float]:
        video = random_videos(rand.np, recipe.batch, recipe.frames, recipe.size)
        video = random_crop(torch.cat([video, foreground(video)], dim=1), recipe.crop, rand.np).to(device)
        video, weight = video[:, :3], 1.0 + (recipe.foreground_weight - 1.0) * video[:, 3:]
        target = world_latents(video, vae.cfg.z_dim)
        encoder = F.mse_loss(encode_mean(vae, video), target)
        recon = decode_raw(vae, target + recipe.latent_noise * rand.randn(*target.shape).to(device))
        decoder = (weight * (recon - video).pow(2)).mean() / weight.mean()
        loss = recipe.encoder_weight * encoder + decoder
        loss.backward()
        state.step(list(vae.parameters()), grad_clip=1.0)
        return {"loss": loss.item(), "encoder": encoder.item(), "decoder": decoder.item()}

    with Session(run_dir, "vae", recipe, resume, console) as session:
        session.train(state, step, recipe.precision)
        vae.eval()
        videos = random_videos(Randomness(recipe.seed + 1).np, recipe.stats_clips, STATS_FRAMES, recipe.size)
        mean, std = latent_stats(videos, vae.cfg.z_dim)
        cfg = replace(vae.cfg, latent_mean=mean, latent_std=std)
        session.log.note(f"latent std per channel: {' '.join(f'{s:.3g}' for s in std)}")
        path = session.folder / FINAL
        save_weights(path, {"vae": vae.state_dict()}, {"vae": asdict(cfg)})
        write_summary(
            session.folder,
            {
                "stage": "vae",
                "steps": recipe.steps,
                "wall_s": round(session.log.wall_s, 1),
                "params": sum(p.numel() for p in vae.parameters()),
                "recipe": recipe_dict(recipe),
                "latent_std": std,
            },
        )
        session.log.note(f"wrote {path} ({json.dumps({'dim': cfg.dim, 'z_dim': cfg.z_dim})})")
    return path
