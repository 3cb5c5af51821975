"""ShapesWorld quality of a render or of a model: adherence, switch latency, continuity and drift.

``eval_video`` scores one MP4 against its timeline. ``run_suite`` renders a fixed held-out suite in memory
(single prompts, prompt changes, one long run) with a model and scores every video; the suite is a pure
function of its seeds, so two models (or two switch policies) are compared on the same timelines.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from .bundle import Bundle
from .engine import SeededNoise, Segment, StreamingGenerator, SwitchPolicy
from .pipeline import FramePipeline
from .timeline import Timeline, latent_frames_for, parse_timeline, requested_latent
from .video import read_frames, sidecar_path
from .world.grammar import describe
from .world.metrics import MetricsConfig, evaluate, merge_readings, summarise
from .world.timelines import random_timeline, returning_timeline


@dataclass(frozen=True)
class SuitePart:
    """A family of timelines: how many, how long, how many changes, held-out combinations or trained ones."""

    name: str
    runs: int
    duration_s: float
    changes: int
    seed: int
    held_out: bool = True
    returning: bool = False  # the last change brings back the first prompt, in the same words, for drift
    extended: bool = False  # run only when asked for by name: too long for the default suite, reported apart


HELD_OUT_PART, SEEN_PART, CHANGES_PART, LONG_PART = "single 20 s", "single 20 s, seen", "changes 20 s", "long 240 s"
SUITE = (
    SuitePart(HELD_OUT_PART, runs=8, duration_s=20.0, changes=0, seed=100),
    SuitePart(SEEN_PART, runs=8, duration_s=20.0, changes=0, seed=150, held_out=False),
    SuitePart(CHANGES_PART, runs=8, duration_s=20.0, changes=3, seed=200),
    SuitePart(LONG_PART, runs=4, duration_s=240.0, changes=5, seed=303, returning=True),
    SuitePart("long 20 min", runs=2, duration_s=1200.0, changes=9, seed=404, returning=True, extended=True),
)


class EvalError(ValueError):
    """A video that cannot be scored against its timeline."""


def timeline_of(video: Path) -> Timeline:
    """The timeline a video was rendered from, as its sidecar recorded it (prompts, times, length, frame rate)."""
    side = sidecar_path(Path(video))
    if not side.is_file():
        raise EvalError(f"{video}: give --timeline; there is no sidecar {side} to take it from")
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
        settings, changes = data["settings"], data["changes"]
        fields = {
            "version": 1,
            "duration": f"{settings['frames']}f",
            "fps": settings["fps"],
            "prompts": [{"at": c["requested_s"], "text": c["text"]} for c in changes],
        }
    except (ValueError, KeyError, TypeError) as e:
        raise EvalError(f"{side}: not a render sidecar ({e}); give --timeline") from None
    return parse_timeline(json.dumps(fields), side)


def eval_video(path: Path, timeline: Timeline, drift_share: float = MetricsConfig.drift_share) -> dict:
    """Metrics of an MP4 rendered from ``timeline``; drift compares its first and last ``drift_share``; a video
    shorter than its timeline is scored as far as it goes, with a warning, and prompts after its end are left out."""
    frames = np.stack(list(read_frames(path)))
    seconds, expected = len(frames) / timeline.fps, timeline.frames()
    prompts = [(p.at, p.text) for p in timeline.prompts if p.at < seconds]
    warnings = []
    if len(frames) < expected:
        left_out = len(timeline.prompts) - len(prompts)
        warnings.append(
            f"{path}: {len(frames)} frames ({seconds:.2f} s), but its timeline lasts {expected} frames "
            f"({timeline.duration:g} s); scoring what there is"
            + (f", without the {left_out} prompt(s) after the end" if left_out else "")
        )
    return {**evaluate(frames, timeline.fps, prompts, MetricsConfig(drift_share=drift_share)), "warnings": warnings}


def suite_timelines(part: SuitePart) -> list[list[tuple[float, str]]]:
    """The part's timelines as (seconds, prompt text): held-out attribute combinations, or trained ones (new wording,
    new seed) for a ``seen`` part."""
    rng = np.random.default_rng(part.seed)
    out = []
    for _ in range(part.runs):
        if part.returning:
            changes = returning_timeline(rng, part.duration_s, part.changes, MetricsConfig().drift_share, part.held_out)
            texts = [describe(attrs, rng) for _, attrs in changes[:-1]]
            out.append([(at, text) for (at, _), text in zip(changes, [*texts, texts[0]], strict=True)])
        else:
            changes = random_timeline(rng, part.duration_s, part.changes, held_out=part.held_out)
            out.append([(at, describe(attrs, rng)) for at, attrs in changes])
    return out


@torch.no_grad()
def render_frames(
    bundle: Bundle, prompts: Sequence[tuple[float, str]], duration_s: float, seed: int, policy: SwitchPolicy
) -> np.ndarray:
    """uint8 frames [N, H, W, 3] of a timeline rendered in memory with the model's default decoder.

    RoPE positions are chosen as ``render`` chooses them by default: relative when the video outruns the table.
    """
    spec = bundle.spec
    chunk = spec.engine.chunk_frames
    total = round(duration_s * spec.fps)
    latents = latent_frames_for(total, chunk)
    engine = replace(spec.engine, positions="relative" if latents > bundle.dit.rope.max_positions else "absolute")
    context = torch.cat([bundle.text.encode([text]) for _, text in prompts])
    segments = [
        Segment(requested_latent(at, spec.fps), context[i : i + 1], policy) for i, (at, _) in enumerate(prompts)
    ]
    gen = StreamingGenerator(bundle.dit, engine, spec.latent_shape, SeededNoise(seed))
    pipeline = FramePipeline(bundle.decoder(), gen.device, limit=total)
    return np.concatenate([frames for _, frames in pipeline.run(gen.stream(segments, latents))])


def run_suite(
    bundle: Bundle,
    policy: SwitchPolicy = SwitchPolicy.RECACHE,
    long: bool = True,
    progress=None,
    parts: Sequence[str] = (),
) -> dict[str, dict]:
    """One summary row per suite part (those named in ``parts``, else all but the extended ones), what its misses
    were read as, and every run's full metrics."""
    unknown = [name for name in parts if name not in {p.name for p in SUITE}]
    if unknown:
        raise ValueError(f"unknown suite part '{unknown[0]}'; the parts are: {', '.join(p.name for p in SUITE)}")
    rows, readings, runs = {}, {}, {}
    for part in SUITE:
        named = part.name in parts
        if (
            (part.changes and part.duration_s > 60 and not long)
            or (parts and not named)
            or (part.extended and not named)
        ):
            continue
        results = []
        for i, prompts in enumerate(suite_timelines(part)):
            frames = render_frames(bundle, prompts, part.duration_s, part.seed + i, policy)
            results.append(evaluate(frames, bundle.spec.fps, prompts))
            if progress is not None:
                progress(part.name, i + 1, part.runs)
        rows[part.name] = summarise(results)
        readings[part.name] = merge_readings(results)
        runs[part.name] = results
    return {"policy": SwitchPolicy(policy).value, "rows": rows, "readings": readings, "runs": runs}
