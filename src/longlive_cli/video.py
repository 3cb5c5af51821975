"""MP4 output that grows chunk by chunk and stays playable if the run is interrupted or killed, plus JSON sidecars.

``VideoWriter`` pipes raw RGB frames straight into an ffmpeg process (the binary bundled with imageio-ffmpeg), which
encodes H.264 into a fragmented MP4 with a keyframe, and so a complete fragment, every second. Whatever happens to
the process, the file on disk is a valid MP4 up to its last complete fragment:

- normal end: ffmpeg finishes, and the file is rewritten as a plain MP4 with its index in front (``-c copy
  -movflags +faststart``, no re-encoding) so that every player shows its length and seeks;
- an exception, Ctrl-C (or SIGTERM turned into ``KeyboardInterrupt``): ffmpeg is told to finish, so every frame
  written so far is kept, and the fragmented file is moved from ``<stem>.partial.mp4`` to its final name;
- SIGKILL of Python alone: ffmpeg runs in its own session, sees its input end and finishes ``<stem>.partial.mp4``;
- SIGKILL of both: ``<stem>.partial.mp4`` holds every complete fragment, missing at most about one second.

x264 runs with ``-tune zerolatency`` by default (``low_latency=True``): a frame leaves the encoder as soon as it
goes in. Without it, x264 holds back up to a few dozen frames for lookahead and frame threads, all of which a
SIGKILL loses on top of the last fragment, in exchange for files 30-50% smaller.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any

import numpy as np
import torch

from .atomic import temporary_beside

PARTIAL_SUFFIX = ".partial.mp4"
FRAGMENTED_MP4_FLAGS = "+frag_keyframe+empty_moov+default_base_moof"
# How much of ffmpeg's log an error message quotes.
LOG_TAIL_CHARS = 2000


INTERRUPT_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM") if hasattr(signal, name))


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[list[tuple[int, FrameType | None]]]:
    """Hold Ctrl-C and SIGTERM until the block ends, yielding the list of those caught so the block can stop early.

    Python runs signal handlers in the main thread between bytecodes, whichever thread the signal reached, so the
    handlers themselves are swapped (a signal mask would not do: another thread can take the signal).
    """
    caught: list[tuple[int, FrameType | None]] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return
    previous = {number: signal.getsignal(number) for number in INTERRUPT_SIGNALS}
    for number in previous:
        signal.signal(number, lambda signum, frame: caught.append((signum, frame)))
    try:
        yield caught
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for number, frame in caught:
            handler = previous[number]
            if callable(handler):
                handler(number, frame)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(number)


class FFmpegError(RuntimeError):
    """ffmpeg failed while encoding; the message carries ffmpeg's own error output."""


def _ffmpeg():
    """imageio-ffmpeg, imported when a video is written or read, so decoding-only uses don't need it."""
    import imageio_ffmpeg

    return imageio_ffmpeg


def partial_path(path: Path) -> Path:
    """Name under which a video is written until it is finished, so the final name only ever holds a whole file."""
    return path.with_name(path.stem + PARTIAL_SUFFIX)


def sidecar_path(video: Path) -> Path:
    """Name of the JSON file that describes a video: the same stem, with ``.json``."""
    return video.with_suffix(".json")


