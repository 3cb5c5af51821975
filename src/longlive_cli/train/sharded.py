"""Checkpoints of sharded training through ``torch.distributed.checkpoint``: every process writes its own shards.

A checkpoint is a folder ``checkpoints/step-N`` holding DCP's files and a ``meta.json``. It is written as a hidden
temporary folder and renamed into place once every process has finished and the metadata is on disk, so a crash
(or a killed process) leaves the previous checkpoint or the new one, never half of one. DCP reshards on load, so a
checkpoint written by N processes resumes on M.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
from pathlib import Path
from typing import Protocol

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import DefaultLoadPlanner, FileSystemReader
from torch.distributed.checkpoint._traverse import set_element
from torch.distributed.checkpoint.metadata import TensorStorageMetadata
from torch.distributed.checkpoint.planner import ReadItem

from longlive_cli.train.parallel import World

FOLDER = "checkpoints"
META = "meta.json"
STEP = re.compile(r"step-(\d+)")


class Checkpointable(Protocol):
    """A training state DCP can write and read in place."""

    def checkpoint_state(self) -> dict: ...

    def restore(self, path: Path) -> None: ...


class SafeLoadPlanner(DefaultLoadPlanner):
    """DCP's planner, reading the non-tensor entries (optimizer settings, RNG states) without running pickled code."""

    def load_bytes(self, read_item: ReadItem, value: io.BytesIO) -> None:
        loaded = torch.load(value, weights_only=True)
        if self.flatten_state_dict:
            set_element(self.original_state_dict, self.mappings[read_item.dest_index.fqn], loaded)
        else:
            self.state_dict[read_item.dest_index.fqn] = loaded


def load(state: dict, path: Path) -> None:
    """Fill ``state`` (sharded tensors included, each process its own shards) from the checkpoint at ``path``."""
    dcp.load(state, checkpoint_id=path, planner=SafeLoadPlanner())


def shapes(path: Path) -> dict[str, tuple[torch.Size, torch.dtype]]:
    """The global shape and dtype of every tensor of a checkpoint, by its flattened name (``gen.blocks.0.ffn...``)."""
    stored = FileSystemReader(path).read_metadata().state_dict_metadata
    return {
        name: (md.size, md.properties.dtype) for name, md in stored.items() if isinstance(md, TensorStorageMetadata)
    }


class ShardedCheckpoints:
    """A stage's checkpoints in ``<stage>/checkpoints``; only the newest complete one is kept."""

    def __init__(self, folder: Path, world: World):
        self.root = Path(folder) / FOLDER
        self.world = world

    def find(self) -> Path | None:
        """The newest complete checkpoint (one with its metadata), or None."""
        if not self.root.is_dir():
            return None
        done = [p for p in self.root.iterdir() if STEP.fullmatch(p.name) and (p / META).is_file()]
        return max(done, key=lambda p: int(STEP.fullmatch(p.name).group(1)), default=None)

    def meta(self, path: Path) -> dict:
        return json.loads((path / META).read_text())

    def restore(self, path: Path, state: Checkpointable) -> None:
        state.restore(path)

    def save(self, step: int, meta: dict, state: Checkpointable) -> Path:
        """Write ``state`` as the checkpoint of ``step`` (every process calls this) and drop the older ones."""
        final = self.root / f"step-{step:08d}"
        tmp = self.root / f".step-{step:08d}.tmp"
        if self.world.main:
            self.root.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
        self.world.barrier()
        dcp.save(state.checkpoint_state(), checkpoint_id=tmp)  # returns once every process's shards are on disk
        if self.world.main:
            with (tmp / META).open("w") as f:
                json.dump({"step": step, **meta}, f)
                f.flush()
                os.fsync(f.fileno())
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            _fsync_dir(self.root)
            for old in self.root.iterdir():
                if old != final:
                    shutil.rmtree(old, ignore_errors=True)
        self.world.barrier()
        return final


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
