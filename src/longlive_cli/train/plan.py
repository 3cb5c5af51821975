"""Memory plan of a long-tuning run before it starts: what each GPU holds under FSDP2, built on the meta device.

Weights, gradients and optimizer state are counted exactly from the models as the stage builds them (LoRA
included) and divided over the processes as FSDP shards them. Activations and KV caches are estimates from the
recipe's token counts: per block and token, the saved tensors of one DiT block (about 30 x dim + 2 x ffn values in
the compute dtype) plus, for the generator, the attended cache window each grad-enabled forward keeps; with
checkpointing, only each block's input, that window and one block's full activations during its recomputation.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from longlive_cli.bundle import (
    EMBEDDED,
    LONGLIVE_13B,
    PRESETS,
    ModelSpec,
    build_modules,
    embedded_path,
    read_bundle_spec,
)
from longlive_cli.models.dit import CausalWanDiT, DiTConfig
from longlive_cli.train.lora import add_lora
from longlive_cli.train.recipe import LongRecipe, RecipeError

GB = 1e9
UNITS = {"GB": 1e9, "GIB": 2**30, "MB": 1e6, "MIB": 2**20}
BYTES = {"float32": 4, "bfloat16": 2}
ADAM_STATES = 2  # AdamW: exp_avg and exp_avg_sq in float32


def parse_memory(text: str) -> float:
    """Bytes of '80GB', '141 GiB', '40000MB'."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]+)\s*", text)
    if not match or match.group(2).upper() not in UNITS:
        raise ValueError(f"--gpu-memory: expected a size such as 80GB or 141GiB, got '{text}'")
    return float(match.group(1)) * UNITS[match.group(2).upper()]


def model_spec(entry: str, role: str) -> ModelSpec:
    """The architecture a recipe's ``models`` entry names: a preset, ``tiny``, a model file or a download folder."""
    if entry in PRESETS:
        return PRESETS[entry]
    if entry == EMBEDDED:
        return read_bundle_spec(embedded_path())
    path = Path(entry).expanduser()
    if path.is_file():
        return read_bundle_spec(path)
    if (path / "config.json").is_file():
        return replace(LONGLIVE_13B, dit=DiTConfig.from_dict(json.loads((path / "config.json").read_text())))
    raise RecipeError(f"models.{role}: '{entry}' is neither a preset ({', '.join(PRESETS)}), tiny, nor a model path")


@dataclass(frozen=True)
class Row:
    """One line of the plan: bytes per GPU."""

    name: str
    bytes: float
    note: str = ""


def count(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, frozen) parameters."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters()) - trainable


def block_activation_bytes(cfg: DiTConfig, tokens: int, dtype_bytes: int) -> float:
    """Saved activations of one DiT block over ``tokens`` tokens (an estimate; see the module docstring)."""
    return tokens * (30 * cfg.dim + 2 * cfg.ffn_dim) * dtype_bytes


