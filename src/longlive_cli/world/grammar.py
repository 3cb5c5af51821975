"""ShapesWorld prompts <-> attributes: one closed vocabulary, synonyms, templates and the held-out split."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

import numpy as np

SHAPES = ("circle", "square", "triangle")
COLORS = ("red", "green", "blue", "yellow", "purple")
SIZES = ("small", "large")
MOTIONS = ("still", "horizontal", "vertical", "circling")
BACKGROUNDS = ("black", "gray", "white")
ATTRIBUTE_NAMES = ("shape", "color", "size", "motion", "background")
VALUES: dict[str, tuple[str, ...]] = dict(
    zip(ATTRIBUTE_NAMES, (SHAPES, COLORS, SIZES, MOTIONS, BACKGROUNDS), strict=True)
)

HELD_OUT = "every green triangle and every purple object circling (never in training data)"


@dataclass(frozen=True)
class Attributes:
    """Everything a ShapesWorld prompt can say; one value per attribute, canonical names only."""

    shape: str
    color: str
    size: str
    motion: str
    background: str

    def __post_init__(self) -> None:
        for name in ATTRIBUTE_NAMES:
            if getattr(self, name) not in VALUES[name]:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; expected one of {VALUES[name]}")


def is_held_out(attrs: Attributes) -> bool:
    """True for combinations kept out of training so generalisation can be measured (see ``HELD_OUT``)."""
    return (attrs.color == "green" and attrs.shape == "triangle") or (
        attrs.color == "purple" and attrs.motion == "circling"
    )


# Words and phrases that set an attribute; the canonical value is always one of its own synonyms.
SYNONYMS: dict[str, dict[str, tuple[str, ...]]] = {
    "shape": {
        "circle": ("circle", "ball", "disc", "disk", "dot"),
        "square": ("square", "box", "block", "tile"),
        "triangle": ("triangle", "wedge", "pyramid"),
    },
    "color": {
        "red": ("red", "crimson", "scarlet"),
        "green": ("green", "emerald", "lime"),
        "blue": ("blue", "azure", "cobalt"),
        "yellow": ("yellow", "golden", "lemon"),
        "purple": ("purple", "violet", "amethyst"),
    },
    "size": {
        "small": ("small", "little", "tiny"),
        "large": ("large", "big", "huge"),
    },
    "background": {
        "black": ("black", "dark", "inky"),
        "gray": ("gray", "grey", "slate"),
        "white": ("white", "light", "pale"),
    },
}
# Phrases describe() uses for motion; parse() reads them through MOTION_WORDS and MOTION_PHRASES.
MOTION_TEXT: dict[str, tuple[str, ...]] = {
    "still": ("sitting still", "standing still", "motionless", "resting", "not moving", "at rest"),
    "horizontal": (
        "moving left and right",
        "drifting left and right",
        "sliding from side to side",
        "bouncing left and right",
        "moving horizontally",
        "going back and forth sideways",
    ),
    "vertical": (
        "moving up and down",
        "bouncing up and down",
        "rising and falling",
        "drifting up and down",
        "moving vertically",
    ),
    "circling": ("circling", "orbiting", "moving in a circle", "going round in circles", "travelling in circles"),
}
MOTION_WORDS: dict[str, str] = {
    **dict.fromkeys(("still", "motionless", "stationary", "resting"), "still"),
    **dict.fromkeys(("left", "right", "sideways", "horizontally", "side"), "horizontal"),
    **dict.fromkeys(("up", "down", "vertically", "rising", "falling"), "vertical"),
    **dict.fromkeys(("circling", "orbiting", "orbits", "circles"), "circling"),
}
MOTION_PHRASES: dict[tuple[str, ...], str] = {
    ("not", "moving"): "still",
    ("at", "rest"): "still",
    ("in", "a", "circle"): "circling",
    ("in", "circles"): "circling",
}
BACKGROUND_NOUNS = ("background", "backdrop", "canvas")
FILLERS = frozenset(
    ("a", "an", "the", "is", "are", "it", "its", "that", "which", "while", "now", "then", "and", "with", "object")
    + ("on", "over", "against", "in", "of", "front", "to", "into", "from", "back", "forth", "round", "around")
    + ("moving", "moves", "move", "drifting", "drifts", "drift", "sliding", "slides", "slide", "bouncing", "bounces")
    + ("bounce", "gliding", "glides", "going", "goes", "travelling", "traveling", "travels", "floating", "floats")
    + ("sitting", "sits", "standing", "stands", "staying", "stays", "shape", "thing", "turns", "turn", "becomes")
    + ("become", "changes", "change", "grows", "shrinks", "starts", "stops")
    + BACKGROUND_NOUNS
)

LEXICON: dict[tuple[str, ...], tuple[str, str]] = {
    **{(word,): (name, value) for name, table in SYNONYMS.items() for value, words in table.items() for word in words},
    **{(word,): ("motion", value) for word, value in MOTION_WORDS.items()},
    **{phrase: ("motion", value) for phrase, value in MOTION_PHRASES.items()},
}
LONGEST_PHRASE = max(len(key) for key in LEXICON)
VOCABULARY: tuple[str, ...] = tuple(sorted({word for key in LEXICON for word in key} | FILLERS))

TEMPLATES = (
    "{a_size} {size} {color} {shape} {motion} {prep} {a_bg} {bg} {noun}",
    "{size} {color} {shape} {motion} {prep} {a_bg} {bg} {noun}",
    "{a_color} {color} {shape}, {size}, {motion} {prep} {a_bg} {bg} {noun}",
    "{bg} {noun} with {a_size} {size} {color} {shape} {motion}",
    "{a_size} {size} {shape} in {color} {motion} {prep} {a_bg} {bg} {noun}",
    "{prep} {a_bg} {bg} {noun}, {a_size} {size} {color} {shape} is {motion}",
)
PREPOSITIONS = ("on", "over", "against", "in front of")


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def describe(attrs: Attributes, rng: np.random.Generator) -> str:
    """One random phrasing of ``attrs``; every phrasing parses back to exactly ``attrs``."""

    def pick(options: tuple[str, ...]) -> str:
        return options[rng.integers(len(options))]

    words = {name: pick(SYNONYMS[name][getattr(attrs, name)]) for name in ("shape", "color", "size")}
    bg = pick(SYNONYMS["background"][attrs.background])
    return pick(TEMPLATES).format(
        **words,
        motion=pick(MOTION_TEXT[attrs.motion]),
        bg=bg,
        noun=pick(BACKGROUND_NOUNS),
        prep=pick(PREPOSITIONS),
        a_size=_article(words["size"]),
        a_color=_article(words["color"]),
        a_bg=_article(bg),
    )


@dataclass(frozen=True)
class ParseResult:
    """Attributes a prompt mentions (None where it is silent) and the words it did not understand."""

    shape: str | None = None
    color: str | None = None
    size: str | None = None
    motion: str | None = None
    background: str | None = None
    unknown: tuple[str, ...] = ()

    def mentioned(self) -> dict[str, str]:
        """Only the attributes the prompt names: what a metric may score."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "unknown" and getattr(self, f.name)}

    def attributes(self, fallback: Attributes | None = None) -> Attributes:
        """Complete attributes, silent ones taken from ``fallback`` (e.g. the previous prompt's)."""
        values = {name: getattr(fallback, name) for name in ATTRIBUTE_NAMES} if fallback else {}
        values.update(self.mentioned())
        missing = [name for name in ATTRIBUTE_NAMES if name not in values]
        if missing:
            raise ValueError(f"prompt does not say its {', '.join(missing)}")
        return Attributes(**values)


