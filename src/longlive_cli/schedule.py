"""Flow-matching schedule: shifted sigma table, warped few-step timesteps, x0 <-> flow, add_noise."""

from __future__ import annotations

from collections.abc import Sequence

import torch

TRAIN_TIMESTEPS = 1000


class FlowMatchSchedule:
    """The 1000-entry shifted table Wan/LongLive use; every sigma is a nearest-timestep lookup in it."""

    def __init__(self, shift: float = 5.0, num_train_timesteps: int = TRAIN_TIMESTEPS):
        self.shift = shift
        self.num_train_timesteps = num_train_timesteps
        raw = torch.linspace(1.0, 0.0, num_train_timesteps + 1)[:-1]
        self.sigmas = shift * raw / (1 + (shift - 1) * raw)
        self.timesteps = self.sigmas * num_train_timesteps

    def warped(self, steps: Sequence[int] = (1000, 750, 500, 250)) -> torch.Tensor:
        """Few-step timesteps: table entries at 1000 - s, with 0 appended (1000, 937.5, 833.33, 625 at shift 5)."""
        table = torch.cat((self.timesteps, torch.zeros(1)))
        return table[[self.num_train_timesteps - s for s in steps]]

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """Sigma of the table entry nearest to each timestep (float32, like the table)."""
        ts = self.timesteps.to(t.device)
        idx = torch.argmin((ts.double().unsqueeze(0) - t.double().reshape(-1, 1)).abs(), dim=1)
        return self.sigmas.to(t.device)[idx].reshape(t.shape)

    def x0_from_flow(self, flow: torch.Tensor, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x0 = x_t - sigma_t * v in float64, cast back; t is per frame, broadcast over [B, F, C, H, W]."""
        sigma = self.sigma(t).double().reshape(*t.shape, *([1] * (xt.dim() - t.dim())))
        return (xt.double() - sigma * flow.double()).to(flow.dtype)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t = (1 - sigma_t) x0 + sigma_t noise, with t per frame as in ``x0_from_flow``."""
        sigma = self.sigma(t).reshape(*t.shape, *([1] * (x0.dim() - t.dim())))
        return ((1 - sigma) * x0 + sigma * noise).type_as(noise)

    def flow_target(self, x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The velocity a flow-matching model is trained to predict."""
        return noise - x0

    def flow_to(self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The velocity that carries x_t to x0, ``(x_t - x0) / sigma_t``: the target when x_t is not x0 noised."""
        sigma = self.sigma(t).reshape(*t.shape, *([1] * (xt.dim() - t.dim())))
        return ((xt - x0) / sigma).type_as(xt)
