"""Where each render goes: a file, or a folder for one timeline or many; clashes are found before any rendering."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

from .timeline import Timeline

# `--seed -1` draws a seed, as Wan's scripts do; it stays below 2**31 so that any tool can take it back.
RANDOM_SEED = -1


class OutputError(ValueError):
    """Outputs that cannot all be written as asked (two timelines onto one file)."""


def draw_seed(seed: int | None, timeline_seed: int) -> int:
    """The seed a render uses: the command line's, the timeline's, or a fresh random one for ``-1``."""
    if seed == RANDOM_SEED:
        return secrets.randbelow(2**31)
    return timeline_seed if seed is None else seed


def is_folder(output: str) -> bool:
    """A path ending in a separator, or an existing folder, names a folder to write into."""
    return output.endswith(("/", os.sep)) or Path(output).is_dir()


def prompt_stem(prompt: str, seed: int) -> str:
    """A file name from the prompt and the seed, so that a second seed of the same prompt is a second file."""
    slug = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:60] or "video"
    return f"{slug}-seed{seed}"


def plan_outputs(timelines: list[Timeline], seeds: list[int], output: str | None, prompt: str | None) -> list[Path]:
    """One output per timeline; a folder named by ``output`` is created, a clash is an ``OutputError``."""
    names = [f"{prompt_stem(prompt, s)}.mp4" if prompt is not None else f"{t.path.stem}.mp4"
             for t, s in zip(timelines, seeds, strict=True)]  # fmt: skip
    if output is not None and (len(timelines) > 1 or is_folder(output)):
        folder = Path(output).expanduser()
        if folder.exists() and not folder.is_dir():
            raise OutputError(f"{folder}: not a folder, and several videos (or a path ending in /) need one")
        targets = [folder / name for name in names]
    elif output is not None:
        targets = [Path(output).expanduser()]
    elif prompt is not None:
        targets = [Path(names[0])]
    else:
        targets = [t.output or Path(name) for t, name in zip(timelines, names, strict=True)]
    _refuse_clashes(timelines, targets)
    if output is not None and (len(timelines) > 1 or is_folder(output)):
        Path(output).expanduser().mkdir(parents=True, exist_ok=True)
    return targets


def _refuse_clashes(timelines: list[Timeline], targets: list[Path]) -> None:
    seen: dict[str, int] = {}
    for i, target in enumerate(targets):
        key = os.path.normcase(os.path.abspath(target))
        if key in seen:
            first, second = (timelines[j].path or "--prompt" for j in (seen[key], i))
            raise OutputError(
                f"{target}: {first} and {second} would both be written here; rename one, give each an `output:`, "
                "or render them into separate folders"
            )
        seen[key] = i
