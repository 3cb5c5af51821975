"""Optimizer with warmup and cosine decay, and an exponential moving average of the weights that get exported."""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

import torch
from torch import nn

FINAL_LR = 0.1  # share of the peak learning rate left at the last step


def adamw(
    params: list[nn.Parameter],
    lr: float,
    warmup: int,
    total: int,
    restarts: Sequence[int] = (),
    restart_lr: float = 0.5,
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW (no weight decay on models this small), linear warmup, then a cosine down to 10 % at ``total``.

    Each of ``restarts`` ends the cosine before it and starts another at ``restart_lr`` of the peak, ending at the
    next restart or at ``total``: a finished run lengthened from its checkpoint is still one recipe from scratch.
    """
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.99), weight_decay=0.0)
    ends = [*restarts, total]

    def cosine(step: int, start: int, end: int, peak: float) -> float:
        progress = min(1.0, (step - start) / max(1, end - start))
        return FINAL_LR + (peak - FINAL_LR) * 0.5 * (1 + math.cos(math.pi * progress))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        cycle = bisect.bisect_right(restarts, step)  # restarts passed so far
        if cycle == 0:
            return cosine(step, warmup, ends[0], 1.0)
        return cosine(step, restarts[cycle - 1], ends[cycle], restart_lr)

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
