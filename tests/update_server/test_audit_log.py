"""The audit log stays one unbroken chain when writers append at the same time."""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from server_support import ServerEnv
from update_server import audit
from update_server.auth import create_token
from update_server.db import engine_for
from update_server.models import AuditEntry


def _run_concurrently(n: int, work: Any) -> list[BaseException]:
    """Run ``work(i)`` in n threads released together; the errors they raised."""
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []
    guard = threading.Lock()

    def run(i: int) -> None:
        barrier.wait()
        try:
            work(i)
        except BaseException as e:  # reported by the test
            with guard:
                errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "an append hung"
    return errors


def test_concurrent_audit_appends_all_succeed_and_chain(server_env: ServerEnv) -> None:
    """Eight writers, each in its own session and transaction, append at once.

    Reading the chain head (even with a row lock) does not stop two
    transactions from computing the same next sequence number; the loser
    would fail on the primary key and roll back what it audited.
    """
    engine = engine_for(server_env.database_url)
    factory = sessionmaker(engine)
    threads, rounds = 8, 5
    try:
        with factory.begin() as s:
            before = audit.verify_chain(s).entries

        def append(i: int) -> None:
            for r in range(rounds):
                with factory.begin() as s:
                    audit.append(s, f"test:{i}", "test.append", thread=i, round=r)

        errors = _run_concurrently(threads, append)
        assert errors == []
        with factory.begin() as s:
            report = audit.verify_chain(s)
            assert report.entries == before + threads * rounds
            appended = {
                (e.detail["thread"], e.detail["round"])
                for e in s.execute(select(AuditEntry).where(AuditEntry.action == "test.append"))
                .scalars()
                .all()
            }
        assert appended == {(i, r) for i in range(threads) for r in range(rounds)}
    finally:
        engine.dispose()


def test_concurrent_token_creations_are_all_created_and_audited(server_env: ServerEnv) -> None:
    """Token creation appends without the publish lock (as enrollment does)."""
    engine = engine_for(server_env.database_url)
    factory = sessionmaker(engine)
    n = 8
    try:

        def create(i: int) -> None:
            for r in range(3):
                with factory.begin() as s:
                    create_token(s, f"reviewer {i}-{r}", "reviewer")

        assert _run_concurrently(n, create) == []
        with factory.begin() as s:
            audit.verify_chain(s)
            names = {
                e.detail["name"]
                for e in s.execute(select(AuditEntry).where(AuditEntry.action == "token.create"))
                .scalars()
                .all()
            }
        assert {f"reviewer {i}-{r}" for i in range(n) for r in range(3)} <= names
    finally:
        engine.dispose()
