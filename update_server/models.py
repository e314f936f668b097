"""The server's state, as SQLAlchemy 2 models (migrations in ``migrations/``)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from tuf.api.metadata import TargetFile

from pumpguard.release import ReleaseInfo

__all__ = [
    "ApiToken",
    "AuditEntry",
    "Base",
    "Device",
    "DeviceEvent",
    "DeviceNonce",
    "PublishLock",
    "Release",
    "Upload",
    "utcnow",
]


def utcnow() -> datetime:
    """Timezone-aware now."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base of every model."""


class ApiToken(Base):
    """An API token; only the sha256 of the secret is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(32))
    #: Products a release-engineer token may publish; empty for other roles.
    products: Mapped[list[Any]] = mapped_column(JSON, default=list)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Device(Base):
    """An enrolled pump and what it last reported."""

    __tablename__ = "devices"

    device_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    hardware_id: Mapped[str] = mapped_column(String(64))
    product: Mapped[str] = mapped_column(String(64), index=True)
    #: Raw Ed25519 public key, 64 lower-case hex digits. Unique (migration
    #: 0002), revoked devices included: one extracted key must never speak for
    #: two pumps, and the index decides concurrent enrollments (SRV-DEVICE-SPOOF).
    public_key: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    enrolled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_seen: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    release_counter: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    #: Last check-in's slots, update result and therapy state.
    status: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    assigned_version: Mapped[str | None] = mapped_column(String(64), nullable=True)


class DeviceNonce(Base):
    """Nonces of signed device requests, kept for the clock-skew window."""

    __tablename__ = "device_nonces"

    device_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("devices.device_id", ondelete="CASCADE"), primary_key=True
    )
    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class DeviceEvent(Base):
    """An update event a pump reported (download, install, rollback ...)."""

    __tablename__ = "device_events"
    __table_args__ = (Index("ix_device_events_device_time", "device_id", "received_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("devices.device_id", ondelete="CASCADE")
    )
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    kind: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Release(Base):
    """Index of published releases (the TUF metadata is the truth)."""

    __tablename__ = "releases"
    __table_args__ = (UniqueConstraint("product", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[str] = mapped_column(String(64))
    release_counter: Mapped[int] = mapped_column(BigInteger)
    hardware_ids: Mapped[list[Any]] = mapped_column(JSON)
    firmware_path: Mapped[str] = mapped_column(String(256))
    firmware_sha256: Mapped[str] = mapped_column(String(64))
    firmware_length: Mapped[int] = mapped_column(BigInteger)
    sbom_path: Mapped[str] = mapped_column(String(256))
    notes: Mapped[str] = mapped_column(Text, default="")
    signed_by: Mapped[list[Any]] = mapped_column(JSON, default=list)
    published_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    published_by: Mapped[str] = mapped_column(String(128), default="")

    @classmethod
    def index(
        cls,
        release: ReleaseInfo,
        firmware: TargetFile,
        signed_by: Iterable[str],
        published_by: str,
    ) -> Release:
        """The index row of a published release and its firmware target."""
        return cls(
            product=release.product,
            version=release.version,
            release_counter=release.release_counter,
            hardware_ids=list(release.hardware_ids),
            firmware_path=release.firmware_path,
            firmware_sha256=firmware.hashes["sha256"],
            firmware_length=firmware.length,
            sbom_path=release.sbom_path,
            notes=release.notes,
            signed_by=sorted(signed_by),
            published_by=published_by[:128],
        )


class AuditEntry(Base):
    """One link of the hash-chained audit log."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class PublishLock(Base):
    """A single row locked (SELECT ... FOR UPDATE) to serialise publishes."""

    __tablename__ = "publish_lock"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    holder: Mapped[str] = mapped_column(String(128), default="")


class Upload(Base):
    """Who is publishing what: committed before the repository is written.

    A publish writes the repository (``timestamp.json`` last) and then commits
    the index row and the audit entry. When the server dies in between,
    :func:`update_server.publishing.reconcile_index` indexes the release from
    the repository and takes its publisher, token and signers from this record
    instead of losing them (threat SRV-REPUDIATION; migration 0004).

    ``state`` is ``publishing`` until the publish ends: ``done`` after it
    committed, ``failed`` when it was refused or failed before anything was
    visible, ``reconciled`` once the reconciliation indexed it.
    """

    __tablename__ = "uploads"
    __table_args__ = (Index("ix_uploads_release", "product", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    state: Mapped[str] = mapped_column(String(16), default="publishing")
    #: The API token that uploaded (None for a publish without one).
    token_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    actor: Mapped[str] = mapped_column(String(128))
    product: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(64))
    release_counter: Mapped[int] = mapped_column(BigInteger)
    metadata_version: Mapped[int] = mapped_column(BigInteger)
    firmware_sha256: Mapped[str] = mapped_column(String(64))
    #: Keyids of the delegated keys whose signatures count, as the index stores them.
    signers: Mapped[list[Any]] = mapped_column(JSON, default=list)
    threshold: Mapped[int] = mapped_column(Integer)
    #: sha256 of the uploaded bytes ("" when the bundle was not uploaded as a tar).
    bundle_sha256: Mapped[str] = mapped_column(String(64), default="")
