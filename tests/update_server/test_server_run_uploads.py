"""`pumpguard server run` judges an upload from its head (issue 19, finding 4).

Threat SRV-DOS: waitress receives a whole request body (spooled to a file)
before the app runs, so under `server run` a token of another product used
to be refused only after its upload, up to ``max_bundle_bytes``, had
arrived. The guarded channel now stops reading an upload once its head is
in and lets the app judge the head on a worker thread; a refusal is
answered at once and the body is never read. These tests talk to a real
`pumpguard server run` process over loopback, with the cases of the
gunicorn test (test_upload_bounds.py).
"""

from __future__ import annotations

import contextlib
import re
import socket
import time
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker
from test_server_run_hostile import TIMESTAMP, RunningServer, server_run
from test_upload_bounds import _REFUSED_BEFORE_THE_BODY
from upload_support import PRODUCT, make_token, send_until_answered, upload_head

from server_support import ServerEnv
from update_server.db import engine_for
from update_server.models import AuditEntry, Upload

MB = 1000 * 1000


def _counts(server_env: ServerEnv) -> tuple[int, int]:
    """(audit entries, upload records) in the server's database."""
    engine = engine_for(server_env.database_url)
    try:
        with sessionmaker(engine).begin() as s:
            audit = s.execute(select(func.count()).select_from(AuditEntry)).scalar_one()
            uploads = s.execute(select(func.count()).select_from(Upload)).scalar_one()
    finally:
        engine.dispose()
    return int(audit), int(uploads)


def _spooled(server_env: ServerEnv) -> list[str]:
    root = server_env.data_dir / "uploads"
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def _closing(head: bytes, *extra: str) -> bytes:
    """``head`` with ``Connection: close`` (and ``extra`` header lines)."""
    lines = "".join(f"{line}\r\n" for line in ("Connection: close", *extra))
    return head[:-2] + lines.encode() + b"\r\n"


def _read_until_closed(sock: socket.socket, timeout: float = 60) -> bytes:
    sock.settimeout(timeout)
    received = b""
    while True:
        try:
            data = sock.recv(1 << 16)
        except ConnectionResetError:
            return received
        if not data:
            return received
        received += data


@pytest.fixture
def server(server_env: ServerEnv) -> Iterator[RunningServer]:
    with server_run(server_env.data_dir, {}) as running:
        yield running
        assert running.stop() == 0, running.log.read_text()


def test_an_upload_server_run_would_refuse_is_answered_from_its_head_alone(
    server_env: ServerEnv, server: RunningServer
) -> None:
    """Every case the gunicorn test refuses before the body: the head alone is
    sent, the JSON refusal comes back and the connection closes, with nothing
    spooled, recorded or audited."""
    tokens = [make_token(server_env, *c[1]) if c[1] else None for c in _REFUSED_BEFORE_THE_BODY]
    other = make_token(server_env, "release-engineer", ("other-pump",))
    before = _counts(server_env)
    for token, (case, _, query, length, ctype, status, message) in zip(
        tokens, _REFUSED_BEFORE_THE_BODY, strict=True
    ):
        head = upload_head(token, length, f"?product={PRODUCT}" if query is None else query, ctype)
        # The head alone, then wait: not one byte of the body is ever sent,
        # and the answer must end with the server closing the connection.
        answer = send_until_answered(server.port, head, [], timeout=30)
        assert answer.sent == 0
        assert answer.status == status, (case, answer)
        assert message in answer.body["error"]["message"], (case, answer)
        assert answer.headers["connection"] == "close", (case, answer.headers)
    # What an attacker with a stolen token of another product meets: a
    # declared 200 MB is refused in the time of one token lookup.
    seconds = []
    for _ in range(5):
        answer = send_until_answered(server.port, upload_head(other, 200 * MB), [], timeout=30)
        assert (answer.status, answer.sent) == (403, 0), answer
        seconds.append(answer.seconds)
    print(f"\n403 for the head of a 200 MB upload: {min(seconds) * 1000:.1f} ms best, "
          f"{max(seconds) * 1000:.1f} ms worst of 5")  # fmt: skip
    assert max(seconds) < 5
    assert _counts(server_env) == before
    assert _spooled(server_env) == []


