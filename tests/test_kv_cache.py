"""The sink + window cache on its own: which frames a call attends and in which slots, for any geometry."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from longlive_cli.models.kv_cache import KVCache

FRAME_TOKENS = 2


def expected_frames(video_end: int, sink: int, attend: int) -> list[int]:
    """LongLive's rule: the first ``sink`` frames, then the most recent ``attend - sink`` frames."""
    sink_part = list(range(min(sink, video_end)))
    return sink_part + list(range(len(sink_part), video_end))[-(attend - sink) :]


def stream(cache: KVCache, chunks: list[int]):
    """Insert chunks whose keys are their frame numbers (values the negation); yield what each call attends."""
    frame = 0
    for n in chunks:
        k = torch.arange(frame, frame + n, dtype=torch.float32).repeat_interleave(FRAME_TOKENS).view(1, 1, -1, 1)
        plan = cache.plan(frame * FRAME_TOKENS, n * FRAME_TOKENS)
        keys, values = cache.update_and_view(0, plan, k, -k)
        slots = cache.attended_slots(plan)
        cache.commit(plan)
        frame += n
        yield frame, plan, keys, values, slots


@st.composite
def geometries(draw):
    capacity = draw(st.integers(2, 8))
    attend = draw(st.integers(2, capacity))
    sink = draw(st.integers(0, attend - 1))
    chunks = draw(st.lists(st.integers(1, attend - sink), min_size=1, max_size=12))
    return capacity, attend, sink, chunks


@given(geometries())
def test_each_call_attends_the_sink_and_the_most_recent_frames_in_their_slots(geometry):
    capacity, attend, sink, chunks = geometry
    cache = KVCache(1, 1, 1, 1, FRAME_TOKENS, capacity, sink, attend_frames=attend)
    held = 0
    for (video_end, plan, keys, values, slots), n in zip(stream(cache, chunks), chunks, strict=True):
        overflow = max(0, held + n - capacity)
        rolled = held - overflow - sink if overflow else 0
        assert (plan.evict, plan.rolled) == (overflow * FRAME_TOKENS, rolled * FRAME_TOKENS)
        held = min(held + n, capacity)
        frames = expected_frames(video_end, sink, attend)
        tokens = torch.tensor(frames, dtype=torch.float32).repeat_interleave(FRAME_TOKENS)
        assert keys.flatten().tolist() == tokens.tolist()
        assert values.flatten().tolist() == (-tokens).tolist()
        # The slot runs are whole frame indices, and reading those slots gives back exactly the attended keys.
        assert all(type(first) is int and type(count) is int and count >= 0 for first, count in slots)
        buffer = cache.k[0, 0, 0, :, 0].view(capacity, FRAME_TOKENS)[:, 0]
        read = [buffer[first + i].item() for first, count in slots for i in range(count)]
        assert read == [float(f) for f in frames]


def test_a_narrow_window_attends_two_runs_once_the_cache_holds_more_than_it():
    cache = KVCache(1, 1, 1, 1, FRAME_TOKENS, capacity_frames=6, sink_frames=1, attend_frames=4)
    seen = [(end, slots, keys.flatten().tolist()[::FRAME_TOKENS]) for end, _, keys, _, slots in stream(cache, [1] * 8)]
    assert seen[3] == (4, [(0, 4)], [0, 1, 2, 3])
    assert seen[4] == (5, [(0, 1), (2, 3)], [0, 2, 3, 4])
    assert seen[7] == (8, [(0, 1), (3, 3)], [0, 5, 6, 7])  # rolled: frames 1 and 2 left, 3..7 in slots 1..5


def test_a_chunk_that_overflows_a_partly_filled_cache_rolls_only_the_frames_held():
    # 2 + 2 frames leave one of five slots free; the third chunk of 2 evicts one frame from a cache not yet full.
    cache = KVCache(1, 1, 1, 1, FRAME_TOKENS, capacity_frames=5, sink_frames=1, attend_frames=5)
    *_, (end, plan, keys, _, _) = stream(cache, [2, 2, 2])
    assert (end, plan.evict, plan.rolled) == (6, FRAME_TOKENS, 2 * FRAME_TOKENS)
    assert keys.flatten().tolist()[::FRAME_TOKENS] == [0, 2, 3, 4, 5]


@pytest.mark.parametrize(("sink", "window", "capacity"), [(-1, 4, 4), (4, 4, 4), (1, 5, 4)])
def test_an_impossible_geometry_is_refused(sink, window, capacity):
    with pytest.raises(ValueError, match=rf"sink \({sink}\) < window \({window}\) <= capacity \({capacity}\)"):
        KVCache(1, 1, 1, 1, FRAME_TOKENS, capacity, sink, attend_frames=window)


def test_an_unknown_position_mode_is_refused():
    with pytest.raises(ValueError, match="positions must be one of absolute, relative, got 'rotary'"):
        KVCache(1, 1, 1, 1, FRAME_TOKENS, 4, 1, positions="rotary")


def test_a_later_step_on_a_frame_in_the_sink_leaves_the_sink_as_first_written():
    cache = KVCache(1, 1, 1, 1, frame_tokens=1, capacity_frames=4, sink_frames=2)
    for frame in (0, 1):
        plan = cache.plan(frame, 1)
        cache.update_and_view(0, plan, torch.full((1, 1, 1, 1), float(frame)), torch.zeros(1, 1, 1, 1))
        cache.commit(plan)
    plan = cache.plan(1, 1)  # the second frame again: a recompute, on a slot of the sink
    keys, _ = cache.update_and_view(0, plan, torch.full((1, 1, 1, 1), 9.0), torch.zeros(1, 1, 1, 1))
    assert plan.recompute and plan.write_len == 0
    assert keys.flatten().tolist() == [0.0, 1.0]


def test_recomputing_a_frame_already_rolled_out_is_a_clear_error():
    cache = KVCache(1, 1, 1, 1, FRAME_TOKENS, capacity_frames=4, sink_frames=1)
    list(stream(cache, [1] * 6))
    with pytest.raises(ValueError, match=r"tokens 2\.\.4 reaches before the buffer \(local start -2\)"):
        cache.plan(1 * FRAME_TOKENS, FRAME_TOKENS)


def test_buffers_are_allocated_once_in_the_dtype_and_on_the_device_asked():
    cache = KVCache(2, 1, 3, 4, FRAME_TOKENS, 5, 1, dtype=torch.bfloat16, device="meta")
    for buffer in (cache.k, cache.v):
        assert buffer.shape == (2, 1, 3, 5 * FRAME_TOKENS, 4)
        assert (buffer.dtype, buffer.device.type) == (torch.bfloat16, "meta")
