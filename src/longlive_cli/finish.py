"""The one place a render's output is finished, whatever ends the render.

A whole video goes to ``NAME.mp4`` with ``NAME.json``; anything less (an interrupt, a failure, a name taken
during the render) stays in the playable ``NAME.partial.mp4`` with ``NAME.partial.json``, and the result says which.
Nothing that exists is replaced without ``overwrite``, and Ctrl-C or SIGTERM while finishing waits until the files
are in place, so no message ever names a file that is not there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .atomic import temporary_beside
from .video import (
    FFmpegError,
    VideoWriter,
    _interrupts_deferred,
    index_in_front,
    partial_path,
    read_video_info,
    sidecar_path,
)
from .video import write_sidecar as _write_sidecar


class FinishError(ValueError):
    """An output that cannot be written or finished; the message names the file and what was kept."""


@dataclass(frozen=True)
class Finished:
    """Where a render's frames ended up: ``video`` is None when nothing playable was kept."""

    video: Path | None
    sidecar: Path | None
    frames: int
    complete: bool
    problem: str | None = None

    def describe(self) -> str:
        """One line for the user about what is on disk."""
        if self.video is None:
            return "no video was kept (no playable frame was written)"
        state = "complete" if self.complete else "playable, incomplete"
        return f"{self.video} holds {self.frames} frame{'' if self.frames == 1 else 's'} ({state})"


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a render after its output was finished as ``finished`` says."""

    def __init__(self, finished: Finished):
        super().__init__(finished.describe())
        self.finished = finished


def check_free(output: Path, overwrite: bool) -> None:
    """Refuse, before anything starts, an output whose sidecars exist (the video's are checked by the writer)."""
    if overwrite:
        return
    for path in (sidecar_path(output), sidecar_path(partial_path(output))):
        if path.exists() or path.is_symlink():
            raise FileExistsError(f"{path} already exists; pass --overwrite to replace it")


def finish(
    writer: VideoWriter, sidecar: dict[str, Any], total: int, stopped: BaseException | None, overwrite: bool
) -> Finished:
    """Finish ffmpeg, put the video and its sidecar where they belong, and say where; interrupts wait till done."""
    finished: Finished | None = None
    try:
        with _interrupts_deferred():
            finished = _finish(writer, sidecar, total, stopped, overwrite)
    except KeyboardInterrupt:
        if finished is None:
            raise
        raise Interrupted(finished) from None
    return finished


def _finish(
    writer: VideoWriter, sidecar: dict[str, Any], total: int, stopped: BaseException | None, overwrite: bool
) -> Finished:
    frames = writer.frames_written
    problem = None
    try:
        writer.close(keep=True, move=False)
    except FFmpegError as e:
        problem = _ffmpeg_reason(e)
    if isinstance(stopped, FFmpegError):
        problem = _ffmpeg_reason(stopped)
    partial = writer.partial_path
    video = partial if partial.is_file() else None
    if video is not None and problem is not None:
        # ffmpeg failed (a full disk, say): count what a player can show, which may be less than was handed over.
        frames = _playable_frames(video)
        if not frames:
            video.unlink(missing_ok=True)
            video = None
    # Every frame written counts as whole even if Ctrl-C came right after the last one.
    ended = stopped is None or isinstance(stopped, KeyboardInterrupt)
    complete = video is not None and frames == total and ended and problem is None
    result = sidecar.setdefault("result", {})
    result.update(frames_written=frames, complete=complete, interrupted=isinstance(stopped, KeyboardInterrupt))
    if video is None:
        return Finished(None, None, 0, False, problem)
    if complete:
        index_in_front(video)  # a plain MP4, index first; on failure it stays fragmented, still whole and playable
        placed = _place(video, writer.path, sidecar, overwrite)
        if placed is not None:
            return placed
        problem = f"{writer.path} or its sidecar appeared during the render; pass --overwrite to replace them"
        result["complete"] = False
    sidecar["output"] = str(video)
    _write(sidecar_path(video), sidecar, video)
    return Finished(video, sidecar_path(video), frames, False, problem)


def _place(partial: Path, final: Path, sidecar: dict[str, Any], overwrite: bool) -> Finished | None:
    """Move a whole video and write its sidecar under the final names; None when one of them was taken meanwhile."""
    side = sidecar_path(final)
    sidecar["output"] = str(final)
    if overwrite:
        _write(side, sidecar, partial)
        os.replace(partial, final)
        return Finished(final, side, sidecar["result"]["frames_written"], True)
    if final.exists() or final.is_symlink() or side.exists():
        return None
    tmp = temporary_beside(side)
    _write(tmp, sidecar, partial)
    try:
        if not _link_new(tmp, side):
            return None
        if not _link_new(partial, final):
            side.unlink(missing_ok=True)
            return None
    finally:
        tmp.unlink(missing_ok=True)
    partial.unlink(missing_ok=True)
    return Finished(final, side, sidecar["result"]["frames_written"], True)


def _link_new(source: Path, target: Path) -> bool:
    """Give ``source`` the name ``target`` only if that name is free (a hard link cannot replace a file)."""
    try:
        os.link(source, target)
    except FileExistsError:
        return False
    except OSError:
        if target.exists():
            return False
        os.replace(source, target)
    return True


def _write(path: Path, sidecar: dict[str, Any], video: Path) -> None:
    """Write a sidecar, turning a full disk into a message that names the sidecar and the video kept."""
    try:
        _write_sidecar(path, sidecar)
    except OSError as e:
        raise FinishError(f"cannot write {path}: {e.strerror or e}; the video is in {video}") from None


def _ffmpeg_reason(error: FFmpegError) -> str:
    """The last line of ffmpeg's log, which says why (for instance 'No space left on device')."""
    lines = [line for line in str(error).splitlines()[1:] if line.strip() and "printed nothing" not in line]
    return f"ffmpeg: {lines[-1].strip()}" if lines else "ffmpeg stopped writing the video (is the disk full?)"


def _playable_frames(video: Path) -> int:
    """How many frames of a partial video a player can show (0 when it cannot be read at all)."""
    try:
        return read_video_info(video)["frames"]
    except Exception:  # noqa: BLE001 - any failure to read means nothing playable
        return 0
