"""Engine and cache behaviour beyond the golden vectors: sizes, cache rules, switch policies, memory."""

from __future__ import annotations

import pytest
import torch

from longlive_cli.bundle import PRESETS
from longlive_cli.engine import (
    EngineConfig,
    SeededNoise,
    Segment,
    SinkMode,
    StreamingGenerator,
    SwitchEvent,
    SwitchPolicy,
)
from longlive_cli.models.dit import CausalWanDiT, DiTConfig
from longlive_cli.models.kv_cache import KVCache

TINY = DiTConfig(dim=32, ffn_dim=64, num_heads=2, num_layers=2, text_dim=8, text_len=4, freq_dim=16)
LATENT = (16, 4, 4)

BLOCK_KEYS = {
    "modulation": (1, 6, 1536),
    "norm3.weight": (1536,),
    "norm3.bias": (1536,),
    "ffn.0.weight": (8960, 1536),
    "ffn.0.bias": (8960,),
    "ffn.2.weight": (1536, 8960),
    "ffn.2.bias": (1536,),
    **{f"{a}.{p}.weight": (1536, 1536) for a in ("self_attn", "cross_attn") for p in "qkvo"},
    **{f"{a}.{p}.bias": (1536,) for a in ("self_attn", "cross_attn") for p in "qkvo"},
    **{f"{a}.norm_{p}.weight": (1536,) for a in ("self_attn", "cross_attn") for p in "qk"},
}
TOP_KEYS = {
    "patch_embedding.weight": (1536, 16, 1, 2, 2),
    "patch_embedding.bias": (1536,),
    "text_embedding.0.weight": (1536, 4096),
    "text_embedding.0.bias": (1536,),
    "text_embedding.2.weight": (1536, 1536),
    "text_embedding.2.bias": (1536,),
    "time_embedding.0.weight": (1536, 256),
    "time_embedding.0.bias": (1536,),
    "time_embedding.2.weight": (1536, 1536),
    "time_embedding.2.bias": (1536,),
    "time_projection.1.weight": (9216, 1536),
    "time_projection.1.bias": (9216,),
    "head.modulation": (1, 2, 1536),
    "head.head.weight": (64, 1536),
    "head.head.bias": (64,),
}


def test_longlive_preset_has_wan_keys_and_size():
    with torch.device("meta"):
        model = CausalWanDiT(PRESETS["longlive-1.3b"].dit)
    expected = dict(TOP_KEYS)
    for n in range(30):
        expected.update({f"blocks.{n}.{k}": s for k, s in BLOCK_KEYS.items()})
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == expected
    assert len(got) == 825
    assert sum(p.numel() for p in model.parameters()) == 1_418_996_800


