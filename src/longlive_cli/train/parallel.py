"""Sharded data parallelism for training on PyTorch's FSDP2, the same code path from one CPU process to many GPUs.

Every run joins a process group (``torchrun``'s, or a one-process gloo group without it) and shards each DiT over a
one-dimensional ``DeviceMesh`` with ``fully_shard``: one unit per block and one for the rest. FSDP reduce-scatters
and averages the gradients; nothing here reduces gradients by hand.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method
from torch.distributed.tensor import DTensor

from longlive_cli.models.dit import CausalWanDiT

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class World:
    """This process's place among the training processes, and the mesh the models are sharded over."""

    rank: int = 0
    size: int = 1
    mesh: DeviceMesh | None = None

    @property
    def main(self) -> bool:
        """The process that logs and writes the exported weights."""
        return self.rank == 0

    def split(self, batch: int) -> range:
        """The slots of a global batch this process trains: a contiguous share, the same size on every rank."""
        if batch % self.size:
            raise ValueError(f"global batch {batch} does not split evenly over {self.size} processes")
        share = batch // self.size
        return range(self.rank * share, (self.rank + 1) * share)

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
    """Join the process group ``torchrun`` describes (NCCL on GPUs, gloo on CPUs), or a group of one without it."""
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if "WORLD_SIZE" in os.environ:
            dist.init_process_group(backend)
        else:
            dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    return World(dist.get_rank(), dist.get_world_size(), mesh)


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


def policy(precision: str) -> MixedPrecisionPolicy:
    """Compute in ``precision``, reduce gradients in float32; the sharded master weights stay as they were made.

    Inputs are not cast: the DiT casts its latents to its weights' dtype itself, as under inference in bf16, and
    keeps timesteps and RoPE tables in float32.
    """
    return MixedPrecisionPolicy(param_dtype=DTYPES[precision], reduce_dtype=torch.float32, cast_forward_inputs=False)


def shard(model: CausalWanDiT, world: World, precision: str, checkpointing: bool = False) -> CausalWanDiT:
    """Shard ``model`` in place: a unit per block and one for the embeddings and head.

    ``encode_prompt`` (and each block's ``project_context`` inside it) runs outside ``forward``, so FSDP is told to
    gather the weights for it too. ``checkpointing`` recomputes each block's activations in the backward pass.
    """
    # Prompt K/V come back as views of their projections; nothing writes to them in place, which is what FSDP warns of.
    warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module \(FSDP\w+\) returned a view tensor")
    mp = policy(precision)
    for block in model.blocks:
        block.checkpointed = checkpointing
        fully_shard(block, mesh=world.mesh, mp_policy=mp)
        register_fsdp_forward_method(block, "project_context")
    fully_shard(model, mesh=world.mesh, mp_policy=mp)
    register_fsdp_forward_method(model, "encode_prompt")
    return model


def full_tensor(value: Tensor) -> Tensor:
    """A whole CPU tensor from a sharded one (a collective: every process calls it) or a plain one."""
    return (value.full_tensor() if isinstance(value, DTensor) else value).detach().cpu()


def full_state(model: nn.Module) -> dict[str, Tensor]:
    """The whole state dict of a sharded model on rank 0 (empty on the others); every process must call it."""
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def grad_norm(value: Tensor) -> float:
    """A gradient norm as a number, whether FSDP returned it as a sharded tensor or not."""
    return float(full_tensor(value))
