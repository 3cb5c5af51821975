"""Whether a run's teacher renders each shape and motion and heeds its shape word: the check before distilling.

Three readings of ``RUN/teacher`` through ``RUN/decoder`` and the detector, in a few minutes on one CPU thread:

- samples: the bidirectional teacher sampled from noise (Euler, classifier-free guidance) for every shape x motion
  (one size, colour and background), read back frame by frame, and how fast each moves its object (median centroid
  speed, frame sides per second) beside the world's own clip of the same prompt read back through the same decoder;
- steering: still pool clips (their object sits at the centre, so the prompt fixes every pixel) noised to each level
  and denoised in one step, once under the right shape word and once under another. A teacher that uses the word
  reads back the prompted shape; one that ignores it reads back the noisy input's;
- attention: the share of each layer's cross-attention that every word of one prompt receives (the rest goes to
  the end token and the padding).

    python scripts/teacher_probe.py RUN [--steps 20] [--guidance 3] [--clips 12] [--seconds 3] [--object-size large]
"""

from __future__ import annotations

import argparse
import itertools
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from longlive_cli.models.attention import CrossAttention
from longlive_cli.schedule import FlowMatchSchedule
from longlive_cli.train import text as text_lib
from longlive_cli.train.artifacts import FINAL, read_summary
from longlive_cli.train.decoder import load_fast_decoder, through_latents
from longlive_cli.train.latents import image_latent
from longlive_cli.train.recipe import recipe_from_dict
from longlive_cli.train.teacher import UNCOND, load_dit_and_text, load_pool
from longlive_cli.train.vae import vae_config_of
from longlive_cli.video import to_uint8_frames
from longlive_cli.world.detector import detect
from longlive_cli.world.grammar import MOTION_TEXT, MOTIONS, SHAPES, SIZES, Attributes, describe
from longlive_cli.world.metrics import evaluate
from longlive_cli.world.scene import FPS
from longlive_cli.world.timelines import render_timeline

SIGMAS = (0.2, 0.4, 0.6, 0.75, 0.9)
PROMPT = "a {size} {color} {shape} {motion} on a {background} background"


def prompt_for(shape: str, motion: str, color: str, background: str, size: str = "large") -> str:
    """The canonical wording of one grid cell."""
    return PROMPT.format(size=size, color=color, shape=shape, motion=MOTION_TEXT[motion][0], background=background)


@torch.no_grad()
def sample(dit, text, prompt: str, frames: int, hw: tuple[int, int], steps: int, guidance: float, seed: int):
    """Latents [1, frames, C, h, w] from noise: Euler over the shift-5 table, guided away from the empty prompt."""
    schedule = FlowMatchSchedule(5.0)
    idx = np.linspace(0, schedule.num_train_timesteps - 1, steps).round().astype(int)
    ts, sigmas = schedule.timesteps[idx], torch.cat([schedule.sigmas[idx], torch.zeros(1)])
    cond, uncond = (dit.encode_prompt(text_lib.encode(text, [p])) for p in (prompt, UNCOND))
    x = torch.randn(1, frames, dit.cfg.in_dim, *hw, generator=torch.Generator().manual_seed(seed))
    for j in range(steps):
        t = ts[j].expand(1, frames)
        v_uncond = dit(x, t, uncond)
        x = x + (sigmas[j + 1] - sigmas[j]) * (v_uncond + guidance * (dit(x, t, cond) - v_uncond))
    return x


def mean(values: list[float | None]) -> float | None:
    """Mean of the readings there are (None where the detector found nothing to score)."""
    kept = [v for v in values if v is not None]
    return round(float(np.mean(kept)), 3) if kept else None


def mean_hits(reads: list[np.ndarray], attrs: list) -> float:
    """Share of frames, averaged over clips, whose shape reading is each clip's ``attrs`` shape."""
    return round(float(np.mean([np.mean(r == SHAPES.index(a.shape)) for r, a in zip(reads, attrs, strict=True)])), 3)


def decode(taehv, z: torch.Tensor) -> np.ndarray:
    """Frames uint8 [N, H, W, 3] of latents [1, F, C, h, w]."""
    return to_uint8_frames(taehv.decode(z.transpose(1, 2)))


def speed(frames: np.ndarray) -> float | None:
    """Median centroid speed in frame sides per second: how fast the object moves, whatever its path."""
    steps = np.linalg.norm(np.diff(detect(frames).centroid, axis=0), axis=1)
    return None if np.isnan(steps).all() else round(float(np.nanmedian(steps)) * FPS, 3)


def samples(dit, text, taehv, run: Path, args, hw: tuple[int, int]) -> tuple[dict, dict]:
    """Steady shape and motion adherence of one sample per shape x motion, and its speed beside the world's."""
    frames = 1 + (round(args.seconds * FPS) - 1) // 4
    cfg = vae_config_of(run)
    rows, speeds = {}, {}
    for shape, motion in itertools.product(SHAPES, MOTIONS):
        prompt = prompt_for(shape, motion, args.color, args.background, args.object_size)
        video = decode(taehv, sample(dit, text, prompt, frames, hw, args.steps, args.guidance, seed=0))
        steady = evaluate(video, FPS, [(0.0, prompt)])["adherence"]["steady"]
        rows[f"{shape} {motion}"] = {k: steady[k] for k in ("shape", "motion")}
        attrs = Attributes(shape, args.color, args.object_size, motion, args.background)
        world, _ = render_timeline([(0.0, attrs)], len(video) / FPS, size=video.shape[1], seed=0)
        speeds[f"{shape} {motion}"] = {
            "sample": speed(video),
            "world": speed(through_latents(taehv, world, cfg.latent_mean, cfg.latent_std)),
        }
    return rows, speeds


