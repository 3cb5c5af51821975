"""`longlive live`: chunk-boundary switches, replay of recordings, stdin commands, the server's defences, a browser."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from longlive_cli.bundle import load_bundle
from longlive_cli.cli import app
from longlive_cli.engine import SwitchPolicy
from longlive_cli.live.commands import MAX_MESSAGE_BYTES, Control, MessageError, Prompt, parse_message
from longlive_cli.live.frames import FrameHub, encode_png
from longlive_cli.live.record import Landed, Recorder, timeline_text
from longlive_cli.live.server import TOKEN_HEADER, LiveServer
from longlive_cli.live.session import LiveSession, QueueFull
from longlive_cli.live.stdin import LineReader
from longlive_cli.render import RenderSettings
from longlive_cli.timeline import load_timeline, parse_timeline, plan_changes, video_frame_of_latent
from longlive_cli.video import read_frames, read_video_info

from .browser import find_chromium
from .fakes import FAST_SPEC, write_converted

runner = CliRunner()
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT = Path("/tmp/longlive-live-browser.png")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return write_converted(tmp_path_factory.mktemp("model") / "fast.safetensors", FAST_SPEC)


@pytest.fixture(scope="module")
def bundle(model):
    return load_bundle(model)


def settings_for(bundle, seed: int = 3) -> RenderSettings:
    timeline = parse_timeline("duration: 240s\nprompts:\n  - at: 0\n    text: a\n")
    return RenderSettings.resolve(timeline, bundle, seed=seed)


def session_for(bundle, max_frames: int = 3840, **kw) -> LiveSession:
    return LiveSession(bundle, settings_for(bundle), max_frames=max_frames, decoder=bundle.decoder("auto"), **kw)


def wait_until(predicate, timeout: float = 20.0, step: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(step)


def test_prompt_lands_at_the_next_chunk_boundary(bundle):
    session = session_for(bundle, pace=False)
    chunk = session.chunk
    session.submit(Prompt("a red circle moving right", source="test"))
    session.start()
    assert session.wait_frames(30, timeout=20)
    running = session.submit(Prompt("a blue square", SwitchPolicy.KEEP))
    assert session.wait_settled(timeout=20)
    session.control(Control.PAUSE)
    assert session.wait_settled(timeout=20)
    latents = session.latents
    waiting = session.submit(Prompt("a green circle", SwitchPolicy.CLEAR))
    assert waiting.boundary == latents and latents % chunk == 0
    time.sleep(0.2)
    assert session.latents == latents, "nothing is generated while paused"
    session.control(Control.RESUME)
    assert session.wait_settled(timeout=20)
    session.control(Control.QUIT)
    session.join(20)
    assert not session.is_alive() and session.stopped_by == "quit" and session.error is None
    assert running.latent == running.boundary and running.boundary % chunk == 0
    assert waiting.latent == latents
    assert [c.index for c in session.changes] == [0, 1, 2]
    assert session.changes[1].policy is SwitchPolicy.KEEP and session.changes[2].policy is SwitchPolicy.CLEAR


def test_queue_is_bounded(bundle):
    session = session_for(bundle, queue_limit=2)
    session.submit(Prompt("a"))
    session.submit(Prompt("b"))
    with pytest.raises(QueueFull):
        session.submit(Prompt("c"))


def test_recording_replays_to_the_same_frames(tmp_path, bundle, model):
    out = tmp_path / "live.mp4"
    settings = settings_for(bundle)
    recorder = Recorder(out, settings, str(model))
    frames = 100  # not a whole number of chunks: the last one is cut, as render cuts it
    session = LiveSession(bundle, settings, max_frames=frames, decoder=bundle.decoder("auto"), pace=False)
    session.recorder = recorder
    session.submit(Prompt("a red circle moving right"))
    session.start()
    for at, text, policy in (
        (25, "a blue circle moving up", "keep"),
        (50, "a green square", "clear"),
        (70, "red", "recache"),
    ):
        session.wait_frames(at, timeout=20)
        session.submit(Prompt(text, SwitchPolicy(policy)))
    session.join(30)
    assert session.stopped_by == "limit" and session.error is None
    timeline = load_timeline(out.with_suffix(".yaml"))
    assert timeline.frames() == frames
    plan = plan_changes(timeline, session.chunk)
    assert [c.landed for c in plan.changes] == [c.latent for c in session.changes]
    assert [timeline.policy_at(i) for i in range(1, 4)] == ["keep", "clear", "recache"]
    assert not plan.warnings
    result = runner.invoke(app, ["render", str(out.with_suffix(".yaml")), "-q"])
    assert result.exit_code == 0, result.output
    replay = out.with_name("live.replay.mp4")
    live_frames, replay_frames = list(read_frames(out)), list(read_frames(replay))
    assert len(live_frames) == len(replay_frames) == frames
    assert all((a == b).all() for a, b in zip(live_frames, replay_frames, strict=True))
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["result"] == {"frames_generated": frames, "stopped_by": "limit", "frames_written": frames}
    rendered = json.loads(replay.with_suffix(".json").read_text())
    assert [c["landed_frame"] for c in side["changes"]] == [c["landed_frame"] for c in rendered["changes"]]


ODD_PROMPTS = [
    "yes",
    "null",
    "~",
    "- a",
    "# x",
    "a: b",
    "'q'",
    '"dq"',
    "é ✓ 日本",
    "zero\u200bwidth",
    "1e3",
    "*x",
    "!t",
    "%x",
]


def test_recorded_timeline_keeps_any_prompt_text(bundle):
    settings = settings_for(bundle)
    landed = [Landed(text, 3 * i, None if i == 0 else SwitchPolicy.KEEP) for i, text in enumerate(ODD_PROMPTS)]
    frames = video_frame_of_latent(3 * len(landed))
    text = timeline_text(landed, frames, settings, "tiny", "none", "x.replay.mp4", "longlive render x.yaml")
    timeline = parse_timeline(text)
    assert [p.text for p in timeline.prompts] == ODD_PROMPTS
    assert [c.landed for c in plan_changes(timeline, 3).changes] == [c.latent for c in landed]
    assert timeline.frames() == frames and timeline.seed == settings.seed


def test_cli_live_from_stdin_records_and_replays(tmp_path, model):
    out = tmp_path / "typed.mp4"
    script = "# a script\na red circle moving right\n:wait 1s\n:policy keep\nblue square\n\n:wait 0.5s\n:bogus\ngreen\n"
    args = ["live", "--model", str(model), "--port", "0", "--no-pace", "--record", str(out), "--seed", "5"]
    result = runner.invoke(app, args, input=script)
    assert result.exit_code == 0, result.output
    assert "steer: http://127.0.0.1:" in result.output and "unknown command ':bogus'" in result.output
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["result"]["stopped_by"] == "eof"
    # No --duration: it runs until stopped, so past the RoPE table, in relative positions, which the replay keeps.
    assert (side["settings"]["limit_s"], side["settings"]["positions"]) == (86400, "relative")
    assert parse_timeline(out.with_suffix(".yaml").read_text()).positions == "relative"
    assert [(c["text"], c["policy"], c["source"]) for c in side["changes"]] == [
        ("a red circle moving right", None, "stdin"),
        ("blue square", "keep", "stdin"),
        ("green", "keep", "stdin"),
    ]
    replay = runner.invoke(app, ["render", str(out.with_suffix(".yaml")), "-q"])
    assert replay.exit_code == 0, replay.output
    pairs = zip(read_frames(out), read_frames(out.with_name("typed.replay.mp4")), strict=True)
    assert all((a == b).all() for a, b in pairs)


class Pipe:
    """A stdin stand-in that the test writes lines into."""

    def __init__(self):
        r, w = os.pipe()
        self.reader = os.fdopen(r, "r", encoding="utf-8")
        self.writer = os.fdopen(w, "w", encoding="utf-8", buffering=1)

    def send(self, text: str) -> None:
        self.writer.write(text)


def test_stdin_commands(bundle):
    session = session_for(bundle, pace=False)
    pipe, said = Pipe(), []
    reader = LineReader(session, pipe.reader, report=said.append)
    session.start()
    reader.start()
    pipe.send("a red circle\n")
    assert session.wait_frames(20, timeout=20)
    pipe.send(":policy keep\nblue square\n:policy bad\n")
    wait_until(lambda: len(session.changes) == 2)
    assert session.changes[1].policy is SwitchPolicy.KEEP and session.changes[1].source == "stdin"
    pipe.send(":pause\n")
    wait_until(lambda: session.state()["state"] == "paused")
    assert session.wait_settled(timeout=20)
    frames = session.frames
    time.sleep(0.2)
    assert session.frames == frames
    pipe.send(":resume\n")
    assert session.wait_frames(frames + 24, timeout=20)
    pipe.send("x" * 70_000 + "\n:nope\n")
    wait_until(lambda: len(said) >= 3)
    assert any("recache, keep, clear" in s for s in said)
    assert any("longer than" in s for s in said) and any("unknown command" in s for s in said)
    pipe.send(":quit\n")
    session.join(20)
    reader.join(5)
    assert session.stopped_by == "quit" and not reader._thread.is_alive()


def test_end_of_input_stops_unless_keep_running(bundle):
    pipe = Pipe()
    session = session_for(bundle, pace=False)
    LineReader(session, pipe.reader).start()
    session.start()
    pipe.send("a red circle\n")
    pipe.writer.close()
    session.join(20)
    assert session.stopped_by == "eof" and len(session.changes) == 1
    pipe = Pipe()
    session = session_for(bundle)
    reader = LineReader(session, pipe.reader, keep_running=True)
    reader.start()
    session.start()
    pipe.send("a red circle\n")
    pipe.writer.close()
    reader.join(5)
    assert session.wait_frames(20, timeout=20) and session.is_alive()
    session.stop()
    session.join(20)


VALID = [
    (b'{"type": "prompt", "text": "a red circle", "policy": "keep"}', Prompt("a red circle", SwitchPolicy.KEEP)),
    (b'{"type": "prompt", "text": "  two\\n lines "}', Prompt("two lines")),
    (b'{"type": "pause"}', Control.PAUSE),
    (b'{"type": "resume"}', Control.RESUME),
]
INVALID = [
    (b"", 400),
    (b"{", 400),
    (b"\xff\xfe", 400),
    (b"null", 400),
    (b"[1, 2]", 400),
    (b'"prompt"', 400),
    (b"[" * 2000 + b"]" * 2000, 400),
    (b'{"type": "prompt"}', 400),
    (b'{"type": "prompt", "text": 5}', 400),
    (b'{"type": "prompt", "text": ["a"]}', 400),
    (b'{"type": "prompt", "text": "   "}', 400),
    (b'{"type": "prompt", "text": "a\\u0000b"}', 400),
    (b'{"type": "prompt", "text": "\\ud800"}', 400),
    (b'{"type": "prompt", "text": "a", "policy": "recash"}', 400),
    (b'{"type": "prompt", "text": "a", "policy": null}', 400),
    (b'{"type": "prompt", "text": "a", "extra": 1}', 400),
    (b'{"type": "pause", "now": true}', 400),
    (b'{"type": "quit"}', 400),
    (b'{"type": "PROMPT", "text": "a"}', 400),
    (b'{"type": ["prompt"]}', 400),
    (b'{"type": {"a": 1}}', 400),
    (b'{"text": "a"}', 400),
    (json.dumps({"type": "prompt", "text": "x" * 2001}).encode(), 400),
    (json.dumps({"type": "prompt", "text": "x" * (MAX_MESSAGE_BYTES + 1)}).encode(), 413),
]


@pytest.mark.parametrize(("body", "expected"), VALID)
def test_valid_messages(body, expected):
    assert parse_message(body) == expected


@pytest.mark.parametrize(("body", "status"), INVALID)
def test_invalid_messages_are_rejected(body, status):
    with pytest.raises(MessageError) as e:
        parse_message(body)
    assert e.value.status == status


def _random_json(rng: random.Random, depth: int = 0):
    kind = rng.randrange(8 if depth < 3 else 5)
    if kind == 0:
        return rng.choice([None, True, False, 0, -1, 1e308, float("nan")])
    if kind == 1:
        return rng.choice(["prompt", "pause", "resume", "quit", "", "text", "policy", "keep", "\x00", "é" * 3])
    if kind in (2, 3, 4):
        return "".join(chr(rng.randrange(0x20, 0x3000)) for _ in range(rng.randrange(0, 40)))
    if kind == 5:
        return [_random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = ["type", "text", "policy", "x"]
    return {rng.choice(keys): _random_json(rng, depth + 1) for _ in range(rng.randrange(4))}


def test_fuzzed_messages_give_a_message_or_an_error():
    rng = random.Random(0)
    for i in range(3000):
        if i % 3 == 0:
            body = bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
        else:
            value = _random_json(rng)
            if i % 3 == 2 and isinstance(value, dict):
                value["type"] = rng.choice(["prompt", "pause", "resume"])
            body = json.dumps(value).encode()
        try:
            result = parse_message(body)
        except MessageError as e:
            assert e.status in (400, 413)
        else:
            assert isinstance(result, (Prompt, Control))


def test_png_frames_decode_to_the_same_pixels(tmp_path):
    import numpy as np

    frame = np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    path = tmp_path / "f.png"
    path.write_bytes(encode_png(frame))
    assert (next(read_frames(path)) == frame).all()
    hub = FrameHub(max_viewers=1)
    assert hub.next_png(-1, timeout=0.01) is None
    hub.publish(0, frame)
    hub.publish(1, frame[::-1].copy())
    index, png = hub.next_png(-1, timeout=1)
    assert index == 1, "a slow viewer skips to the newest frame"
    assert hub.join() and not hub.join()


class Live:
    """A paced session with its server on a free port, for HTTP and browser tests."""

    def __init__(self, bundle, record: Path | None = None):
        settings = settings_for(bundle)
        recorder = None if record is None else Recorder(record, settings, bundle.source)
        self.session = LiveSession(bundle, settings, max_frames=3840, decoder=bundle.decoder("auto"), recorder=recorder)
        self.server = LiveServer(self.session, port=0, timeout_s=2.0)
        self.session.submit(Prompt("a red circle moving right", source="test"))
        self.session.start()
        self.server.start()
        self.host = f"127.0.0.1:{self.server.port}"

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def command(self, message, token: str | None = None, **headers):
        body = message if isinstance(message, bytes) else json.dumps(message).encode()
        h = {"Content-Type": "application/json", TOKEN_HEADER: token or self.server.token, **headers}
        return self.request("POST", "/api/command", body, h)

    def state(self) -> dict:
        status, body = self.request("GET", "/api/state")
        assert status == 200
        return json.loads(body)

    def close(self) -> None:
        self.session.stop()
        self.session.join(20)
        self.server.close()


@pytest.fixture
def live(bundle):
    server = Live(bundle)
    yield server
    server.close()


def test_bad_input_exits_1(tmp_path, model):
    (tmp_path / "taken.mp4").write_bytes(b"old")
    base = ["live", "--model", str(model), "--port", "0", "--no-pace"]
    cases = [
        (["live", "--model", str(tmp_path / "none.safetensors")], "model not found"),
        ([*base, "--duration", "24h1s"], "24h"),
        ([*base, "--duration", "5m", "--positions", "absolute"], "--positions: absolute positions end after 1024"),
        ([*base, "  "], "empty prompt"),
        ([*base, "--record", str(tmp_path / "taken.mp4")], "--overwrite"),
        ([*base, "--record", str(tmp_path / "no" / "x.mp4")], "does not exist"),
    ]
    for args, message in cases:
        result = runner.invoke(app, args, input="")
        assert result.exit_code == 1 and message in result.output, (args, result.output)


def other_addresses() -> set[str]:
    """Addresses of this machine besides 127.0.0.1: always 127.0.0.2 (loopback too, but not the one bound), plus
    the outward address and the host name's, where the machine has them."""
    found = {"127.0.0.2"}
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("10.255.255.255", 1))
        found.add(probe.getsockname()[0])
    with contextlib.suppress(OSError):
        found |= {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)}
    return found - {"127.0.0.1", "0.0.0.0"}


