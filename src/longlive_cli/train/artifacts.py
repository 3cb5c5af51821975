"""What a finished stage leaves in the run folder: weights with their config, and a summary for the model card."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import torch

from longlive_cli.checkpoints import read_safetensors_metadata, read_tensors, save_safetensors

FINAL = "final.safetensors"
SUMMARY = "summary.json"


def save_weights(path: Path, parts: dict[str, dict[str, torch.Tensor]], config: dict) -> None:
    """One safetensors file of prefixed state dicts (``dit.``, ``text.``, ...) with the configs in its header."""
    state = {f"{prefix}.{k}": v.detach().float().cpu() for prefix, part in parts.items() for k, v in part.items()}
    save_safetensors(state, path, {"config": json.dumps(config)})


def load_weights(path: Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict]:
    """The state dicts by prefix and the configs of a file written by ``save_weights``."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; run the stage that makes it first (see scripts/train_tiny.sh)")
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in read_tensors(path).items():
        prefix, name = key.split(".", 1)
        parts.setdefault(prefix, {})[name] = value
    return parts, json.loads(read_safetensors_metadata(path)["config"])


def training_device() -> str:
    """What a stage trains on (the model card's wall times depend on it)."""
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} (GPU)"
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} thread(s)"


def write_summary(folder: Path, summary: dict) -> None:
    """Steps, wall time, throughput, recipe and device of a finished stage."""
    (folder / SUMMARY).write_text(json.dumps({"device": training_device(), **summary}, indent=2) + "\n")


def read_summary(folder: Path) -> dict:
    return json.loads((folder / SUMMARY).read_text())
