"""Parity with vectors produced by the reference implementation on tiny random weights."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from longlive_cli.checkpoints import load_state_dict_into, merge_lora, read_dit_state_dict, read_lora, read_tensors
from longlive_cli.engine import EngineConfig, Segment, SinkMode, StreamingGenerator, SwitchPolicy
from longlive_cli.models.dit import CausalWanDiT, DiTConfig
from longlive_cli.models.t5 import UMT5Config, UMT5Encoder
from longlive_cli.models.vae import WanVAE, WanVAEConfig
from longlive_cli.schedule import FlowMatchSchedule

GOLDEN = Path(__file__).parent / "data" / "golden"
# LONGLIVE_TEST_DEVICE=cuda runs the same comparisons on a GPU, in float32 with TF32 off, at the same tolerances.
DEVICE = torch.device(os.environ.get("LONGLIVE_TEST_DEVICE", "cpu"))
if DEVICE.type == "cuda":
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


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
    return model.eval().to(DEVICE)


def test_schedule_matches_reference_tables(dit_golden):
    _, t = dit_golden
    sched = FlowMatchSchedule(5.0)
    torch.testing.assert_close(sched.sigmas, t["schedule.sigmas_1000"], rtol=0, atol=0)
    torch.testing.assert_close(sched.timesteps, t["schedule.timesteps_1000"], rtol=0, atol=0)
    torch.testing.assert_close(sched.warped(), t["schedule.warped_timesteps"], rtol=0, atol=0)
    assert sched.warped().tolist() == pytest.approx([1000.0, 937.5, 833.3333, 625.0], abs=1e-3)


def run_case(meta: dict, t: dict, case: str, positions: str = "absolute", compiled: bool = False) -> tuple:
    """Stream a golden case through the engine with the recorded noise; (latents [1, F, C, H, W], switch frames)."""
    spec = meta["cases"][case]
    model = build_dit(meta, t)
    if compiled:
        model.compile_blocks()
    lat = meta["latent"]
    cfg = EngineConfig(
        chunk_frames=meta["num_frame_per_block"],
        window=meta["config"]["local_attn_size"],
        sink=meta["config"]["sink_size"],
        steps=tuple(meta["denoising_step_list"]),
        shift=meta["timestep_shift"],
        context_noise=meta["context_noise"],
        sink_mode=SinkMode.KEEP if spec["global_sink"] else SinkMode.REANCHOR,
        positions=positions,
    )
    noise = ReplayNoise(t["noise"], t[f"{case}.renoise"])
    gen = StreamingGenerator(model, cfg, (lat["channels"], lat["height"], lat["width"]), noise)
    starts = [0, *spec["switch_frame_indices"]]
    segments = [
        Segment(s, t[f"context.{p}"], SwitchPolicy.RECACHE) for s, p in zip(starts, spec["prompts"], strict=True)
    ]
    chunks = list(gen.stream(segments, lat["frames"]))
    return torch.cat([c.latents for c in chunks], dim=1).cpu(), [c.start for c in chunks if c.switched]


@pytest.mark.parametrize(
    ("case", "compiled"),
    [("single", False), ("switch_keep_sink", False), ("switch_reanchor_sink", False), ("two_switches_early", False),
     ("switch_keep_sink", True)],
)  # fmt: skip
def test_dit_stream_case(dit_golden, case, compiled):
    meta, t = dit_golden
    out, landed = run_case(meta, t, case, compiled=compiled)
    expected = t[f"{case}.output"]
    err = (out - expected).abs().max().item()
    assert err <= 1e-4, f"{case}: max abs error {err:.3g}"
    if case == "two_switches_early":
        assert landed == [4, 12]
    if case != "single":
        n = landed[0]
        torch.testing.assert_close(out[:, :n], t["single.output"][:, :n], rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def infinity_golden():
    meta = json.loads((GOLDEN / "dit_infinity.json").read_text())
    return meta, load_file(GOLDEN / "dit_infinity.safetensors")


@pytest.mark.parametrize(
    ("case", "compiled"),
    [("single_long", False), ("switch_keep_sink", False), ("switch_reanchor_sink", False), ("single_long", True)],
)
def test_dit_infinity_case(infinity_golden, case, compiled):
    """Relative positions reproduce LongLive's infinite-length mode: un-rotated cache, slot-relative RoPE."""
    meta, t = infinity_golden
    out, landed = run_case(meta, t, case, positions="relative", compiled=compiled)
    err = (out - t[f"{case}.output"]).abs().max().item()
    assert err <= 1e-4, f"{case}: max abs error {err:.3g}"
    if case != "single_long":
        assert landed == [18]
        torch.testing.assert_close(out[:, :18], t["single_long.output"][:, :18], rtol=0, atol=1e-5)


