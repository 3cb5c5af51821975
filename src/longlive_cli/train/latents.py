"""The tiny model's latent space, defined from pixels by block statistics rather than learned.

A latent frame covers 4 video frames (the first latent: frame 0 alone, repeated) and 8x8 pixels, in Wan's layout
of 16 channels. Channels 0-11 hold the mean colour of each 4x4 quarter of the block in the group's last frame,
channels 12-14 the block's mean brightness in the group's three earlier frames (the motion in between), channel
15 its mean colourfulness (max minus min of RGB) in the last frame, which separates the object from the grey-scale
backgrounds. ShapesWorld objects are flat shapes, so these coverage averages pin edges to a pixel or two, and the
space is smooth and meaningful from the first step: the narrow Wan VAE learned to reconstruct from scratch only
slowly on this CPU, whereas encoding into and decoding from a fixed space are both plain regressions.

A 17-channel space says the shape only by a code. Its channels 0-15 are read from the frames with the object
redrawn as a disc of its own area, colour and centroid (so they hold colour, size, place and motion, and no shape),
and channel 16 holds the object's shape code, read from how much of its bounding box the object fills (an apex-up
triangle a half, a circle pi/4, a square all of it): -1 for a triangle, 0 for a circle, +1 for a square, on every
cell that disc touches. A 4x4 quarter's colour tells a small square's corner from a circle's only by a few percent,
and a generator draws those percents unreliably; a code level it draws at once, and the decoder, which sees no
other trace of the shape, draws the shape the code names. The level is the same on every cell the code is on (not
scaled by how much of the cell the disc covers), so a decoder reads it from any one cell, edges included, and the
circle sits at zero between the other two, where the decoder's input clamp is linear.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from longlive_cli.world.detector import BORDER_PX

TIME_STRIDE = 4
SPACE_STRIDE = 8
CHANNELS = 16
SHAPED_CHANNELS = 17  # CHANNELS and the shape code
SHAPE_CODE = 16  # channel index of the shape code
FILL = {"circle": math.pi / 4, "square": 1.0, "triangle": 0.5}  # share of its bounding box each shape fills
CORE_COVER = 0.9  # coverage above which a pixel is the object's own colour
CODES = {"triangle": -1.0, "circle": 0.0, "square": 1.0}  # the shape code's level per shape
FOOTPRINT_COVER = 0.05  # share of a latent cell the disc must cover for the cell to carry the code


def fill_code(fill: Tensor) -> Tensor:
    """The shape code of bounding-box fills [N]: the level of the shape whose fill is nearest. Measured fills of
    rendered shapes stay far from halfway (triangles 0.50-0.56, circles 0.72-0.81, squares 1.0), so the code is
    exact: the DiT and the decoder meet three levels, not a spread."""
    fills = torch.tensor([FILL[shape] for shape in CODES], device=fill.device)
    levels = torch.tensor(list(CODES.values()), device=fill.device)
    return levels[(fill[:, None] - fills).abs().argmin(1)]


def shape_code(frames: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The object of frames [N, 3, H, W] in [-1, 1] as a disc: where it goes [N, H, W] in 0..1, the frames with the
    object redrawn as that disc [N, 3, H, W], and the shape code [N].

    Coverage is each pixel's colour distance from the border's median (the background, as the detector reads it)
    over the largest one (the object's core). The code is ``fill_code`` of the share of its bounding box the object
    fills. The disc has the object's area at its centroid, in the colour of its core: the same for every shape, so
    nothing drawn from it or the code's outline says the shape, only the code's level does."""
    ring = torch.cat(
        [
            frames[..., :BORDER_PX, :].flatten(2),
            frames[..., -BORDER_PX:, :].flatten(2),
            frames[..., :, :BORDER_PX].flatten(2),
            frames[..., :, -BORDER_PX:].flatten(2),
        ],
        2,
    )
    background = ring.median(2).values[..., None, None]
    distance = (frames - background).pow(2).sum(1).sqrt()
    cover = (distance / distance.flatten(1).amax(1).clamp_min(1e-3)[:, None, None]).clamp(0, 1)
    inside = cover > 0.5
    box = inside.any(2).sum(1) * inside.any(1).sum(1)
    fill = inside.sum((1, 2)) / box.clamp_min(1)
    area = cover.sum((1, 2)).clamp_min(1e-3)
    ys = torch.arange(frames.shape[-2], device=frames.device) + 0.5
    xs = torch.arange(frames.shape[-1], device=frames.device) + 0.5
    cy = (cover.sum(2) * ys).sum(1) / area
    cx = (cover.sum(1) * xs).sum(1) / area
    reach = (xs[None, None, :] - cx[:, None, None]).hypot(ys[None, :, None] - cy[:, None, None])
    disc = ((area / math.pi).sqrt()[:, None, None] - reach + 0.5).clamp(0, 1)
    core = (cover > CORE_COVER).float()[:, None]
    colour = (frames * core).sum((2, 3), keepdim=True) / core.sum((2, 3), keepdim=True).clamp_min(1)
    drawn = background + (colour - background) * disc[:, None]
    return disc, drawn, fill_code(fill)


