"""Text from files and requests made safe for a terminal: control, bidi and invalid characters shown escaped.

A prompt, key or path can hold escape sequences that move the cursor or retitle the window, bidi controls that
reorder what is shown, or rich markup; ``printable`` writes such characters as ``\\x1b`` or ``\\u202e`` and
``markup_safe`` also escapes rich's square brackets, for text printed through a rich console.
"""

from __future__ import annotations

import re
import unicodedata

from rich.markup import escape

# Bidi embeddings, overrides and isolates, and the marks that steer them.
BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_UNSAFE = re.compile(f"[\\x00-\\x09\\x0b-\\x1f\\x7f-\\x9f{BIDI}\\ud800-\\udfff\\u2028\\u2029]")


def _escaped(match: re.Match[str]) -> str:
    code = ord(match[0])
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, newlines: bool = True) -> str:
    """``text`` with every character that could act on a terminal written as an escape; newlines kept if asked."""
    shown = _UNSAFE.sub(_escaped, str(text))
    if not newlines:
        shown = shown.replace("\n", "\\n")
    return "".join(c if unicodedata.category(c) != "Cf" or c == "\u200d" else _escape_one(c) for c in shown)


def _escape_one(c: str) -> str:
    return f"\\u{ord(c):04x}"


def markup_safe(text: str, newlines: bool = True) -> str:
    """``printable`` text with rich markup escaped, for ``Console.print``."""
    return escape(printable(text, newlines))
