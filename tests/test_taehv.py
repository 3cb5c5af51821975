"""TAEHV: the taew2_1 layout, loading from both file formats, streaming equal to whole-clip decoding."""

from __future__ import annotations

import copy
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from longlive_cli.checkpoints import CheckpointError
from longlive_cli.models.taehv import TAEHV, MemBlock, TAEHVConfig, TGrow, infer_config, load_taehv
from longlive_cli.models.vae import LATENT_MEAN, LATENT_STD

NARROW = TAEHVConfig(decoder_widths=(64, 32, 16), encoder_width=16)
STREAM_TOLERANCE = 1e-5


def _randomize(model: TAEHV, seed: int = 0) -> TAEHV:
    """Weights scaled so that activations neither vanish nor saturate the output clamp."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=g) * 0.9 / math.sqrt(fan_in))
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=g) * 0.1)
        model.decoder[-1].bias.fill_(0.5)
    return model.eval()


def _frame_by_frame(model: TAEHV, z: torch.Tensor) -> torch.Tensor:
    """taehv's sequential decode, one frame at a time in causal order, as an independent reference."""
    memory: dict[int, torch.Tensor] = {}
    frames: list[torch.Tensor] = []

    def run(i: int, x: torch.Tensor) -> None:
        if i == len(model.decoder):
            frames.append(x)
            return
        layer = model.decoder[i]
        if isinstance(layer, MemBlock):
            past, memory[i] = memory.get(i, torch.zeros_like(x)), x
            run(i + 1, layer(x, past))
        elif isinstance(layer, TGrow):
            for frame in layer(x).split(1):
                run(i + 1, frame)
        else:
            run(i + 1, layer(x))

    with torch.no_grad():
        for t in range(z.shape[2]):
            run(0, z[:, :, t])
    return torch.stack(frames[model.cfg.frames_to_trim :], 2).clamp(0, 1) * 2 - 1


@pytest.fixture(scope="module")
def narrow() -> TAEHV:
    return _randomize(TAEHV(NARROW))


@pytest.fixture(scope="module")
def full() -> TAEHV:
    return TAEHV()


@pytest.fixture(scope="module")
def latents() -> torch.Tensor:
    return torch.randn(2, 16, 7, 3, 2, generator=torch.Generator().manual_seed(1))


def test_default_config_is_taew2_1_layout() -> None:
    with torch.device("meta"):
        model = TAEHV()
    sd = model.state_dict()
    assert len(sd) == 128
    assert sum(p.numel() for p in model.encoder.parameters()) == 1_470_928
    assert sum(p.numel() for p in model.decoder.parameters()) == 9_844_611
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    assert shapes["decoder.3.conv.0.weight"] == (256, 512, 3, 3)
    assert shapes["decoder.7.conv.weight"] == (256, 256, 1, 1)
    assert shapes["decoder.13.conv.weight"] == (256, 128, 1, 1)
    assert shapes["decoder.19.conv.weight"] == (128, 64, 1, 1)
    assert shapes["decoder.8.weight"] == (128, 256, 3, 3) and "decoder.8.bias" not in shapes
    assert shapes["decoder.22.weight"] == (3, 64, 3, 3)
    assert shapes["encoder.2.conv.weight"] == (64, 128, 1, 1)
    assert shapes["encoder.12.conv.weight"] == (64, 64, 1, 1)
    assert shapes["encoder.3.weight"] == (64, 64, 3, 3) and "encoder.3.bias" not in shapes
    assert shapes["encoder.17.weight"] == (16, 64, 3, 3)
    assert not any(".skip." in k for k in shapes)
    assert TAEHVConfig().frames_to_trim == 3 and TAEHVConfig().space_upscale == 8
    assert infer_config(sd) == TAEHVConfig()


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_fp16_file_loads_back(tmp_path: Path, suffix: str, full: TAEHV) -> None:
    state = {k: v.half() for k, v in full.state_dict().items()}
    path = tmp_path / f"taew2_1{suffix}"
    torch.save(state, path) if suffix == ".pth" else save_file(state, path)
    loaded = load_taehv(path)
    assert loaded.cfg == TAEHVConfig()
    got = loaded.state_dict()
    assert all(got[k].dtype == torch.float32 and torch.equal(got[k], v.float()) for k, v in state.items())


