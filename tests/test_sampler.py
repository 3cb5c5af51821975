"""The chunk sampler that generation and training share: its training hooks, and the engine's video without them."""

from __future__ import annotations

import pytest
import torch

from longlive_cli.engine import EngineConfig, SeededNoise, Segment, StreamingGenerator
from longlive_cli.models.dit import CausalWanDiT, DiTConfig
from longlive_cli.sampler import ChunkSampler, SlotNoise, TrainingKVCache

TINY = DiTConfig(dim=32, ffn_dim=64, num_heads=2, num_layers=2, text_dim=8, text_len=4, freq_dim=16)
LATENT = (16, 4, 4)
CFG = EngineConfig(window=6, sink=3)


def tiny_model() -> CausalWanDiT:
    torch.manual_seed(0)
    return CausalWanDiT(TINY)


def context(batch: int = 1) -> torch.Tensor:
    return torch.randn(batch, 4, 8, generator=torch.Generator().manual_seed(1))


def slots(*seeds: int) -> SlotNoise:
    return SlotNoise([torch.Generator().manual_seed(s) for s in seeds])


def test_training_rollout_with_inference_hooks_makes_the_engines_video() -> None:
    """A training cache, per-slot noise and one call over four chunks give the engine's frames, bit for bit."""
    model = tiny_model().eval()
    gen = StreamingGenerator(model, CFG, LATENT, SeededNoise(3))
    video = torch.cat([c.latents for c in gen.stream([Segment(0, context())], 12)], 1)
    sampler = ChunkSampler(model, CFG, slots(3))
    cache = sampler.new_cache(1, LATENT, training=True)
    assert isinstance(cache, TrainingKVCache)
    with torch.no_grad():
        out = sampler.generate(model.encode_prompt(context()), cache, 0, (1, 12, *LATENT))
    torch.testing.assert_close(out, video, rtol=0, atol=0)
    torch.testing.assert_close(cache.k, gen.cache.k, rtol=0, atol=0)


