"""The embedded model's text side: a word-level tokenizer over the ShapesWorld vocabulary, and the words it knows."""

from __future__ import annotations

from typing import TYPE_CHECKING

from longlive_cli.extras import require
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


def understood_words() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The words that set an attribute, grouped by attribute: the model metadata a warning shows a user."""
    groups = {name: tuple(w for words in table.values() for w in words) for name, table in SYNONYMS.items()}
    groups["motion"] = tuple(MOTION_WORDS)
    return tuple(groups.items())
