"""Loading models from a download tree, a converted file, and what goes wrong with them."""

from __future__ import annotations

import shutil
from dataclasses import replace

import pytest
import torch

from longlive_cli.bundle import (
    PRESETS,
    ModelSpec,
    convert,
    embedded_path,
    find_layout,
    load_bundle,
    read_bundle_spec,
)
from longlive_cli.checkpoints import CheckpointError

from .fakes import FAST_SPEC, TINY_SPEC, write_converted, write_download


def test_spec_json_round_trip():
    assert ModelSpec.from_json(TINY_SPEC.to_json()) == TINY_SPEC
    assert TINY_SPEC.latent_shape == (16, 4, 4)
    sized = replace(TINY_SPEC, sizes=((32, 32), (64, 32)))
    assert ModelSpec.from_json(sized.to_json()) == sized


def test_a_model_trained_at_some_sizes_refuses_the_others():
    sized = replace(TINY_SPEC, sizes=((32, 32), (64, 32)))
    sized.check_size((64, 32))
    with pytest.raises(ValueError, match="test-tiny renders only 32x32 or 64x32: it was trained at that size"):
        sized.check_size((32, 64))
    with pytest.raises(ValueError, match="not a positive multiple"):
        sized.check_size((40, 32))
    TINY_SPEC.check_size((32, 64))


def test_the_embedded_model_renders_only_the_size_it_was_trained_at():
    """Its header predates the field: the spec JSON beside the weights supplies it."""
    spec = read_bundle_spec(embedded_path())
    assert spec.sizes == ((96, 96),) and spec.size == (96, 96)
    spec.check_size((96, 96))
    for size in [(128, 128), (160, 96), (64, 64)]:
        with pytest.raises(ValueError, match="tiny renders only 96x96"):
            spec.check_size(size)


def test_download_loads_generator_with_lora_merged(tmp_path):
    written = write_download(tmp_path)
    bundle = load_bundle(tmp_path)
    assert bundle.spec.dit == TINY_SPEC.dit
    assert bundle.spec.name == "longlive-1.3b"
    state = bundle.dit.state_dict()
    a = written["lora"]["base_model.model.blocks.1.ffn.2.lora_A.weight"]
    b = written["lora"]["base_model.model.blocks.1.ffn.2.lora_B.weight"]
    torch.testing.assert_close(state["blocks.1.ffn.2.weight"], written["dit"]["blocks.1.ffn.2.weight"] + b @ a / 1.0)
    torch.testing.assert_close(state["head.head.bias"], written["dit"]["head.head.bias"])
    torch.testing.assert_close(bundle.vae.state_dict()["decoder.conv1.weight"], written["vae"]["decoder.conv1.weight"])
    emb = bundle.text.encode(["a red circle", "a blue square moving left"])
    assert emb.shape == (2, 8, 16)
    assert emb[0, 4:].abs().sum() == 0


def test_download_without_longlive_files_uses_wan_weights(tmp_path):
    write_download(tmp_path, with_lora=False)
    shutil.rmtree(tmp_path / "longlive_models")
    layout = find_layout(tmp_path)
    assert layout.generator is None and layout.lora is None
    assert load_bundle(tmp_path).spec.name == "wan2.1"


def test_convert_then_load_gives_the_same_weights(tmp_path):
    write_download(tmp_path / "dl")
    out = tmp_path / "model.safetensors"
    convert(tmp_path / "dl", out, dtype=torch.float32)
    assert read_bundle_spec(out).dit == TINY_SPEC.dit
    assert (tmp_path / "model.json").is_file()
    a, b = load_bundle(tmp_path / "dl"), load_bundle(out)
    for key, value in a.dit.state_dict().items():
        assert torch.equal(value, b.dit.state_dict()[key]), key
    torch.testing.assert_close(a.text.encode(["a red circle"]), b.text.encode(["a red circle"]))


def test_converted_bf16_file_is_half_the_size(tmp_path):
    write_download(tmp_path / "dl")
    convert(tmp_path / "dl", tmp_path / "f32.safetensors", dtype=torch.float32)
    convert(tmp_path / "dl", tmp_path / "bf16.safetensors")
    ratio = (tmp_path / "bf16.safetensors").stat().st_size / (tmp_path / "f32.safetensors").stat().st_size
    assert 0.45 < ratio < 0.6


