"""Frames for viewers: one latest-frame slot that each viewer reads at its own pace, so a slow one drops frames.

Publishing only swaps a reference, so the generator never waits on a viewer. Frames are encoded as PNG (zlib from
the standard library) by the first viewer that asks for them, once per frame however many viewers there are.
"""

from __future__ import annotations

import struct
import threading
import zlib

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def encode_png(frame: np.ndarray, level: int = 1) -> bytes:
    """A uint8 [H, W, 3] RGB frame as a PNG file; lossless, so a viewer sees exactly the recorded pixels."""
    height, width, _ = frame.shape
    rows = np.empty((height, 1 + width * 3), dtype=np.uint8)
    rows[:, 0] = 0
    rows[:, 1:] = frame.reshape(height, width * 3)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"".join(
        (PNG_SIGNATURE, _chunk(b"IHDR", header), _chunk(b"IDAT", zlib.compress(rows.tobytes(), level)), _chunk(b"IEND"))
    )


def _chunk(kind: bytes, data: bytes = b"") -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


class FrameHub:
    """The newest shown frame, its index, and the viewers waiting for the next one."""

    def __init__(self, max_viewers: int = 16):
        self.max_viewers = max_viewers
        self.viewers = 0
        self._cond = threading.Condition()
        self._encode = threading.Lock()
        self._index = -1
        self._frame: np.ndarray | None = None
        self._png: bytes | None = None
        self._closed = False

    def publish(self, index: int, frame: np.ndarray) -> None:
        """Make ``frame`` the latest; viewers still sending an older one skip straight to it."""
        with self._cond:
            self._index, self._frame, self._png = index, frame, None
            self._cond.notify_all()

    def next_png(self, after: int, timeout: float) -> tuple[int, bytes] | None:
        """The latest frame if it is newer than ``after``, waiting up to ``timeout`` s; None on timeout or close."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._closed or self._index > after, timeout) or self._closed:
                return None
            index, frame, png = self._index, self._frame, self._png
        if png is None:
            with self._encode:
                with self._cond:
                    png = self._png if self._index == index else None
                if png is None:
                    png = encode_png(frame)
                    with self._cond:
                        if self._index == index:
                            self._png = png
        return index, png

    def join(self) -> bool:
        """Count a new viewer in, unless there are already as many as allowed."""
        with self._cond:
            if self._closed or self.viewers >= self.max_viewers:
                return False
            self.viewers += 1
            return True

    def leave(self) -> None:
        with self._cond:
            self.viewers -= 1

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Wake every viewer so its connection ends."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
