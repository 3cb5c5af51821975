"""Streaming MP4 output: round trip, safe paths, interrupted and killed runs, frame conversion and sidecars."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import numpy as np
import pytest
import torch

from longlive_cli.video import (
    FFmpegError,
    VideoWriter,
    partial_path,
    read_frames,
    read_video_info,
    sidecar_path,
    to_uint8_frames,
    write_sidecar,
)

FPS = 16
WIDTH, HEIGHT = 64, 48
# Mean absolute error allowed between written and decoded smooth frames (H.264 at crf 18 plus yuv420p).
MAX_MEAN_ABS_ERROR = 4.0


def pattern(start: int, count: int) -> np.ndarray:
    """Smooth frames that change with their index, so a lost, repeated or reordered frame shows."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    frames = [
        np.stack([x * 3 + i * 2, y * 4 + i, np.full_like(x, 40 + i * 3)], axis=-1) % 256
        for i in range(start, start + count)
    ]
    return np.stack(frames).astype(np.uint8)


def decode_errors(path: Path) -> str:
    """What ffmpeg complains about while decoding every frame; empty for a clean file."""
    result = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "null", "-"],
        capture_output=True,
        text=True,
    )
    return result.stderr.strip() + ("" if result.returncode == 0 else f"\nexit code {result.returncode}")


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    frames = pattern(0, 37)
    with VideoWriter(path, FPS, (WIDTH, HEIGHT)) as writer:
        writer.write(torch.from_numpy(frames[:12]))
        writer.write(frames[12:24])
        writer.write(frames[24:])
        assert writer.partial_path.exists() and not path.exists()
    assert writer.frames_written == 37
    assert sorted(os.listdir(tmp_path)) == ["out.mp4"]
    assert read_video_info(path) == {"frames": 37, "fps": FPS, "width": WIDTH, "height": HEIGHT}
    decoded = np.stack(list(read_frames(path)))
    assert decoded.shape == frames.shape
    error = np.abs(decoded.astype(np.float32) - frames).mean(axis=(1, 2, 3))
    assert error.max() < MAX_MEAN_ABS_ERROR, error
    assert decode_errors(path) == ""


def test_close_returns_path_and_is_idempotent(tmp_path: Path) -> None:
    writer = VideoWriter(tmp_path / "out.mp4", FPS, (WIDTH, HEIGHT))
    writer.write(pattern(0, 3))
    assert writer.close() == tmp_path / "out.mp4"
    assert writer.close() == tmp_path / "out.mp4"
    with pytest.raises(ValueError, match="closed"):
        writer.write(pattern(0, 1))
    boxes, _ = mp4_layout(tmp_path / "out.mp4")
    assert boxes.index("moov") < boxes.index("mdat") and "moof" not in boxes, "by default the index goes first"


def test_close_without_move_leaves_the_finished_file_under_its_partial_name(tmp_path: Path) -> None:
    writer = VideoWriter(tmp_path / "out.mp4", FPS, (WIDTH, HEIGHT))
    writer.write(pattern(0, 3))
    assert writer.close(move=False) == writer.partial_path
    assert os.listdir(tmp_path) == ["out.partial.mp4"] and read_video_info(writer.partial_path)["frames"] == 3


def writer_with_a_dead_ffmpeg(path: Path) -> VideoWriter:
    """A writer whose ffmpeg is killed once it has a whole one-second fragment of 40 frames on disk."""
    writer = VideoWriter(path, FPS, (WIDTH, HEIGHT))
    writer.write(pattern(0, 40))
    deadline = time.monotonic() + 60
    while frames_on_disk(writer.partial_path) < FPS:
        assert time.monotonic() < deadline, "no fragment reached the disk"
        time.sleep(0.02)
    writer._process.kill()
    writer._process.wait()
    return writer


