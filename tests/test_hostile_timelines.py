"""Hostile timelines: each ends in exit 1 with one located line per problem, in bounded time, never a traceback."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from longlive_cli import limits
from longlive_cli.cli import app
from longlive_cli.timeline import TimelineError, TimelineErrors, load_timeline

runner = CliRunner()
GOOD = "duration: 2s\nprompts:\n  - at: 0\n    text: a red circle\n"


def bomb(levels: int = 9) -> str:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    return "\n".join(lines) + f"\nduration: 2s\nprompts: *a{levels - 1}\n"


# (id, file text, fragments of the one error line)
HOSTILE = [
    ("alias-bomb", bomb(), ["show.yaml:5:", "alias bomb"]),
    ("self-alias", "a: &a [*a]\n" + GOOD, ["show.yaml:1:", "refers to itself"]),
    ("deep-lists", "x: " + "[" * 500 + "]" * 500 + "\n" + GOOD, ["show.yaml:1:", "levels deep"]),
    ("deep-maps", "x: " + "{a: " * 500 + "1" + "}" * 500 + "\n" + GOOD, ["show.yaml:1:", "levels deep"]),
    ("seed-digits", GOOD + "seed: " + "9" * 5000 + "\n", ["show.yaml:5:", "too many digits"]),
    ("fps-digits", GOOD + "fps: " + "9" * 5000 + "\n", ["show.yaml:5:", "too many digits"]),
    ("version-digits", "version: " + "1" * 5000 + "\n" + GOOD, ["show.yaml:1:", "too many digits"]),
    ("size-digits", GOOD + "size: " + "9" * 5000 + "x16\n", ["show.yaml:5: size:", "expected WxH"]),
    ("at-digits", GOOD + "  - at: " + "9" * 5000 + "s\n    text: b\n", ["show.yaml:5: prompts[1].at:", "cannot read"]),
    ("duration-frames", GOOD.replace("2s", "9" * 5000 + "f"), ["show.yaml:1: duration:", "cannot read"]),
    ("surrogate", GOOD.replace("a red circle", '"a \\ud800 circle"'), ["show.yaml:4:", "lone surrogate"]),
    ("no-such-user", GOOD + "model: ~nosuchuser0x/m.safetensors\n", ["show.yaml:5: model:", "no such user"]),
    ("nul-output", GOOD + 'output: "a\\0b.mp4"\n', ["show.yaml:5: output:", "NUL"]),
    ("huge-window", GOOD + "attention: {window: 1000000000}\n", ["show.yaml:5: attention.window:", "1024 positions"]),
    ("huge-size", GOOD + "size: 16000x16000\n", ["show.yaml:5: size:", "at most 4096"]),
    ("markup-key", GOOD + "'[/x]': 1\n", ["show.yaml:5: [/x]: unknown key '[/x]'"]),
]


@pytest.mark.parametrize(("text", "fragments"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_check_refuses_hostile_timelines_with_a_located_line(tmp_path, text, fragments):
    (tmp_path / "show.yaml").write_text(text, encoding="utf-8")
    result = runner.invoke(app, ["check", str(tmp_path / "show.yaml")])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    assert result.output.startswith("error: "), result.output
    for fragment in fragments:
        assert fragment in result.output, result.output


def test_markup_and_escapes_in_prompt_text_are_shown_escaped(tmp_path):
    text = GOOD.replace("a red circle", '"a [/] circle \\e]0;title\\a [bold]x \\u202e"')
    (tmp_path / "show.yaml").write_text(text)
    result = runner.invoke(app, ["check", str(tmp_path / "show.yaml")], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "a [/] circle \\x1b]0;title\\x07 [bold]x \\u202e" in result.output
    assert "\x1b" not in result.output and "\u202e" not in result.output


def test_markup_in_a_folder_name_is_printed_as_written(tmp_path):
    folder = tmp_path / "[bold]x[red]"
    folder.mkdir()
    (folder / "show.yaml").write_text(GOOD + "fps: 0\n")
    result = runner.invoke(app, ["check", str(folder / "show.yaml")])
    assert result.exit_code == 1
    assert f"{folder / 'show.yaml'}:5: fps:" in result.output


def test_a_fifo_is_refused_at_once(tmp_path):
    fifo = tmp_path / "show.yaml"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []
    reader = threading.Thread(target=lambda: _catch(outcome, fifo), daemon=True)
    reader.start()
    reader.join(20)
    if reader.is_alive():  # unblock the reader so the test process can end
        with open(fifo, "w"):
            pass
        pytest.fail("reading a FIFO blocked")
    assert isinstance(outcome[0], TimelineError) and "not a regular file" in str(outcome[0])


def _catch(outcome: list[BaseException], path: Path) -> None:
    try:
        load_timeline(path)
    except BaseException as e:  # noqa: BLE001 - the test inspects whatever was raised
        outcome.append(e)


def test_every_problem_is_reported_in_one_pass(tmp_path):
    body = 'duration: 2s\noutput: "a\\0b"\nfps: 0\npromts: 1\nprompts:\n  - at: 1\n    text: a\n  - at: 0.5\n'
    (tmp_path / "show.yaml").write_text(body)
    with pytest.raises(TimelineErrors) as info:
        load_timeline(tmp_path / "show.yaml")
    found = [(e.line, e.key) for e in info.value.errors]
    assert found == [(4, "promts"), (3, "fps"), (2, "output"), (6, "prompts[0].at"), (8, "prompts[1].text")]
    result = runner.invoke(app, ["check", str(tmp_path / "show.yaml")])
    assert result.exit_code == 1
    assert result.output.count("error: ") == 5
    assert all(line.startswith(f"error: {tmp_path / 'show.yaml'}:") for line in result.output.splitlines())


def refused_by_check_and_render(tmp_path, extra: str) -> list[str]:
    """The output of ``check`` and of ``render`` on a timeline with ``extra`` keys: each exits 1, renders nothing."""
    (tmp_path / "show.yaml").write_text(GOOD + extra)
    outputs = []
    for args in (["check"], ["render", "-q", "-o", str(tmp_path / "x.mp4")]):
        result = runner.invoke(app, [*args, str(tmp_path / "show.yaml")])
        assert result.exit_code == 1, result.output
        outputs.append(result.output)
    assert not list(tmp_path.glob("x*"))
    return outputs


def test_check_refuses_a_window_the_memory_cannot_hold_as_render_does(tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "device_memory", lambda device: 2**20)
    for output in refused_by_check_and_render(tmp_path, "attention: {window: 900}\n"):
        assert "show.yaml:5: attention.window: window 900 at" in output
        assert "GiB beside the weights" in output


def test_the_embedded_model_refuses_a_size_it_would_lose_its_object_at(tmp_path):
    for output in refused_by_check_and_render(tmp_path, "size: 160x96\n"):
        assert "show.yaml:5: size: size 160x96: tiny renders only 96x96" in output
    args = ["render", "--prompt", "a red ball", "--size", "128x128", "-o", str(tmp_path / "y.mp4")]
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "--size: size 128x128: tiny renders only 96x96" in result.output
    assert not (tmp_path / "y.mp4").exists()


def test_a_bad_size_and_a_bad_window_are_reported_together(tmp_path):
    for output in refused_by_check_and_render(tmp_path, "size: 160x96\nattention: {window: 4, sink: 3}\n"):
        lines = output.splitlines()
        assert [line.split(": ")[2] for line in lines] == ["size", "attention.window"], output
        assert "show.yaml:5: size: size 160x96" in lines[0] and "show.yaml:6: attention.window: window 4" in lines[1]
    result = runner.invoke(app, ["render", "-q", "--size", "128x128", str(tmp_path / "show.yaml")])
    assert result.exit_code == 1 and result.output.count("error: ") == 2
    assert "--size: size 128x128" in result.output and "show.yaml:6: attention.window" in result.output


def test_render_refuses_a_nul_in_the_output_path(tmp_path):
    (tmp_path / "show.yaml").write_text(GOOD + 'output: "x\\0.mp4"\n')
    result = runner.invoke(app, ["render", "-q", str(tmp_path / "show.yaml")])
    assert result.exit_code == 1 and "NUL" in result.output and "Traceback" not in result.output


def test_unknown_device_is_a_usage_error():
    result = runner.invoke(app, ["render", "--prompt", "a", "--device", "tpu", "-q"])
    assert result.exit_code == 2
    assert "--device" in result.output


def test_a_size_option_of_thousands_of_digits_is_a_usage_error():
    result = runner.invoke(app, ["render", "--prompt", "a", "--size", "9" * 5000 + "x16", "-q"])
    assert result.exit_code == 2 and "--size" in result.output
    assert "9" * 50 not in result.output
