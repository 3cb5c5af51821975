"""Hostile model files and folders: a located error (exit 1) before anything is built, never a traceback."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from longlive_cli.checkpoints import read_safetensors_metadata, read_tensors, save_safetensors
from longlive_cli.cli import app

from .fakes import write_converted, write_download

runner = CliRunner()


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return write_converted(tmp_path_factory.mktemp("model") / "tiny.safetensors")


def rewrite(model: Path, out: Path, spec=None, tokenizer=None, tensors=None) -> Path:
    """The model with its header's spec or tokenizer text, or its tensors, replaced."""
    meta = read_safetensors_metadata(model)
    if spec is not None:
        meta["spec"] = spec(json.loads(meta["spec"])) if callable(spec) else spec
        meta["spec"] = meta["spec"] if isinstance(meta["spec"], str) else json.dumps(meta["spec"])
    if tokenizer is not None:
        meta["tokenizer"] = tokenizer(meta["tokenizer"]) if callable(tokenizer) else tokenizer
    state = read_tensors(model)
    if tensors is not None:
        tensors(state)
    save_safetensors(state, out, meta)
    return out


def layers(n):
    def edit(d):
        d["dit"]["num_layers"] = n
        return d

    return edit


def sizes(value):
    def edit(d):
        d["sizes"] = value
        return d

    return edit


def poison(state):
    state["dit.head.head.bias"][0] = float("nan")


# (id, rewrite arguments, fragments of the message)
BAD_MODELS = [
    ("ten-million-layers", {"spec": layers(10_000_000)}, ["[spec]: dit.num_layers: 10000000 is out of range"]),
    ("spec-not-json", {"spec": "{not json"}, ["[spec]: not valid JSON (line 1"]),
    ("spec-truncated", {"spec": lambda d: json.dumps(d)[:200]}, ["[spec]: not valid JSON"]),
    ("spec-deep", {"spec": "[" * 100_000 + "]" * 100_000}, ["[spec]"]),
    ("spec-missing-key", {"spec": lambda d: {k: v for k, v in d.items() if k != "engine"}}, ["has no 'engine'"]),
    ("spec-wrong-type", {"spec": layers("two")}, ["[spec]: dit.num_layers: expected int, got 'two'"]),
    ("spec-negative", {"spec": layers(-1)}, ["dit.num_layers: -1 is out of range"]),
    ("sizes-not-pairs", {"spec": sizes([[96, 96, 3]])}, ["[spec]: sizes: expected [width, height] pairs"]),
    ("sizes-text", {"spec": sizes([["96", "96"]])}, ["[spec]: sizes: expected [width, height] pairs"]),
    ("sizes-negative", {"spec": sizes([[96, -96]])}, ["[spec]: sizes[0][1]: -96 is out of range"]),
    ("sizes-number", {"spec": sizes(96)}, ["[spec]: not a valid model spec"]),
    ("tokenizer-garbage", {"tokenizer": "\x00garbage"}, ["[tokenizer]: not a readable tokenizer"]),
    ("tokenizer-truncated", {"tokenizer": lambda t: t[: len(t) // 2]}, ["[tokenizer]: not a readable tokenizer"]),
    ("nan-weights", {"tensors": poison}, ["NaN", "dit.head.head.bias"]),
]


@pytest.mark.parametrize(("edits", "fragments"), [b[1:] for b in BAD_MODELS], ids=[b[0] for b in BAD_MODELS])
def test_info_refuses_bad_model_files(tmp_path, model, edits, fragments):
    bad = rewrite(model, tmp_path / "bad.safetensors", **edits)
    result = runner.invoke(app, ["info", str(bad)])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert str(bad) in result.output
    for fragment in fragments:
        assert fragment in result.output, result.output


def test_nan_weights_do_not_render(tmp_path, model):
    bad = rewrite(model, tmp_path / "nan.safetensors", tensors=poison)
    out = tmp_path / "v.mp4"
    result = runner.invoke(app, ["render", "--prompt", "a red circle", "--model", str(bad), "-o", str(out), "-q"])
    assert result.exit_code == 1 and "NaN" in result.output
    assert not out.exists()


def _download(tmp_path: Path) -> Path:
    write_download(tmp_path / "dl")
    return tmp_path / "dl" / "wan_models" / "Wan2.1-T2V-1.3B"


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("config.json", "{truncated", "config.json: not valid JSON"),
        ("config.json", '{"num_layers": 10000000, "dim": 32}', "config.json: num_layers: 10000000 is out of range"),
        ("config.json", "[1, 2]", "config.json: expected a JSON object"),
        ("google/umt5-xxl/tokenizer.json", '{"model": {"type": "Word', "tokenizer.json: not a readable tokenizer"),
        ("google/umt5-xxl/tokenizer.json", "\udcff", "tokenizer.json"),
    ],
    ids=["config-truncated", "config-huge", "config-list", "tokenizer-truncated", "tokenizer-not-utf8"],
)
def test_bad_download_folders_are_refused_by_info_and_convert(tmp_path, name, content, fragment):
    wan = _download(tmp_path)
    (wan / name).write_bytes(content.encode("utf-8", "surrogateescape"))
    result = runner.invoke(app, ["info", str(tmp_path / "dl")])
    assert result.exit_code == 1, result.output
    assert fragment in result.output, result.output
    out = tmp_path / "m.safetensors"
    result = runner.invoke(app, ["convert", str(tmp_path / "dl"), "-o", str(out)])
    assert result.exit_code == 1, result.output
    assert fragment in result.output
    assert not out.exists()


def test_missing_lora_is_reported(tmp_path):
    _download(tmp_path)
    os.remove(tmp_path / "dl" / "longlive_models" / "models" / "lora.pt")
    result = runner.invoke(app, ["info", str(tmp_path / "dl")])
    assert result.exit_code == 1
    assert "lora.pt is missing" in result.output


class Evil:
    def __reduce__(self):
        return (os.system, ("echo unsafe",))


def test_refused_pickles_are_reported_as_unsafe_not_corrupt(tmp_path):
    _download(tmp_path)
    lora = tmp_path / "dl" / "longlive_models" / "models" / "lora.pt"
    torch.save({"generator_lora": {}, "payload": Evil()}, lora)
    result = runner.invoke(app, ["info", str(tmp_path / "dl")])
    assert result.exit_code == 1
    assert "refused as unsafe" in result.output and "posix.system" in result.output
    assert "corrupt" not in result.output


def test_unknown_user_in_a_model_path_is_an_error():
    result = runner.invoke(app, ["info", "~nosuchuser0x/m.safetensors"])
    assert result.exit_code == 1 and "no such user" in result.output
