"""The frame pipeline that render, live and bench share: same frames with or without decode-behind, cut at length."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from longlive_cli.models.taehv import TAEHV
from longlive_cli.pipeline import FramePipeline
from longlive_cli.video import to_uint8_frames

from .fakes import FAST_SPEC


@dataclass
class Piece:
    index: int
    latents: torch.Tensor


def pieces(n: int) -> list[Piece]:
    torch.manual_seed(0)
    return [Piece(i, torch.randn(1, 3, 16, 4, 4)) for i in range(n)]


def decoder() -> TAEHV:
    torch.manual_seed(1)
    return TAEHV(FAST_SPEC.fast_decoder).eval()


def test_decode_behind_yields_every_chunk_in_order_with_the_frames_of_a_direct_decode():
    dec = decoder()
    direct = dec.stream()
    with torch.no_grad():
        expected = [to_uint8_frames(direct(p.latents.transpose(1, 2))) for p in pieces(4)]
    for behind in (False, True):
        out = list(FramePipeline(dec, "cpu", behind=behind).run(pieces(4)))
        assert [p.index for p, _ in out] == [0, 1, 2, 3]
        assert all((f == e).all() for (_, f), e in zip(out, expected, strict=True))


def test_frames_stop_at_the_limit_and_a_reset_starts_a_new_video():
    dec = decoder()
    pipeline = FramePipeline(dec, "cpu", limit=20)
    first = [len(f) for _, f in pipeline.run(pieces(3))]
    assert first == [9, 11, 0] and pipeline.frames == 20  # 1 + 4(3 - 1) frames, then 12 a chunk, cut at 20
    again = FramePipeline(dec, "cpu")
    pipeline.reset()
    assert (pipeline(pieces(1)[0].latents) == again(pieces(1)[0].latents)).all()
