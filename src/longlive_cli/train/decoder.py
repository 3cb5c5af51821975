"""Stage ``decoder``: a narrow TAEHV that decodes the tiny model's normalised latents fast enough for real time.

The decoder learns latents -> frames, with a little latent noise so that imperfect generated latents still decode
cleanly, and the object's pixels weighted up (with an even loss it learns brightness and leaves colour for much
later); the encoder learns frames -> latents. The VAE stage provides the normalisation statistics.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from longlive_cli.models.taehv import TAEHV, TAEHVConfig, apply_layers
from longlive_cli.models.vae import WanVAE
from longlive_cli.train.artifacts import FINAL, load_weights, save_weights, write_summary
from longlive_cli.train.checkpoint import Randomness
from longlive_cli.train.data import random_videos, to_video
from longlive_cli.train.latents import normalize, world_latents
from longlive_cli.train.loop import Session, TrainState, pick_device
from longlive_cli.train.optim import adamw
from longlive_cli.train.recipe import DecoderRecipe, recipe_dict
from longlive_cli.train.vae import foreground, load_vae
from longlive_cli.video import to_uint8_frames
from longlive_cli.world.metrics import evaluate as score
from longlive_cli.world.metrics import summarise
from longlive_cli.world.scene import FPS
from longlive_cli.world.timelines import random_timeline, render_timeline

EVAL_CLIPS = 8
EVAL_FRAMES = 21
CEILING_CLIPS = 30
CEILING_S = 4.0


def taehv_config(recipe: DecoderRecipe, channels: int) -> TAEHVConfig:
    """The recipe's widths as a TAEHV config (lists from YAML become tuples) for the VAE's latent channels."""
    widths = {k: tuple(v) if isinstance(v, list) else v for k, v in recipe.taehv.items()}
    return TAEHVConfig(**{**widths, "latent_channels": channels})


def decode_frames(taehv: TAEHV, z: Tensor) -> Tensor:
    """Differentiable, unclamped decode: normalised latents [B, C, T, h, w] -> frames [B, 3, 1 + 4(T-1), H, W]."""
    b = z.shape[0]
    frames = apply_layers(taehv.decoder, z.transpose(1, 2).flatten(0, 1), b).unflatten(0, (b, -1))
    return frames[:, taehv.cfg.frames_to_trim :].transpose(1, 2).mul(2).sub(1)


def encode_frames(taehv: TAEHV, video: Tensor) -> Tensor:
    """Differentiable encode with ``TAEHV.encode``'s layout: [B, 3, 1 + 4k, H, W] in [-1, 1] -> [B, C, 1 + k, h, w]."""
    s = taehv.cfg.time_downscale
    x = (video + 1) / 2
    x = torch.cat([x[:, :, :1].expand(-1, -1, s - 1, -1, -1), x], 2)
    return taehv.encode_video(x.transpose(1, 2)).transpose(1, 2)


def psnr(a: Tensor, b: Tensor) -> float:
    """Peak signal-to-noise ratio in dB of two videos in [-1, 1]."""
    mse = F.mse_loss(a.clamp(-1, 1), b.clamp(-1, 1)).item()
    return 10 * torch.log10(torch.tensor(4.0 / max(mse, 1e-10))).item()


