"""Parity with vectors produced by the reference implementation on tiny random weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from longlive_cli.engine import EngineConfig, Segment, SinkMode, StreamingGenerator, SwitchPolicy
from longlive_cli.models.dit import CausalWanDiT, DiTConfig
from longlive_cli.schedule import FlowMatchSchedule

GOLDEN = Path(__file__).parent / "data" / "golden"


class ReplayNoise:
    """Feeds the recorded initial noise and re-noise draws back in order."""

    def __init__(self, noise: torch.Tensor, renoise: torch.Tensor):
        self.noise = noise
        self.draws = iter(renoise)

    def initial(self, frame: int, shape: tuple[int, ...]) -> torch.Tensor:
        return self.noise[:, frame : frame + shape[1]]

    def renoise(self, shape: tuple[int, ...]) -> torch.Tensor:
        draw = next(self.draws)
        assert tuple(draw.shape) == shape
        return draw


@pytest.fixture(scope="module")
def dit_golden():
    meta = json.loads((GOLDEN / "dit_stream.json").read_text())
    tensors = load_file(GOLDEN / "dit_stream.safetensors")
    return meta, tensors


def build_dit(meta: dict, tensors: dict) -> CausalWanDiT:
    model = CausalWanDiT(DiTConfig.from_dict(meta["config"]))
    weights = {k.removeprefix("weights."): v for k, v in tensors.items() if k.startswith("weights.")}
    model.load_state_dict(weights, strict=True)
    return model.eval()


def test_schedule_matches_reference_tables(dit_golden):
    _, t = dit_golden
    sched = FlowMatchSchedule(5.0)
    torch.testing.assert_close(sched.sigmas, t["schedule.sigmas_1000"], rtol=0, atol=0)
    torch.testing.assert_close(sched.timesteps, t["schedule.timesteps_1000"], rtol=0, atol=0)
    torch.testing.assert_close(sched.warped(), t["schedule.warped_timesteps"], rtol=0, atol=0)
    assert sched.warped().tolist() == pytest.approx([1000.0, 937.5, 833.3333, 625.0], abs=1e-3)


@pytest.mark.parametrize("case", ["single", "switch_keep_sink", "switch_reanchor_sink", "two_switches_early"])
def test_dit_stream_case(dit_golden, case):
    meta, t = dit_golden
    spec = meta["cases"][case]
    model = build_dit(meta, t)
    lat = meta["latent"]
    cfg = EngineConfig(
        chunk_frames=meta["num_frame_per_block"],
        window=meta["config"]["local_attn_size"],
        sink=meta["config"]["sink_size"],
        steps=tuple(meta["denoising_step_list"]),
        shift=meta["timestep_shift"],
        context_noise=meta["context_noise"],
        sink_mode=SinkMode.KEEP if spec["global_sink"] else SinkMode.REANCHOR,
    )
    noise = ReplayNoise(t["noise"], t[f"{case}.renoise"])
    gen = StreamingGenerator(model, cfg, (lat["channels"], lat["height"], lat["width"]), noise)
    starts = [0, *spec["switch_frame_indices"]]
    segments = [
        Segment(s, t[f"context.{p}"], SwitchPolicy.RECACHE) for s, p in zip(starts, spec["prompts"], strict=True)
    ]
    chunks = list(gen.stream(segments, lat["frames"]))
    out = torch.cat([c.latents for c in chunks], dim=1)
    expected = t[f"{case}.output"]
    err = (out - expected).abs().max().item()
    assert err <= 1e-4, f"{case}: max abs error {err:.3g}"
    landed = [c.start for c in chunks if c.switched]
    if case == "two_switches_early":
        assert landed == [4, 12]
    if case != "single":
        n = landed[0]
        torch.testing.assert_close(out[:, :n], t["single.output"][:, :n], rtol=0, atol=1e-5)
