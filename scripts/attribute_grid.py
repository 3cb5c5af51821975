"""What a streaming model gets right for each shape, motion and size, and how much each prompt word moves its DiT.

Renders one single-prompt video per shape x motion x size (one colour and background, fixed seed) and reads it
back with the detector: steady-frame adherence per attribute, then the means by shape and by motion. Beside it, how
far swapping one word of a prompt moves the DiT's cross-attention values (relative change per layer): a word the
model has learned moves them well beyond a synonym, which should not move them at all.

    python scripts/attribute_grid.py [MODEL] [--seconds 6] [--color red] [--background black]
"""

from __future__ import annotations

import argparse
import itertools
import json

import numpy as np
import torch

from longlive_cli.bundle import Bundle, load_bundle
from longlive_cli.engine import SwitchPolicy
from longlive_cli.evaluate import render_frames
from longlive_cli.world.grammar import MOTIONS, SHAPES, SIZES, Attributes, describe
from longlive_cli.world.metrics import evaluate

WORDS = {
    "shape": ("circle", "triangle"),
    "color": ("red", "blue"),
    "size": ("large", "small"),
    "motion": ("sitting still", "circling"),
}
PHRASE = "a large red circle sitting still on a black background"
SYNONYM = PHRASE.replace("circle", "ball")


def grid(bundle: Bundle, seconds: float, color: str, background: str) -> dict[str, dict[str, float | None]]:
    """Steady adherence per attribute for every shape x motion x size."""
    rng = np.random.default_rng(0)
    rows = {}
    for shape, motion, size in itertools.product(SHAPES, MOTIONS, SIZES):
        text = describe(Attributes(shape, color, size, motion, background), rng)
        frames = render_frames(bundle, [(0.0, text)], seconds, 7, SwitchPolicy.RECACHE)
        steady = evaluate(frames, bundle.spec.fps, [(0.0, text)])["adherence"]["steady"]
        rows[f"{shape} {motion} {size}"] = {k: steady[k] for k in ("shape", "motion", "size", "all")}
    return rows


def means(rows: dict[str, dict[str, float | None]], attribute: str, position: int, values: tuple[str, ...]) -> dict:
    """Mean adherence to ``attribute`` over the grid cells whose ``position``-th key word is each of ``values``."""
    out = {}
    for value in values:
        hits = [r[attribute] for key, r in rows.items() if key.split()[position] == value and r[attribute] is not None]
        out[value] = round(float(np.mean(hits)), 3) if hits else None
    return out


@torch.no_grad()
def word_effect(bundle: Bundle) -> dict[str, list[float]]:
    """Relative change of each layer's cross-attention values when one word of a prompt is swapped."""
    base = bundle.dit.encode_prompt(bundle.text.encode([PHRASE]))
    texts = {name: PHRASE.replace(*pair) for name, pair in WORDS.items()} | {"synonym": SYNONYM}
    out = {}
    for name, text in texts.items():
        other = bundle.dit.encode_prompt(bundle.text.encode([text]))
        out[name] = [
            round(float((v1 - v0).norm() / v0.norm()), 3)
            for (_, v0), (_, v1) in zip(base.layers, other.layers, strict=True)
        ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="tiny", help="a converted bundle (default: the embedded tiny)")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--color", default="red")
    parser.add_argument("--background", default="black")
    args = parser.parse_args()
    torch.manual_seed(0)
    bundle = load_bundle(args.model)
    rows = grid(bundle, args.seconds, args.color, args.background)
    report = {
        "grid": rows,
        "shape by shape": means(rows, "shape", 0, SHAPES),
        "shape by motion": means(rows, "shape", 1, MOTIONS),
        "motion by motion": means(rows, "motion", 1, MOTIONS),
        "word effect": word_effect(bundle),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
