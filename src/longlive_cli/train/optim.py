"""Optimizer with warmup and cosine decay, and an exponential moving average of the weights that get exported."""

from __future__ import annotations

import math

import torch
from torch import nn

FINAL_LR = 0.1  # share of the peak learning rate left at the last step


def adamw(
    params: list[nn.Parameter], lr: float, warmup: int, total: int
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW (no weight decay on models this small), linear warmup, then a cosine down to 10 % at ``total``."""
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.99), weight_decay=0.0)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return FINAL_LR + (1 - FINAL_LR) * 0.5 * (1 + math.cos(math.pi * progress))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


class EMA:
    """Shadow copies of a module's floating-point state, updated after each optimizer step."""

    def __init__(self, module: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        for k, v in module.state_dict().items():
            if k in self.shadow:
                self.shadow[k].lerp_(v, 1.0 - self.decay)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for k, v in state.items():
            self.shadow[k].copy_(v)

    def weights(self, module: nn.Module) -> dict[str, torch.Tensor]:
        """The module's state dict with the averaged values in place of the live ones."""
        return {k: self.shadow.get(k, v).detach().clone() for k, v in module.state_dict().items()}
