"""Data parallelism for training under ``torchrun``: one process per device, gradients averaged across them.

Gradients are all-reduced by hand after each backward (what DDP does) rather than through DDP's wrapper, because a
streaming rollout calls the generator many times per optimizer step, which DDP's one-forward-per-backward
bookkeeping does not allow. Without ``torchrun`` (no WORLD_SIZE), everything here is a no-op on one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        """The process that logs and writes checkpoints."""
        return self.rank == 0

    def split(self, batch: int) -> range:
        """The slots of a global batch this process trains: a contiguous share, the same size on every rank."""
        if batch % self.size:
            raise ValueError(f"global batch {batch} does not split evenly over {self.size} processes")
        share = batch // self.size
        return range(self.rank * share, (self.rank + 1) * share)

    def average_gradients(self, params: list[nn.Parameter]) -> None:
        """Replace every gradient with its mean over the processes, in one flat all-reduce."""
        if self.size == 1:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.flatten() for g in grads])
        dist.all_reduce(flat)
        flat /= self.size
        offset = 0
        for p, g in zip(params, grads, strict=True):
            p.grad = flat[offset : offset + g.numel()].view_as(p).clone()
            offset += g.numel()

    def average(self, value: float) -> float:
        """A scalar's mean over the processes (for logging losses of the global batch)."""
        if self.size == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t.item() / self.size)

    def gather(self, obj: object) -> list[object]:
        """Every process's ``obj``, in rank order, on every process."""
        if self.size == 1:
            return [obj]
        out: list[object] = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()


def init_world(device: torch.device) -> World:
    """Join the process group ``torchrun`` describes (NCCL on GPUs, gloo on CPUs), or run alone without it."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return World(dist.get_rank(), dist.get_world_size())


def local_device(device: torch.device) -> torch.device:
    """On GPUs, each process takes the device of its local rank."""
    if device.type == "cuda":
        index = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    return device


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