def test_an_allowed_upload_head_waits_for_its_body_and_publishes(
    server_env: ServerEnv, server: RunningServer
) -> None:
    """The head check lets an engineer's upload through without answering it:
    the server waits for the body, then publishes it (201), audited once."""
    engineer = make_token(server_env, "release-engineer", (PRODUCT,))
    data = server_env.repo.bundle("1.0.0", 1, tar=True).read_bytes()
    audit_before, _ = _counts(server_env)
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(_closing(upload_head(engineer, len(data))))
        sock.settimeout(2)
        with pytest.raises(TimeoutError):
            sock.recv(1)  # no answer: the server waits for the body
        sock.sendall(data)
        answer = _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 201 "), answer[:400]
    assert b'"version":"1.0.0"' in answer.replace(b" ", b""), answer[-400:]
    assert _counts(server_env) == (audit_before + 1, 1)  # one publish, no head-check entry


@pytest.mark.parametrize(
    ("products", "interim", "final"),
    [
        pytest.param(("other-pump",), b"", b"HTTP/1.1 403 ", id="refused-without-continue"),
        pytest.param((PRODUCT,), b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 201 ",
                     id="continue-once-the-head-passed"),
    ],
)  # fmt: skip
def test_100_continue_is_sent_only_for_a_head_that_passed(
    server_env: ServerEnv,
    server: RunningServer,
    products: tuple[str, ...],
    interim: bytes,
    final: bytes,
) -> None:
    """A client that asks ``Expect: 100-continue`` is told to send its body
    only when the server would read it; a refused one hears only the refusal."""
    token = make_token(server_env, "release-engineer", products)
    data = server_env.repo.bundle("1.0.0", 1, tar=True).read_bytes()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(_closing(upload_head(token, len(data)), "Expect: 100-continue"))
        sock.settimeout(10)
        first = sock.recv(1 << 16)
        if interim:
            assert first == interim, first
            sock.sendall(data)
            first = _read_until_closed(sock)
        else:
            first += _read_until_closed(sock)
    assert first.startswith(final), first[:400]


def _pg_dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_head_check_waiting_on_the_database_does_not_stall_other_clients(
    server_env: ServerEnv, server: RunningServer
) -> None:
    """The head check queries the database on a worker thread: while it waits
    for a lock on the token table, the loop serving every other connection
    still answers ``timestamp.json``; the refusal follows the lock's release."""
    other = make_token(server_env, "release-engineer", ("other-pump",))
    with contextlib.ExitStack() as stack:
        locker = stack.enter_context(psycopg.connect(_pg_dsn(server_env.database_url)))
        locker.execute("LOCK TABLE api_tokens IN ACCESS EXCLUSIVE MODE")
        sock = stack.enter_context(socket.create_connection(("127.0.0.1", server.port), 30))
        sock.sendall(upload_head(other, 200 * MB))
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recv(1)  # the check is blocked on the lock
        latencies = []
        for _ in range(10):
            start = time.monotonic()
            status, _, _ = server.request("GET", TIMESTAMP, timeout=5)
            latencies.append(time.monotonic() - start)
            assert status == 200
        print(f"\ntimestamp.json during a blocked head check: max {max(latencies) * 1000:.1f} ms")
        with pytest.raises(TimeoutError):
            sock.recv(1)  # still blocked: the answers above did not wait for it
        locker.rollback()  # the lock goes
        answer = _read_until_closed(sock, timeout=30)
    assert answer.startswith(b"HTTP/1.1 403 "), answer
    assert b"this token may not publish sigma-spectrum releases" in answer


@pytest.mark.parametrize(
    ("products", "statuses"),
    [
        pytest.param(("other-pump",), [b"200", b"403"], id="refused-after-the-answer-before-it"),
        pytest.param((PRODUCT,), [b"200", b"201"], id="published-after-the-answer-before-it"),
    ],
)
def test_an_upload_head_pipelined_behind_another_request_is_judged_after_its_answer(
    server_env: ServerEnv, server: RunningServer, products: tuple[str, ...], statuses: list[bytes]
) -> None:
    """An upload head that arrives in the same packet as a request before it
    is judged once that request is answered: the answers stay in order."""
    token = make_token(server_env, "release-engineer", products)
    data = server_env.repo.bundle("1.0.0", 1, tar=True).read_bytes()
    first = f"GET {TIMESTAMP} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(first + _closing(upload_head(token, len(data))))
        if statuses[-1] == b"201":
            time.sleep(1)  # the body follows once the head could be judged
            sock.sendall(data)
        answers = _read_until_closed(sock)
    seen = re.findall(rb"HTTP/1\.1 (\d{3}) ", answers)  # status lines, in order
    assert seen == statuses, answers[-1500:]
