"""Per-frame ShapesWorld attributes read back from pixels alone, tolerant of a learned decoder's blur and colour noise.

Background: nearest palette background to the median border colour. Object: pixels farther from that colour than
half the object's own contrast (so blur moves the edge evenly for every colour), trimmed to the rows and columns
that hold a real share of it. Colour: the palette colour that best explains the mask's core as a blend with the
background. Size: area (all shapes of a size share it). Shape: an apex-up triangle's mass sits low (vertical
skewness); a square's x and y extents are independent where a circle's are not (cumulant k22 of the soft coverage,
which blur leaves alone). Motion: spread and direction of the centroid's path over half a second, windows never
crossing a prompt change.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from longlive_cli.world.grammar import BACKGROUNDS, COLORS, MOTIONS, SHAPES, SIZES
from longlive_cli.world.scene import BACKGROUND_RGB, FPS, OBJECT_RGB, RADIUS

OBJECT_PALETTE = np.array([OBJECT_RGB[c] for c in COLORS], dtype=np.float32)
BACKGROUND_PALETTE = np.array([BACKGROUND_RGB[b] for b in BACKGROUNDS], dtype=np.float32)

BORDER_PX = 2  # ring of pixels sampled for the background colour
MIN_CONTRAST = 48.0  # RGB distance from the background an object must reach, whatever the decoder's noise
CONTRAST_QUANTILE = 0.995
MIN_AREA = 0.25 * math.pi * RADIUS["small"] ** 2  # a quarter of the small object: less is no object
SIZE_SPLIT = math.pi * RADIUS["small"] * RADIUS["large"]  # geometric mean of the two areas
TRIANGLE_SKEW_BELOW = -0.28  # an apex-up triangle's vertical skewness is about -0.55, blur or not; others 0
SQUARE_CUMULANT_ABOVE = -0.5 / (48 * math.pi**2)  # halfway between a circle's k22 / area^2 and a square's 0
HALO_PX = 3  # margin around the mask's box in which blurred coverage still counts
MOTION_WINDOW_S = 0.5  # path length looked at for motion: a quarter turn of the orbit
STILL_SPREAD = 0.03  # frame sides: a path spanning less than this in the window is standing still
EXTENT_SHARE = 0.1  # rows/columns with less than this share of the widest one's object pixels are outside it
LINE_RATIO = 0.08  # mean squared cross-axis speed under this share of the along-axis one is a straight line


@dataclass(frozen=True)
class Detections:
    """Per-frame readings; labels index the grammar's value tuples, -1 where nothing could be read."""

    found: np.ndarray  # bool [N]
    background: np.ndarray  # int [N]
    color: np.ndarray
    shape: np.ndarray
    size: np.ndarray
    motion: np.ndarray
    centroid: np.ndarray  # float [N, 2], (x, y) in frame sides, NaN when not found
    area: np.ndarray  # float [N], share of the frame
    skew: np.ndarray  # float [N], vertical skewness of the mask: about -0.55 for an apex-up triangle, 0 otherwise
    corners: np.ndarray  # float [N], cumulant k22 / area^2: -1/(48 pi^2) for a circle, 0 for a square

    def __len__(self) -> int:
        return len(self.found)

    def labels(self, name: str) -> list[str | None]:
        """One attribute's readings as names, for people and JSON."""
        values = LABELS[name]
        return [values[k] if k >= 0 else None for k in getattr(self, name)]


LABELS: dict[str, tuple[str, ...]] = {
    "shape": SHAPES,
    "color": COLORS,
    "size": SIZES,
    "motion": MOTIONS,
    "background": BACKGROUNDS,
}


def _nearest(colors: np.ndarray, palette: np.ndarray) -> np.ndarray:
    return np.argmin(((colors[:, None, :] - palette[None]) ** 2).sum(-1), axis=1)


