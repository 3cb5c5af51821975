"""Where a trained student puts the object at each of its four steps, given ground-truth context in the KV cache.

For pool clips without a prompt change, the cache is filled chunk by chunk with the clean ground truth (as the
engine's cache pass would), then the next chunk is noised to each warped timestep with fresh noise and the student's
x0 prediction is compared with the truth: the object's centroid error (colourfulness channel, in latent cells),
beside the error of a still copy of the last context frame. A student that has learned motion beats the copy from
the first step on.

    python scripts/first_step_probe.py RUN [--weights FILE] [--chunks 2 4] [--clips 6]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from longlive_cli.train import text as text_lib
from longlive_cli.train.artifacts import FINAL, read_summary
from longlive_cli.train.checkpoint import Randomness
from longlive_cli.train.latents import COLOURFUL, OBJECT_THRESHOLD
from longlive_cli.train.recipe import recipe_from_dict
from longlive_cli.train.student import StreamingTrainer
from longlive_cli.train.teacher import load_dit_and_text, load_pool
from longlive_cli.world.grammar import MOTIONS, describe


def centroids(z: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """Object centroid (x, y) in latent cells per frame of normalised latents [..., C, h, w]."""
    raw = z[..., COLOURFUL, :, :] * std[COLOURFUL] + mean[COLOURFUL]
    w = (raw - OBJECT_THRESHOLD).clamp(min=0)
    ys, xs = torch.meshgrid(torch.arange(z.shape[-2]), torch.arange(z.shape[-1]), indexing="ij")
    total = w.sum((-2, -1)).clamp(min=1e-6)
    return torch.stack([(w * xs).sum((-2, -1)) / total, (w * ys).sum((-2, -1)) / total], -1)


@torch.no_grad()
def probe(run: Path, weights: Path, chunks: list[int], clips: int) -> dict:
    """Centroid errors per motion, context length and step, with the still-copy baseline."""
    recipe = recipe_from_dict(read_summary(run / "student")["recipe"], "student")
    dit, text, _ = load_dit_and_text(weights)
    pool = load_pool(run, recipe.pool, recipe.size, lambda _: None)
    trainer = StreamingTrainer(dit, text, recipe, Randomness(0))
    n, rng = recipe.chunk_frames, np.random.default_rng(0)
    torch.manual_seed(0)
    out = {}
    for motion in MOTIONS:
        idx = [i for i, c in enumerate(pool.change) if c < 0 and pool.attributes[i][0].motion == motion][:clips]
        if not idx:
            continue
        x0 = pool.latents[idx]
        b, _, _, h, w = x0.shape
        prompt = dit.encode_prompt(text_lib.encode(text, [describe(pool.attributes[i][0], rng) for i in idx]))
        truth = centroids(x0, pool.mean, pool.std)
        for c in chunks:
            start = c * n
            cache = trainer.new_cache(b, h, w)
            for k in range(c):
                trainer.sampler.cache_pass(x0[:, k * n : (k + 1) * n], prompt, cache, k * n)
            target = x0[:, start : start + n]
            want = truth[:, start : start + n]
            row = {"copy": (truth[:, start - 1 : start] - want).norm(dim=-1).mean().item()}
            for s, t in enumerate(trainer.timesteps[: len(recipe.timesteps)]):
                tt = t.expand(b, n)
                noisy = trainer.schedule.add_noise(target, torch.randn_like(target), tt)
                pred = trainer.schedule.x0_from_flow(dit(noisy, tt, prompt, cache, start), noisy, tt)
                row[f"step {s + 1}"] = (centroids(pred, pool.mean, pool.std) - want).norm(dim=-1).mean().item()
            out[f"{motion}, chunk {c}"] = {k: round(v, 2) for k, v in row.items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a training run folder with a finished student stage")
    parser.add_argument("--weights", type=Path, help="student weights (default RUN/student/final.safetensors)")
    parser.add_argument("--chunks", type=int, nargs="+", default=[2, 4], help="chunks of context before the probe")
    parser.add_argument("--clips", type=int, default=6, help="clips per motion")
    args = parser.parse_args()
    rows = probe(args.run, args.weights or args.run / "student" / FINAL, args.chunks, args.clips)
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