@pytest.mark.parametrize(
    "breakage, needle",
    [
        (lambda root: (root / "wan_models/Wan2.1-T2V-1.3B/Wan2.1_VAE.pth").unlink(), "Wan2.1_VAE.pth"),
        (lambda root: (root / "wan_models/Wan2.1-T2V-1.3B/config.json").unlink(), "no Wan2.1-T2V-1.3B folder"),
        (
            lambda root: (root / "longlive_models/models/longlive_base.pt").write_bytes(b"\x00" * 10),
            "longlive_base.pt",
        ),
        (lambda root: torch.save({"generator_lora": {}}, root / "longlive_models/models/lora.pt"), "lora.pt"),
    ],
)
def test_broken_downloads_name_the_file(tmp_path, breakage, needle):
    write_download(tmp_path)
    breakage(tmp_path)
    with pytest.raises(CheckpointError, match=needle):
        load_bundle(tmp_path)


def test_wrong_shape_in_generator_is_named(tmp_path):
    written = write_download(tmp_path)
    state = {f"model.{k}": v for k, v in written["dit"].items()}
    state["model.blocks.0.ffn.0.weight"] = torch.zeros(3, 3)
    torch.save({"generator": state}, tmp_path / "longlive_models/models/longlive_base.pt")
    with pytest.raises(CheckpointError, match=r"(?s)longlive_base\.pt.*blocks\.0\.ffn\.0\.weight"):
        load_bundle(tmp_path)


def test_missing_and_foreign_model_files(tmp_path):
    with pytest.raises(CheckpointError, match="model not found"):
        load_bundle(tmp_path / "nope.safetensors")
    write_converted(tmp_path / "ok.safetensors")
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, tmp_path / "foreign.safetensors")
    with pytest.raises(CheckpointError, match="not a longlive-cli model file"):
        load_bundle(tmp_path / "foreign.safetensors")
    assert load_bundle(tmp_path / "ok.safetensors").spec == TINY_SPEC


def test_fast_decoder_travels_with_the_bundle(tmp_path):
    path = write_converted(tmp_path / "fast.safetensors", FAST_SPEC)
    bundle = load_bundle(path)
    assert bundle.spec == FAST_SPEC
    assert bundle.decoder() is bundle.fast_decoder and bundle.decoder("wan") is bundle.vae
    z = torch.randn(1, 16, 3, 4, 4)
    assert bundle.decoder().stream()(z).shape == bundle.vae.stream()(z).shape == (1, 3, 9, 32, 32)
    plain = load_bundle(write_converted(tmp_path / "plain.safetensors"))
    with pytest.raises(CheckpointError, match="no fast decoder"):
        plain.decoder("fast")


def test_spec_owns_the_geometry():
    spec = PRESETS["longlive-1.3b"]
    assert (spec.size_multiple, spec.time_stride, spec.fps) == (16, 4, 16)
    assert spec.latent_shape == spec.latent_shape_for(spec.size) == (16, 60, 104)
    assert spec.latent_shape_for((128, 96)) == (16, 12, 16)
    assert spec.frame_tokens == 30 * 52
    assert [spec.video_frames(t) for t in (1, 2, 21)] == [1, 5, 81]
    spec.check_size((128, 96))
    with pytest.raises(ValueError, match=r"width 100 is not a positive multiple of 16 \(try 96 or 112\)"):
        spec.check_size((100, 96))
    with pytest.raises(ValueError, match="height 0"):
        spec.check_size((128, 0))
    coarse = replace(spec, dit=replace(spec.dit, patch_size=(1, 4, 4)))
    assert coarse.size_multiple == 32 and coarse.latent_shape_for((64, 64)) == (16, 8, 8)


def test_one_preset_table_names_every_architecture():
    assert set(PRESETS) == {"longlive-1.3b", "wan-14b"}
    assert all(name == spec.name for name, spec in PRESETS.items())
    teacher = PRESETS["wan-14b"]
    assert (teacher.dit.dim, teacher.dit.num_layers) == (5120, 40)
    assert teacher.vae == PRESETS["longlive-1.3b"].vae and teacher.size_multiple == 16
