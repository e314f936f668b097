"""A CDN-like firmware mirror on loopback, scripted request by request (test support).

It serves a directory (the repository's ``targets/``) the way a static web
server or CDN does: GET, ``Range: bytes=N-`` answered with 206 and
``Content-Range``, every body framed by ``Content-Length``. Bodies are sent
in 8 KiB pieces, paced at :attr:`Mirror.rate` bytes/s when it is set (a slow
link, so that a kill lands mid-transfer).

Each firmware request (a path ending in ``firmware.img``) is answered by the
next entry of :attr:`Mirror.plan`, then by :data:`FULL` once the plan is used
up:

* :data:`FULL`: the rest of the file;
* ``Cut(n)``: announce the rest, send ``n`` bytes of it, close the connection
  (a network that drops mid-body);
* ``Status(code)``: an HTTP error without a body;
* :data:`FLIPPED`: the rest, one byte inverted (not the signed bytes);
* :data:`KILL`: the rest, marked so that the test cuts the agent's power
  while it arrives (the mirror itself behaves as :data:`FULL`).

Every firmware request is logged in :attr:`Mirror.served` with its Range
start and the bytes sent so far (updated while sending).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from device_agent.simulator import SimulatedPump

__all__ = [
    "FLIPPED",
    "FULL",
    "KILL",
    "Cut",
    "Mirror",
    "Served",
    "Status",
    "edit_config",
    "mirror",
    "use_mirror",
]

_PIECE = 8 * 1024


@dataclass(frozen=True)
class Cut:
    """Send this many bytes of the body, then close the connection."""

    after: int


@dataclass(frozen=True)
class Status:
    """Answer with this HTTP status."""

    code: int


@dataclass(frozen=True)
class _Named:
    name: str


FULL = _Named("full")
FLIPPED = _Named("flipped")
KILL = _Named("kill")

Plan = Cut | Status | _Named


@dataclass
class Served:
    """One firmware request: where it started and how far the body got."""

    path: str
    start: int
    plan: Plan
    length: int  # the whole file
    sent: int = 0  # body bytes written so far
    done: bool = False  # the handler has finished (completely or not)


@dataclass
class Mirror:
    """A running mirror; ``url`` is its base URL (no trailing slash)."""

    url: str
    root: Path
    plan: list[Plan] = field(default_factory=list)
    rate: float | None = None
    served: list[Served] = field(default_factory=list)

    @property
    def starts(self) -> list[int]:
        """The Range start of every firmware request, in order (0: no Range)."""
        return [s.start for s in self.served]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    mirror: Mirror
    stopping: threading.Event

    def handle_error(self, request: object, client_address: object) -> None:
        # A killed agent hangs up mid-body: that is the point.
        pass


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        mirror = self.server.mirror
        rel = unquote(urlsplit(self.path).path).lstrip("/")
        file = (mirror.root / rel).resolve()
        if not file.is_relative_to(mirror.root) or not file.is_file():
            self._status(404)
            return
        data = file.read_bytes()
        start = 0
        header = self.headers.get("Range")
        if header:
            start = int(header.removeprefix("bytes=").split("-")[0])
        plan: Plan = FULL
        if rel.endswith("firmware.img"):
            plan = mirror.plan.pop(0) if mirror.plan else FULL
        served = Served(rel, start, plan, len(data))
        mirror.served.append(served)
        try:
            self._answer(data, start, plan, served)
        finally:
            served.done = True

    def _answer(self, data: bytes, start: int, plan: Plan, served: Served) -> None:
        if isinstance(plan, Status):
            self._status(plan.code)
            return
        if start >= len(data):
            self._status(416, {"Content-Range": f"bytes */{len(data)}"})
            return
        if plan is FLIPPED:
            i = (start + len(data)) // 2
            data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]
        body = data[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if isinstance(plan, Cut):
            body = body[: plan.after]
        with contextlib.suppress(OSError):
            for i in range(0, len(body), _PIECE):
                if self.server.stopping.is_set():
                    return
                piece = body[i : i + _PIECE]
                self.wfile.write(piece)
                self.wfile.flush()
                served.sent += len(piece)
                rate = self.server.mirror.rate
                if rate:
                    time.sleep(len(piece) / rate)
            if isinstance(plan, Cut):
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)

    def _status(self, code: int, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()


@contextlib.contextmanager
def mirror(root: Path) -> Iterator[Mirror]:
    """Serve ``root`` on 127.0.0.1 for the ``with`` block."""
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.mirror = Mirror(f"http://127.0.0.1:{httpd.server_address[1]}", root.resolve())
    httpd.stopping = threading.Event()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield httpd.mirror
    finally:
        httpd.stopping.set()
        httpd.shutdown()
        httpd.server_close()


def use_mirror(pump: SimulatedPump, m: Mirror, *, agent: str = "") -> None:
    """Point the pump's firmware downloads at ``m``; ``agent``: lines for ``[agent]``."""
    edit_config(
        pump,
        {"[server]\n": f'[server]\ntargets_url = "{m.url}"\n', "[agent]\n": f"[agent]\n{agent}"},
    )


def edit_config(pump: SimulatedPump, replace: dict[str, str]) -> None:
    """Replace text in the pump's ``agent.toml`` (old -> new, each must be there)."""
    text = pump.config_path.read_text()
    for old, new in replace.items():
        if old not in text:
            raise AssertionError(f"{old!r} is not in {pump.config_path}")
        text = text.replace(old, new, 1)
    pump.config_path.write_text(text)
