"""The page's server, on 127.0.0.1 only: the page, the frame stream, the state, and steering messages.

Frames go out as ``multipart/x-mixed-replace`` (the MJPEG way, with lossless PNG parts): an ``<img>`` shows it
with no script, every part is a whole picture so a slow viewer simply skips to the newest, and it needs nothing
beyond the standard library. Commands are small JSON POSTs, the state is polled as JSON.

Steering needs the token printed in the terminal. The steering URL carries it after ``#``, which browsers never
send, and the page sends it back in a custom header; other pages on the machine cannot read it, and a custom
header cannot be sent cross-origin without a CORS preflight, which this server never grants. Requests whose
``Host`` is not this server's loopback address are refused, against DNS rebinding. Without the token a page
only watches.
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources

from .commands import MAX_MESSAGE_BYTES, Control, MessageError, parse_message
from .session import LiveSession, QueueFull, SessionClosed

HOST = "127.0.0.1"
TOKEN_HEADER = "X-Longlive-Token"
BOUNDARY = "frame"
# Oversized bodies up to this size are read and dropped before the refusal, so the client sees the answer.
DRAIN_BYTES = 1 << 16
CONTENT_LENGTH = re.compile(r"[0-9]{1,12}")
STATIC = {
    "/": ("page.html", "text/html; charset=utf-8"),
    "/page.js": ("page.js", "text/javascript; charset=utf-8"),
    "/page.css": ("page.css", "text/css; charset=utf-8"),
}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class LiveServer:
    """Serves one session's page and stream on ``127.0.0.1:port`` from background threads."""

    def __init__(
        self,
        session: LiveSession,
        port: int = 8765,
        max_connections: int = 32,
        timeout_s: float = 10.0,
    ):
        self.session = session
        self.token = secrets.token_urlsafe(18)
        self.timeout_s = timeout_s
        self.static = {path: (_asset(name), kind) for path, (name, kind) in STATIC.items()}
        self.httpd = _Server((HOST, port), _Handler, max_connections)
        self.httpd.live = self
        self.port = self.httpd.server_address[1]
        self.hosts = {f"{HOST}:{self.port}", f"localhost:{self.port}"}
        self.origins = {f"http://{h}" for h in self.hosts}
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="longlive-http", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/"

    @property
    def steer_url(self) -> str:
        return f"{self.url}#steer={self.token}"

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stop accepting requests and end every stream."""
        self.session.hub.close()
        if self._thread.is_alive():
            self.httpd.shutdown()
        self.httpd.server_close()


def _asset(name: str) -> bytes:
    return (resources.files("longlive_cli.live") / name).read_bytes()


class _Server(ThreadingHTTPServer):
    """A threading server with a cap on open connections, so a flood cannot spawn threads without end."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    live: LiveServer

    def __init__(self, address: tuple[str, int], handler: type, max_connections: int):
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, handler)

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request, client_address) -> None:
        """A viewer that goes away mid-response is normal; nothing to print."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "longlive"
    sys_version = ""

    def setup(self) -> None:
        self.timeout = self.server.live.timeout_s
        super().setup()

    def log_message(self, format: str, *args) -> None:
        """Requests are not logged: the terminal is for the session."""

    def do_GET(self) -> None:
        live = self.server.live
        if not self._host_ok():
            return
        path = self.path.split("?", 1)[0]
        if path in live.static:
            body, kind = live.static[path]
            self._send(HTTPStatus.OK, body, kind)
        elif path == "/stream":
            self._stream()
        elif path == "/api/state":
            self._json(HTTPStatus.OK, live.session.state())
        else:
            self._json(HTTPStatus.NOT_FOUND, {"ok": False, "error": "not found"})

    def do_POST(self) -> None:
        if not self._host_ok():
            return
        if self.path != "/api/command":
            self._json(HTTPStatus.NOT_FOUND, {"ok": False, "error": "not found"})
            return
        try:
            command = self._command()
        except MessageError as e:
            self._json(HTTPStatus(e.status), {"ok": False, "error": str(e)})
            return
        session = self.server.live.session
        try:
            if isinstance(command, Control):
                session.control(command)
                self._json(HTTPStatus.OK, {"ok": True, "type": command.value})
            else:
                change = session.submit(command)
                self._json(HTTPStatus.OK, {"ok": True, "type": "prompt", "boundary_latent": change.boundary})
        except QueueFull as e:
            self._json(HTTPStatus.TOO_MANY_REQUESTS, {"ok": False, "error": str(e)})
        except SessionClosed as e:
            self._json(HTTPStatus.CONFLICT, {"ok": False, "error": str(e)})

    def _command(self):
        """The request's message, after the token, origin, type and size checks."""
        live = self.server.live
        origin = self.headers.get("Origin")
        if origin is not None and origin not in live.origins:
            raise MessageError("cross-origin requests cannot steer", status=403)
        if not hmac.compare_digest(self.headers.get(TOKEN_HEADER, "").encode(), live.token.encode()):
            raise MessageError("this page only watches; the steering URL is printed in the terminal", status=403)
        if self.headers.get("Content-Type", "").split(";")[0].strip().lower() != "application/json":
            raise MessageError("send JSON with Content-Type: application/json", status=415)
        if self.headers.get("Transfer-Encoding") is not None:
            raise MessageError("send a Content-Length, not a chunked body", status=411)
        lengths = self.headers.get_all("Content-Length") or []
        if len(lengths) > 1:
            raise MessageError("send one Content-Length header", status=400)
        length = lengths[0].strip() if lengths else ""
        if not CONTENT_LENGTH.fullmatch(length):
            raise MessageError("a Content-Length of ASCII digits is needed", status=411)
        if int(length) > MAX_MESSAGE_BYTES:
            if int(length) <= DRAIN_BYTES:
                self.rfile.read(int(length))
            raise MessageError(f"message is {length} bytes; at most {MAX_MESSAGE_BYTES}", status=413)
        return parse_message(self.rfile.read(int(length)))

    def _host_ok(self) -> bool:
        hosts = self.headers.get_all("Host") or []
        if len(hosts) == 1 and hosts[0] in self.server.live.hosts:
            return True
        if len(hosts) > 1:
            self._json(HTTPStatus.BAD_REQUEST, {"ok": False, "error": "send one Host header"})
            return False
        refusal = "unknown Host; use the address printed in the terminal"
        self._json(HTTPStatus.FORBIDDEN, {"ok": False, "error": refusal})
        return False

    def _stream(self) -> None:
        hub = self.server.live.session.hub
        if not hub.join():
            self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"ok": False, "error": "too many viewers"})
            return
        try:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self._security_headers()
            self.end_headers()
            self.wfile.write(f"--{BOUNDARY}\r\n".encode())
            last = -1
            while not hub.closed:
                got = hub.next_png(last, timeout=1.0)
                if got is None:
                    continue
                last, png = got
                head = f"Content-Type: image/png\r\nContent-Length: {len(png)}\r\n\r\n".encode()
                # The boundary goes out right after the picture, so the browser shows it without waiting for the next.
                self.wfile.write(head + png + f"\r\n--{BOUNDARY}\r\n".encode())
                self.wfile.flush()
        except OSError:
            pass
        finally:
            hub.leave()

    def _json(self, status: HTTPStatus, data: dict) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _send(self, status: HTTPStatus, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self._security_headers()
        self.end_headers()
        self.wfile.write(body)

    def _security_headers(self) -> None:
        for key, value in SECURITY_HEADERS.items():
            self.send_header(key, value)
