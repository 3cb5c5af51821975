"""Progress sinks for render events: a rich live display for people, JSON lines for programs, or nothing."""

from __future__ import annotations

import json
import sys
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.table import Column
from rich.text import Text

from .terminal import markup_safe


class _Speed(ProgressColumn):
    """Generation speed in frames/s and as a multiple of real time (shorter on a narrow terminal)."""

    def __init__(self, compact: bool):
        super().__init__(table_column=Column(no_wrap=True))
        self.compact = compact

    def render(self, task: Task) -> Text:
        fps, realtime = task.fields.get("fps"), task.fields.get("realtime")
        if fps is None:
            return Text("-- fps", style="dim")
        style = "green" if realtime >= 1 else "yellow"
        tail = "x" if self.compact else "x real time"
        return Text(f"{fps:5.1f} fps {realtime:4.2f}{tail}", style=style)


# Below this many columns the line shortens the speed; the prompt gets what is left beyond it, so it never wraps.
WIDE = 110


def _text(template: str, **column) -> TextColumn:
    return TextColumn(template, table_column=Column(no_wrap=True, overflow="ellipsis", **column))


class RichProgress:
    """Frames done / total, seconds of video, current prompt, speed vs real time, ETA, on one line of any width.

    The live bar is drawn on a terminal only; into a pipe or a log go the switch and warning lines alone.
    """

    def __init__(self, console: Console | None = None, label: str = ""):
        self.console = console or Console(stderr=True)
        self.label = markup_safe(label, newlines=False)
        wide = self.console.width >= WIDE
        columns = [
            _text("[bold]{task.fields[label]}", max_width=24 if wide else 16),
            BarColumn(bar_width=30 if wide else 16),
            _text("{task.completed}/{task.total} frames" if wide else "{task.completed}/{task.total}"),
            _text("{task.fields[video]}"),
            _Speed(compact=not wide),
            TimeRemainingColumn(),
        ]
        room = self.console.width - WIDE - 5
        if room >= 20:
            columns.append(_text("[dim]{task.fields[prompt]}", max_width=room))
        self.progress = Progress(*columns, console=self.console, transient=False)
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
