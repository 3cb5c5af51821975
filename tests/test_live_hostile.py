"""Hostile requests to the live server get an HTTP answer, and text from requests reaches the terminal escaped."""

from __future__ import annotations

import socket

import pytest

from longlive_cli import cli

from .test_live import bundle, live, model  # noqa: F401 - fixtures


def raw_request(port: int, head: bytes, body: bytes = b"") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + b"\r\n\r\n" + body)
        sock.settimeout(10)
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
        return data


@pytest.mark.parametrize(
    ("headers", "status", "error"),
    [
        (["Content-Length: \u00b2"], b"411", b"ASCII digits"),
        (["Content-Length: \u0661"], b"411", b"ASCII digits"),
        (["Content-Length: 2", "Content-Length: 2"], b"400", b"one Content-Length"),
        (["Content-Length: -1"], b"411", b"ASCII digits"),
    ],
    ids=["superscript-two", "arabic-one", "twice", "negative"],
)
def test_odd_content_lengths_are_answered(live, headers, status, error):  # noqa: F811
    port = live.server.port
    head = [
        "POST /api/command HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Content-Type: application/json",
        f"X-Longlive-Token: {live.server.token}",
        "Connection: close",
        *headers,
    ]
    text = "\r\n".join(head)
    # Header bytes are read as Latin-1: a superscript two arrives as one byte, which str.isdigit() accepts.
    reply = raw_request(port, text.encode("latin-1", errors="replace"), b"{}")
    assert reply.split(b" ", 2)[1] == status, reply[:80]
    assert error in reply, reply
    assert live.session.error is None


def test_a_second_host_header_is_refused(live):  # noqa: F811
    port = live.server.port
    head = f"GET /api/state HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nHost: evil.example\r\nConnection: close"
    reply = raw_request(port, head.encode())
    assert reply.split(b" ", 2)[1] == b"400", reply[:80]


def test_prompt_text_is_echoed_escaped(capsys):
    cli._live_event(
        {
            "event": "switch",
            "landed_s": 1.0,
            "policy": "keep",
            "text": "a \u202e[red] \x1b]0;x\x07",
            "lag_s": None,
            "prompt": 1,
        }
    )
    printed = capsys.readouterr().err
    assert "\u202e" not in printed and "\x1b" not in printed
    assert "a \\u202e[red] \\x1b]0;x\\x07" in printed
