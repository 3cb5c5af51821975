"""Timeline -> MP4, streamed: each finished chunk is decoded and written at once, so memory stays flat and an
interrupted render leaves a playable file holding every frame made so far.

Data flows one way: prompts -> text features -> engine (latent chunks) -> streaming decoder -> writer. Progress
goes out as plain dict events to whatever sink the caller passes (rich display, JSON lines, nothing).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from . import __version__
from .bundle import Bundle
from .engine import EngineConfig, SeededNoise, Segment, StreamingGenerator, SwitchEvent, SwitchPolicy
from .models.world_text import unknown_words, unknown_words_message
from .timeline import Timeline, plan_changes, video_frame_of_latent
from .video import VideoWriter, sidecar_path, to_uint8_frames, write_sidecar

Events = Callable[[dict], None]


class RenderError(ValueError):
    """Settings that cannot be rendered with this model (bad size, window, ...)."""


@dataclass(frozen=True)
class RenderSettings:
    """Resolved settings of one render: the timeline's, overridden by the command line, else the model's."""

    size: tuple[int, int]
    engine: EngineConfig
    seed: int
    fps: int

    @classmethod
    def resolve(
        cls,
        timeline: Timeline,
        bundle: Bundle,
        seed: int | None = None,
        window: int | None = None,
        sink: int | None = None,
        size: tuple[int, int] | None = None,
    ) -> RenderSettings:
        spec = bundle.spec
        width, height = size or timeline.size or spec.size
        multiple = spec.vae.space_stride * spec.dit.patch_size[1]
        if width % multiple or height % multiple:
            raise RenderError(f"size {width}x{height}: width and height must be multiples of {multiple}")
        window = window or timeline.window or spec.engine.window
        if sink is None:
            sink = spec.engine.sink if timeline.sink is None else timeline.sink
        try:
            engine = EngineConfig(**{**spec.engine.__dict__, "window": window, "sink": sink})
        except ValueError as e:
            raise RenderError(f"attention: {e}") from None
        return cls((width, height), engine, timeline.seed if seed is None else seed, timeline.fps)

    def latent_shape(self, bundle: Bundle) -> tuple[int, int, int]:
        s = bundle.spec.vae.space_stride
        return bundle.spec.vae.z_dim, self.size[1] // s, self.size[0] // s


def _vocabulary_warnings(bundle: Bundle, timeline: Timeline) -> list[str]:
    """Words a small closed-vocabulary model would silently read as unknown."""
    out = []
    for i, p in enumerate(timeline.prompts):
        words = unknown_words(bundle.text.tokenizer, p.text)
        if words:
            out.append(f"prompts[{i}]: {unknown_words_message(words)}")
    return out


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

    On KeyboardInterrupt the video so far is finalised, the sidecar says ``"interrupted": true``, and the
    interrupt propagates so the caller can exit with 130.
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
        Segment(requested, context[i : i + 1], SwitchPolicy(timeline.policy_at(i)))
        for i, (requested, _, _) in enumerate(plan.changes)
    ]
    gen = StreamingGenerator(bundle.dit, settings.engine, settings.latent_shape(bundle), SeededNoise(settings.seed))
    decoder = decoder or bundle.vae
    stream = decoder.stream()
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
            "steps": list(settings.engine.steps),
            "decoder": type(decoder).__name__,
            "device": str(gen.device),
            "dtype": str(gen.dtype).removeprefix("torch."),
        },
        "changes": changes,
        "warnings": list(plan.warnings),
    }
    emit({"event": "start", "frames": total, "chunks": -(-plan.latent_frames // chunk), **sidecar["settings"]})
    for w in [*plan.warnings, *_vocabulary_warnings(bundle, timeline)]:
        emit({"event": "warning", "message": w})
    written = 0
    chunk_times: list[float] = []
    first_frame_s = None
    interrupted = False
    writer = VideoWriter(output, settings.fps, settings.size, overwrite=overwrite)
    start = time.perf_counter()
    try:
        with writer:
            last = time.perf_counter()
            for piece in gen.stream(segments, plan.latent_frames):
                if piece.index == 0:
                    changes[0].update(landed_s=0.0, landed_frame=0)
                if piece.switched:
                    _record_switch(changes[piece.segment], gen.switches[-1], settings.fps)
                    emit({"event": "switch", **changes[piece.segment]})
                with torch.no_grad():
                    pixels = stream(piece.latents.transpose(1, 2))
                frames = to_uint8_frames(pixels)[: total - written]
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
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        written = writer.frames_written
        elapsed = time.perf_counter() - start
        ordered = sorted(chunk_times)
        sidecar["result"] = {
            "frames_written": written,
            "complete": written == total and not interrupted,
            "interrupted": interrupted,
        }
        sidecar["timings"] = {
            "text_encode_s": round(text_s, 4),
            "generate_s": round(elapsed, 4),
            "first_frame_s": None if first_frame_s is None else round(first_frame_s, 4),
            "chunk_median_s": round(ordered[len(ordered) // 2], 4) if ordered else None,
            "fps": round(written / elapsed, 3) if elapsed > 0 else None,
            "realtime_factor": round(written / elapsed / settings.fps, 3) if elapsed > 0 else None,
        }
        if written:
            write_sidecar(sidecar_path(output), sidecar)
        emit({"event": "done", **sidecar["result"], **sidecar["timings"]})
    return sidecar
