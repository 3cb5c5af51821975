"""ShapesWorld: renderer determinism and carry-over, grammar round trip, held-out split, detector on ground truth
(clean and decoder-like damage) and metrics that catch ignored prompts, teleports and fading."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from longlive_cli.world.degrade import degrade
from longlive_cli.world.detector import LABELS, detect
from longlive_cli.world.grammar import (
    ATTRIBUTE_NAMES,
    VALUES,
    VOCABULARY,
    Attributes,
    describe,
    describe_change,
    is_held_out,
    parse,
)
from longlive_cli.world.metrics import evaluate, merge_readings, misread_text, misreads, summarise
from longlive_cli.world.scene import (
    CENTRE_SPEED,
    HIGH,
    LINEAR_SPEED,
    LOW,
    ORBIT_PERIOD,
    ORBIT_RADIUS,
    initial_state,
    render,
    render_frames,
    step,
)
from longlive_cli.world.timelines import (
    change_frame,
    random_timeline,
    render_timeline,
    returning_timeline,
    simulate,
    training_clip,
)

ALL_ATTRIBUTES = [Attributes(*combo) for combo in itertools.product(*(VALUES[n] for n in ATTRIBUTE_NAMES))]
RED_BALL = Attributes("circle", "red", "small", "horizontal", "gray")


def test_same_seed_same_video_other_seed_other_video():
    timeline = random_timeline(np.random.default_rng(3), 6.0, 2)
    a, _ = render_timeline(timeline, 6.0, seed=5)
    b, _ = render_timeline(timeline, 6.0, seed=5)
    c, _ = render_timeline(timeline, 6.0, seed=6)
    assert a.shape == (96, 128, 128, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    clip_a, clip_b = (training_clip(np.random.default_rng(9)) for _ in range(2))
    assert np.array_equal(clip_a.frames, clip_b.frames) and clip_a.prompts == clip_b.prompts


def test_render_sizes_and_object_stays_inside():
    state = initial_state(Attributes("triangle", "blue", "large", "vertical", "white"), np.random.default_rng(0))
    for size in (128, 96):
        frame = render(state, size)
        assert frame.shape == (size, size, 3)
        border = np.concatenate([frame[0], frame[-1], frame[:, 0], frame[:, -1]])
        assert (border == (235, 235, 235)).all()


@pytest.mark.parametrize("new_motion", ["vertical", "circling", "still", "horizontal"])
def test_state_carries_over_a_change(new_motion):
    state = initial_state(RED_BALL, np.random.default_rng(1))
    for _ in range(10):
        state = step(state, RED_BALL)
    changed = Attributes("square", "yellow", "large", new_motion, "black")
    after = step(state, changed)
    top_speed = max(LINEAR_SPEED, 2 * np.pi * ORBIT_RADIUS / ORBIT_PERIOD + CENTRE_SPEED)
    assert np.hypot(after.x - state.x, after.y - state.y) <= top_speed / 16  # one frame of motion, no jump
    assert after.attrs == changed and state.radius < after.radius < 0.18  # size grows over a few frames
    for _ in range(200):
        after = step(after, changed)
        assert LOW <= after.x <= HIGH and LOW <= after.y <= HIGH
    assert after.radius == 0.18


def test_horizontal_to_vertical_keeps_position_and_moves_up_down():
    vertical = Attributes("circle", "red", "small", "vertical", "gray")
    states = simulate([(0.0, RED_BALL), (1.0, vertical)], 48)
    xs = np.array([s.x for s in states[16:]])
    ys = np.array([s.y for s in states[16:]])
    assert np.ptp(xs) == 0 and np.ptp(ys) > 0.3


@pytest.mark.parametrize("seed", range(4))
def test_parse_inverts_describe_for_every_combination(seed):
    rng = np.random.default_rng(seed)
    vocabulary = set(VOCABULARY)
    for attrs in ALL_ATTRIBUTES:
        text = describe(attrs, rng)
        result = parse(text)
        assert result.attributes() == attrs, text
        assert result.unknown == () and set(text.replace(",", "").split()) <= vocabulary, text


def test_parse_reports_unknown_words_and_leaves_unmentioned_empty():
    result = parse("A big orange Ball, wobbling up and down!")
    assert result.size == "large" and result.shape == "circle" and result.motion == "vertical"
    assert result.color is None and result.background is None
    assert result.unknown == ("orange", "wobbling")
    with pytest.raises(ValueError, match="color, background"):
        result.attributes()
    assert parse("a small crimson ball drifting left and right over a dark backdrop").attributes() == Attributes(
        "circle", "red", "small", "horizontal", "black"
    )
    assert parse("the ball is moving in a circle").shape == "circle"  # the phrase, not the shape, says circling
    assert parse("the ball is moving in a circle").motion == "circling"


def test_describe_change_reads_as_the_new_attributes():
    rng = np.random.default_rng(0)
    for _ in range(300):
        old, new = (ALL_ATTRIBUTES[i] for i in rng.integers(len(ALL_ATTRIBUTES), size=2))
        text = describe_change(old, new, rng)
        assert parse(text).attributes(fallback=old) == new, text
        assert parse(text).unknown == ()


def test_training_clips_never_show_held_out_combinations():
    rng = np.random.default_rng(0)
    assert is_held_out(Attributes("triangle", "green", "small", "still", "white"))
    assert is_held_out(Attributes("square", "purple", "large", "circling", "black"))
    assert not is_held_out(Attributes("square", "purple", "large", "vertical", "black"))
    changes = 0
    for _ in range(300):
        clip = training_clip(rng, frames=2, size=32)
        assert not any(is_held_out(a) for a in clip.attributes)
        assert all(parse(text).attributes() == a for (_, text), a in zip(clip.prompts, clip.attributes, strict=True))
        changes += len(clip.prompts) - 1
    assert 100 < changes < 200
    held = random_timeline(rng, 60.0, 10, held_out=True)
    assert all(is_held_out(a) for _, a in held) and len(held) == 11


def test_random_timeline_changes_one_or_two_attributes():
    timeline = random_timeline(np.random.default_rng(4), 240.0, 40)
    times = [at for at, _ in timeline]
    assert times[0] == 0 and np.all(np.diff(times) >= 2.0) and times[-1] < 240
    for (_, a), (_, b) in zip(timeline[:-1], timeline[1:], strict=True):
        assert 1 <= sum(getattr(a, n) != getattr(b, n) for n in ATTRIBUTE_NAMES) <= 2


def test_returning_timeline_asks_the_same_in_its_first_and_last_fifth():
    timeline = returning_timeline(np.random.default_rng(6), 240.0, 5, share=0.2, held_out=True)
    times = [at for at, _ in timeline]
    assert len(timeline) == 6 and times[:2] == [0.0, 48.0] and times[-1] == 168.0
    assert np.all(np.diff(times) >= 2.0) and all(is_held_out(a) for _, a in timeline)
    assert timeline[-1][1] == timeline[0][1] and timeline[1][1] != timeline[0][1]
    with pytest.raises(ValueError, match="at least 2 changes"):
        returning_timeline(np.random.default_rng(6), 240.0, 1)
    with pytest.raises(ValueError, match="do not fit"):
        returning_timeline(np.random.default_rng(6), 10.0, 5)


def test_drift_on_a_returning_ground_truth_is_nil_for_every_attribute():
    timeline = returning_timeline(np.random.default_rng(7), 60.0, 3)
    frames, _ = render_timeline(timeline, 60.0, size=96, seed=3)
    row = summarise([evaluate(frames, 16, timeline)])
    for end in ("first", "last"):
        for name in ("all", "shape", "color", "size", "motion"):
            assert row[f"drift_{end}_{name}"] >= 0.99, (end, name, row)
    assert row["drift_color_shift"] < 5 and abs(row["drift_sharpness_ratio"] - 1) < 0.1


def test_training_clip_has_the_asked_length_and_size():
    clip = training_clip(np.random.default_rng(0), frames=81, size=128)
    assert clip.frames.shape == (81, 128, 128, 3) and clip.frames.dtype == np.uint8


def _ground_truth_suite(size: int, damaged: bool, seed: int, runs: int, seconds: float) -> dict:
    rng = np.random.default_rng(seed)
    results = []
    for k in range(runs):
        timeline = random_timeline(rng, seconds, round(seconds / 5))
        frames, _ = render_timeline(timeline, seconds, size=size, seed=seed + k)
        if damaged:
            frames = degrade(frames, rng)
        results.append(evaluate(frames, 16, timeline))
    return summarise(results)


@pytest.mark.parametrize(
    "size,damaged,runs,seconds",
    [(128, False, 3, 20.0), (96, False, 3, 20.0), (128, True, 2, 20.0), (96, True, 3, 20.0), (96, False, 1, 240.0)],
)
def test_detector_and_metrics_on_ground_truth(size, damaged, runs, seconds):
    row = _ground_truth_suite(size, damaged, seed=size + damaged, runs=runs, seconds=seconds)
    for name in (*ATTRIBUTE_NAMES, "all"):
        assert row[f"adherence_{name}"] >= 0.99, (name, row)
    assert row["unsettled"] == 0 and row["latency_frames_max"] <= 3
    assert 0.9 <= row["continuity_median"] <= 1.1 and row["continuity_max"] < 1.6


def test_detector_reads_ground_truth_per_frame():
    timeline = random_timeline(np.random.default_rng(5), 12.0, 3)
    frames, states = render_timeline(timeline, 12.0, size=96, seed=1)
    det = detect(frames, cuts=[change_frame(at, 16) for at, _ in timeline])
    for name in ("shape", "color", "background", "motion"):
        assert det.labels(name) == [getattr(s.attrs, name) for s in states]
    centres = np.array([(s.x, s.y) for s in states])
    assert np.abs(det.centroid - centres).max() < 0.01
    empty = detect(np.full((4, 96, 96, 3), 128, dtype=np.uint8))
    assert not empty.found.any() and (empty.color == -1).all() and empty.labels("background") == ["gray"] * 4
    assert LABELS["motion"][det.motion[0]] == states[0].attrs.motion


def test_detector_reads_a_long_render_in_chunks():
    frames = np.repeat(render_frames(simulate([(0.0, RED_BALL)], 64), 128), 15, axis=0)  # 960 frames
    det, whole = detect(frames, chunk=100), detect(frames, chunk=len(frames))
    assert det.found.all() and len(det) == 960
    for name in ("shape", "color", "size", "motion", "background"):
        assert np.array_equal(getattr(det, name), getattr(whole, name)), name


def _two_prompt_video(seconds: float, at: float, second_rendered: Attributes, second_prompt: Attributes):
    frames, _ = render_timeline([(0.0, RED_BALL), (at, second_rendered)], seconds, size=96, seed=3)
    return frames, [(0.0, RED_BALL), (at, second_prompt)]


def test_ignored_prompt_change_scores_low_adherence_and_never_lands():
    blue_square = Attributes("square", "blue", "small", "horizontal", "gray")
    frames, timeline = _two_prompt_video(8.0, 4.0, RED_BALL, blue_square)
    result = json.loads(json.dumps(evaluate(frames, 16, timeline)))  # plain JSON types throughout
    change = result["segments"][1]
    assert change["adherence_all"] == 0.0 and result["segments"][0]["adherence_all"] == 1.0
    assert change["latency_frames"] == 64 and not change["settled"]
    assert result["adherence"]["steady"]["color"] < 0.6
    assert result["adherence"]["steady"]["motion"] == 1.0  # unchanged attributes still adhere


def test_readings_say_what_a_miss_was_drawn_as():
    blue_square = Attributes("square", "blue", "small", "horizontal", "gray")
    frames, timeline = _two_prompt_video(8.0, 4.0, RED_BALL, blue_square)
    result = json.loads(json.dumps(evaluate(frames, 16, timeline)))
    readings = result["adherence"]["readings"]
    steady = result["adherence"]["steady_frames"]
    assert sum(sum(reads.values()) for reads in readings["color"].values()) == steady
    assert readings["color"]["blue"] == {"red": readings["color"]["blue"]["red"]}  # every blue frame drawn red
    assert readings["color"]["red"] == {"red": readings["color"]["red"]["red"]}
    assert misreads(readings) == [("shape", "square", [("circle", 1.0)]), ("color", "blue", [("red", 1.0)])]
    merged = merge_readings([result, result])
    assert merged["color"]["blue"]["red"] == 2 * readings["color"]["blue"]["red"]
    assert misread_text(merged) == "shape square as circle 100.0 %; color blue as red 100.0 %"
    assert misread_text(merge_readings([evaluate(frames[:64], 16, timeline[:1])])) == ""


def test_text_prompts_score_only_what_they_mention():
    frames, _ = render_timeline([(0.0, RED_BALL)], 4.0, size=96)
    result = evaluate(frames, 16, [(0.0, "a crimson thing")])
    steady = result["adherence"]["steady"]
    assert steady["color"] == 1.0 and steady["all"] == 1.0 and steady["shape"] is None
    assert result["segments"][0]["scored"] == {"color": "red"}
    wrong = evaluate(frames, 16, [(0.0, "a blue thing")])
    assert wrong["adherence"]["steady"]["all"] == 0.0


def test_teleport_at_a_change_breaks_continuity():
    moved = Attributes("circle", "blue", "small", "horizontal", "gray")
    timeline = [(0.0, RED_BALL), (3.0, moved)]
    smooth, states = render_timeline(timeline, 6.0, size=96, seed=2)
    shift = 24 if states[48].y < 0.5 else -24  # a quarter frame, toward the middle so nothing wraps round
    teleport = np.concatenate([smooth[:48], np.roll(smooth[48:], shift, axis=1)])
    assert evaluate(smooth, 16, timeline)["segments"][1]["continuity"] < 1.5
    assert evaluate(teleport, 16, timeline)["segments"][1]["continuity"] > 5.0


def test_drift_sees_a_slow_fade():
    frames, _ = render_timeline([(0.0, RED_BALL)], 20.0, size=96, seed=4)
    fade = np.linspace(1.0, 0.25, len(frames))[:, None, None, None]
    faded = np.rint(frames * fade + 20 * (1 - fade)).astype(np.uint8)
    steady = evaluate(frames, 16, [(0.0, RED_BALL)])["drift"]
    drift = evaluate(faded, 16, [(0.0, RED_BALL)])["drift"]
    assert abs(steady["sharpness_ratio"] - 1) < 0.1 and steady["color_shift"] < 2 and steady["adherence_delta"] == 0
    assert drift["sharpness_ratio"] < 0.5 and drift["color_shift"] > 40 and drift["adherence_delta"] < -0.5