@torch.no_grad()
def through_latents(taehv: TAEHV, frames: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """Ground-truth frames (cut to whole latent groups) turned into the latent space and decoded back by ``taehv``."""
    frames = frames[: 1 + 4 * ((len(frames) - 1) // 4)]
    z = normalize(world_latents(to_video(frames)[None], len(mean)), mean, std)
    return to_uint8_frames(taehv.decode(z))


@torch.no_grad()
def detector_ceiling(taehv: TAEHV, mean: tuple[float, ...], std: tuple[float, ...], seed: int, size: int) -> dict:
    """Adherence the detector reads from decoded ground truth: what no generator on this decoder can exceed."""
    rng = np.random.default_rng(seed)
    results = []
    for i in range(CEILING_CLIPS):
        timeline = random_timeline(rng, CEILING_S, 0)
        frames, _ = render_timeline(timeline, CEILING_S, size=size, seed=i)
        results.append(score(through_latents(taehv, frames, mean, std), FPS, timeline))
    row = summarise(results)
    values = {name: row[f"adherence_{name}"] for name in ("shape", "all")}
    return {f"ceiling_{name}": None if v is None else round(v, 3) for name, v in values.items()}


@torch.no_grad()
def evaluate(vae: WanVAE, taehv: TAEHV, seed: int, size: int) -> dict[str, float]:
    """Reconstruction PSNR of both decoders and both encoders' latent error on fresh clips, for the model card."""
    video = random_videos(Randomness(seed).np, EVAL_CLIPS, EVAL_FRAMES, size).to(next(vae.parameters()).device)
    z = normalize(world_latents(video, vae.cfg.z_dim), vae.cfg.latent_mean, vae.cfg.latent_std)
    return {
        "psnr_fast_decoder": round(psnr(taehv.decode(z), video), 2),
        "psnr_wan_decoder": round(psnr(vae.decode(z), video), 2),
        "latent_rmse_wan_encoder": round(F.mse_loss(vae.encode(video), z).sqrt().item(), 4),
        "latent_rmse_fast_encoder": round(F.mse_loss(taehv.encode(video), z).sqrt().item(), 4),
        **detector_ceiling(taehv, vae.cfg.latent_mean, vae.cfg.latent_std, seed, size),
    }


def load_fast_decoder(run_dir: Path) -> tuple[TAEHV, TAEHVConfig]:
    """The finished stage's TAEHV and its config."""
    parts, config = load_weights(Path(run_dir) / "decoder" / FINAL)
    cfg = TAEHVConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in config["taehv"].items()})
    taehv = TAEHV(cfg)
    taehv.load_state_dict(parts["taehv"])
    return taehv.eval().requires_grad_(False), cfg


def run(recipe: DecoderRecipe, run_dir: Path, resume: bool = False, console=None) -> Path:
    """Train the fast decoder and encoder against the VAE of ``run_dir`` and write ``decoder/final.safetensors``."""
    device = pick_device()
    vae = load_vae(run_dir, device)
    torch.manual_seed(recipe.seed)
    taehv = TAEHV(taehv_config(recipe, vae.cfg.z_dim)).to(device)
    rand = Randomness(recipe.seed)
    optimizer, scheduler = adamw(
        list(taehv.parameters()), recipe.lr, recipe.warmup, recipe.steps, recipe.restarts, recipe.restart_lr
    )
    state = TrainState({"taehv": taehv}, optimizer, scheduler, rand)

    def step(_: int) -> dict[str, float]:
        video = random_videos(rand.np, recipe.batch, recipe.frames, recipe.size).to(device)
        z = normalize(world_latents(video, vae.cfg.z_dim), vae.cfg.latent_mean, vae.cfg.latent_std)
        noisy = z + recipe.latent_noise * rand.randn(*z.shape).to(device)
        recon = decode_frames(taehv, noisy)
        weight = 1.0 + (recipe.foreground_weight - 1.0) * foreground(video)
        decoder_loss = (weight * ((recon - video).abs() + (recon - video).pow(2))).mean() / weight.mean()
        encoder_loss = F.mse_loss(encode_frames(taehv, video), z)
        loss = decoder_loss + recipe.encoder_weight * encoder_loss
        loss.backward()
        state.step(list(taehv.parameters()), grad_clip=1.0)
        return {"loss": loss.item(), "decoder": decoder_loss.item(), "encoder": encoder_loss.item()}

    with Session(run_dir, "decoder", recipe, resume, console) as session:
        session.train(state, step, recipe.precision)
        taehv.eval()
        scores = evaluate(vae, taehv, recipe.seed + 1, recipe.size)
        session.log.note(
            f"reconstruction PSNR: fast decoder {scores['psnr_fast_decoder']} dB, Wan decoder "
            f"{scores['psnr_wan_decoder']} dB"
        )
        path = session.folder / FINAL
        save_weights(path, {"taehv": taehv.state_dict()}, {"taehv": asdict(taehv.cfg)})
        write_summary(
            session.folder,
            {
                "stage": "decoder",
                "steps": recipe.steps,
                "wall_s": round(session.log.wall_s, 1),
                "params": sum(p.numel() for p in taehv.parameters()),
                "recipe": recipe_dict(recipe),
                **scores,
            },
        )
    return path
