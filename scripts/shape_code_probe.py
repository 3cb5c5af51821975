"""Whether a run with the 17-channel latent space (vae z_dim 17) uses its shape code, at both ends.

- teacher: the bidirectional teacher sampled for every size x shape (red on black, three motions); the share of
  latent frames whose shape-code level (channel 16 over colourfulness) names the prompted shape;
- decoder: ground-truth clips of every size x shape with the code's level set to each shape in turn, decoded by
  ``RUN/decoder`` and read back by the detector; a decoder that draws what the code says reads back the code's
  shape, one that reads the shape from the other channels reads back the clip's own.

    python scripts/shape_code_probe.py RUN [--teacher WEIGHTS] [--clips 3] [--size 96] > probe.json
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from teacher_probe import sample

from longlive_cli.train.artifacts import FINAL
from longlive_cli.train.data import to_video
from longlive_cli.train.decoder import load_fast_decoder
from longlive_cli.train.latents import (
    COLOURFUL,
    FILL,
    SHAPE_CODE,
    SHAPED_CHANNELS,
    fill_code,
    normalize,
    world_latents,
)
from longlive_cli.train.teacher import load_dit_and_text
from longlive_cli.train.vae import vae_config_of
from longlive_cli.video import to_uint8_frames
from longlive_cli.world.detector import detect
from longlive_cli.world.grammar import MOTION_TEXT, SHAPES, SIZES
from longlive_cli.world.scene import OBJECT_RGB
from longlive_cli.world.timelines import random_attributes, render_timeline

CODES = {shape: fill_code(torch.tensor(fill)).item() for shape, fill in FILL.items()}  # each shape's code level
RED_COLOURFULNESS = (max(OBJECT_RGB["red"]) - min(OBJECT_RGB["red"])) / 127.5  # in the [-1, 1] pixel scale


@torch.no_grad()
def teacher_codes(weights: Path, mean: torch.Tensor, std: torch.Tensor, size: int) -> dict[str, float]:
    """Share of sampled latent frames whose code level is nearest the prompted shape's, per size x shape."""
    dit, text, _ = load_dit_and_text(weights)
    dit.eval()
    levels = np.array([CODES[s] for s in SHAPES])
    out = {}
    for object_size in SIZES:
        for shape in SHAPES:
            hits = []
            for seed, motion in enumerate(("still", "horizontal", "circling")):
                prompt = f"a {object_size} red {shape} {MOTION_TEXT[motion][0]} on a black background"
                z = sample(dit, text, prompt, 12, (size // 8, size // 8), 20, 3.0, seed)[0]
                raw = z * std.view(-1, 1, 1) + mean.view(-1, 1, 1)
                code = raw[:, SHAPE_CODE].clamp_min(0).sum((1, 2)) / raw[:, COLOURFUL].clamp_min(1e-3).sum((1, 2))
                read = np.abs((code * RED_COLOURFULNESS).numpy()[:, None] - levels[None]).argmin(1)
                hits.append(float(np.mean(read == SHAPES.index(shape))))
            out[f"{object_size} {shape}"] = round(float(np.mean(hits)), 3)
    return out


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
                    raw = world_latents(to_video(frames[: 1 + 4 * ((len(frames) - 1) // 4)])[None], SHAPED_CHANNELS)
                    raw[:, SHAPE_CODE] *= CODES[told] / CODES[true]
                    decoded = to_uint8_frames(taehv.decode(normalize(raw, mean, std)))
                    hits.append(float(np.mean(detect(decoded).shape == SHAPES.index(told))))
                row[told] = round(float(np.mean(hits)), 3)
            out[f"{object_size} {true}"] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a training run folder with vae/ and decoder/ (and teacher/)")
    parser.add_argument("--teacher", type=Path, help="teacher weights (default RUN/teacher/final.safetensors)")
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
    if weights.is_file():
        mean, std = torch.tensor(cfg.latent_mean), torch.tensor(cfg.latent_std)
        report["teacher's code names the prompted shape"] = teacher_codes(weights, mean, std, args.size)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