def plan(recipe: LongRecipe, gpus: int, gpu_memory: float) -> dict:
    """Per-GPU bytes of every part of a long-tuning run on ``gpus`` GPUs, with and without checkpointing."""
    if not recipe.models:
        raise RecipeError("--plan needs models: (generator, teacher) in the recipe")
    if recipe.batch % gpus:
        raise RecipeError(f"batch {recipe.batch} does not split over {gpus} GPUs")
    specs = {role: model_spec(entry, role) for role, entry in recipe.models.items()}
    specs.setdefault("critic", specs["teacher"])  # the stage's default: a copy of the teacher
    act = BYTES[recipe.precision]
    with torch.device("meta"):
        gen, critic, teacher = (CausalWanDiT(specs[r].dit) for r in ("generator", "critic", "teacher"))
        teacher.requires_grad_(False)
        if recipe.lora:
            add_lora(gen, recipe.lora["rank"], recipe.lora["alpha"])
            add_lora(critic, recipe.lora["rank"], recipe.lora["alpha"])
        same_text = specs["generator"].text == specs["teacher"].text  # Wan's 1.3B and 14B share one umT5
        texts = [build_modules(specs[r])[2] for r in (("generator",) if same_text else ("generator", "teacher"))]
    (gen_train, gen_frozen), (critic_train, critic_frozen) = count(gen), count(critic)
    teacher_params = sum(count(teacher))
    trained = gen_train + critic_train
    largest_unit = max(sum(p.numel() for p in m.blocks[0].parameters()) for m in (gen, critic, teacher))
    encoders = sum(p.numel() for t in texts for p in t.parameters())

    spec = specs["generator"]
    cfg = spec.dit
    frame_tokens = spec.frame_tokens
    per_gpu = recipe.batch // gpus
    seqs = recipe.micro_batch or per_gpu  # sequences in memory at once
    block_tokens = seqs * recipe.chunk_frames * frame_tokens
    grad_forwards = recipe.first_chunk // recipe.chunk_frames  # the generator's largest chunk, every block saved
    window_kv = 2 * cfg.num_layers * seqs * recipe.window * frame_tokens * cfg.dim * act  # one forward's attended cache
    gen_full = grad_forwards * (cfg.num_layers * block_activation_bytes(cfg, block_tokens, act) + window_kv)
    gen_ckpt = grad_forwards * (cfg.num_layers * block_tokens * cfg.dim * act + window_kv)
    gen_ckpt += block_activation_bytes(cfg, block_tokens, act)
    ccfg = specs["critic"].dit
    critic_tokens = seqs * recipe.loss_window * frame_tokens
    critic_full = ccfg.num_layers * block_activation_bytes(ccfg, critic_tokens, act)
    critic_ckpt = ccfg.num_layers * critic_tokens * ccfg.dim * act + block_activation_bytes(ccfg, critic_tokens, act)
    kv = 2 * cfg.num_layers * per_gpu * recipe.window * frame_tokens * cfg.dim * act

    rows = [
        Row("parameters", 4 * (gen_train + gen_frozen + critic_train + critic_frozen) / gpus, "float32, sharded"),
        Row("  teacher", act * teacher_params / gpus, f"{recipe.precision}, sharded, frozen"),
        Row("  gathered blocks", 2 * act * largest_unit, "two blocks unsharded at a time"),
        Row("  text encoders", act * encoders, f"{len(texts)}, frozen, whole on every GPU"),
        Row("gradients", 4 * trained / gpus, "float32, sharded"),
        Row("optimizer", ADAM_STATES * 4 * trained / gpus, "AdamW, float32, sharded"),
        Row("activations", max(gen_full, critic_full), "estimate, checkpointing off"),
        Row("activations (checkpointing)", max(gen_ckpt, critic_ckpt), "estimate, checkpointing on"),
        Row("KV caches", kv, f"{per_gpu} sequence(s) x {recipe.window} frames x {frame_tokens} tokens"),
    ]
    fixed = sum(r.bytes for r in rows if not r.name.startswith("activations"))
    chosen = rows[7].bytes if recipe.checkpointing else rows[6].bytes
    return {
        "gpus": gpus,
        "gpu_memory": gpu_memory,
        "rows": rows,
        "total": fixed + chosen,
        "total_other": fixed + (rows[6].bytes if recipe.checkpointing else rows[7].bytes),
        "fits": fixed + chosen <= gpu_memory,
        "params": {
            "generator": gen_train + gen_frozen,
            "critic": critic_train + critic_frozen,
            "teacher": teacher_params,
        },
        "trained": trained,
        "accumulation": per_gpu // seqs,
        "checkpointing": recipe.checkpointing,
    }


def render(result: dict) -> str:
    """The plan as a plain-text table."""
    p = result["params"]
    lines = [
        f"memory plan per GPU, {result['gpus']} GPU(s) of {result['gpu_memory'] / GB:.0f} GB: parameters generator "
        f"{_millions(p['generator'])}, critic {_millions(p['critic'])}, teacher {_millions(p['teacher'])}; "
        f"{_millions(result['trained'])} trained; {result['accumulation']} pass(es) per GPU and step",
    ]
    for row in result["rows"]:
        lines.append(f"  {row.name:<30}{row.bytes / GB:>9.2f} GB   {row.note}")
    which = "on" if result["checkpointing"] else "off"
    other = "off" if result["checkpointing"] else "on"
    lines.append(f"  {'total (checkpointing ' + which + ')':<30}{result['total'] / GB:>9.2f} GB")
    lines.append(f"  {'total (checkpointing ' + other + ')':<30}{result['total_other'] / GB:>9.2f} GB")
    verdict = "fits" if result["fits"] else "does NOT fit"
    lines.append(f"  {verdict} in {result['gpu_memory'] / GB:.0f} GB")
    return "\n".join(lines)


def _millions(n: int) -> str:
    return f"{n / 1e6:,.1f}M"
