import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from longlive_cli.models.vae import (
    LATENT_MEAN,
    LATENT_STD,
    WanVAE,
    WanVAEConfig,
    latent_frames,
    pixel_frames,
)

GOLDEN = Path(__file__).parent / "data" / "golden"
TOL = 1e-4


@pytest.fixture(scope="module")
def golden() -> dict[str, torch.Tensor]:
    return load_file(GOLDEN / "vae.safetensors")


@pytest.fixture(scope="module")
def meta() -> dict:
    return json.loads((GOLDEN / "vae.json").read_text())


@pytest.fixture(scope="module")
def weights(golden: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k.removeprefix("weights."): v for k, v in golden.items() if k.startswith("weights.")}


@pytest.fixture(scope="module")
def vae(meta: dict, weights: dict[str, torch.Tensor]) -> WanVAE:
    cfg = WanVAEConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["config"].items()})
    model = WanVAE(cfg).eval()
    model.load_state_dict(weights, strict=True)
    return model


def _stream(vae: WanVAE, z: torch.Tensor, parts: tuple[int, ...], step: int | None) -> list[torch.Tensor]:
    decoder = vae.stream(step)
    bounds = torch.tensor((0, *parts)).cumsum(0).tolist()
    return [decoder(z[:, :, a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def test_state_dict_matches_golden_keys_and_shapes(vae: WanVAE, weights: dict[str, torch.Tensor]) -> None:
    sd = vae.state_dict()
    assert set(sd) == set(weights)
    assert {k: tuple(v.shape) for k, v in sd.items()} == {k: tuple(v.shape) for k, v in weights.items()}


def test_default_config_is_wan21_size() -> None:
    with torch.device("meta"):
        vae = WanVAE()
    assert len(vae.state_dict()) == 194
    assert sum(p.numel() for p in vae.parameters()) == 126_892_531
    assert (vae.encoder.num_slots, vae.decoder.num_slots) == (24, 32)
    assert (vae.cfg.time_stride, vae.cfg.space_stride) == (4, 8)


def test_latent_stats_match_golden(meta: dict) -> None:
    torch.testing.assert_close(LATENT_MEAN, torch.tensor(meta["latent_mean"]), rtol=0, atol=0)
    torch.testing.assert_close(LATENT_STD, torch.tensor(meta["latent_std"]), rtol=0, atol=0)


def test_frame_count_rule() -> None:
    assert [pixel_frames(t) for t in (1, 2, 3, 21, 120)] == [1, 5, 9, 81, 477]
    assert [latent_frames(t) for t in (1, 5, 9, 81, 477)] == [1, 2, 3, 21, 120]
    with pytest.raises(ValueError):
        latent_frames(8)


@pytest.mark.parametrize("step", [1, None])
@pytest.mark.parametrize("parts", [(1, 1, 1, 1, 1), (5,), (3, 2), (1, 4), (2, 1, 2)])
def test_stream_partitions_match_whole_decode(
    vae: WanVAE, golden: dict[str, torch.Tensor], parts: tuple[int, ...], step: int | None
) -> None:
    outs = _stream(vae, golden["latent"], parts, step)
    assert [o.shape[2] for o in outs] == [pixel_frames(parts[0])] + [4 * n for n in parts[1:]]
    assert (torch.cat(outs, 2) - golden["decoded"]).abs().max() <= TOL


def test_stream_cache_is_constant_size_and_reset_restarts(vae: WanVAE, golden: dict[str, torch.Tensor]) -> None:
    z = golden["latent"]
    decoder = vae.stream()
    decoder(z[:, :, :2])
    shapes = [tuple(t.shape) for t in decoder.cache]
    decoder(z[:, :, 2:])
    assert [tuple(t.shape) for t in decoder.cache] == shapes
    assert all(s[2] == 2 for s in shapes)
    decoder.reset()
    assert (decoder(z) - golden["decoded"]).abs().max() <= TOL


def test_normalize_round_trip(vae: WanVAE, golden: dict[str, torch.Tensor]) -> None:
    z = golden["latent"]
    torch.testing.assert_close(vae.normalize(vae.denormalize(z)), z)


def test_channels_last_weights_decode_the_same(
    meta: dict, weights: dict[str, torch.Tensor], golden: dict[str, torch.Tensor]
) -> None:
    cfg = WanVAEConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["config"].items()})
    model = WanVAE(cfg).eval()
    model.load_state_dict(weights, strict=True)
    model.channels_last()
    conv = model.decoder.conv1
    assert conv.weight.is_contiguous(memory_format=torch.channels_last_3d)
    outs = _stream(model, golden["latent"], (3, 2), None)
    assert (torch.cat(outs, 2) - golden["decoded"]).abs().max() <= TOL
