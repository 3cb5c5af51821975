"""What can steer a live session, and the checks every message from outside passes before it reaches the engine."""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from enum import Enum

from ..engine import SwitchPolicy
from ..timeline import MAX_TEXT

MAX_MESSAGE_BYTES = 4096
PROMPT_KEYS = frozenset({"type", "text", "policy"})


class Control(str, Enum):
    """Commands that act on the session at once rather than at a chunk of their own."""

    PAUSE = "pause"
    RESUME = "resume"
    QUIT = "quit"


@dataclass(frozen=True)
class Prompt:
    """A new prompt, switched to at a chunk boundary with ``policy``; ``source`` says who sent it."""

    text: str
    policy: SwitchPolicy = SwitchPolicy.RECACHE
    source: str = "page"


class MessageError(ValueError):
    """A rejected message, with the HTTP status that says why; the stream is not affected."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def clean_text(text: str) -> str:
    """A prompt as the timeline will store it: whitespace runs made single spaces, no control characters."""
    if len(text) > MAX_TEXT:
        raise MessageError(f"prompt is {len(text)} characters; at most {MAX_TEXT}")
    cleaned = " ".join(text.split())
    if not cleaned:
        raise MessageError("empty prompt; describe what the video should show")
    bad = next((c for c in cleaned if unicodedata.category(c) in ("Cc", "Cs")), None)
    if bad is not None:
        raise MessageError(f"prompt holds a control character (U+{ord(bad):04X})")
    return cleaned


def parse_policy(word: object) -> SwitchPolicy:
    """One of recache, keep, clear, as ``SwitchPolicy.parse`` reads it; a ``MessageError`` otherwise."""
    try:
        return SwitchPolicy.parse(word, _short(word))
    except ValueError as e:
        raise MessageError(f"policy: {e}") from None


def parse_message(body: bytes) -> Prompt | Control:
    """A page's JSON message, checked against the schema, or a ``MessageError`` naming the first problem.

    ``{"type": "prompt", "text": str, "policy": "recache" | "keep" | "clear"}`` (policy optional),
    ``{"type": "pause"}`` or ``{"type": "resume"}``.
    """
    if len(body) > MAX_MESSAGE_BYTES:
        raise MessageError(f"message is {len(body)} bytes; at most {MAX_MESSAGE_BYTES}", status=413)
    try:
        data = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):
        raise MessageError("not valid UTF-8 JSON") from None
    if not isinstance(data, dict):
        raise MessageError(f"expected a JSON object, got {type(data).__name__}")
    kind = data.get("type")
    if kind == "prompt":
        extra = sorted(set(data) - PROMPT_KEYS)
        if extra:
            raise MessageError(f"unknown fields {extra} in a prompt message")
        text = data.get("text")
        if not isinstance(text, str):
            raise MessageError(f"'text' must be a string, got {_short(text)}")
        policy = parse_policy(data["policy"]) if "policy" in data else SwitchPolicy.RECACHE
        return Prompt(clean_text(text), policy, "page")
    if kind in (Control.PAUSE.value, Control.RESUME.value):
        if set(data) != {"type"}:
            raise MessageError(f"a {kind} message has no other fields")
        return Control(kind)
    raise MessageError(f"unknown message type {_short(kind)}; expected prompt, pause or resume")


def _short(value: object) -> str:
    """A value for an error message, cut short so a huge one cannot flood a log."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
