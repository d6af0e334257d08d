"""A loopback HTTP server for download tests (no network): files that are served whole, or that
misbehave the ways real mirrors do. Shared by the weights tests and ``tests/hostile/``.

Modes of a :class:`Served` file:

* ``ok``: 200 with the body and its length;
* ``stall``: accepts the connection, reads the request and never answers;
* ``stall_after``: sends the headers and ``cut_at`` bytes, then nothing;
* ``short``: a ``Content-Length`` of the whole body, ``cut_at`` bytes, then closes the connection;
* ``html``: 200 ``text/html`` with a web page instead of the file (a login or error page);
* ``redirect_loop``: 301 to itself, for ever.

A name the server does not hold gets 404. :func:`serving` runs one in a thread.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["Served", "Loopback", "serving"]

HTML_PAGE = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>Please sign in.</body></html>\n"


@dataclass
class Served:
    body: bytes = b""
    mode: str = "ok"  # ok | stall | stall_after | short | html | redirect_loop
    cut_at: int = 100


@dataclass
class Loopback:
    port: int = 0
    files: dict[str, Served] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # keep the tests' output clean
        pass

    def _send(self, status: int, body: bytes, length: int | None = None, kind: str = "application/octet-stream",
              **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802 - http.server's spelling
        state: Loopback = self.server.state  # type: ignore[attr-defined]
        name = self.path.lstrip("/")
        state.requests.append(name)
        served = state.files.get(name)
        if served is None:
            self.send_error(404, "Not Found")
            return
        if served.mode == "stall":
            state.release.wait(120)
            return
        if served.mode == "redirect_loop":
            self._send(301, b"", Location=self.path)
            return
        if served.mode == "html":
            self._send(200, HTML_PAGE, kind="text/html; charset=utf-8")
            self.wfile.write(HTML_PAGE)
            return
        self._send(200, served.body)
        if served.mode in ("stall_after", "short"):
            self.wfile.write(served.body[: served.cut_at])
            self.wfile.flush()
            if served.mode == "stall_after":
                state.release.wait(120)
            self.close_connection = True  # the client sees the end before Content-Length
            return
        self.wfile.write(served.body)


@contextmanager
def serving(files: dict[str, Served] | None = None) -> Iterator[Loopback]:
    """A server on 127.0.0.1 (a free port) in a daemon thread, for the ``with`` block."""
    state = Loopback(files=dict(files or {}))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.state = state  # type: ignore[attr-defined]
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        httpd.shutdown()
        httpd.server_close()
