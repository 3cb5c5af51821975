"""Model specs, Wan ``config.json`` files and tokenizers, checked before anything is built from them.

A spec is data from a file: every number in it is bounded here, and the model it describes must stay under a
parameter budget, so a bad or hostile spec fails with a message naming the file and the key instead of building
without end.
"""

from __future__ import annotations

import dataclasses
import json
import math
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .checkpoints import CheckpointError
from .models.dit import DiTConfig

if TYPE_CHECKING:
    from .bundle import ModelSpec

MAX_JSON_CHARS = 1_000_000
MAX_INT = 1 << 20
MAX_LAYERS = 512
MAX_LIST = 64
# Far above any model this tool runs (Wan 14B has 14e9), far below what would exhaust a machine's memory.
MAX_PARAMS = 100e9


def _bounded(value: Any, key: str, source: str, depth: int = 0) -> None:
    """Every number a small non-negative int or a finite float, lists short, nesting shallow."""
    where = f"{source}: {key or 'spec'}"
    if depth > 8:
        raise CheckpointError(f"{where}: nested too deep")
    if isinstance(value, dict):
        for k, v in value.items():
            _bounded(v, f"{key}.{k}" if key else str(k), source, depth + 1)
    elif isinstance(value, list):
        if len(value) > MAX_LIST:
            raise CheckpointError(f"{where}: a list of {len(value)} entries; at most {MAX_LIST}")
        for i, v in enumerate(value):
            _bounded(v, f"{key}[{i}]", source, depth + 1)
    elif isinstance(value, bool) or value is None or isinstance(value, str):
        return
    elif isinstance(value, int):
        high = MAX_LAYERS if key.endswith("num_layers") else MAX_INT
        if not 0 <= value <= high:
            raise CheckpointError(f"{where}: {value} is out of range (0 to {high})")
    elif isinstance(value, float) and not math.isfinite(value):
        raise CheckpointError(f"{where}: {value} is not a finite number")


def _json(text: str, source: str) -> dict:
    """A JSON object from a file, with size, syntax and nesting errors naming the file."""
    if len(text) > MAX_JSON_CHARS:
        raise CheckpointError(f"{source}: {len(text)} characters; a spec or config is at most {MAX_JSON_CHARS}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{source}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    except RecursionError:
        raise CheckpointError(f"{source}: JSON nested too deep") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{source}: expected a JSON object, got {type(data).__name__}")
    _bounded(data, "", source)
    return data


def _dit_params(cfg: DiTConfig) -> float:
    """Parameters of a DiT, roughly: self and cross attention plus the feed-forward, per block."""
    return cfg.num_layers * (8 * cfg.dim * cfg.dim + 2 * cfg.dim * cfg.ffn_dim) + cfg.text_dim * cfg.dim


def _check_budget(spec_params: float, source: str) -> None:
    if spec_params > MAX_PARAMS:
        raise CheckpointError(f"{source}: describes a model of about {spec_params:.2g} parameters; at most 1e11")


def spec_from_json(text: str, source: str) -> ModelSpec:
    """A ``ModelSpec`` from its JSON, every key checked and the model's size bounded before anything is built."""
    from .bundle import ModelSpec

    _json(text, source)
    try:
        spec = ModelSpec.from_json(text)
    except KeyError as e:
        raise CheckpointError(f"{source}: the spec has no {e.args[0]!r}") from None
    except (TypeError, ValueError, AttributeError, IndexError) as e:
        raise CheckpointError(f"{source}: not a valid model spec ({e})") from None
    _typed(spec, "", source)
    t = spec.text
    text_params = t.num_layers * (4 * t.dim * t.dim_attn + 2 * t.dim * t.dim_ffn) + t.vocab * t.dim
    _check_budget(_dit_params(spec.dit) + text_params, source)
    return spec


def _typed(config: Any, prefix: str, source: str) -> None:
    """Every field of a config dataclass of the kind its default is (a number where a number belongs)."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        key = prefix + f.name
        if dataclasses.is_dataclass(value):
            _typed(value, f"{key}.", source)
            continue
        default = f.default
        if default is dataclasses.MISSING or default is None or isinstance(value, Enum):
            continue
        if f.name == "vocabulary":
            _vocabulary(value, key, source)
            continue
        if f.name == "sizes":
            _sizes(value, key, source)
            continue
        kinds = (int, float) if isinstance(default, float) else (type(default),)
        wrong = not isinstance(value, kinds) or (isinstance(value, bool) and not isinstance(default, bool))
        if isinstance(default, tuple) and not wrong:
            wrong = any(type(v) not in (int, float, bool) for v in value)
        if wrong:
            raise CheckpointError(f"{source}: {key}: expected {type(default).__name__}, got {value!r:.60}")


def _vocabulary(value: Any, key: str, source: str) -> None:
    """Words by attribute: (name, (word, ...)) pairs of strings, a bounded number of them."""
    pairs_ok = isinstance(value, tuple) and len(value) <= 64
    for pair in value if pairs_ok else ():
        name, words = pair
        pairs_ok = pairs_ok and isinstance(name, str) and isinstance(words, tuple) and len(words) <= 10_000
        pairs_ok = pairs_ok and all(isinstance(w, str) for w in words)
    if not pairs_ok:
        raise CheckpointError(f"{source}: {key}: expected words by attribute, got {value!r:.60}")


def _sizes(value: Any, key: str, source: str) -> None:
    """Sizes as [width, height] pairs of positive whole numbers, a bounded number of them."""
    ok = isinstance(value, tuple) and len(value) <= 64
    ok = ok and all(
        len(size) == 2 and all(type(side) is int and 0 < side <= 1 << 16 for side in size) for size in value
    )
    if not ok:
        raise CheckpointError(f"{source}: {key}: expected [width, height] pairs, got {value!r:.60}")


def dit_config_from_json(text: str, source: str) -> DiTConfig:
    """The DiT sizes of a Wan ``config.json``, checked like a spec."""
    data = _json(text, source)
    try:
        cfg = DiTConfig.from_dict(data)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{source}: not a valid Wan config ({e})") from None
    _typed(cfg, "", source)
    _check_budget(_dit_params(cfg), source)
    return cfg


def tokenizer_from_str(text: str, source: str):
    """A tokenizer from its JSON (plain Python where it can), or a CheckpointError naming the file."""
    from .extras import MissingExtra
    from .models.word_tokenizer import tokenizer_from_str as build

    try:
        return build(text)
    except MissingExtra:
        raise
    except Exception as e:  # noqa: BLE001 - the tokenizers library raises plain Exception on bad JSON
        reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise CheckpointError(f"{source}: not a readable tokenizer ({reason})") from None


def tokenizer_from_file(path: Path):
    """``tokenizer_from_str`` on a file, with read and encoding errors named too."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: cannot read the tokenizer ({e})") from None
    return tokenizer_from_str(text, str(path))
