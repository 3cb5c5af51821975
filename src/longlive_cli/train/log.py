"""Training logs: one JSON line per logged step for programs, a rich progress bar (or plain lines) for people."""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from longlive_cli.video import write_text_atomic


class TrainLog:
    """Appends ``log.jsonl`` in the stage folder and shows steps/s and losses; wall time adds up across resumes."""

    def __init__(
        self,
        folder: Path,
        stage: str,
        total: int,
        start: int = 0,
        wall_s: float = 0.0,
        console=None,
        enabled: bool = True,
    ):
        self.enabled = enabled  # False on the other processes of a distributed run: they only keep time
        self.path = Path(folder) / "log.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if enabled:
            trim_log(self.path, start)
        self.stage = stage
        self.total = total
        self.console = console or Console(stderr=True, highlight=False)
        self.wall_before = wall_s
        self.started = time.perf_counter()
        self.mark = (start, self.started)
        self.progress = Progress(
            TextColumn(f"[bold]{stage}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TextColumn("{task.fields[metrics]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            disable=not (enabled and self.console.is_terminal),
        )
        self.task = self.progress.add_task(stage, total=total, completed=start, rate="", metrics="")

    @property
    def wall_s(self) -> float:
        """Seconds spent in this stage, over every run that contributed to it."""
        return self.wall_before + time.perf_counter() - self.started

    def __enter__(self) -> TrainLog:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def step(self, step: int, metrics: dict[str, float]) -> None:
        """Record ``metrics`` at ``step`` (steps done so far) with the speed since the previous record."""
        now = time.perf_counter()
        done, then = self.mark
        rate = (step - done) / max(now - then, 1e-9)
        self.mark = (step, now)
        if not self.enabled:
            return
        record = {"stage": self.stage, "step": step, **metrics, "steps_per_s": rate, "wall_s": self.wall_s}
        with self.path.open("a") as f:
            f.write(json.dumps({k: float(f"{v:.7g}") if isinstance(v, float) else v for k, v in record.items()}) + "\n")
        shown = "  ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        self.progress.update(self.task, completed=step, rate=f"{rate:.2f} steps/s", metrics=shown)
        if not self.console.is_terminal:
            self.console.print(f"{self.stage} {step}/{self.total}  {rate:.2f} steps/s  {shown}  {self.wall_s:.0f}s")

    def note(self, message: str) -> None:
        """A line for people (and the JSONL log): phases, files written, resumes."""
        if not self.enabled:
            return
        self.console.print(f"[bold]{self.stage}:[/] {message}")
        with self.path.open("a") as f:
            f.write(json.dumps({"stage": self.stage, "note": message, "wall_s": round(self.wall_s, 3)}) + "\n")


def trim_log(path: Path, step: int) -> None:
    """Drop the records of steps after ``step`` (the checkpoint a run resumes from) and a half-written last line,
    so the steps a resumed run repeats are logged once."""
    if not path.is_file():
        return
    kept = []
    changed = False
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True):
        try:
            record = json.loads(line) if line.endswith("\n") else None
        except json.JSONDecodeError:
            record = None
        if not isinstance(record, dict) or record.get("step", 0) > step:
            changed = True
            continue
        kept.append(line)
    if changed:
        write_text_atomic(path, "".join(kept))
