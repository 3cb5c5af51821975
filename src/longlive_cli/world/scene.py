"""ShapesWorld state and renderer: one flat-coloured object on a flat background, moving with carried-over state.

Coordinates are fractions of the (square) frame side, x to the right and y down. All three shapes of one size
cover the same area, so the object's area says its size whatever its shape. The object's position is its centre
of mass, so a shape change does not move the centroid a detector sees. Every shape and size moves within the same
central range (``LOW``..``HIGH``), so a size change never pushes the object either.

On a prompt change, position and velocity carry over: colour, shape and background switch at once, the size grows
or shrinks over ``GROW_SECONDS``, a line motion keeps the heading it had along its axis (else aims at the farther
wall), and an orbit starts through the object's current position, its centre sliding to where the orbit fits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from longlive_cli.world.grammar import BACKGROUNDS, COLORS, SHAPES, Attributes

FPS = 16
DEFAULT_SIZE = 128

OBJECT_RGB: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 90, 230),
    "yellow": (240, 210, 40),
    "purple": (160, 60, 210),
}
BACKGROUND_RGB: dict[str, tuple[int, int, int]] = {
    "black": (20, 20, 20),
    "gray": (128, 128, 128),
    "white": (235, 235, 235),
}

# Radius of the equal-area circle per size: 10 % and 18 % of the frame side.
RADIUS = {"small": 0.10, "large": 0.18}
SQUARE_HALF = math.sqrt(math.pi) / 2  # half-side of the square with the circle's area, in radii
TRIANGLE_SIDE = math.sqrt(4 * math.pi / math.sqrt(3))  # equilateral triangle with the circle's area, in radii
TRIANGLE_INRADIUS = TRIANGLE_SIDE / (2 * math.sqrt(3))  # centroid to each edge
EXTENT = 2 * TRIANGLE_INRADIUS  # centroid to the triangle's apex: the farthest any shape reaches, in radii
BORDER = 0.02  # gap kept between any shape and the frame edge, so the border shows only background
# Range of centre positions on either axis: one for every shape and size, so a size change never pushes the object.
LOW = EXTENT * max(RADIUS.values()) + BORDER
HIGH = 1.0 - LOW

LINEAR_SPEED = 0.4  # frame sides per second: 1 s to cross the free range
ORBIT_RADIUS = 0.15
ORBIT_PERIOD = 2.0  # seconds per turn, so a window of half a second already sees the path bend
CENTRE_SPEED = 0.25  # how fast a new orbit's centre slides to where the whole orbit fits, frame sides per second
GROW_SECONDS = 0.25  # a small <-> large change takes 4 frames at 16 fps
GROW_RATE = (RADIUS["large"] - RADIUS["small"]) / GROW_SECONDS
BLEND_LEVELS = np.linspace(0.0, 1.0, 256, dtype=np.float32)


@dataclass(frozen=True)
class SceneState:
    """What the world remembers between frames: the attributes on screen, position, velocity, orbit and radius."""

    attrs: Attributes
    x: float
    y: float
    vx: float = 0.0  # frame sides per second
    vy: float = 0.0
    cx: float = 0.5  # orbit centre, used while circling
    cy: float = 0.5
    phase: float = 0.0  # angle on the orbit, radians
    spin: int = 1  # +1 or -1: direction of the orbit
    radius: float = RADIUS["small"]  # current radius; eases toward RADIUS[attrs.size]


def initial_state(attrs: Attributes, rng: np.random.Generator) -> SceneState:
    """A random start: anywhere the object fits, heading a random way along its motion."""
    radius = RADIUS[attrs.size]
    sign = float(rng.choice((-1.0, 1.0)))
    if attrs.motion == "circling":
        cx, cy = rng.uniform(LOW + ORBIT_RADIUS, HIGH - ORBIT_RADIUS, size=2)
        phase = float(rng.uniform(0, 2 * math.pi))
        state = SceneState(attrs, 0.0, 0.0, cx=float(cx), cy=float(cy), phase=phase, spin=int(sign), radius=radius)
        return _place_on_orbit(state)
    x, y = (float(v) for v in rng.uniform(LOW, HIGH, size=2))
    vx = sign * LINEAR_SPEED if attrs.motion == "horizontal" else 0.0
    vy = sign * LINEAR_SPEED if attrs.motion == "vertical" else 0.0
    return SceneState(attrs, x, y, vx, vy, cx=x, cy=y, radius=radius)


def _place_on_orbit(state: SceneState) -> SceneState:
    x = state.cx + ORBIT_RADIUS * math.cos(state.phase)
    y = state.cy + ORBIT_RADIUS * math.sin(state.phase)
    return replace(state, x=x, y=y)


def _start_motion(state: SceneState, motion: str) -> SceneState:
    """Velocity for a new motion from the old state: keep the heading along the new axis, else aim at more room."""
    if motion == "still":
        return replace(state, vx=0.0, vy=0.0)
    if motion == "horizontal":
        sign = math.copysign(1.0, state.vx) if abs(state.vx) > 1e-9 else (1.0 if state.x <= 0.5 else -1.0)
        return replace(state, vx=sign * LINEAR_SPEED, vy=0.0)
    if motion == "vertical":
        sign = math.copysign(1.0, state.vy) if abs(state.vy) > 1e-9 else (1.0 if state.y <= 0.5 else -1.0)
        return replace(state, vx=0.0, vy=sign * LINEAR_SPEED)
    # Circling: the object stays put on an orbit whose centre lies toward the frame centre, turning the way it went.
    dx, dy = 0.5 - state.x, 0.5 - state.y
    norm = math.hypot(dx, dy)
    ux, uy = (dx / norm, dy / norm) if norm > 1e-9 else (1.0, 0.0)
    cx, cy = state.x + ORBIT_RADIUS * ux, state.y + ORBIT_RADIUS * uy
    phase = math.atan2(-uy, -ux)
    heading = -math.sin(phase) * state.vx + math.cos(phase) * state.vy
    return replace(state, cx=cx, cy=cy, phase=phase, spin=1 if heading >= 0 else -1)


def _bounce(p: float, v: float) -> tuple[float, float]:
    if p > HIGH:
        return 2 * HIGH - p, -abs(v)
    if p < LOW:
        return 2 * LOW - p, abs(v)
    return p, v


def _approach(value: float, target: float, max_step: float) -> float:
    return value + max(-max_step, min(max_step, target - value))


def step(state: SceneState, attrs: Attributes, dt: float = 1.0 / FPS) -> SceneState:
    """Advance one frame under ``attrs`` (the active prompt), carrying position and velocity across any change."""
    radius = _approach(state.radius, RADIUS[attrs.size], GROW_RATE * dt)
    if attrs.motion != state.attrs.motion:
        state = _start_motion(state, attrs.motion)
    state = replace(state, attrs=attrs, radius=radius)
    if attrs.motion == "horizontal":
        x, vx = _bounce(state.x + state.vx * dt, state.vx)
        state = replace(state, x=x, vx=vx)
    elif attrs.motion == "vertical":
        y, vy = _bounce(state.y + state.vy * dt, state.vy)
        state = replace(state, y=y, vy=vy)
    elif attrs.motion == "circling":
        centre_lo, centre_hi = LOW + ORBIT_RADIUS, HIGH - ORBIT_RADIUS
        fit_x, fit_y = min(max(state.cx, centre_lo), centre_hi), min(max(state.cy, centre_lo), centre_hi)
        moved = _place_on_orbit(
            replace(
                state,
                cx=_approach(state.cx, fit_x, CENTRE_SPEED * dt),
                cy=_approach(state.cy, fit_y, CENTRE_SPEED * dt),
                phase=(state.phase + state.spin * 2 * math.pi * dt / ORBIT_PERIOD) % (2 * math.pi),
            )
        )
        state = replace(moved, vx=(moved.x - state.x) / dt, vy=(moved.y - state.y) / dt)
    return replace(state, x=min(max(state.x, LOW), HIGH), y=min(max(state.y, LOW), HIGH))


def _signed_distance(shape: str, dx: np.ndarray, dy: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Signed distance to the edge (negative inside), in frame sides, for broadcast offsets from the centroid."""
    if shape == "circle":
        return np.sqrt(dx * dx + dy * dy) - r
    if shape == "square":
        return np.maximum(np.abs(dx), np.abs(dy)) - SQUARE_HALF * r
    sin60 = math.sqrt(3) / 2  # apex up: edges facing down, up-right and up-left
    slanted = np.maximum(sin60 * dx, -sin60 * dx) - 0.5 * dy
    return np.maximum(dy, slanted) - TRIANGLE_INRADIUS * r