def write_sidecar(path: Path, data: dict[str, Any]) -> None:
    """Write JSON through a temporary file and a rename, so readers never see a half-written sidecar."""
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    """Write a text file through a temporary file and a rename, so readers never see half of it."""
    path = Path(path)
    tmp = temporary_beside(path)
    try:
        with tmp.open("x", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def to_uint8_frames(x: torch.Tensor) -> np.ndarray:
    """Turn the VAE's [1, 3, T, H, W] or [3, T, H, W] output in [-1, 1] into uint8 [T, H, W, 3] frames for writing.

    Uses the reference pipelines' mapping ``(x * 0.5 + 0.5).clamp(0, 1) * 255`` and truncates to integers as their
    ``.to(torch.uint8)`` does (so 0.0 gives 127, not 128). The conversion runs on ``x``'s device, which makes the
    copy to host four times smaller than for float32.
    """
    return uint8_on_device(x).cpu().numpy()


def uint8_on_device(x: torch.Tensor) -> torch.Tensor:
    """``to_uint8_frames`` left on ``x``'s device, for a copy to host that the caller schedules."""
    if x.ndim == 5:
        if x.shape[0] != 1:
            raise ValueError(f"expected a batch of one video, got shape {tuple(x.shape)}")
        x = x[0]
    if x.ndim != 4 or x.shape[0] != 3:
        raise ValueError(f"expected [1, 3, T, H, W] or [3, T, H, W], got shape {tuple(x.shape)}")
    frames = ((x.float() * 0.5 + 0.5).clamp(0, 1) * 255).to(torch.uint8)
    return frames.permute(1, 2, 3, 0).contiguous()


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    """Reject frame sizes that libx264 cannot store as yuv420p (which halves chroma in both directions)."""
    width, height = size
    if width <= 0 or height <= 0:
        raise ValueError(f"video size must be positive, got {width}x{height}")
    if width % 2 or height % 2:
        raise ValueError(f"H.264 with yuv420p needs an even width and height, got {width}x{height}")
    return int(width), int(height)


def _open_partial(path: Path, partial: Path, overwrite: bool) -> None:
    """Check the destination before ffmpeg starts, so bad paths fail with a message that names them."""
    folder = path.parent
    if not folder.exists():
        raise FileNotFoundError(f"output folder {folder} does not exist (for {path}); create it first")
    if not folder.is_dir():
        raise NotADirectoryError(f"cannot write {path}: {folder} is not a folder")
    if path.is_dir():
        raise IsADirectoryError(f"cannot write {path}: it is a folder")
    if not overwrite:
        if path.exists() or path.is_symlink():
            raise FileExistsError(f"{path} already exists; pass --overwrite to replace it")
        if partial.exists() or partial.is_symlink():
            raise FileExistsError(
                f"{partial} exists, left by an interrupted run (it may hold a playable video); "
                "move or delete it, or pass --overwrite to replace it"
            )
    try:
        with open(partial, "wb" if overwrite else "xb"):
            pass
    except PermissionError as err:
        raise PermissionError(f"cannot write to folder {folder} (for {path}): permission denied") from err


def _ffmpeg_command(
    partial: Path, fps: int, size: tuple[int, int], crf: int, preset: str, low_latency: bool
) -> list[str]:
    """Build the ffmpeg call: raw RGB on stdin, H.264 in a fragmented MP4 with one keyframe per second."""
    width, height = size
    tune = ["-tune", "zerolatency"] if low_latency else []
    return [
        _ffmpeg().get_ffmpeg_exe(),
        "-hide_banner",
        "-nostats",
        "-loglevel",
        "error",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-video_size",
        f"{width}x{height}",
        "-framerate",
        str(fps),
        "-i",
        "pipe:0",
        "-c:v",
        "libx264",
        "-preset",
        preset,
        *tune,
        "-crf",
        str(crf),
        "-pix_fmt",
        "yuv420p",
        "-g",
        str(fps),
        # Without this, small frames leave whole fragments in ffmpeg's 32 KiB output buffer instead of on disk.
        "-flush_packets",
        "1",
        "-movflags",
        FRAGMENTED_MP4_FLAGS,
        "-f",
        "mp4",
        "-y",
        str(partial),
    ]


class VideoWriter:
    """Encode uint8 RGB frames to an MP4 as they arrive, keeping memory flat and the file playable at all times.

    ``size`` is (width, height); frames are [n, height, width, 3]. Use as a context manager: leaving the block,
    normally or by any exception including ``KeyboardInterrupt``, finishes the file and moves it to ``path``.
    """

    def __init__(
        self,
        path: Path,
        fps: int,
        size: tuple[int, int],
        overwrite: bool = False,
        crf: int = 18,
        preset: str = "veryfast",
        low_latency: bool = True,
    ) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.size = _check_size(size)
        self.fps = int(fps)
        self.path = Path(path).absolute()
        self.partial_path = partial_path(self.path)
        self.frames_written = 0
        self._closed = False
        self._failed = False
        self._result: Path | None = None
        _open_partial(self.path, self.partial_path, overwrite)
        # ffmpeg's log goes to a file that lives as long as the writer, so errors can quote it (see _error).
        self._log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        command = _ffmpeg_command(self.partial_path, self.fps, self.size, crf, preset, low_latency)
        try:
            # A session of its own keeps the terminal's Ctrl-C away from ffmpeg, so that close() decides how it ends.
            self._process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._log, start_new_session=True
            )
        except BaseException:
            self._log.close()
            self.partial_path.unlink(missing_ok=True)
            raise

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close(keep=True, index_first=exc_type is None)

    def write(self, frames: np.ndarray | torch.Tensor) -> None:
        """Hand a chunk of uint8 [n, H, W, 3] frames to ffmpeg now, so nothing accumulates in memory."""
        if self._closed:
            raise ValueError(f"cannot write to {self.path}: the writer is closed")
        if self._failed:
            raise FFmpegError(f"cannot write to {self.path}: ffmpeg has already failed")
        if isinstance(frames, torch.Tensor):
            frames = frames.detach().cpu().numpy()
        width, height = self.size
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != (height, width, 3):
            raise ValueError(
                f"expected uint8 frames of shape [n, {height}, {width}, 3], got {frames.dtype} {tuple(frames.shape)}"
            )
        data = np.ascontiguousarray(frames)
        try:
            # Frame by frame, an interrupt taking effect between two frames, so the count is exactly what ffmpeg has.
            with _interrupts_deferred() as caught:
                for frame in data:
                    if caught:
                        break
                    self._process.stdin.write(memoryview(frame).cast("B"))
                    self.frames_written += 1
            self._process.stdin.flush()
        except OSError:
            self._failed = True
            self._process.wait()
            raise self._error("ffmpeg stopped accepting frames") from None

    def close(self, keep: bool = True, move: bool = True, index_first: bool = True) -> Path | None:
        """Finish the video and move it to ``path`` (or leave it at ``partial_path`` when not ``move``), or discard
        it; returns where the video was kept, if it was.

        ``index_first`` rewrites a cleanly finished video as a plain MP4 with its index in front; without it (after an
        interrupt) the file stays fragmented, playable as it is.

        Nothing is kept when no frame was written. If ffmpeg fails, ``FFmpegError`` is raised and a partial file
        that may hold frames is left in place. A second Ctrl-C while ffmpeg finishes stops it at once, leaving the
        partial file playable up to its last fragment. Closing again returns the first result.
        """
        if self._closed:
            return self._result
        self._closed = True
        keep = keep and self.frames_written > 0
        try:
            returncode = self._finish(discard=not keep)
            if keep and not self._failed and returncode == 0:
                if move:
                    if index_first:
                        index_in_front(self.partial_path)
                    os.replace(self.partial_path, self.path)
                self._result = self.path if move else self.partial_path
                return self._result
            if not keep or not self._partial_has_data():
                self.partial_path.unlink(missing_ok=True)
            if keep and not self._failed:
                self._failed = True
                raise self._error(f"ffmpeg exited with code {returncode}")
            return None
        finally:
            self._log.close()

    def _finish(self, discard: bool) -> int:
        """End ffmpeg's input and wait for it to write the last fragment, or stop it at once when discarding."""
        if discard:
            self._process.kill()
        with contextlib.suppress(OSError):
            self._process.stdin.close()
        try:
            return self._process.wait()
        except BaseException:
            self._process.kill()
            self._process.wait()
            raise

    def _partial_has_data(self) -> bool:
        """Whether ffmpeg got as far as writing anything, which decides if a failed run's file is worth keeping."""
        return self.partial_path.is_file() and self.partial_path.stat().st_size > 0

    def _error(self, reason: str) -> FFmpegError:
        """Build an exception that quotes ffmpeg's log, which it keeps out of the user's terminal."""
        self._log.seek(0)
        log = self._log.read().decode(errors="replace").strip()[-LOG_TAIL_CHARS:] or "(ffmpeg printed nothing)"
        kept = f"; the frames encoded so far are in {self.partial_path}" if self._partial_has_data() else ""
        return FFmpegError(f"{reason} while writing {self.path}{kept}:\n{log}")


