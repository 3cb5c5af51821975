"""The tiny model's latent space, defined from pixels by block statistics rather than learned.

A latent frame covers 4 video frames (the first latent: frame 0 alone, repeated) and 8x8 pixels, in Wan's layout
of 16 channels. Channels 0-11 hold the mean colour of each 4x4 quarter of the block in the group's last frame,
channels 12-14 the block's mean brightness in the group's three earlier frames (the motion in between), channel
15 its mean colourfulness (max minus min of RGB) in the last frame, which separates the object from the grey-scale
backgrounds. ShapesWorld objects are flat shapes, so these coverage averages pin edges to a pixel or two, and the
space is smooth and meaningful from the first step: the narrow Wan VAE learned to reconstruct from scratch only
slowly on this CPU, whereas encoding into and decoding from a fixed space are both plain regressions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

TIME_STRIDE = 4
SPACE_STRIDE = 8
CHANNELS = 16


def world_latents(video: Tensor) -> Tensor:
    """Pixels [B, 3, 1 + 4k, H, W] in [-1, 1] -> raw latents [B, 16, 1 + k, H/8, W/8]."""
    b, _, frames, h, w = video.shape
    if (frames - 1) % TIME_STRIDE or h % SPACE_STRIDE or w % SPACE_STRIDE:
        raise ValueError(f"need 1 + 4k frames and sides divisible by 8, got {tuple(video.shape)}")
    first = video[:, :, :1].expand(-1, -1, TIME_STRIDE - 1, -1, -1)
    groups = torch.cat([first, video], 2).unflatten(2, (-1, TIME_STRIDE))  # [B, 3, T, 4, H, W]
    t = groups.shape[2]
    last = groups[:, :, :, -1].transpose(1, 2).flatten(0, 1)  # [B*T, 3, H, W]
    quarters = F.pixel_unshuffle(F.avg_pool2d(last, SPACE_STRIDE // 2), 2)  # [B*T, 12, h, w], colour-major
    earlier = groups[:, :, :, :-1].mean(1).flatten(0, 1)  # brightness [B*T, 3, H, W]
    motion = F.avg_pool2d(earlier, SPACE_STRIDE)
    colourful = F.avg_pool2d(last.amax(1, keepdim=True) - last.amin(1, keepdim=True), SPACE_STRIDE)
    latents = torch.cat([quarters, motion, colourful], 1)
    return latents.unflatten(0, (b, t)).transpose(1, 2)


def normalize(raw: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """Raw latents [B, 16, T, h, w] -> the unit-scale latents the DiT works on, with the VAE config's statistics."""
    shape = (1, -1, 1, 1, 1)
    return (raw - torch.tensor(mean, device=raw.device).view(shape)) / torch.tensor(std, device=raw.device).view(shape)


def image_latent(latents: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """The latent a lone frame gets (Wan's first-latent layout) from normalised latents [..., 16, h, w] of the
    groups that frame ends: its quarters and colourfulness as they are, its brightness (the mean of the quarters)
    in place of the three earlier frames'. A window of a video starts with such a latent, as a clip does."""
    shape = (-1, 1, 1)
    m, s = torch.tensor(mean, device=latents.device).view(shape), torch.tensor(std, device=latents.device).view(shape)
    raw = latents * s + m
    brightness = raw[..., :12, :, :].mean(-3, keepdim=True)
    raw = torch.cat(
        [raw[..., :12, :, :], brightness.expand(*raw.shape[:-3], 3, *raw.shape[-2:]), raw[..., 15:, :, :]], -3
    )
    return (raw - m) / s


COLOURFUL = 15  # channel index of the colourfulness statistic
OBJECT_THRESHOLD = 0.1  # raw colourfulness above which a latent cell holds part of the object


def object_weight(latents: Tensor, mean: tuple[float, ...], std: tuple[float, ...], weight: float) -> Tensor:
    """Loss weights [B, F, h, w] of normalised latents [B, F, 16, h, w]: ``weight`` around the object, else 1.

    Every ShapesWorld object is saturated and every background grey, so colourfulness finds the object's cells; a
    one-cell margin takes in its edges.
    """
    raw = latents[:, :, COLOURFUL] * std[COLOURFUL] + mean[COLOURFUL]
    cells = (raw > OBJECT_THRESHOLD).float().flatten(0, 1)[:, None]
    near = F.max_pool2d(cells, 3, stride=1, padding=1)[:, 0].unflatten(0, latents.shape[:2])
    return 1.0 + (weight - 1.0) * near
