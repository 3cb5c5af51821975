"""Engine -> streaming decoder -> uint8 frames: the one path that render, live and bench all run.

``FramePipeline`` turns the engine's latent chunks into video frames in order, up to an optional frame limit. With
``behind`` (decode-behind), each chunk is decoded on a second CUDA stream while the next chunk's DiT work is queued;
without CUDA it decodes in place, so the frames are the same either way.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Iterator
from typing import Any, Protocol, TypeVar

import numpy as np
import torch

from .video import to_uint8_frames, uint8_on_device


class Chunk(Protocol):
    """What the pipeline reads from each chunk it is given: clean latents [1, T, C, H, W]."""

    latents: torch.Tensor


C = TypeVar("C", bound=Chunk)


class DecodeBehind:
    """Decodes each chunk on a second CUDA stream while the caller queues the next chunk's DiT work.

    ``submit`` queues a chunk's decode (and its copy to pinned host memory) behind the DiT work that made it and
    returns at once; ``collect`` waits for the oldest submitted chunk and returns its uint8 frames. Without CUDA it
    decodes inside ``submit``, so the frames are the same either way.
    """

    def __init__(self, decode: Any, device: torch.device):
        self.decode = decode
        self.side = torch.cuda.Stream(device) if device.type == "cuda" else None
        self.pending: collections.deque = collections.deque()

    def submit(self, latents: torch.Tensor) -> None:
        """Queue the decode of latents [1, T, C, H, W]."""
        if self.side is None:
            self.pending.append(to_uint8_frames(self.decode(latents.transpose(1, 2))))
            return
        made = torch.cuda.current_stream(latents.device).record_event()
        with torch.cuda.stream(self.side):
            self.side.wait_event(made)
            latents.record_stream(self.side)
            frames = uint8_on_device(self.decode(latents.transpose(1, 2)))
            host = torch.empty(frames.shape, dtype=torch.uint8, pin_memory=True)
            host.copy_(frames, non_blocking=True)
            self.pending.append((self.side.record_event(), host))

    def collect(self) -> np.ndarray:
        """uint8 frames [T, H, W, 3] of the oldest submitted chunk, once decoded."""
        item = self.pending.popleft()
        if self.side is None:
            return item
        done, host = item
        done.synchronize()
        return host.numpy()


class FramePipeline:
    """A video's latent chunks -> its uint8 frames [T, H, W, 3], carrying the decoder's cache from chunk to chunk.

    ``decoder`` is a Wan VAE or TAEHV (anything with ``stream()``); ``decode_step`` is the Wan VAE's latents per
    decoder call. ``limit`` cuts the frames at the video's length (the last chunk may decode a few more).
    """

    def __init__(
        self,
        decoder: Any,
        device: torch.device | str,
        *,
        behind: bool = False,
        decode_step: int | None = None,
        limit: int | None = None,
    ):
        self.decode = decoder.stream() if decode_step is None else decoder.stream(decode_step)
        self.behind = DecodeBehind(self.decode, torch.device(device)) if behind else None
        self.limit = limit
        self.frames = 0

    def reset(self) -> None:
        """Start a new video: the decoder's cache emptied, the frame count from 0."""
        if self.behind is not None and self.behind.pending:
            raise RuntimeError("collect every submitted chunk before starting a new video")
        self.decode.reset()
        self.frames = 0

    def __call__(self, latents: torch.Tensor) -> np.ndarray:
        """The frames of one chunk, decoded now."""
        with torch.no_grad():
            frames = to_uint8_frames(self.decode(latents.transpose(1, 2)))
        return self._count(frames)

    def run(self, chunks: Iterable[C]) -> Iterator[tuple[C, np.ndarray]]:
        """Each chunk with its frames, in order.

        With decode-behind the first chunk is decoded at once (for the first frame); from then on one chunk stays
        in flight, so a chunk comes out after the next one's DiT work is queued, and the last once the input ends.
        """
        if self.behind is None:
            for chunk in chunks:
                yield chunk, self(chunk.latents)
            return
        waiting: collections.deque = collections.deque()
        for i, chunk in enumerate(chunks):
            with torch.no_grad():
                self.behind.submit(chunk.latents)
            waiting.append(chunk)
            if i != 1:
                yield waiting.popleft(), self._count(self.behind.collect())
        while waiting:
            yield waiting.popleft(), self._count(self.behind.collect())

    def _count(self, frames: np.ndarray) -> np.ndarray:
        if self.limit is not None:
            frames = frames[: max(self.limit - self.frames, 0)]
        self.frames += len(frames)
        return frames
