"""The released weights from the Hugging Face Hub: ``longlive download`` and hub ids for ``--model``.

Files go into huggingface_hub's standard cache (``HF_HOME``, ``HF_HUB_CACHE``), so other tools share them; an
interrupted download resumes where it stopped; ``HF_HUB_OFFLINE=1`` uses the cache alone; ``HF_ENDPOINT`` points at a
mirror. Only the files the loader reads are fetched, and the size is told before anything is downloaded.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

WAN = "Wan-AI/Wan2.1-T2V-1.3B"
LONGLIVE = "Efficient-Large-Model/LongLive"
# What bundle.find_layout reads from each repository. LongLive's generator replaces Wan's DiT, so with LongLive the
# 5.7 GB Wan DiT is not fetched.
WAN_COMMON = ("config.json", "Wan2.1_VAE.pth", "models_t5_umt5-xxl-enc-bf16.pth", "google/umt5-xxl/tokenizer.json")
WAN_DIT = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model*.safetensors.index.json",
           "diffusion_pytorch_model-*.safetensors")  # fmt: skip
LONGLIVE_FILES = ("models/longlive_base.pt", "models/lora.pt")
MODELS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    LONGLIVE: ((WAN, WAN_COMMON), (LONGLIVE, LONGLIVE_FILES)),
    WAN: ((WAN, WAN_COMMON + WAN_DIT),),
}
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


class DownloadError(OSError):
    """A hub model that cannot be fetched or found in the cache; the message says what to do."""


def is_hub_id(model: str | Path) -> bool:
    """``owner/name`` that is not a path on this machine."""
    text = str(model)
    return bool(HUB_ID.fullmatch(text)) and not Path(text).expanduser().exists()


def _hub():
    """huggingface_hub, imported on first use (it reads HF_* variables then)."""
    import huggingface_hub
    import huggingface_hub.constants
    import huggingface_hub.errors
    import huggingface_hub.utils

    return huggingface_hub


def repos_of(model: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The repositories of a hub model and the files the loader reads from each."""
    if model not in MODELS:
        known = ", ".join(MODELS)
        raise DownloadError(f"{model}: no such file or folder, nor a hub model longlive can download ({known})")
    return MODELS[model]


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError


def pending(model: str) -> tuple[int, int]:
    """Files still to download and their total size in bytes (already cached ones not counted)."""
    utils = _hub().utils
    quiet = utils.are_progress_bars_disabled()
    utils.disable_progress_bars()  # a look-up, not a transfer
    try:
        infos = [i for repo, patterns in repos_of(model) for i in _snapshot(model, repo, patterns, dry_run=True)]
    finally:
        if not quiet:
            utils.enable_progress_bars()
    todo = [i for i in infos if i.will_download]
    return len(todo), sum(i.file_size or 0 for i in todo)


def fetch(model: str, say: Callable[[str], None] = print, dry_run: bool = False) -> list[Path]:
    """The local folders of a hub model, downloading what the cache lacks after saying how much that is."""
    hub = _hub()
    parts = repos_of(model)
    cache = hub.constants.HF_HUB_CACHE
    if hub.constants.HF_HUB_OFFLINE:
        return [Path(_snapshot(model, repo, patterns, local_files_only=True)) for repo, patterns in parts]
    files, total = pending(model)
    if files:
        say(f"{model}: {files} files, {_size(total)} to download into {cache} (interrupted: run again to resume)")
    else:
        say(f"{model}: already in {cache}")
    if dry_run:
        return []
    return [Path(_snapshot(model, repo, patterns)) for repo, patterns in parts]


def _snapshot(model: str, repo: str, patterns: tuple[str, ...], **kw):
    """huggingface_hub's snapshot_download of the loader's files, its failures turned into one line to act on."""
    hub = _hub()
    errors = hub.errors
    try:
        return hub.snapshot_download(repo, allow_patterns=list(patterns), **kw)
    except errors.LocalEntryNotFoundError:
        why = "HF_HUB_OFFLINE is set" if hub.constants.HF_HUB_OFFLINE else "the hub could not be reached"
        raise DownloadError(
            f"{model}: not in the cache at {hub.constants.HF_HUB_CACHE} and {why}; "
            f"run `longlive download {model}` with network access"
        ) from None
    except errors.GatedRepoError:
        raise DownloadError(
            f"{repo}: the repository is gated; accept its terms on the hub, then `hf auth login`"
        ) from None
    except errors.RepositoryNotFoundError:
        raise DownloadError(f"{repo}: repository not found at {hub.constants.ENDPOINT}") from None
    except (errors.HfHubHTTPError, errors.DryRunError, OSError, *_transport_errors()) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DownloadError(f"{repo}: download failed ({first}); run the command again to resume") from None


def _transport_errors() -> tuple[type[Exception], ...]:
    """The HTTP client's own errors (a dropped connection), whichever httpx huggingface_hub runs on."""
    return tuple(m.HTTPError for m in map(sys.modules.get, ("httpx2", "httpx")) if m is not None)
