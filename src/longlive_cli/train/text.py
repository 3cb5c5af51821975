"""The tiny text encoder: the world's word-level tokenizer and a narrow umT5, trained through the DiT."""

from __future__ import annotations

from torch import Tensor

from longlive_cli.models.t5 import UMT5Config, UMT5Encoder
from longlive_cli.models.text import UMT5TextEncoder
from longlive_cli.models.world_text import build_tokenizer


def text_encoder(text: dict, text_len: int) -> UMT5TextEncoder:
    """Tokenizer + freshly initialised umT5 of the recipe's sizes; the vocabulary is the tokenizer's."""
    tokenizer = build_tokenizer()
    cfg = UMT5Config(**{**text, "vocab": tokenizer.get_vocab_size()})
    return UMT5TextEncoder(tokenizer, UMT5Encoder(cfg), text_len)


def encode(encoder: UMT5TextEncoder, prompts: list[str]) -> Tensor:
    """Features [B, text_len, dim] with padded rows zeroed, like ``UMT5TextEncoder.encode`` but differentiable."""
    device = encoder.model.token_embedding.weight.device
    ids, mask = (t.to(device) for t in encoder.tokenize(prompts))
    return encoder.model(ids, mask).masked_fill(mask[..., None] == 0, 0.0)


def load_text_encoder(config: dict, text_len: int, state: dict[str, Tensor]) -> UMT5TextEncoder:
    """A trained text encoder from its stored sizes and weights."""
    model = UMT5Encoder(UMT5Config(**config))
    model.load_state_dict(state)
    return UMT5TextEncoder(build_tokenizer(), model, text_len)
