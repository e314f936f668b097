"""Test support for uploads: a real gunicorn server, raw HTTP clients, cheap tars.

The uploads are sent over real sockets to the documented production command
(gunicorn), so what the server reads, answers and leaves behind is what a
hostile client would meet.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import sessionmaker

from repo_support import PRODUCT
from server_support import ServerEnv
from update_server.auth import create_token
from update_server.db import engine_for

__all__ = [
    "PRODUCT",
    "Answer",
    "Gunicorn",
    "Upload",
    "gunicorn",
    "make_token",
    "member",
    "member_headers",
    "send_until_answered",
    "upload_head",
]

GUNICORN = Path(sys.executable).with_name("gunicorn")
TAR = "application/x-tar"
RELEASES = "/api/v1/releases"


def make_token(server_env: ServerEnv, role: str, products: tuple[str, ...] = ()) -> str:
    """A new API token's secret."""
    engine = engine_for(server_env.database_url)
    try:
        with sessionmaker(engine).begin() as s:
            _, secret = create_token(s, f"{role} {' '.join(products)}".strip(), role, products)
    finally:
        engine.dispose()
    return secret


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Gunicorn:
    """A gunicorn serving the app from a data folder."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return [int(p) for p in children.read_text().split()]

    def kill(self) -> None:
        """SIGKILL the master and its workers at once (a machine that lost power)."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)


def _wait_up(server: Gunicorn, deadline: float) -> None:
    while True:
        try:
            with urllib.request.urlopen(f"{server.base}/api/v1/openapi.json", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline or server.proc.poll() is not None:
            raise AssertionError(f"gunicorn did not come up:\n{server.output()}")
        time.sleep(0.2)


@contextmanager
def gunicorn(server_env: ServerEnv, *args: str, name: str = "gunicorn") -> Iterator[Gunicorn]:
    """Run gunicorn (extra ``args``) on the data folder until the block ends.

    It runs in a session of its own, so :meth:`Gunicorn.kill` reaches every
    worker; its log is kept in the data folder's parent.
    """
    port = _free_port()
    env = {
        **os.environ,
        "PUMPGUARD_DATA": str(server_env.data_dir),
        "PUMPGUARD_REFRESH_INTERVAL": "0",
    }
    log = server_env.data_dir.parent / f"{name}-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(GUNICORN), "--bind", f"127.0.0.1:{port}", *args, "update_server.wsgi:app"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Gunicorn(proc, port, log)
    try:
        _wait_up(server, time.monotonic() + 60)
        yield server
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)


def upload_head(
    token: str | None,
    length: int | None,
    query: str = f"?product={PRODUCT}",
    content_type: str = TAR,
) -> bytes:
    """The head of a POST /api/v1/releases (``length`` None: chunked)."""
    lines = [f"POST {RELEASES}{query} HTTP/1.1", "Host: 127.0.0.1", f"Content-Type: {content_type}"]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    lines.append(
        f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    )
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def member(name: str, size: int) -> bytes:
    """The ustar header of a regular-file member of ``size`` bytes."""
    info = tarfile.TarInfo(name)
    info.size = size
    return info.tobuf(tarfile.USTAR_FORMAT)


@dataclass
class Answer:
    """What the server answered, and how much of the body it had been sent."""

    status: int
    headers: dict[str, str]
    body: dict[str, Any]
    sent: int
    seconds: float


def _parse(raw: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        body, data = b"", rest
        while data:
            size_line, _, data = data.partition(b"\r\n")
            size = int(size_line, 16)
            if not size:
                break
            body, data = body + data[:size], data[size + 2 :]
        rest = body
    return status, headers, json.loads(rest) if rest else {}


def send_until_answered(
    port: int, head: bytes, body: Iterable[bytes], timeout: float = 120
) -> Answer:
    """Send ``head``, then ``body`` while the server reads it, until it answers.

    Stops sending as soon as an answer arrives (or the server stops taking
    bytes and closes); ``sent`` counts the body bytes handed to the socket,
    which the kernel's buffers may hold without the server having read them.
    """
    start = time.monotonic()
    deadline = start + timeout
    chunks = iter(body)
    pending = b""
    sent = 0
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head)
        sock.setblocking(False)
        sending = True
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no answer within {timeout} s after {sent} body bytes")
            if sending and not pending:
                pending = next(chunks, b"")
                sending = bool(pending)
            readable, writable, _ = select.select([sock], [sock] if sending else [], [], left)
            if readable:
                try:
                    data = sock.recv(1 << 16)
                except (ConnectionResetError, BlockingIOError):
                    data = b""
                if not data:
                    break
                received += data
                sending = False  # answered: the rest is not wanted
                continue
            if writable:
                try:
                    n = sock.send(pending)
                except (BrokenPipeError, ConnectionResetError):
                    sending = False
                    continue
                except BlockingIOError:
                    continue
                sent += n
                pending = pending[n:]
    if not received:
        raise AssertionError(f"the server closed without an answer after {sent} body bytes")
    status, headers, answer = _parse(received)
    return Answer(status, headers, answer, sent, time.monotonic() - start)


def member_headers(count: int, *, prefix: str = "m") -> Iterator[bytes]:
    """``count`` zero-size regular-file members as raw ustar headers, then the end.

    One template header is patched per member (name and checksum), so a
    million members cost about a second to make, not tarfile's ten.
    """
    template = tarfile.TarInfo(f"{prefix}0000000").tobuf(tarfile.USTAR_FORMAT)
    base = bytearray(template)
    base[148:156] = b" " * 8  # the checksum is computed over spaces in its field
    name_len = len(prefix) + 7
    fixed = sum(base) - sum(base[:name_len])
    batch = []
    for i in range(count):
        name = f"{prefix}{i:07d}".encode()
        block = bytearray(base)
        block[:name_len] = name
        block[148:156] = b"%06o\0 " % (fixed + sum(name))
        batch.append(bytes(block))
        if len(batch) == 2048:
            yield b"".join(batch)
            batch = []
    yield b"".join(batch) + bytes(1024)


@dataclass
class Upload:
    """An upload in flight: its head and part of its body sent, the rest withheld."""

    sock: socket.socket
    sent: int = 0
    _closed: bool = field(default=False)

    @classmethod
    def start(cls, port: int, head: bytes, first: bytes) -> Upload:
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.sendall(head + first)
        return cls(sock, len(first))

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)
        self.sent += len(data)

    def answer(self, timeout: float = 60) -> tuple[int, dict[str, str], dict[str, Any]]:
        self.sock.settimeout(timeout)
        received = b""
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except ConnectionResetError:
                break
            if not data:
                break
            received += data
        return _parse(received)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.sock.close()
