"""Warnings about a render that would still run but not as the user may expect: unknown words, settings the model
was not trained at. The same list goes to the terminal, into the sidecar, and into ``longlive check``."""

from __future__ import annotations

from .bundle import ModelSpec
from .models.word_tokenizer import unknown_words
from .timeline import Timeline


def vocabulary_warnings(tokenizer, timeline: Timeline, spec: ModelSpec) -> list[str]:
    """Words a small closed-vocabulary model would silently read as unknown."""
    out = []
    for i, p in enumerate(timeline.prompts):
        words = unknown_words(tokenizer, p.text)
        if words:
            out.append(f"prompts[{i}]: {unknown_words_message(words, spec)}")
    return out


def unknown_words_message(words: list[str], spec: ModelSpec) -> str:
    """What was not understood and, from the model's metadata, which words the model does know."""
    quoted = ", ".join(repr(w) for w in words)
    if not spec.vocabulary:
        return f"unknown words: {quoted} ({spec.name} reads them as unknown)"
    known = "; ".join(f"{name}: {' '.join(words)}" for name, words in spec.vocabulary)
    return f"unknown words: {quoted} (the {spec.name} model understands {known})"


def setting_warnings(spec: ModelSpec, size: tuple[int, int], fps: int, window: int) -> list[str]:
    """Size, frame rate and attention window the model was not trained at: rendered as asked, with a word why."""
    out = []
    if tuple(size) != tuple(spec.size):
        w, h = spec.size
        out.append(
            f"size {size[0]}x{size[1]}: {spec.name} was trained at {w}x{h}; at other sizes objects may come out "
            "misshapen or be lost on some frames"
        )
    if fps != spec.fps:
        pace = "slower" if fps < spec.fps else "faster"
        out.append(
            f"fps {fps}: {spec.name} makes motion at {spec.fps} fps; at {fps} fps the same frames play "
            f"{max(fps, spec.fps) / min(fps, spec.fps):.2g}x {pace} and prompt times fall on other frames"
        )
    if window > spec.engine.window:
        out.append(
            f"window {window}: {spec.name} was trained attending to {spec.engine.window} latent frames; a wider "
            "window costs time and memory and may degrade the picture rather than improve it"
        )
    return out
