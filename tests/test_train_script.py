"""``scripts/train_tiny.sh``: the whole recipe in one command, the decoder training beside the student."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from longlive_cli.bundle import load_bundle
from tests.test_long import GROWN, write_long
from tests.test_train import RECIPES, write_recipe

ROOT = Path(__file__).resolve().parents[1]


def recipes(folder: Path) -> Path:
    """The tiny test configuration of every stage, under the file names the script reads."""
    folder.mkdir()
    write_recipe(folder, "vae", vae={**RECIPES["vae"]["vae"], "z_dim": 17})  # the space with the shape code
    write_recipe(folder, "decoder")
    for stage in ("teacher", "student"):
        write_recipe(folder, stage, **GROWN)
    write_long(folder)
    return folder


def train_tiny(tmp_path: Path, folder: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "RECIPES": str(folder), "ASSETS": str(tmp_path / "assets"), "PYTHON": sys.executable}
    script = ["bash", str(ROOT / "scripts" / "train_tiny.sh"), str(tmp_path / "run")]
    return subprocess.run(script, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def test_one_command_trains_every_stage_and_exports_a_bundle_that_loads(tmp_path: Path) -> None:
    done = train_tiny(tmp_path, recipes(tmp_path / "recipes"))
    assert done.returncode == 0, done.stderr[-3000:]
    bundle = load_bundle(str(tmp_path / "assets" / "tiny.safetensors"))
    assert bundle.fast_decoder is not None and bundle.spec.sizes == ((32, 32),)
    assert bundle.spec.dit.in_dim == bundle.spec.dit.out_dim == bundle.spec.fast_decoder.latent_channels == 17
    card = (tmp_path / "assets" / "MODEL_CARD.md").read_text()
    assert f"scripts/train_tiny.sh {tmp_path / 'run'}" in card
    assert all(f"| {stage} |" in card for stage in ("vae", "decoder", "teacher", "student", "long"))
    assert "17 latent channels, 8x space" in card
    assert "with the object redrawn as a disc" in card and "the only channel that says the shape" in card
    assert "reconstruction PSNR" in (tmp_path / "run" / "decoder.out").read_text()


def test_a_failed_decoder_stops_the_script_before_the_long_stage_with_its_output(tmp_path: Path) -> None:
    folder = recipes(tmp_path / "recipes")
    broken = yaml.safe_load((folder / "decoder.yaml").read_text()) | {"lr": -1.0}
    (folder / "decoder.yaml").write_text(yaml.safe_dump(broken))
    done = train_tiny(tmp_path, folder)
    assert done.returncode == 1
    assert "the decoder stage failed" in done.stderr and "decoder.lr: must be positive" in done.stderr
    assert (tmp_path / "run" / "student" / "final.safetensors").is_file()
    assert not (tmp_path / "run" / "long").exists() and not (tmp_path / "assets").exists()