def test_server_binds_loopback_only(live):
    assert live.server.httpd.server_address[0] == "127.0.0.1"
    for address in other_addresses():
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((address, live.server.port), timeout=2).close()
    status, _ = live.request("GET", "/api/state", headers={"Host": f"evil.example:{live.server.port}"})
    assert status == 403
    status, _ = live.request("GET", "/")
    assert status == 200
    result = runner.invoke(app, ["live", "--model", live.session.bundle.source, "--port", str(live.server.port)])
    assert result.exit_code == 1 and "is in use" in result.output


def _read_parts(port: int, count: int) -> list[bytes]:
    """The first ``count`` PNG parts of the frame stream."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"GET /stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    data = b""
    while data.count(b"\x89PNG") < count + 1:
        chunk = sock.recv(65536)
        assert chunk, "stream ended"
        data += chunk
    sock.close()
    assert b"multipart/x-mixed-replace; boundary=frame" in data
    return re.findall(rb"\x89PNG.*?IEND....", data, re.S)[:count]


def test_fuzzed_requests_leave_the_stream_running(live):
    port = live.server.port
    assert live.session.wait_frames(30, timeout=20)
    cases = [
        (b"{", {}, 400),
        (b'{"type": "prompt", "text": 7}', {}, 400),
        (b'{"type": "launch"}', {}, 400),
        (b"x" * (MAX_MESSAGE_BYTES + 1), {}, 413),
        (b'{"type": "pause"}', {TOKEN_HEADER: "wrong"}, 403),
        (b'{"type": "pause"}', {TOKEN_HEADER: ""}, 403),
        (b'{"type": "pause"}', {"Origin": "http://evil.example"}, 403),
        (b'{"type": "pause"}', {"Content-Type": "text/plain"}, 415),
        (b'{"type": "pause"}', {"Host": "evil.example"}, 403),
    ]
    for body, headers, status in cases:
        assert live.command(body, **headers)[0] == status, (body[:40], headers)
    big = b"x" * (1 << 20)
    with contextlib.suppress(ConnectionError):  # the server may close before taking a megabyte it never reads
        assert live.command(big)[0] == 413
    for raw in (
        b"\x00\xff garbage\r\n\r\n",
        b"POST /api/command HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nTransfer-Encoding: chunked\r\n\r\n" % port,
        b"POST /api/command HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Length: 99999999999999999999\r\n\r\n" % port,
        b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
    ):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(raw)
            sock.settimeout(5)
            with contextlib.suppress(OSError):
                sock.recv(4096)
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(5)]
    # Paused, nothing takes prompts off the queue, so how many are accepted does not depend on the machine's speed.
    assert live.command({"type": "pause"})[0] == 200
    assert live.session.wait_settled(timeout=20)
    statuses: list[int] = []

    def flood() -> None:
        for _ in range(25):
            try:
                statuses.append(live.command({"type": "prompt", "text": "a flood of prompts", "policy": "keep"})[0])
            except OSError:
                statuses.append(0)

    threads = [threading.Thread(target=flood) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for sock in idle:
        sock.close()
    assert statuses.count(200) == live.session.queue_limit and 429 in statuses
    assert set(statuses) <= {0, 200, 429}
    assert live.session.is_alive() and live.session.error is None
    assert live.command({"type": "resume"})[0] == 200
    frames = live.session.frames
    assert live.session.wait_frames(frames + 24, timeout=20), "generation goes on"
    assert len(_read_parts(port, 3)) == 3, "viewers still get frames"
    assert live.state()["state"] == "running"


def test_watchers_cannot_steer_and_pause_works(live):
    assert live.session.wait_frames(1, timeout=20)
    assert live.command({"type": "pause"}, token="not-the-token")[0] == 403
    assert live.command({"type": "pause"})[0] == 200
    wait_until(lambda: live.state()["state"] == "paused")
    assert live.command({"type": "resume"})[0] == 200
    assert live.state()["state"] == "running"


def page_wait(page, condition: str, timeout: float = 20.0) -> None:
    """Poll a JavaScript expression (the page's CSP forbids the eval that ``wait_for_function`` needs)."""
    wait_until(lambda: page.evaluate(condition), timeout=timeout, step=0.05)


def test_browser_steers_the_stream(tmp_path, bundle):
    from playwright.sync_api import sync_playwright

    chromium = find_chromium()
    out = tmp_path / "browser.mp4"
    live = Live(bundle, record=out)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 820, "height": 900})
            page.goto(live.server.steer_url)
            page_wait(page, "document.getElementById('video').naturalWidth > 0")
            assert "#steer" not in page.url, "the token leaves the address bar"
            page_wait(page, "!['-', '0.0'].some((s) => document.getElementById('fps').textContent.startsWith(s))")
            sample = (
                "() => { const c = document.createElement('canvas'); c.width = c.height = 32;"
                "const x = c.getContext('2d'); x.drawImage(document.getElementById('video'), 0, 0);"
                "return Array.from(x.getImageData(0, 0, 32, 32).data).join(',') }"
            )
            before = page.evaluate(sample)
            wait_until(lambda: page.evaluate(sample) != before, timeout=30, step=0.05)  # the picture changes
            assert page.is_enabled("#prompt")
            hostile = "a blue square <img src=x onerror=alert(1)> & friends"
            page.select_option("#policy", "keep")
            page.fill("#prompt", hostile)
            page.press("#prompt", "Enter")
            page_wait(
                page,
                "document.querySelector('#changes li .text') && "
                "document.querySelector('#changes li .text').textContent.includes('blue square')",
            )
            assert page.locator("#changes img").count() == 0, "prompt text is shown as text"
            assert page.text_content("#current") == hostile
            watcher = browser.new_page()
            watcher.goto(live.server.url)
            page_wait(watcher, "document.getElementById('video').naturalWidth > 0")
            assert watcher.is_disabled("#prompt") and watcher.text_content("#mode") == "watching"
            assert live.state()["viewers"] >= 2
            page.wait_for_timeout(800)
            page.screenshot(path=str(SCREENSHOT))
            browser.close()
    finally:
        live.close()
    change = live.session.changes[1]
    assert change.text == hostile and change.policy is SwitchPolicy.KEEP and change.source == "page"
    assert change.latent == change.boundary
    timeline = load_timeline(out.with_suffix(".yaml"))
    assert timeline.prompts[1].text == hostile and timeline.policy_at(1) == "keep"
    assert plan_changes(timeline, live.session.chunk).changes[1].landed == change.latent
    assert read_video_info(out)["frames"] == live.session.frames


