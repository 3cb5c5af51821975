"""Hypothesis strategies for hostile input: timelines, model specs and HTTP requests a hostile user could write."""

from __future__ import annotations

import json

from hypothesis import strategies as st

from longlive_cli.timeline import ATTENTION_KEYS, PROMPT_KEYS, TOP_KEYS

# Characters that have broken terminals, parsers or converters: controls, bidi, markup, surrogate escapes, digits.
NASTY_TEXT = [
    "[/]", "[bold]", "\\", "\x1b[31m", "\x1b]0;title\x07", "\u202e", "\u2066", "\x00", "\x7f", "\x85", "\u2028",
    "\ufeff", "~nosuchuser/x", "~/x", "../../etc/passwd", "9" * 5000, "1e999", "-0", "nan", ".inf", "0x10", "0o17",
    "1_000", "yes", "off", "null", "~", "&a", "*a", "<<", "!!python/object:os.system", "%YAML 1.1", "---", "...",
]  # fmt: skip

scalars = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.integers(min_value=-(10**4000), max_value=10**4000).filter(lambda n: abs(n) > 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=40),
    st.sampled_from(NASTY_TEXT),
    st.builds(lambda n, unit: f"{n}{unit}", st.integers(-(10**6), 10**30), st.sampled_from(["s", "f", "m", "x"])),
    st.builds(lambda w, h: f"{w}x{h}", st.integers(-16, 10**6), st.integers(-16, 10**6)),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _key(known):
    return st.one_of(st.sampled_from(known), st.text(max_size=12), st.sampled_from(NASTY_TEXT))


prompt = st.dictionaries(_key(PROMPT_KEYS), values, max_size=4)
attention = st.dictionaries(_key(ATTENTION_KEYS), values, max_size=3)
timeline_doc = st.fixed_dictionaries(
    {},
    optional={
        **{key: values for key in TOP_KEYS},
        "prompts": st.lists(prompt, max_size=5) | values,
        "attention": attention | values,
        "extra": values,
    },
)


def _dump(doc) -> str:
    return json.dumps(doc, ensure_ascii=False) if isinstance(doc, str) else _yaml(doc)


def _yaml(doc) -> str:
    import yaml

    try:
        return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    except (yaml.YAMLError, ValueError):
        return json.dumps(doc, default=str)


def _bomb(levels: int, fan: int) -> str:
    lines = [f"a0: &a0 [{', '.join(['x'] * fan)}]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * fan)}]" for i in range(1, levels)]
    return "\n".join(lines) + f"\nduration: 2s\nprompts: *a{levels - 1}\n"


FRAGMENTS = [
    "duration: 2s\n", "prompts:\n", "  - at: 0\n", "    text: a\n", "&a ", "*a ", "[", "]", "{", "}", ": ", "- ",
    "\t", "  ", "\n", "'", '"', "\\u", "\\x1b", "\\0", "\\ud800", "!!binary ", "? ", "|\n", ">\n", "#", ",",
    "9" * 60, "<<: *a\n",
]  # fmt: skip

raw_text = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=10), max_size=40).map("".join)


def _near_valid(key: str, value, text: str) -> str:
    """A valid timeline with one top-level key set to ``value`` and hostile prompt text."""
    doc = {"duration": "2s", "prompts": [{"at": 0, "text": text or "a"}, {"at": "1s", "text": "b"}]}
    doc[key] = value
    return _yaml(doc)


near_valid = st.builds(
    _near_valid,
    st.sampled_from([k for k in TOP_KEYS if k not in ("duration", "prompts")]),
    scalars | st.sampled_from([{"window": 9, "sink": 3}, {"window": 10**9}, "16000x16000", "64x64"]),
    st.sampled_from(NASTY_TEXT) | st.text(max_size=30),
)

hostile_timelines = st.one_of(
    near_valid,
    timeline_doc.map(_yaml),
    raw_text,
    st.builds(_bomb, st.integers(2, 12), st.integers(2, 12)),
    st.builds(lambda n, s: s * n + "1" + "]" * n, st.integers(1, 3000), st.sampled_from(["[", "- ", "{a: "])),
    st.builds(lambda doc, text: _yaml(doc) + text, timeline_doc, raw_text),
    st.builds(lambda key, n: f"duration: 2s\n{key}: {'9' * n}\n", st.sampled_from(TOP_KEYS), st.integers(4000, 6000)),
)


def _mutate_json(spec: dict, path: list[str], value) -> str:
    node = spec
    for key in path[:-1]:
        node = node.get(key) if isinstance(node, dict) and isinstance(node.get(key), dict) else None
        if node is None:
            return json.dumps(spec)
    if isinstance(node, dict) and path:
        node[path[-1]] = value
    return json.dumps(spec, default=str)


def hostile_specs(valid: str):
    """A valid spec JSON with one field replaced, truncated, or garbled."""
    base = json.loads(valid)
    keys = [[section, key] for section, sub in base.items() if isinstance(sub, dict) for key in sub]
    keys += [[key] for key in base]
    return st.one_of(
        st.builds(lambda p, v: _mutate_json(json.loads(valid), p, v), st.sampled_from(keys), values),
        st.integers(0, len(valid)).map(lambda n: valid[:n]),
        st.text(max_size=200),
        values.map(lambda v: json.dumps(v, default=str)),
    )


header_names = st.sampled_from(
    ["Host", "Content-Length", "Content-Type", "Origin", "X-Longlive-Token", "Transfer-Encoding", "Connection", "X"]
)
header_values = st.one_of(st.text(max_size=30), st.sampled_from(["\u00b2", "\u0661", "-1", "1" * 30, "0", "5"]))


@st.composite
def http_requests(draw, host: str, token: str) -> bytes:
    """A request line, headers (some duplicated or odd) and a body, as raw bytes."""
    method = draw(st.sampled_from(["GET", "POST", "PUT", "HEAD", "G\x00T", ""]))
    path = draw(st.sampled_from(["/", "/api/command", "/api/state", "/app.js", "/x", "//", "/" + "a" * 300]))
    headers = [("Host", host), ("Content-Type", "application/json"), ("X-Longlive-Token", token)]
    headers = draw(st.lists(st.sampled_from(headers) | st.tuples(header_names, header_values), max_size=8))
    body = draw(st.binary(max_size=64) | values.map(lambda v: json.dumps(v, default=str).encode()))
    lines = [f"{method} {path} HTTP/1.1", *(f"{k}: {v}" for k, v in headers), "Connection: close"]
    return "\r\n".join(lines).encode("utf-8", "surrogateescape") + b"\r\n\r\n" + body