def _nearest_blend(colors: np.ndarray, reference: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Palette entry best explaining each colour as a blend with the background: blur mixes the two, noise aside."""
    offset = colors - reference  # [B, 3]
    target = palette[None] - reference[:, None]  # [B, K, 3]
    share = np.clip((target @ offset[:, :, None])[..., 0] / np.maximum((target**2).sum(-1), 1.0), 0.5, 1.5)
    return np.argmin(((offset[:, None] - share[..., None] * target) ** 2).sum(-1), axis=1)


def _box3(values: np.ndarray) -> np.ndarray:
    """3x3 mean over the last two axes (edges repeated): averages away per-pixel noise before thresholding."""
    padded = np.pad(values, ((0, 0), (1, 1), (1, 1)), mode="edge")
    h, w = values.shape[1:]
    rows = padded[:, :-2] + padded[:, 1:-1] + padded[:, 2:]
    return (rows[:, :, :-2] + rows[:, :, 1:-1] + rows[:, :, 2:])[:, :h, :w] / 9.0


def _extent(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last index whose count reaches a tenth of the peak: stray specks outside the object do not count."""
    keep = counts >= np.maximum(EXTENT_SHARE * counts.max(1, keepdims=True), 1)
    return np.argmax(keep, 1), counts.shape[1] - 1 - np.argmax(keep[:, ::-1], 1)


def _ring(values: np.ndarray) -> np.ndarray:
    """The outer ``BORDER_PX`` pixels of [..., H, W] arrays, flattened into the last axis."""
    edges = (
        values[..., :BORDER_PX, :],
        values[..., -BORDER_PX:, :],
        values[..., BORDER_PX:-BORDER_PX, :BORDER_PX],
        values[..., BORDER_PX:-BORDER_PX, -BORDER_PX:],
    )
    return np.concatenate([e.reshape(*values.shape[:-2], -1) for e in edges], axis=-1)


def _box_mask(box: tuple[np.ndarray, ...], h: int, w: int, margin: int = 0) -> np.ndarray:
    """bool [B, H, W]: inside each frame's (top, bottom, left, right) box grown by ``margin``."""
    top, bottom, left, right = box
    ys, xs = np.arange(h), np.arange(w)
    rows = (ys >= top[:, None] - margin) & (ys <= bottom[:, None] + margin)
    cols = (xs >= left[:, None] - margin) & (xs <= right[:, None] + margin)
    return rows[:, :, None] & cols[:, None, :]


def _corner_cumulant(cover: np.ndarray) -> np.ndarray:
    """k22 = E[x^2 y^2] - E[x^2] E[y^2] - 2 E[xy]^2 of the soft coverage, over area^2: a square's x and y are
    independent (0), a circle's are not (-1/(48 pi^2)). Blur adds independent noise to x and y, which k22 ignores,
    so this tells a blurred square from a circle where the mask's corners no longer can."""
    h, w = cover.shape[1:]
    ys, xs = np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32)
    mass = np.maximum(cover.sum((1, 2)), 1e-6)
    dx = xs[None, None, :] - (cover.sum(1) @ xs / mass)[:, None, None]
    dy = ys[None, :, None] - (cover.sum(2) @ ys / mass)[:, None, None]
    xx, yy = dx * dx, dy * dy
    vx, vy = (cover * xx).sum((1, 2)) / mass, (cover * yy).sum((1, 2)) / mass
    cxy = (cover * dx * dy).sum((1, 2)) / mass
    return ((cover * xx * yy).sum((1, 2)) / mass - vx * vy - 2 * cxy**2) / mass**2


