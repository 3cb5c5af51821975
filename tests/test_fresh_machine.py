"""A fresh machine: the browser test skips with its reason (fails under CI), the base install renders the demo."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .browser import find_chromium

ROOT = Path(__file__).resolve().parents[1]


def test_missing_browser_skips_with_the_reason_but_fails_under_ci(tmp_path):
    with pytest.raises(pytest.skip.Exception, match="no chromium found.*apt-get install chromium"):
        find_chromium({"PATH": str(tmp_path)})
    with pytest.raises(pytest.fail.Exception, match="CI must run the browser test"):
        find_chromium({"PATH": str(tmp_path), "CI": "true"})
    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert find_chromium({"PATH": str(tmp_path), "CI": "true"}) == str(fake)


def test_makefile_test_target_installs_what_the_tests_need():
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "scripts/test-deps.sh" in recipe
    assert "scripts/test-deps.sh" in (ROOT / ".ci" / "run").read_text()


WITHOUT_EXTRAS = """
import sys
sys.modules["tokenizers"] = None  # as after `pip install .`: the optional `text` extra is not there
sys.modules["ftfy"] = None
from longlive_cli.cli import main
sys.argv = ["longlive", *sys.argv[1:]]
main()
"""


def run_without_extras(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    cmd = [sys.executable, "-c", WITHOUT_EXTRAS, *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_embedded_model_renders_without_the_text_extra(tmp_path):
    done = run_without_extras("render", "--prompt", "a small red circle on a gray background", "--duration", "12f",
                              "-o", "red.mp4", "-q", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "red.mp4").stat().st_size > 0


def test_a_missing_extra_is_one_line_with_the_pip_command(tmp_path):
    from longlive_cli.models.word_tokenizer import WordTokenizer, tokenizer_from_str

    from .fakes import tokenizer_json

    assert isinstance(tokenizer_from_str(tokenizer_json()), WordTokenizer)
    bpe = '{"model": {"type": "BPE", "vocab": {}, "merges": []}}'
    done = subprocess.run(
        [sys.executable, "-c", "import sys; sys.modules['tokenizers'] = None\n"
         "from longlive_cli.models.word_tokenizer import tokenizer_from_str\n"
         f"tokenizer_from_str({bpe!r})"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert "pip install 'longlive-cli[text]'" in done.stderr.splitlines()[-1]


@pytest.mark.parametrize(
    "text",
    ["a dog on a beach", "A Small RED circle, moving left!", "a b c d e f g h i j k l m n o p", "", " ,.; é café x-y"],
)
def test_the_plain_word_tokenizer_matches_tokenizers(text):
    tokenizers = pytest.importorskip("tokenizers")
    from safetensors import safe_open

    from longlive_cli.bundle import embedded_path
    from longlive_cli.models.word_tokenizer import WordTokenizer

    from .fakes import tokenizer_json

    with safe_open(str(embedded_path()), "pt") as f:
        embedded = f.metadata()["tokenizer"]
    for source in (embedded, tokenizer_json()):
        ref, mine = tokenizers.Tokenizer.from_str(source), WordTokenizer.from_str(source)
        for tok in (ref, mine):
            tok.enable_truncation(max_length=8)
            tok.enable_padding(length=8, pad_id=0, pad_token="<pad>")
        a, b = ref.encode(text), mine.encode(text)
        assert (a.ids, a.attention_mask) == (b.ids, b.attention_mask)
