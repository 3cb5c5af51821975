"""The live generation loop: one thread makes chunk after chunk and applies queued prompts at chunk boundaries.

Prompts wait in a bounded queue and each takes over at a chunk of its own, in order, as a timeline's changes do;
pause, resume and quit act at once (generation only ever stops between chunks). With pacing the loop starts a
chunk just in time for the playout clock and sleeps otherwise, waking early when a prompt arrives so the change
is generated at once. Pacing and pauses decide when a chunk is made, never what it holds: the video is a function
of the seed, the settings and the chunk where each change landed, which is what the recording keeps.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .. import __version__
from ..bundle import Bundle
from ..engine import SeededNoise, StreamingGenerator, SwitchPolicy
from ..pipeline import FramePipeline
from ..render import RenderSettings
from ..timeline import VIDEO_FRAMES_PER_LATENT, latent_frames_for, video_frame_of_latent
from .commands import Control, Prompt
from .frames import FrameHub
from .playout import Playout
from .record import Landed, Recorder

QUEUE_LIMIT = 16
# Chunks are started this much earlier than the slowest recent chunk needs, as a fraction and in seconds.
BUDGET_FACTOR = 1.25
BUDGET_MARGIN_S = 0.05
RECENT_CHUNKS = 8
STATE_CHANGES = 20

Events = Callable[[dict], None]


class QueueFull(RuntimeError):
    """Too many prompts are waiting for a chunk; the sender should try again later."""


class SessionClosed(RuntimeError):
    """The session has stopped and takes no more commands."""


@dataclass
class Change:
    """A submitted prompt: when it arrived, the chunk boundary that was next then, and when it landed and showed."""

    text: str
    policy: SwitchPolicy
    source: str
    received: float
    boundary: int
    index: int | None = None
    latent: int | None = None
    generated: float | None = None
    shown: float | None = None

    @property
    def lag_s(self) -> float | None:
        """From arrival to the first frame generated under this prompt."""
        return None if self.generated is None else self.generated - self.received

    @property
    def shown_lag_s(self) -> float | None:
        """From arrival to that frame going out to viewers."""
        return None if self.shown is None else self.shown - self.received

    def mark_shown(self, when: float) -> None:
        self.shown = when


class LiveSession:
    """Generates a video without end (up to ``max_frames``), steered by ``submit`` and ``control``."""

    def __init__(
        self,
        bundle: Bundle,
        settings: RenderSettings,
        *,
        max_frames: int,
        decoder=None,
        pace: bool = True,
        recorder: Recorder | None = None,
        events: Events | None = None,
        queue_limit: int = QUEUE_LIMIT,
    ):
        self.bundle = bundle
        self.settings = settings
        self.max_frames = max_frames
        self.decoder = decoder or bundle.vae
        self.pace = pace
        self.recorder = recorder
        self.queue_limit = queue_limit
        self.hub = FrameHub()
        self.playout = Playout(self.hub, settings.fps, pace)
        self.chunk = settings.engine.chunk_frames
        self.chunk_s = VIDEO_FRAMES_PER_LATENT * self.chunk / settings.fps
        self.changes: list[Change] = []
        self.frames = 0
        self.latents = 0
        self.error: BaseException | None = None
        self.sidecar: dict | None = None
        self.stopped_by: str | None = None
        self._emit = events or (lambda event: None)
        self._queue: deque[Change] = deque()
        self._paused = False
        self._in_flight = False
        self._switching = False  # the chunk being made starts with a prompt change
        self._done = False
        self._compute: deque[float] = deque(maxlen=RECENT_CHUNKS)
        self._compute_total = 0.0
        self._started_at: float | None = None
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="longlive-generate", daemon=True)

    # Steering, from any thread.

    def submit(self, prompt: Prompt, block: bool = False) -> Change:
        """Queue a prompt for the next free chunk boundary; if too many wait, ``QueueFull`` (with ``block``: wait)."""
        with self._cond:
            if len(self._queue) >= self.queue_limit and self.stopped_by is None:
                if not block:
                    raise QueueFull(f"{len(self._queue)} prompts are already waiting for a chunk")
                self._cond.wait_for(lambda: len(self._queue) < self.queue_limit or self.stopped_by)
            if self.stopped_by is not None:
                raise SessionClosed("the session has ended")
            boundary = self.latents + (self.chunk if self._in_flight else 0)
            change = Change(prompt.text, prompt.policy, prompt.source, time.perf_counter(), boundary)
            self._queue.append(change)
            self._cond.notify_all()
            return change

    def control(self, command: Control) -> None:
        """Pause, resume or quit; takes effect at once, or at the end of the chunk being made."""
        with self._cond:
            if command is Control.QUIT:
                self._stop("quit")
            elif command is Control.PAUSE and not self._paused:
                self._paused = True
                self.playout.expect_gap()
            elif command is Control.RESUME:
                self._paused = False
            else:
                return
            self._cond.notify_all()
        self._emit({"event": command.value})

    def stop(self, reason: str = "quit") -> None:
        """End the run at the next chunk boundary; the recording is then finished."""
        with self._cond:
            self._stop(reason)
            self._cond.notify_all()

    def _stop(self, reason: str) -> None:
        if self.stopped_by is None:
            self.stopped_by = reason

    # Waiting, for the line reader and tests.

    def wait_settled(self, timeout: float | None = None) -> bool:
        """Until every submitted prompt has landed (paused: until the chunk being made is done), or it has stopped.

        Running, the test is on prompts rather than on the gap between chunks, which an unpaced generator may
        never leave open long enough for a waiting thread to see it.
        """
        with self._cond:
            return self._cond.wait_for(
                lambda: (
                    self._done or (not self._in_flight if self._paused else not self._queue and not self._switching)
                ),
                timeout,
            )

    def wait_frames(self, frames: int, timeout: float | None = None) -> bool:
        """Until ``frames`` video frames have been generated, or the session stopped."""
        with self._cond:
            return self._cond.wait_for(lambda: self._done or self.frames >= frames, timeout)

    # Running.

    def start(self) -> None:
        self.playout.start()
        self._thread.start()

    @property
    def started(self) -> bool:
        return self._thread.ident is not None

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def wait_done(self, timeout: float | None = None) -> bool:
        """Until the run has finished and its recording is closed, or ``timeout``. Polled instead of ``join``: a
        Ctrl-C inside ``Thread.join(timeout)`` can mark the running thread as stopped (CPython's bpo-45274
        handling), and a later ``join`` would then return before the recording is finished."""
        with self._cond:
            return self._cond.wait_for(lambda: self._done, timeout)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        reason = "error"
        try:
            reason = self._generate()
        except BaseException as e:
            self.error = e
        finally:
            self._finish(reason)

    def _generate(self) -> str:
        s = self.settings
        gen = StreamingGenerator(self.bundle.dit, s.engine, s.latent_shape(self.bundle), SeededNoise(s.seed))
        pipeline = FramePipeline(self.decoder, gen.device, limit=self.max_frames)
        limit = latent_frames_for(self.max_frames, self.chunk)
        while gen.emitted < limit:
            with self._cond:
                change = self._next_change(gen.prompt is None)
                if self.stopped_by is not None:
                    return self.stopped_by
                self._in_flight = True
                self._switching = change is not None
            start = time.perf_counter()
            self._started_at = self._started_at or start
            if change is not None:
                context = self.bundle.text.encode([change.text])
                if gen.prompt is None:
                    gen.set_prompt(context)
                else:
                    gen.switch(context, change.policy)
            latent = gen.emitted
            frames = pipeline(gen.step())
            done = time.perf_counter()
            first = self.frames
            with self._cond:
                if change is not None:
                    change.index, change.latent, change.generated = len(self.changes), latent, done
                    self.changes.append(change)
                self.frames += len(frames)
                self.latents = gen.emitted
                self._in_flight = False
                self._switching = False
                self._compute.append(done - start)
                self._compute_total += done - start
                self._cond.notify_all()
            self.playout.push(frames, first, None if change is None else change.mark_shown)
            if self.recorder is not None:
                self.recorder.write(frames)
            if change is not None:
                self._landed(change)
        return "limit"

    def _next_change(self, first: bool) -> Change | None:
        """Wait (lock held) until the next chunk should start; the prompt it switches to, if any."""
        while self.stopped_by is None:
            if self._paused or (first and not self._queue):
                self._cond.wait()
                continue
            if first or not self.pace:
                return self._queue.popleft() if self._queue else None
            left = self.playout.seconds_left()
            budget = self._budget()
            if self._queue and left <= budget + self.chunk_s:
                return self._queue.popleft()
            if left <= budget:
                return None
            self._cond.wait(left - budget)
        return None

    def _budget(self) -> float:
        """How long before the playout runs dry a chunk must start: the slowest recent one, with room to spare."""
        return max(self._compute, default=0.0) * BUDGET_FACTOR + BUDGET_MARGIN_S

    def _landed(self, change: Change) -> None:
        policy = None if change.index == 0 else change.policy
        if self.recorder is not None:
            self.recorder.land(Landed(change.text, change.latent, policy))
        self._emit({"event": "switch", **self._change_info(change)})

    def _change_info(self, change: Change) -> dict:
        frame = video_frame_of_latent(change.latent)
        return {
            "prompt": change.index,
            "text": change.text,
            "policy": None if change.index == 0 else change.policy.value,
            "source": change.source,
            "landed_s": frame / self.settings.fps,
            "landed_frame": frame,
            "landed_latent": change.latent,
            "boundary_latent": change.boundary,
            "lag_s": _round(change.lag_s),
            "shown_lag_s": _round(change.shown_lag_s),
        }

    def _finish(self, reason: str) -> None:
        with self._cond:
            self._stop(reason)
            self._queue.clear()
        self.playout.expect_gap()
        self.playout.close(drain=reason == "limit")
        if self.recorder is not None:
            try:
                self.sidecar = self.recorder.close(self.summary())
            except Exception as e:
                self.error = self.error or e
        with self._cond:
            self._done = True
            self._cond.notify_all()
        self._emit({"event": "done", "stopped_by": self.stopped_by, **self.summary()["timings"]})

    # Reporting.

    def lags(self) -> list[float]:
        """Arrival-to-generated lag of every change after the first prompt."""
        return [c.lag_s for c in self.changes[1:] if c.lag_s is not None]

    def state(self) -> dict:
        """What the page shows: state, current prompt, rates, lags and the latest changes."""
        with self._cond:
            if self.stopped_by is not None:
                state = "stopped"
            elif self._paused:
                state = "paused"
            else:
                state = "running" if self.changes else "waiting"
            changes = list(self.changes)
            pending = len(self._queue)
            frames = self.frames
        last = changes[-1] if changes else None
        lags = [c.lag_s for c in changes[1:] if c.lag_s is not None]
        shown = [c.shown_lag_s for c in changes[1:] if c.shown_lag_s is not None]
        fps = self.settings.fps
        return {
            "state": state,
            "prompt": last.text if last else None,
            "frames": frames,
            "shown": self.playout.shown,
            "video_s": round(frames / fps, 3),
            "limit_s": round(self.max_frames / fps, 3),
            "fps": round(self.playout.fps(), 2),
            "target_fps": fps,
            "realtime": _round(self._realtime()),
            "stalls": self.playout.stalls,
            "pending": pending,
            "viewers": self.hub.viewers,
            "lag_s": _round(lags[-1] if lags else None),
            "lag_median_s": _round(statistics.median(lags) if lags else None),
            "shown_lag_s": _round(shown[-1] if shown else None),
            "changes": [self._change_info(c) for c in changes[-STATE_CHANGES:]],
        }

    def _realtime(self) -> float | None:
        """Video seconds generated per second of computing."""
        if not self._compute_total:
            return None
        return self.frames / self.settings.fps / self._compute_total

    def summary(self) -> dict:
        """The sidecar's content apart from file names: model, settings, changes, result, timings."""
        s = self.settings
        param = next(self.bundle.dit.parameters())
        lags = self.lags()
        shown = [c.shown_lag_s for c in self.changes[1:] if c.shown_lag_s is not None]
        compute = sorted(self._compute)
        elapsed = time.perf_counter() - self._started_at if self._started_at else 0.0
        return {
            "version": __version__,
            "model": {"name": self.bundle.spec.name, "source": self.bundle.source},
            "settings": {
                "size": f"{s.size[0]}x{s.size[1]}",
                "fps": s.fps,
                "seed": s.seed,
                "limit_s": self.max_frames / s.fps,
                "chunk": self.chunk,
                "window": s.engine.window,
                "sink": s.engine.sink,
                "positions": s.engine.positions,
                "steps": list(s.engine.steps),
                "decoder": type(self.decoder).__name__,
                "device": str(param.device),
                "dtype": str(param.dtype).removeprefix("torch."),
                "paced": self.pace,
            },
            "changes": [self._change_info(c) for c in self.changes],
            "result": {"frames_generated": self.frames, "stopped_by": self.stopped_by},
            "timings": {
                "elapsed_s": round(elapsed, 3),
                "compute_s": round(self._compute_total, 3),
                "realtime_factor": _round(self._realtime()),
                "recent_chunk_median_s": _round(compute[len(compute) // 2] if compute else None),
                "frames_shown": self.playout.shown,
                "stalls": self.playout.stalls,
                "lag_median_s": _round(statistics.median(lags) if lags else None),
                "lag_max_s": _round(max(lags) if lags else None),
                "shown_lag_median_s": _round(statistics.median(shown) if shown else None),
            },
        }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)
