"""3-axis rotary position embedding (frame, row, column) as the Wan DiT uses it.

Each head's dimension is split into complex pairs for time, height and width (22/21/21 pairs for a head of
128). Pairs are interleaved, ``(x[2j], x[2j+1])``, and each axis has its own frequency ladder. Tables are
built once in float64 for positions ``0..max_positions-1``; rotation runs in float32.
"""

from __future__ import annotations

import torch

MAX_POSITIONS = 1024


def axis_pairs(head_dim: int) -> tuple[int, int, int]:
    """Complex pairs per axis (time, height, width), as Wan splits a head."""
    half = head_dim // 2
    return half - 2 * (half // 3), half // 3, half // 3


def _angles(positions: int, dim: int, theta: float) -> torch.Tensor:
    freqs = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float64, device="cpu")[: dim // 2] / dim)
    return torch.outer(torch.arange(positions, dtype=torch.float64, device="cpu"), freqs)


class RopeTables:
    """Precomputed angle tables per axis; ``for_grid`` assembles a chunk's rotation."""

    def __init__(self, head_dim: int, max_positions: int = MAX_POSITIONS, theta: float = 10000.0):
        if head_dim % 2:
            raise ValueError(f"head_dim must be even for RoPE, got {head_dim}")
        self.head_dim = head_dim
        self.max_positions = max_positions
        pt, ph, pw = axis_pairs(head_dim)
        self.angles = [_angles(max_positions, 2 * p, theta) for p in (pt, ph, pw)]
        self._cache: dict[tuple, torch.Tensor] = {}

    def for_grid(self, start_frame: int, frames: int, height: int, width: int, device: torch.device) -> torch.Tensor:
        """(cos, sin) pairs, float32 [frames*height*width, head_dim/2, 2], for frames starting at ``start_frame``."""
        end = start_frame + frames
        if start_frame < 0 or end > self.max_positions or height > self.max_positions or width > self.max_positions:
            raise ValueError(
                f"latent frames {start_frame}..{end - 1} exceed the RoPE table of {self.max_positions} positions "
                f"(about {(self.max_positions - 1) * 4 / 16:.0f} s at 16 fps); start a new video or use a "
                "'clear' switch to restart positions"
            )
        key = (start_frame, frames, height, width, device)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        at, ah, aw = self.angles
        grid = torch.cat(
            [
                at[start_frame:end].view(frames, 1, 1, -1).expand(frames, height, width, -1),
                ah[:height].view(1, height, 1, -1).expand(frames, height, width, -1),
                aw[:width].view(1, 1, width, -1).expand(frames, height, width, -1),
            ],
            dim=-1,
        ).reshape(frames * height * width, -1)
        out = torch.stack((grid.cos(), grid.sin()), dim=-1).to(device=device, dtype=torch.float32)
        if len(self._cache) > 64:
            self._cache.clear()
        self._cache[key] = out
        return out


def apply_rope(x: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs of ``x`` [B, L, H, D] by per-token (cos, sin) [L, D/2, 2] in float32.

    Eager, as one complex multiply (three kernels, not nine); compiled, as the same products in real numbers,
    which inductor fuses (it generates no code for complex numbers). Both give the same bits.
    """
    pairs = x.float().reshape(*x.shape[:-1], -1, 2)
    if torch.compiler.is_compiling():
        x0, x1 = pairs.unbind(-1)
        c, s = rotation[:, None, :, 0], rotation[:, None, :, 1]
        return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1).flatten(-2).to(x.dtype)
    rotated = torch.view_as_complex(pairs) * torch.view_as_complex(rotation)[:, None, :]
    return torch.view_as_real(rotated).flatten(-2).to(x.dtype)
