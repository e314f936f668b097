"""AgentFetcher against a real loopback server: deadlines, caps, Range, mTLS."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import urllib3
from tuf.api import exceptions

from device_agent.fetcher import AgentFetcher
from http_support import HttpServer, serve
from pki_support import make_pki, server_context

SIZE = 3 * 1024 * 1024 + 17  # not a multiple of any chunk size


@pytest.fixture(scope="module")
def blob() -> bytes:
    return os.urandom(SIZE)


@pytest.fixture
def server(tmp_path: Path, blob: bytes) -> Iterator[HttpServer]:
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "fw.img").write_bytes(blob)
    (tmp_path / "www" / "small.json").write_bytes(b'{"x": 1}')
    with serve(tmp_path / "www") as s:
        yield s


def _collect(chunks: Iterator[bytes]) -> bytes:
    return b"".join(chunks)


def test_streams_whole_file_in_bounded_chunks(server: HttpServer, blob: bytes) -> None:
    fetcher = AgentFetcher(version="1.2.3", chunk_size=256 * 1024)
    chunks = list(fetcher.stream(f"{server.url}/fw.img", 0, SIZE))
    assert b"".join(chunks) == blob
    assert max(len(c) for c in chunks) <= 256 * 1024
    assert server.log[-1].range is None
    assert server.log[-1].user_agent == "pumpguard-agent/1.2.3"


def test_download_bytes_for_ngclient(server: HttpServer) -> None:
    assert AgentFetcher().download_bytes(f"{server.url}/small.json", 100) == b'{"x": 1}'


def test_resumes_with_range_after_dropped_connection(server: HttpServer, blob: bytes) -> None:
    fetcher = AgentFetcher()
    url = f"{server.url}/fw.img"
    server.bad.drop_after["fw.img"] = 1_000_000
    received = bytearray()
    with pytest.raises(exceptions.DownloadError):
        for chunk in fetcher.stream(url, 0, SIZE):
            received += chunk
    assert 0 < len(received) <= 1_000_000
    server.bad.drop_after.clear()
    rest = _collect(fetcher.stream(url, len(received), SIZE))
    assert bytes(received) + rest == blob
    assert server.log[-1].range == f"bytes={len(received)}-"


def test_skips_prefix_when_server_ignores_range(server: HttpServer, blob: bytes) -> None:
    server.bad.ignore_range = True
    rest = _collect(AgentFetcher().stream(f"{server.url}/fw.img", 1_234_567, SIZE))
    assert rest == blob[1_234_567:]
    assert server.log[-1].range == "bytes=1234567-"


def test_complete_offset_makes_no_request(server: HttpServer) -> None:
    assert _collect(AgentFetcher().stream(f"{server.url}/fw.img", SIZE, SIZE)) == b""
    assert server.log == []


@pytest.mark.parametrize("via", ["metadata", "firmware"])
def test_rejects_trickling_server_within_deadline(server: HttpServer, via: str) -> None:
    """Slow retrieval: one byte every 50 ms never trips a gap timeout."""
    fetcher = AgentFetcher(deadline=0.6, min_rate=1e9, read_timeout=5)
    server.bad.trickle["fw.img"] = 0.05
    url = f"{server.url}/fw.img"
    started = time.monotonic()
    with pytest.raises(exceptions.SlowRetrievalError):
        if via == "metadata":
            fetcher.download_bytes(url, SIZE)
        else:
            _collect(fetcher.stream(url, 0, SIZE))
    assert time.monotonic() - started < 1.2


def test_rejects_server_trickling_response_headers(server: HttpServer) -> None:
    """Slow retrieval before the body: the head is read inside http.client."""
    fetcher = AgentFetcher(deadline=0.5, read_timeout=5)
    server.bad.trickle_head["small.json"] = 0.05
    started = time.monotonic()
    with pytest.raises(exceptions.SlowRetrievalError):
        fetcher.download_bytes(f"{server.url}/small.json", 100)
    assert time.monotonic() - started < 1.0
    # The next request on the same fetcher has its own, fresh deadline.
    server.bad.trickle_head.clear()
    assert fetcher.download_bytes(f"{server.url}/small.json", 100) == b'{"x": 1}'


def test_deadline_ignores_time_the_caller_spends(server: HttpServer, blob: bytes) -> None:
    """Writing and rate limiting between chunks is not the server's slowness."""
    fetcher = AgentFetcher(deadline=1.0, min_rate=1e9, chunk_size=512 * 1024)
    received = bytearray()
    for chunk in fetcher.stream(f"{server.url}/fw.img", 0, SIZE):
        received += chunk
        time.sleep(0.15)
    assert received == blob


