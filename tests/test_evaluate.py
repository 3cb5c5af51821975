"""`longlive eval`: one video against its timeline, and the held-out suite's shape."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from longlive_cli import evaluate
from longlive_cli.bundle import load_bundle
from longlive_cli.cli import app
from longlive_cli.video import VideoWriter
from longlive_cli.world.grammar import Attributes, describe, parse
from longlive_cli.world.timelines import render_timeline

from .fakes import FAST_SPEC, with_engine, write_converted

runner = CliRunner()


def test_ground_truth_video_scores_full_marks(tmp_path):
    rng = np.random.default_rng(0)
    first = Attributes("circle", "red", "large", "horizontal", "gray")
    second = Attributes("square", "blue", "large", "horizontal", "gray")
    texts = [describe(first, rng), describe(second, rng)]
    frames, _ = render_timeline([(0.0, first), (3.0, second)], 6.0, size=96, seed=1)
    video = tmp_path / "gt.mp4"
    with VideoWriter(video, 16, (96, 96)) as writer:
        writer.write(frames)
    timeline = tmp_path / "gt.yaml"
    timeline.write_text(f"duration: 6s\nprompts:\n  - at: 0s\n    text: {texts[0]}\n  - at: 3s\n    text: {texts[1]}\n")
    out = tmp_path / "m.json"
    args = ["eval", str(video), "--timeline", str(timeline), "--json", str(out), "--drift-share", "0.1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "drift: all-attribute adherence 100.0 % in the first part, 100.0 % in the last" in result.output
    assert "misread (steady frames): nothing of 5 % or more" in result.output
    report = json.loads(out.read_text())
    assert report["adherence"]["steady"]["all"] >= 0.99
    change = report["segments"][1]
    assert change["settled"] and change["latency_frames"] <= 2 and change["continuity"] < 2


def test_suite_renders_and_summarises(tmp_path, monkeypatch):
    monkeypatch.setattr(
        evaluate, "SUITE", (evaluate.SuitePart("tiny part", runs=2, duration_s=5.0, changes=1, seed=5),)
    )
    bundle = load_bundle(write_converted(tmp_path / "m.safetensors", FAST_SPEC))
    report = evaluate.run_suite(bundle)
    row = report["rows"]["tiny part"]
    assert row["runs"] == 2 and row["changes"] == 2 and row["frames"] == 160
    readings = report["readings"]["tiny part"]
    assert sum(
        readings["background"][b][read] for b in readings["background"] for read in readings["background"][b]
    ) == sum(r["adherence"]["steady_frames"] for r in report["runs"]["tiny part"])
    a = evaluate.suite_timelines(evaluate.SUITE[0])
    assert a == evaluate.suite_timelines(evaluate.SUITE[0])


def test_the_long_parts_come_back_to_their_first_prompt_in_the_same_words():
    long240, long20 = [part for part in evaluate.SUITE if part.returning]
    assert (long240.duration_s, long240.extended, long20.duration_s, long20.extended) == (240, False, 1200, True)
    for long in (long240, long20):
        for prompts in evaluate.suite_timelines(long):
            assert len(prompts) == long.changes + 1 and prompts[-1][1] == prompts[0][1]
            assert prompts[1][0] >= 0.2 * long.duration_s and prompts[-1][0] <= 0.8 * long.duration_s - 10
            assert len({text for _, text in prompts[1:-1]} - {prompts[0][1]}) == long.changes - 1
    firsts = [parse(prompts[0][1]).attributes() for prompts in evaluate.suite_timelines(long240)]
    assert {(a.color, a.shape) == ("green", "triangle") for a in firsts} == {True, False}, "both held-out families"


def test_extended_parts_run_only_when_named(tmp_path, monkeypatch):
    """The 20 min part stays out of the default suite; asked for, it renders past the RoPE table."""
    long = evaluate.SuitePart("longer", runs=1, duration_s=65.0, changes=2, seed=9, returning=True, extended=True)
    monkeypatch.setattr(
        evaluate, "SUITE", (evaluate.SuitePart("short", runs=1, duration_s=2.0, changes=0, seed=5), long)
    )
    bundle = load_bundle(write_converted(tmp_path / "m.safetensors", with_engine(FAST_SPEC, steps=(1000,))))
    assert list(evaluate.run_suite(bundle)["rows"]) == ["short"]
    monkeypatch.setattr(bundle.dit.rope, "max_positions", 64)  # 65 s is 261 latent frames: past a 64-entry table
    report = evaluate.run_suite(bundle, parts=["longer"])
    assert list(report["rows"]) == ["longer"] and report["rows"]["longer"]["frames"] == 1040


def test_eval_usage_errors(tmp_path):
    assert runner.invoke(app, ["eval"]).exit_code == 2
    assert runner.invoke(app, ["eval", "--suite", "cars"]).exit_code == 2
    no_sidecar = runner.invoke(app, ["eval", str(tmp_path / "x.mp4")])
    assert no_sidecar.exit_code == 1 and "give --timeline" in no_sidecar.output


def test_eval_takes_the_timeline_from_the_sidecar(tmp_path):
    model = write_converted(tmp_path / "m.safetensors")
    show = tmp_path / "show.yaml"
    show.write_text(
        f"version: 1\nmodel: {model}\nduration: 2s\nprompts:\n  - at: 0\n    text: a red circle\n"
        "  - at: 1s\n    text: a blue square\n"
    )
    video = tmp_path / "show.mp4"
    assert runner.invoke(app, ["render", str(show), "-o", str(video), "-q"]).exit_code == 0
    show.unlink()  # the sidecar alone says what the video should show
    out = tmp_path / "m.json"
    result = runner.invoke(app, ["eval", str(video), "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert [s["at_s"] for s in report["segments"]] == [0.0, 1.0] and report["warnings"] == []


def test_a_video_shorter_than_its_timeline_is_warned_about(tmp_path):
    rng = np.random.default_rng(0)
    first = Attributes("circle", "red", "large", "horizontal", "gray")
    frames, _ = render_timeline([(0.0, first)], 2.0, size=96, seed=1)
    video = tmp_path / "short.mp4"
    with VideoWriter(video, 16, (96, 96)) as writer:
        writer.write(frames)
    timeline = tmp_path / "long.yaml"
    text = describe(first, rng)
    timeline.write_text(f"duration: 4s\nprompts:\n  - at: 0s\n    text: {text}\n  - at: 3s\n    text: {text}\n")
    result = runner.invoke(app, ["eval", str(video), "--timeline", str(timeline)])
    assert result.exit_code == 0, result.output
    warning = " ".join(result.stderr.split())
    assert "32 frames (2.00 s), but its timeline lasts 64 frames (4 s)" in warning
    assert "without the 1 prompt(s) after the end" in warning