def _default_sigint() -> None:
    """Ctrl-C as in a terminal, even where the test runner was started with SIGINT ignored (a background job)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_interrupt_finishes_the_recording(tmp_path, model, sig):
    out = tmp_path / "term.mp4"
    cmd = [sys.executable, "-m", "longlive_cli", "live", "a red circle", "--model", str(model), "--port", "0"]
    proc = subprocess.Popen(
        [*cmd, "--record", str(out), "--keep-running", "-q"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )
    url = None
    for line in proc.stderr:
        if line.startswith("watch: "):
            url = line.split()[1]
            break
    assert url, "no address printed"

    def frames() -> int:
        with urllib.request.urlopen(url + "api/state", timeout=5) as response:
            return json.load(response)["frames"]

    wait_until(lambda: frames() >= 21, timeout=60, step=0.1)
    proc.send_signal(sig)
    _, said = proc.communicate(timeout=60)
    assert proc.returncode == 130, said
    assert "interrupted" in said and str(out) in said.replace("\n", "")
    assert out.with_suffix(".json").is_file(), said
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["result"]["stopped_by"] == "interrupt"
    assert read_video_info(out)["frames"] == side["result"]["frames_written"] >= 21
    assert load_timeline(out.with_suffix(".yaml")).frames() == side["result"]["frames_written"]


def test_an_interrupt_while_waiting_still_waits_for_the_recording(bundle, tmp_path):
    # A signal handler raising inside Thread.join(timeout) marks a running thread as stopped on CPython 3.11, so a
    # later join returned at once and the process could exit before the sidecar was written.
    from longlive_cli.live.app import LiveOptions, run_live

    out = tmp_path / "alarm.mp4"
    options = LiveOptions(max_frames=3840, prompt="a red circle", port=0, record=out, pace=False)

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 1.5)
        with pytest.raises(KeyboardInterrupt):
            run_live(bundle, settings_for(bundle), options, decoder=bundle.decoder("auto"), say=lambda line: None)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    side = json.loads(out.with_suffix(".json").read_text())  # at once: run_live returns only once it is written
    assert side["result"]["stopped_by"] == "interrupt"
    assert read_video_info(out)["frames"] == side["result"]["frames_written"] > 0
