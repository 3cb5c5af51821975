"""Steering from standard input, so a terminal, a pipe or a file of prompts can drive a live session.

Each line is a new prompt. Lines starting with ``:`` are commands; ``#`` starts a comment line. Commands run in
order after the prompts before them have landed, so a file reads like a script::

    a red circle moving right
    :wait 4s
    :policy keep
    a blue circle moving up
    :quit
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TextIO

from ..engine import SwitchPolicy
from ..timeline import TimelineError, parse_time
from .commands import Control, MessageError, Prompt, clean_text, parse_policy
from .session import LiveSession, SessionClosed

HELP = "type a prompt, or :pause  :resume  :policy recache|keep|clear  :wait 2s  :quit"
MAX_LINE = 64 * 1024


class LineReader:
    """Reads lines in its own thread and turns them into prompts and commands for ``session``."""

    def __init__(
        self,
        session: LiveSession,
        stream: TextIO,
        *,
        keep_running: bool = False,
        policy: SwitchPolicy = SwitchPolicy.RECACHE,
        report: Callable[[str], None] | None = None,
    ):
        self.session = session
        self.stream = stream
        self.keep_running = keep_running
        self.policy = policy
        self.report = report or (lambda message: None)
        self._thread = threading.Thread(target=self.run, name="longlive-stdin", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def run(self) -> None:
        """Read to the end of input (or ``:quit``); at the end, stop the session unless told to keep running."""
        try:
            while True:
                line = self.stream.readline(MAX_LINE + 1)
                if not line:
                    break
                if len(line) > MAX_LINE and not line.endswith("\n"):
                    self._skip_rest()
                    self.report(f"ignored a line longer than {MAX_LINE} characters")
                    continue
                if not self.handle(line):
                    return
        except (OSError, ValueError) as e:
            self.report(f"stopped reading input: {e}")
        except SessionClosed:
            return
        if not self.keep_running:
            self.session.wait_settled()
            self.session.stop("eof")

    def _skip_rest(self) -> None:
        while True:
            part = self.stream.readline(MAX_LINE)
            if not part or part.endswith("\n"):
                return

    def handle(self, line: str) -> bool:
        """Act on one line; False once reading should stop."""
        line = line.strip()
        if not line or line.startswith("#"):
            return True
        if not line.startswith(":"):
            try:
                self.session.submit(Prompt(clean_text(line), self.policy, "stdin"), block=True)
            except MessageError as e:
                self.report(f"ignored: {e}")
            return True
        word, _, arg = line[1:].partition(" ")
        word, arg = word.lower(), arg.strip()
        if word in ("pause", "resume", "quit"):
            self.session.wait_settled()
            self.session.control(Control(word))
            return word != "quit"
        if word == "policy":
            try:
                self.policy = parse_policy(arg)
            except MessageError as e:
                self.report(f"ignored: {e}")
            return True
        if word == "wait":
            try:
                seconds = parse_time(arg, self.session.settings.fps, ":wait")
            except TimelineError as e:
                self.report(f"ignored: {e}")
                return True
            self.session.wait_settled()
            self.session.wait_frames(self.session.frames + round(seconds * self.session.settings.fps))
            return True
        self.report(f"unknown command {line[:40]!r}; {HELP}")
        return True
