"""Resumable training state: models, optimizer, EMA, RNG states and step in one file, written atomically."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from longlive_cli.atomic import temporary_beside

CHECKPOINT = "checkpoint.pt"


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write ``state`` with torch.save so a crash leaves the previous checkpoint or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_beside(path)
    try:
        torch.save(state, tmp)
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint written by ``save_checkpoint`` (tensors and plain values only, no code)."""
    return torch.load(path, map_location="cpu", weights_only=True)


class Randomness:
    """Every random draw of a stage comes from these two generators, so a resumed run continues bit-exactly."""

    def __init__(self, seed: int):
        self.np = np.random.default_rng(seed)
        self.torch = torch.Generator().manual_seed(seed)

    def randn(self, *shape: int) -> torch.Tensor:
        """Gaussian noise drawn on the CPU (same numbers on any device)."""
        return torch.randn(shape, generator=self.torch)

    def state_dict(self) -> dict:
        return {"np": self.np.bit_generator.state, "torch": self.torch.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.np.bit_generator.state = state["np"]
        self.torch.set_state(state["torch"])
