"""Where a command runs and with what model, so commands share one policy: device, dtype, rank, loading, compiling.

Each model loads once per process; with ``--compile`` its DiT blocks are warmed up for the very shapes a render meets.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch

from .bundle import Bundle, load_bundle
from .download import is_hub_id
from .engine import warm_up
from .quantize import quantize_dit
from .render import RenderError, RenderSettings
from .timeline import Timeline

T = TypeVar("T")
DTYPES = {"float32": "float32", "fp32": "float32", "bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16"}


def resolve_device(device: str) -> str:
    """``auto`` picks this rank's GPU when there is one, else the CPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise RenderError("--device cuda: no CUDA GPU is available to this process")
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    return device


def resolve_dtype(dtype: str | None, device: str) -> torch.dtype:
    """A dtype name (one of ``DTYPES``), or None for the device's default: bf16 on a GPU, float32 on the CPU."""
    if dtype is None:
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    return getattr(torch, DTYPES[dtype])


def rank_share(jobs: list[T]) -> tuple[int, list[T]]:
    """This process's rank and its share of ``jobs`` (every N-th one under torchrun, all of them alone)."""
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    return rank, jobs[rank::world]


def model_of(timeline: Timeline) -> str | Path:
    """The timeline's model: a path beside the timeline, or a hub id such as Efficient-Large-Model/LongLive."""
    path = timeline.model_path
    if is_hub_id(timeline.model) and (path is None or not path.exists()):
        return timeline.model
    return path or timeline.model


class BundleCache:
    """Loads each model once per process, however many timelines use it; with ``compile``, compiles its DiT blocks
    and warms them up once for each shape and window a render asks for (``warm_up``), before its first frame."""

    def __init__(
        self, device: str, dtype: torch.dtype, compile: bool = False, say: Callable[[str], None] | None = None
    ):
        self.device, self.dtype, self.compile = device, dtype, compile
        self.say = say or (lambda line: None)
        self.loaded: dict = {}
        self.warm: set = set()

    def get(self, model: str | Path, quantize: str) -> Bundle:
        key = (str(model), quantize)
        if key not in self.loaded:
            bundle = load_bundle(model, self.device, self.dtype)
            quantize_dit(bundle.dit, quantize)
            if self.compile:
                bundle.dit.compile_blocks()
            self.loaded[key] = bundle
        return self.loaded[key]

    def warm_up(self, bundle: Bundle, settings: RenderSettings) -> None:
        """With ``compile``: meet every shape of this render once, so compiling happens here, not mid-video."""
        shape = settings.latent_shape(bundle)
        key = (id(bundle.dit), settings.engine, shape)
        if not self.compile or key in self.warm:
            return
        width, height = settings.size
        self.say(
            f"compiling {bundle.spec.name}'s DiT blocks for {width}x{height}, window {settings.engine.window} "
            "(once per process and shape)…"
        )
        warm_up(bundle.dit, settings.engine, shape, torch.zeros(1, 1, bundle.spec.dit.text_dim))
        self.warm.add(key)

    def decoder(self, bundle: Bundle, choice: str):
        """The bundle's own decoder, or a TAEHV-format file loaded once."""
        if choice in ("auto", "wan", "fast"):
            return bundle.decoder(choice)
        if choice not in self.loaded:
            from .models.taehv import load_taehv

            self.loaded[choice] = load_taehv(choice, device=self.device, dtype=self.dtype).eval()
        return self.loaded[choice]
