"""Timeline files: parsing, time syntax, chunk arithmetic, and located errors for broken input."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from longlive_cli.timeline import (
    TIME_SYNTAX,
    Landing,
    PromptChange,
    TimelineError,
    TimelineErrors,
    landing,
    latent_frames_for,
    load_timeline,
    parse_time,
    parse_timeline,
    plan_changes,
    requested_latent,
    single_prompt_timeline,
    video_frame_of_latent,
    video_frames_for,
)

FULL = """\
version: 1
model: models/longlive.safetensors
output: out/demo.mp4
duration: 20s
fps: 16
seed: 42
size: 128x128
attention: {window: 12, sink: 3, positions: Relative}
quantize: int8
switch: recache
prompts:
  - at: 0s
    text: a red circle moving right on a gray background
  - at: 8s
    text: "  the red circle turns blue and moves up  "
    switch: keep
"""


def write(tmp_path: Path, text: str, name: str = "show.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def timeline_with(*prompts: tuple[str, str], duration: str = "20s") -> str:
    items = "".join(f"  - at: {at}\n    text: {text}\n" for at, text in prompts)
    return f"duration: {duration}\nprompts:\n{items}"


def test_full_file_parses_to_expected_values(tmp_path):
    t = load_timeline(write(tmp_path, FULL))
    assert t.path == tmp_path / "show.yaml"
    assert t.model == "models/longlive.safetensors"
    assert t.model_path == (tmp_path / "models/longlive.safetensors").absolute()
    assert t.output == (tmp_path / "out/demo.mp4").absolute()
    assert (t.duration, t.fps, t.seed, t.size) == (20.0, 16, 42, (128, 128))
    assert (t.window, t.sink, t.positions, t.quantize, t.switch) == (12, 3, "relative", "int8", "recache")
    assert t.prompts == (
        PromptChange(0.0, "a red circle moving right on a gray background", None, 12),
        PromptChange(8.0, "the red circle turns blue and moves up", "keep", 14),
    )
    assert t.frames() == 320
    assert [t.policy_at(i) for i in range(2)] == ["recache", "keep"]


def test_defaults_and_tiny_model():
    t = parse_timeline(timeline_with(("0", "a cat")))
    assert (t.path, t.model, t.model_path, t.output) == (None, "tiny", None, None)
    assert (t.fps, t.seed, t.size, t.window, t.sink, t.positions) == (16, 0, None, None, None, "auto")
    assert (t.quantize, t.switch) == ("none", "recache")
    assert parse_timeline(V + "attention: {window: 12}\n" + P).positions == "auto"
    assert parse_timeline(V + "seed: 0\n" + P).seed == 0


def test_null_optional_keys_mean_default():
    t = parse_timeline("duration: 4s\nfps:\nseed: ~\nattention:\nprompts:\n  - at: 0\n    text: a\n")
    assert (t.fps, t.seed, t.window) == (16, 0, None)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("20s", 20.0),
        ("1m30s", 90.0),
        ("2m", 120.0),
        ("240s", 240.0),
        ("1.5s", 1.5),
        (90, 90.0),
        (2.5, 2.5),
        ("90", 90.0),
        ("320f", 20.0),
        ("1:30", 90.0),
        ("1m 30s", 90.0),
        ("20S", 20.0),
        ("0", 0.0),
        ("1h", 3600.0),
        ("90m", 5400.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("2h 0m 30s", 7230.0),
        ("2:00:00", 7200.0),
        ("1:02:03.5", 3723.5),
    ],
)
def test_time_syntax(value, seconds):
    assert parse_time(value, 16, "duration") == pytest.approx(seconds)


def test_time_edge_forms():
    assert parse_time("0" * 23 + "5s", 16, "at") == 5.0, "24 digits are still a time"
    with pytest.raises(TimelineError, match=r"^at: negative time '- 320f'"):
        parse_time("- 320f", 16, "at")
    with pytest.raises(TimelineError, match=r"^at: cannot read '-abc' as a time; write seconds"):
        parse_time("-abc", 16, "at")
    with pytest.raises(TimelineError) as info:
        parse_time([1], 16, "at")
    assert str(info.value) == f"at: expected a time, got a list; {TIME_SYNTAX}"
    with pytest.raises(TimelineError) as info:
        parse_time(float("inf"), 16, "at")
    assert str(info.value) == f"at: inf is not a finite time; {TIME_SYNTAX}"


@pytest.mark.parametrize("value", ["-5s", "abc", "1h30", "1:60:00", "h", "1.5f", "", None, [1], True, float("inf")])
def test_bad_times_name_the_key(value):
    with pytest.raises(TimelineError, match="duration") as info:
        parse_time(value, 16, "duration")
    assert info.value.key == "duration"


@pytest.mark.parametrize(("duration", "seconds"), [("20s", 20), ("1m30s", 90), ("2m", 120), ("1.5s", 1.5), ("90", 90)])
def test_duration_syntax_in_files(duration, seconds):
    assert parse_timeline(timeline_with(("0s", "a"), duration=duration)).duration == seconds


def test_frames_are_converted_at_the_files_fps():
    assert parse_timeline("fps: 16\n" + timeline_with(("0s", "a"), duration="320f")).duration == 20.0
    assert parse_timeline("fps: 8\n" + timeline_with(("0s", "a"), duration="320f")).duration == 40.0
    assert parse_timeline("fps: 8\n" + timeline_with(("0s", "a"), ("40f", "b"), duration="9s")).prompts[1].at == 5.0


def test_times_are_read_as_written_not_as_yaml_numbers():
    t = parse_timeline(timeline_with(("0:00", "a"), ("010", "b"), ("1:30", "c"), duration="2m"))
    assert [p.at for p in t.prompts] == [0.0, 10.0, 90.0]


def test_impossible_frame_counts_are_refused_by_name():
    with pytest.raises(ValueError, match="need at least one latent frame, got 0"):
        video_frames_for(0)
    with pytest.raises(ValueError, match="need video_frames >= 1 and chunk >= 1, got 0 and 3"):
        latent_frames_for(0, 3)
    with pytest.raises(ValueError, match="chunk must be >= 1, got 0"):
        landing(3, 0)


def test_chunk_arithmetic():
    assert video_frames_for(120) == 477
    assert latent_frames_for(477, 3) == 120
    assert latent_frames_for(478, 3) == 123
    assert latent_frames_for(320, 3) == 81
    assert latent_frames_for(1, 3) == 3
    assert requested_latent(0, 16) == 0
    assert requested_latent(10, 16) == 41
    assert landing(41, 3) == 42
    assert landing(42, 3) == 42
    assert [video_frame_of_latent(f) for f in (0, 1, 2, 42)] == [0, 1, 5, 165]
    with pytest.raises(ValueError):
        latent_frames_for(0, 3)


def test_plan_lands_a_change_on_the_next_chunk():
    t = parse_timeline(timeline_with(("0s", "a"), ("10s", "b")))
    plan = plan_changes(t, 3)
    assert plan.changes == (Landing(0, 0, 0.0), Landing(41, 42, 165 / 16))
    assert plan.changes[1].landed_s == pytest.approx(10.3125)
    assert (plan.latent_frames, plan.video_frames, plan.warnings) == (81, 320, ())


def test_plan_spreads_changes_that_share_a_chunk(tmp_path):
    t = load_timeline(write(tmp_path, timeline_with(("0s", "a"), ("10s", "b"), ("10.2s", "c"), ("10.25s", "d"))))
    plan = plan_changes(t, 3)
    assert [(c.requested, c.landed) for c in plan.changes] == [(0, 0), (41, 42), (42, 45), (42, 48)]
    assert [c.landed_s for c in plan.changes[2:]] == [video_frame_of_latent(45) / 16, video_frame_of_latent(48) / 16]
    assert len(plan.warnings) == 2
    assert plan.warnings[0].startswith(f"{tmp_path / 'show.yaml'}:7: prompts[2] at 10.2s shares a chunk")
    assert (
        "shares a chunk with prompts[1] (one switch per chunk), so it starts one chunk later, at 11.0625s"
        in (plan.warnings[0])
    )
    assert "shares a chunk with prompts[2] (one switch per chunk)" in plan.warnings[1]


def test_plan_warns_when_a_change_lands_after_the_end():
    plan = plan_changes(parse_timeline(timeline_with(("0s", "a"), ("19.9s", "b"))), 3)
    assert plan.changes[1].landed == 81
    assert len(plan.warnings) == 1
    assert plan.warnings[0] == (
        "line 5: prompts[1] at 19.9s lands at 20.0625s, after the video ends at 20s; "
        "it will not be shown (move it earlier or make the video longer)"
    )


def test_single_prompt_timeline(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    t = single_prompt_timeline(
        "  a cat  ", "10s", seed=7, size="64x64", window=9, sink=None, output="clip.mp4", model="w.safetensors"
    )
    assert (t.duration, t.seed, t.size, t.window, t.sink) == (10.0, 7, (64, 64), 9, None)
    assert t.prompts == (PromptChange(0.0, "a cat", None, None),)
    assert t.output == tmp_path / "clip.mp4"
    assert t.model_path == tmp_path / "w.safetensors"
    with pytest.raises(TimelineError) as info:
        single_prompt_timeline("   ", "10s")
    assert (info.value.key, str(info.value)) == ("prompt", "prompt: empty text; describe what the video should show")
    with pytest.raises(TimelineError, match="^duration: cannot read '10x'"):
        single_prompt_timeline("a", "10x")
    with pytest.raises(TypeError, match="frames"):
        single_prompt_timeline("a", "10s", frames=3)


def test_error_attributes_and_format(tmp_path):
    path = write(tmp_path, timeline_with(("0s", "a"), ("10s", "b"), ("8s", "c")))
    with pytest.raises(TimelineError) as info:
        load_timeline(path)
    err = info.value
    assert type(err) is TimelineError, "one problem is raised as itself"
    assert (err.path, err.line, err.key) == (path, 7, "prompts[2].at")
    assert str(err) == f"{path}:7: prompts[2].at: times must increase (8s after 10s)"
    with pytest.raises(TimelineError, match=r"^line 7: prompts\[2\]\.at: "):
        parse_timeline(path.read_text())


V = "duration: 20s\n"
P = "prompts:\n  - at: 0s\n    text: a cat\n"

# (id, file content, expected line, expected key, fragments the message must contain)
BAD = [
    ("yaml-syntax", V + "fps: 16: 3\n" + P, 2, None, ["YAML syntax error at column 8", "mapping values"]),
    ("yaml-unclosed", V + "prompts: [\n", 3, None, ["YAML syntax error"]),
    ("tab-indent", V + "prompts:\n\t- at: 0s\n", 3, None, ["YAML syntax error", "spaces, not tabs"]),
    ("unknown-top-key", V + "promts:\n  - at: 0s\n    text: a\n", 2, "promts", ["did you mean 'prompts'?"]),
    ("unknown-top-no-match", V + P + "zzz: 1\n", 5, "zzz", ["unknown key 'zzz'", "expected one of"]),
    ("unknown-prompt-key", V + "prompts:\n  - at: 0s\n    txt: a\n", 4, "prompts[0].txt", ["did you mean 'text'?"]),
    ("unknown-attention-key", V + "attention:\n  windw: 12\n" + P, 3, "attention.windw", ["did you mean 'window'?"]),
    ("duplicate-key", V + "fps: 16\nfps: 8\n" + P, 3, None, ["duplicate key 'fps'", "line 2"]),
    ("out-of-order", timeline_with(("0s", "a"), ("10s", "b"), ("8s", "c")), 7, "prompts[2].at", ["8s after 10s"]),
    ("equal-times", timeline_with(("0s", "a"), ("8s", "b"), ("8s", "c")), 7, "prompts[2].at", ["two prompts at 8s"]),
    ("first-not-zero", timeline_with(("2s", "a")), 3, "prompts[0].at", ["first prompt must be at 0s, got 2s"]),
    ("too-long", timeline_with(("0s", "a"), duration="24h1s"), 1, "duration", ["86401s is too long", "24h"]),
    ("too-long-clock", timeline_with(("0s", "a"), duration="25:00:00"), 1, "duration", ["90000s is too long"]),
    ("too-long-frames", timeline_with(("0s", "a"), duration="1382416f"), 1, "duration", ["86401s is too long"]),
    ("at-after-end", timeline_with(("0s", "a"), ("25s", "b")), 5, "prompts[1].at", ["25s", "duration 20s"]),
    ("at-equals-end", timeline_with(("0s", "a"), ("20s", "b")), 5, "prompts[1].at", ["not before the end"]),
    ("negative-at", timeline_with(("0s", "a"), ("-1s", "b")), 5, "prompts[1].at", ["negative time '-1s'"]),
    ("negative-duration", timeline_with(("0s", "a"), duration="-5s"), 1, "duration", ["negative time"]),
    ("zero-duration", timeline_with(("0s", "a"), duration="0"), 1, "duration", ["more than 0s"]),
    ("unreadable-time", timeline_with(("0s", "a"), ("10 secs", "b")), 5, "prompts[1].at", ["cannot read '10 secs'"]),
    ("missing-text", V + "prompts:\n  - at: 0s\n    text: a\n  - at: 5s\n", 5, "prompts[1].text", ["missing 'text'"]),
    ("missing-at", V + "prompts:\n  - text: a\n", 3, "prompts[0].at", ["missing 'at'"]),
    ("null-at", V + "prompts:\n  - text: a\n    at:\n", 4, "prompts[0].at", ["missing 'at'"]),
    ("null-prompts", V + "prompts:\n", 2, "prompts", ["missing; add a list of prompts"]),
    ("surrogate-text", V + P + '  - at: 5s\n    text: "a\\udfff"\n', 6, None, ["lone surrogate \\udfff"]),
    ("too-deep", V + "seed: " + "[" * 40 + "]" * 40 + "\n" + P, 2, None, ["YAML too complex: nested more than 32"]),
    ("surrogate-key", V + '"\\ud800": 1\n' + P, 2, None, ["lone surrogate \\ud800"]),
    (
        "huge-number",
        V + "seed: " + "1" * 5000 + "\n" + P,
        2,
        None,
        ["cannot read '" + "1" * 60 + "…' (too many digits?)"],
    ),
    ("empty-text", V + "prompts:\n  - at: 0s\n    text: '   '\n", 4, "prompts[0].text", ["empty text"]),
    ("text-not-string", V + "prompts:\n  - at: 0s\n    text: 42\n", 4, "prompts[0].text", ["got 42"]),
    ("text-too-long", timeline_with(("0s", "a" * 2001)), 4, "prompts[0].text", ["2001 characters", "2000"]),
    ("fps-string", "fps: fast\n" + V + P, 1, "fps", ["expected a whole number, got 'fast'"]),
    ("fps-zero", "fps: 0\n" + V + P, 1, "fps", ["out of range"]),
    ("seed-float", V + "seed: 1.5\n" + P, 2, "seed", ["expected a whole number, got 1.5"]),
    ("prompts-string", V + "prompts: hello\n", 2, "prompts", ["expected a list of prompts", "'hello'"]),
    ("prompts-empty", V + "prompts: []\n", 2, "prompts", ["empty"]),
    ("prompt-not-mapping", V + "prompts:\n  - a cat\n", 3, "prompts[0]", ["expected a mapping", "'a cat'"]),
    ("missing-prompts", V, 1, "prompts", ["missing"]),
    ("size-number", V + "size: 12\n" + P, 2, "size", ["expected WxH like 832x480, got 12"]),
    ("size-garbage", V + "size: big\n" + P, 2, "size", ["expected WxH"]),
    ("size-not-16", V + "size: 100x128\n" + P, 2, "size", ["width 100 is not a positive multiple of 16", "96 or 112"]),
    ("quantize-bad", V + "quantize: int4\n" + P, 2, "quantize", ["expected one of none, int8, fp8, got 'int4'"]),
    ("switch-typo", V + "switch: recash\n" + P, 2, "switch", ["did you mean 'recache'?"]),
    ("switch-bool", V + "switch: off\n" + P, 2, "switch", ["'off'", "quote it"]),
    (
        "prompt-switch-typo",
        V + P + "  - at: 5s\n    text: b\n    switch: kep\n",
        7,
        "prompts[1].switch",
        ["did you mean 'keep'?"],
    ),
    ("first-prompt-switch", V + P + "    switch: keep\n", 5, "prompts[0].switch", ["nothing to switch from"]),
    ("sink-ge-window", V + "attention: {window: 3, sink: 3}\n" + P, 2, "attention.sink", ["smaller than window 3"]),
    ("window-string", V + "attention:\n  window: big\n" + P, 3, "attention.window", ["whole number"]),
    ("attention-list", V + "attention: [12, 3]\n" + P, 2, "attention", ["expected a mapping"]),
    ("positions-typo", V + "attention:\n  positions: relativ\n" + P, 3, "attention.positions", ["'relative'?"]),
    ("version-2", "version: 2\n" + V + P, 1, "version", ["unsupported version 2", "version 1"]),
    ("missing-duration", "# my show\nfps: 16\n" + P, 2, "duration", ["missing", "duration: 20s"]),
    ("top-level-list", "- at: 0s\n  text: a\n", 1, None, ["expected keys like 'duration:'", "a list"]),
    ("control-character", V + "seed: \x01\n", 2, None, ["not a text file"]),
]


@pytest.mark.parametrize(("content", "line", "key", "fragments"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_timelines_point_at_the_problem(tmp_path, content, line, key, fragments):
    path = write(tmp_path, content)
    with pytest.raises(TimelineError) as info:
        load_timeline(path)
    err = info.value
    if isinstance(err, TimelineErrors):
        err = err.errors[0]
    text = str(err)
    assert type(err) is TimelineError
    assert (err.path, err.line, err.key) == (path, line, key)
    prefix = f"{path}:{line}: " + (f"{key}: " if key else "")
    assert text.startswith(prefix), text
    assert "show.yaml" in text
    for fragment in fragments:
        assert fragment in text, text


def random_binary() -> bytes:
    rng = random.Random(0)
    return bytes(rng.randrange(256) for _ in range(256)) + b"\0"


# (id, file bytes or None for no file, fragments)
BAD_FILES = [
    ("empty", b"", ["empty timeline"]),
    ("only-comments", b"# nothing yet\n\n", ["empty timeline"]),
    ("binary", random_binary(), ["not a text file"]),
    ("not-utf8", "duration: 20s # caf\u00e9\n".encode("latin-1"), ["not a text file", "UTF-8"]),
    ("huge", b"# " + b"x" * 1_100_000 + b"\n", ["file too large (1.1 MB)", "at most 1 MB"]),
    ("just-over", b"#" * 1_000_001, ["file too large (1000001 bytes)"]),
    ("missing", None, ["file not found"]),
]


@pytest.mark.parametrize(("data", "fragments"), [b[1:] for b in BAD_FILES], ids=[b[0] for b in BAD_FILES])
def test_bad_files_name_the_file(tmp_path, data, fragments):
    path = tmp_path / "show.yaml"
    if data is not None:
        path.write_bytes(data)
    with pytest.raises(TimelineError) as info:
        load_timeline(path)
    err, text = info.value, str(info.value)
    assert (err.path, err.line, err.key) == (path, None, None)
    assert text.startswith(f"{path}: "), text
    for fragment in fragments:
        assert fragment in text, text


def test_directory_is_not_a_timeline(tmp_path):
    with pytest.raises(TimelineError) as info:
        load_timeline(tmp_path)
    assert str(info.value) == f"{tmp_path}: is a directory, not a timeline file"


def test_unreadable_path_says_why(tmp_path):
    (tmp_path / "afile").write_text("")
    path = tmp_path / "afile" / "show.yaml"
    with pytest.raises(TimelineError) as info:
        load_timeline(path)
    assert str(info.value) == f"{path}: cannot read the file (Not a directory)"


def test_a_pipe_is_refused_without_being_read(tmp_path):
    """An endless source (`<(yes)`, a FIFO) is refused as it is, so it can neither hang nor exhaust memory."""
    fifo = tmp_path / "endless.yaml"
    os.mkfifo(fifo)
    with pytest.raises(TimelineError) as info:
        load_timeline(fifo)  # no writer ever opens it: reading would block for good
    assert str(info.value) == f"{fifo}: not a regular file (a pipe or a device?); give a timeline file"


def test_a_path_holding_a_nul_says_why_it_cannot_be_read():
    with pytest.raises(TimelineError) as info:
        load_timeline("show\0.yaml")
    assert str(info.value) == "show\0.yaml: cannot read the file (embedded null byte)"


def test_error_text_and_location_rules(tmp_path):
    err = TimelineError("bad")
    assert str(err) == "bad" and err.args == ("bad",)
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    located = TimelineError("bad", path=first, line=3).located(second, 9)
    assert (located.path, located.line) == (first, 3), "what is already known stays"
    assert TimelineError("bad").located(second, 9).path == second


# (file content, the whole message after "line N: ")
EXACT = [
    (V + "fps: 16: 3\n" + P, "YAML syntax error at column 8: mapping values are not allowed here"),
    (
        V + "prompts:\n\t- at: 0s\n",
        "YAML syntax error at column 1: found character '\\t' that cannot start any token "
        "(while scanning for the next token); indent with spaces, not tabs",
    ),
    (V + "? [a]\n: 1\n" + P, "keys must be plain names, not lists or mappings"),
    ("fps: 0\n" + V + P, "fps: 0 is out of range; use a number from 1 to 120"),
    (V + "attention: {window: 0}\n" + P, "attention.window: 0 is out of range; use a number at least 1"),
    (V + "quantize: zzz\n" + P, "quantize: expected one of none, int8, fp8, got 'zzz'"),
    (V + "size: 0x10\n" + P, "size: width 0 is not a positive multiple of 16 (try 16 or 32)"),
    (V + "size: 0x16\n" + P, "size: width 0 is not a positive multiple of 16 (try 16 or 32)"),
    (V + "size: 64x40\n" + P, "size: height 40 is not a positive multiple of 16 (try 32 or 48)"),
    (V + "size: [64, true]\n" + P, "size: expected WxH like 832x480, got a list"),
    (V + "size: [64, 32, 16]\n" + P, "size: expected WxH like 832x480, got a list"),
    ("fps: [1]\n" + V + P, "fps: expected a whole number, got a list"),
    (V + "seed: {a: 1}\n" + P, "seed: expected a whole number, got a mapping"),
    ("fps: yes\n" + V + P, "fps: expected a whole number, got 'yes' (YAML reads it as true; quote it)"),
    (V + "seed: 1.50\n" + P, "seed: expected a whole number, got 1.50"),
    (V + "prompts:\n  - ~\n", "prompts[0]: expected a mapping with 'at:' and 'text:', got nothing"),
    ("version: one\n" + V + P, "version: expected a whole number, got 'one'"),
    ("version: 0\n" + V + P, "version: unsupported version 0; this longlive reads version 1"),
    (V + "model: 5\n" + P, "model: expected a name or a path, got 5"),
    (V + "output: '  '\n" + P, "output: expected a name or a path, got '  '"),
    (V + 'model: "a\\0b"\n' + P, "model: a path cannot hold a NUL character (\\0)"),
    (
        V + "model: ~no-such-user-here/m.safetensors\n" + P,
        "model: cannot expand '~no-such-user-here/m.safetensors': no such user's home folder",
    ),
    (
        V + "k" * 61 + ": 1\n" + P,
        "k" * 60 + ": unknown key '" + "k" * 60 + "…'; expected one of: version, model, output, duration, fps, seed, "
        "size, attention, quantize, switch, prompts",
    ),
    (V + "quantize: " + "q" * 60 + "\n" + P, "quantize: expected one of none, int8, fp8, got '" + "q" * 60 + "'"),
    ("fps: 16\n" + P, "duration: missing; say how long the video is, e.g. 'duration: 20s' (at most 24h)"),
    ("duration: 0s\n" + P, "duration: duration must be more than 0s"),
    ("duration: 0.01s\n" + P, "duration: 0.01s is shorter than one frame at 16 fps"),
    (V, "prompts: missing; add a list of prompts, each with 'at:' and 'text:'"),
    (
        V + P + "    switch: keep\n",
        "prompts[0].switch: the first prompt starts the video, so there is nothing to switch from; "
        "set 'switch' on a later prompt or at the top level",
    ),
    (V + "prompts:\n  - text: a\n", "prompts[0].at: missing 'at' (when it starts, e.g. 'at: 8s')"),
    (
        V + "attention: [12, 3]\n" + P,
        "attention: expected a mapping like {window: 12, sink: 3, positions: auto}, got a list",
    ),
    (
        V + "output: ~no-such-user-here/o.mp4\n" + P,
        "output: cannot expand '~no-such-user-here/o.mp4': no such user's home folder",
    ),
    (V + "seed: 4294967296\n" + P, "seed: 4294967296 is out of range; use a number from 0 to 4294967295"),
    (V + "prompts: []\n", "prompts: the list is empty; add at least one prompt at 0s"),
    (V + "attention: {sink: x}\n" + P, "attention.sink: expected a whole number, got 'x'"),
    (V + P + "  - at: 5s\n", "prompts[1].text: missing 'text' (what to show)"),
]


@pytest.mark.parametrize(("content", "message"), EXACT)
def test_messages_read_exactly(content, message):
    with pytest.raises(TimelineError) as info:
        parse_timeline(content)
    assert str(info.value).split(": ", 1)[1] == message


def test_every_problem_is_reported_and_the_first_one_leads(tmp_path):
    path = write(tmp_path, "fps: 0\n" + V + "seed: x\n" + P)
    with pytest.raises(TimelineErrors) as info:
        load_timeline(path)
    err = info.value
    assert (err.message, err.path, err.line, err.key) == (
        "0 is out of range; use a number from 1 to 120",
        path,
        1,
        "fps",
    )
    assert str(err).splitlines() == [
        f"{path}:1: fps: 0 is out of range; use a number from 1 to 120",
        f"{path}:3: seed: expected a whole number, got 'x'",
    ]
    located = TimelineErrors([TimelineError("a", key="fps"), TimelineError("b", line=4)]).located(path, 9)
    assert [(e.path, e.line) for e in located.errors] == [(path, 9), (path, 4)], "only unknown lines are filled in"


def test_limits_are_inclusive():
    """A day of video, a 2000-character prompt and 1000 prompts are allowed; one more is refused."""
    t = parse_timeline(timeline_with(("0s", "a" * 2000), duration="24h"))
    assert (t.duration, len(t.prompts[0].text)) == (86400.0, 2000)
    prompts = [(f"{i}s", "a") for i in range(1000)]
    assert len(parse_timeline(timeline_with(*prompts, duration="1001s")).prompts) == 1000
    with pytest.raises(TimelineError) as info:
        parse_timeline(timeline_with(*prompts, ("1000s", "a"), duration="1001s"))
    assert str(info.value) == "line 3: prompts: 1001 prompts; at most 1000"


def test_every_bad_prompt_is_reported_not_just_the_first():
    prompts = [("0s", "a"), ("x", "b"), ("8s", "c"), ("5s", "d"), ("y", "e"), ("30s", "f")]
    with pytest.raises(TimelineErrors) as info:
        parse_timeline(timeline_with(*prompts))
    assert [e.key for e in info.value.errors] == [f"prompts[{i}].at" for i in (1, 3, 4, 5)]


def test_lines_point_at_the_at_key_and_every_top_level_and_attention_key():
    t = parse_timeline(
        V + "attention: {window: 12, sink: 3}\nprompts:\n  - at: 0s\n    text: a\n  - text: b\n    at: 5s\n"
    )
    assert [p.line for p in t.prompts] == [4, 7], "a prompt's line is its 'at:', wherever that sits"
    assert t.key_lines == {"duration": 1, "attention": 2, "attention.window": 2, "attention.sink": 2, "prompts": 3}


def test_a_size_is_read_up_to_48_characters():
    """Longer text is refused before int() sees its digits."""
    padded = "64x32".center(48)
    assert parse_timeline(V + f"size: '{padded}'\n" + P).size == (64, 32)
    with pytest.raises(TimelineError, match="expected WxH"):
        parse_timeline(V + f"size: '{padded} '\n" + P)


def test_size_as_a_list_and_values_from_the_command_line():
    assert parse_timeline(V + "size: [64, 32]\n" + P).size == (64, 32)
    with pytest.raises(TimelineError) as info:
        single_prompt_timeline("a", "1s", seed=True)
    assert str(info.value) == "seed: expected a whole number, got True"
    with pytest.raises(TimelineError) as info:
        single_prompt_timeline("a", "1s", seed=1.5)
    assert str(info.value) == "seed: expected a whole number, got 1.5"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"ab\0c\0", ": not a text file (NUL byte at offset 2); timelines are YAML"),
        (b"\n" + V.encode() + b"seed: \x01\n" + P.encode(), ":3: not a text file (control character"),
        (b"#" * 1_050_000, ": file too large (1.1 MB); timelines are at most 1 MB"),
        (b"#" * 1_350_000, ": file too large (1.4 MB); timelines are at most 1 MB"),
        (b"# nothing yet\n", ": empty timeline; it needs at least 'duration:' and 'prompts:'"),
    ],
)
def test_file_level_messages_read_exactly(tmp_path, data, message):
    path = tmp_path / "show.yaml"
    path.write_bytes(data)
    with pytest.raises(TimelineError) as info:
        load_timeline(path)
    assert str(info.value).startswith(f"{path}{message}")


def test_a_file_of_exactly_one_megabyte_is_read(tmp_path):
    body = timeline_with(("0s", "a")).encode()
    path = tmp_path / "show.yaml"
    path.write_bytes(body + b"#" * (1_000_000 - len(body)))
    assert load_timeline(path).duration == 20


def test_utf8_bom_and_relative_path_given_as_string(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "show.yaml").write_bytes(b"\xef\xbb\xbf" + timeline_with(("0s", "caf\u00e9")).encode())
    t = load_timeline("show.yaml")
    assert t.prompts[0].text == "caf\u00e9"
    assert t.path == Path("show.yaml")
    with pytest.raises(TimelineError, match=r"^shows/x\.yaml: file not found$"):
        load_timeline(os.path.join("shows", "x.yaml"))


def test_relative_outputs_read_without_dot_dot_as_the_system_follows_links(tmp_path):
    """``../out`` from a timeline's folder names the folder the system would write to, shown without ``..``."""
    (tmp_path / "shows").mkdir()
    (tmp_path / "shows" / "a.yaml").write_text(
        "output: ../out/a.mp4\nmodel: ../m.safetensors\n" + timeline_with(("0s", "a"))
    )
    t = load_timeline(tmp_path / "shows" / "a.yaml")
    assert t.output == tmp_path.resolve() / "out" / "a.mp4" and ".." not in t.output.parts
    assert t.model_path == tmp_path.resolve() / "m.safetensors"
    (tmp_path / "deep" / "real").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "deep" / "real")
    (tmp_path / "link" / "b.yaml").write_text("output: ../b.mp4\n" + timeline_with(("0s", "a")))
    assert load_timeline(tmp_path / "link" / "b.yaml").output == tmp_path.resolve() / "deep" / "b.mp4"
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.mp4").symlink_to(tmp_path / "elsewhere.mp4")
    assert load_timeline(tmp_path / "shows" / "a.yaml").output == tmp_path.resolve() / "out" / "a.mp4"
