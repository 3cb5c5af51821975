"""Shell conventions: -h and --version, placeholders named in help, train's -o, a progress line that never wraps."""

from __future__ import annotations

import io
import os
import re

import pytest
from rich.console import Console
from typer.testing import CliRunner

from longlive_cli import __version__
from longlive_cli.__main__ import main as longlive_main
from longlive_cli.cli import app
from longlive_cli.progress import RichProgress

runner = CliRunner()
COMMANDS = ["render", "check", "eval", "train", "bench", "live", "info", "convert", "download"]


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_names_placeholders_not_python_types(command):
    args = [command, "-h"] if command else ["-h"]
    result = runner.invoke(app, args, env={"COLUMNS": "160"}, terminal_width=160)
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    types = re.findall(r"<(?:str|int|float|bool|path|Path|list\[[^\]]*\])>", result.output)
    assert not types, f"{command} -h shows Python types {types}"
    assert "COMMAND [ARGS]" not in result.output or not command


def test_render_help_names_its_placeholders():
    output = runner.invoke(app, ["render", "--help"], env={"COLUMNS": "160"}, terminal_width=160).output
    assert re.search(r"--seed\s+SEED", output) and re.search(r"--model\s+MODEL", output)


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"longlive-cli {__version__}"


def test_train_takes_output_like_every_command_and_out_still(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("stage: vae\nsteps: nope\n")
    for flag in ("-o", "--output", "--out"):
        result = runner.invoke(app, ["train", "--stage", "vae", "--config", str(recipe), flag, str(tmp_path)])
        assert result.exit_code == 1, result.output
        assert "No such option" not in result.output


@pytest.mark.parametrize("width", [80, 100, 120, 200])
def test_the_progress_line_fits_the_terminal(width):
    console = Console(file=io.StringIO(), width=width, force_terminal=True, color_system=None)
    progress = RichProgress(console, label="a-rather-long-name-for-an-output-file.mp4")
    progress({"event": "start", "frames": 3840})
    text = "a small red circle moving left and right on a gray background, then faster"
    chunk = {"frames_done": 1234, "video_s": 77.1, "text": text, "fps": 123.4, "realtime": 7.71}
    progress({"event": "chunk", **chunk})
    drawn = io.StringIO()
    Console(file=drawn, width=width, color_system=None).print(progress.progress.get_renderable())
    progress.progress.stop()
    lines = drawn.getvalue().splitlines()
    assert len(lines) == 1 and len(lines[0]) <= width, lines
    assert "1234/3840" in lines[0] and "123.4 fps" in lines[0]


@pytest.mark.parametrize(("given", "kept"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_the_command_lets_idle_openmp_threads_sleep_unless_told_otherwise(monkeypatch, given, kept):
    """Spinning OpenMP threads made renders on a busy 2-core CPU several times slower than one thread."""
    if given is None:
        monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    else:
        monkeypatch.setenv("OMP_WAIT_POLICY", given)
    monkeypatch.setattr("sys.argv", ["longlive", "--version"])
    with pytest.raises(SystemExit) as done:
        longlive_main()
    assert done.value.code == 0
    assert os.environ["OMP_WAIT_POLICY"] == kept
