"""Check-ins and event posts against a server that drips, floods or misframes its answer.

A real loopback server (raw sockets, so it can break HTTP at will) answers
the agent's signed POSTs. A hostile or broken server must not hold the pump's
agent: the request fails within its deadline (``server.timeout``) with a clear
transfer error, the state machine goes on (idle, backoff, the next poll), and
the outbox keeps every event the server did not store. Over mutual TLS too,
with a dripped handshake (threats AGT-SLOW, TUF-ENDLESS-DATA, AGT-REPORT-LOSS).
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from device_agent.agent import Agent
from device_agent.errors import TransferError
from device_agent.httpclient import AgentHttp
from device_agent.reporting import ServerClient
from device_agent.simulator import SimulatedPump
from device_agent.state import AgentState
from pki_support import make_pki, server_context
from repo_support import PRODUCT

DEADLINE = 2.0  # the pump's server.timeout in these tests
DRIP = 0.5  # seconds between the bytes a dripping server sends
# Time the agent may take beyond its deadline (thread scheduling, the watchdog).
SLACK = 1.5

Send = Callable[[bytes], None]


def _drip_body(send: Send, stopping: threading.Event) -> None:
    """A well-framed head, then the announced body one byte every DRIP s."""
    send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n")
    while not stopping.wait(DRIP):
        send(b" ")


def _drip_head(send: Send, stopping: threading.Event) -> None:
    """The status line, then one header that never ends, one byte every DRIP s."""
    send(b"HTTP/1.1 200 OK\r\nX-Slow: ")
    while not stopping.wait(DRIP):
        send(b"z")


def _drip_chunked(send: Send, stopping: threading.Event) -> None:
    """A chunked body whose chunks (one byte each) never end."""
    send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    while not stopping.wait(DRIP):
        send(b"1\r\n \r\n")


def _endless_close_delimited(send: Send, stopping: threading.Event) -> None:
    """No Content-Length: the body ends when the server closes, here never."""
    send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n")
    while not stopping.is_set():
        send(b" " * 65536)


def _oversized(send: Send, stopping: threading.Event) -> None:
    """A Content-Length far beyond any check-in answer, and the bytes to go with it."""
    send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n")
    while not stopping.is_set():
        send(b" " * 65536)


def _redirect(send: Send, stopping: threading.Event) -> None:
    send(
        b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:9/elsewhere\r\nContent-Length: 0\r\n\r\n"
    )


@dataclass
class _Hostile:
    """The loopback server: ``scripts[endpoint]`` answers ``checkin`` or ``events``."""

    url: str
    scripts: dict[str, Callable[[Send, threading.Event], None]] = field(default_factory=dict)
    received: list[tuple[str, bytes]] = field(default_factory=list)


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    hostile: _Hostile
    stopping: threading.Event


class _Handler(socketserver.StreamRequestHandler):
    server: _TCPServer

    def handle(self) -> None:
        with contextlib.suppress(OSError):  # the agent hanging up is the point
            while self._one_request():
                pass

    def _one_request(self) -> bool:
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            line = self.rfile.readline(65537)
            if not line:
                return False
            head += line
        lines = head.decode("latin-1").split("\r\n")
        path = lines[0].split(" ")[1]
        length = next(
            (
                int(v)
                for k, _, v in (h.partition(":") for h in lines[1:])
                if k.lower() == "content-length"
            ),
            0,
        )
        body = self.rfile.read(length)
        endpoint = path.rsplit("/", 1)[-1]
        self.server.hostile.received.append((endpoint, body))

        def send(data: bytes) -> None:
            self.wfile.write(data)
            self.wfile.flush()

        script = self.server.hostile.scripts.get(endpoint)
        if script is not None:
            script(send, self.server.stopping)
            return False
        if endpoint == "events":
            answer = json.dumps({"stored": len(json.loads(body)["events"])}).encode()
            status = b"201 Created"
        elif endpoint == "checkin":
            answer = json.dumps({"assigned": None, "poll_interval": 60}).encode()
            status = b"200 OK"
        else:  # TUF metadata: not served here
            answer, status = b"{}", b"404 Not Found"
        send(
            b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(answer)).encode() + b"\r\n\r\n" + answer
        )
        return True


@contextlib.contextmanager
def _serve(tls: ssl.SSLContext | None = None) -> Iterator[_Hostile]:
    server = _TCPServer(("127.0.0.1", 0), _Handler)
    server.stopping = threading.Event()
    scheme = "http"
    if tls is not None:
        # The handshake runs in the handler's thread, on its first read, so
        # a client stuck in it cannot block the server's accept loop.
        server.socket = tls.wrap_socket(
            server.socket, server_side=True, do_handshake_on_connect=False
        )
        scheme = "https"
    server.hostile = _Hostile(f"{scheme}://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield server.hostile
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def hostile() -> Iterator[_Hostile]:
    with _serve() as server:
        yield server


@contextlib.contextmanager
def _dripping_relay(upstream: str, stopping: threading.Event) -> Iterator[str]:
    """A TCP relay that passes the server's bytes (TLS handshake included) one per DRIP s."""
    port = int(upstream.rsplit(":", 1)[1])
    listener = socket.create_server(("127.0.0.1", 0))

    def pipe(src: socket.socket, dst: socket.socket, drip: bool) -> None:
        with contextlib.suppress(OSError):
            while not stopping.is_set():
                data = src.recv(1 if drip else 65536)
                if not data:
                    return
                dst.sendall(data)
                if drip:
                    time.sleep(DRIP)

    def accept() -> None:
        with contextlib.suppress(OSError):
            while not stopping.is_set():
                client, _ = listener.accept()
                server = socket.create_connection(("127.0.0.1", port))
                for args in ((client, server, False), (server, client, True)):
                    threading.Thread(target=pipe, args=args, daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"https://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stopping.set()
        listener.close()


def _pump(directory: Path, server_url: str) -> SimulatedPump:
    key = Ed25519PrivateKey.generate()
    pump = SimulatedPump.create(
        directory,
        server_url=server_url,
        root=b"{}",  # never read: these tests end before the TUF refresh
        device_id="pump-0001",
        product=PRODUCT,
        hardware_id="rev-b",
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    config = pump.config_path.read_text().replace("timeout = 10\n", f"timeout = {DEADLINE}\n")
    pump.config_path.write_text(config)
    return pump


def _run_cycle_bounded(agent: Agent, limit: float) -> tuple[AgentState | None, float]:
    """One poll cycle in a thread; (the state it rests in or None if still held, seconds)."""
    result: list[AgentState] = []
    thread = threading.Thread(
        target=lambda: result.append(agent.run_cycle(sleep=lambda s: None)), daemon=True
    )
    started = time.monotonic()
    thread.start()
    thread.join(limit)
    elapsed = time.monotonic() - started
    return (result[0] if result else None), elapsed


_DRIPS = {
    "drips-the-body": (_drip_body, "in time"),
    "drips-the-head": (_drip_head, "in time"),
    "drips-chunks": (_drip_chunked, "Transfer-Encoding"),
}
_ATTACKS = {
    **_DRIPS,
    "endless-without-content-length": (_endless_close_delimited, "without Content-Length"),
    "oversized-content-length": (_oversized, "too large"),
    "redirect": (_redirect, "redirect"),
}


@pytest.mark.parametrize("endpoint", ["checkin", "events"])
@pytest.mark.parametrize("attack", list(_DRIPS), ids=list(_DRIPS))
def test_a_server_dripping_its_answer_cannot_hold_the_agent(
    hostile: _Hostile,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    attack: str,
    endpoint: str,
) -> None:
    """The whole poll cycle ends within the deadline; events wait in the outbox."""
    script, message = _DRIPS[attack]
    agent = Agent(_pump(tmp_path / "pump", hostile.url).config())
    agent.outbox.append("deferred", {"reason": "infusion-running", "n": 1})
    agent.outbox.append("deferred", {"reason": "infusion-running", "n": 2})
    hostile.scripts[endpoint] = script

    with caplog.at_level(logging.WARNING, logger="device_agent.agent"):
        state, elapsed = _run_cycle_bounded(agent, DEADLINE + 10)

    assert state is not None, f"the agent is still held by the server after {elapsed:.1f} s"
    assert elapsed < DEADLINE + SLACK, elapsed
    assert state is AgentState.IDLE
    assert agent.next_poll_delay() <= 2 * 60  # backing off, not stuck: the next poll comes
    failure = next(r.getMessage() for r in caplog.records if "check-in failed" in r.getMessage())
    assert endpoint in failure and message in failure, failure
    pending = [event["detail"]["n"] for _, event in agent.outbox.pending()]
    assert pending == ([] if endpoint == "checkin" else [1, 2])

    # The server behaves again: the state machine carries on from where it rests.
    hostile.scripts.clear()
    hostile.received.clear()
    state, _ = _run_cycle_bounded(agent, DEADLINE + 10)
    assert state is AgentState.IDLE
    assert agent.outbox.pending() == []
    assert [endpoint for endpoint, _ in hostile.received][:1] == (
        ["checkin"] if endpoint == "checkin" else ["events"]
    )
    assert "checkin" in [endpoint for endpoint, _ in hostile.received]


@pytest.mark.parametrize("endpoint", ["checkin", "events"])
@pytest.mark.parametrize("attack", list(_ATTACKS), ids=list(_ATTACKS))
def test_a_hostile_answer_to_a_report_is_a_transfer_error_within_the_deadline(
    hostile: _Hostile, tmp_path: Path, attack: str, endpoint: str
) -> None:
    """Dripped, endless, oversized, chunked or redirected: refused, in time, retried later."""
    script, message = _ATTACKS[attack]
    config = _pump(tmp_path / "pump", hostile.url).config()
    key = serialization.load_pem_private_key(config.key.read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    client = ServerClient(hostile.url, "pump-0001", key, AgentHttp(), DEADLINE)
    hostile.scripts[endpoint] = script

    started = time.monotonic()
    with pytest.raises(TransferError, match=message) as e:
        if endpoint == "checkin":
            client.checkin({"state": "idle"})
        else:
            client.post_events([{"kind": "check", "at": "2026-01-01T00:00:00Z", "detail": {}}])
    elapsed = time.monotonic() - started

    assert elapsed < DEADLINE + SLACK, elapsed
    expected_reason = {"drips-the-body": "slow-retrieval", "drips-the-head": "slow-retrieval"}
    assert e.value.reason == expected_reason.get(
        attack, "http-302" if attack == "redirect" else "network"
    )
    if attack in ("drips-chunks", "endless-without-content-length", "oversized-content-length"):
        # Refused on its head, before a byte of the body: no deadline needed.
        assert elapsed < 1.0, elapsed


@pytest.mark.parametrize("attack", ["drips-the-handshake", "drips-the-head", "drips-the-body"])
def test_a_report_over_mutual_tls_to_a_dripping_server_fails_within_the_deadline(
    tmp_path: Path, attack: str
) -> None:
    """Under TLS too: the watchdog cuts a dripped handshake, head or body in time."""
    pki = make_pki(tmp_path / "pki")
    config = _pump(tmp_path / "pump", "http://127.0.0.1:9").config()
    key = serialization.load_pem_private_key(config.key.read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    http = AgentHttp(
        ca_file=pki / "ca.crt", client_cert=pki / "pump.crt", client_key=pki / "pump.key"
    )
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(_serve(server_context(pki)))
        url = server.url
        if attack == "drips-the-handshake":
            url = stack.enter_context(_dripping_relay(server.url, threading.Event()))
        else:
            server.scripts["checkin"] = _DRIPS[attack][0]
        client = ServerClient(url, "pump-0001", key, http, DEADLINE)
        started = time.monotonic()
        with pytest.raises(TransferError, match="in time") as e:
            client.checkin({"state": "idle"})
        elapsed = time.monotonic() - started
    assert e.value.reason == "slow-retrieval"
    assert elapsed < DEADLINE + SLACK, elapsed


def test_the_agent_talks_to_the_server_through_one_shared_http_client(tmp_path: Path) -> None:
    """TUF, check-ins and events share one pool, TLS settings and defences."""
    agent = Agent(_pump(tmp_path / "pump", "http://127.0.0.1:9").config())
    assert agent.fetcher.http is agent.http
    assert agent.client._http is agent.http
