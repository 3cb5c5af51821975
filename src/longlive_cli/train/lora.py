"""LoRA for training: low-rank adapters beside every Linear of the DiT's blocks, saved in PEFT's key layout.

The saved file loads wherever the released ``lora.pt`` does (``longlive convert`` merges it), and ``merged_state`` folds
the adapters back into plain weights, so a LoRA-tuned model ships exactly like a fully tuned one.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from longlive_cli.checkpoints import PEFT_PREFIX


class LoRALinear(nn.Module):
    """``base(x) + (alpha / rank) * B(A(x))`` with the base frozen; B starts at zero, so training starts at the base."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.base = base.requires_grad_(False)
        self.lora_A = nn.Linear(base.in_features, rank, bias=False, device=base.weight.device)
        self.lora_B = nn.Linear(rank, base.out_features, bias=False, device=base.weight.device)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)
        self.scale = alpha / rank

    def forward(self, x: Tensor) -> Tensor:
        return self.base(x) + self.scale * self.lora_B(self.lora_A(x.to(self.lora_A.weight.dtype)))


def add_lora(model: nn.Module, rank: int, alpha: float, under: str = "blocks") -> list[str]:
    """Freeze ``model`` and wrap every Linear below ``under`` with a LoRA; returns the wrapped module names."""
    model.requires_grad_(False)
    names = [name for name, m in model.named_modules() if isinstance(m, nn.Linear) and name.startswith(f"{under}.")]
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, LoRALinear(getattr(parent, child), rank, alpha))
    return names


def lora_modules(model: nn.Module) -> dict[str, LoRALinear]:
    """The adapters of a model, by the name of the Linear they wrap."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def peft_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The adapters of a model's state dict under PEFT's keys (``base_model.model.<module>.lora_A.weight``)."""
    return {
        f"{PEFT_PREFIX}{key}": value.detach().float().cpu()
        for key, value in state.items()
        if key.endswith((".lora_A.weight", ".lora_B.weight"))
    }


@torch.no_grad()
def merged_state(state: dict[str, Tensor], scale: float) -> dict[str, Tensor]:
    """A model's state dict with every adapter folded in (W + scale * B @ A) under the original keys."""
    merged = {}
    for key, value in state.items():
        if key.endswith((".lora_A.weight", ".lora_B.weight")):
            continue
        owner, base, rest = key.rpartition(".base.")
        value = value.detach().clone()
        if base and rest == "weight":
            a, b = state[f"{owner}.lora_A.weight"].float(), state[f"{owner}.lora_B.weight"].float()
            value += scale * (b @ a).to(value.dtype)
        merged[f"{owner}.{rest}" if base else key] = value
    return merged
