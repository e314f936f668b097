"""Creating a server data folder and the audit chain."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import sessionmaker

from server_support import ServerEnv
from update_server.audit import AuditChainError, append, verify_chain
from update_server.db import engine_for, session_scope
from update_server.models import ApiToken, AuditEntry


def test_init_creates_admin_token_stored_only_as_hash(server_env: ServerEnv) -> None:
    engine = engine_for(server_env.database_url)
    with session_scope(sessionmaker(engine)) as s:
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
    with session_scope(factory) as s:
        for i in range(3):
            append(s, "test", "token.create", n=i)
        head = verify_chain(s).head
    with session_scope(factory) as s:
        if tamper == "change":
            s.execute(update(AuditEntry).where(AuditEntry.seq == 3).values(actor="mallory"))
        elif tamper == "remove-middle":
            s.delete(s.get(AuditEntry, 3))
        else:
            s.delete(s.get(AuditEntry, 5))
    with session_scope(factory) as s, pytest.raises(AuditChainError):
        verify_chain(s, expected_head=head)
    engine.dispose()
