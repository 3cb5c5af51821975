"""Where prompt changes land, as properties over fine-grained times and every frame rate a timeline accepts.

`check`, `render`'s sidecar and the engine's own record of its switches must agree on the landing frame, a change
must never land before the time asked for nor a whole chunk after it, and times and frame counts must round-trip.
"""

from __future__ import annotations

import re
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from longlive_cli import render as render_module
from longlive_cli.bundle import load_bundle
from longlive_cli.cli import app
from longlive_cli.engine import EngineConfig, StreamingGenerator, SwitchPolicy
from longlive_cli.live.record import Landed, seconds_text, timeline_text
from longlive_cli.render import RenderSettings, render
from longlive_cli.timeline import (
    MAX_FPS,
    MAX_SECONDS,
    VIDEO_FRAMES_PER_LATENT,
    landing,
    latent_frames_for,
    parse_time,
    parse_timeline,
    plan_changes,
    requested_latent,
    video_frame_of_latent,
    video_frames_for,
)

from .fakes import TINY_SPEC, write_converted

POLICIES = [p.value for p in SwitchPolicy]

FPS = st.integers(1, MAX_FPS)
CHUNK = st.integers(1, 8)
# Times on a millisecond grid, which holds every 1/8, 1/16 and 1/40 of a second and many off-grid ones.
MILLISECONDS = st.integers(1, int(MAX_SECONDS * 1000) - 1)
runner = CliRunner()


def landed_frame(at: float, fps: int, chunk: int) -> int:
    return video_frame_of_latent(landing(requested_latent(at, fps), chunk))


@given(fps=FPS, ms=MILLISECONDS, chunk=CHUNK)
def test_a_change_lands_at_or_after_its_frame_and_less_than_a_chunk_later(fps, ms, chunk):
    at = ms / 1000
    frame = round(at * fps)
    landed = landed_frame(at, fps, chunk)
    assert frame <= landed < frame + VIDEO_FRAMES_PER_LATENT * chunk
    latent = requested_latent(at, fps)
    assert video_frame_of_latent(latent) >= frame, "the requested latent starts at or after the time"
    assert latent == 0 or video_frame_of_latent(latent - 1) < frame, "and is the first such latent"


@given(fps=FPS, chunk=CHUNK, data=st.data())
def test_plan_lands_every_change_in_order_and_warns_when_it_pushes_one_later(fps, chunk, data):
    times = sorted(set(data.draw(st.lists(st.integers(1, 20_000), min_size=1, max_size=6))))
    duration = (times[-1] + data.draw(st.integers(1000, 20_000))) / 1000
    prompts = "".join(f"  - at: {ms / 1000}s\n    text: p{i}\n" for i, ms in enumerate(times, start=1))
    timeline = parse_timeline(f"duration: {duration}s\nfps: {fps}\nprompts:\n  - at: 0\n    text: p0\n{prompts}")
    plan = plan_changes(timeline, chunk)
    previous, shared = 0, 0
    for i, (change, where) in enumerate(zip(timeline.prompts, plan.changes, strict=True)):
        requested, landed, landed_s = where.requested, where.landed, where.landed_s
        own = landing(requested, chunk)
        assert landed == (own if i == 0 else max(own, previous + chunk))
        assert landed % chunk == 0 and video_frame_of_latent(landed) >= round(change.at * fps)
        assert landed_s == video_frame_of_latent(landed) / fps
        shared += i > 0 and own <= previous
        previous = landed
    assert sum("shares a chunk" in w for w in plan.warnings) == shared
    late = sum(video_frame_of_latent(c.landed) >= plan.video_frames for c in plan.changes)
    assert sum("after the video ends" in w for w in plan.warnings) == late


@given(fps=FPS, frames=st.integers(1, int(MAX_SECONDS * MAX_FPS)))
def test_frame_counts_and_durations_round_trip(fps, frames):
    if frames > MAX_SECONDS * fps:
        frames = int(MAX_SECONDS * fps)
    counted = parse_timeline(f"duration: {frames}f\nfps: {fps}\nprompts:\n  - at: 0\n    text: a\n")
    assert counted.frames() == frames
    assert round(parse_time(seconds_text(frames, fps), fps, "duration") * fps) == frames
    assert parse_time(f"{frames}f", fps, "duration") == frames / fps