class FixedNoise:
    """Initial noise keyed by frame and zero re-noise, so chunks can be compared across runs."""

    def __init__(self, frames: int, seed: int = 0):
        self.noise = torch.randn(1, frames, *LATENT, generator=torch.Generator().manual_seed(seed))

    def initial(self, frame: int, shape: tuple[int, ...]) -> torch.Tensor:
        return self.noise[:, frame : frame + shape[1]]

    def renoise(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.zeros(shape)


def tiny_generator(frames: int = 64, **cfg) -> StreamingGenerator:
    torch.manual_seed(0)
    model = CausalWanDiT(TINY).eval()
    return StreamingGenerator(model, EngineConfig(**cfg), LATENT, FixedNoise(frames))


def prompts(n: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(1, 4, 8, generator=g) for _ in range(n)]


def run(gen: StreamingGenerator, segments: list[Segment], frames: int) -> torch.Tensor:
    return torch.cat([c.latents for c in gen.stream(segments, frames)], dim=1)


def test_attended_frames_follow_sink_and_window():
    """Keys tagged with their frame index show LongLive's slot table: sink 0-2 plus the last 9 frames."""
    cache = KVCache(1, 1, 1, 1, frame_tokens=1, capacity_frames=12, sink_frames=3)
    seen = []
    for block in range(8):
        start = 3 * block
        plan = cache.plan(start, 3)
        tags = torch.arange(start, start + 3, dtype=torch.float32).view(1, 1, 3, 1)
        k, _ = cache.update_and_view(0, plan, tags, tags)
        cache.commit(plan)
        seen.append(sorted(int(x) for x in k.flatten()))
        again = cache.plan(start, 3)
        assert again.recompute == (start > 0)
    assert seen[0] == [0, 1, 2]
    assert seen[3] == list(range(12))
    assert seen[4] == [0, 1, 2, *range(6, 15)]
    assert seen[7] == [0, 1, 2, *range(15, 24)]


def test_recompute_never_writes_sink_unless_reanchoring():
    cache = KVCache(1, 1, 1, 1, frame_tokens=1, capacity_frames=6, sink_frames=2)
    for start in range(0, 12, 2):
        plan = cache.plan(start, 2)
        cache.update_and_view(0, plan, torch.full((1, 1, 2, 1), float(start)), torch.zeros(1, 1, 2, 1))
        cache.commit(plan)
    before = cache.k.clone()
    keep = cache.plan(6, 6)
    assert keep.recompute and keep.write_start == 2
    cache.update_and_view(0, keep, torch.full((1, 1, 6, 1), -1.0), torch.zeros(1, 1, 6, 1))
    assert torch.equal(cache.k[..., :2, :], before[..., :2, :])
    reanchor = cache.plan(6, 6, sink_recache=True)
    assert reanchor.write_start == 0
    cache.update_and_view(0, reanchor, torch.full((1, 1, 6, 1), -2.0), torch.zeros(1, 1, 6, 1))
    assert (cache.k == -2.0).all()
    assert (cache.global_end, cache.local_end) == (12, 6)


def test_switch_policies_differ_only_after_the_switch():
    p0, p1 = prompts(2)
    outs = {}
    for policy in SwitchPolicy:
        gen = tiny_generator()
        outs[policy] = run(gen, [Segment(0, p0), Segment(18, p1, policy)], 30)
    for policy in SwitchPolicy:
        torch.testing.assert_close(outs[policy][:, :18], outs[SwitchPolicy.KEEP][:, :18], rtol=0, atol=0)
    after = {p: o[:, 18:21] for p, o in outs.items()}
    assert not torch.allclose(after[SwitchPolicy.RECACHE], after[SwitchPolicy.KEEP])
    assert not torch.allclose(after[SwitchPolicy.CLEAR], after[SwitchPolicy.RECACHE])


def test_the_engine_records_each_switch_it_makes_at_its_chunk_start():
    p0, p1, p2, p3 = prompts(4)
    gen = tiny_generator()
    segments = [Segment(0, p0), Segment(4, p1, SwitchPolicy.KEEP), Segment(5, p2, SwitchPolicy.CLEAR),
                Segment(9, p3, SwitchPolicy.RECACHE)]  # fmt: skip
    chunks = list(gen.stream(segments, 18))
    # 4 and 5 share the chunk at 3..5, so the second waits for the next chunk: one switch per chunk.
    assert gen.switches == [
        SwitchEvent(6, SwitchPolicy.KEEP),
        SwitchEvent(9, SwitchPolicy.CLEAR),
        SwitchEvent(12, SwitchPolicy.RECACHE),
    ]
    assert [c.start for c in chunks if c.switched] == [e.latent for e in gen.switches]
    gen.reset()
    assert gen.switches == []
    gen.set_prompt(p0)
    gen.step()
    gen.switch(p1, "keep")
    assert gen.switches == [SwitchEvent(3, SwitchPolicy.KEEP)]


def test_clear_restarts_the_video():
    """After a clear switch the next chunk equals the first chunk of a fresh video with that prompt."""
    p0, p1 = prompts(2)
    switched = run(tiny_generator(), [Segment(0, p0), Segment(9, p1, SwitchPolicy.CLEAR)], 12)
    gen = tiny_generator()
    gen.reset()
    gen.set_prompt(p1)
    gen.emitted = 9
    fresh = gen.step()
    torch.testing.assert_close(switched[:, 9:12], fresh, rtol=0, atol=0)


def test_keep_leaves_cache_untouched_and_recache_rewrites_window():
    p0, p1 = prompts(2)
    for policy, sink_mode in [
        (SwitchPolicy.KEEP, SinkMode.KEEP),
        (SwitchPolicy.RECACHE, SinkMode.KEEP),
        (SwitchPolicy.RECACHE, SinkMode.REANCHOR),
    ]:
        gen = tiny_generator(sink_mode=sink_mode)
        gen.reset()
        gen.set_prompt(p0)
        for _ in range(6):
            gen.step()
        sink_tokens = gen.cache.sink_tokens
        before = gen.cache.k.clone()
        gen.switch(p1, policy)
        after = gen.cache.k
        sink_same = torch.equal(before[..., :sink_tokens, :], after[..., :sink_tokens, :])
        rest_same = torch.equal(before[..., sink_tokens:, :], after[..., sink_tokens:, :])
        if policy is SwitchPolicy.KEEP:
            assert sink_same and rest_same
        elif sink_mode is SinkMode.KEEP:
            assert sink_same and not rest_same
        else:
            assert not sink_same and not rest_same


def test_memory_is_flat_over_200_chunks():
    (p0,) = prompts(1)
    gen = tiny_generator(frames=600)
    ptr, shape = gen.cache.k.data_ptr(), gen.cache.k.shape
    sizes = []
    for chunk in gen.stream([Segment(0, p0)], 600):
        if chunk.index in (10, 199):
            sizes.append(sum(t.numel() for t in (gen.cache.k, gen.cache.v, gen.history)))
        assert gen.history.shape[1] <= gen.cfg.window
    assert chunk.index == 199
    assert sizes[0] == sizes[1]
    assert gen.cache.k.data_ptr() == ptr and gen.cache.k.shape == shape


def test_rope_table_limit_is_a_clear_error():
    (p0,) = prompts(1)
    gen = tiny_generator()
    gen.reset()
    gen.set_prompt(p0)
    gen.frame = 1022
    gen.cache.global_end = gen.cache.local_end = 0
    with pytest.raises(ValueError, match="RoPE table of 1024"):
        gen.step()


def test_bidirectional_forward_without_cache():
    torch.manual_seed(0)
    model = CausalWanDiT(TINY).eval()
    x = torch.randn(2, 5, *LATENT)
    prompt = model.encode_prompt(torch.randn(2, 3, 8))
    out = model(x, torch.full((2, 5), 500.0), prompt)
    assert out.shape == x.shape
    flipped = model(x.flip(1), torch.full((2, 5), 500.0), prompt)
    assert not torch.allclose(out[:, 0], flipped[:, -1], atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"chunk_frames": 0}, "chunk_frames"),
        ({"sink": 12, "window": 12}, "sink < window"),
        ({"window": 4, "sink": 3}, "whole chunk"),
        ({"steps": ()}, "^at least one denoising step is needed$"),
        ({"positions": "sliding"}, "^positions must be one of absolute, relative, got 'sliding'$"),
    ],
)
def test_engine_config_is_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EngineConfig(**kwargs)


