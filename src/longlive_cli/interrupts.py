"""Ctrl-C and SIGTERM as one ``KeyboardInterrupt``, remembered, so an error that a signal caused (a read cut short
mid-file, say) is reported as the interrupt it was, not as a corrupt file."""

from __future__ import annotations

import signal
import threading

_received: list[int] = []


def _handler(signum: int, frame: object) -> None:
    _received.append(signum)
    raise KeyboardInterrupt


def install() -> None:
    """Turn SIGINT and SIGTERM into ``KeyboardInterrupt`` in this process, noting each from now on."""
    if threading.current_thread() is not threading.main_thread():
        return
    _received.clear()
    for name in ("SIGINT", "SIGTERM"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _handler)


def received() -> bool:
    """Whether Ctrl-C or SIGTERM has reached this process since ``install``."""
    return bool(_received)