def render_frames(states: Sequence[SceneState], size: int = DEFAULT_SIZE, chunk: int = 64) -> np.ndarray:
    """uint8 [N, size, size, 3] for a run of states; edges get one pixel of coverage blending.

    Only a window around each object is shaded (a third of a 128x128 frame), then pasted on the flat background.
    """
    out = np.empty((len(states), size, size, 3), dtype=np.uint8)
    window = min(size, math.ceil(2 * EXTENT * max(RADIUS.values()) * size) + 3)
    object_rgb = np.array([OBJECT_RGB[c] for c in COLORS], dtype=np.float32)
    background_rgb = np.array([BACKGROUND_RGB[b] for b in BACKGROUNDS], dtype=np.float32)
    plain = np.broadcast_to(background_rgb[:, None, None].astype(np.uint8), (len(BACKGROUNDS), size, size, 3)).copy()
    for start in range(0, len(states), chunk):
        part = states[start : start + chunk]
        n = len(part)
        pos = np.array([(s.x, s.y) for s in part], dtype=np.float32)
        r = np.array([s.radius for s in part], dtype=np.float32)[:, None, None]
        corner = np.clip(np.floor(pos * size).astype(np.int64) - window // 2, 0, size - window)
        cols, rows = (corner[:, k, None] + np.arange(window) for k in (0, 1))  # [n, window] each
        dx = ((cols + 0.5) / size - pos[:, 0, None]).astype(np.float32)[:, None, :]
        dy = ((rows + 0.5) / size - pos[:, 1, None]).astype(np.float32)[:, :, None]
        shape_ids = np.array([SHAPES.index(s.attrs.shape) for s in part])
        sdf = np.empty((n, window, window), dtype=np.float32)
        for k, shape in enumerate(SHAPES):
            idx = np.flatnonzero(shape_ids == k)
            if idx.size:
                sdf[idx] = _signed_distance(shape, dx[idx], dy[idx], r[idx])
        levels = np.rint(np.clip(0.5 - sdf * size, 0.0, 1.0) * 255).astype(np.int64)
        fg = object_rgb[[COLORS.index(s.attrs.color) for s in part]]
        bg_ids = [BACKGROUNDS.index(s.attrs.background) for s in part]
        bg = background_rgb[bg_ids]
        # Per-frame colour for each of the 256 coverage levels, then one gather: cheaper than blending RGB floats.
        ramp = np.rint(bg[:, None] + BLEND_LEVELS[None, :, None] * (fg - bg)[:, None]).astype(np.uint8)
        patches = ramp.reshape(-1, 3).take(levels + 256 * np.arange(n)[:, None, None], axis=0)
        for i in range(n):
            out[start + i] = plain[bg_ids[i]]
            out[start + i, rows[i, 0] : rows[i, 0] + window, cols[i, 0] : cols[i, 0] + window] = patches[i]
    return out


def render(state: SceneState, size: int = DEFAULT_SIZE) -> np.ndarray:
    """uint8 [size, size, 3]: one frame of the world."""
    return render_frames([state], size)[0]
