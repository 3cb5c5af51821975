"""Fuzzing the readers of outside input with Hypothesis: each example ends in a value or the reader's own located
error, within the profile's deadline (see conftest.py), and its message prints safely on a terminal."""

from __future__ import annotations

import io
import socket
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from longlive_cli.bundle import embedded_path, read_bundle_spec
from longlive_cli.checkpoints import CheckpointError
from longlive_cli.live.commands import Control, MessageError, Prompt, clean_text, parse_message
from longlive_cli.live.server import _Handler
from longlive_cli.render import RenderError, RenderSettings
from longlive_cli.specs import dit_config_from_json, spec_from_json
from longlive_cli.terminal import markup_safe
from longlive_cli.timeline import Timeline, TimelineError, parse_timeline

from .hostile import hostile_specs, hostile_timelines, http_requests, values

TINY = read_bundle_spec(embedded_path())


def printed(message: str) -> str:
    """The message as a rich console prints it: no markup error, no control character left."""
    out = io.StringIO()
    Console(file=out, highlight=False, width=200).print(f"[red]error:[/] {markup_safe(message)}")
    text = out.getvalue()
    assert not any(c < " " and c != "\n" for c in text), repr(text)
    return text


@settings(max_examples=300)
@given(hostile_timelines)
def test_timeline_parser_gives_a_timeline_or_a_located_error(text):
    try:
        timeline = parse_timeline(text, Path("show.yaml"))
    except TimelineError as e:
        assert str(e).startswith("show.yaml"), str(e)
        printed(str(e))
        return
    assert isinstance(timeline, Timeline)
    try:
        RenderSettings.for_spec(timeline, TINY, "cpu", torch.float32)
    except (RenderError, TimelineError) as e:
        printed(str(e))
    for change in timeline.prompts:
        printed(change.text)


@settings(max_examples=150)
@given(hostile_specs(TINY.to_json()))
def test_spec_reader_gives_a_spec_or_an_error_naming_the_file(text):
    try:
        spec_from_json(text, "model.safetensors [spec]")
    except CheckpointError as e:
        assert str(e).startswith("model.safetensors [spec]"), str(e)
        printed(str(e))


@settings(max_examples=100)
@given(hostile_specs(TINY.to_json()).map(lambda text: text.replace('"dit": {', '"x": {')) | values.map(str))
def test_wan_config_reader_gives_a_config_or_an_error_naming_the_file(text):
    try:
        dit_config_from_json(text, "config.json")
    except CheckpointError as e:
        assert str(e).startswith("config.json"), str(e)


@settings(max_examples=200)
@given(st.binary(max_size=300) | values.map(lambda v: __import__("json").dumps(v, default=str).encode()))
def test_live_messages_parse_or_are_refused(body):
    try:
        message = parse_message(body)
    except MessageError as e:
        assert 400 <= e.status < 500
        printed(str(e))
        return
    assert isinstance(message, (Prompt, Control))


@settings(max_examples=200)
@given(st.text(max_size=100))
def test_stdin_prompts_are_cleaned_or_refused(line):
    try:
        text = clean_text(line)
    except MessageError:
        return
    assert text == " ".join(text.split()) and printed(text)


class _Session:
    def state(self) -> dict:
        return {"state": "running"}

    def submit(self, prompt):
        return SimpleNamespace(boundary=0)

    def control(self, command) -> None:
        pass


HOST = "127.0.0.1:8765"
LIVE = SimpleNamespace(
    timeout_s=0.5,
    static={"/": (b"<html></html>", "text/html"), "/app.js": (b"", "text/javascript")},
    session=_Session(),
    token="secret-token",
    hosts={HOST},
    origins={f"http://{HOST}"},
)


def _handle(served: socket.socket) -> None:
    """What the server does with one connection: handle it, then close it."""
    try:
        _Handler(served, ("127.0.0.1", 1), SimpleNamespace(live=LIVE))
        served.shutdown(socket.SHUT_WR)
        while served.recv(65536):  # take what the handler left unread, so closing sends no reset over the reply
            pass
    finally:
        served.close()


def _serve(request: bytes) -> bytes:
    """One request through the live server's handler over a socket pair; the whole reply."""
    client, served = socket.socketpair()
    client.settimeout(5)
    served.settimeout(5)
    client.sendall(request)
    client.shutdown(socket.SHUT_WR)
    handler = threading.Thread(target=_handle, args=(served,))
    handler.start()
    reply = b""
    try:
        while chunk := client.recv(65536):
            reply += chunk
    finally:
        handler.join(10)
        client.close()
    assert not handler.is_alive(), "the handler did not finish"
    return reply


@pytest.mark.parametrize("path", ["/api/state", "/api/command"])
def test_the_fuzz_harness_reaches_the_handler(path):
    body = b'{"type": "pause"}'
    head = f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\nX-Longlive-Token: secret-token"
    reply = _serve(f"{head}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    assert reply.split(b" ", 2)[1] == (b"404" if path == "/api/state" else b"200"), reply[:100]


@settings(max_examples=100)
@given(http_requests(HOST, "secret-token"))
def test_live_server_answers_every_request(request):
    reply = _serve(request)
    if not reply:  # the request line was unreadable: http.server closes without a status for a few of those
        assert not request.startswith((b"GET /", b"POST /", b"PUT /", b"HEAD /")) or b"\r\n\r\n" not in request
        return
    if not reply.startswith(b"HTTP/1."):  # a request line of two words reads as HTTP/0.9: the error page alone
        assert b"Error code explanation: 400" in reply, reply[:100]
        return
    status = int(reply.split(b" ", 2)[1])
    assert 200 <= status < 600
