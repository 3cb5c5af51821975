"""Weight readers, key conversion, LoRA merge and strict checks against the golden files and broken inputs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from longlive_cli.checkpoints import (
    DIFFUSERS_DIT_KEYS,
    CheckpointError,
    check_state_dict,
    is_diffusers_dit,
    load_state_dict_into,
    merge_lora,
    read_dit_state_dict,
    read_lora,
    read_safetensors_metadata,
    read_tensors,
    save_safetensors,
    to_wan_keys,
)

GOLDEN = Path(__file__).parent / "data" / "golden"
BASE = GOLDEN / "longlive_base_tiny.pt"
LORA = GOLDEN / "lora_tiny.pt"
MERGED = GOLDEN / "lora_merged_expected.safetensors"
LORA_META = json.loads((GOLDEN / "lora.json").read_text())
LORA_ALPHA = 8.0
MERGE_TOLERANCE = 1e-6


class Payload:
    """An arbitrary class whose pickle would run code on an unsafe load."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (open, (str(self.marker), "w"))


def wan_state() -> dict[str, torch.Tensor]:
    """The golden base DiT weights under original Wan names."""
    return read_dit_state_dict(BASE)


def to_diffusers(key: str) -> str:
    """Rename an original Wan key the way diffusers' conversion script does."""
    for original, diffusers in DIFFUSERS_DIT_KEYS:
        key = key.replace(original, diffusers)
    return key


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_golden_base_has_plain_wan_names() -> None:
    state = wan_state()
    assert len(state) == 69
    assert "patch_embedding.weight" in state
    assert "blocks.1.norm3.bias" in state
    assert not any(k.startswith("model.") for k in state)


def test_lora_rank_alpha_and_targets() -> None:
    lora = read_lora(LORA)
    assert lora.rank == 4
    assert lora.alpha == 4.0 and lora.scale == 1.0
    assert len(lora.targets) == LORA_META["lora_targets"]
    assert "blocks.0.self_attn.q" in lora.targets and "blocks.1.ffn.2" in lora.targets
    a, b = lora.targets["blocks.0.ffn.0"]
    assert a.shape == (4, 64) and b.shape == (128, 4)
    assert read_lora(LORA, alpha=LORA_ALPHA).scale == 2.0


def test_merge_leaves_input_alone_and_scale_overrides() -> None:
    state = wan_state()
    before = {k: v.clone() for k, v in state.items()}
    lora = read_lora(LORA, alpha=LORA_ALPHA)
    merged = merge_lora(state, lora)
    assert_same(state, before)
    assert merged["blocks.0.modulation"] is state["blocks.0.modulation"]
    assert merged["blocks.0.self_attn.q.bias"] is state["blocks.0.self_attn.q.bias"]
    assert not torch.equal(merged["blocks.0.self_attn.q.weight"], state["blocks.0.self_attn.q.weight"])
    assert_same(merge_lora(state, lora, scale=0.0), state)


def test_merge_keeps_weight_dtype() -> None:
    state = {k: v.to(torch.bfloat16) for k, v in wan_state().items()}
    merged = merge_lora(state, read_lora(LORA, alpha=LORA_ALPHA))
    assert merged["blocks.0.ffn.2.weight"].dtype == torch.bfloat16


def test_merge_rejects_missing_and_misshapen_targets() -> None:
    lora = read_lora(LORA)
    state = wan_state()
    del state["blocks.1.cross_attn.v.weight"]
    state["blocks.0.ffn.0.weight"] = torch.zeros(128, 32)
    with pytest.raises(CheckpointError) as err:
        merge_lora(state, lora)
    text = str(err.value)
    assert LORA.name in text
    assert "blocks.1.cross_attn.v.weight" in text
    assert "blocks.0.ffn.0.weight (weight [128, 32], LoRA [128, 64])" in text


def test_bare_peft_dict_with_adapter_name(tmp_path: Path) -> None:
    peft = torch.load(LORA, weights_only=True)["generator_lora"]
    bare = {k.replace(".weight", ".default.weight"): v for k, v in peft.items()}
    path = tmp_path / "bare_lora.safetensors"
    save_safetensors(bare, path)
    lora, reference = read_lora(path), read_lora(LORA)
    assert lora.targets.keys() == reference.targets.keys() and lora.rank == reference.rank


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda d: d.pop("base_model.model.blocks.0.self_attn.k.lora_B.weight"), "blocks.0.self_attn.k (only A)"),
        (lambda d: d.update({"base_model.model.blocks.0.ffn.2.lora_A.weight": torch.zeros(8, 128)}), "blocks.0.ffn.2"),
        (lambda d: d.update({"base_model.model.blocks.0.ffn.2.lora_magnitude_vector": torch.zeros(64)}), "magnitude"),
    ],
    ids=["missing-B", "rank-mismatch", "not-lora"],
)
def test_bad_lora_files(tmp_path: Path, edit, needle: str) -> None:
    peft = dict(torch.load(LORA, weights_only=True)["generator_lora"])
    edit(peft)
    path = tmp_path / "broken_lora.pt"
    torch.save({"generator_lora": peft}, path)
    with pytest.raises(CheckpointError, match="broken_lora.pt") as err:
        read_lora(path)
    assert needle in str(err.value)