def test_ffmpeg_dying_during_a_write_is_named_and_its_frames_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    writer = writer_with_a_dead_ffmpeg(path)
    partial = writer.partial_path
    with pytest.raises(FFmpegError) as info:
        writer.write(pattern(40, 4))
    kept = f"; the frames encoded so far are in {partial}:\n(ffmpeg printed nothing)"
    assert str(info.value) == f"ffmpeg stopped accepting frames while writing {path}{kept}"
    with pytest.raises(FFmpegError, match=f"^cannot write to {path}: ffmpeg has already failed$"):
        writer.write(pattern(0, 1))
    assert writer.close() is None
    assert os.listdir(tmp_path) == ["out.partial.mp4"] and frames_on_disk(partial) >= FPS


def test_ffmpeg_dying_with_small_frames_still_buffered_closes_quietly(tmp_path: Path) -> None:
    """Frames smaller than the pipe's buffer are still buffered when ffmpeg dies; closing drops them without error."""
    writer = VideoWriter(tmp_path / "small.mp4", FPS, (16, 16))
    writer._process.kill()
    writer._process.wait()
    with pytest.raises(FFmpegError, match="ffmpeg stopped accepting frames"):
        writer.write(np.zeros((1, 16, 16, 3), np.uint8))
    assert writer.close() is None


def test_ffmpeg_dying_between_writes_is_reported_when_closing(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    writer = writer_with_a_dead_ffmpeg(path)
    with pytest.raises(FFmpegError) as info:
        writer.close()
    partial = writer.partial_path
    assert str(info.value) == (
        f"ffmpeg exited with code -9 while writing {path}; the frames encoded so far are in {partial}:\n"
        "(ffmpeg printed nothing)"
    )
    assert writer.close() is None, "closing again returns the first result"
    assert os.listdir(tmp_path) == ["out.partial.mp4"] and frames_on_disk(partial) >= FPS


def test_existing_output_refused_unless_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    path.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="--overwrite"):
        VideoWriter(path, FPS, (WIDTH, HEIGHT))
    assert path.read_bytes() == b"keep me"
    assert sorted(os.listdir(tmp_path)) == ["out.mp4"]
    with VideoWriter(path, FPS, (WIDTH, HEIGHT), overwrite=True) as writer:
        writer.write(pattern(0, 12))
    assert read_video_info(path)["frames"] == 12


def test_leftover_partial_refused_unless_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    partial_path(path).write_bytes(b"an interrupted run")
    with pytest.raises(FileExistsError) as info:
        VideoWriter(path, FPS, (WIDTH, HEIGHT))
    assert str(info.value) == (
        f"{partial_path(path)} exists, left by an interrupted run (it may hold a playable video); "
        "move or delete it, or pass --overwrite to replace it"
    )
    assert partial_path(path).read_bytes() == b"an interrupted run"
    with VideoWriter(path, FPS, (WIDTH, HEIGHT), overwrite=True) as writer:
        writer.write(pattern(0, 4))
    assert sorted(os.listdir(tmp_path)) == ["out.mp4"]


def test_a_folder_in_place_of_the_video(tmp_path: Path) -> None:
    (tmp_path / "out.mp4").mkdir()
    with pytest.raises(IsADirectoryError, match=f"^cannot write {tmp_path / 'out.mp4'}: it is a folder$"):
        VideoWriter(tmp_path / "out.mp4", FPS, (WIDTH, HEIGHT))


def test_a_default_writer_runs_ffmpeg_in_its_own_session_holding_no_frame_back(tmp_path: Path) -> None:
    """Its own session keeps the terminal's Ctrl-C away from ffmpeg; zero latency makes every frame written count."""
    with pytest.raises(ValueError, match=r"^fps must be positive, got 0$"):
        VideoWriter(tmp_path / "out.mp4", 0, (WIDTH, HEIGHT))
    writer = VideoWriter(tmp_path / "out.mp4", 1, (WIDTH, HEIGHT))
    try:
        assert os.getsid(writer._process.pid) == writer._process.pid
        args = writer._process.args
        assert args[args.index("-tune") + 1] == "zerolatency" and args[args.index("-framerate") + 1] == "1"
        assert (args[args.index("-crf") + 1], args[args.index("-preset") + 1]) == ("18", "veryfast")
    finally:
        writer.close(keep=False)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.*does not exist"):
        VideoWriter(tmp_path / "missing" / "out.mp4", FPS, (WIDTH, HEIGHT))


