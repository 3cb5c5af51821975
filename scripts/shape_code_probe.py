"""Whether a run with the 17-channel latent space (vae z_dim 17) uses its shape code, at both ends.

- teacher: the bidirectional teacher sampled for every size x shape (red on black, three motions); the share of
  latent frames whose shape code (channel 16 on the object's cells) names the prompted shape;
- student (``--student WEIGHTS``): the same reading of a causal student streamed as the engine renders (its own
  chunks, window, sink and steps);
- decoder: ground-truth clips of every size x shape with the code set to each shape in turn, decoded by
  ``RUN/decoder`` and read back by the detector: the share of frames drawn as the code says.

    python scripts/shape_code_probe.py RUN [--teacher WEIGHTS] [--student WEIGHTS] [--clips 3] [--size 96] > probe.json
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from teacher_probe import sample

from longlive_cli.engine import EngineConfig, Segment, StreamingGenerator
from longlive_cli.sampler import GeneratorNoise
from longlive_cli.train import text as text_lib
from longlive_cli.train.artifacts import FINAL
from longlive_cli.train.data import to_video
from longlive_cli.train.decoder import load_fast_decoder
from longlive_cli.train.latents import (
    CODES,
    COLOURFUL,
    OBJECT_THRESHOLD,
    SHAPE_CODE,
    SHAPED_CHANNELS,
    TIME_STRIDE,
    code_channel,
    normalize,
    shape_code,
    world_latents,
)
from longlive_cli.train.teacher import load_dit_and_text
from longlive_cli.train.vae import vae_config_of
from longlive_cli.video import to_uint8_frames
from longlive_cli.world.detector import detect
from longlive_cli.world.grammar import MOTION_TEXT, SHAPES, SIZES
from longlive_cli.world.timelines import random_attributes, render_timeline

FRAMES = 12  # latent frames sampled per prompt


def named_shapes(z: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> np.ndarray:
    """Per latent frame of normalised latents [F, C, h, w]: the shape whose level is nearest the mean code on the
    object's cells (its colourfulness marks them; a circle's code is zero), -1 where no cell holds the object."""
    raw = z * std.view(-1, 1, 1) + mean.view(-1, 1, 1)
    on = raw[:, COLOURFUL] > OBJECT_THRESHOLD
    level = (raw[:, SHAPE_CODE] * on).sum((1, 2)) / on.sum((1, 2)).clamp_min(1)
    levels = torch.tensor([CODES[s] for s in SHAPES])
    return np.where(on.any(2).any(1).numpy(), (level[:, None] - levels).abs().argmin(1).numpy(), -1)


def codes(generate, mean: torch.Tensor, std: torch.Tensor) -> dict[str, float]:
    """Share of generated latent frames whose code names the prompted shape, per size x shape; ``generate(prompt,
    seed)`` returns normalised latents [F, C, h, w]."""
    out = {}
    for object_size in SIZES:
        for shape in SHAPES:
            hits = []
            for seed, motion in enumerate(("still", "horizontal", "circling")):
                prompt = f"a {object_size} red {shape} {MOTION_TEXT[motion][0]} on a black background"
                hits.append(float(np.mean(named_shapes(generate(prompt, seed), mean, std) == SHAPES.index(shape))))
            out[f"{object_size} {shape}"] = round(float(np.mean(hits)), 3)
    return out


@torch.no_grad()
def teacher_codes(weights: Path, mean: torch.Tensor, std: torch.Tensor, size: int) -> dict[str, float]:
    """``codes`` of the bidirectional teacher, sampled in 20 guided Euler steps."""
    dit, text, _ = load_dit_and_text(weights)
    dit.eval()
    return codes(lambda p, seed: sample(dit, text, p, FRAMES, (size // 8, size // 8), 20, 3.0, seed)[0], mean, std)


@torch.no_grad()
def student_codes(weights: Path, mean: torch.Tensor, std: torch.Tensor, size: int) -> dict[str, float]:
    """``codes`` of a causal student streamed chunk by chunk over its cache, with the settings it ships with."""
    dit, text, config = load_dit_and_text(weights)
    dit.eval()
    engine = EngineConfig(**{**config["engine"], "steps": tuple(config["engine"]["steps"])})

    def generate(prompt: str, seed: int) -> torch.Tensor:
        noise = GeneratorNoise(torch.Generator().manual_seed(seed))
        streamer = StreamingGenerator(dit, engine, (dit.cfg.in_dim, size // 8, size // 8), noise)
        segments = [Segment(0, text_lib.encode(text, [prompt]))]
        return torch.cat([chunk.latents for chunk in streamer.stream(segments, FRAMES)], 1)[0]

    return codes(generate, mean, std)


@torch.no_grad()
def decoder_follows(run: Path, clips: int, size: int, mean: tuple, std: tuple) -> dict[str, dict[str, float]]:
    """Per size x shape of the clip: the share of decoded frames read as each shape the code was set to."""
    taehv, _ = load_fast_decoder(run)
    rng = np.random.default_rng(3)
    out = {}
    for object_size in SIZES:
        for true in SHAPES:
            row = {}
            for told in SHAPES:
                hits = []
                for i in range(clips):
                    attrs = replace(random_attributes(rng), shape=true, size=object_size)
                    frames, _ = render_timeline([(0.0, attrs)], 2.0, size=size, seed=i)
                    video = to_video(frames[: 1 + 4 * ((len(frames) - 1) // 4)])
                    raw = world_latents(video[None], SHAPED_CHANNELS)
                    disc = shape_code(video[:, ::TIME_STRIDE].transpose(0, 1))[0]  # each latent's last frame
                    raw[0, SHAPE_CODE] = code_channel(disc, torch.full((len(disc),), CODES[told]))[:, 0]
                    decoded = to_uint8_frames(taehv.decode(normalize(raw, mean, std)))
                    hits.append(float(np.mean(detect(decoded).shape == SHAPES.index(told))))
                row[told] = round(float(np.mean(hits)), 3)
            out[f"{object_size} {true}"] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a training run folder with vae/ and decoder/ (and teacher/)")
    parser.add_argument("--teacher", type=Path, help="teacher weights (default RUN/teacher/final.safetensors)")
    parser.add_argument("--student", type=Path, help="also read a causal student's code (its weights file)")
    parser.add_argument("--clips", type=int, default=3, help="clips per size x shape x code")
    parser.add_argument("--size", type=int, default=96, help="frame side in pixels")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = vae_config_of(args.run)
    if cfg.z_dim != SHAPED_CHANNELS:
        raise SystemExit(f"{args.run}: its VAE has {cfg.z_dim} latent channels; the shape code needs 17")
    follows = decoder_follows(args.run, args.clips, args.size, cfg.latent_mean, cfg.latent_std)
    report = {"decoder draws the code's shape": follows}
    weights = args.teacher or args.run / "teacher" / FINAL
    mean, std = torch.tensor(cfg.latent_mean), torch.tensor(cfg.latent_std)
    if weights.is_file():
        report["teacher's code names the prompted shape"] = teacher_codes(weights, mean, std, args.size)
    if args.student:
        report["student's code names the prompted shape"] = student_codes(args.student, mean, std, args.size)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