def test_segments_must_start_at_zero_and_be_ordered():
    p0, p1 = prompts(2)
    gen = tiny_generator()
    with pytest.raises(ValueError, match="^the first segment must start at frame 0$"):
        next(gen.stream([Segment(3, p0)], 6))
    with pytest.raises(ValueError, match="in order"):
        next(gen.stream([Segment(0, p0), Segment(9, p1), Segment(6, p1)], 12))


def test_compiled_blocks_after_warm_up_match_eager_and_compile_nothing_more():
    from torch._dynamo.utils import counters

    from longlive_cli.engine import warm_up

    eager = tiny_generator()
    p = prompts(2)
    segments = [Segment(0, p[0]), Segment(12, p[1], SwitchPolicy.RECACHE)]
    expected = run(eager, segments, 24)
    compiled = tiny_generator()
    compiled.model.compile_blocks(backend="aot_eager")  # the graphs dynamo makes, without code generation
    before = counters["stats"]["unique_graphs"]
    warm_up(compiled.model, compiled.cfg, LATENT, p[0])
    graphs = counters["stats"]["unique_graphs"]
    assert graphs > before
    out = run(compiled, segments, 24)
    assert counters["stats"]["unique_graphs"] == graphs, "the stream compiled graphs the warm-up had not met"
    assert (out - expected).abs().max().item() <= 1e-4


def test_relative_positions_equal_absolute_until_the_window_fills():
    """Slot positions are frame numbers while the cache fills, so both modes agree on the first window only."""
    (p0,) = prompts(1)
    absolute = run(tiny_generator(), [Segment(0, p0)], 18)
    relative = run(tiny_generator(positions="relative"), [Segment(0, p0)], 18)
    torch.testing.assert_close(relative[:, :12], absolute[:, :12], rtol=0, atol=0)
    assert not torch.allclose(relative[:, 12:], absolute[:, 12:])