@pytest.mark.parametrize("via", ["metadata", "firmware"])
def test_rejects_endless_data(server: HttpServer, via: str) -> None:
    server.bad.endless.add("fw.img")
    fetcher = AgentFetcher()
    received = 0
    with pytest.raises(exceptions.DownloadLengthMismatchError):
        if via == "metadata":
            fetcher.download_bytes(f"{server.url}/fw.img", 100_000)
        else:
            for chunk in fetcher.stream(f"{server.url}/fw.img", 0, 100_000):
                received += len(chunk)
    assert received <= 100_000


def test_rejects_announced_oversize_before_reading(server: HttpServer) -> None:
    with pytest.raises(exceptions.DownloadLengthMismatchError, match="announces"):
        _collect(AgentFetcher().stream(f"{server.url}/fw.img", 0, SIZE - 1))


@pytest.mark.parametrize(
    "url",
    ["http://example.com/metadata/timestamp.json", "ftp://127.0.0.1/x", "file:///etc/passwd"],
)
def test_refuses_clear_text_beyond_loopback(url: str) -> None:
    with pytest.raises(exceptions.DownloadError, match="http"):
        _collect(AgentFetcher().stream(url, 0, 10))


def test_http_error_is_reported_with_status(server: HttpServer) -> None:
    with pytest.raises(exceptions.DownloadHTTPError) as e:
        AgentFetcher().download_bytes(f"{server.url}/missing.json", 100)
    assert e.value.status_code == 404


# ------------------------------------------------------------- mutual TLS
@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[HttpServer, Path]]:
    pki = make_pki(tmp_path / "pki")
    ctx = server_context(pki)
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "small.json").write_bytes(b'{"tls": true}')
    with serve(tmp_path / "www", tls=ctx) as s:
        yield s, pki


def test_mutual_tls_with_client_certificate(tls_server: tuple[HttpServer, Path]) -> None:
    server, pki = tls_server
    fetcher = AgentFetcher(
        ca_file=pki / "ca.crt", client_cert=pki / "pump.crt", client_key=pki / "pump.key"
    )
    assert fetcher.download_bytes(f"{server.url}/small.json", 100) == b'{"tls": true}'


def test_mutual_tls_refuses_client_without_certificate(
    tls_server: tuple[HttpServer, Path],
) -> None:
    server, pki = tls_server
    with pytest.raises(exceptions.DownloadError):
        AgentFetcher(ca_file=pki / "ca.crt", read_timeout=5).download_bytes(
            f"{server.url}/small.json", 100
        )
    assert not server.log


def test_tls_refuses_server_of_unknown_ca(tls_server: tuple[HttpServer, Path]) -> None:
    server, pki = tls_server
    fetcher = AgentFetcher(client_cert=pki / "pump.crt", client_key=pki / "pump.key")
    with pytest.raises(exceptions.DownloadError):
        fetcher.download_bytes(f"{server.url}/small.json", 100)


# ------------------------------------------- framing: chunked, close-delimited
Send = Callable[[bytes], None]


def _drip_forever(send: Send, stopping: threading.Event) -> None:
    while not stopping.is_set():
        send(b"0")  # the next chunk-size line, one digit at a time
        time.sleep(0.05)


def chunk_size_line_drip(send: Send, stopping: threading.Event) -> None:
    send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
    _drip_forever(send, stopping)


def endless_trailers(send: Send, stopping: threading.Event) -> None:
    send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n")
    lines = (b"X-Pad: " + b"a" * 1000 + b"\r\n") * 64
    while not stopping.is_set():
        send(lines)


def chunked_despite_content_length(send: Send, stopping: threading.Event) -> None:
    send(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
    )
    _drip_forever(send, stopping)