def test_file_in_place_of_folder(tmp_path: Path) -> None:
    (tmp_path / "some_file").write_text("")
    with pytest.raises(NotADirectoryError, match="some_file is not a folder"):
        VideoWriter(tmp_path / "some_file" / "out.mp4", FPS, (WIDTH, HEIGHT))


def test_unwritable_folder(tmp_path: Path, monkeypatch) -> None:
    import longlive_cli.video as video

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(video, "open", refuse, raising=False)
    folder = tmp_path / "locked"
    folder.mkdir()
    with pytest.raises(PermissionError, match="cannot write to folder .*locked"):
        VideoWriter(folder / "out.mp4", FPS, (WIDTH, HEIGHT))


def test_odd_size_and_bad_frames(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="even width and height"):
        VideoWriter(tmp_path / "out.mp4", FPS, (65, 48))
    for size, message in [
        ((0, 48), "video size must be positive, got 0x48"),
        ((64, 0), "video size must be positive, got 64x0"),
        ((1, 48), "H.264 with yuv420p needs an even width and height, got 1x48"),
        ((64, 1), "H.264 with yuv420p needs an even width and height, got 64x1"),
    ]:
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            VideoWriter(tmp_path / "out.mp4", FPS, size)
    assert VideoWriter(tmp_path / "out.mp4", FPS, (64, 34)).close(keep=False) is None
    assert os.listdir(tmp_path) == []
    with VideoWriter(tmp_path / "out.mp4", FPS, (WIDTH, HEIGHT)) as writer:
        with pytest.raises(ValueError, match=r"\[n, 48, 64, 3\]"):
            writer.write(pattern(0, 2).astype(np.float32))
        with pytest.raises(ValueError, match=r"\[n, 48, 64, 3\]"):
            writer.write(pattern(0, 2).transpose(0, 2, 1, 3))
        writer.write(pattern(0, 2))
    assert read_video_info(tmp_path / "out.mp4")["frames"] == 2


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_error_inside_block_keeps_frames_so_far(tmp_path: Path, error: type[BaseException]) -> None:
    path = tmp_path / "out.mp4"
    with pytest.raises(error), VideoWriter(path, FPS, (WIDTH, HEIGHT)) as writer:
        writer.write(pattern(0, 12))
        writer.write(pattern(12, 8))
        raise error
    assert sorted(os.listdir(tmp_path)) == ["out.mp4"]
    assert read_video_info(path)["frames"] == 20
    assert decode_errors(path) == ""


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs setitimer")
@pytest.mark.parametrize("delay", [0.07, 0.19])
def test_interrupt_in_the_middle_of_a_chunk_counts_every_frame_kept(tmp_path: Path, delay: float) -> None:
    path = tmp_path / "out.mp4"
    chunk = np.random.default_rng(0).integers(0, 256, (64, 240, 320, 3), dtype=np.uint8)

    def interrupt(signum: int, frame: object) -> None:
        os.kill(os.getpid(), signal.SIGINT)

    # A second thread that could take a process-wide signal, as torch's and the live server's threads can.
    stop = threading.Event()
    bystander = threading.Thread(target=stop.wait)
    bystander.start()
    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        with pytest.raises(KeyboardInterrupt), VideoWriter(path, FPS, (320, 240)) as writer:
            writer.write(chunk)  # the clock starts once a chunk is in, however slow the machine is to get there
            signal.setitimer(signal.ITIMER_REAL, delay)
            while True:
                writer.write(chunk)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        stop.set()
        bystander.join()
    assert writer.frames_written >= len(chunk)
    assert read_video_info(path)["frames"] == writer.frames_written
    assert decode_errors(path) == ""


