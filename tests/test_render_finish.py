"""A render stopped at every stage leaves NAME.mp4 + NAME.json when whole, else a playable NAME.partial.mp4 +
NAME.partial.json, and its message names the file that is there; nothing existing is replaced without --overwrite."""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from longlive_cli import cli, interrupts, runtime
from longlive_cli.engine import StreamingGenerator
from longlive_cli.video import VideoWriter, read_video_info

from .fakes import write_converted

runner = CliRunner()
FRAMES = 48  # 3 s at 16 fps


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return write_converted(tmp_path_factory.mktemp("model") / "tiny.safetensors")


@pytest.fixture(autouse=True)
def restore_signals():
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)
    interrupts._received.clear()


def run(model: Path, out: Path, *extra: str):
    args = ["render", "--prompt", "a red circle", "--duration", "3s", "--model", str(model), "-o", str(out), "-q"]
    return runner.invoke(cli.app, [*args, *extra])


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != "old")


def test_interrupt_while_loading_the_model_writes_nothing(tmp_path, model, monkeypatch):
    def load(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runtime, "load_bundle", load)
    result = run(model, tmp_path / "v.mp4")
    assert result.exit_code == 130
    assert "nothing was written" in result.output and "Traceback" not in result.output
    assert files(tmp_path) == []


def test_sigterm_that_cuts_a_model_read_short_is_an_interrupt_not_a_corrupt_file(tmp_path, model, monkeypatch):
    from longlive_cli.checkpoints import CheckpointError

    def load(*args, **kwargs):
        try:
            signal.raise_signal(signal.SIGTERM)
        except KeyboardInterrupt as e:  # a reader that turns the interrupt into its own error, as safetensors can
            raise CheckpointError("model.safetensors: not readable, truncated or corrupt?") from e

    monkeypatch.setattr(runtime, "load_bundle", load)
    result = run(model, tmp_path / "v.mp4")
    assert result.exit_code == 130, result.output
    assert "corrupt" not in result.output and "interrupted" in result.output


def stop_writer_at(monkeypatch, call: int, keep: int) -> None:
    """Make VideoWriter.write hand over ``keep`` frames on its ``call``-th call, then raise KeyboardInterrupt."""
    original = VideoWriter.write
    calls = []

    def write(self, frames):
        calls.append(1)
        if len(calls) == call:
            if keep:
                original(self, frames[:keep])
            raise KeyboardInterrupt
        original(self, frames)

    monkeypatch.setattr(VideoWriter, "write", write)


@pytest.mark.parametrize(("call", "keep"), [(1, 0), (2, 3)], ids=["first-chunk", "mid-chunk"])
def test_interrupt_during_generation(tmp_path, model, monkeypatch, call, keep):
    stop_writer_at(monkeypatch, call, keep)
    out = tmp_path / "v.mp4"
    result = run(model, out)
    assert result.exit_code == 130, result.output
    if call == 1:
        assert files(tmp_path) == []
        assert "no video was kept" in result.output
        return
    partial = tmp_path / "v.partial.mp4"
    assert files(tmp_path) == ["v.partial.json", "v.partial.mp4"]
    frames = read_video_info(partial)["frames"]
    side = json.loads((tmp_path / "v.partial.json").read_text())
    assert side["result"] == {"frames_written": frames, "complete": False, "interrupted": True}
    assert f"{partial} holds {frames} frames (playable, incomplete)" in result.output


