"""The embedded model's text side: a word-level tokenizer over the ShapesWorld vocabulary and unknown-word checks."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from longlive_cli.extras import require
from longlive_cli.models.word_tokenizer import WordTokenizer
from longlive_cli.world.grammar import MOTION_WORDS, SYNONYMS, VOCABULARY

if TYPE_CHECKING:
    from tokenizers import Tokenizer

SPECIAL_TOKENS = ("<pad>", "</s>", "<unk>")  # ids 0, 1, 2 as in umT5, so UMT5TextEncoder pads and ends the same way
UNK_ID = 2
PUNCTUATION = (",", ".")


def build_tokenizer() -> Tokenizer:
    """Lower-cased words and punctuation marks, one id each; words outside the vocabulary become ``<unk>``."""
    tk = require("tokenizers", "text", "training the tiny model's tokenizer")
    Tokenizer, models, normalizers, pre_tokenizers, processors = (
        tk.Tokenizer,
        tk.models,
        tk.normalizers,
        tk.pre_tokenizers,
        tk.processors,
    )
    words = (*SPECIAL_TOKENS, *PUNCTUATION, *VOCABULARY)
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return tokenizer


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


def understood_words() -> str:
    """The words that set an attribute, grouped by attribute: what a warning should show a user."""
    groups = {name: [w for words in table.values() for w in words] for name, table in SYNONYMS.items()}
    groups["motion"] = list(MOTION_WORDS)
    return "; ".join(f"{name}: {' '.join(words)}" for name, words in groups.items())


def unknown_words_message(words: list[str]) -> str:
    """The warning a renderer prints: what was not understood and which words the model does know."""
    quoted = ", ".join(repr(w) for w in words)
    return f"unknown words: {quoted} (the tiny model understands {understood_words()})"
