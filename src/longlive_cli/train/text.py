"""The tiny text encoder: the world's word-level tokenizer and a narrow umT5, trained through the DiT."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from longlive_cli.models.t5 import UMT5Config, UMT5Encoder
from longlive_cli.models.text import UMT5TextEncoder
from longlive_cli.models.world_text import build_tokenizer
from longlive_cli.world.grammar import ATTRIBUTE_NAMES, VALUES, Attributes


def text_encoder(text: dict, text_len: int) -> UMT5TextEncoder:
    """Tokenizer + freshly initialised umT5 of the recipe's sizes; the vocabulary is the tokenizer's."""
    tokenizer = build_tokenizer()
    cfg = UMT5Config(**{**text, "vocab": tokenizer.get_vocab_size()})
    return UMT5TextEncoder(tokenizer, UMT5Encoder(cfg), text_len)


def encode(encoder: UMT5TextEncoder, prompts: list[str]) -> Tensor:
    """Features [B, text_len, dim] with padded rows zeroed, like ``UMT5TextEncoder.encode`` but differentiable."""
    return encode_with_mask(encoder, prompts)[0]


def encode_with_mask(encoder: UMT5TextEncoder, prompts: list[str]) -> tuple[Tensor, Tensor]:
    """``encode``'s features and the token mask [B, text_len] (1 on real tokens)."""
    device = encoder.model.token_embedding.weight.device
    ids, mask = (t.to(device) for t in encoder.tokenize(prompts))
    return encoder.model(ids, mask).masked_fill(mask[..., None] == 0, 0.0), mask


def labels_of(attributes: Attributes) -> dict[str, str]:
    """Every attribute: what a full description (``describe``) states."""
    return {name: getattr(attributes, name) for name in ATTRIBUTE_NAMES}


def change_labels(old: Attributes, new: Attributes) -> dict[str, str]:
    """What a follow-up wording (``describe_change``) states of the new attributes: colour and shape always (its
    subject names them), size, motion and background only when they change."""
    stated = [n for n in ATTRIBUTE_NAMES if n in ("color", "shape") or getattr(old, n) != getattr(new, n)]
    return {name: getattr(new, name) for name in stated}


class AttributeHeads(nn.Module):
    """Linear readouts of every attribute a prompt states from each of its tokens' features.

    Trained beside the teacher, they make every token carry the whole prompt, as a pretrained encoder's tokens do.
    Without them the DiT's cross-attention settled on one late word whose feature held colour and size but hardly
    the shape, and the shape word went unused.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.heads = nn.ModuleDict({name: nn.Linear(dim, len(VALUES[name])) for name in ATTRIBUTE_NAMES})

    def loss(self, features: Tensor, mask: Tensor, labels: list[dict[str, str] | None]) -> tuple[Tensor, float]:
        """Cross-entropy over the real tokens of each prompt for each attribute it states (None: the empty prompt,
        nothing stated), and the share of those (token, attribute) readings that are right."""
        losses, hits = [], []
        for name, head in self.heads.items():
            rows = [i for i, stated in enumerate(labels) if stated and name in stated]
            if not rows:
                continue
            real = mask[rows].bool()
            values = torch.tensor([VALUES[name].index(labels[i][name]) for i in rows], device=mask.device)
            target = values[:, None].expand(-1, mask.shape[1])[real]
            logits = head(features[rows][real])
            losses.append(F.cross_entropy(logits, target))
            hits.append((logits.argmax(-1) == target).float().mean())
        if not losses:
            return features.sum() * 0.0, 1.0
        return torch.stack(losses).mean(), torch.stack(hits).mean().item()


def load_text_encoder(config: dict, text_len: int, state: dict[str, Tensor]) -> UMT5TextEncoder:
    """A trained text encoder from its stored sizes and weights."""
    model = UMT5Encoder(UMT5Config(**config))
    model.load_state_dict(state)
    return UMT5TextEncoder(build_tokenizer(), model, text_len)