def test_interrupt_right_after_the_last_chunk_keeps_the_whole_video(tmp_path, model, monkeypatch):
    original = StreamingGenerator.stream

    def stream(self, *args, **kwargs):
        yield from original(self, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(StreamingGenerator, "stream", stream)
    out = tmp_path / "v.mp4"
    result = run(model, out)
    assert result.exit_code == 130
    assert files(tmp_path) == ["v.json", "v.mp4"]
    assert read_video_info(out)["frames"] == FRAMES
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["result"] == {"frames_written": FRAMES, "complete": True, "interrupted": True}
    assert f"{out} holds {FRAMES} frames (complete)" in result.output


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_while_finishing_waits_until_both_files_are_in_place(tmp_path, model, monkeypatch, sig):
    original = VideoWriter.close

    def close(self, *args, **kwargs):
        signal.raise_signal(sig)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(VideoWriter, "close", close)
    out = tmp_path / "v.mp4"
    result = run(model, out)
    assert result.exit_code == 130, result.output
    assert files(tmp_path) == ["v.json", "v.mp4"]
    assert json.loads(out.with_suffix(".json").read_text())["output"] == str(out)
    assert f"{out} holds {FRAMES} frames (complete)" in result.output


def _wait_for_handlers(pid: int, timeout: float = 30.0) -> None:
    """Wait until the process catches SIGTERM, which it does from its first line on, before torch is imported."""
    status = Path(f"/proc/{pid}/status")
    if not status.exists():
        time.sleep(0.5)
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        caught = next(line for line in status.read_text().splitlines() if line.startswith("SigCgt:"))
        if int(caught.split()[1], 16) & (1 << (signal.SIGTERM - 1)):
            return
        time.sleep(0.01)
    raise AssertionError("the command never installed its signal handlers")


def test_ctrl_c_during_imports_exits_130_without_a_traceback(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "longlive_cli", "render", "--prompt", "a", "-o", str(tmp_path / "v.mp4")],
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_handlers(proc.pid)
    assert proc.poll() is None, "the command finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert not list(tmp_path.iterdir())


def test_existing_sidecar_is_not_replaced_without_overwrite(tmp_path, model):
    out = tmp_path / "v.mp4"
    out.with_suffix(".json").write_text("mine")
    result = run(model, out)
    assert result.exit_code == 1 and "--overwrite" in result.output
    assert out.with_suffix(".json").read_text() == "mine"
    assert files(tmp_path) == ["v.json"]
    assert run(model, out, "--overwrite").exit_code == 0
    assert json.loads(out.with_suffix(".json").read_text())["result"]["complete"] is True


@pytest.mark.parametrize("appears", ["v.mp4", "v.json"])
def test_an_output_that_appears_during_the_render_is_not_replaced(tmp_path, model, monkeypatch, appears):
    original = VideoWriter.write

    def write(self, frames):
        (tmp_path / appears).write_text("theirs")
        original(self, frames)

    monkeypatch.setattr(VideoWriter, "write", write)
    result = run(model, tmp_path / "v.mp4")
    assert result.exit_code == 1, result.output
    assert "appeared during the render" in result.output and "--overwrite" in result.output
    assert (tmp_path / appears).read_text() == "theirs"
    assert sorted(files(tmp_path)) == sorted([appears, "v.partial.json", "v.partial.mp4"])
    assert read_video_info(tmp_path / "v.partial.mp4")["frames"] == FRAMES
    assert "v.partial.mp4 holds 48 frames" in result.output


def _small_disk(limit: int):
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


@pytest.mark.parametrize(("limit", "playable"), [(4096, True), (300, False)])
def test_full_disk_names_the_path_and_what_is_playable(tmp_path, model, limit, playable):
    out = tmp_path / "v.mp4"
    args = ["render", "--prompt", "a red circle", "--duration", "3s", "--model", str(model), "-o", str(out), "-q"]
    proc = subprocess.run(
        [sys.executable, "-m", "longlive_cli", *args],
        preexec_fn=_small_disk(limit),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"{out}: ffmpeg" in proc.stderr and "disk full" in proc.stderr
    if playable:
        frames = read_video_info(tmp_path / "v.partial.mp4")["frames"]
        assert 0 < frames < FRAMES
        assert f"v.partial.mp4 holds {frames} frame" in proc.stderr
        assert json.loads((tmp_path / "v.partial.json").read_text())["result"]["frames_written"] == frames
    else:
        assert "no video was kept" in proc.stderr
        assert list(tmp_path.iterdir()) == []


def test_a_whole_render_is_a_plain_mp4_with_its_index_in_front(tmp_path, model):
    """Players show the length and seek at once; an interrupted one stays fragmented (tested above) and playable."""
    out = tmp_path / "v.mp4"
    result = run(model, out)
    assert result.exit_code == 0, result.output
    data = out.read_bytes()
    assert b"moof" not in data and 0 <= data.find(b"moov") < data.find(b"mdat")
    assert read_video_info(out)["frames"] == 48


def test_a_name_near_the_file_system_limit_is_finished_in_place(tmp_path, model):
    """Its partial sidecar (NAME.partial.json) is 255 bytes long; no temporary name grows with the name."""
    out = tmp_path / ("n" * 242 + ".mp4")
    result = run(model, out)
    assert result.exit_code == 0, result.output
    assert read_video_info(out)["frames"] == FRAMES
    assert json.loads(out.with_suffix(".json").read_text())["result"]["complete"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, out.with_suffix(".json").name])


def test_checkpoints_and_model_files_are_written_under_fixed_length_temporary_names(tmp_path):
    from longlive_cli.checkpoints import read_tensors, save_safetensors
    from longlive_cli.train.checkpoint import load_checkpoint, save_checkpoint

    weights, state = tmp_path / ("w" * 240 + ".safetensors"), tmp_path / ("c" * 240 + ".pt")
    save_safetensors({"x": torch.ones(2)}, weights)
    save_checkpoint(state, {"step": 3})
    assert read_tensors(weights)["x"].tolist() == [1.0, 1.0] and load_checkpoint(state)["step"] == 3
