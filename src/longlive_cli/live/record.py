"""Recording a live run: the MP4 as it is made, then a timeline YAML that ``longlive render`` replays to the same
frames, and a JSON sidecar with the settings, every change and its lag.

A run's content depends only on the seed, the settings, and which prompt took over at which chunk with which
policy, so the timeline writes each change at the video time of the chunk it landed on; ``requested_latent`` of that
time is that chunk's first latent frame, where ``render`` switches too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import yaml

from ..bundle import EMBEDDED
from ..engine import SwitchPolicy
from ..render import RenderSettings
from ..timeline import VERSION, video_frame_of_latent
from ..video import VideoWriter, sidecar_path, write_sidecar, write_text_atomic


@dataclass(frozen=True)
class Landed:
    """A prompt that took effect at latent frame ``latent``; the first one has no policy."""

    text: str
    latent: int
    policy: SwitchPolicy | None


def timeline_path(video: Path) -> Path:
    """Where the timeline of a recorded video goes: the same stem, with ``.yaml``."""
    return video.with_suffix(".yaml")


def seconds_text(frame: int, fps: int) -> str:
    """Video frame ``frame`` as a time that parses back to exactly that frame."""
    return f"{frame / fps:.6f}".rstrip("0").rstrip(".") + "s"


def timeline_text(
    landed: list[Landed],
    frames: int,
    settings: RenderSettings,
    model: str,
    quantize: str,
    output: str,
    replay: str,
    where: str = "same device and dtype",
) -> str:
    """The YAML of a recorded run: every setting spelled out, every change with its own switch policy."""
    fps = settings.fps
    doc = {
        "version": VERSION,
        "model": model,
        "output": output,
        "duration": seconds_text(frames, fps),
        "fps": fps,
        "seed": settings.seed,
        "size": f"{settings.size[0]}x{settings.size[1]}",
        "attention": {
            "window": settings.engine.window,
            "sink": settings.engine.sink,
            "positions": settings.engine.positions,
        },
        "quantize": quantize,
        "switch": SwitchPolicy.RECACHE.value,
        "prompts": [
            {"at": seconds_text(video_frame_of_latent(c.latent), fps), "text": c.text}
            | ({} if c.policy is None else {"switch": c.policy.value})
            for c in landed
        ],
    }
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    head = f"# Recorded by `longlive live` on {stamp}: {len(landed)} prompts, {seconds_text(frames, fps)}.\n"
    head += f"# `{replay}` makes the same frames again ({where}).\n"
    body = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=1 << 16, default_flow_style=False)
    return head + body


class Recorder:
    """Writes every generated frame to an MP4, then the timeline and the sidecar when the run ends."""

    def __init__(
        self,
        path: Path,
        settings: RenderSettings,
        model: str,
        quantize: str = "none",
        decoder: str = "auto",
        overwrite: bool = False,
    ):
        self.path = Path(path).absolute()
        self.timeline = timeline_path(self.path)
        if self.timeline.exists() and not overwrite:
            raise FileExistsError(f"{self.timeline} already exists; pass --overwrite to replace it")
        self.settings = settings
        self.model = model if model == EMBEDDED else str(Path(model).expanduser().absolute())
        self.quantize = quantize
        self.decoder = decoder
        self.landed: list[Landed] = []
        self.writer = VideoWriter(self.path, settings.fps, settings.size, overwrite=overwrite)

    @property
    def replay_path(self) -> Path:
        return self.path.with_name(f"{self.path.stem}.replay.mp4")

    @property
    def replay_command(self) -> str:
        decoder = "" if self.decoder == "auto" else f" --decoder {self.decoder}"
        return f"longlive render {self.timeline.name}{decoder}"

    def write(self, frames: np.ndarray) -> None:
        self.writer.write(frames)

    def land(self, change: Landed) -> None:
        self.landed.append(change)

    def close(self, summary: dict) -> dict | None:
        """Finish the MP4 and write the timeline and sidecar; None when no frame was recorded."""
        self.writer.close(keep=True)
        frames = self.writer.frames_written
        if not frames:
            return None
        made = summary.get("settings", {})
        where = f"on {made.get('device', 'the same device')} in {made.get('dtype', 'the same dtype')}"
        text = timeline_text(
            self.landed,
            frames,
            self.settings,
            self.model,
            self.quantize,
            self.replay_path.name,
            self.replay_command,
            where,
        )
        write_text_atomic(self.timeline, text)
        sidecar = {"output": str(self.path), "timeline": str(self.timeline), "replay": self.replay_command, **summary}
        sidecar["result"] = {**sidecar.get("result", {}), "frames_written": frames}
        write_sidecar(sidecar_path(self.path), sidecar)
        return sidecar