def test_a_slot_draws_the_same_noise_whatever_the_batch_around_it() -> None:
    """Slot noise makes a sequence depend on its own generator only, as data-parallel training needs."""
    model = tiny_model().eval()
    ctx, outs = context(2), []
    for noise, rows in ((slots(1, 2), ctx), (slots(2), ctx[1:])):
        sampler = ChunkSampler(model, CFG, noise, noisy_context=True)
        cache = sampler.new_cache(len(rows), LATENT, training=True)
        with torch.no_grad():
            outs.append(sampler.generate(model.encode_prompt(rows), cache, 0, (len(rows), 9, *LATENT), stop=1))
    pair, alone = outs
    torch.testing.assert_close(pair[1:], alone, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(pair[0], alone[0])


def test_the_exit_step_ends_the_chunk_and_alone_carries_gradient() -> None:
    """``stop`` returns that step's x0 of the sampler's chain; with ``grad`` its forward, and no other, trains."""
    model = tiny_model()
    ctx = context()
    sampler = ChunkSampler(model, CFG, slots(4))
    cache = sampler.new_cache(1, LATENT, training=True)
    x0 = sampler.generate(model.encode_prompt(ctx), cache, 0, (1, 3, *LATENT), stop=1, grad=True)
    assert x0.requires_grad and not cache.k.requires_grad  # the cache is cut after the chunk
    x0.square().sum().backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    model.zero_grad()

    # The same chain by hand: step 0 without gradient, re-noise, step 1 with it.
    g = torch.Generator().manual_seed(4)
    schedule, steps = sampler.schedule, sampler.timesteps
    cache = sampler.new_cache(1, LATENT, training=True)
    prompt = model.encode_prompt(ctx)
    x = torch.randn(1, 3, *LATENT, generator=g)
    t = torch.full((1, 3), steps[0])
    with torch.no_grad():
        first = schedule.x0_from_flow(model(x, t, prompt, cache, 0), x, t)
    t = torch.full((1, 3), steps[1])
    x = schedule.add_noise(first, torch.randn(3, *LATENT, generator=g).view(1, 3, *LATENT), t)
    expected = schedule.x0_from_flow(model(x, t, prompt, cache, 0), x, t)
    torch.testing.assert_close(x0, expected, rtol=0, atol=0)
    expected.square().sum().backward()
    for k, p in model.named_parameters():
        torch.testing.assert_close(grads[k], p.grad, rtol=0, atol=0, msg=k)
    assert any(g.abs().sum() > 0 for g in grads.values())


def test_sampler_refuses_steps_it_does_not_have_and_gradient_without_a_training_cache() -> None:
    model = tiny_model()
    sampler = ChunkSampler(model, CFG, slots(0))
    prompt = model.encode_prompt(context())
    with pytest.raises(
        ValueError, match=r"^a rollout with gradient needs a training cache \(new_cache\(\.\.\., training=True\)\)$"
    ):
        sampler.generate(prompt, sampler.new_cache(1, LATENT), 0, (1, 3, *LATENT), grad=True)
    with pytest.raises(ValueError, match=r"steps 0\.\.4 are not within the sampler's 4 steps"):
        sampler.generate(prompt, sampler.new_cache(1, LATENT), 0, (1, 3, *LATENT), stop=4)


def test_a_step_longer_than_a_chunk_runs_chunk_by_chunk() -> None:
    """The engine's ``step(7)`` with 3-frame chunks is chunks of 3, 3 and 1, as LongLive always generates."""
    model = tiny_model().eval()
    outs = []
    for sizes in ((7,), (3, 3, 1)):
        gen = StreamingGenerator(model, CFG, LATENT, SeededNoise(7))
        gen.set_prompt(context())
        outs.append(torch.cat([gen.step(n) for n in sizes], 1))
        assert gen.frame == 7
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


def test_a_checkpointed_rerun_attends_what_the_first_run_saw_and_carries_gradient() -> None:
    cache = TrainingKVCache(1, 1, 1, 1, frame_tokens=1, capacity_frames=3, sink_frames=1)
    cache.recomputable = True
    for frame in range(3):
        plan = cache.plan(frame, 1)
        cache.update_and_view(0, plan, torch.full((1, 1, 1, 1), float(frame)), torch.full((1, 1, 1, 1), -frame))
        cache.commit(plan)
    plan = cache.plan(3, 1)  # overflows: frame 1 rolls out
    k = torch.full((1, 1, 1, 1), 3.0, requires_grad=True)
    v = torch.full((1, 1, 1, 1), -3.0, requires_grad=True)
    with torch.enable_grad():
        first = cache.update_and_view(0, plan, k, v)
        rerun = cache.update_and_view(0, plan, k, v)  # activation checkpointing runs the block again
    for keys, values in (first, rerun):
        assert keys.flatten().tolist() == [0.0, 2.0, 3.0]
        assert values.flatten().tolist() == [0.0, -2.0, -3.0]
    # The buffer moved on once, holds no graph, and the rerun's keys and values lead back to k and v.
    assert cache.k.flatten().tolist() == [0.0, 2.0, 3.0] and cache.v.flatten().tolist() == [0.0, -2.0, -3.0]
    assert not cache.k.requires_grad and not cache.v.requires_grad
    (rerun[0].sum() + 2 * rerun[1].sum()).backward()
    assert (k.grad.item(), v.grad.item()) == (1.0, 2.0)


def test_detach_cuts_both_buffers_from_the_graph() -> None:
    cache = TrainingKVCache(1, 1, 1, 1, frame_tokens=1, capacity_frames=3, sink_frames=1)
    k = torch.ones(1, 1, 1, 1, requires_grad=True)
    with torch.enable_grad():
        cache.update_and_view(0, cache.plan(0, 1), k, 2 * k)
    assert cache.k.requires_grad and cache.v.requires_grad
    cache.detach()
    assert not cache.k.requires_grad and not cache.v.requires_grad
    assert cache.v.flatten().tolist() == [2.0, 0.0, 0.0]
