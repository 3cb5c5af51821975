"""Word-level tokenizers (the embedded model's) read from Hugging Face tokenizer JSON without the `tokenizers` package.

The base install renders with the embedded model, so its tokenizer runs in plain Python. The result matches
`tokenizers` for the parts such files use: a WordLevel vocabulary, an optional Lowercase normalizer, Whitespace or
WhitespaceSplit pre-tokenization, a TemplateProcessing post-processor, truncation and padding to a fixed length.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from longlive_cli.extras import require

if TYPE_CHECKING:
    from tokenizers import Tokenizer

PRE_TOKENIZERS = {"Whitespace": re.compile(r"\w+|[^\w\s]+"), "WhitespaceSplit": re.compile(r"\S+")}


@dataclass(frozen=True)
class Encoding:
    """What ``encode`` gives back: ids and attention mask, as `tokenizers` names them."""

    ids: list[int]
    attention_mask: list[int]


class WordTokenizer:
    """One id per word; words outside the vocabulary become the unknown token."""

    def __init__(self, source: str, vocab: dict[str, int], unk: str, lowercase: bool, split: re.Pattern, template):
        self.source = source
        self.vocab = vocab
        self.unk = unk
        self.lowercase = lowercase
        self.split = split
        self.template = template
        self.post_processor = template or None
        self.max_length: int | None = None
        self.pad: tuple[int, int] | None = None
        self._tokens = {i: w for w, i in vocab.items()}

    @classmethod
    def from_str(cls, text: str) -> WordTokenizer | None:
        """The tokenizer of a JSON file this class can run exactly, or None when it needs `tokenizers`."""
        d = json.loads(text)
        model, norm, pre, post = (
            d.get("model") or {},
            d.get("normalizer"),
            d.get("pre_tokenizer"),
            d.get("post_processor"),
        )
        if model.get("type") != "WordLevel" or d.get("added_tokens") or d.get("truncation") or d.get("padding"):
            return None
        if norm is not None and norm.get("type") != "Lowercase":
            return None
        split = PRE_TOKENIZERS.get((pre or {"type": "WhitespaceSplit"}).get("type"))
        if split is None or (post is not None and post.get("type") != "TemplateProcessing"):
            return None
        template = []
        for item in (post or {}).get("single", [{"Sequence": {"id": "A"}}]):
            if "SpecialToken" in item:
                name = item["SpecialToken"]["id"]
                template.extend(post["special_tokens"][name]["ids"])
            else:
                template.append(None)
        if template.count(None) != 1:
            return None
        return cls(text, model["vocab"], model.get("unk_token", "<unk>"), norm is not None, split, template)

    def to_str(self) -> str:
        return self.source

    def words(self, text: str) -> list[str]:
        """The words the vocabulary is looked up with."""
        return self.split.findall(text.lower() if self.lowercase else text)

    def token_to_id(self, token: str) -> int | None:
        return self.vocab.get(token)

    def id_to_token(self, i: int) -> str | None:
        return self._tokens.get(i)

    def end_with(self, eos_id: int) -> None:
        """Append ``eos_id`` to every encoding, as umT5 does."""
        self.template = [None, eos_id]
        self.post_processor = self.template

    def enable_truncation(self, max_length: int) -> None:
        self.max_length = max_length

    def enable_padding(self, length: int, pad_id: int = 0, pad_token: str = "<pad>") -> None:
        self.pad = (length, pad_id)

    def encode(self, text: str) -> Encoding:
        unk = self.vocab[self.unk]
        ids = [self.vocab.get(w, unk) for w in self.words(text)]
        template = self.template or [None]
        if self.max_length is not None:
            ids = ids[: max(self.max_length - (len(template) - 1), 0)]
        at = template.index(None)
        ids = [*template[:at], *ids, *template[at + 1 :]]
        mask = [1] * len(ids)
        if self.pad is not None and len(ids) < self.pad[0]:
            extra = self.pad[0] - len(ids)
            ids, mask = ids + [self.pad[1]] * extra, mask + [0] * extra
        return Encoding(ids, mask)

    def encode_batch(self, texts: list[str]) -> list[Encoding]:
        return [self.encode(t) for t in texts]


def tokenizer_from_str(text: str):
    """A tokenizer from its JSON: the plain-Python word tokenizer when it can run it, else `tokenizers`."""
    word = WordTokenizer.from_str(text)
    if word is not None:
        return word
    return require("tokenizers", "text", "this model's tokenizer").Tokenizer.from_str(text)


def unknown_words(tokenizer: Tokenizer | WordTokenizer, text: str) -> list[str]:
    """Words of ``text`` a word-level tokenizer maps to ``<unk>``, in order and without repeats.

    Subword tokenizers (umT5's) spell out any word, so for them the list is always empty.
    """
    unk = tokenizer.token_to_id("<unk>")
    if unk is None:
        return []
    if isinstance(tokenizer, WordTokenizer):
        pieces = tokenizer.words(text)
    else:
        from tokenizers import models

        if not isinstance(tokenizer.model, models.WordLevel):
            return []
        if tokenizer.normalizer is not None:
            text = tokenizer.normalizer.normalize_str(text)
        pre = tokenizer.pre_tokenizer
        pieces = [w for w, _ in pre.pre_tokenize_str(text)] if pre else text.split()
    found = [word for word in pieces if re.search(r"\w", word) and tokenizer.token_to_id(word) in (None, unk)]
    return list(dict.fromkeys(found))
