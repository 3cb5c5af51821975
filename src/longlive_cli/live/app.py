"""``longlive live`` put together: recording, session, server and line reader, run until the session ends."""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from ..bundle import EMBEDDED, Bundle
from ..render import RenderSettings
from .commands import Prompt
from .record import Recorder
from .server import LiveServer
from .session import Events, LiveSession
from .stdin import HELP, LineReader


@dataclass(frozen=True)
class LiveOptions:
    """How a live run is steered, paced, bounded and recorded."""

    max_frames: int
    prompt: str | None = None
    port: int = 8765
    record: Path | None = None
    overwrite: bool = False
    pace: bool = True
    keep_running: bool = False
    model: str = EMBEDDED
    quantize: str = "none"
    decoder: str = "auto"


def run_live(
    bundle: Bundle,
    settings: RenderSettings,
    options: LiveOptions,
    *,
    decoder=None,
    stdin: TextIO | None = None,
    say: Callable[[str], None] = print,
    events: Events | None = None,
) -> LiveSession:
    """Serve, read and generate until the limit, ``:quit``, the end of input or Ctrl-C (re-raised afterwards)."""
    recorder = None
    if options.record is not None:
        recorder = Recorder(
            options.record, settings, options.model, options.quantize, options.decoder, overwrite=options.overwrite
        )
    try:
        session = LiveSession(
            bundle,
            settings,
            max_frames=options.max_frames,
            decoder=decoder,
            pace=options.pace,
            recorder=recorder,
            events=events,
        )
        server = _serve(session, options.port)
    except BaseException:
        if recorder is not None:
            recorder.writer.close(keep=False)
        raise
    if options.prompt is not None:
        session.submit(Prompt(options.prompt, source="command line"))
    say(f"watch: {server.url}")
    say(f"steer: {server.steer_url}")
    reader = None
    if stdin is not None:
        if stdin.isatty():
            say(HELP)
        reader = LineReader(session, stdin, keep_running=options.keep_running, report=say)
    try:
        session.start()
        server.start()
        if reader is not None:
            reader.start()
        while session.is_alive() and not session.wait_done(0.2):
            pass
        session.join()
    except KeyboardInterrupt:
        session.stop("interrupt")
        if session.started:
            session.join()
        elif recorder is not None:
            recorder.writer.close(keep=False)
        raise
    finally:
        server.close()
    return session


def _serve(session: LiveSession, port: int) -> LiveServer:
    try:
        return LiveServer(session, port)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise OSError(f"port {port} on 127.0.0.1 is in use; pass --port N (0 picks a free one)") from None
        raise
