"""Learned-decoder look-alike damage (blur, blocky noise, colour cast) to check the detector on imperfect frames."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SQRT3 = 3**0.5


@dataclass(frozen=True)
class Damage:
    """How hard to hit the frames; the defaults are rougher than a decently trained tiny VAE."""

    blur_px: float = 1.2  # Gaussian sigma
    noise: float = 6.0  # per-pixel noise (uniform, cheaper to draw than Gaussian), standard deviation in RGB levels
    block_noise: float = 4.0  # one offset per 8x8 block and channel, like coarse JPEG error
    gain: float = 0.08  # per-channel gain drawn from 1 +- gain for the whole video
    offset: float = 10.0  # per-channel offset drawn from +- offset for the whole video


def _blur(planes: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian over the last two axes, edges repeated."""
    radius = max(1, round(3 * sigma))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2).astype(np.float32)
    taps /= taps.sum()
    h, w = planes.shape[-2:]
    padded = np.pad(planes, ((0, 0), (0, 0), (radius, radius), (0, 0)), mode="edge")
    rows = sum(t * padded[..., k : k + h, :] for k, t in enumerate(taps))
    padded = np.pad(rows, ((0, 0), (0, 0), (0, 0), (radius, radius)), mode="edge")
    return sum(t * padded[..., k : k + w] for k, t in enumerate(taps))


def degrade(frames: np.ndarray, rng: np.random.Generator, damage: Damage = Damage(), chunk: int = 16) -> np.ndarray:
    """uint8 [N, H, W, 3] -> the same frames blurred, noised and colour-cast (one cast per video), as uint8."""
    n, h, w, c = frames.shape
    gain = rng.uniform(1 - damage.gain, 1 + damage.gain, (1, c, 1, 1)).astype(np.float32)
    offset = rng.uniform(-damage.offset, damage.offset, (1, c, 1, 1)).astype(np.float32)
    out = np.empty_like(frames)
    for start in range(0, n, chunk):  # small batches stay in cache: several times faster than one big pass
        planes = np.ascontiguousarray(frames[start : start + chunk].transpose(0, 3, 1, 2), dtype=np.float32)
        if damage.blur_px > 0:
            planes = _blur(planes, damage.blur_px)
        planes = planes * gain + offset
        blocks = rng.standard_normal((len(planes), c, -(-h // 8), -(-w // 8)), dtype=np.float32)
        planes += damage.block_noise * blocks.repeat(8, 2).repeat(8, 3)[..., :h, :w]
        planes += (2 * SQRT3 * damage.noise) * (rng.random(planes.shape, dtype=np.float32) - 0.5)
        out[start : start + chunk] = np.clip(planes + 0.5, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    return out