def close_delimited_endless(send: Send, stopping: threading.Event) -> None:
    send(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
    while not stopping.is_set():
        send(b"\xa5" * 65536)


UNFRAMED = [
    chunk_size_line_drip,
    endless_trailers,
    chunked_despite_content_length,
    close_delimited_endless,
]


def _in_thread(fetch: Callable[[], object], timeout: float) -> tuple[BaseException | None, float]:
    """Run ``fetch``; fail if it is still running after ``timeout`` seconds."""
    outcome: dict[str, BaseException] = {}

    def run() -> None:
        try:
            fetch()
        except BaseException as e:
            outcome["error"] = e

    started = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    elapsed = time.monotonic() - started
    assert not thread.is_alive(), f"the fetch still runs after {timeout} s"
    return outcome.get("error"), elapsed


@pytest.mark.parametrize("via", ["metadata", "firmware"])
@pytest.mark.parametrize("attack", UNFRAMED, ids=[a.__name__ for a in UNFRAMED])
def test_a_response_not_framed_by_content_length_is_refused_within_the_deadline(
    server: HttpServer, attack: Callable[[Send, threading.Event], None], via: str
) -> None:
    """Chunked framing is parsed inside one read1: it beat both the deadline and the cap."""
    server.bad.raw["fw.img"] = attack
    fetcher = AgentFetcher(deadline=1.0, min_rate=1e9, read_timeout=0.5, connect_timeout=1)
    url = f"{server.url}/fw.img"
    if via == "metadata":
        error, elapsed = _in_thread(lambda: fetcher.download_bytes(url, 100), 1.5)
    else:
        error, elapsed = _in_thread(lambda: _collect(fetcher.stream(url, 0, 100)), 1.5)
    # A transfer error (retried later), not a refusal of the signed image.
    assert isinstance(error, exceptions.DownloadError), error
    assert not isinstance(error, exceptions.DownloadLengthMismatchError), error
    assert elapsed < 1.5
    time.sleep(0.3)  # the server notices the hang-up
    assert server.bad.raw_sent < 16 * 1024 * 1024  # what the kernel buffers, no more


@pytest.mark.parametrize(
    "value",
    ["\u00b9\u00b2", "12abc", "-12", "+12", "0x0c", "12, 12", "", "1" * 30],
    ids=["superscript-digits", "trailing-junk", "negative", "plus-sign", "hex", "list", "empty",
         "30-digits"],
)  # fmt: skip
def test_a_malformed_content_length_fails_the_metadata_transfer(
    server: HttpServer, value: str
) -> None:
    def answer(send: Send, stopping: threading.Event) -> None:
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {value}\r\nConnection: close\r\n\r\n"
        send(head.encode("latin-1") + b"x" * 12)

    server.bad.raw["small.json"] = answer
    with pytest.raises(exceptions.DownloadError) as e:
        AgentFetcher().download_bytes(f"{server.url}/small.json", 100)
    assert "Content-Length" in str(e.value)


def test_the_watchdog_cuts_a_read_that_outlasts_its_deadline() -> None:
    """No single read, however many receives it makes below, outlives the deadline."""
    from device_agent.httpclient import _Watchdog

    quiet, _peer = socket.socketpair()
    with quiet, _peer:
        quiet.settimeout(5)  # far beyond the deadline: only the watchdog can end it early
        watchdog = _Watchdog()
        try:
            watchdog.arm(quiet, 10.0)
            watchdog.disarm()  # a read that finished in time is left alone
            time.sleep(0.1)
            assert not watchdog.fired
            started = time.monotonic()
            watchdog.arm(quiet, 0.3)
            data = quiet.recv(1024)
            elapsed = time.monotonic() - started
            watchdog.disarm()
        finally:
            watchdog.stop()
    assert data == b""
    assert watchdog.fired
    assert 0.25 <= elapsed < 1.5


@pytest.mark.parametrize("via", ["metadata", "firmware"])
def test_an_unexpected_error_of_the_http_stack_is_a_download_error(
    server: HttpServer, monkeypatch: pytest.MonkeyPatch, via: str
) -> None:
    """Whatever a malformed response makes urllib3 raise, the agent sees a DownloadError."""

    def broken(*args: object, **kwargs: object) -> bytes:
        raise RuntimeError("parser state the response should never reach")

    monkeypatch.setattr(urllib3.response.HTTPResponse, "read1", broken)
    fetcher = AgentFetcher()
    with pytest.raises(exceptions.DownloadError, match="RuntimeError"):
        if via == "metadata":
            fetcher.download_bytes(f"{server.url}/small.json", 100)
        else:
            _collect(fetcher.stream(f"{server.url}/fw.img", 0, SIZE))