def test_dit_infinity_absolute_positions_are_the_ordinary_mode(infinity_golden):
    """Absolute positions on the same 40 frames give the ordinary mode and miss the infinite one by far."""
    meta, t = infinity_golden
    out, _ = run_case(meta, t, "plain_single_long", positions="absolute")
    err = (out - t["plain_single_long.output"]).abs().max().item()
    assert err <= 1e-4, f"plain_single_long: max abs error {err:.3g}"
    miss = (out - t["single_long.output"]).abs()
    assert miss[:, :6].max().item() <= 1e-5  # the window is not full yet: both modes agree
    assert miss[:, 6:].max().item() > 100 * 1e-4


def golden_weights(name: str) -> tuple[dict, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    meta = json.loads((GOLDEN / f"{name}.json").read_text())
    tensors = load_file(GOLDEN / f"{name}.safetensors")
    weights = {k.removeprefix("weights."): v for k, v in tensors.items() if k.startswith("weights.")}
    return meta, tensors, weights


@pytest.fixture(scope="module")
def vae_golden():
    meta, t, weights = golden_weights("vae")
    cfg = WanVAEConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["config"].items()})
    vae = WanVAE(cfg).eval()
    load_state_dict_into(vae, weights, "vae.safetensors")
    return vae.to(DEVICE), t


def test_vae_whole_decode(vae_golden):
    vae, t = vae_golden
    with torch.no_grad():
        out = vae.decode(t["latent"].to(DEVICE)).cpu()
    assert out.shape == t["decoded"].shape
    assert (out - t["decoded"]).abs().max().item() <= 1e-4


def test_vae_streamed_decode_in_calls_of_2_1_2(vae_golden):
    vae, t = vae_golden
    decoder = vae.stream()
    z = t["latent"].to(DEVICE)
    with torch.no_grad():
        parts = [decoder(z[:, :, a:b]) for a, b in ((0, 2), (2, 3), (3, 5))]
    assert [p.shape[2] for p in parts] == [5, 4, 8]
    assert (torch.cat(parts, dim=2).cpu() - t["decoded_streamed"]).abs().max().item() <= 1e-4


def test_vae_encode(vae_golden):
    vae, t = vae_golden
    with torch.no_grad():
        mu = vae.encode(t["video"].to(DEVICE)).cpu()
    assert (mu - t["encoded_mu"]).abs().max().item() <= 1e-4


def test_umt5_encoder():
    _, t, weights = golden_weights("umt5_encoder")
    model = UMT5Encoder(UMT5Config.from_state_dict(weights)).eval()
    load_state_dict_into(model, weights, "umt5_encoder.safetensors")
    with torch.no_grad():
        out = model.to(DEVICE)(t["ids"].to(DEVICE), t["mask"].to(DEVICE)).cpu()
    assert (out - t["output"]).abs().max().item() <= 1e-4


def test_longlive_checkpoint_plus_lora_gives_merged_weights():
    meta = json.loads((GOLDEN / "lora.json").read_text())
    base = read_dit_state_dict(GOLDEN / "longlive_base_tiny.pt")
    lora = read_lora(GOLDEN / "lora_tiny.pt", alpha=8.0)
    assert (lora.rank, len(lora.targets)) == (4, meta["lora_targets"])
    merged = merge_lora(base, lora)
    expected = read_tensors(GOLDEN / "lora_merged_expected.safetensors")
    assert merged.keys() == expected.keys()
    assert max((merged[k] - expected[k]).abs().max().item() for k in expected) <= 1e-6
    model = CausalWanDiT(DiTConfig.from_dict(meta["config"]))
    load_state_dict_into(model, merged, "merged")
