"""Temporary names for atomic writes (write beside the target, then rename over it)."""

from __future__ import annotations

import secrets
from pathlib import Path


def temporary_beside(path: str | Path) -> Path:
    """A fresh hidden name in ``path``'s folder, of fixed length whatever the target's own (a name near the file
    system's 255-byte limit can still be written); its ``.NAME.1a2b3c4d.tmp`` form is what a training stage clears
    when a killed write left one behind."""
    return Path(path).with_name(f".atomic.{secrets.token_hex(4)}.tmp")