def parse(text: str) -> ParseResult:
    """Greedy longest-phrase match over lowercase words; when an attribute is named twice the last one wins."""
    tokens = re.findall(r"[a-z]+", text.lower())
    found: dict[str, str] = {}
    unknown: list[str] = []
    i = 0
    while i < len(tokens):
        for n in range(min(LONGEST_PHRASE, len(tokens) - i), 0, -1):
            hit = LEXICON.get(tuple(tokens[i : i + n]))
            if hit:
                found[hit[0]] = hit[1]
                i += n
                break
        else:
            if tokens[i] not in FILLERS:
                unknown.append(tokens[i])
            i += 1
    return ParseResult(**found, unknown=tuple(unknown))


def describe_change(old: Attributes, new: Attributes, rng: np.random.Generator) -> str:
    """A follow-up prompt naming the object and only what changed ("the red ball turns blue and moves up")."""

    def pick(options: tuple[str, ...]) -> str:
        return options[rng.integers(len(options))]

    parts = []
    if new.color != old.color:
        parts.append(f"turns {pick(SYNONYMS['color'][new.color])}")
    if new.shape != old.shape:
        parts.append(f"becomes a {pick(SYNONYMS['shape'][new.shape])}")
    if new.size != old.size:
        parts.append(f"grows {pick(SYNONYMS['size'][new.size])}" if new.size == "large" else "shrinks to small")
    if new.motion != old.motion:
        parts.append(f"starts {pick(MOTION_TEXT[new.motion])}" if new.motion != "still" else "stops, resting")
    if new.background != old.background:
        bg = pick(SYNONYMS["background"][new.background])
        parts.append(f"now on {_article(bg)} {bg} {pick(BACKGROUND_NOUNS)}")
    subject = f"the {pick(SYNONYMS['color'][old.color])} {pick(SYNONYMS['shape'][old.shape])}"
    return f"{subject} {' and '.join(parts)}" if parts else subject