class _SignalAfterWrite:
    """ffmpeg's stdin, but a signal arrives just after the first frame is handed over and before it can be counted."""

    def __init__(self, stdin: Any, signum: int) -> None:
        self.stdin = stdin
        self.signum = signum
        self.sent = False

    def write(self, data: memoryview) -> int:
        written = self.stdin.write(data)
        if not self.sent:
            self.sent = True
            os.kill(os.getpid(), self.signum)
        return written

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stdin, name)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_just_after_a_frame_is_handed_over_still_counts_it(tmp_path: Path, signum: int) -> None:
    seen: list[int] = []

    def on_signal(number: int, frame: object) -> None:
        seen.append(number)
        raise KeyboardInterrupt

    previous = signal.signal(signum, on_signal)
    try:
        with pytest.raises(KeyboardInterrupt), VideoWriter(tmp_path / "out.mp4", FPS, (WIDTH, HEIGHT)) as writer:
            writer._process.stdin = _SignalAfterWrite(writer._process.stdin, signum)
            writer.write(pattern(0, 4))
    finally:
        signal.signal(signum, previous)
    assert seen == [signum]
    assert signal.getsignal(signum) is previous
    assert writer.frames_written == 1
    assert read_video_info(tmp_path / "out.mp4")["frames"] == 1


def test_error_before_any_frame_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), VideoWriter(tmp_path / "out.mp4", FPS, (WIDTH, HEIGHT)):
        raise RuntimeError
    assert os.listdir(tmp_path) == []


def test_close_without_keep_discards(tmp_path: Path) -> None:
    writer = VideoWriter(tmp_path / "out.mp4", FPS, (WIDTH, HEIGHT))
    writer.write(pattern(0, 12))
    assert writer.close(keep=False) is None
    assert os.listdir(tmp_path) == []
    assert writer._process.returncode == -signal.SIGKILL, "ffmpeg is stopped at once, not left to finish encoding"


def test_discarding_a_video_whose_partial_file_was_removed_meanwhile(tmp_path: Path) -> None:
    writer = VideoWriter(tmp_path / "out.mp4", FPS, (WIDTH, HEIGHT))
    writer.write(pattern(0, 12))
    writer.partial_path.unlink()
    assert writer.close(keep=False) is None
    assert os.listdir(tmp_path) == []


