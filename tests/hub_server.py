"""A Hugging Face Hub stand-in on 127.0.0.1: the API routes and file layout huggingface_hub reads, for download tests.

Serves ``/api/models/{repo}/revision/{rev}``, ``/api/models/{repo}/tree/{rev}`` and ``/{repo}/resolve/{rev}/{path}``
(HEAD and GET, with ranges), records every request, and can cut a file's transfer short to test resuming.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

LFS_SUFFIXES = (".pt", ".pth", ".safetensors")


@dataclass
class Hub:
    """Repositories as {repo id: {path in repo: bytes}}; ``requests`` lists (method, path, Range header)."""

    repos: dict[str, dict[str, bytes]]
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    cut_after: dict[str, int] = field(default_factory=dict)  # path in repo -> where its next transfer breaks off
    failing: set[str] = field(default_factory=set)  # paths in repo whose transfers fail (500) for now

    def commit(self, repo: str) -> str:
        return hashlib.sha1(repo.encode()).hexdigest()

    def served(self, name: str) -> list[tuple[str, str, str | None]]:
        return [r for r in self.requests if r[0] == "GET" and r[1].endswith("/" + name)]


def repo_from_folder(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder``, keyed by its path relative to it."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _entry(path: str, data: bytes) -> dict:
    entry = {"type": "file", "oid": hashlib.sha1(data).hexdigest(), "size": len(data), "path": path}
    if path.endswith(LFS_SUFFIXES):
        entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
    return entry


def _handler(hub: Hub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def _json(self, value) -> None:
            body = json.dumps(value).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _missing(self, code: str = "RepoNotFound") -> None:
            self.send_response(404)
            self.send_header("X-Error-Code", code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            path = unquote(urlsplit(self.path).path)
            hub.requests.append((self.command, path, self.headers.get("Range")))
            api = re.fullmatch(r"/api/models/([^/]+/[^/]+)/(revision|tree)/([^/]+)(?:/.*)?", path)
            if api:
                repo, kind, _ = api.groups()
                if repo not in hub.repos:
                    return self._missing()
                files = hub.repos[repo]
                if kind == "revision":
                    siblings = [{"rfilename": p} for p in files]
                    return self._json({"id": repo, "sha": hub.commit(repo), "siblings": siblings, "private": False})
                return self._json([_entry(p, d) for p, d in files.items()])
            resolve = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
            repo, name = (resolve[1], resolve[3]) if resolve else ("", "")
            if repo not in hub.repos:
                return self._missing()
            if name not in hub.repos[repo]:
                return self._missing("EntryNotFound")
            if self.command == "GET" and name in hub.failing:
                self.send_response(500)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = hub.repos[repo][name]
            start = 0
            ranged = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range") or "")
            if ranged:
                start = int(ranged[1])
            entry = _entry(name, data)
            etag = entry["lfs"]["oid"] if "lfs" in entry else entry["oid"]
            self.send_response(206 if ranged else 200)
            self.send_header("X-Repo-Commit", hub.commit(repo))
            self.send_header("ETag", f'"{etag}"')
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(len(data) - start))
            if ranged:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if self.command == "HEAD":
                return
            cut = hub.cut_after.pop(name, None)
            if cut is not None:
                self.wfile.write(data[start:cut])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(data[start:])

    return Handler


class HubServer:
    """The stand-in, listening on 127.0.0.1 on a free port while in a ``with`` block."""

    def __init__(self, hub: Hub):
        self.hub = hub
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> HubServer:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
