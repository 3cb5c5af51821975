"""Timelines: a YAML file of timestamped prompts, read into a checked ``Timeline`` with errors that point at a line.

A timeline looks like::

    version: 1
    model: tiny                      # 'tiny' (embedded), a model directory, or a converted .safetensors file
    output: out/demo.mp4             # optional; the CLI's -o wins
    duration: 20s                    # 20s, 1m30s, 2m, 1:30, 1h, 1:30:00, 1.5s, 90 (seconds), 320f; up to 24h
    fps: 16                          # optional, default 16 (the model's native rate)
    seed: 42                         # optional, default 0
    size: 128x128                    # optional WxH, multiples of 16; the model's default otherwise
    attention: {window: 12, sink: 3} # optional, in latent frames; the window counts the sink; sink < window
                                     # positions: auto | absolute | relative (RoPE time positions; see below)
    quantize: none                   # none | int8 | fp8
    switch: recache                  # default at prompt changes: recache | keep | clear
    prompts:
      - at: 0s
        text: a red circle moving right on a gray background
      - at: 8s
        text: the red circle turns blue and moves up
        switch: keep                 # this change only

``attention.positions``: ``absolute`` gives each latent frame its frame number as RoPE time position (ordinary
LongLive; the table ends at 1024 latent frames, about 4 minutes), ``relative`` its slot in the attention window
(LongLive's infinite-length mode, any length), and ``auto`` (the default) picks absolute when the video fits the
table and relative when it does not.

Relative ``model`` and ``output`` paths in a file are taken from the timeline's folder, so a timeline and its
model can move together; for ``single_prompt_timeline`` (the command line) they are taken from the current
directory. Existence is not checked here: the model loader and the video writer report on their own paths.

Every problem raises ``TimelineError``, whose text reads ``show.yaml:7: prompts[2].at: times must increase (8s
after 10s)``: file, 1-based line, key (prompt indexes count from 0), then what is wrong and how to fix it.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .bundle import LONGLIVE_13B
from .engine import SwitchPolicy
from .safe_yaml import BoundedLoader, YAMLLimitError

VERSION = 1
TINY_MODEL = "tiny"
# Geometry a timeline is checked against before its model loads: the Wan family's, which every model here shares;
# the render checks the loaded model's own spec again.
NATIVE = LONGLIVE_13B
DEFAULT_FPS = NATIVE.fps
MAX_FPS = 120
MAX_SECONDS = 24 * 3600.0
MAX_TEXT = 2000
MAX_BYTES = 1_000_000
MAX_PROMPTS = 1000
# Longer numbers are not times, sizes or seeds; refusing them keeps int() away from huge digit strings.
MAX_DIGITS = 24
SHOWN_CHARS = 60
MAX_SEED = 2**32 - 1
QUANTIZE_MODES = ("none", "int8", "fp8")
POSITION_MODES = ("auto", "absolute", "relative")

TOP_KEYS = (
    "version",
    "model",
    "output",
    "duration",
    "fps",
    "seed",
    "size",
    "attention",
    "quantize",
    "switch",
    "prompts",
)
PROMPT_KEYS = ("at", "text", "switch")
ATTENTION_KEYS = ("window", "sink", "positions")
OVERRIDE_KEYS = ("model", "output", "fps", "seed", "size", "window", "sink", "positions", "quantize", "switch")

# Video frames per latent frame after the first, in the Wan VAE's temporal compression.
VIDEO_FRAMES_PER_LATENT = NATIVE.time_stride

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_MINUTES_SECONDS = re.compile(rf"(?:(?P<m>{_NUMBER})\s*m)?\s*(?:(?P<s>{_NUMBER})\s*s?)?")
_HOURS = re.compile(rf"(?P<h>{_NUMBER})\s*h\s*(?:(?P<m>{_NUMBER})\s*m)?\s*(?:(?P<s>{_NUMBER})\s*s)?")
_CLOCK = re.compile(r"(?:(?P<h>\d+):(?=\d+:))?(?P<m>\d+):(?P<s>[0-5]?\d(?:\.\d*)?)")
_FRAMES = re.compile(r"(?P<f>\d+)\s*f")
_SIZE = re.compile(r"\s*(?P<w>\d+)\s*[xX×]\s*(?P<h>\d+)\s*")
TIME_SYNTAX = "write seconds (20s, 1.5s, 20), minutes (1m30s, 2m, 1:30), hours (1h, 1h30m, 1:30:00) or frames (320f)"


class TimelineError(Exception):
    """A timeline that cannot be used; ``path``, ``line`` and ``key`` say where, so scripts and users can fix it."""

    def __init__(self, message: str, *, path: Path | None = None, line: int | None = None, key: str | None = None):
        super().__init__(message)
        self.message = message
        self.path = path
        self.line = line
        self.key = key

    def __str__(self) -> str:
        where = _where(self.path, self.line, self.key)
        return f"{where}: {self.message}" if where else self.message

    def located(self, path: Path | None = None, line: int | None = None) -> TimelineError:
        """The same problem with the file and line filled in where they were not known yet."""
        return TimelineError(
            self.message,
            path=self.path if self.path is not None else path,
            line=self.line if self.line is not None else line,
            key=self.key,
        )


class TimelineErrors(TimelineError):
    """Every problem found in one timeline, top-level keys first; reads as one located line per problem."""

    def __init__(self, errors: Sequence[TimelineError]):
        first = errors[0]
        super().__init__(first.message, path=first.path, line=first.line, key=first.key)
        self.errors = list(errors)

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)

    def located(self, path: Path | None = None, line: int | None = None) -> TimelineError:
        return TimelineErrors([e.located(path, line) for e in self.errors])


def _raise_all(errors: Sequence[TimelineError]) -> None:
    """Raise the one problem found, or all of them together."""
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise TimelineErrors(errors)


@dataclass(frozen=True)
class PromptChange:
    """A prompt that takes over at ``at`` seconds; ``switch`` overrides the timeline's default policy."""

    at: float
    text: str
    switch: SwitchPolicy | None
    line: int | None