@torch.no_grad()
def steering(dit, text, taehv, pool, clips: int, frames: int) -> dict[str, dict[str, float]]:
    """Per noise level: shape read back from one-step denoised still clips under the right and a wrong shape word."""
    idx = [i for i, c in enumerate(pool.change) if c < 0 and pool.attributes[i][0].motion == "still"][:clips]
    x0 = torch.stack(
        [torch.cat([image_latent(pool.latents[i, :1], pool.mean, pool.std), pool.latents[i, 1:frames]]) for i in idx]
    )
    truth = [pool.attributes[i][0] for i in idx]
    wrong = [replace(a, shape=SHAPES[(SHAPES.index(a.shape) + 1) % len(SHAPES)]) for a in truth]
    rng = np.random.default_rng(0)
    contexts = {
        name: (attrs, dit.encode_prompt(text_lib.encode(text, [describe(a, rng) for a in attrs])))
        for name, attrs in (("right word", truth), ("wrong word", wrong))
    }
    schedule = FlowMatchSchedule(5.0)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
    out = {}
    for sigma in SIGMAS:
        t = torch.full(x0.shape[:2], sigma * schedule.num_train_timesteps)
        xt = schedule.add_noise(x0, noise, t)
        row = {}
        for name, (attrs, context) in contexts.items():
            pred = schedule.x0_from_flow(dit(xt, t, context), xt, t)
            reads = [detect(decode(taehv, pred[b : b + 1])).shape for b in range(len(idx))]
            row[f"{name}: prompted shape"] = mean_hits(reads, attrs)
            if name == "wrong word":
                row["wrong word: true shape"] = mean_hits(reads, truth)
        out[f"sigma {sigma}"] = row
    return out


@torch.no_grad()
def attention(dit, text, prompt: str, hw: tuple[int, int]) -> dict[str, list[float]]:
    """Share of cross-attention per prompt word and layer (mean over heads and video tokens), at sigma 0.75."""
    shares: list[torch.Tensor] = []
    forward = CrossAttention.forward

    def recording(self: CrossAttention, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        b, n, _ = x.shape
        q = self.norm_q(self.q(x)).view(b, n, self.num_heads, self.head_dim).transpose(1, 2)
        weights = F.softmax(q @ kv[0].transpose(-1, -2) / self.head_dim**0.5, dim=-1)
        shares.append(weights[0].mean((0, 1)))
        return forward(self, x, kv)

    CrossAttention.forward = recording
    try:
        x = torch.randn(1, 3, dit.cfg.in_dim, *hw, generator=torch.Generator().manual_seed(2))
        dit(x, torch.full((1, 3), 750.0), dit.encode_prompt(text_lib.encode(text, [prompt])))
    finally:
        CrossAttention.forward = forward
    words = prompt.split()
    _, mask = text.tokenize([prompt])
    if int(mask.sum()) != len(words) + 1:
        raise ValueError(f"expected one token per word and an end token for {prompt!r}")
    table = {f"{word} ({k + 1})": [round(float(s[k]), 3) for s in shares] for k, word in enumerate(words)}
    table["(end)"] = [round(float(s[len(words)]), 3) for s in shares]
    table["(padding)"] = [round(float(s[len(words) + 1 :].sum()), 3) for s in shares]
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a training run folder with finished decoder and teacher stages")
    parser.add_argument("--weights", type=Path, help="teacher weights (default RUN/teacher/final.safetensors)")
    parser.add_argument("--steps", type=int, default=20, help="Euler steps per sample")
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each sample")
    parser.add_argument("--clips", type=int, default=12, help="still pool clips for the steering reading")
    parser.add_argument("--color", default="red")
    parser.add_argument("--background", default="black")
    parser.add_argument("--object-size", default="large", choices=SIZES, help="size of the sampled objects")
    args = parser.parse_args()
    torch.manual_seed(0)
    recipe = recipe_from_dict(read_summary(args.run / "teacher")["recipe"], "teacher")
    dit, text, _ = load_dit_and_text(args.weights or args.run / "teacher" / FINAL)
    dit.eval()
    taehv, _ = load_fast_decoder(args.run)
    pool = load_pool(args.run, recipe.pool, recipe.size, lambda _: None)
    hw = tuple(pool.latents.shape[-2:])
    rows, speeds = samples(dit, text, taehv, args.run, args, hw)
    report = {
        "object size": args.object_size,
        "samples": rows,
        "speeds": speeds,
        "shape by shape": {s: mean([rows[f"{s} {m}"]["shape"] for m in MOTIONS]) for s in SHAPES},
        "motion by motion": {m: mean([rows[f"{s} {m}"]["motion"] for s in SHAPES]) for m in MOTIONS},
        "speed by motion": {
            m: {k: mean([speeds[f"{s} {m}"][k] for s in SHAPES]) for k in ("sample", "world")} for m in MOTIONS
        },
        "steering": steering(dit, text, taehv, pool, args.clips, recipe.frames),
        "attention": attention(dit, text, prompt_for("circle", "still", args.color, args.background), hw),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