def test_ema_preference_and_fsdp_prefix(tmp_path: Path) -> None:
    state = wan_state()
    ema = {k: v + 1 for k, v in state.items()}
    fsdp = {f"model._fsdp_wrapped_module.{k}": v for k, v in ema.items()}
    path = tmp_path / "ckpt.pt"
    torch.save({"generator": {f"model.{k}": v for k, v in state.items()}, "generator_ema": fsdp, "step": 7}, path)
    assert_same(read_dit_state_dict(path), state)
    assert_same(read_dit_state_dict(path, prefer_ema=True), ema)
    assert_same(read_dit_state_dict(BASE, prefer_ema=True), state)


def test_model_key_and_bare_state_dict(tmp_path: Path) -> None:
    state = wan_state()
    torch.save({"model": {f"model.{k}": v for k, v in state.items()}}, tmp_path / "model_key.pth")
    save_safetensors({**state, "freqs": torch.zeros(1024, 64)}, tmp_path / "bare.safetensors")
    assert_same(read_dit_state_dict(tmp_path / "model_key.pth"), state)
    assert_same(read_dit_state_dict(tmp_path / "bare.safetensors"), state)


def test_diffusers_names_round_trip(tmp_path: Path) -> None:
    state = wan_state()
    renamed = {to_diffusers(k): v for k, v in state.items()}
    for name in [
        "scale_shift_table",
        "proj_out.weight",
        "condition_embedder.time_embedder.linear_1.weight",
        "condition_embedder.text_embedder.linear_2.bias",
        "condition_embedder.time_proj.weight",
        "blocks.0.scale_shift_table",
        "blocks.0.norm2.weight",
        "blocks.0.attn1.to_out.0.weight",
        "blocks.0.attn2.norm_k.weight",
        "blocks.1.ffn.net.0.proj.bias",
        "blocks.1.ffn.net.2.weight",
    ]:
        assert name in renamed, name
    assert torch.equal(renamed["blocks.0.norm2.weight"], state["blocks.0.norm3.weight"])
    path = tmp_path / "diffusion_pytorch_model.safetensors"
    save_safetensors(renamed, path)
    assert_same(read_dit_state_dict(path), state)


def test_diffusers_table_is_invertible_for_thirty_blocks() -> None:
    block = [k.removeprefix("blocks.0.") for k in wan_state() if k.startswith("blocks.0.")]
    names = [k for k in wan_state() if not k.startswith("blocks.")]
    names += [f"blocks.{n}.{leaf}" for n in range(30) for leaf in block]
    assert len(names) == 825
    renamed = {to_diffusers(k): torch.tensor(i) for i, k in enumerate(names)}
    assert len(renamed) == len(names) and is_diffusers_dit(renamed)
    back = to_wan_keys(renamed, source="diffusers")
    assert list(back) == names
    assert [int(v) for v in back.values()] == list(range(len(names)))


def test_sharded_index(tmp_path: Path) -> None:
    state = {to_diffusers(k): v for k, v in wan_state().items()}
    names = list(state)
    shards = {"model-00001-of-00002.safetensors": names[:30], "model-00002-of-00002.safetensors": names[30:]}
    for shard, keys in shards.items():
        save_safetensors({k: state[k] for k in keys}, tmp_path / shard)
    weight_map = {k: shard for shard, keys in shards.items() for k in keys}
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map}))
    assert_same(read_tensors(index), state)
    assert_same(read_dit_state_dict(index), wan_state())

    weight_map[names[0]] = "model-00002-of-00002.safetensors"
    index.write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(CheckpointError, match="model.safetensors.index.json"):
        read_tensors(index)


def expected_shapes() -> dict[str, torch.Size]:
    return {k: v.shape for k, v in wan_state().items()}


@pytest.mark.parametrize(
    ("edit", "needles"),
    [
        (lambda d: d.pop("blocks.1.ffn.2.bias"), ["missing (1): blocks.1.ffn.2.bias"]),
        (lambda d: d.update({"blocks.2.modulation": torch.zeros(1, 6, 64)}), ["unexpected (1): blocks.2.modulation"]),
        (
            lambda d: d.update({"head.head.weight": torch.zeros(64, 32)}),
            ["wrong shape (1): head.head.weight (expected [64, 64], found [64, 32])"],
        ),
    ],
    ids=["missing", "unexpected", "wrong-shape"],
)
def test_strict_check_names_file_and_keys(tmp_path: Path, edit, needles: list[str]) -> None:
    state = wan_state()
    edit(state)
    path = tmp_path / "edited.safetensors"
    save_safetensors(state, path)
    with pytest.raises(CheckpointError) as err:
        check_state_dict(read_dit_state_dict(path), expected_shapes(), source=str(path))
    assert "edited.safetensors" in str(err.value)
    for needle in needles:
        assert needle in str(err.value)


