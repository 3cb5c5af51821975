"""The playout clock: frames arrive a chunk at a time and leave one by one at the video's frame rate.

The generator asks ``seconds_left`` how long the queued frames will last and starts the next chunk just in time,
so the queue stays short and a new prompt reaches the screen soon after it is generated. Running dry while
playing is a stall; the clock then restarts when frames come again. Without pacing, frames go out at once.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from .frames import FrameHub

FPS_WINDOW_S = 2.0


class Playout:
    """Shows generated frames to viewers on a real-time clock, in its own thread."""

    def __init__(self, hub: FrameHub, fps: int, pace: bool = True):
        self.hub = hub
        self.period = 1.0 / fps
        self.pace = pace
        self.shown = 0
        self.stalls = 0
        self._queue: deque[tuple[int, np.ndarray, Callable[[float], None] | None]] = deque()
        self._due: float | None = None
        self._recent: deque[float] = deque()
        self._idle_ok = True
        self._closed = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="longlive-playout", daemon=True)

    def start(self) -> None:
        if self.pace:
            self._thread.start()

    def push(self, frames: np.ndarray, first: int, on_first_shown: Callable[[float], None] | None = None) -> None:
        """Queue frames ``first``, ``first + 1``, ...; ``on_first_shown`` gets the time the first one goes out."""
        if not self.pace:
            for i, frame in enumerate(frames):
                self._show(first + i, frame, on_first_shown if i == 0 else None)
            return
        with self._cond:
            for i, frame in enumerate(frames):
                self._queue.append((first + i, frame, on_first_shown if i == 0 else None))
            self._idle_ok = False
            self._cond.notify_all()

    def seconds_left(self) -> float:
        """How long until the clock needs a frame that has not been pushed yet."""
        if not self.pace:
            return 0.0
        with self._cond:
            ahead = 0.0 if self._due is None else max(0.0, self._due - time.perf_counter())
            return ahead + len(self._queue) * self.period

    def expect_gap(self) -> None:
        """The next time the queue runs dry is on purpose (pause, end): not a stall."""
        with self._cond:
            self._idle_ok = True

    def fps(self) -> float:
        """Frames shown per second over the last couple of seconds."""
        now = time.perf_counter()
        with self._cond:
            while self._recent and self._recent[0] < now - FPS_WINDOW_S:
                self._recent.popleft()
            if len(self._recent) < 2:
                return 0.0
            return (len(self._recent) - 1) / max(now - self._recent[0], self.period)

    def close(self, drain: bool = False, timeout: float = 5.0) -> None:
        """Stop the clock, after showing what is queued when ``drain`` is set."""
        if drain and self._thread.is_alive():
            with self._cond:
                self._cond.wait_for(lambda: not self._queue, timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    now = time.perf_counter()
                    if self._due is not None and now >= self._due:
                        self.stalls += not self._idle_ok
                        self._due = None
                    self._cond.wait(None if self._due is None else self._due - now)
                if self._closed:
                    return
                if self._due is None:
                    self._due = time.perf_counter()
                due = self._due
                while not self._closed and time.perf_counter() < due:
                    self._cond.wait(due - time.perf_counter())
                if self._closed:
                    return
                index, frame, callback = self._queue.popleft()
                self._due = due + self.period
                self._cond.notify_all()
            self._show(index, frame, callback)

    def _show(self, index: int, frame: np.ndarray, callback: Callable[[float], None] | None) -> None:
        now = time.perf_counter()
        self.hub.publish(index, frame)
        with self._cond:
            self.shown += 1
            self._recent.append(now)
            while self._recent[0] < now - FPS_WINDOW_S:
                self._recent.popleft()
        if callback is not None:
            callback(now)