@given(fps=FPS, latent=st.integers(0, 60 * 120 // VIDEO_FRAMES_PER_LATENT))
def test_a_recorded_landing_time_reads_back_as_the_same_latent_frame(fps, latent):
    seconds = parse_time(seconds_text(video_frame_of_latent(latent), fps), fps, "at")
    assert requested_latent(seconds, fps) == latent


@given(video=st.integers(1, 4000), chunk=CHUNK)
def test_latent_frames_are_the_fewest_whole_chunks_that_cover_the_video(video, chunk):
    latents = latent_frames_for(video, chunk)
    assert type(latents) is int and latents % chunk == 0
    assert video_frames_for(latents) >= video
    assert latents == chunk or video_frames_for(latents - chunk) < video
    assert video_frames_for(latents) == video_frame_of_latent(latents), "the next latent starts right after"


@given(fps=FPS, chunk=CHUNK, data=st.data())
def test_a_recorded_timeline_replays_every_landing(fps, chunk, data):
    starts = sorted(set(data.draw(st.lists(st.integers(1, 40), max_size=5))))
    latents = [0, *(chunk * s for s in starts)]
    policies = data.draw(st.lists(st.sampled_from(POLICIES), min_size=len(starts), max_size=len(starts)))
    landed = [
        Landed(f"p{i}", latent, None if i == 0 else SwitchPolicy(policies[i - 1])) for i, latent in enumerate(latents)
    ]
    frames = video_frame_of_latent(latents[-1]) + data.draw(st.integers(1, 4 * chunk))
    assume(frames <= MAX_SECONDS * fps)
    settings_ = RenderSettings((32, 32), EngineConfig(chunk_frames=chunk, window=chunk + 1, sink=0), 3, fps)
    timeline = parse_timeline(timeline_text(landed, frames, settings_, "tiny", "none", "x.mp4", "longlive render"))
    plan = plan_changes(timeline, chunk)
    assert timeline.frames() == frames and not plan.warnings
    assert [c.landed for c in plan.changes] == latents
    assert [timeline.policy_at(i) for i in range(1, len(latents))] == policies


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("landing")
    model = write_converted(folder / "tiny.safetensors")
    return folder, model, load_bundle(model)


class RecordingGenerator(StreamingGenerator):
    """The engine, kept so a test can read its record of switches after a render."""

    made: list[RecordingGenerator] = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        RecordingGenerator.made.append(self)


def render_recorded(timeline, bundle, output: Path) -> tuple[dict, StreamingGenerator]:
    """Render in process and return the sidecar and the engine that made the video."""
    RecordingGenerator.made.clear()
    with mock.patch.object(render_module, "StreamingGenerator", RecordingGenerator):
        side = render(timeline, bundle, output, RenderSettings.resolve(timeline, bundle), overwrite=True)
    (gen,) = RecordingGenerator.made
    return side, gen


def check_landings(path: Path) -> list[float]:
    """The 'lands at' column of `longlive check`, in seconds."""
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 0, result.output
    return [float(s) for s in re.findall(r"│ ([0-9.]+) s +│ (?:-|recache|keep|clear)", result.output)]


# Frame indexes stay small so each example renders a few chunks of a tiny model.
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fps=FPS, data=st.data())
def test_check_sidecar_and_engine_agree_on_every_landing(tiny, fps, data):
    folder, model, bundle = tiny
    frames = sorted(set(data.draw(st.lists(st.integers(1, 36), min_size=1, max_size=3))))
    times = [data.draw(st.integers(max(1, round((f - 0.5) * 1000 / fps) + 1), round((f + 0.5) * 1000 / fps) - 1)
             .filter(lambda ms, f=f: round(ms / 1000 * fps) == f)) for f in frames]  # fmt: skip
    policies = data.draw(st.lists(st.sampled_from(POLICIES), min_size=len(times), max_size=len(times)))
    prompts = "".join(
        f"  - at: {ms / 1000}s\n    text: a blue square\n    switch: {policy}\n"
        for ms, policy in zip(times, policies, strict=True)
    )
    path = folder / "t.yaml"
    duration = frames[-1] + 1 + VIDEO_FRAMES_PER_LATENT * TINY_SPEC.engine.chunk_frames * len(frames)
    path.write_text(
        f"model: {model}\nduration: {duration}f\nfps: {fps}\nprompts:\n  - at: 0\n    text: a red circle\n{prompts}"
    )
    timeline = parse_timeline(path.read_text(), path)
    side, gen = render_recorded(timeline, bundle, folder / "t.mp4")
    engine = [(0, None)] + [(video_frame_of_latent(e.latent), e.policy.value) for e in gen.switches]
    recorded = [(c["landed_frame"], c["policy"]) for c in side["changes"]]
    assert recorded == engine
    assert [p for _, p in recorded[1:]] == policies, "each change keeps its own switch policy"
    assert [round(s * fps) for s in check_landings(path)] == [f for f, _ in recorded]
    assert [round(c["landed_s"] * fps) for c in side["changes"]] == [f for f, _ in recorded]
    for change, frame in zip(side["changes"][1:], frames, strict=True):
        assert frame <= change["landed_frame"]
