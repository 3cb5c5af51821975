"""The product core stands apart from the toy world and training: it renders any model without them."""

from __future__ import annotations

import json
import subprocess
import sys

CORE = (
    "timeline", "models.dit", "models.vae", "models.taehv", "models.t5", "models.text", "models.word_tokenizer",
    "engine", "sampler", "bundle", "video", "render", "bench", "notices",
    "live.session", "live.app", "live.server", "live.stdin", "live.record",
)  # fmt: skip
LAB = ("longlive_cli.world", "longlive_cli.train", "longlive_cli.evaluate")


def lab_modules_after_importing(modules: tuple[str, ...]) -> list[str]:
    """The world and training modules a fresh interpreter holds after importing ``modules``."""
    probe = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module('longlive_cli.' + name)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({LAB!r}))))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    return json.loads(out.stdout.splitlines()[-1])


def test_core_imports_nothing_from_world_or_training():
    assert lab_modules_after_importing(CORE) == []


def test_the_probe_sees_a_lab_import():
    assert "longlive_cli.world.grammar" in lab_modules_after_importing((*CORE, "world.tokenizer"))
