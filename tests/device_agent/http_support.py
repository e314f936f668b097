"""A real loopback HTTP(S) server with switchable misbehaviours (test support).

It serves a directory like a static web server or CDN would (GET, Range
requests, Content-Length), and each misbehaviour can be switched on for a
path, to play a broken network or a malicious mirror:

* ``ignore_range``: answer 200 with the whole file even when Range was asked;
* ``trickle[path] = seconds``: send one byte every ``seconds``;
* ``trickle_head[path] = seconds``: the same, in the response headers;
* ``endless``: send data without end, announcing an absurd Content-Length
  (the only framing the agent reads);
* ``raw[path] = script``: ``script(send, stopping)`` writes the whole response
  itself, head included, through ``send(bytes)``, which counts the bytes in
  ``raw_sent`` (chunked framing, endless trailers, malformed headers...);
* ``drop_after[path] = n``: announce the full length, send ``n`` bytes, close;
* ``truncate[path] = n``: announce ``n`` bytes and send them (clean short file);
* ``flip[path] = offset``: invert one byte of the content at ``offset``;
* ``substitute[path] = bytes``: serve other content for that path.

Paths are URL paths without the leading slash, e.g.
``metadata/timestamp.json``. Every request is logged with its Range header.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


@dataclass
class Misbehaviour:
    ignore_range: bool = False
    trickle: dict[str, float] = field(default_factory=dict)
    trickle_head: dict[str, float] = field(default_factory=dict)
    endless: set[str] = field(default_factory=set)
    drop_after: dict[str, int] = field(default_factory=dict)
    truncate: dict[str, int] = field(default_factory=dict)
    flip: dict[str, int] = field(default_factory=dict)
    substitute: dict[str, bytes] = field(default_factory=dict)
    raw: dict[str, Callable[[Callable[[bytes], None], threading.Event], None]] = field(
        default_factory=dict
    )
    raw_sent: int = 0

    def clear(self) -> None:
        self.__init__()  # type: ignore[misc]


@dataclass(frozen=True)
class Request:
    path: str
    range: str | None
    user_agent: str | None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    root: Path
    bad: Misbehaviour
    log: list[Request]
    stopping: threading.Event

    def handle_error(self, request: object, client_address: object) -> None:
        # Clients that hang up on a misbehaving server are the point here.
        pass


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        rel = unquote(urlsplit(self.path).path).lstrip("/")
        bad = self.server.bad
        self.server.log.append(
            Request(rel, self.headers.get("Range"), self.headers.get("User-Agent"))
        )
        if rel in bad.endless:
            self._endless()
            return
        if rel in bad.raw:
            self._raw(bad.raw[rel])
            return
        if rel in bad.trickle_head:
            self.close_connection = True
            self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            while not self.server.stopping.is_set():
                self.wfile.write(b"z")
                self.wfile.flush()
                time.sleep(bad.trickle_head[rel])
            return
        if rel in bad.substitute:
            data = bad.substitute[rel]
        else:
            file = (self.server.root / rel).resolve()
            if not file.is_relative_to(self.server.root) or not file.is_file():
                self._send_status(404)
                return
            data = file.read_bytes()
        if rel in bad.flip:
            i = bad.flip[rel]
            data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]
        if rel in bad.truncate:
            data = data[: bad.truncate[rel]]
        start = 0
        range_header = self.headers.get("Range")
        if range_header and not bad.ignore_range:
            start = int(range_header.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self._send_status(416, {"Content-Range": f"bytes */{len(data)}"})
                return
        body = data[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if rel in bad.trickle:
            for i in range(len(body)):
                if self.server.stopping.is_set():
                    return
                self.wfile.write(body[i : i + 1])
                self.wfile.flush()
                time.sleep(bad.trickle[rel])
            return
        if rel in bad.drop_after:
            self.wfile.write(body[: max(0, bad.drop_after[rel] - start)])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)

    def _send_status(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _raw(self, script: Callable[[Callable[[bytes], None], threading.Event], None]) -> None:
        self.close_connection = True
        bad = self.server.bad

        def send(data: bytes) -> None:
            self.wfile.write(data)
            self.wfile.flush()
            bad.raw_sent += len(data)

        # The client hanging up is the point of most scripts.
        with contextlib.suppress(OSError):
            script(send, self.server.stopping)

    def _endless(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(10**15))
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        block = b"\xa5" * 65536
        try:
            while not self.server.stopping.is_set():
                self.wfile.write(block)
        except OSError:
            pass


@dataclass
class HttpServer:
    """A running server; ``url`` has no trailing slash."""

    url: str
    bad: Misbehaviour
    log: list[Request]
    root: Path

    def requests_for(self, suffix: str) -> list[Request]:
        return [r for r in self.log if r.path.endswith(suffix)]


@contextmanager
def serve(root: Path, tls: ssl.SSLContext | None = None) -> Iterator[HttpServer]:
    """Serve ``root`` on 127.0.0.1 (HTTPS with ``tls``) for the ``with`` block."""
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.root = root.resolve()
    httpd.bad = Misbehaviour()
    httpd.log = []
    httpd.stopping = threading.Event()
    if tls is not None:
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    scheme = "https" if tls else "http"
    try:
        yield HttpServer(
            f"{scheme}://127.0.0.1:{httpd.server_address[1]}", httpd.bad, httpd.log, root
        )
    finally:
        httpd.stopping.set()
        httpd.shutdown()
        httpd.server_close()