def _read_frames(frames: np.ndarray) -> dict[str, np.ndarray]:
    """Everything but motion for a batch of uint8 [B, H, W, 3] frames."""
    b, h, w, _ = frames.shape
    planes = np.ascontiguousarray(frames.transpose(0, 3, 1, 2), dtype=np.float32)
    reference = np.median(_ring(planes), axis=-1)
    squared = np.zeros((b, h, w), dtype=np.float32)
    for c in range(3):  # channel by channel: three times faster than reducing over a length-3 axis
        offset = planes[:, c] - reference[:, c, None, None]
        squared += offset * offset
    distance = _box3(np.sqrt(squared))

    # The top half-percent of distances lies inside even a small object: its own contrast, whatever the blur.
    peak = np.quantile(distance.reshape(b, -1), CONTRAST_QUANTILE, axis=1)
    contrast = np.maximum(peak, MIN_CONTRAST)[:, None, None]
    mask = distance > 0.5 * contrast
    box = (*_extent(mask.sum(2)), *_extent(mask.sum(1)))
    mask &= _box_mask(box, h, w)
    row_count, col_count = mask.sum(2), mask.sum(1)
    count = row_count.sum(1)
    core = mask & (distance > 0.75 * contrast)
    core = np.where((core.sum((1, 2)) > 0)[:, None, None], core, mask).reshape(b, -1, 1).astype(np.float32)
    object_rgb = (planes.reshape(b, 3, -1) @ core)[..., 0] / np.maximum(core.sum(1), 1)
    floor = np.median(_ring(distance), axis=-1)[:, None, None]
    cover = np.clip((distance - floor) / np.maximum(contrast - floor, 1.0), 0.0, 1.0) * _box_mask(box, h, w, HALO_PX)

    area = count / (h * w)
    found = (peak >= MIN_CONTRAST) & (area >= MIN_AREA)
    ys, xs = np.arange(h), np.arange(w)
    safe = np.maximum(count, 1)
    row_mass, col_mass = row_count / safe[:, None], col_count / safe[:, None]
    x_mean, y_mean = col_mass @ ((xs + 0.5) / w), row_mass @ ((ys + 0.5) / h)
    dy = (ys + 0.5) / h - y_mean[:, None]
    skew = (row_mass * dy**3).sum(1) / np.maximum((row_mass * dy**2).sum(1), 1e-12) ** 1.5
    corners = _corner_cumulant(cover)
    shape = np.where(skew < TRIANGLE_SKEW_BELOW, 2, np.where(corners > SQUARE_CUMULANT_ABOVE, 1, 0))
    return {
        "found": found,
        "background": _nearest(reference, BACKGROUND_PALETTE),
        "color": np.where(found, _nearest_blend(object_rgb, reference, OBJECT_PALETTE), -1),
        "shape": np.where(found, shape, -1),
        "size": np.where(found, (area > SIZE_SPLIT).astype(np.int64), -1),
        "centroid": np.where(found[:, None], np.stack([x_mean, y_mean], axis=1), np.nan),
        "area": area,
        "skew": np.where(found, skew, np.nan),
        "corners": np.where(found, corners, np.nan),
    }


def classify_motion(centroid: np.ndarray, found: np.ndarray, fps: float = FPS, cuts: Sequence[int] = ()) -> np.ndarray:
    """int [N] motion labels from the centroid path; each frame's window stays inside its stretch between cuts.

    Still when the path spans under ``STILL_SPREAD``; otherwise a straight line when the squared speed across one
    axis is a small share of that along the other, else circling (an orbit always shows both within a window).
    """
    n = len(found)
    span = max(3, round(MOTION_WINDOW_S * fps) + 1)  # positions per window
    edges = np.array(sorted({0, n, *(c for c in cuts if 0 < c < n)}))
    frame = np.arange(n)
    seg = np.searchsorted(edges, frame, side="right") - 1
    seg_start, seg_end = edges[seg], edges[seg + 1]
    length = np.minimum(span, seg_end - seg_start)
    start = np.clip(frame - length // 2, seg_start, seg_end - length)
    offsets = np.arange(span)
    idx = start[:, None] + np.minimum(offsets[None], length[:, None] - 1)
    inside = offsets[None] < length[:, None]
    ok = found[idx] & inside
    path = centroid[idx]
    spread = np.where(ok[..., None], path, -np.inf).max(1) - np.where(ok[..., None], path, np.inf).min(1)
    step_ok = ok[:, 1:] & ok[:, :-1]
    energy = np.where(step_ok[..., None], np.diff(path, axis=1), 0.0) ** 2
    ex, ey = energy[..., 0].sum(1), energy[..., 1].sum(1)
    usable = found & (ok.sum(1) >= 3) & (step_ok.sum(1) >= 2)
    moving = spread.max(1) >= STILL_SPREAD
    label = np.full(n, MOTIONS.index("circling"))
    label[ey < LINE_RATIO * ex] = MOTIONS.index("horizontal")
    label[ex < LINE_RATIO * ey] = MOTIONS.index("vertical")
    label[~moving] = MOTIONS.index("still")
    return np.where(usable, label, -1)


def detect(frames: np.ndarray, fps: float = FPS, cuts: Sequence[int] = (), chunk: int = 256) -> Detections:
    """Read every frame of uint8 [N, H, W, 3]; ``cuts`` are frames where a prompt changes (motion is not smoothed
    across them, so the reading right after a change reflects only what came after it)."""
    if len(frames) == 0:
        raise ValueError("no frames to read")
    parts = [_read_frames(frames[i : i + chunk]) for i in range(0, len(frames), chunk)]
    read = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    motion = classify_motion(read["centroid"], read["found"], fps, cuts)
    return Detections(motion=motion, **read)