def test_ffmpeg_error_surfaces_its_message(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    with (
        pytest.raises(FFmpegError) as info,
        VideoWriter(path, FPS, (WIDTH, HEIGHT), preset="nonsense") as writer,
    ):
        for start in range(0, 240, 12):
            writer.write(pattern(start, 12))
    with (
        pytest.raises(FFmpegError, match="invalid preset 'bad\ufffd'"),
        VideoWriter(tmp_path / "b.mp4", FPS, (WIDTH, HEIGHT), preset="bad\udcff") as bad,
    ):
        bad.write(pattern(0, 240))  # ffmpeg's log holds the preset's byte 0xff, which is not UTF-8
    # ffmpeg's log is quoted from its first line; no frame was encoded, so no file is named as keeping any.
    assert str(info.value).startswith(
        f"ffmpeg stopped accepting frames while writing {path}:\nx264 [error]: invalid preset"
    )
    assert os.listdir(tmp_path) == []


def test_the_encoder_is_told_to_hold_no_frames_back_unless_asked(tmp_path: Path) -> None:
    from longlive_cli.video import _ffmpeg_command

    for low_latency, tune in [(True, ["-tune", "zerolatency"]), (False, [])]:
        command = _ffmpeg_command(tmp_path / "p.mp4", FPS, (WIDTH, HEIGHT), 18, "veryfast", low_latency)
        at = command.index("-preset")
        assert command[at : at + 2 + len(tune) + 1] == ["-preset", "veryfast", *tune, "-crf"]


def test_missing_video_for_reading(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        read_video_info(tmp_path / "nope.mp4")
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        next(read_frames(tmp_path / "nope.mp4"))


# A child that writes one second of frames at once, then one frame every 50 ms, reporting each count on stdout.
STREAMING_CHILD = textwrap.dedent(
    """
    import signal, sys, time
    from pathlib import Path
    import numpy as np
    from longlive_cli.video import VideoWriter

    if sys.argv[2] == "sigterm":
        def interrupt(signum, frame):
            raise KeyboardInterrupt
        signal.signal(signal.SIGTERM, interrupt)
    frame = np.zeros((1, 48, 64, 3), np.uint8)
    try:
        with VideoWriter(Path(sys.argv[1]), 16, (64, 48)) as writer:
            print("ffmpeg", writer._process.pid, flush=True)
            for i in range(100000):
                frame[..., 0] = i % 256
                writer.write(frame)
                print("frames", writer.frames_written, flush=True)
                if i >= 64:
                    time.sleep(0.05)
    except KeyboardInterrupt:
        print("done", writer.frames_written, flush=True)
    """
)


def start_child(path: Path, mode: str, frames: int) -> tuple[subprocess.Popen, int, int]:
    """Run STREAMING_CHILD until it has written at least ``frames``; returns it, ffmpeg's pid and the count."""
    child = subprocess.Popen(
        [sys.executable, "-c", STREAMING_CHILD, str(path), mode], stdout=subprocess.PIPE, text=True
    )
    ffmpeg_pid, written = 0, 0
    while written < frames:
        line = child.stdout.readline()
        assert line, "the child stopped early"
        key, value = line.split()
        if key == "ffmpeg":
            ffmpeg_pid = int(value)
        else:
            written = int(value)
    return child, ffmpeg_pid, written


def last_count(child: subprocess.Popen, written: int) -> int:
    """The child's last frame count, once it has stopped: frames it handed to ffmpeg after the test last looked."""
    for line in child.stdout:
        key, value = line.split()
        if key == "frames":
            written = int(value)
    return written


def frames_on_disk(path: Path) -> int:
    """Frames in the complete fragments of a file still being written (0 while it has none)."""
    try:
        return read_video_info(path)["frames"]
    except (OSError, RuntimeError, ValueError, KeyError, StopIteration):
        return 0


def wait_gone(pid: int, timeout: float = 10.0) -> None:
    """Wait for a process that is not our child to end (a zombie counts as ended)."""
    deadline = time.monotonic() + timeout
    stat = Path(f"/proc/{pid}/stat")
    while time.monotonic() < deadline:
        try:
            if stat.read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                return
        except FileNotFoundError:
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} still running")


requires_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


@requires_proc
def test_sigkill_of_python_and_ffmpeg_keeps_complete_fragments(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    child, ffmpeg_pid, written = start_child(path, "run", 70)
    partial = partial_path(path)
    deadline = time.monotonic() + 60
    while frames_on_disk(partial) < 64:  # the burst has reached the disk in whole fragments, however slowly
        assert time.monotonic() < deadline, "the first frames never reached the disk"
        time.sleep(0.05)
    os.kill(ffmpeg_pid, signal.SIGKILL)
    child.kill()
    written = last_count(child, written)
    child.wait()
    wait_gone(ffmpeg_pid)
    assert not path.exists()
    assert decode_errors(partial) == ""
    # Only the fragment being written at the kill may be lost.
    assert 64 <= read_video_info(partial)["frames"] <= written + 1


@requires_proc
def test_sigkill_of_python_alone_lets_ffmpeg_finish(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    child, ffmpeg_pid, written = start_child(path, "run", 70)
    child.kill()
    written = last_count(child, written)
    child.wait()
    wait_gone(ffmpeg_pid)
    partial = partial_path(path)
    assert decode_errors(partial) == ""
    assert written <= read_video_info(partial)["frames"] <= written + 1


def test_sigterm_turned_into_keyboard_interrupt_finishes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    child, _, _ = start_child(path, "sigterm", 70)
    child.send_signal(signal.SIGTERM)
    out, _ = child.communicate(timeout=30)
    assert child.returncode == 0
    written = int(out.splitlines()[-1].removeprefix("done "))
    assert sorted(os.listdir(tmp_path)) == ["out.mp4"]
    assert decode_errors(path) == ""
    # A SIGTERM landing after a frame reached ffmpeg but before it was counted leaves one frame more.
    assert written <= read_video_info(path)["frames"] <= written + 1


def test_to_uint8_frames_matches_reference_mapping() -> None:
    values = torch.tensor([-1.0, 1.0, 0.0, -2.0, 2.0, 0.5])
    x = values.view(1, 1, 6, 1, 1).expand(1, 3, 6, 2, 4).clone()
    x[:, 1] = -1.0
    frames = to_uint8_frames(x)
    assert frames.dtype == np.uint8 and frames.shape == (6, 2, 4, 3)
    # Truncation, as in the reference `.to(torch.uint8)`: 0.0 -> 127.5 -> 127 and 0.5 -> 191.25 -> 191.
    assert frames[:, 0, 0, 0].tolist() == [0, 255, 127, 0, 255, 191]
    assert (frames[..., 1] == 0).all()
    reference = ((x[0].float() * 0.5 + 0.5).clamp(0, 1) * 255).to(torch.uint8).permute(1, 2, 3, 0).numpy()
    assert np.array_equal(frames, reference)
    assert np.array_equal(to_uint8_frames(x[0]), frames)
    with pytest.raises(ValueError, match="batch of one"):
        to_uint8_frames(torch.zeros(2, 3, 1, 2, 2))
    with pytest.raises(ValueError, match=r"\[3, T, H, W\]"):
        to_uint8_frames(torch.zeros(4, 1, 2, 2))


def test_sidecar(tmp_path: Path) -> None:
    video = tmp_path / "clip.mp4"
    assert sidecar_path(video) == tmp_path / "clip.json"
    data = {"prompt": "café, 夜の街", "seed": 7, "frames": 37}
    write_sidecar(sidecar_path(video), {"old": True})
    write_sidecar(sidecar_path(video), data)
    text = sidecar_path(video).read_text(encoding="utf-8")
    assert json.loads(text) == data
    assert list(json.loads(text)) == ["prompt", "seed", "frames"]
    assert "夜の街" in text and text.startswith('{\n  "prompt"')
    assert os.listdir(tmp_path) == ["clip.json"]


def mp4_layout(path: Path) -> tuple[list[str], float]:
    """Top-level box types in file order, and the duration in seconds that the movie header (mvhd) declares."""
    data = path.read_bytes()
    boxes, duration, at = [], None, 0
    while at + 8 <= len(data):
        size, kind = int.from_bytes(data[at : at + 4], "big"), data[at + 4 : at + 8].decode("latin-1")
        size = len(data) - at if size == 0 else size
        boxes.append(kind)
        if kind == "moov":
            mvhd = data.index(b"mvhd", at) + 4
            if data[mvhd] == 1:
                timescale = int.from_bytes(data[mvhd + 20 : mvhd + 24], "big")
                ticks = int.from_bytes(data[mvhd + 24 : mvhd + 32], "big")
            else:
                timescale = int.from_bytes(data[mvhd + 12 : mvhd + 16], "big")
                ticks = int.from_bytes(data[mvhd + 16 : mvhd + 20], "big")
            duration = ticks / timescale
        at += size
    return boxes, duration


def test_a_clean_finish_puts_the_index_first_without_reencoding(tmp_path: Path) -> None:
    frames = pattern(0, 40)
    done, cut = tmp_path / "done.mp4", tmp_path / "cut.mp4"
    with VideoWriter(done, FPS, (WIDTH, HEIGHT)) as writer:
        writer.write(frames)
    with pytest.raises(KeyboardInterrupt), VideoWriter(cut, FPS, (WIDTH, HEIGHT)) as writer:
        writer.write(frames)
        raise KeyboardInterrupt
    boxes, duration = mp4_layout(done)
    assert boxes.index("moov") < boxes.index("mdat") and "moof" not in boxes, boxes
    assert duration == pytest.approx(40 / FPS, abs=1 / FPS)
    cut_boxes, cut_duration = mp4_layout(cut)
    assert "moof" in cut_boxes and cut_duration == 0, "an interrupted file stays fragmented"
    assert sorted(os.listdir(tmp_path)) == ["cut.mp4", "done.mp4"]
    same = [(a == b).all() for a, b in zip(read_frames(done), read_frames(cut), strict=True)]
    assert len(same) == 40 and all(same), "the same encoded frames, copied"
    assert decode_errors(done) == ""


def test_putting_the_index_first_says_whether_it_did_and_leaves_a_non_video_alone(tmp_path: Path, capfd) -> None:
    from longlive_cli.video import index_in_front

    cut = tmp_path / "cut.mp4"
    with pytest.raises(KeyboardInterrupt), VideoWriter(cut, FPS, (WIDTH, HEIGHT)) as writer:
        writer.write(pattern(0, 20))
        raise KeyboardInterrupt
    notes = tmp_path / "notes.mp4"
    notes.write_text("hello")
    capfd.readouterr()
    assert index_in_front(notes) is False
    assert index_in_front(cut) is True
    assert capfd.readouterr() == ("", ""), "ffmpeg's complaints stay out of the terminal"
    assert notes.read_text() == "hello" and sorted(os.listdir(tmp_path)) == ["cut.mp4", "notes.mp4"]
    assert "moof" not in mp4_layout(cut)[0] and read_video_info(cut)["frames"] == 20


@pytest.mark.parametrize(
    ("code", "output"), [(1, b"half a file"), (0, None), (0, b"")], ids=["failed", "none", "empty"]
)
def test_a_failed_index_rewrite_never_replaces_the_playable_file(tmp_path: Path, monkeypatch, code, output) -> None:
    """ffmpeg failing part-way, or claiming success with no output (a full disk, say), leaves the file as it was."""
    import longlive_cli.video as video

    path = tmp_path / "cut.mp4"
    path.write_bytes(b"a playable fragmented video")

    def ffmpeg(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
        if output is not None:
            Path(command[-1]).write_bytes(output)
        return subprocess.CompletedProcess(command, code, b"", b"")

    monkeypatch.setattr(video.subprocess, "run", ffmpeg)
    assert video.index_in_front(path) is False
    assert path.read_bytes() == b"a playable fragmented video" and os.listdir(tmp_path) == ["cut.mp4"]


def test_rewriting_the_index_keeps_ffmpeg_away_from_the_terminal(tmp_path: Path, monkeypatch) -> None:
    """No terminal input reaches it and, in a session of its own, no terminal Ctrl-C."""
    import longlive_cli.video as video

    calls = []
    real_run = subprocess.run
    monkeypatch.setattr(video.subprocess, "run", lambda *a, **k: calls.append(k) or real_run(*a, **k))
    path = tmp_path / "out.mp4"
    with VideoWriter(path, FPS, (WIDTH, HEIGHT)) as writer:
        writer.write(pattern(0, 4))
    [kwargs] = calls
    assert kwargs["stdin"] is subprocess.DEVNULL and kwargs["start_new_session"] is True


def test_an_atomic_write_goes_through_a_temporary_name_a_training_stage_clears(tmp_path: Path, monkeypatch) -> None:
    """Should the process be killed mid-write, the file left behind is one the next training stage removes."""
    import longlive_cli.video as video
    from longlive_cli.train.loop import ORPHAN

    moves = []
    real_replace = os.replace
    monkeypatch.setattr(video.os, "replace", lambda src, dst: moves.append(Path(src)) or real_replace(src, dst))
    write_sidecar(tmp_path / "clip.json", {"a": 1})
    [tmp] = moves
    assert tmp.parent == tmp_path and ORPHAN.fullmatch(tmp.name), tmp.name


def test_temporary_names_leave_room_for_long_file_names(tmp_path: Path) -> None:
    """A video or sidecar whose name is close to the 255-byte limit is still finished in place."""
    video = tmp_path / ("v" * 231 + ".mp4")
    with VideoWriter(video, FPS, (WIDTH, HEIGHT)) as writer:
        writer.write(pattern(0, 4))
    assert "moof" not in mp4_layout(video)[0], "the index went first"
    side = tmp_path / ("s" * 236 + ".json")
    write_sidecar(side, {"a": 1})
    assert json.loads(side.read_text()) == {"a": 1}


def test_a_file_that_is_not_a_video_is_named_without_ffmpegs_banner(tmp_path: Path) -> None:
    from longlive_cli.video import VideoReadError

    path = tmp_path / "notes.mp4"
    path.write_text("hello")
    for read in (read_video_info, lambda p: next(read_frames(p))):
        with pytest.raises(VideoReadError) as caught:
            read(path)
        message = str(caught.value)
        assert message.startswith(f"{path}: not a video") and "\n" not in message and "configuration" not in message
        assert message.endswith("Invalid data found when processing input)"), "ffmpeg's reason, its last error line"
