"""Timeline -> MP4, streamed: each finished chunk is decoded and written at once, so memory stays flat and an
interrupted render leaves a playable file holding every frame made so far.

Data flows one way: prompts -> text features -> engine (latent chunks) -> streaming decoder -> writer. Progress
goes out as plain dict events to whatever listener the caller passes (rich display, JSON lines, nothing).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import torch

from . import __version__
from .bundle import Bundle, ModelSpec
from .engine import EngineConfig, SeededNoise, Segment, StreamingGenerator, SwitchEvent, SwitchPolicy
from .finish import FinishError, Interrupted, check_free, finish
from .limits import size_problem, window_problem
from .models.rope import MAX_POSITIONS
from .notices import setting_warnings, vocabulary_warnings
from .pipeline import FramePipeline
from .timeline import Timeline, TimelineError, TimelineErrors, plan_changes, video_frame_of_latent, video_frames_for
from .video import VideoWriter

Events = Callable[[dict], None]
# Chunk times kept for the sidecar's median: the most recent ones, so hours of video take no more memory.
RECENT_CHUNK_TIMES = 4096


class RenderError(ValueError):
    """Settings that cannot be rendered with this model (bad size, window, ...)."""


def _raise_together(problems: list[Exception]) -> None:
    """Every settings problem at once: located timeline errors as one, or all of them as lines of one error."""
    if len(problems) == 1:
        raise problems[0]
    if problems and all(isinstance(p, TimelineError) for p in problems):
        raise TimelineErrors(problems)
    if problems:
        raise RenderError("\n".join(str(p) for p in problems))


@dataclass(frozen=True)
class RenderSettings:
    """Resolved settings of one render: the timeline's, overridden by the command line, else the model's."""

    size: tuple[int, int]
    engine: EngineConfig
    seed: int
    fps: int
    quantize: str = "none"

    @classmethod
    def resolve(cls, timeline: Timeline, bundle: Bundle, **overrides) -> RenderSettings:
        """``for_spec`` for a loaded model, on the device and in the dtype its weights are."""
        param = next(bundle.dit.parameters())
        return cls.for_spec(timeline, bundle.spec, param.device, param.dtype, **overrides)

    @classmethod
    def for_spec(
        cls,
        timeline: Timeline,
        spec: ModelSpec,
        device: str | torch.device | None,
        dtype: torch.dtype,
        seed: int | None = None,
        window: int | None = None,
        sink: int | None = None,
        size: tuple[int, int] | None = None,
        quantize: str | None = None,
        positions: str | None = None,
    ) -> RenderSettings:
        """The settings, checked against the model and ``device``'s memory before anything is built."""
        width, height = size or timeline.size or spec.size
        given = {"size": size, "attention.window": window, "attention.sink": sink}

        def problem(key: str, message: str) -> Exception:
            """The error located where the setting came from: an option, the timeline's key, or the model."""
            if given[key] is not None:
                return RenderError(f"--{key.split('.')[-1]}: {message}")
            if getattr(timeline, key.split(".")[-1]) is not None:
                line = timeline.key_lines.get(key)
                return TimelineError(message, path=timeline.path, line=line, key=key)
            return RenderError(f"{spec.name}'s {key.split('.')[-1]}: {message}")

        problems = []
        found = size_problem(spec, (width, height))
        if found is not None:
            problems.append(problem("size", found))
        window = window or timeline.window or spec.engine.window
        if sink is None:
            sink = spec.engine.sink if timeline.sink is None else timeline.sink
        positions = positions_for(timeline, spec.engine.chunk_frames, MAX_POSITIONS, positions)
        try:
            engine = EngineConfig(**{**spec.engine.__dict__, "window": window, "sink": sink, "positions": positions})
        except ValueError as e:
            key = "attention.sink" if given["attention.sink"] is not None else "attention.window"
            problems.append(problem(key, str(e)))
        else:
            found = window_problem(spec, engine, (width, height), device if not problems else None, dtype)
            if found is not None:
                problems.append(problem("attention.window", found))
        _raise_together(problems)
        seed = timeline.seed if seed is None else seed
        return cls((width, height), engine, seed, timeline.fps, quantize or timeline.quantize)

    def latent_shape(self, bundle: Bundle) -> tuple[int, int, int]:
        """One latent frame of this render, as the model's spec lays it out."""
        return bundle.spec.latent_shape_for(self.size)


def longest_position_run(timeline: Timeline, chunk: int) -> int:
    """The most latent frames between two restarts of the frame count: the video, cut where a 'clear' lands."""
    plan = plan_changes(timeline, chunk)
    cuts = [c.landed for i, c in enumerate(plan.changes) if i and timeline.policy_at(i) is SwitchPolicy.CLEAR]
    bounds = [0, *(c for c in cuts if c < plan.latent_frames), plan.latent_frames]
    return max(b - a for a, b in pairwise(bounds))


def positions_for(timeline: Timeline, chunk: int, table: int, override: str | None = None) -> str:
    """RoPE positions of a render: ``override`` (the command line) or the timeline's; ``auto`` gives absolute
    positions while the frame count fits the table of ``table`` positions and relative ones past it."""
    mode = override or timeline.positions
    run = longest_position_run(timeline, chunk)
    if mode == "auto":
        return "relative" if run > table else "absolute"
    if mode == "absolute" and run > table:
        key = "--positions" if override else "attention.positions"
        if timeline.path and not override:
            key = f"{timeline.path}: {key}"
        fps = timeline.fps
        raise RenderError(
            f"{key}: absolute positions end after {table} latent frames ({video_frames_for(table) / fps:.0f} s "
            f"at {fps} fps) and this video runs {run} without a 'clear'; use 'relative' (or 'auto') for longer videos"
        )
    return mode