def test_narrow_file_round_trips(tmp_path: Path, narrow: TAEHV, latents: torch.Tensor) -> None:
    path = tmp_path / "narrow.safetensors"
    save_file(narrow.state_dict(), path)
    loaded = load_taehv(path)
    assert loaded.cfg == NARROW
    assert torch.equal(loaded.decode(latents), narrow.decode(latents))
    channels_last = load_taehv(path, memory_format=torch.channels_last)
    assert channels_last.decoder[1].weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(channels_last.decode(latents), narrow.decode(latents))


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_streaming_equals_whole_clip(narrow: TAEHV, latents: torch.Tensor, memory_format: torch.memory_format) -> None:
    narrow = copy.deepcopy(narrow).to(memory_format=memory_format)
    whole = narrow.decode(latents)
    assert whole.shape == (2, 3, 1 + 4 * 6, 24, 16)
    decoder = narrow.stream()
    parts = [decoder(chunk) for chunk in latents.split([1, 2, 3, 1], dim=2)]
    assert [p.shape[2] for p in parts] == [1, 8, 12, 4]
    assert (torch.cat(parts, 2) - whole).abs().max() <= STREAM_TOLERANCE
    assert (narrow.decode(latents[:, :, 3:6]) - parts[2][:, :, 3:]).abs().max() > 1e-3  # the memory matters
    decoder.reset()
    assert torch.equal(decoder(latents[:, :, :1]), parts[0])
    with pytest.raises(ValueError, match="empty"):
        decoder(latents[:, :, :0])


def test_matches_frame_by_frame_reference(narrow: TAEHV, latents: torch.Tensor) -> None:
    torch.testing.assert_close(narrow.decode(latents[:1]), _frame_by_frame(narrow, latents[:1]))


def test_output_range_and_layout(narrow: TAEHV, latents: torch.Tensor) -> None:
    video = narrow.decode(latents * 10)
    assert video.min() >= -1 and video.max() <= 1 and video.is_contiguous()
    raw = narrow.decode_video(latents.transpose(1, 2))
    assert raw.shape == (2, 28, 3, 24, 16)
    torch.testing.assert_close(narrow.decode(latents), raw[:, 3:].transpose(1, 2) * 2 - 1)


def test_taehv_convention_is_differentiable(narrow: TAEHV, latents: torch.Tensor) -> None:
    model = copy.deepcopy(narrow).train()
    video = model.decode_video(latents.transpose(1, 2))
    (video.square().mean() + model.encode_video(video[:, :4]).square().mean()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_encode_shape_and_decode_round_trip(narrow: TAEHV, latents: torch.Tensor) -> None:
    video = narrow.decode(latents)
    z = narrow.encode(video)
    assert z.shape == latents.shape
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        narrow.encode(video[:, :, :4])


def test_raw_latents_denormalise(narrow: TAEHV, latents: torch.Tensor) -> None:
    raw = TAEHV(replace(NARROW, raw_latents=True)).eval()
    raw.load_state_dict(narrow.state_dict())
    mean, std = LATENT_MEAN.view(1, -1, 1, 1, 1), LATENT_STD.view(1, -1, 1, 1, 1)
    torch.testing.assert_close(raw.decode(latents), narrow.decode(latents * std + mean))
    video = narrow.decode(latents)
    torch.testing.assert_close(raw.encode(video), (narrow.encode(video) - mean) / std)


def test_preview_decoder_from_full_file(tmp_path: Path, narrow: TAEHV, latents: torch.Tensor) -> None:
    path = tmp_path / "narrow.pth"
    torch.save(narrow.state_dict(), path)
    preview = load_taehv(path, decoder_time_upscale=(False, False), decoder_space_upscale=(True, False, False))
    assert preview.cfg.frames_to_trim == 0
    assert preview.decode(latents).shape == (2, 3, 7, 6, 4)
    tgrow = "decoder.13.conv.weight"
    assert torch.equal(preview.state_dict()[tgrow], narrow.state_dict()[tgrow][32:])


def test_bad_files_name_the_file(tmp_path: Path, narrow: TAEHV) -> None:
    state = narrow.state_dict()
    missing = tmp_path / "missing_key.pth"
    torch.save({k: v for k, v in state.items() if k != "decoder.22.bias"}, missing)
    with pytest.raises(CheckpointError, match="missing_key.pth") as err:
        load_taehv(missing)
    assert "decoder.22.bias" in str(err.value)
    wrong = tmp_path / "wrong_shape.safetensors"
    save_file({**state, "decoder.4.conv.2.weight": torch.zeros(64, 64, 1, 1)}, wrong)
    with pytest.raises(CheckpointError, match="wrong_shape.safetensors") as err:
        load_taehv(wrong)
    assert "decoder.4.conv.2.weight" in str(err.value)