def test_relative_positions_stream_past_the_rope_table_in_flat_memory():
    """1053 latent frames (past the 1024-entry table, about 4.4 min of video) with positions bounded by the window."""
    (p0,) = prompts(1)
    gen = tiny_generator(frames=1053, positions="relative")
    ptr = gen.cache.k.data_ptr()
    starts = []
    for chunk in gen.stream([Segment(0, p0)], 1053):
        assert gen.history.shape[1] <= gen.cfg.window
        starts.append(chunk.start)
    assert starts[-1] == 1050 and torch.isfinite(chunk.latents).all()
    assert gen.cache.k.data_ptr() == ptr
    assert max(start + frames for start, frames, *_ in gen.model.rope._cache) <= gen.cfg.window


def test_seeded_noise_makes_a_longer_run_extend_a_shorter_one():
    """Chunk noise comes from one seeded stream, so a video is the start of any longer video with the same seed."""
    (p0,) = prompts(1)
    outs = []
    for frames in (18, 36):
        torch.manual_seed(0)
        gen = StreamingGenerator(CausalWanDiT(TINY).eval(), EngineConfig(positions="relative"), LATENT, SeededNoise(5))
        outs.append(run(gen, [Segment(0, p0)], frames))
    torch.testing.assert_close(outs[1][:, :18], outs[0], rtol=0, atol=0)


@pytest.mark.parametrize(
    ("word", "expected"),
    [("keep", SwitchPolicy.KEEP), (" Recache ", SwitchPolicy.RECACHE), ("CLEAR", SwitchPolicy.CLEAR)],
)
def test_switch_policy_parses_as_users_write_it(word, expected):
    assert SwitchPolicy.parse(word) is expected
    assert str(expected) == f"{expected}" == expected.value


@pytest.mark.parametrize(
    ("word", "message"),
    [
        ("recash", "got 'recash'; did you mean 'recache'?"),
        ("zzz", "got 'zzz'"),
        (3, "got 3"),
        (None, "got None"),
        ("x" * 38, "got '" + "x" * 38 + "'"),  # a quoted word of 40 characters is shown whole
        ("x" * 39, "got '" + "x" * 36 + "..."),  # a longer one is cut to 37 and marked
    ],
)
def test_switch_policy_errors_name_the_choices(word, message):
    with pytest.raises(ValueError, match="expected one of recache, keep, clear") as e:
        SwitchPolicy.parse(word)
    assert str(e.value).endswith(message)


def test_a_length_off_the_chunk_grid_ends_on_a_shorter_last_chunk():
    p0 = prompts(1)[0]
    chunks = list(tiny_generator().stream([Segment(0, p0)], 7))
    assert [(c.start, c.latents.shape[1]) for c in chunks] == [(0, 3), (3, 3), (6, 1)]


def test_reset_forgets_the_previous_video_and_its_prompt():
    p0 = prompts(1)[0]
    gen = tiny_generator()
    list(gen.stream([Segment(0, p0)], 6))
    gen.reset()
    assert (gen.history.shape[1], gen.frame, gen.emitted, gen.cache.global_end) == (0, 0, 0, 0)
    with pytest.raises(RuntimeError, match="set a prompt before generating"):
        gen.step()


def test_a_bfloat16_model_keeps_its_history_in_bfloat16_through_a_recache():
    p0, p1 = prompts(2)
    torch.manual_seed(0)
    model = CausalWanDiT(TINY).eval().to(torch.bfloat16)
    gen = StreamingGenerator(model, EngineConfig(), LATENT, FixedNoise(64))
    assert gen.history.dtype == torch.bfloat16
    chunks = list(gen.stream([Segment(0, p0), Segment(3, p1)], 6))
    assert gen.history.dtype == torch.bfloat16 and gen.history.shape[1] == 6
    assert all(c.latents.dtype == torch.bfloat16 and c.latents.isfinite().all() for c in chunks)


def test_a_fresh_generator_driven_by_hand_makes_the_streamed_video():
    p0 = prompts(1)[0]
    gen = tiny_generator()
    assert gen.history.shape == (1, 0, *LATENT)
    with pytest.raises(RuntimeError, match="set a prompt before generating"):
        gen.step()
    gen.set_prompt(p0)
    by_hand = torch.cat([gen.step(), gen.step()], dim=1)
    torch.testing.assert_close(by_hand, run(tiny_generator(), [Segment(0, p0)], 6), rtol=0, atol=0)
