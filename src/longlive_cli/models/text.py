"""Text encoders: prompts in, the padded [B, text_len, text_dim] features the Wan DiT cross-attends to out."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch
from torch import Tensor

from longlive_cli.extras import require
from longlive_cli.models.t5 import UMT5Config, UMT5Encoder, remap_hf_umt5_keys
from longlive_cli.models.word_tokenizer import WordTokenizer

if TYPE_CHECKING:
    from tokenizers import Tokenizer

PAD_ID = 0
EOS_ID = 1


@runtime_checkable
class TextEncoder(Protocol):
    """What the pipeline needs from a text encoder; padded rows must come back as zeros."""

    text_len: int
    text_dim: int

    def encode(self, prompts: list[str]) -> Tensor: ...


def clean_prompt(text: str) -> str:
    """Wan's "whitespace" pre-cleaning, so prompts tokenize as they did in training."""
    try:
        import ftfy
    except ImportError:
        ftfy = None
    if ftfy is not None:
        text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r"\s+", " ", text).strip()


def load_umt5_tokenizer(folder: str | Path) -> Tokenizer:
    """Read `tokenizer.json` from a local google/umt5-xxl folder with the light `tokenizers` package."""
    path = Path(folder) / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"no tokenizer.json in {folder}; point it at a local google/umt5-xxl folder")
    return require("tokenizers", "text", "the umT5 tokenizer").Tokenizer.from_file(str(path))


class UMT5TextEncoder:
    """umT5 tokenizer + encoder with Wan's padding to `text_len` and zeroed padded rows."""

    cache_size = 16

    def __init__(self, tokenizer: Tokenizer | WordTokenizer, model: UMT5Encoder, text_len: int = 512):
        if isinstance(tokenizer, WordTokenizer) and tokenizer.post_processor is None:
            tokenizer.end_with(EOS_ID)
        elif tokenizer.post_processor is None:
            from tokenizers.processors import TemplateProcessing

            tokenizer.post_processor = TemplateProcessing(single="$A </s>", special_tokens=[("</s>", EOS_ID)])
        tokenizer.enable_truncation(max_length=text_len)
        tokenizer.enable_padding(length=text_len, pad_id=PAD_ID, pad_token=tokenizer.id_to_token(PAD_ID) or "<pad>")
        self.tokenizer = tokenizer
        self.model = model
        self.text_len = text_len
        self.text_dim = model.cfg.dim
        self._cache: dict[str, Tensor] = {}

    @classmethod
    def from_state_dict(
        cls,
        tokenizer_dir: str | Path,
        state_dict: dict[str, Tensor],
        text_len: int = 512,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> UMT5TextEncoder:
        """Build from a tokenizer folder and Wan- or HF-layout weights without a second copy in memory."""
        tokenizer = load_umt5_tokenizer(tokenizer_dir)
        sd = remap_hf_umt5_keys(state_dict)
        with torch.device("meta"):
            model = UMT5Encoder(UMT5Config.from_state_dict(sd))
        model.load_state_dict(sd, assign=True)
        return cls(tokenizer, model.to(device=device, dtype=dtype), text_len)

    def tokenize(self, prompts: list[str]) -> tuple[Tensor, Tensor]:
        """Cleaned, `</s>`-terminated ids and attention mask, both [B, text_len]."""
        encodings = self.tokenizer.encode_batch([clean_prompt(p) for p in prompts])
        ids = torch.tensor([e.ids for e in encodings], dtype=torch.long)
        mask = torch.tensor([e.attention_mask for e in encodings], dtype=torch.long)
        return ids, mask

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> Tensor:
        """Features [B, text_len, dim], padded rows zeroed; recent prompts are cached as timelines repeat."""
        fresh: dict[str, Tensor] = {}
        missing = list(dict.fromkeys(p for p in prompts if p not in self._cache))
        if missing:
            device = self.model.token_embedding.weight.device
            ids, mask = (t.to(device) for t in self.tokenize(missing))
            out = self.model(ids, mask).masked_fill(mask[..., None] == 0, 0.0)
            fresh = dict(zip(missing, out, strict=True))
        rows = [fresh[p] if p in fresh else self._cache[p] for p in prompts]
        self._cache.update(fresh)
        while len(self._cache) > self.cache_size:
            self._cache.pop(next(iter(self._cache)))
        return torch.stack(rows)
