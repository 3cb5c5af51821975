"""Where renders go and what they say: folders for -o, clashes found first, seeds, warnings everywhere."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from longlive_cli.cli import app

from .fakes import write_converted

runner = CliRunner()


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return write_converted(tmp_path_factory.mktemp("model") / "tiny.safetensors")


def show(folder: Path, model: Path, name: str = "show.yaml", extra: str = "", text: str = "a red circle") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"version: 1\nmodel: {model}\nduration: 1s\n{extra}prompts:\n  - at: 0\n    text: {text}\n")
    return path


def test_output_ending_in_a_slash_or_an_existing_folder_is_a_folder(tmp_path, model, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first, second = show(tmp_path / "shows", model, "one.yaml"), show(tmp_path / "shows", model, "two.yaml")
    for path in (first, second):  # a shell loop: `for f in shows/*.yaml; do longlive render "$f" -o videos/; done`
        result = runner.invoke(app, ["render", str(path), "-o", "videos/", "-q"])
        assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "videos").glob("*.mp4")) == ["one.mp4", "two.mp4"]
    (tmp_path / "clips").mkdir()
    assert runner.invoke(app, ["render", str(first), "-o", "clips", "-q"]).exit_code == 0
    assert (tmp_path / "clips" / "one.mp4").is_file()


def test_same_named_timelines_clash_before_anything_renders(tmp_path, model):
    a, b = show(tmp_path / "a", model), show(tmp_path / "b", model)
    result = runner.invoke(app, ["render", str(a), str(b), "-o", str(tmp_path / "videos"), "-q"])
    assert result.exit_code == 1
    assert "would both be written" in result.output and str(a) in result.output and str(b) in result.output
    assert not list(tmp_path.rglob("*.mp4"))


def test_duration_with_a_timeline_is_refused(tmp_path, model):
    result = runner.invoke(app, ["render", str(show(tmp_path, model)), "--duration", "5s"])
    assert result.exit_code == 2 and "--duration" in result.output


def test_prompt_outputs_are_named_with_the_seed_and_the_wrote_line_says_it(tmp_path, model, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = ["render", "--prompt", "a red circle", "--duration", "1s", "--model", str(model), "--progress", "none"]
    for seed in (1, 2):
        result = runner.invoke(app, [*base, "--seed", str(seed)])
        assert result.exit_code == 0, result.output
        assert f"wrote a-red-circle-seed{seed}.mp4 (seed {seed}," in result.output
    drawn = runner.invoke(app, [*base, "--seed", "-1", "-o", "random/"])
    assert drawn.exit_code == 0, drawn.output
    seed = int(re.search(r"\(seed (\d+),", drawn.output)[1])
    assert (tmp_path / "random" / f"a-red-circle-seed{seed}.mp4").is_file()
    side = json.loads((tmp_path / "random" / f"a-red-circle-seed{seed}.json").read_text())
    assert side["settings"]["seed"] == seed
    assert runner.invoke(app, [*base, "--seed", "-2"]).exit_code == 2


def test_every_warning_reaches_stderr_the_sidecar_and_check(tmp_path, model):
    extra = "fps: 8\nsize: 64x64\nattention: {window: 9, sink: 3}\n"
    path = show(tmp_path, model, extra=extra, text="a dog on a beach")
    expected = ["unknown words: 'dog', 'beach'", "size 64x64", "fps 8", "window 9"]
    quiet = runner.invoke(app, ["render", str(path), "-o", str(tmp_path / "q.mp4"), "-q", "--quantize", "int8"])
    assert quiet.exit_code == 0, quiet.output
    assert "warning" not in quiet.output
    side = json.loads((tmp_path / "q.json").read_text())
    for text in expected:
        assert any(text in w for w in side["warnings"]), (text, side["warnings"])
    assert side["settings"]["quantize"] == "int8"
    shown = runner.invoke(app, ["render", str(path), "-o", str(tmp_path / "n.mp4"), "--progress", "none"])
    checked = runner.invoke(app, ["check", str(path)])
    for result in (shown, checked):
        assert result.exit_code == 0, result.output
        for text in expected:
            assert any(line.startswith("warning:") and text in line for line in result.stderr.splitlines()), text


@pytest.mark.parametrize("command", ["render", "live"])
def test_a_seed_beyond_the_noise_generator_is_a_usage_error(tmp_path, model, command):
    target = tmp_path / "v.mp4"
    args = [command, "--prompt", "a red circle", "-o"] if command == "render" else [command, "a red circle", "--record"]
    result = runner.invoke(app, [*args, str(target), "--model", str(model), "--seed", str(2**64)])
    assert result.exit_code == 2, result.output
    assert "--seed" in result.output and "Traceback" not in result.output
    assert not any(tmp_path.iterdir())
