"""Creating a server data folder and the audit chain."""

from __future__ import annotations

from datetime import UTC

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from server_support import ServerEnv
from update_server.audit import GENESIS, AuditChainError, append, entry_hash, verify_chain
from update_server.db import engine_for
from update_server.models import ApiToken, AuditEntry


def test_init_creates_admin_token_stored_only_as_hash(server_env: ServerEnv) -> None:
    engine = engine_for(server_env.database_url)
    with sessionmaker(engine).begin() as s:
        tokens = list(s.execute(select(ApiToken)).scalars())
        assert [t.role for t in tokens] == ["admin"]
        assert server_env.admin_token not in tokens[0].token_hash
        assert len(tokens[0].token_hash) == 64
        assert verify_chain(s).entries == 2
    engine.dispose()
    mode = (server_env.data_dir / "keys" / "timestamp.key").stat().st_mode & 0o777
    assert mode == 0o600


@pytest.mark.parametrize("tamper", ["change", "remove-middle", "remove-last"])
def test_audit_chain_detects_tampering(server_env: ServerEnv, tamper: str) -> None:
    engine = engine_for(server_env.database_url)
    factory = sessionmaker(engine)
    with factory.begin() as s:
        for i in range(3):
            append(s, "test", "token.create", n=i)
        head = verify_chain(s).head
    with factory.begin() as s:
        if tamper == "change":
            s.execute(update(AuditEntry).where(AuditEntry.seq == 3).values(actor="mallory"))
        elif tamper == "remove-middle":
            s.delete(s.get(AuditEntry, 3))
        else:
            s.delete(s.get(AuditEntry, 5))
    with factory.begin() as s, pytest.raises(AuditChainError):
        verify_chain(s, expected_head=head)
    engine.dispose()


def _rewrite_history(factory: sessionmaker[Session], seq: int) -> None:
    """What someone who can write the database does: change entry ``seq`` and re-chain."""
    with factory.begin() as s:
        entries = list(s.execute(select(AuditEntry).order_by(AuditEntry.seq)).scalars())
        prev = GENESIS
        for entry in entries:
            if entry.seq == seq:
                entry.actor = "mallory"
            at = entry.at if entry.at.tzinfo else entry.at.replace(tzinfo=UTC)
            entry.prev_hash = prev
            entry.hash = entry_hash(entry.seq, at, entry.actor, entry.action, entry.detail, prev)
            prev = entry.hash


def test_recorded_entry_detects_a_rewritten_history_after_the_chain_grew(
    server_env: ServerEnv,
) -> None:
    engine = engine_for(server_env.database_url)
    factory = sessionmaker(engine)
    with factory.begin() as s:
        append(s, "test", "token.create", n=1)
        recorded = verify_chain(s)  # written down off-site: (entries, head)
    with factory.begin() as s:
        for i in range(3):
            append(s, "test", "token.create", n=i + 2)
        anchors = {recorded.entries: recorded.head}
        assert verify_chain(s, anchors=anchors).entries == recorded.entries + 3

    _rewrite_history(factory, 2)
    with factory.begin() as s:
        assert verify_chain(s).entries == recorded.entries + 3  # re-chained: looks intact
        with pytest.raises(AuditChainError, match="not the one recorded off-site"):
            verify_chain(s, anchors=anchors)
    engine.dispose()


def test_recorded_entry_detects_truncation(server_env: ServerEnv) -> None:
    engine = engine_for(server_env.database_url)
    factory = sessionmaker(engine)
    with factory.begin() as s:
        append(s, "test", "token.create")
        recorded = verify_chain(s)
    with factory.begin() as s:
        s.delete(s.get(AuditEntry, recorded.entries))
    with factory.begin() as s, pytest.raises(AuditChainError, match="truncated"):
        verify_chain(s, anchors={recorded.entries: recorded.head})
    engine.dispose()