def index_in_front(path: Path) -> bool:
    """Rewrite a fragmented MP4 in place as a plain one with the index (moov) first, copying the stream as it is.

    Players then show the length and seek at once. On any failure the fragmented file is left as it was, still whole
    and playable, and False is returned; an interrupt leaves it too, and propagates.
    """
    tmp = path.with_name(f".{secrets.token_hex(8)}.faststart.mp4")  # fixed length, as in write_text_atomic
    command = [_ffmpeg().get_ffmpeg_exe(), "-hide_banner", "-nostats", "-loglevel", "error", "-i", str(path),
               "-map", "0", "-c", "copy", "-movflags", "+faststart", "-f", "mp4", "-y", str(tmp)]  # fmt: skip
    try:
        done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, start_new_session=True)
        if done.returncode != 0 or not tmp.is_file() or tmp.stat().st_size == 0:
            return False
        os.replace(tmp, path)
        return True
    finally:
        tmp.unlink(missing_ok=True)


class VideoReadError(OSError):
    """A file ffmpeg cannot read as a video; the message is ffmpeg's reason, without its banner."""


def _opened(path: Path, reader) -> dict:
    """The reader's header, or a one-line reason why the file is not a video."""
    try:
        return next(reader)
    except (OSError, RuntimeError, StopIteration) as e:
        reader.close()
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        fallback = lines[-1] if lines else "no frames"
        reason = next((line for line in reversed(lines) if "rror" in line or "not found" in line), fallback)
        raise VideoReadError(f"{path}: not a video ffmpeg can read ({reason})") from None


def read_frames(path: Path) -> Iterator[np.ndarray]:
    """Decode a video into read-only uint8 [H, W, 3] RGB frames, one at a time."""
    path = _existing(path)
    reader = _ffmpeg().read_frames(str(path), pix_fmt="rgb24")
    width, height = _opened(path, reader)["size"]
    try:
        for data in reader:
            yield np.frombuffer(data, dtype=np.uint8).reshape(height, width, 3)
    finally:
        reader.close()


def read_video_info(path: Path) -> dict[str, Any]:
    """Frame count, frame rate and size of a video, as written by ``VideoWriter`` or any other tool."""
    path = _existing(path)
    reader = _ffmpeg().read_frames(str(path), pix_fmt="rgb24")
    meta = _opened(path, reader)
    reader.close()
    frames, _ = _ffmpeg().count_frames_and_secs(str(path))
    width, height = meta["size"]
    return {"frames": frames, "fps": meta["fps"], "width": width, "height": height}


def _existing(path: Path) -> Path:
    """Resolve a video path, failing clearly when it is missing (ffmpeg's own message is buried in its log)."""
    path = Path(path).absolute()
    if not path.is_file():
        raise FileNotFoundError(f"video {path} does not exist")
    return path