def test_strict_check_lists_first_five_and_totals() -> None:
    state = {f"extra.{i}": torch.zeros(1) for i in range(8)}
    with pytest.raises(CheckpointError) as err:
        check_state_dict(state, {}, source="many.pt")
    assert "unexpected (8)" in str(err.value) and "(3 more)" in str(err.value)
    assert "extra.4" in str(err.value) and "extra.5" not in str(err.value)


def test_load_into_meta_module_casts_dtype() -> None:
    with torch.device("meta"):
        module = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3)).to(torch.bfloat16)
    state = {k: torch.randn(v.shape) for k, v in module.state_dict().items()}
    load_state_dict_into(module, state, source="tiny.safetensors")
    assert not module[0].weight.is_meta and module[0].weight.dtype == torch.bfloat16
    assert isinstance(module[0].weight, nn.Parameter) and module[0].weight.requires_grad
    assert torch.equal(module[0].weight, state["0.weight"].to(torch.bfloat16))


def test_load_into_materialised_module_copies() -> None:
    module = nn.Linear(4, 3)
    state = {"weight": torch.ones(3, 4, dtype=torch.float64), "bias": torch.zeros(3)}
    load_state_dict_into(module, state, source="tiny.pt")
    assert module.weight.dtype == torch.float32 and torch.equal(module.weight, torch.ones(3, 4))
    with pytest.raises(CheckpointError, match="tiny.pt"):
        load_state_dict_into(module, {"weight": torch.ones(3, 4)}, source="tiny.pt")


def write_truncated(path: Path) -> None:
    if path.suffix == ".safetensors":
        save_safetensors(wan_state(), path)
    else:
        torch.save({"generator": wan_state()}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


BAD_FILES = {
    "truncated.pt": write_truncated,
    "truncated.safetensors": write_truncated,
    "empty.pt": lambda p: p.write_bytes(b""),
    "empty.safetensors": lambda p: p.write_bytes(b""),
    "garbage.pth": lambda p: p.write_bytes(b"not a checkpoint at all"),
    "non_tensor.pt": lambda p: torch.save({"generator": {"a": "string"}}, p),
    "non_dict.pt": lambda p: torch.save([torch.zeros(2)], p),
    "legacy_non_dict.pt": lambda p: torch.save(torch.zeros(2), p, _use_new_zipfile_serialization=False),
    "a_directory.pt": lambda p: p.mkdir(),
    "missing.safetensors": lambda p: None,
    "weights.npz": lambda p: p.write_bytes(b"PK"),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_bad_files_raise_checkpoint_error_naming_the_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    BAD_FILES[name](path)
    with pytest.raises(CheckpointError, match=name):
        read_dit_state_dict(path)


def test_arbitrary_class_pickle_is_refused_and_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"generator": {"a": Payload(marker)}}, path)
    with pytest.raises(CheckpointError, match="evil.pt") as err:
        read_dit_state_dict(path)
    assert "refused" in str(err.value)
    assert not marker.exists()


def test_nested_checkpoint_needs_unwrapping(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"'generator' \(dict\)"):
        read_tensors(BASE)


def test_atomic_save_metadata_and_shared_storage(tmp_path: Path) -> None:
    base = torch.arange(12.0).reshape(3, 4)
    state = {"a": base[:1], "b": base[1:], "t": base.t()}
    path = tmp_path / "out.safetensors"
    save_safetensors(state, path, metadata={"format": "pt", "note": "x"})
    save_safetensors(state, path, metadata={"format": "pt", "note": "y"})
    assert [p.name for p in tmp_path.iterdir()] == ["out.safetensors"]
    assert read_safetensors_metadata(path) == {"format": "pt", "note": "y"}
    assert_same(read_tensors(path), {k: v.contiguous() for k, v in state.items()})
    mask = os.umask(0o022)
    try:
        save_safetensors(state, path, metadata={"format": "pt", "note": "y"})
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644, "others can read a model file, as with any file written here"

    with pytest.raises(TypeError):
        save_safetensors(state, path, metadata={"note": 1})
    assert [p.name for p in tmp_path.iterdir()] == ["out.safetensors"]
    assert read_safetensors_metadata(path)["note"] == "y"


def test_metadata_absent_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "plain.safetensors"
    save_safetensors({"x": torch.zeros(2)}, path)
    assert read_safetensors_metadata(path) == {}
