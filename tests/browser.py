"""Which chromium the browser test drives, or why it cannot run: skipped on a workstation, a failure under CI."""

from __future__ import annotations

import os
import shutil

import pytest

NAMES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium(environ: dict[str, str] | None = None) -> str:
    """``LONGLIVE_CHROMIUM``, else the first chromium on PATH; none skips the test, or fails it when CI is set."""
    env = os.environ if environ is None else environ
    chosen = env.get("LONGLIVE_CHROMIUM")
    if chosen:
        return chosen
    for name in NAMES:
        found = shutil.which(name, path=env.get("PATH"))
        if found:
            return found
    reason = f"no chromium found (looked for {', '.join(NAMES)} on PATH); install it: sudo apt-get install chromium"
    if env.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason}; CI must run the browser test", pytrace=False)
    pytest.skip(reason)
