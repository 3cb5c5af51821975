"""Procedural ShapesWorld timelines (prompt changes over time) and the training clips the embedded model learns from."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from longlive_cli.world.grammar import ATTRIBUTE_NAMES, VALUES, Attributes, describe, is_held_out
from longlive_cli.world.scene import DEFAULT_SIZE, FPS, SceneState, initial_state, render_frames, step

Timeline = list[tuple[float, Attributes]]

MIN_SEGMENT_S = 2.0  # random timelines keep prompts at least this long, so every change can settle


def random_attributes(rng: np.random.Generator, held_out: bool | None = None) -> Attributes:
    """Uniform over all combinations; ``held_out`` True/False keeps only held-out/training ones, None keeps all."""
    while True:
        attrs = Attributes(**{name: VALUES[name][rng.integers(len(VALUES[name]))] for name in ATTRIBUTE_NAMES})
        if held_out is None or is_held_out(attrs) == held_out:
            return attrs


def random_change(attrs: Attributes, rng: np.random.Generator, held_out: bool | None = None) -> Attributes:
    """``attrs`` with one or two attributes set to new values, staying on the requested side of the held-out split."""
    while True:
        names = rng.choice(ATTRIBUTE_NAMES, size=int(rng.integers(1, 3)), replace=False)
        values = {name: getattr(attrs, name) for name in ATTRIBUTE_NAMES}
        for name in names:
            others = [v for v in VALUES[name] if v != values[name]]
            values[name] = others[rng.integers(len(others))]
        changed = Attributes(**values)
        if held_out is None or is_held_out(changed) == held_out:
            return changed


def random_timeline(
    rng: np.random.Generator, duration_s: float, num_changes: int, held_out: bool | None = None
) -> Timeline:
    """Prompts as (start seconds, attributes), first at 0; changes spread out with jitter, each 1-2 attributes.

    ``held_out`` applies to every prompt: True for a generalisation test, False for training-like data.
    """
    num_changes = min(num_changes, max(0, int(duration_s // MIN_SEGMENT_S) - 1))
    slot = duration_s / (num_changes + 1)
    jitter = max(0.0, (slot - MIN_SEGMENT_S) / 2)
    timeline = [(0.0, random_attributes(rng, held_out))]
    for i in range(1, num_changes + 1):
        at = round(i * slot + float(rng.uniform(-jitter, jitter)), 2)
        timeline.append((at, random_change(timeline[-1][1], rng, held_out)))
    return timeline


def returning_timeline(
    rng: np.random.Generator, duration_s: float, num_changes: int, share: float = 0.2, held_out: bool | None = None
) -> Timeline:
    """A long timeline whose last change brings back its first prompt, so that the first and the last ``share`` of
    the video ask for the same thing and drift compares like with like.

    The first prompt holds for the first ``share``; the changes are spread from there to the return, which lands
    half a ``share`` before the last ``share`` begins, to leave the model time to settle.
    """
    if num_changes < 2:
        raise ValueError(f"a returning timeline needs at least 2 changes (away and back), got {num_changes}")
    first, back = share * duration_s, (1.0 - 1.5 * share) * duration_s
    slot = (back - first) / (num_changes - 1)
    if slot < MIN_SEGMENT_S:
        raise ValueError(
            f"{num_changes} changes do not fit between {first:g} s and {back:g} s of a {duration_s:g} s video"
        )
    jitter = (slot - MIN_SEGMENT_S) / 2
    timeline = [(0.0, random_attributes(rng, held_out))]
    for i in range(num_changes - 1):
        at = first + i * slot + (float(rng.uniform(-jitter, jitter)) if i else 0.0)
        timeline.append((round(at, 2), random_change(timeline[-1][1], rng, held_out)))
    timeline.append((round(back, 2), timeline[0][1]))
    return timeline


def change_frame(at_s: float, fps: float) -> int:
    """First frame shown at or after ``at_s``: where a prompt change lands."""
    return math.ceil(at_s * fps - 1e-6)


def prompt_index(starts_s: list[float], num_frames: int, fps: float) -> np.ndarray:
    """int [num_frames]: which prompt is active in each frame."""
    starts = np.array([change_frame(at, fps) for at in starts_s])
    return np.searchsorted(starts, np.arange(num_frames), side="right") - 1


def simulate(timeline: Timeline, num_frames: int, fps: float = FPS, seed: int = 0) -> list[SceneState]:
    """Ground-truth state of every frame, the state carried across each prompt change."""
    active = prompt_index([at for at, _ in timeline], num_frames, fps)
    state = initial_state(timeline[0][1], np.random.default_rng(seed))
    states = [state]
    for i in range(1, num_frames):
        state = step(state, timeline[active[i]][1], 1.0 / fps)
        states.append(state)
    return states


def render_timeline(
    timeline: Timeline, duration_s: float, fps: float = FPS, size: int = DEFAULT_SIZE, seed: int = 0
) -> tuple[np.ndarray, list[SceneState]]:
    """Frames uint8 [N, size, size, 3] and their ground-truth states for a timeline, N = duration * fps."""
    states = simulate(timeline, round(duration_s * fps), fps, seed)
    return render_frames(states, size), states


@dataclass(frozen=True)
class Clip:
    """A training example: frames and the prompts in effect, each from its first frame on."""

    frames: np.ndarray  # uint8 [N, H, W, 3]
    prompts: list[tuple[int, str]]  # (first frame, text)
    attributes: list[Attributes]  # per prompt, the ground truth behind the text


def training_clip(
    rng: np.random.Generator, frames: int = 81, size: int = DEFAULT_SIZE, change_prob: float = 0.5
) -> Clip:
    """A random non-held-out clip, with one prompt change somewhere in its middle half with ``change_prob``."""
    first = random_attributes(rng, held_out=False)
    timeline: Timeline = [(0.0, first)]
    if rng.random() < change_prob:
        at = int(rng.integers(frames // 4, 3 * frames // 4 + 1))
        timeline.append((at / FPS, random_change(first, rng, held_out=False)))
    states = simulate(timeline, frames, FPS, seed=int(rng.integers(2**31)))
    prompts = [(change_frame(at, FPS), describe(attrs, rng)) for at, attrs in timeline]
    return Clip(render_frames(states, size), prompts, [attrs for _, attrs in timeline])
