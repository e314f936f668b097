"""The hash-chained audit log.

Every publish, token and enrollment change appends an entry whose hash covers
its content and the previous entry's hash, so changing or removing any entry
breaks the chain from there on (``pumpguard server audit verify``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from update_server.errors import ServerError
from update_server.models import AuditEntry, utcnow

__all__ = [
    "GENESIS",
    "MAX_ACTOR",
    "AuditChainError",
    "AuditReport",
    "append",
    "entry_hash",
    "verify_chain",
]

GENESIS = "0" * 64
#: The PostgreSQL advisory lock key that serialises appends ("pgaudit" in ASCII, then 1).
APPEND_LOCK_KEY = 0x7067617564697401
#: The widths of ``AuditEntry.actor`` and ``AuditEntry.action``.
MAX_ACTOR = 128
MAX_ACTION = 64


class AuditChainError(ServerError):
    """The audit chain is broken: an entry was changed, inserted or removed."""

    exit_code = 4


def _serialise(session: Session) -> None:
    """Hold the audit log's append lock until ``session``'s transaction ends."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(APPEND_LOCK_KEY)))
    else:
        # SQLite runs a SELECT outside any transaction; a write (here one that
        # changes nothing) opens it and takes the single write lock first.
        session.execute(text("UPDATE audit_log SET seq = seq WHERE 0"))


def entry_hash(seq: int, at: datetime, actor: str, action: str, detail: Any, prev_hash: str) -> str:
    """sha256 over the canonical JSON of an entry and its predecessor's hash."""
    body = json.dumps(
        {
            "seq": seq,
            "at": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "actor": actor,
            "action": action,
            "detail": detail,
            "prev": prev_hash,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return hashlib.sha256(body.encode()).hexdigest()


def append(session: Session, actor: str, action: str, **detail: Any) -> AuditEntry:
    """Append an entry in the caller's transaction.

    Appends serialise on the database before the chain head is read, and stay
    serialised until the caller's transaction ends: on PostgreSQL by a
    transaction-scoped advisory lock (a row lock on the newest entry would
    not stop a second transaction from computing the same next sequence
    number), on SQLite by taking the database's single write lock. The head
    is then read after every earlier append committed, so concurrent
    appends (publishes, token and enrollment changes) all succeed, one after
    the other, instead of one failing on the unique sequence number.

    Raises:
        ValueError: ``actor`` or ``action`` is longer than its column; the
            caller must make it fit (see :attr:`update_server.auth.Caller.actor`).
    """
    if len(actor) > MAX_ACTOR or len(action) > MAX_ACTION:
        raise ValueError(
            f"audit actor ({len(actor)} characters) or action ({len(action)}) is too long"
        )
    _serialise(session)
    last = session.execute(
        select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(1)
    ).scalar_one_or_none()
    seq = last.seq + 1 if last else 1
    prev = last.hash if last else GENESIS
    # Microseconds survive every backend; the hash is computed over exactly this.
    at = utcnow().replace(tzinfo=UTC)
    clean = json.loads(json.dumps(detail, sort_keys=True, default=str))
    entry = AuditEntry(
        seq=seq,
        at=at,
        actor=actor,
        action=action,
        detail=clean,
        prev_hash=prev,
        hash=entry_hash(seq, at, actor, action, clean, prev),
    )
    session.add(entry)
    session.flush()
    return entry


@dataclass(frozen=True)
class AuditReport:
    """Result of a successful chain verification."""

    entries: int
    head: str


def verify_chain(
    session: Session,
    expected_head: str | None = None,
    anchors: Mapping[int, str] | None = None,
) -> AuditReport:
    """Recompute the chain from the first entry.

    The chain is unkeyed: whoever can write the database can rewrite an entry
    and recompute every hash after it. What catches that is a hash kept
    elsewhere: the head, or any entry's hash recorded off-site earlier (an
    anchor), which stays valid while the chain grows.

    Args:
        session: Database session.
        expected_head: If given (e.g. a hash recorded off-site), the chain must
            end there, which also detects removal of the newest entries.
        anchors: Sequence number to hash of entries recorded off-site earlier;
            each must still be in the chain with that hash.

    Raises:
        AuditChainError: The first entry where the chain breaks, and why.
    """
    anchors = dict(anchors or {})
    prev = GENESIS
    count = 0
    expected_seq = 1
    for entry in session.execute(select(AuditEntry).order_by(AuditEntry.seq)).scalars():
        if entry.seq != expected_seq:
            raise AuditChainError(f"audit entry {expected_seq} is missing (next is {entry.seq})")
        if entry.prev_hash != prev:
            raise AuditChainError(f"audit entry {entry.seq} does not follow entry {entry.seq - 1}")
        at = entry.at if entry.at.tzinfo else entry.at.replace(tzinfo=UTC)
        if entry_hash(entry.seq, at, entry.actor, entry.action, entry.detail, prev) != entry.hash:
            raise AuditChainError(f"audit entry {entry.seq} ({entry.action}) was changed")
        if entry.seq in anchors and anchors.pop(entry.seq) != entry.hash:
            raise AuditChainError(
                f"audit entry {entry.seq} is not the one recorded off-site: the chain was"
                " rewritten up to there"
            )
        prev = entry.hash
        count += 1
        expected_seq += 1
    if anchors:
        missing = min(anchors)
        raise AuditChainError(
            f"audit entry {missing}, recorded off-site, is missing: the chain has {count}"
            " entries (truncated)"
        )
    if expected_head is not None and prev != expected_head:
        raise AuditChainError(f"the audit chain ends at {prev[:12]}, not at {expected_head[:12]}")
    return AuditReport(count, prev)