@dataclass(frozen=True)
class Timeline:
    """Everything a render needs from a timeline, checked; ``None`` means the model's or the CLI's default."""

    path: Path | None
    model: str
    model_path: Path | None
    output: Path | None
    duration: float
    fps: int
    seed: int
    size: tuple[int, int] | None
    window: int | None
    sink: int | None
    positions: str
    quantize: str
    switch: SwitchPolicy
    prompts: tuple[PromptChange, ...]
    key_lines: dict[str, int] = field(default_factory=dict, compare=False)

    def frames(self) -> int:
        """Video frames in the finished clip."""
        return round(self.duration * self.fps)

    def policy_at(self, i: int) -> SwitchPolicy:
        """How the cache is treated when prompt ``i`` takes over: its own switch, else the default."""
        return self.prompts[i].switch or self.switch


@dataclass(frozen=True)
class Landing:
    """Where one prompt change was asked for and where it takes effect: latent frames, and seconds of video."""

    requested: int
    landed: int
    landed_s: float


@dataclass(frozen=True)
class Plan:
    """Where each prompt change really lands on the chunk grid (``changes[i]`` for prompt ``i``), and what the
    user should know about it."""

    changes: tuple[Landing, ...]
    warnings: tuple[str, ...]
    latent_frames: int
    video_frames: int


@dataclass
class _Item:
    """A YAML value with the line it starts on: a scalar, a list of items, or a dict of items by key."""

    value: Any
    line: int | None = None
    raw: str | None = None
    key_line: int | None = None


