"""How well a run's fast decoder keeps each shape and size readable: the ceiling it sets for any generator.

Ground-truth clips of every shape x size (other attributes drawn at random) are turned into the tiny latent space,
decoded by ``RUN/decoder`` and read back by the detector, beside the same clips read directly. A shape the decoder
rounds off (small squares, first) caps the adherence of every model that renders through it.

    python scripts/decoder_ceiling.py RUN [--clips 6] [--seconds 4] > ceiling.json
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from longlive_cli.train.decoder import load_fast_decoder, through_latents
from longlive_cli.train.vae import load_vae
from longlive_cli.world.grammar import VALUES
from longlive_cli.world.metrics import evaluate, summarise
from longlive_cli.world.scene import FPS
from longlive_cli.world.timelines import random_attributes, render_timeline


@torch.no_grad()
def ceiling(run: Path, clips: int, seconds: float, size: int, seed: int) -> dict[str, dict[str, float | None]]:
    """Shape and all-attribute adherence per shape x size, on ground truth and on its decoded latents."""
    taehv, _ = load_fast_decoder(run)
    vae = load_vae(run)
    mean, std = vae.cfg.latent_mean, vae.cfg.latent_std
    rng = np.random.default_rng(seed)
    out = {}
    for shape in VALUES["shape"]:
        for object_size in VALUES["size"]:
            truth, decoded = [], []
            for i in range(clips):
                attrs = replace(random_attributes(rng), shape=shape, size=object_size)
                timeline = [(0.0, attrs)]
                frames, _ = render_timeline(timeline, seconds, size=size, seed=i)
                truth.append(evaluate(frames, FPS, timeline))
                decoded.append(evaluate(through_latents(taehv, frames, mean, std), FPS, timeline))
            t, d = summarise(truth), summarise(decoded)
            out[f"{shape} {object_size}"] = {
                "truth_shape": t["adherence_shape"],
                "decoded_shape": d["adherence_shape"],
                "truth_all": t["adherence_all"],
                "decoded_all": d["adherence_all"],
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a training run folder with vae/ and decoder/")
    parser.add_argument("--clips", type=int, default=6, help="clips per shape x size")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--size", type=int, default=96, help="frame side in pixels")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(json.dumps(ceiling(args.run, args.clips, args.seconds, args.size, args.seed), indent=1))


if __name__ == "__main__":
    main()