def code_channel(disc: Tensor, code: Tensor) -> Tensor:
    """The shape-code channel [N, 1, h, w]: each frame's code [N] on every cell its disc [N, H, W] touches."""
    footprint = (F.avg_pool2d(disc[:, None], SPACE_STRIDE) > FOOTPRINT_COVER).float()
    return footprint * code[:, None, None, None]


def world_latents(video: Tensor, channels: int = CHANNELS) -> Tensor:
    """Pixels [B, 3, 1 + 4k, H, W] in [-1, 1] -> raw latents [B, channels, 1 + k, H/8, W/8] (16, or 17 with the
    shape code)."""
    b, _, frames, h, w = video.shape
    if (frames - 1) % TIME_STRIDE or h % SPACE_STRIDE or w % SPACE_STRIDE:
        raise ValueError(f"need 1 + 4k frames and sides divisible by 8, got {tuple(video.shape)}")
    if channels not in (CHANNELS, SHAPED_CHANNELS):
        raise ValueError(f"the world latent space has {CHANNELS} or {SHAPED_CHANNELS} channels, not {channels}")
    parts = []
    if channels == SHAPED_CHANNELS:
        disc, drawn, code = shape_code(video.transpose(1, 2).flatten(0, 1))
        video = drawn.unflatten(0, (b, frames)).transpose(1, 2)
        codes = code_channel(disc, code).unflatten(0, (b, frames))[:, ::TIME_STRIDE]  # each group's last frame
        parts.append(codes.flatten(0, 1))
    first = video[:, :, :1].expand(-1, -1, TIME_STRIDE - 1, -1, -1)
    groups = torch.cat([first, video], 2).unflatten(2, (-1, TIME_STRIDE))  # [B, 3, T, 4, H, W]
    t = groups.shape[2]
    last = groups[:, :, :, -1].transpose(1, 2).flatten(0, 1)  # [B*T, 3, H, W]
    quarters = F.pixel_unshuffle(F.avg_pool2d(last, SPACE_STRIDE // 2), 2)  # [B*T, 12, h, w], colour-major
    earlier = groups[:, :, :, :-1].mean(1).flatten(0, 1)  # brightness [B*T, 3, H, W]
    motion = F.avg_pool2d(earlier, SPACE_STRIDE)
    colourful = F.avg_pool2d(last.amax(1, keepdim=True) - last.amin(1, keepdim=True), SPACE_STRIDE)
    latents = torch.cat([quarters, motion, colourful, *parts], 1)
    return latents.unflatten(0, (b, t)).transpose(1, 2)


def normalize(raw: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """Raw latents [B, C, T, h, w] -> the unit-scale latents the DiT works on, with the VAE config's statistics."""
    shape = (1, -1, 1, 1, 1)
    return (raw - torch.tensor(mean, device=raw.device).view(shape)) / torch.tensor(std, device=raw.device).view(shape)


def image_latent(latents: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """The latent a lone frame gets (Wan's first-latent layout) from normalised latents [..., C, h, w] of the
    groups that frame ends: its quarters, colourfulness and shape code as they are, its brightness (the mean of the
    quarters) in place of the three earlier frames'. A window of a video starts with such a latent, as a clip does."""
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
    """Loss weights [B, F, h, w] of normalised latents [B, F, C, h, w]: ``weight`` around the object, else 1.

    Every ShapesWorld object is saturated and every background grey, so colourfulness finds the object's cells; a
    one-cell margin takes in its edges.
    """
    raw = latents[:, :, COLOURFUL] * std[COLOURFUL] + mean[COLOURFUL]
    cells = (raw > OBJECT_THRESHOLD).float().flatten(0, 1)[:, None]
    near = F.max_pool2d(cells, 3, stride=1, padding=1)[:, 0].unflatten(0, latents.shape[:2])
    return 1.0 + (weight - 1.0) * near