def load_timeline(path: str | os.PathLike[str]) -> Timeline:
    """Read and check a timeline file, turning every I/O, encoding and YAML failure into a ``TimelineError``."""
    path = Path(path)
    try:
        # Non-blocking, so a FIFO is refused instead of waiting for a writer that may never come.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with open(fd, "rb") as f:
            info = os.fstat(f.fileno())
            if stat.S_ISDIR(info.st_mode):
                raise IsADirectoryError
            if not stat.S_ISREG(info.st_mode):
                raise TimelineError("not a regular file (a pipe or a device?); give a timeline file", path=path)
            data = f.read(MAX_BYTES + 1)
            size = info.st_size
    except FileNotFoundError:
        raise TimelineError("file not found", path=path) from None
    except IsADirectoryError:
        raise TimelineError("is a directory, not a timeline file", path=path) from None
    except (OSError, ValueError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else e
        raise TimelineError(f"cannot read the file ({reason})", path=path) from None
    if len(data) > MAX_BYTES:
        size = max(size, len(data))
        shown = f"{size / 1e6:.1f} MB" if size >= 1_050_000 else f"{size} bytes"
        raise TimelineError(f"file too large ({shown}); timelines are at most 1 MB", path=path)
    if b"\0" in data:
        raise TimelineError(f"not a text file (NUL byte at offset {data.index(0)}); timelines are YAML", path=path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        message = f"not a text file (not UTF-8 at byte offset {e.start}); save it as UTF-8"
        raise TimelineError(message, path=path) from None
    return parse_timeline(text, path)


def parse_timeline(text: str, path: Path | None = None) -> Timeline:
    """Check timeline YAML text; ``path`` names it in errors and anchors relative model and output paths."""
    base = path.parent if path is not None else Path.cwd()
    try:
        return _build(_compose(text), base, path)
    except TimelineError as e:
        raise e.located(path) from None


def single_prompt_timeline(text: str, duration: str | float, **overrides: Any) -> Timeline:
    """A one-prompt timeline from command-line values, checked like a file; ``None`` overrides mean 'not given'."""
    unknown = sorted(set(overrides) - set(OVERRIDE_KEYS))
    if unknown:
        raise TypeError(f"unknown timeline overrides {unknown}; expected some of {list(OVERRIDE_KEYS)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    attention = {k: given.pop(k) for k in ATTENTION_KEYS if k in given}
    fields: dict[str, Any] = {"duration": duration, "prompts": [{"at": 0, "text": text}], **given}
    if attention:
        fields["attention"] = attention
    try:
        return _build(_plain(fields), Path.cwd(), None)
    except TimelineError as e:
        if e.key == "prompts[0].text":
            raise TimelineError(e.message, key="prompt") from None
        raise


def parse_time(value: Any, fps: int, where: str) -> float:
    """Seconds from a time or duration as users write it (20s, 1m30s, 2m, 1:30, 1.5, 320f); ``where`` names the key."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TimelineError(f"expected a time, got {_kind(value)}; {TIME_SYNTAX}", key=where)
    if isinstance(value, str):
        seconds = _time_from_text(value.strip().lower(), fps)
        if seconds is None:
            raise TimelineError(f"cannot read {value!r} as a time; {TIME_SYNTAX}", key=where)
    else:
        seconds = float(value)
    if not math.isfinite(seconds):
        raise TimelineError(f"{value!r} is not a finite time; {TIME_SYNTAX}", key=where)
    if seconds < 0:
        raise TimelineError(f"negative time {value!r}; times count from the start of the video", key=where)
    return seconds


def video_frames_for(latent_frames: int) -> int:
    """Video frames that ``latent_frames`` latent frames decode to: 1 + 4(T - 1)."""
    return NATIVE.video_frames(latent_frames)


def latent_frames_for(video_frames: int, chunk: int) -> int:
    """The fewest latent frames, in whole chunks, that decode to at least ``video_frames`` video frames."""
    if video_frames < 1 or chunk < 1:
        raise ValueError(f"need video_frames >= 1 and chunk >= 1, got {video_frames} and {chunk}")
    needed = 1 + -(-(video_frames - 1) // VIDEO_FRAMES_PER_LATENT)
    return landing(needed, chunk)


def requested_latent(at_seconds: float, fps: int) -> int:
    """The first latent frame whose first video frame is at or after the requested time."""
    frame = round(at_seconds * fps)
    if frame <= 0:
        return 0
    return -(-(frame + VIDEO_FRAMES_PER_LATENT - 1) // VIDEO_FRAMES_PER_LATENT)


def landing(requested: int, chunk: int) -> int:
    """The first chunk start at or after ``requested``: the engine only switches prompts between chunks."""
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    return -(-requested // chunk) * chunk


def video_frame_of_latent(f: int) -> int:
    """The first video frame that latent frame ``f`` decodes to."""
    return 0 if f <= 0 else VIDEO_FRAMES_PER_LATENT * f - (VIDEO_FRAMES_PER_LATENT - 1)


def plan_changes(timeline: Timeline, chunk: int) -> Plan:
    """Land every prompt on the chunk grid, one switch per chunk as the engine does, and warn about shifts."""
    video_frames = timeline.frames()
    latents = latent_frames_for(video_frames, chunk)
    changes: list[Landing] = []
    warnings: list[str] = []
    for i, change in enumerate(timeline.prompts):
        requested = requested_latent(change.at, timeline.fps)
        landed = landing(requested, chunk)
        if changes and landed <= changes[-1].landed:
            landed = changes[-1].landed + chunk
            warnings.append(
                _place(timeline, i)
                + f"shares a chunk with prompts[{i - 1}] (one switch per chunk), so it starts one chunk later, "
                f"at {_seconds(video_frame_of_latent(landed) / timeline.fps)}"
            )
        frame = video_frame_of_latent(landed)
        if frame >= video_frames:
            warnings.append(
                _place(timeline, i)
                + f"lands at {_seconds(frame / timeline.fps)}, after the video ends at {_seconds(timeline.duration)}; "
                "it will not be shown (move it earlier or make the video longer)"
            )
        changes.append(Landing(requested, landed, frame / timeline.fps))
    return Plan(tuple(changes), tuple(warnings), latents, video_frames)


def _place(timeline: Timeline, i: int) -> str:
    """The ``file:line: prompts[i] at Ns`` prefix of a plan warning."""
    change = timeline.prompts[i]
    return f"{_where(timeline.path, change.line, f'prompts[{i}]')} at {_seconds(change.at)} "


def _where(path: Path | None, line: int | None, key: str | None) -> str:
    """``file:line: key``, leaving out what is unknown."""
    parts = [] if path is None else [str(path)]
    if line is not None:
        parts = [f"{parts[0]}:{line}"] if parts else [f"line {line}"]
    if key is not None:
        parts.append(key)
    return ": ".join(parts)


def _time_from_text(text: str, fps: int) -> float | None:
    """Seconds from the text forms of a time, or None when it is none of them."""
    if text.startswith("-"):
        seconds = _time_from_text(text[1:].lstrip(), fps)
        return None if seconds is None else -seconds
    if len(re.sub(r"\D", "", text)) > MAX_DIGITS:
        return None
    if m := _FRAMES.fullmatch(text):
        return int(m["f"]) / fps
    if m := _CLOCK.fullmatch(text):
        if m["h"] is not None and int(m["m"]) >= 60:
            return None
        return int(m["h"] or 0) * 3600 + int(m["m"]) * 60 + float(m["s"])
    if m := _HOURS.fullmatch(text):
        return float(m["h"]) * 3600 + float(m["m"] or 0) * 60 + float(m["s"] or 0)
    m = _MINUTES_SECONDS.fullmatch(text)
    if m is None or (m["m"] is None and m["s"] is None):
        return None
    return float(m["m"] or 0) * 60 + float(m["s"] or 0)


def _compose(text: str) -> _Item | None:
    """Parse YAML into items that keep their line numbers, reporting syntax errors where YAML found them."""
    try:
        loader = BoundedLoader(text)
        try:
            node = loader.get_single_node()
            return None if node is None else _from_node(node, loader)
        finally:
            loader.dispose()
    except yaml.reader.ReaderError as e:
        line = text.count("\n", 0, e.position) + 1
        raise TimelineError(f"not a text file (control character {e.character!r})", line=line) from None
    except YAMLLimitError as e:
        mark = e.problem_mark
        raise TimelineError(f"YAML too complex: {e.problem}", line=mark.line + 1 if mark else None) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = e.problem or e.context or "unreadable YAML"
        if e.context and e.problem:
            problem += f" ({e.context})"
        if "\\t" in problem or "\t" in problem:
            problem += "; indent with spaces, not tabs"
        column = f" at column {mark.column + 1}" if mark else ""
        raise TimelineError(f"YAML syntax error{column}: {problem}", line=mark.line + 1 if mark else None) from None
    except yaml.YAMLError as e:
        raise TimelineError(f"YAML error: {e}") from None


def _from_node(node: yaml.Node, loader: yaml.SafeLoader) -> _Item:
    """One YAML node as an item; mapping keys must be plain names and appear once."""
    line = node.start_mark.line + 1
    if isinstance(node, yaml.SequenceNode):
        return _Item([_from_node(n, loader) for n in node.value], line)
    if isinstance(node, yaml.MappingNode):
        entries: dict[str, _Item] = {}
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                raise TimelineError("keys must be plain names, not lists or mappings", line=key_line)
            key = key_node.value
            _check_unicode(key, key_line)
            if key in entries:
                first = entries[key].key_line
                raise TimelineError(f"duplicate key '{key}' (first given on line {first})", line=key_line)
            entries[key] = _from_node(value_node, loader)
            entries[key].key_line = key_line
        return _Item(entries, line)
    try:
        value = loader.construct_object(node)
    except (ValueError, OverflowError):
        raise TimelineError(f"cannot read {_short(node.value)} (too many digits?)", line=line) from None
    if isinstance(value, str):
        _check_unicode(value, line)
    return _Item(value, line, raw=node.value)


def _check_unicode(text: str, line: int | None) -> None:
    """Refuse text that is not valid Unicode (a lone surrogate from a YAML escape), which no output can carry."""
    bad = next((c for c in text if "\ud800" <= c <= "\udfff"), None)
    if bad is not None:
        message = f"text holds a lone surrogate \\u{ord(bad):04x}, which is not a character; remove the escape"
        raise TimelineError(message, line=line)


def _short(text: str) -> str:
    """Text for an error message, cut to a readable length."""
    return repr(text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "…")


def _plain(value: Any) -> _Item:
    """Python values as items without line numbers, for timelines built from command-line options."""
    if isinstance(value, dict):
        return _Item({str(k): _plain(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return _Item([_plain(v) for v in value])
    return _Item(value)


def _build(root: _Item | None, base: Path, path: Path | None) -> Timeline:
    """Check the whole document, collecting every problem in file order, and assemble the ``Timeline``."""
    if root is None:
        raise TimelineError("empty timeline; it needs at least 'duration:' and 'prompts:'")
    if not isinstance(root.value, dict):
        raise TimelineError(
            f"expected keys like 'duration:' and 'prompts:' at the top level, got {_kind(root)}", line=root.line
        )
    top: dict[str, _Item] = root.value
    errors: list[TimelineError] = []

    def given(key: str, read, default=None):
        """``read(item)`` for a key that is given, else ``default``; a problem is noted and ``default`` stands in."""
        item = _optional(top, key)
        if item is None:
            return default
        try:
            return read(item)
        except TimelineError as e:
            errors.append(e)
            return default

    _check_keys(top, TOP_KEYS, "", errors)
    given("version", _version)
    fps = given("fps", lambda item: _integer(item, "fps", 1, MAX_FPS), DEFAULT_FPS)
    duration = _noting(errors, _duration, top, root.line, fps)
    model = given("model", lambda item: _text(item, "model"), TINY_MODEL)
    model_path = None if model == TINY_MODEL else _noting(errors, _resolve, base, model, top.get("model"), "model")
    output = given("output", lambda item: _resolve(base, _text(item, "output"), item, "output"))
    window, sink, positions = _noting(errors, _attention, top.get("attention"), errors) or (None, None, "auto")
    seed = given("seed", lambda item: _integer(item, "seed", 0, MAX_SEED), 0)
    size = given("size", _size)
    quantize = given("quantize", lambda item: _choice(item, "quantize", QUANTIZE_MODES), "none")
    switch = given("switch", lambda item: _policy(item, "switch"), SwitchPolicy.RECACHE)
    prompts = _prompts(top.get("prompts"), root.line, fps, duration, errors)
    _raise_all(errors)
    return Timeline(
        path=path,
        model=model,
        model_path=model_path,
        output=output,
        duration=duration,
        fps=fps,
        seed=seed,
        size=size,
        window=window,
        sink=sink,
        positions=positions,
        quantize=quantize,
        switch=switch,
        prompts=prompts,
        key_lines=_key_lines(top),
    )


def _key_lines(top: dict[str, _Item]) -> dict[str, int]:
    """The line of each top-level and attention key, so later checks against a model can point at it."""
    lines = {key: item.key_line for key, item in top.items() if item.key_line is not None}
    attention = top.get("attention")
    if attention is not None and isinstance(attention.value, dict):
        lines |= {f"attention.{k}": v.key_line for k, v in attention.value.items() if v.key_line is not None}
    return lines


def _noting(errors: list[TimelineError], read, *args):
    """``read(*args)``, or None with the problem noted in ``errors``."""
    try:
        return read(*args)
    except TimelineError as e:
        errors.append(e)
        return None


def _version(item: _Item) -> int:
    """The format version, which must be the one this longlive reads."""
    if _integer(item, "version", 0, None) != VERSION:
        raise TimelineError(
            f"unsupported version {_kind(item)}; this longlive reads version {VERSION}",
            line=item.line,
            key="version",
        )
    return VERSION


def _optional(entries: dict[str, _Item], key: str) -> _Item | None:
    """The item under ``key``, or None when it is absent or written as null (both mean 'use the default')."""
    item = entries.get(key)
    return None if item is None or item.value is None else item


def _check_keys(entries: dict[str, _Item], allowed: Sequence[str], prefix: str, errors: list[TimelineError]) -> None:
    """Note every key that means nothing here, suggesting the closest known one."""
    for key, item in entries.items():
        if key not in allowed:
            close = difflib.get_close_matches(key[:SHOWN_CHARS], allowed, n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'?" if close else f"expected one of: {', '.join(allowed)}"
            message = f"unknown key {_short(key)}; {hint}"
            errors.append(TimelineError(message, line=item.key_line, key=prefix + key[:SHOWN_CHARS]))


def _duration(top: dict[str, _Item], line: int | None, fps: int) -> float:
    """The video length in seconds: required, positive, at least one frame, and at most 24 hours."""
    item = _optional(top, "duration")
    if item is None:
        raise TimelineError(
            "missing; say how long the video is, e.g. 'duration: 20s' (at most 24h)",
            line=line,
            key="duration",
        )
    seconds = _time(item, fps, "duration")
    if seconds <= 0:
        raise TimelineError("duration must be more than 0s", line=item.line, key="duration")
    if seconds > MAX_SECONDS:
        raise TimelineError(
            f"{_seconds(seconds)} is too long; videos are at most 24h ({_seconds(MAX_SECONDS)})",
            line=item.line,
            key="duration",
        )
    if round(seconds * fps) < 1:
        message = f"{_seconds(seconds)} is shorter than one frame at {fps} fps"
        raise TimelineError(message, line=item.line, key="duration")
    return seconds


def _time(item: _Item, fps: int, key: str) -> float:
    """``parse_time`` on an item as written, so YAML's octal, hex and yes/no readings do not apply."""
    value = item.raw if isinstance(item.value, (bool, int, float)) and item.raw is not None else item.value
    try:
        return parse_time(value, fps, key)
    except TimelineError as e:
        raise e.located(line=item.line) from None


def _prompts(
    item: _Item | None, line: int | None, fps: int, duration: float | None, errors: list[TimelineError]
) -> tuple[PromptChange, ...]:
    """The prompt list: mappings with at and text, starting at 0, strictly increasing, all before the end."""
    if item is None or item.value is None:
        message = "missing; add a list of prompts, each with 'at:' and 'text:'"
        errors.append(TimelineError(message, line=item.line if item else line, key="prompts"))
        return ()
    if not isinstance(item.value, list):
        message = f"expected a list of prompts ('- at: 0s' then 'text: ...'), got {_kind(item)}"
        errors.append(TimelineError(message, line=item.line, key="prompts"))
        return ()
    if not item.value:
        errors.append(TimelineError("the list is empty; add at least one prompt at 0s", line=item.line, key="prompts"))
        return ()
    if len(item.value) > MAX_PROMPTS:
        message = f"{len(item.value)} prompts; at most {MAX_PROMPTS}"
        errors.append(TimelineError(message, line=item.line, key="prompts"))
        return ()
    changes: list[PromptChange] = []
    for i, entry in enumerate(item.value):
        change = _noting(errors, _prompt, entry, f"prompts[{i}]", fps, errors)
        if change is None:
            continue
        problem = _placement(i, change, changes[-1] if changes else None, duration, entry.value)
        if problem is not None:
            errors.append(problem)
            continue
        changes.append(change)
    return tuple(changes)


def _placement(
    i: int, change: PromptChange, previous: PromptChange | None, duration: float | None, fields: dict[str, _Item]
) -> TimelineError | None:
    """What is wrong with where prompt ``i`` sits: first at 0s, after the one before it, before the end."""
    at_line = fields["at"].line
    key = f"prompts[{i}].at"
    if i == 0 and change.at != 0:
        return TimelineError(f"the first prompt must be at 0s, got {_seconds(change.at)}", line=at_line, key=key)
    if i == 0 and change.switch is not None:
        return TimelineError(
            "the first prompt starts the video, so there is nothing to switch from; "
            "set 'switch' on a later prompt or at the top level",
            line=fields["switch"].line,
            key="prompts[0].switch",
        )
    if previous is not None and change.at == previous.at:
        return TimelineError(f"two prompts at {_seconds(change.at)}; times must increase", line=at_line, key=key)
    if previous is not None and change.at < previous.at:
        message = f"times must increase ({_seconds(change.at)} after {_seconds(previous.at)})"
        return TimelineError(message, line=at_line, key=key)
    if duration is not None and change.at >= duration:
        message = f"{_seconds(change.at)} is not before the end of the video (duration {_seconds(duration)})"
        return TimelineError(message, line=at_line, key=key)
    return None


def _prompt(entry: _Item, key: str, fps: int, errors: list[TimelineError]) -> PromptChange:
    """One prompt mapping, checked on its own."""
    if not isinstance(entry.value, dict):
        raise TimelineError(f"expected a mapping with 'at:' and 'text:', got {_kind(entry)}", line=entry.line, key=key)
    fields: dict[str, _Item] = entry.value
    _check_keys(fields, PROMPT_KEYS, f"{key}.", errors)
    for required, meaning in (("at", "when it starts, e.g. 'at: 8s'"), ("text", "what to show")):
        if _optional(fields, required) is None:
            line = fields[required].line if required in fields else entry.line
            raise TimelineError(f"missing '{required}' ({meaning})", line=line, key=f"{key}.{required}")
    at = _time(fields["at"], fps, f"{key}.at")
    text_item = fields["text"]
    if not isinstance(text_item.value, str):
        raise TimelineError(f"expected text, got {_kind(text_item)}; quote it", line=text_item.line, key=f"{key}.text")
    text = text_item.value.strip()
    if not text:
        raise TimelineError("empty text; describe what the video should show", line=text_item.line, key=f"{key}.text")
    if len(text) > MAX_TEXT:
        raise TimelineError(
            f"text is {len(text)} characters; at most {MAX_TEXT}", line=text_item.line, key=f"{key}.text"
        )
    switch = _optional(fields, "switch")
    return PromptChange(
        at=at,
        text=text,
        switch=None if switch is None else _policy(switch, f"{key}.switch"),
        line=fields["at"].line if fields["at"].line is not None else entry.line,
    )


def _attention(item: _Item | None, errors: list[TimelineError]) -> tuple[int | None, int | None, str]:
    """Window and sink sizes in latent frames (the window includes the sink, so the sink is smaller) and positions."""
    if item is None or item.value is None:
        return None, None, "auto"
    if not isinstance(item.value, dict):
        raise TimelineError(
            f"expected a mapping like {{window: 12, sink: 3, positions: auto}}, got {_kind(item)}",
            line=item.line,
            key="attention",
        )
    fields: dict[str, _Item] = item.value
    _check_keys(fields, ATTENTION_KEYS, "attention.", errors)
    window = _integer(fields["window"], "attention.window", 1, None) if _optional(fields, "window") else None
    sink = _integer(fields["sink"], "attention.sink", 0, None) if _optional(fields, "sink") else None
    positions = _optional(fields, "positions")
    positions = "auto" if positions is None else _choice(positions, "attention.positions", POSITION_MODES)
    if window is not None and sink is not None and sink >= window:
        raise TimelineError(
            f"sink {sink} must be smaller than window {window} (the window counts the sink frames)",
            line=fields["sink"].line,
            key="attention.sink",
        )
    return window, sink, positions


def _integer(item: _Item, key: str, low: int, high: int | None) -> int:
    """A whole number within [low, high]."""
    if isinstance(item.value, bool) or not isinstance(item.value, int):
        raise TimelineError(f"expected a whole number, got {_kind(item)}", line=item.line, key=key)
    if item.value < low or (high is not None and item.value > high):
        bounds = f"at least {low}" if high is None else f"from {low} to {high}"
        message = f"{_kind(item)} is out of range; use a number {bounds}"
        raise TimelineError(message, line=item.line, key=key)
    return item.value


def _text(item: _Item, key: str) -> str:
    """A non-empty string, stripped."""
    if not isinstance(item.value, str) or not item.value.strip():
        raise TimelineError(f"expected a name or a path, got {_kind(item)}", line=item.line, key=key)
    if "\0" in item.value:
        raise TimelineError("a path cannot hold a NUL character (\\0)", line=item.line, key=key)
    return item.value.strip()


def _choice(item: _Item, key: str, choices: Sequence[str]) -> str:
    """One of a few words, case-insensitive, suggesting the closest on a typo."""
    word = item.value
    if isinstance(word, str) and word.strip().lower() in choices:
        return word.strip().lower()
    close = difflib.get_close_matches(str(word).strip().lower(), choices, n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise TimelineError(f"expected one of {', '.join(choices)}, got {_kind(item)}{hint}", line=item.line, key=key)


def _policy(item: _Item, key: str) -> SwitchPolicy:
    """A switch policy, read by ``SwitchPolicy.parse`` with the error placed at its line and key."""
    try:
        return SwitchPolicy.parse(item.value, _kind(item))
    except ValueError as e:
        raise TimelineError(str(e), line=item.line, key=key) from None


def _size(item: _Item) -> tuple[int, int]:
    """A WxH frame size (or [W, H]) whose sides the model family accepts (positive multiples of 16)."""
    value = item.value
    written = item.raw if item.raw is not None else value
    short = isinstance(written, str) and len(written) <= 2 * MAX_DIGITS
    match = _SIZE.fullmatch(written) if short else None
    if match:
        width, height = int(match["w"]), int(match["h"])
    elif isinstance(value, list) and len(value) == 2 and all(_is_int(v.value) for v in value):
        width, height = value[0].value, value[1].value
    else:
        raise TimelineError(f"expected WxH like 832x480, got {_kind(item)}", line=item.line, key="size")
    try:
        NATIVE.check_size((width, height))
    except ValueError as e:
        raise TimelineError(str(e), line=item.line, key="size") from None
    return width, height


def _is_int(value: Any) -> bool:
    """An int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def _resolve(base: Path, value: str, item: _Item | None = None, key: str | None = None) -> Path:
    """An absolute path, with relative paths taken from ``base`` and ``~user`` expanded when that user exists.

    Its folder is resolved (``timelines/../out`` reads as ``out``, through symlinks as the system follows them);
    the last part stays as written, so a link there is replaced rather than followed."""
    try:
        path = Path(value).expanduser()
    except RuntimeError:
        message = f"cannot expand {_short(value)}: no such user's home folder"
        raise TimelineError(message, line=item.line if item else None, key=key) from None
    full = (path if path.is_absolute() else base / path).absolute()
    return full.parent.resolve() / full.name


def _kind(item: Any) -> str:
    """How a value reads in an error: the text as written for scalars, the type for lists and mappings."""
    value = item.value if isinstance(item, _Item) else item
    raw = item.raw if isinstance(item, _Item) else None
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"'{raw}' (YAML reads it as {str(value).lower()}; quote it)" if raw else repr(value)
    if isinstance(value, str):
        return _short(value)
    return _short(raw)[1:-1] if raw else _short(repr(value))[1:-1]


def _seconds(seconds: float) -> str:
    """Seconds for messages: 10s, 1.5s, 10.3125s."""
    return f"{seconds:.4f}".rstrip("0").rstrip(".") + "s"
