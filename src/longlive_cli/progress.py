"""Progress sinks for render events: a rich live display for people, JSON lines for programs, or nothing."""

from __future__ import annotations

import json
import sys
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.text import Text

from .terminal import markup_safe


class _Speed(ProgressColumn):
    """Generation speed in frames/s and as a multiple of real time."""

    def render(self, task: Task) -> Text:
        fps, realtime = task.fields.get("fps"), task.fields.get("realtime")
        if fps is None:
            return Text("-- fps", style="dim")
        style = "green" if realtime >= 1 else "yellow"
        return Text(f"{fps:5.1f} fps {realtime:4.2f}x real time", style=style)


class RichProgress:
    """Frames done / total, seconds of video, current prompt, speed vs real time, ETA.

    The live bar is drawn on a terminal only; into a pipe or a log go the switch and warning lines alone.
    """

    def __init__(self, console: Console | None = None, label: str = ""):
        self.console = console or Console(stderr=True)
        self.label = markup_safe(label, newlines=False)
        self.progress = Progress(
            TextColumn("[bold]{task.fields[label]}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} frames"),
            TextColumn("{task.fields[video]}"),
            _Speed(),
            TimeRemainingColumn(),
            TextColumn("[dim]{task.fields[prompt]}"),
            console=self.console,
            transient=False,
        )
        self.task = None

    def __call__(self, event: dict) -> None:
        kind = event["event"]
        if kind == "start" and self.console.is_terminal:
            self.progress.start()
            self.task = self.progress.add_task(
                "render", total=event["frames"], label=self.label, video="0.0 s", prompt="", fps=None, realtime=None
            )
        elif kind == "warning":
            self.console.print(f"[yellow]warning:[/] {markup_safe(event['message'])}")
        elif kind == "switch":
            policy = event["policy"]
            self.console.print(
                f"[cyan]prompt {event['prompt']}[/] requested at {event['requested_s']:.2f} s, "
                f"lands at {event['landed_s']:.2f} s ({policy}): {markup_safe(event['text'])}"
            )
        elif kind == "chunk" and self.task is not None:
            self.progress.update(
                self.task,
                completed=event["frames_done"],
                video=f"{event['video_s']:.1f} s",
                prompt=markup_safe(_short(event["text"]), newlines=False),
                fps=event["fps"],
                realtime=event["realtime"],
            )
        elif kind == "done" and self.task is not None:
            self.progress.stop()


class JsonProgress:
    """One JSON object per line on stdout, flushed, for other programs to follow."""

    def __init__(self, stream: TextIO | None = None, **extra):
        self.stream = stream or sys.stdout
        self.extra = extra

    def __call__(self, event: dict) -> None:
        self.stream.write(json.dumps({**event, **self.extra}) + "\n")
        self.stream.flush()


def _short(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
