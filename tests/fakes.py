"""Small random models written in the real file formats, for loader, render and CLI tests."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import save_file

from longlive_cli.bundle import ModelSpec, build_modules, save_bundle
from longlive_cli.engine import EngineConfig
from longlive_cli.models.dit import DiTConfig
from longlive_cli.models.t5 import UMT5Config
from longlive_cli.models.taehv import TAEHV, TAEHVConfig
from longlive_cli.models.vae import WanVAEConfig

WORDS = ["a", "the", "red", "blue", "green", "circle", "square", "moving", "left", "right", "up", "down", "on", "gray"]

TINY_SPEC = ModelSpec(
    name="test-tiny",
    dit=DiTConfig(dim=32, ffn_dim=64, num_heads=2, num_layers=2, text_dim=16, text_len=8, freq_dim=16),
    vae=WanVAEConfig(dim=4),
    text=UMT5Config(vocab=len(WORDS) + 3, dim=16, dim_attn=16, dim_ffn=24, num_heads=2, num_layers=1),
    text_len=8,
    engine=EngineConfig(chunk_frames=3, window=6, sink=3),
    fps=16,
    size=(32, 32),
)


FAST_SPEC = replace(TINY_SPEC, fast_decoder=TAEHVConfig(decoder_widths=(16, 8, 8), encoder_width=8), decoder="fast")


def tokenizer_json() -> str:
    """A word-level tokenizer in the Hugging Face format, with umT5's pad/eos/unk ids."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2} | {w: i for i, w in enumerate(WORDS, start=3)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return tok.to_str()


def random_states(spec: ModelSpec, seed: int = 0) -> tuple[dict, dict, dict]:
    """Random weights for every module of a spec."""
    torch.manual_seed(seed)
    dit, vae, t5 = build_modules(spec, "cpu")
    for module in (dit, vae, t5):
        for p in module.parameters():
            p.data.normal_(0, 0.2)
    return dit.state_dict(), vae.state_dict(), t5.state_dict()


def write_converted(path: Path, spec: ModelSpec = TINY_SPEC, seed: int = 0) -> Path:
    """A converted single-file model with random weights (and a fast decoder when the spec has one)."""
    dit, vae, t5 = random_states(spec, seed)
    fast = None
    if spec.fast_decoder is not None:
        fast = TAEHV(spec.fast_decoder).state_dict()
        for v in fast.values():
            v.normal_(0, 0.1)
    save_bundle(path, spec, dit, vae, t5, tokenizer_json(), fast_decoder=fast)
    return path


def write_download(root: Path, spec: ModelSpec = TINY_SPEC, with_lora: bool = True, seed: int = 0) -> dict:
    """A Wan2.1 + LongLive download tree with tiny random weights; returns the tensors written."""
    dit, vae, t5 = random_states(spec, seed)
    wan = root / "wan_models" / "Wan2.1-T2V-1.3B"
    (wan / "google" / "umt5-xxl").mkdir(parents=True)
    cfg = {"_class_name": "WanModel", "model_type": "t2v", **spec.dit.to_dict()}
    (wan / "config.json").write_text(json.dumps(cfg))
    save_file({k: torch.randn_like(v) for k, v in dit.items()}, wan / "diffusion_pytorch_model.safetensors")
    torch.save(vae, wan / "Wan2.1_VAE.pth")
    torch.save({k: v.to(torch.bfloat16) for k, v in t5.items()}, wan / "models_t5_umt5-xxl-enc-bf16.pth")
    (wan / "google" / "umt5-xxl" / "tokenizer.json").write_text(tokenizer_json())
    models = root / "longlive_models" / "models"
    models.mkdir(parents=True)
    torch.save({"generator": {f"model.{k}": v for k, v in dit.items()}}, models / "longlive_base.pt")
    lora = {}
    if with_lora:
        g = torch.Generator().manual_seed(seed + 1)
        for n in range(spec.dit.num_layers):
            for name in [*(f"self_attn.{p}" for p in "qkvo"), *(f"cross_attn.{p}" for p in "qkvo"), "ffn.0", "ffn.2"]:
                w = dit[f"blocks.{n}.{name}.weight"]
                key = f"base_model.model.blocks.{n}.{name}"
                lora[f"{key}.lora_A.weight"] = torch.randn(4, w.shape[1], generator=g) * 0.1
                lora[f"{key}.lora_B.weight"] = torch.randn(w.shape[0], 4, generator=g) * 0.1
        torch.save({"generator_lora": lora}, models / "lora.pt")
    return {"dit": dit, "vae": vae, "t5": t5, "lora": lora}


def with_engine(spec: ModelSpec, **kw) -> ModelSpec:
    return replace(spec, engine=replace(spec.engine, **kw))
