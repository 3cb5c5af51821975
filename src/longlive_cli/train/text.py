"""The tiny text encoder: the world's word-level tokenizer and a narrow umT5, trained alone or through the DiT."""

from __future__ import annotations

import itertools

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from longlive_cli.models.t5 import UMT5Config, UMT5Encoder
from longlive_cli.models.text import UMT5TextEncoder
from longlive_cli.world.grammar import ATTRIBUTE_NAMES, VALUES, Attributes, describe, describe_change, is_held_out
from longlive_cli.world.tokenizer import build_tokenizer


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
        for logits, target in self._readings(features, mask, labels).values():
            losses.append(F.cross_entropy(logits, target))
            hits.append((logits.argmax(-1) == target).float().mean())
        if not losses:
            return features.sum() * 0.0, 1.0
        return torch.stack(losses).mean(), torch.stack(hits).mean().item()

    @torch.no_grad()
    def named(self, features: Tensor, mask: Tensor, labels: list[dict[str, str] | None]) -> dict[str, float]:
        """Per attribute, the share of real tokens whose feature names the stated value."""
        readings = self._readings(features, mask, labels).items()
        return {name: (logits.argmax(-1) == target).float().mean().item() for name, (logits, target) in readings}

    def _readings(
        self, features: Tensor, mask: Tensor, labels: list[dict[str, str] | None]
    ) -> dict[str, tuple[Tensor, Tensor]]:
        """Per stated attribute: each real token's logits and the stated value's index."""
        out = {}
        for name, head in self.heads.items():
            rows = [i for i, stated in enumerate(labels) if stated and name in stated]
            if not rows:
                continue
            real = mask[rows].bool()
            values = torch.tensor([VALUES[name].index(labels[i][name]) for i in rows], device=mask.device)
            out[name] = (head(features[rows][real]), values[:, None].expand(-1, mask.shape[1])[real])
        return out


def follow_up_loss(
    heads: AttributeHeads, encoder: UMT5TextEncoder, pairs: list[list[Attributes]], rng: np.random.Generator
) -> tuple[Tensor, float]:
    """``heads.loss`` on a fresh follow-up wording of each (old, new) pair, labelled with what it states."""
    wordings = [describe_change(old, new, rng) for old, new in pairs]
    return heads.loss(*encode_with_mask(encoder, wordings), [change_labels(old, new) for old, new in pairs])


def held_out_attributes() -> list[Attributes]:
    """Every attribute combination the training data never shows (``grammar.HELD_OUT``)."""
    combos = (Attributes(*values) for values in itertools.product(*(VALUES[n] for n in ATTRIBUTE_NAMES)))
    return [a for a in combos if is_held_out(a)]


def pretrain(
    encoder: UMT5TextEncoder,
    seen: list[list[Attributes]],
    steps: int,
    batch: int,
    lr: float,
    seed: int,
    weight_decay: float = 1.0,
) -> dict[str, float]:
    """Train the encoder alone so that each token names every attribute its prompt states, on descriptions of the
    seen prompt sequences' first attributes and follow-up wordings of their changes; returns, per attribute, the share
    of tokens of held-out descriptions that name it right (what a frozen encoder will hand the DiT). Nothing in the
    seen prompts tells a token what to say of a combination they never show; strong weight decay keeps the encoder
    simple enough to say what the words do (without it, a green triangle's own colour word often named another)."""
    rng = np.random.default_rng(seed)
    device = encoder.model.token_embedding.weight.device
    heads = AttributeHeads(encoder.text_dim).to(device)
    firsts = [prompts[0] for prompts in seen]
    pairs = [prompts[:2] for prompts in seen if len(prompts) > 1]
    params = [*encoder.model.parameters(), *heads.parameters()]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    encoder.model.train()
    for _ in range(steps):
        attrs = [firsts[i] for i in rng.integers(0, len(firsts), batch)]
        descriptions = [describe(a, rng) for a in attrs]
        loss, _ = heads.loss(*encode_with_mask(encoder, descriptions), [labels_of(a) for a in attrs])
        if pairs:
            followed, _ = follow_up_loss(heads, encoder, [pairs[i] for i in rng.integers(0, len(pairs), batch)], rng)
            loss = (loss + followed) / 2
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    encoder.model.eval()
    held = held_out_attributes() * 4
    with torch.no_grad():
        features, mask = encode_with_mask(encoder, [describe(a, rng) for a in held])
    return heads.named(features, mask, [labels_of(a) for a in held])


def load_text_encoder(config: dict, text_len: int, state: dict[str, Tensor]) -> UMT5TextEncoder:
    """A trained text encoder from its stored sizes and weights."""
    model = UMT5Encoder(UMT5Config(**config))
    model.load_state_dict(state)
    return UMT5TextEncoder(build_tokenizer(), model, text_len)
