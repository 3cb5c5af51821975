"""The 14B teacher preset and ``longlive train --plan``: models on the meta device, memory per GPU."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from longlive_cli.bundle import PRESETS
from longlive_cli.models.dit import CausalWanDiT, DiTConfig
from longlive_cli.train.plan import parse_memory, plan, render
from longlive_cli.train.recipe import RecipeError, load_recipe

REPO = Path(__file__).resolve().parents[1]
LONGLIVE = REPO / "recipes" / "longlive-1.3b" / "long.yaml"
# Wan-AI/Wan2.1-T2V-14B's config.json, as published beside its six shards and their index.
WAN_14B_CONFIG = {
    "_class_name": "WanModel",
    "dim": 5120,
    "eps": 1e-06,
    "ffn_dim": 13824,
    "freq_dim": 256,
    "in_dim": 16,
    "model_type": "t2v",
    "num_heads": 40,
    "num_layers": 40,
    "out_dim": 16,
    "text_len": 512,
}


def wan_keys(dim: int, ffn: int, layers: int) -> dict[str, tuple[int, ...]]:
    """Every tensor of a Wan2.1 T2V DiT checkpoint with its shape (original key names)."""
    block = {
        "modulation": (1, 6, dim),
        "norm3.weight": (dim,),
        "norm3.bias": (dim,),
        "ffn.0.weight": (ffn, dim),
        "ffn.0.bias": (ffn,),
        "ffn.2.weight": (dim, ffn),
        "ffn.2.bias": (dim,),
        **{f"{a}.{p}.weight": (dim, dim) for a in ("self_attn", "cross_attn") for p in "qkvo"},
        **{f"{a}.{p}.bias": (dim,) for a in ("self_attn", "cross_attn") for p in "qkvo"},
        **{f"{a}.norm_{p}.weight": (dim,) for a in ("self_attn", "cross_attn") for p in "qk"},
    }
    keys = {
        "patch_embedding.weight": (dim, 16, 1, 2, 2),
        "patch_embedding.bias": (dim,),
        "text_embedding.0.weight": (dim, 4096),
        "text_embedding.0.bias": (dim,),
        "text_embedding.2.weight": (dim, dim),
        "text_embedding.2.bias": (dim,),
        "time_embedding.0.weight": (dim, 256),
        "time_embedding.0.bias": (dim,),
        "time_embedding.2.weight": (dim, dim),
        "time_embedding.2.bias": (dim,),
        "time_projection.1.weight": (6 * dim, dim),
        "time_projection.1.bias": (6 * dim,),
        "head.modulation": (1, 2, dim),
        "head.head.weight": (64, dim),
        "head.head.bias": (64,),
    }
    for n in range(layers):
        keys.update({f"blocks.{n}.{k}": s for k, s in block.items()})
    return keys


def test_wan_14b_preset_has_the_checkpoint_keys_and_14_3b_parameters() -> None:
    """The preset is what the 14B download's config.json describes, with its 1095 tensors and their shapes."""
    assert DiTConfig.from_dict(WAN_14B_CONFIG) == PRESETS["wan-14b"].dit
    with torch.device("meta"):
        model = CausalWanDiT(PRESETS["wan-14b"].dit)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == wan_keys(5120, 13824, 40)
    assert len(got) == 1095
    assert sum(p.numel() for p in model.parameters()) == 14_288_491_584


def test_plan_counts_sharded_state_exactly_and_says_what_fits() -> None:
    """Weights, gradients and AdamW state divide over the GPUs; 8 GPUs of 80 GB hold LongLive's run with
    checkpointing; without it, or on one GPU, they do not."""
    recipe = load_recipe(LONGLIVE, "long")
    eight = plan(recipe, 8, parse_memory("80GB"))
    rows = {r.name: r.bytes for r in eight["rows"]}
    lora_per_model = 30 * 256 * (8 * (1536 + 1536) + 2 * (1536 + 8960))
    assert eight["params"]["generator"] == 1_418_996_800 + lora_per_model
    assert eight["params"]["teacher"] == 14_288_491_584
    assert eight["trained"] == 2 * lora_per_model
    assert rows["  teacher"] == 2 * 14_288_491_584 / 8
    assert rows["gradients"] == 4 * 2 * lora_per_model / 8
    assert rows["optimizer"] == 2 * rows["gradients"]
    assert rows["activations (checkpointing)"] < rows["activations"] / 4
    sixty_four = plan(recipe, 64, parse_memory("80GB"))
    assert sixty_four["fits"] and not plan(recipe, 1, parse_memory("80GB"))["fits"]
    assert sixty_four["total_other"] > parse_memory("80GB")  # the same run without checkpointing
    assert "fits in 80 GB" in render(sixty_four)


def test_plan_refuses_a_batch_the_gpus_cannot_share_and_bad_sizes() -> None:
    recipe = load_recipe(LONGLIVE, "long")
    with pytest.raises(RecipeError, match="batch 64 does not split over 3 GPUs"):
        plan(recipe, 3, 80e9)
    with pytest.raises(RecipeError, match="models.teacher"):
        plan(replace(recipe, models={"generator": "longlive-1.3b", "teacher": "nowhere/wan"}), 8, 80e9)
    with pytest.raises(ValueError, match="--gpu-memory"):
        parse_memory("eighty")
    assert parse_memory("141GiB") == 141 * 2**30


def test_plan_command_prints_the_table_without_a_gpu() -> None:
    command = [sys.executable, "-m", "longlive_cli", "train", "--plan", "--config", str(LONGLIVE)]
    done = subprocess.run([*command, "--gpus", "8", "--gpu-memory", "80GB"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "8 GPU(s) of 80 GB" in done.stdout and "KV caches" in done.stdout and "total" in done.stdout


def test_training_refuses_an_architecture_name_as_weights(tmp_path: Path) -> None:
    from longlive_cli.train.cli import run_stage

    with pytest.raises(RecipeError, match="models.generator: 'longlive-1.3b' names an architecture"):
        run_stage("long", LONGLIVE, tmp_path / "run")
