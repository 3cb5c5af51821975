"""What a render's settings must fit before anything is allocated: the model's position table, the frame size an
H.264 file holds, and the memory of the device it runs on. ``check`` and ``render`` ask the same questions here.
"""

from __future__ import annotations

import os

import torch

from .bundle import ModelSpec
from .engine import EngineConfig
from .models.rope import MAX_POSITIONS

# Frame sides above this are refused: H.264 levels stop at 8192x4320 and players well below that.
MAX_SIDE = 4096


def device_memory(device: str | torch.device) -> int | None:
    """Bytes of memory on ``device`` (the machine's RAM for the CPU), or None when it cannot be told."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_properties(device).total_memory
    if device.type == "cpu" and hasattr(os, "sysconf"):
        try:
            return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            return None
    return None


def render_bytes(spec: ModelSpec, engine: EngineConfig, size: tuple[int, int], dtype: torch.dtype) -> int:
    """A lower bound on what a render allocates beside the weights: the KV cache and one decoded frame's features."""
    width, height = size
    stride = spec.vae.space_stride
    _, ph, pw = spec.dit.patch_size
    tokens = (height // stride // ph) * (width // stride // pw)
    item = torch.empty((), dtype=dtype).element_size()
    kv_cache = 2 * spec.dit.num_layers * spec.dit.dim * engine.window * tokens * item
    decoder = 2 * height * width * spec.vae.dim * item
    return kv_cache + decoder


def size_problem(spec: ModelSpec, size: tuple[int, int]) -> str | None:
    """Why this model cannot render a WxH video (an H.264 bound, its patch grid, its positions, its trained sizes);
    None when it can."""
    width, height = size
    if max(width, height) > MAX_SIDE:
        return f"size {width}x{height}: at most {MAX_SIDE} pixels a side"
    try:
        spec.check_size(size)
    except ValueError as e:
        return f"size {width}x{height}: {e}"
    stride = spec.vae.space_stride
    _, ph, pw = spec.dit.patch_size
    if max(height // stride // ph, width // stride // pw) > MAX_POSITIONS:
        return f"size {width}x{height}: more than the model's {MAX_POSITIONS} positions a side"
    return None


def window_problem(
    spec: ModelSpec,
    engine: EngineConfig,
    size: tuple[int, int],
    device: str | torch.device | None,
    dtype: torch.dtype,
) -> str | None:
    """Why the attention window cannot be rendered at a size ``size_problem`` passed, with this model on this
    device; None when it can."""
    width, height = size
    if engine.window > MAX_POSITIONS:
        return f"window {engine.window}: more than the model's {MAX_POSITIONS} positions"
    if device is None:
        return None
    need = render_bytes(spec, engine, size, dtype)
    have = device_memory(device)
    if have is not None and need > have:
        return (
            f"window {engine.window} at {width}x{height} needs at least {need / 2**30:.1f} GiB beside the weights, "
            f"more than the {have / 2**30:.1f} GiB of {device}; use a smaller window or size"
        )
    return None