def _record_switch(change: dict, event: SwitchEvent, fps: int) -> None:
    """Write where and how the engine really switched into a sidecar change."""
    frame = video_frame_of_latent(event.latent)
    change.update(landed_s=frame / fps, landed_frame=frame, policy=event.policy.value)


def render(
    timeline: Timeline,
    bundle: Bundle,
    output: Path,
    settings: RenderSettings,
    *,
    overwrite: bool = False,
    events: Events | None = None,
    decoder=None,
) -> dict:
    """Render ``timeline`` to ``output`` (+ a JSON sidecar) and return the sidecar's content.

    However the render ends, ``finish`` puts the output in place: a whole video under its name, anything less in
    the playable ``NAME.partial.mp4`` with ``NAME.partial.json``. An interrupt then propagates as ``Interrupted``,
    which says where the frames are, so the caller can exit with 130.
    """
    emit = events or (lambda event: None)
    chunk = settings.engine.chunk_frames
    plan = plan_changes(timeline, chunk)
    total = plan.video_frames
    texts = [p.text for p in timeline.prompts]
    t0 = time.perf_counter()
    # One prompt at a time, as `longlive live` encodes them, so a recorded live run replays bit for bit.
    context = torch.cat([bundle.text.encode([text]) for text in texts])
    text_s = time.perf_counter() - t0
    segments = [
        Segment(change.requested, context[i : i + 1], timeline.policy_at(i)) for i, change in enumerate(plan.changes)
    ]
    gen = StreamingGenerator(bundle.dit, settings.engine, settings.latent_shape(bundle), SeededNoise(settings.seed))
    decoder = decoder or bundle.vae
    pipeline = FramePipeline(decoder, gen.device, limit=total)
    # Landing and policy are filled in from the engine's own record as each change happens; a change the video
    # never reached keeps None.
    changes = [
        {"prompt": i, "text": p.text, "requested_s": p.at, "landed_s": None, "landed_frame": None, "policy": None}
        for i, p in enumerate(timeline.prompts)
    ]
    sidecar = {
        "version": __version__,
        "output": str(output),
        "timeline": str(timeline.path) if timeline.path else None,
        "model": {"name": bundle.spec.name, "source": bundle.source},
        "settings": {
            "size": f"{settings.size[0]}x{settings.size[1]}",
            "fps": settings.fps,
            "seed": settings.seed,
            "duration_s": timeline.duration,
            "frames": total,
            "latent_frames": plan.latent_frames,
            "chunk": chunk,
            "window": settings.engine.window,
            "sink": settings.engine.sink,
            "positions": settings.engine.positions,
            "steps": list(settings.engine.steps),
            "quantize": settings.quantize,
            "decoder": type(decoder).__name__,
            "device": str(gen.device),
            "dtype": str(gen.dtype).removeprefix("torch."),
        },
        "changes": changes,
        "warnings": [
            *plan.warnings,
            *setting_warnings(bundle.spec, settings.size, settings.fps, settings.engine.window),
            *vocabulary_warnings(bundle.text.tokenizer, timeline, bundle.spec),
        ],
    }
    emit({"event": "start", "frames": total, "chunks": -(-plan.latent_frames // chunk), **sidecar["settings"]})
    for w in sidecar["warnings"]:
        emit({"event": "warning", "message": w})
    written = 0
    chunk_times: deque[float] = deque(maxlen=RECENT_CHUNK_TIMES)
    first_frame_s = None
    check_free(output, overwrite)
    writer = VideoWriter(output, settings.fps, settings.size, overwrite=overwrite)
    start = time.perf_counter()
    stopped: BaseException | None = None
    try:
        last = time.perf_counter()
        for piece, frames in pipeline.run(gen.stream(segments, plan.latent_frames)):
            if piece.index == 0:
                changes[0].update(landed_s=0.0, landed_frame=0)
            if piece.switched:
                _record_switch(changes[piece.segment], gen.switches[-1], settings.fps)
                emit({"event": "switch", **changes[piece.segment]})
            writer.write(frames)
            written += len(frames)
            now = time.perf_counter()
            chunk_times.append(now - last)
            last = now
            first_frame_s = first_frame_s if first_frame_s is not None else now - start
            elapsed = now - start
            fps = written / elapsed
            emit(
                {
                    "event": "chunk",
                    "chunk": piece.index,
                    "frames_done": written,
                    "frames": total,
                    "video_s": written / settings.fps,
                    "prompt": piece.segment,
                    "text": texts[piece.segment],
                    "fps": fps,
                    "realtime": fps / settings.fps,
                    "eta_s": (total - written) / fps if fps > 0 else None,
                }
            )
    except BaseException as e:  # noqa: BLE001 - every way out goes through finish() below, then on
        stopped = e
    written = writer.frames_written
    elapsed = time.perf_counter() - start
    ordered = sorted(chunk_times)
    sidecar["timings"] = {
        "text_encode_s": round(text_s, 4),
        "generate_s": round(elapsed, 4),
        "first_frame_s": None if first_frame_s is None else round(first_frame_s, 4),
        "chunk_median_s": round(ordered[len(ordered) // 2], 4) if ordered else None,
        "fps": round(written / elapsed, 3) if elapsed > 0 else None,
        "realtime_factor": round(written / elapsed / settings.fps, 3) if elapsed > 0 else None,
    }
    finished = finish(writer, sidecar, total, stopped, overwrite)
    emit({"event": "done", **sidecar["result"], **sidecar["timings"]})
    if isinstance(stopped, KeyboardInterrupt):
        raise Interrupted(finished) from None
    if finished.problem is not None:
        raise FinishError(f"{output}: {finished.problem}; {finished.describe()}")
    if stopped is not None:
        raise stopped
    return sidecar
